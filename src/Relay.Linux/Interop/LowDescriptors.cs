namespace Relay.Linux.Interop;

/// <summary>
/// A reserve of low-numbered file descriptors, for native code that cannot cope with high ones.
/// <para>
/// libnftables 1.0.6 waits for the kernel's replies with select(2); with its socket on descriptor
/// 1024 or above, glibc aborts the whole process ("bit out of range 0 - FD_SETSIZE on fd_set"). A
/// socket takes the lowest free descriptor, so a busy process (a DNS server, thousands of test
/// sockets) can push it past 1023. The reserve holds a few low descriptors open on /dev/null from
/// the first use; <see cref="Run{T}"/> frees one just before the native call that opens a socket,
/// so that socket lands on it.
/// </para>
/// </summary>
internal static class LowDescriptors
{
    private const int Reserve = 32;
    private const int Limit = 1024;
    private static readonly object Gate = new();
    private static Stack<SafeFd>? _reserve;

    /// <summary>
    /// Runs <paramref name="open"/> (which opens exactly one descriptor) with one reserved low
    /// descriptor freed for it. Other threads opening files at the same instant could take it;
    /// the lock keeps Relay's own native openers from racing each other.
    /// </summary>
    public static T Run<T>(Func<T> open)
    {
        lock (Gate)
        {
            _reserve ??= Fill();
            if (_reserve.TryPop(out var fd))
            {
                fd.Dispose();
            }
            var result = open();
            // Top the reserve up again with whatever low descriptors are free now.
            Refill(_reserve);
            return result;
        }
    }

    private static Stack<SafeFd> Fill()
    {
        var reserve = new Stack<SafeFd>();
        Refill(reserve);
        return reserve;
    }

    private static void Refill(Stack<SafeFd> reserve)
    {
        while (reserve.Count < Reserve)
        {
            var fd = SafeFd.OpenReadOnly("/dev/null");
            if (fd.Fd >= Limit)
            {
                fd.Dispose();
                return;
            }
            // Lowest descriptors last on the stack: they are handed out first.
            var all = reserve.Append(fd).OrderByDescending(f => f.Fd).ToArray();
            reserve.Clear();
            foreach (var f in all)
            {
                reserve.Push(f);
            }
        }
    }
}
