using System.Runtime.InteropServices;

namespace Relay.Linux.Interop;

/// <summary>struct iovec as in &lt;sys/uio.h&gt; (LP64).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct IoVec
{
    public byte* Base;
    public nuint Length;
}

/// <summary>struct msghdr as in &lt;sys/socket.h&gt; (LP64), for recvmsg(2), recvmmsg(2), sendmmsg(2).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct MsgHdr
{
    public void* Name;
    public uint NameLength;
    public IoVec* Iov;
    public nuint IovLength;
    public void* Control;
    public nuint ControlLength;
    public int Flags;
}

/// <summary>struct mmsghdr as in &lt;sys/socket.h&gt;: a message and the bytes it moved.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct MMsgHdr
{
    public MsgHdr Header;
    public uint Length;
}
