using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Relay.Linux.Interop;

namespace Relay.Linux.Sockets;

/// <summary>
/// A UDP socket read and written in batches with recvmmsg(2)/sendmmsg(2): one system call moves
/// up to <see cref="Capacity"/> datagrams. Used by the DNS server, whose work per query is small
/// enough that one system call per datagram would dominate it.
/// <para>
/// Buffers are native memory owned by this object. Not thread-safe: one thread per socket (several
/// sockets may share a port with SO_REUSEPORT, which spreads clients across them).
/// </para>
/// </summary>
public sealed unsafe partial class UdpBatchSocket : IDisposable
{
    /// <summary>Largest datagram kept (larger ones are truncated and flagged).</summary>
    public const int DatagramSize = 4096;

    private const int SockaddrSize = 128;
    private const int MSG_WAITFORONE = 0x10000;
    private const int MSG_TRUNC = 0x20;
    private const int SO_REUSEPORT = 15;
    private const int IP_FREEBIND = 15;
    private const int IPV6_FREEBIND = 78;
    private const int IPV6_V6ONLY = 26;
    private const int SOL_IP = 0;
    private const int SOL_IPV6 = 41;

    private readonly Socket _socket;
    private readonly byte* _in;
    private readonly byte* _out;
    private readonly byte* _inNames;
    private readonly byte* _outNames;
    private readonly MMsgHdr* _inHeaders;
    private readonly MMsgHdr* _outHeaders;
    private readonly IoVec* _inVecs;
    private readonly IoVec* _outVecs;
    private int _pending;
    private bool _disposed;

    private UdpBatchSocket(Socket socket, int capacity)
    {
        _socket = socket;
        Capacity = capacity;
        _in = (byte*)NativeMemory.AllocZeroed((nuint)(capacity * DatagramSize));
        _out = (byte*)NativeMemory.AllocZeroed((nuint)(capacity * DatagramSize));
        _inNames = (byte*)NativeMemory.AllocZeroed((nuint)(capacity * SockaddrSize));
        _outNames = (byte*)NativeMemory.AllocZeroed((nuint)(capacity * SockaddrSize));
        _inHeaders = (MMsgHdr*)NativeMemory.AllocZeroed((nuint)(capacity * sizeof(MMsgHdr)));
        _outHeaders = (MMsgHdr*)NativeMemory.AllocZeroed((nuint)(capacity * sizeof(MMsgHdr)));
        _inVecs = (IoVec*)NativeMemory.AllocZeroed((nuint)(capacity * sizeof(IoVec)));
        _outVecs = (IoVec*)NativeMemory.AllocZeroed((nuint)(capacity * sizeof(IoVec)));
        for (var i = 0; i < capacity; i++)
        {
            _inVecs[i] = new IoVec { Base = _in + (i * DatagramSize), Length = DatagramSize };
            _outVecs[i] = new IoVec { Base = _out + (i * DatagramSize), Length = 0 };
        }
    }

    /// <summary>Datagrams per batch.</summary>
    public int Capacity { get; }

    /// <summary>The underlying socket (for its local endpoint).</summary>
    public Socket Socket => _socket;

