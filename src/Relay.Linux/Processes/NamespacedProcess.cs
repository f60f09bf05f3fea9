using System.Diagnostics;
using Relay.Linux.Namespaces;

namespace Relay.Linux.Processes;

/// <summary>
/// A process started inside a named network namespace with <c>ip netns exec</c>, which also
/// bind-mounts <c>/etc/netns/NS/*</c> over <c>/etc</c> (that is how an instance gets its own
/// resolv.conf). Its output is kept in a bounded buffer of recent lines.
/// </summary>
public sealed class NamespacedProcess : IDisposable
{
    /// <summary>Lines of output kept per process.</summary>
    public const int MaxLines = 1000;

    private readonly Process _process;
    private readonly Queue<string> _lines = new();
    private readonly object _gate = new();

    private NamespacedProcess(string netns, IReadOnlyList<string> command, Process process)
    {
        Namespace = netns;
        Command = command;
        _process = process;
    }

    /// <summary>The namespace it runs in.</summary>
    public string Namespace { get; }

    /// <summary>The command line.</summary>
    public IReadOnlyList<string> Command { get; }

    /// <summary>Its process id.</summary>
    public int Pid => _process.Id;

    /// <summary>True once it exited.</summary>
    public bool HasExited => _process.HasExited;

    /// <summary>Its exit code (after it exited).</summary>
    public int ExitCode => _process.ExitCode;

    /// <summary>Raised for each line of output (stdout and stderr), on a pool thread.</summary>
    public event Action<string>? Output;

    /// <summary>The most recent lines of output, oldest first.</summary>
    public IReadOnlyList<string> RecentOutput()
    {
        lock (_gate)
        {
            return _lines.ToArray();
        }
    }

    /// <summary>
    /// How a command runs in <paramref name="netns"/>: <c>ip netns exec NETNS COMMAND...</c> (which also
    /// bind-mounts /etc/netns/NETNS files such as its resolv.conf), with stdin, stdout and stderr
    /// redirected: the command never reads or writes Relay's own.
    /// </summary>
    public static ProcessStartInfo StartInfo(string netns, IReadOnlyList<string> command)
    {
        var psi = new ProcessStartInfo("ip")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add("netns");
        psi.ArgumentList.Add("exec");
        psi.ArgumentList.Add(netns);
        foreach (var a in command)
        {
            psi.ArgumentList.Add(a);
        }
        return psi;
    }

    /// <summary>Starts <paramref name="command"/> in <paramref name="netns"/>.</summary>
    public static NamespacedProcess Start(string netns, IReadOnlyList<string> command, Action<string>? onOutput = null)
    {
        if (command.Count == 0)
        {
            throw new ArgumentException("a command is required", nameof(command));
        }
        var process = new Process { StartInfo = StartInfo(netns, command), EnableRaisingEvents = true };
        var result = new NamespacedProcess(netns, command, process);
        if (onOutput is not null)
        {
            result.Output += onOutput;
        }
        process.OutputDataReceived += (_, e) => result.OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => result.OnLine(e.Data);
        process.Start();
        process.StandardInput.Close();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return result;
    }

    /// <summary>Waits for the process to exit.</summary>
    public Task WaitForExitAsync(CancellationToken cancellationToken = default) => _process.WaitForExitAsync(cancellationToken);

    /// <summary>
    /// Stops the process: SIGTERM, then after <paramref name="grace"/> SIGKILL. It waits for the
    /// process itself, not for its output pipes: a child it left behind may hold them open, and is
    /// stopped by <see cref="TerminateNamespaceAsync"/>.
    /// </summary>
    public async Task StopAsync(TimeSpan grace)
    {
        if (HasExited)
        {
            return;
        }
        Signal(_process.Id, 15);
        if (!await ExitedWithin(grace).ConfigureAwait(false))
        {
            Signal(_process.Id, 9);
            await ExitedWithin(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Stops every process in <paramref name="netns"/>: SIGTERM to all, SIGKILL to those still
    /// there after <paramref name="grace"/>. Returns how many were signalled.
    /// </summary>
    public static async Task<int> TerminateNamespaceAsync(string netns, TimeSpan grace)
    {
        var pids = Netns.Pids(netns).Where(p => p != Environment.ProcessId).ToArray();
        foreach (var pid in pids)
        {
            Signal(pid, 15);
        }
        var until = DateTime.UtcNow + grace;
        while (pids.Length > 0 && DateTime.UtcNow < until && Netns.Pids(netns).Count > 0)
        {
            await Task.Delay(10).ConfigureAwait(false);
        }
        KillNamespace(netns);
        return pids.Length;
    }

    private async Task<bool> ExitedWithin(TimeSpan timeout)
    {
        var until = DateTime.UtcNow + timeout;
        while (!HasExited)
        {
            if (DateTime.UtcNow >= until)
            {
                return false;
            }
            await Task.Delay(10).ConfigureAwait(false);
        }
        return true;
    }

    /// <summary>Sends SIGINT, as Ctrl-C would (ping prints its summary on it).</summary>
    public void Interrupt()
    {
        if (!_process.HasExited)
        {
            Signal(_process.Id, 2);
        }
    }

    /// <summary>Sends SIGKILL to every process whose network namespace is <paramref name="netns"/>.</summary>
    public static int KillNamespace(string netns)
    {
        var killed = 0;
        foreach (var pid in Netns.Pids(netns))
        {
            if (pid != Environment.ProcessId && Signal(pid, 9))
            {
                killed++;
            }
        }
        return killed;
    }

    /// <inheritdoc />
    public void Dispose() => _process.Dispose();

    private static bool Signal(int pid, int signal) => Interop.Libc.Kill(pid, signal) == 0;

    private void OnLine(string? line)
    {
        if (line is null)
        {
            return;
        }
        lock (_gate)
        {
            _lines.Enqueue(line);
            while (_lines.Count > MaxLines)
            {
                _lines.Dequeue();
            }
        }
        Output?.Invoke(line);
    }
}
