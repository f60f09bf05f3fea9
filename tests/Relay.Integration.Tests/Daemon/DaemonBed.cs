using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using Relay.Integration.Tests.Support;
using Relay.Linux.Processes;

namespace Relay.Integration.Tests.Daemon;

/// <summary>
/// A real <c>relay daemon</c> process (the built CLI binary) for one test: its own socket, store and
/// record directory under /tmp, and a unique network name. <see cref="Relay(string[])"/> runs the
/// CLI as a user would (RELAY_SOCKET and RELAY_NETWORK point it at this daemon and network).
/// DisposeAsync runs <c>relay down</c>, stops the daemon and removes what its records list, even
/// when the test failed.
/// </summary>
public sealed class DaemonBed : IAsyncDisposable
{
    private readonly StringBuilder _log = new();
    private Process? _daemon;

    public DaemonBed()
    {
        Directory = Path.Combine("/tmp", TestNetwork.UniqueName("relay-d"));
        System.IO.Directory.CreateDirectory(Directory);
        Network = TestNetwork.UniqueName("d");
        Start();
    }

    /// <summary>The built relay binary (same configuration as this test assembly).</summary>
    public static string Binary { get; } = FindBinary();

    /// <summary>The repository's root.</summary>
    public static string RepositoryRoot { get; } = FindRoot();

    public string Directory { get; }

    public string Socket => Path.Combine(Directory, "relay.sock");

    public string StateDirectory => Path.Combine(Directory, "state");

    public string RecordDirectory => Path.Combine(Directory, "records");

    /// <summary>The network this test's commands default to (RELAY_NETWORK).</summary>
    public string Network { get; }

    /// <summary>The orchestrator namespace of <see cref="Network"/>.</summary>
    public string Orchestrator => "relay-" + Network;

    public int DaemonPid => _daemon?.Id ?? 0;

    /// <summary>What the daemon printed so far.</summary>
    public string DaemonLog
    {
        get
        {
            lock (_log)
            {
                return _log.ToString();
            }
        }
    }

    /// <summary>Starts the daemon (again) and waits until its socket answers.</summary>
    public void Start()
    {
        var psi = Psi(["daemon", "--state-dir", StateDirectory, "--record-dir", RecordDirectory]);
        _daemon = Process.Start(psi)!;
        _daemon.OutputDataReceived += (_, e) => Append(e.Data);
        _daemon.ErrorDataReceived += (_, e) => Append(e.Data);
        _daemon.BeginOutputReadLine();
        _daemon.BeginErrorReadLine();
        var until = Stopwatch.StartNew();
        while (!Answers(Socket))
        {
            if (_daemon.HasExited || until.Elapsed > TimeSpan.FromSeconds(30))
            {
                throw new InvalidOperationException($"relay daemon did not start (exit {(_daemon.HasExited ? _daemon.ExitCode : -1)}):\n{DaemonLog}");
            }
            Thread.Sleep(20);
        }
    }

    /// <summary>kill -9 the daemon and reap it.</summary>
    public void Kill9()
    {
        var d = _daemon!;
        Signals.Send(d.Id, Signals.Kill);
        d.WaitForExit();
        d.Dispose();
        _daemon = null;
    }

    /// <summary>SIGTERM the daemon and wait until it has exited; returns its exit code.</summary>
    public int Stop()
    {
        var d = _daemon!;
        Signals.Send(d.Id, Signals.Terminate);
        if (!d.WaitForExit(TimeSpan.FromSeconds(20)))
        {
            d.Kill();
            d.WaitForExit();
        }
        var code = d.ExitCode;
        d.Dispose();
        _daemon = null;
        return code;
    }

    /// <summary>Runs <c>relay ARGS</c> against this daemon and network.</summary>
    public Sh.Result Relay(params string[] args) => RunCli(args, TimeSpan.FromSeconds(60));

    /// <summary>Runs <c>relay ARGS</c> and requires exit code 0; returns stdout.</summary>
    public string Ok(params string[] args)
    {
        var r = Relay(args);
        Assert.True(r.ExitCode == 0, $"relay {string.Join(' ', args)} exited {r.ExitCode}:\n{r.Stderr}{r.Stdout}");
        return r.Stdout;
    }

    /// <summary>Runs <c>relay ARGS</c> with a time limit.</summary>
    public Sh.Result RunCli(IReadOnlyList<string> args, TimeSpan timeout, string? stdin = null)
    {
        var psi = Psi(args);
        psi.RedirectStandardInput = stdin is not null;
        using var p = Process.Start(psi)!;
        if (stdin is not null)
        {
            p.StandardInput.Write(stdin);
            p.StandardInput.Close();
        }
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeout))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"relay {string.Join(' ', args)} did not finish in {timeout}");
        }
        p.WaitForExit();
        return new Sh.Result(p.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>A start description for the relay binary with this bed's environment.</summary>
    public ProcessStartInfo Psi(IEnumerable<string> args)
    {
        var psi = new ProcessStartInfo(Binary)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = RepositoryRoot,
        };
        psi.Environment["RELAY_SOCKET"] = Socket;
        psi.Environment["RELAY_NETWORK"] = Network;
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        return psi;
    }

    /// <summary>The namespace of an instance of <see cref="Network"/>.</summary>
    public string InstanceNamespace(string instance) => $"{Orchestrator}.{instance}";

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (_daemon is { HasExited: false })
            {
                RunCli(["down"], TimeSpan.FromSeconds(60));
                Stop();
            }
        }
        finally
        {
            // Whatever the daemon could not remove, its records name.
            RunCli(["down", "--state-dir", StateDirectory, "--record-dir", RecordDirectory], TimeSpan.FromSeconds(60));
            _daemon?.Dispose();
            try
            {
                System.IO.Directory.Delete(Directory, recursive: true);
            }
            catch (IOException)
            {
            }
        }
        await Task.CompletedTask;
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }
        lock (_log)
        {
            _log.AppendLine(line);
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

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Relay.slnx")))
            {
                return dir.FullName;
            }
        }
        throw new InvalidOperationException("the repository root (Relay.slnx) is not above " + AppContext.BaseDirectory);
    }

    private static string FindBinary()
    {
        // tests/Relay.Integration.Tests/bin/<Configuration>/net10.0/
        var configuration = new DirectoryInfo(AppContext.BaseDirectory).Parent!.Name;
        var path = Path.Combine(FindRoot(), "src", "Relay.Cli", "bin", configuration, "net10.0", "relay");
        return File.Exists(path) ? path : throw new InvalidOperationException($"{path} is missing: build the solution first");
    }
}
