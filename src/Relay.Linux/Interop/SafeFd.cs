using System.Runtime.InteropServices;

namespace Relay.Linux.Interop;

/// <summary>A file descriptor owned by Relay, closed exactly once.</summary>
internal sealed class SafeFd : SafeHandle
{
    public SafeFd(int fd)
        : base(new IntPtr(-1), ownsHandle: true)
        => SetHandle(new IntPtr(fd));

    public override bool IsInvalid => handle.ToInt64() < 0;

    /// <summary>The descriptor number (valid while this handle is not disposed).</summary>
    public int Fd => (int)handle.ToInt64();

    /// <summary>Opens <paramref name="path"/> read-only, close-on-exec.</summary>
    public static SafeFd OpenReadOnly(string path)
    {
        int fd;
        do
        {
            fd = Libc.Open(path, Libc.O_RDONLY | Libc.O_CLOEXEC);
        }
        while (fd < 0 && Marshal.GetLastPInvokeError() == (int)Errno.EINTR);
        return fd >= 0 ? new SafeFd(fd) : throw new SystemCallException($"open({path})", Marshal.GetLastPInvokeError());
    }

    protected override bool ReleaseHandle() => Libc.Close(Fd) == 0;
}
