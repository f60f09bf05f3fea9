using System.Runtime.InteropServices;

namespace Relay.Linux.Interop;

/// <summary>
/// The few libc entry points Relay needs that .NET does not wrap. Every call that can be
/// interrupted is retried on EINTR by its caller-facing wrapper.
/// </summary>
internal static partial class Libc
{
    private const string Lib = "libc";

    /// <summary>CLONE_NEWNET from sched.h: the namespace type for setns.</summary>
    public const int CLONE_NEWNET = 0x40000000;
    public const int O_RDONLY = 0;
    public const int O_CLOEXEC = 0x80000;

    public const int AF_NETLINK = 16;
    public const int SOCK_RAW = 3;
    public const int SOCK_CLOEXEC = 0x80000;
    public const int SOL_SOCKET = 1;
    public const int SO_SNDBUF = 7;
    public const int SO_RCVBUF = 8;
    public const int SO_RCVBUFFORCE = 33;
    public const int SO_RCVTIMEO = 20;
    public const int SOL_NETLINK = 270;
    public const int NETLINK_EXT_ACK = 11;
    public const int NETLINK_GET_STRICT_CHK = 12;
    public const int MSG_DONTWAIT = 0x40;

    [LibraryImport(Lib, EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int Open(string path, int flags);

    [LibraryImport(Lib, EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    [LibraryImport(Lib, EntryPoint = "setns", SetLastError = true)]
    public static partial int SetNs(int fd, int nstype);

    [LibraryImport(Lib, EntryPoint = "socket", SetLastError = true)]
    public static partial int Socket(int domain, int type, int protocol);

    [LibraryImport(Lib, EntryPoint = "bind", SetLastError = true)]
    public static unsafe partial int Bind(int fd, void* addr, int addrlen);

    [LibraryImport(Lib, EntryPoint = "getsockname", SetLastError = true)]
    public static unsafe partial int GetSockName(int fd, void* addr, int* addrlen);

    [LibraryImport(Lib, EntryPoint = "setsockopt", SetLastError = true)]
    public static unsafe partial int SetSockOpt(int fd, int level, int optname, void* optval, int optlen);

    [LibraryImport(Lib, EntryPoint = "send", SetLastError = true)]
    public static unsafe partial nint Send(int fd, void* buf, nint len, int flags);

    [LibraryImport(Lib, EntryPoint = "recv", SetLastError = true)]
    public static unsafe partial nint Recv(int fd, void* buf, nint len, int flags);

    [LibraryImport(Lib, EntryPoint = "strerror")]
    private static partial nint StrErrorNative(int errnum);

    [LibraryImport(Lib, EntryPoint = "kill", SetLastError = true)]
    public static partial int Kill(int pid, int sig);

    [LibraryImport(Lib, EntryPoint = "gettid")]
    public static partial int GetTid();

    [LibraryImport(Lib, EntryPoint = "stat", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static unsafe partial int Stat(string path, byte* buf);

    /// <summary>
    /// st_ino of <paramref name="path"/>. struct stat starts with st_dev (8 bytes) then st_ino
    /// (8 bytes) on both x86_64 and the generic layout (aarch64); 256 bytes cover the whole struct.
    /// </summary>
    public static unsafe ulong InodeOf(string path)
    {
        var buf = stackalloc byte[256];
        if (Stat(path, buf) != 0)
        {
            throw new SystemCallException($"stat({path})", Marshal.GetLastPInvokeError());
        }
        return *(ulong*)(buf + 8);
    }

    /// <summary>The C library's description of <paramref name="errno"/>.</summary>
    public static string StrError(int errno) => Marshal.PtrToStringUTF8(StrErrorNative(errno)) ?? "unknown error";
}
