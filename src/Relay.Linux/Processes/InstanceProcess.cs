using System.Diagnostics;
using System.Globalization;
using Relay.Linux.Namespaces;

namespace Relay.Linux.Processes;

/// <summary>
/// The command of an instance: started inside the instance's namespace with its output appended
/// to a log file (not a pipe), so that it outlives the process that started it. A daemon that is
/// killed and restarted finds the command still running and adopts it by pid and start time; a
/// pipe would have broken and killed the command with SIGPIPE at its next write.
/// </summary>
public sealed class InstanceProcess : IDisposable
{
    /// <summary>A log file larger than this is emptied when the command (re)starts.</summary>
    public const long MaxLogBytes = 16 << 20;

    private readonly Process? _child;
    private readonly TaskCompletionSource<int?> _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _stopWatching = new();

    private InstanceProcess(string netns, IReadOnlyList<string> command, string logFile, int pid, long startTime, Process? child)
    {
        Namespace = netns;
        Command = command;
        LogFile = logFile;
        Pid = pid;
        StartTime = startTime;
        _child = child;
        if (child is not null)
        {
            _ = WatchChild(child);
        }
        else
        {
            _ = WatchAdopted();
        }
    }

    /// <summary>The namespace it runs in.</summary>
    public string Namespace { get; }

    /// <summary>The command line.</summary>
    public IReadOnlyList<string> Command { get; }

    /// <summary>Where its stdout and stderr go.</summary>
    public string LogFile { get; }

    /// <summary>Its process id.</summary>
    public int Pid { get; }

    /// <summary>Its start time in clock ticks since boot (/proc/PID/stat field 22): with the pid, its identity.</summary>
    public long StartTime { get; }

    /// <summary>True when this process started it (its exit code is then known).</summary>
    public bool IsChild => _child is not null;

    /// <summary>Completes when it exits, with its exit code when known (null for an adopted process).</summary>
    public Task<int?> Exited => _exited.Task;

    /// <summary>True once it exited.</summary>
    public bool HasExited => _exited.Task.IsCompleted;

    /// <summary>
    /// Starts <paramref name="command"/> in <paramref name="netns"/>, output appended to
    /// <paramref name="logFile"/>, with <paramref name="environment"/> added to the daemon's.
    /// </summary>
    public static InstanceProcess Start(string netns, IReadOnlyList<string> command, string logFile, IReadOnlyDictionary<string, string>? environment = null)
    {
        if (command.Count == 0)
        {
            throw new ArgumentException("a command is required", nameof(command));
        }
        Directory.CreateDirectory(Path.GetDirectoryName(logFile)!);
        var info = new FileInfo(logFile);
        if (info.Exists && info.Length > MaxLogBytes)
        {
            File.WriteAllText(logFile, $"[relay: log truncated at {DateTime.UtcNow:O}]\n");
        }
        // sh only sets up the redirections and execs: the pid we get is ip's, which execs the
        // command itself, so in the end it is the command's. stdin is /dev/null.
        var psi = new ProcessStartInfo("/bin/sh") { UseShellExecute = false };
        foreach (var a in new[] { "-c", "exec \"$@\" </dev/null >>\"$0\" 2>&1", logFile, "ip", "netns", "exec", netns }.Concat(command))
        {
            psi.ArgumentList.Add(a);
        }
        foreach (var (key, value) in environment ?? new Dictionary<string, string>())
        {
            psi.Environment[key] = value;
        }
        var process = Process.Start(psi) ?? throw new InvalidOperationException("could not start /bin/sh");
        return new InstanceProcess(netns, command, logFile, process.Id, ProcStartTime(process.Id) ?? 0, process);
    }

    /// <summary>
    /// Takes over a command started earlier (by another run of the daemon): null unless process
    /// <paramref name="pid"/> is alive, has the same start time and runs in <paramref name="netns"/>.
    /// </summary>
    public static InstanceProcess? Adopt(string netns, IReadOnlyList<string> command, string logFile, int pid, long startTime)
    {
        if (ProcStartTime(pid) != startTime || !Netns.Pids(netns).Contains(pid))
        {
            return null;
        }
        return new InstanceProcess(netns, command, logFile, pid, startTime, null);
    }

    /// <summary>The last <paramref name="lines"/> lines of its log.</summary>
    public IReadOnlyList<string> RecentOutput(int lines = 200) => Tail(LogFile, lines);

    /// <summary>The last <paramref name="lines"/> lines of <paramref name="file"/> (reads at most the last 256 KB).</summary>
    public static IReadOnlyList<string> Tail(string file, int lines)
    {
        if (!File.Exists(file))
        {
            return [];
        }
        using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        var start = Math.Max(0, stream.Length - (256 << 10));
        stream.Seek(start, SeekOrigin.Begin);
        using var reader = new StreamReader(stream);
        var all = reader.ReadToEnd().Split('\n');
        var list = all.Take(all.Length - (all[^1].Length == 0 ? 1 : 0)).Skip(start > 0 ? 1 : 0).ToArray();
        return list.Skip(Math.Max(0, list.Length - lines)).ToArray();
    }

    /// <summary>SIGTERM, then SIGKILL after <paramref name="grace"/>; waits for the exit.</summary>
    public async Task StopAsync(TimeSpan grace)
    {
        if (HasExited)
        {
            return;
        }
        Interop.Libc.Kill(Pid, 15);
        if (await Task.WhenAny(Exited, Task.Delay(grace)).ConfigureAwait(false) != Exited)
        {
            Interop.Libc.Kill(Pid, 9);
            await Task.WhenAny(Exited, Task.Delay(TimeSpan.FromSeconds(5))).ConfigureAwait(false);
        }
    }

    /// <summary>Stops watching (the process itself is left alone: a daemon restart adopts it).</summary>
    public void Dispose()
    {
        _stopWatching.Cancel();
        _child?.Dispose();
    }

    /// <summary>Field 22 of /proc/PID/stat, or null when there is no such process.</summary>
    public static long? ProcStartTime(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            // The command name (field 2) is in parentheses and may contain spaces: count after it.
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return long.Parse(fields[19], CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException)
        {
            return null;
        }
    }

    private async Task WatchChild(Process child)
    {
        try
        {
            await child.WaitForExitAsync(_stopWatching.Token).ConfigureAwait(false);
            _exited.TrySetResult(child.ExitCode);
        }
        catch (OperationCanceledException)
        {
        }
    }

    private async Task WatchAdopted()
    {
        try
        {
            // Not our child: nothing signals its exit, so look every quarter second.
            while (ProcStartTime(Pid) == StartTime && !IsZombie(Pid))
            {
                await Task.Delay(250, _stopWatching.Token).ConfigureAwait(false);
            }
            _exited.TrySetResult(null);
        }
        catch (OperationCanceledException)
        {
        }
    }

    private static bool IsZombie(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[stat.LastIndexOf(')') + 2] == 'Z';
        }
        catch (IOException)
        {
            return true;
        }
    }
}
