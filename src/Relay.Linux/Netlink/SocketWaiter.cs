using System.Runtime.InteropServices;
using Relay.Linux.Interop;

namespace Relay.Linux.Netlink;

/// <summary>What <see cref="SocketWaiter.Wait"/> saw.</summary>
internal enum SocketWaitResult
{
    /// <summary>The socket has something to read, or an error (ENOBUFS) to report.</summary>
    Ready,

    /// <summary><see cref="SocketWaiter.Wake"/> was called: the waiter should stop.</summary>
    Woken,

    /// <summary>The timeout passed.</summary>
    TimedOut,
}

/// <summary>
/// Blocks a thread until a socket is readable, or until another thread calls <see cref="Wake"/>
/// (poll(2) on the socket and an eventfd). This is how a reader thread is stopped without closing
/// the socket under it: closing a descriptor does not wake a poll on it, and a netlink socket has
/// no shutdown(2). Waking is one-shot and permanent: every later <see cref="Wait"/> returns
/// <see cref="SocketWaitResult.Woken"/> at once.
/// </summary>
internal sealed partial class SocketWaiter : IDisposable
{
    private const int EFD_NONBLOCK = 0x800;
    private const int EFD_CLOEXEC = 0x80000;
    private const short POLLIN = 0x1;

    private readonly SafeFd _wake;

    /// <summary>Creates the eventfd. Throws <see cref="SystemCallException"/> if it cannot.</summary>
    public SocketWaiter()
    {
        var fd = EventFd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (fd < 0)
        {
            throw new SystemCallException("eventfd", Marshal.GetLastPInvokeError());
        }
        _wake = new SafeFd(fd);
    }

    /// <summary>
    /// Waits until <paramref name="socket"/> is readable (or in error), <see cref="Wake"/> is called,
    /// or <paramref name="timeoutMilliseconds"/> pass (-1: no timeout). Both descriptors are held open
    /// (reference-counted) for the duration, so a concurrent dispose cannot pull them out from under poll.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The socket or this waiter is disposed.</exception>
    /// <exception cref="SystemCallException">poll failed.</exception>
    public unsafe SocketWaitResult Wait(SafeFd socket, int timeoutMilliseconds)
    {
        bool socketAdded = false, wakeAdded = false;
        try
        {
            socket.DangerousAddRef(ref socketAdded);
            _wake.DangerousAddRef(ref wakeAdded);
            // struct pollfd { int fd; short events; short revents; }, twice.
            var fds = stackalloc PollFd[2];
            fds[0] = new PollFd { Fd = _wake.Fd, Events = POLLIN };
            fds[1] = new PollFd { Fd = socket.Fd, Events = POLLIN };
            int ready;
            int errno;
            do
            {
                ready = Poll(fds, 2, timeoutMilliseconds);
                errno = ready < 0 ? Marshal.GetLastPInvokeError() : 0;
            }
            while (ready < 0 && errno == (int)Errno.EINTR);
            if (ready < 0)
            {
                throw new SystemCallException("poll", errno);
            }
            if (fds[0].Revents != 0)
            {
                return SocketWaitResult.Woken;
            }
            // POLLERR (a pending ENOBUFS), POLLHUP and POLLNVAL count as ready: the read reports them.
            return fds[1].Revents != 0 ? SocketWaitResult.Ready : SocketWaitResult.TimedOut;
        }
        finally
        {
            if (wakeAdded)
            {
                _wake.DangerousRelease();
            }
            if (socketAdded)
            {
                socket.DangerousRelease();
            }
        }
    }

    /// <summary>Wakes the current <see cref="Wait"/> and every later one. Safe to call more than once, and after dispose.</summary>
    public unsafe void Wake()
    {
        var added = false;
        try
        {
            _wake.DangerousAddRef(ref added);
            ulong one = 1;
            // Cannot block (EFD_NONBLOCK); EAGAIN only if the counter is near overflow, which means already woken.
            _ = Write(_wake.Fd, &one, sizeof(ulong));
        }
        catch (ObjectDisposedException)
        {
            // Disposed: nobody can be waiting any more.
        }
        finally
        {
            if (added)
            {
                _wake.DangerousRelease();
            }
        }
    }

    /// <summary>Closes the eventfd (once no <see cref="Wait"/> holds it).</summary>
    public void Dispose() => _wake.Dispose();

    [LibraryImport("libc", EntryPoint = "eventfd", SetLastError = true)]
    private static partial int EventFd(uint initialValue, int flags);

    [LibraryImport("libc", EntryPoint = "poll", SetLastError = true)]
    private static unsafe partial int Poll(PollFd* fds, nuint count, int timeout);

    [LibraryImport("libc", EntryPoint = "write", SetLastError = true)]
    private static unsafe partial nint Write(int fd, void* buffer, nint count);

    [StructLayout(LayoutKind.Sequential)]
    private struct PollFd
    {
        public int Fd;
        public short Events;
        public short Revents;
    }
}