    /// <summary>
    /// Opens a socket bound to <paramref name="endpoint"/> in the calling thread's network namespace,
    /// with SO_REUSEPORT (several sockets share the port) and IP_FREEBIND (the address may appear on
    /// an interface only later), and a receive timeout so the owner can stop it.
    /// </summary>
    public static UdpBatchSocket Bind(IPEndPoint endpoint, int capacity = 64, TimeSpan? receiveTimeout = null)
    {
        var s = new Socket(endpoint.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        try
        {
            s.SetRawSocketOption(Libc.SOL_SOCKET, SO_REUSEPORT, BitConverter.GetBytes(1));
            if (endpoint.AddressFamily == AddressFamily.InterNetworkV6)
            {
                s.SetRawSocketOption(SOL_IPV6, IPV6_V6ONLY, BitConverter.GetBytes(1));
                s.SetRawSocketOption(SOL_IPV6, IPV6_FREEBIND, BitConverter.GetBytes(1));
            }
            else
            {
                s.SetRawSocketOption(SOL_IP, IP_FREEBIND, BitConverter.GetBytes(1));
            }
            s.Blocking = true;
            s.ReceiveBufferSize = 4 << 20;
            s.Bind(endpoint);
            s.ReceiveTimeout = (int)(receiveTimeout ?? TimeSpan.FromMilliseconds(250)).TotalMilliseconds;
            return new UdpBatchSocket(s, capacity);
        }
        catch
        {
            s.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Steers the datagrams of this socket's SO_REUSEPORT group by packet mark: those marked
    /// <paramref name="mark"/> go to the group's second socket, all others to the first (sockets are
    /// numbered in the order they were bound). A classic BPF program, attached once for the group.
    /// </summary>
    public void SteerByMark(uint mark)
    {
        const int SO_ATTACH_REUSEPORT_CBPF = 51;
        const int SKF_AD_OFF = -0x1000;
        const int SKF_AD_MARK = 20;
        ReadOnlySpan<SockFilter> program =
        [
            new SockFilter(0x20, 0, 0, unchecked((uint)(SKF_AD_OFF + SKF_AD_MARK))), // ld  skb->mark
            new SockFilter(0x15, 0, 1, mark),                                        // jeq mark ? next : skip one
            new SockFilter(0x06, 0, 0, 1),                                           // ret 1 (the second socket)
            new SockFilter(0x06, 0, 0, 0),                                           // ret 0 (the first)
        ];
        fixed (SockFilter* filter = program)
        {
            var fprog = new SockFprog { Length = (ushort)program.Length, Filter = filter };
            if (Libc.SetSockOpt((int)_socket.Handle, Libc.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &fprog, sizeof(SockFprog)) != 0)
            {
                throw new SystemCallException("setsockopt(SO_ATTACH_REUSEPORT_CBPF)", Marshal.GetLastPInvokeError());
            }
        }
    }

    /// <summary>
    /// Waits for at least one datagram (or the receive timeout), then takes whatever else is already
    /// queued, up to <see cref="Capacity"/>. Returns how many (0 on timeout).
    /// </summary>
    public int Receive()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        for (var i = 0; i < Capacity; i++)
        {
            _inHeaders[i] = new MMsgHdr
            {
                Header = new MsgHdr { Name = _inNames + (i * SockaddrSize), NameLength = SockaddrSize, Iov = &_inVecs[i], IovLength = 1 },
            };
        }
        while (true)
        {
            var n = RecvMMsg((int)_socket.Handle, _inHeaders, (uint)Capacity, MSG_WAITFORONE, null);
            if (n >= 0)
            {
                return n;
            }
            var errno = Marshal.GetLastPInvokeError();
            if (errno == (int)Errno.EINTR)
            {
                continue;
            }
            if (errno == (int)Errno.EAGAIN)
            {
                return 0;
            }
            throw new SystemCallException("recvmmsg", errno);
        }
    }

    /// <summary>Datagram <paramref name="i"/> of the last batch.</summary>
    public ReadOnlySpan<byte> Datagram(int i) => new(_in + (i * DatagramSize), (int)Math.Min(_inHeaders[i].Length, DatagramSize));

    /// <summary>True when datagram <paramref name="i"/> was larger than <see cref="DatagramSize"/> and got cut.</summary>
    public bool WasTruncated(int i) => (_inHeaders[i].Header.Flags & MSG_TRUNC) != 0;

    /// <summary>The sender of datagram <paramref name="i"/> as raw sockaddr bytes.</summary>
    public ReadOnlySpan<byte> Sender(int i) => new(_inNames + (i * SockaddrSize), (int)_inHeaders[i].Header.NameLength);

    /// <summary>Reply buffer <paramref name="slot"/> (one per datagram of a batch); <see cref="QueueReply"/> sends it.</summary>
    public Span<byte> ReplyBuffer(int slot) => new(_out + (slot * DatagramSize), DatagramSize);

    /// <summary>Queues the first <paramref name="length"/> bytes of reply buffer <paramref name="slot"/> for the sender of datagram <paramref name="to"/>.</summary>
    public void QueueReply(int slot, int length, int to)
    {
        var sender = Sender(to);
        sender.CopyTo(new Span<byte>(_outNames + (slot * SockaddrSize), SockaddrSize));
        _outVecs[slot].Length = (nuint)length;
        _outHeaders[_pending] = new MMsgHdr
        {
            Header = new MsgHdr { Name = _outNames + (slot * SockaddrSize), NameLength = (uint)sender.Length, Iov = &_outVecs[slot], IovLength = 1 },
        };
        _pending++;
    }

    /// <summary>Sends every queued reply (sendmmsg); replies the kernel refuses are dropped, as UDP may.</summary>
    public void Flush()
    {
        var sent = 0;
        while (sent < _pending)
        {
            var n = SendMMsg((int)_socket.Handle, _outHeaders + sent, (uint)(_pending - sent), 0);
            if (n > 0)
            {
                sent += n;
                continue;
            }
            var errno = Marshal.GetLastPInvokeError();
            if (errno == (int)Errno.EINTR)
            {
                continue;
            }
            // A reply that cannot be sent (no route back, buffer full) is skipped, not retried.
            sent++;
        }
        _pending = 0;
    }

    /// <summary>Sends one datagram to raw sockaddr <paramref name="to"/> (for replies produced outside a batch).</summary>
    public void SendTo(ReadOnlySpan<byte> payload, ReadOnlySpan<byte> to)
    {
        var address = new SocketAddress(_socket.AddressFamily, to.Length);
        to.CopyTo(address.Buffer.Span);
        try
        {
            _socket.SendTo(payload, SocketFlags.None, address);
        }
        catch (SocketException)
        {
            // As Flush: an unsendable reply is dropped.
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        _socket.Dispose();
        NativeMemory.Free(_in);
        NativeMemory.Free(_out);
        NativeMemory.Free(_inNames);
        NativeMemory.Free(_outNames);
        NativeMemory.Free(_inHeaders);
        NativeMemory.Free(_outHeaders);
        NativeMemory.Free(_inVecs);
        NativeMemory.Free(_outVecs);
    }

    /// <summary>The address in a raw sockaddr (AF_INET or AF_INET6), written to <paramref name="destination"/> (4 or 16 bytes); returns the length.</summary>
    public static int AddressBytes(ReadOnlySpan<byte> sockaddr, Span<byte> destination)
    {
        var family = BitConverter.ToUInt16(sockaddr);
        if (family == 2 && sockaddr.Length >= 8)
        {
            sockaddr.Slice(4, 4).CopyTo(destination);
            return 4;
        }
        if (family == 10 && sockaddr.Length >= 24)
        {
            sockaddr.Slice(8, 16).CopyTo(destination);
            return 16;
        }
        return 0;
    }

    // struct sock_filter and struct sock_fprog from <linux/filter.h>.
    [StructLayout(LayoutKind.Sequential)]
    private readonly struct SockFilter(ushort code, byte jt, byte jf, uint k)
    {
        public readonly ushort Code = code;
        public readonly byte Jt = jt;
        public readonly byte Jf = jf;
        public readonly uint K = k;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct SockFprog
    {
        public ushort Length;
        public SockFilter* Filter;
    }

    [LibraryImport("libc", EntryPoint = "recvmmsg", SetLastError = true)]
    private static partial int RecvMMsg(int fd, MMsgHdr* msgvec, uint vlen, int flags, void* timeout);

    [LibraryImport("libc", EntryPoint = "sendmmsg", SetLastError = true)]
    private static partial int SendMMsg(int fd, MMsgHdr* msgvec, uint vlen, int flags);
}
