using System.Diagnostics;
using System.Net.Sockets;
using Relay.Cli.Client;

namespace Relay.Cli.Demo;

/// <summary>
/// A relay daemon of the demo's own (its own socket and store under /run/relay/demo), started as a
/// child process of this binary, so the demo never disturbs a daemon the user runs, and stopped
/// (SIGTERM) and cleaned when the demo ends.
/// </summary>
internal sealed class DemoDaemon : IAsyncDisposable
{
    private const string Root = "/run/relay/demo";
    private readonly Process _process;
    private readonly StreamWriter _log;

    private DemoDaemon(Process process, string socket, StreamWriter log)
    {
        _process = process;
        Socket = socket;
        _log = log;
    }

    /// <summary>Its API socket.</summary>
    public string Socket { get; }

    /// <summary>Starts the daemon and waits until it answers.</summary>
    public static async Task<DemoDaemon> StartAsync(TextWriter output, CancellationToken ct)
    {
        var socket = Path.Combine(Root, "relay.sock");
        var state = Path.Combine(Root, "state");
        // A previous demo that was killed may have left its store; its networks would be restored.
        if (Directory.Exists(state) && !File.Exists(socket))
        {
            Directory.Delete(state, recursive: true);
        }
        Directory.CreateDirectory(Root);
        var log = Path.Combine(Root, "daemon.log");
        var psi = new ProcessStartInfo(Environment.ProcessPath!) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "daemon", "--socket", socket, "--state-dir", state })
        {
            psi.ArgumentList.Add(a);
        }
        var process = Process.Start(psi) ?? throw new CliException("could not start the relay daemon");
        var writer = new StreamWriter(log) { AutoFlush = true };
        process.OutputDataReceived += (_, e) => Write(writer, e.Data);
        process.ErrorDataReceived += (_, e) => Write(writer, e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var daemon = new DemoDaemon(process, socket, writer);
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (!Answers(socket))
        {
            if (process.HasExited || DateTime.UtcNow > until)
            {
                await daemon.DisposeAsync().ConfigureAwait(false);
                throw new CliException($"the relay daemon did not start; its log ({log}):\n" + string.Join('\n', File.ReadLines(log).TakeLast(20)));
            }
            await Task.Delay(50, ct).ConfigureAwait(false);
        }
        output.WriteLine($"relay: relay daemon --socket {socket} (pid {process.Id}, log {log})");
        return daemon;
    }

    /// <summary>Stops the daemon (SIGTERM) and removes its store and socket.</summary>
    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            Relay.Linux.Processes.Signals.Send(_process.Id, Relay.Linux.Processes.Signals.Terminate);
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(15));
            try
            {
                await _process.WaitForExitAsync(cts.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                _process.Kill();
            }
        }
        _process.Dispose();
        lock (_log)
        {
            _log.Dispose();
        }
        var state = Path.Combine(Root, "state");
        if (Directory.Exists(state))
        {
            Directory.Delete(state, recursive: true);
        }
        File.Delete(Socket);
    }

    private static void Write(StreamWriter writer, string? line)
    {
        if (line is null)
        {
            return;
        }
        lock (writer)
        {
            try
            {
                writer.WriteLine(line);
            }
            catch (ObjectDisposedException)
            {
                // The demo has ended; the daemon's last words after SIGKILL are dropped.
            }
        }
    }

    private static bool Answers(string socket)
    {
        if (!File.Exists(socket))
        {
            return false;
        }
        using var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            s.Connect(new UnixDomainSocketEndPoint(socket));
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }
}
