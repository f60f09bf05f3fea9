using System.ComponentModel;
using System.Diagnostics;
using System.Text;
using Relay.Linux.Processes;

namespace Relay.Engine.Health;

/// <summary>
/// Runs a command inside the instance with <c>ip netns exec</c> (so it also sees the instance's
/// <c>/etc/netns</c> files, as the instance's own command does); healthy when it exits 0 in time.
/// A command still running at the deadline is killed with everything it started, and reaped,
/// before the check returns.
/// </summary>
internal sealed class ExecProbe(string netns, IReadOnlyList<string> command) : BlockingProbe
{
    // Enough of the output to say why a check failed, not a log.
    private const int TailChars = 200;

    // Waits are cut into slices this long so a cancelled check (a disposed monitor) ends soon.
    private const int SliceMs = 50;

    // How long an exited check's output may still trickle in before it is given up.
    private const int OutputGraceMs = 100;

    // After SIGKILL a process is gone as soon as the kernel reaps it; this only bounds a stuck D state.
    private const int KillWaitMs = 5000;

    /// <inheritdoc />
    protected override string? Run(Deadline deadline, CancellationToken ct)
    {
        // A check must not read Relay's own stdin: it gets an empty one (closed below).
        using var process = new Process { StartInfo = NamespacedProcess.StartInfo(netns, command) };
        try
        {
            process.Start();
        }
        catch (Win32Exception e)
        {
            return "cannot start ip: " + e.Message;
        }
        try
        {
            process.StandardInput.Close();
        }
        catch (IOException)
        {
            // It exited before its stdin was closed: the exit code tells the rest.
        }
        var tail = new OutputTail();
        // Read both pipes ourselves (not BeginOutputReadLine): WaitForExit then waits for the
        // process only, not for pipe EOF, which a background child of the check could hold off.
        var readers = Task.WhenAll(tail.DrainAsync(process.StandardOutput), tail.DrainAsync(process.StandardError));

        // The exit is seen through .NET's SIGCHLD handling, not the pool: a wait in slices stays
        // prompt even when the pool is starved.
        while (!process.WaitForExit(deadline.SliceMilliseconds(SliceMs)))
        {
            if (ct.IsCancellationRequested || deadline.Passed)
            {
                Kill(process);
                ct.ThrowIfCancellationRequested();
                return ProbeSockets.TimeoutReason(deadline);
            }
        }
        var code = process.ExitCode;
        if (code == 0)
        {
            return null;
        }
        try
        {
            readers.Wait(OutputGraceMs, CancellationToken.None);
        }
        catch (AggregateException)
        {
            // The readers swallow pipe errors; nothing else is expected, and the code still tells.
        }
        var why = code > 128 && code < 160 ? $"exit code {code} (signal {code - 128})" : $"exit code {code}";
        var last = tail.LastLine();
        return last.Length == 0 ? why : $"{why}: {last}";
    }

    private static void Kill(Process process)
    {
        try
        {
            // ip netns exec execs the command itself, so the tree is the command and whatever it
            // started (a shell's children): SIGKILL to all of them, nothing left behind.
            process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
            // Exited between the deadline and the kill.
        }
        catch (Win32Exception)
        {
            // Same race, reported by the kill itself.
        }
        // Reaped before the check returns, so "the check is over" also means "the process is gone".
        process.WaitForExit(KillWaitMs);
    }

    /// <summary>The end of a check's stdout and stderr, interleaved as they arrive.</summary>
    private sealed class OutputTail
    {
        private readonly StringBuilder _text = new();

        public async Task DrainAsync(StreamReader reader)
        {
            var buffer = new char[1024];
            try
            {
                int n;
                while ((n = await reader.ReadAsync(buffer).ConfigureAwait(false)) > 0)
                {
                    lock (_text)
                    {
                        _text.Append(buffer, 0, n);
                        if (_text.Length > 4 * TailChars)
                        {
                            _text.Remove(0, _text.Length - 2 * TailChars);
                        }
                    }
                }
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException)
            {
                // The pipe went away with the process: whatever was read is enough.
            }
        }

        public string LastLine()
        {
            string text;
            lock (_text)
            {
                text = _text.ToString();
            }
            var line = text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault() ?? "";
            return line.Length <= TailChars ? line : line[..TailChars];
        }
    }
}
