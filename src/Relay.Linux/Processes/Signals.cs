using Relay.Linux.Interop;

namespace Relay.Linux.Processes;

/// <summary>Sending POSIX signals to processes by pid (Process.Kill only sends SIGKILL).</summary>
public static class Signals
{
    /// <summary>SIGTERM: ask a process to stop cleanly.</summary>
    public const int Terminate = 15;

    /// <summary>SIGKILL.</summary>
    public const int Kill = 9;

    /// <summary>Sends <paramref name="signal"/> to <paramref name="pid"/>; false if there is no such process.</summary>
    public static bool Send(int pid, int signal) => Libc.Kill(pid, signal) == 0;
}
