using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Relay.Integration.Tests.Support;
using Relay.Linux.Processes;
using Xunit.Abstractions;

namespace Relay.Integration.Tests.Daemon;

/// <summary>
/// kill -9 of the real daemon while traffic flows through a virtual address, and while a
/// migration is being requested: no ping is lost, and after the restart the daemon and the kernel
/// agree on where the service is.
/// </summary>
public sealed class CrashTests(ITestOutputHelper output)
{
    private static string Desired(string network, bool serverCommand = false) => $"""
        networks:
          - name: {network}
        services:
          - network: {network}
            name: c.test
          - network: {network}
            name: s.test
        instances:
          - network: {network}
            service: c.test
            name: c-1
          - network: {network}
            service: s.test
            name: s-1
        {(serverCommand ? "    command: [sleep, \"3600\"]\n" : "")}
        """;

    [Fact]
    public async Task Kill9_of_the_daemon_under_a_ping_flood_loses_no_ping()
    {
        await using var bed = new DaemonBed();
        bed.Ok("apply", "-f", Live.Write(bed, "net.yaml", Desired(bed.Network, serverCommand: true)));
        var client = bed.InstanceNamespace("c-1");
        var server = bed.InstanceNamespace("s-1");
        var serverPid = Live.Instance(bed, "s-1").GetProperty("pid").GetInt32();
        var clientBefore = Live.Icmp(client)!;

        // The name resolves through the daemon's DNS to the service's virtual addresses; the
        // pings then go to those (-n: ping makes no DNS queries of its own, since the daemon's DNS
        // server is down with it). Both families, each one flow. -i 0.001 is at most 1000 per
        // second: 10,000 of them last at least 10 s, enough to cover the crash AND the restart
        // (the risky part: it adopts the table and may rewrite it).
        var service = Live.Service(bed, "s.test");
        var vip4 = service.GetProperty("vip4").GetString()!;
        var vip6 = service.GetProperty("vip6").GetString()!;
        Assert.Equal([vip4, vip6], new[] { "ahostsv4", "ahostsv6" }.Select(db => Sh.InNs(client, "getent", db, "s.test").Stdout.Split(' ')[0]));
        const int count = 10_000;
        using var ping4 = PingProcess.Start(client, "-q", "-n", "-c", count.ToString(CultureInfo.InvariantCulture), "-i", "0.001", vip4);
        using var ping6 = PingProcess.Start(client, "-q", "-n", "-c", count.ToString(CultureInfo.InvariantCulture), "-i", "0.001", vip6);
        var serverStart = Live.Icmp(server)!;
        Live.WaitUntil(() => Live.Icmp(server)! is var now && now.InEchos - serverStart.InEchos >= 500 && now.InEchos6 - serverStart.InEchos6 >= 500,
            TimeSpan.FromSeconds(60), () => $"the pings did not reach s-1: {Live.Icmp(server)}\n{ping4.Output}\n{ping6.Output}");

        bed.Kill9();
        var crashed = Stopwatch.StartNew();
        // With nobody watching, the kernel keeps forwarding.
        var atCrash = Live.Icmp(server)!;
        Live.WaitUntil(() => Live.Icmp(server)! is var now && now.InEchos - atCrash.InEchos >= 300 && now.InEchos6 - atCrash.InEchos6 >= 300,
            TimeSpan.FromSeconds(60), () => "no ping reached s-1 while the daemon was down");
        bed.Start();
        var downFor = crashed.Elapsed;
        var runningAfterRestart = !ping4.HasExited && !ping6.HasExited;

        var s4 = ping4.WaitForSummary(TimeSpan.FromSeconds(120));
        var s6 = ping6.WaitForSummary(TimeSpan.FromSeconds(120));
        Thread.Sleep(200);
        var clientAfter = Live.Icmp(client)!;
        var kernel = $"client kernel counters: IPv4 {clientAfter.OutEchos - clientBefore.OutEchos} requests / {clientAfter.InEchoReps - clientBefore.InEchoReps} replies, " +
            $"IPv6 {clientAfter.OutEchos6 - clientBefore.OutEchos6} / {clientAfter.InEchoReps6 - clientBefore.InEchoReps6}";
        output.WriteLine($"daemon down (kill -9 to API answering again) {downFor.TotalMilliseconds:0} ms");
        output.WriteLine($"ping -4: {s4.Transmitted} sent, {s4.Received} received; ping -6: {s6.Transmitted} sent, {s6.Received} received; {kernel}");

        Assert.True(runningAfterRestart, $"a ping ended before the daemon answered again ({downFor.TotalSeconds:0.0} s): the restart was not covered");
        Assert.True(s4.Transmitted == count && s4.Received == s4.Transmitted, $"IPv4 pings lost: {s4.Text}\n{kernel}\n{bed.DaemonLog}");
        Assert.True(s6.Transmitted == count && s6.Received == s6.Transmitted, $"IPv6 pings lost: {s6.Text}\n{kernel}\n{bed.DaemonLog}");

        // The restarted daemon took everything over as it was: same balancer, the same command
        // process (adopted, not restarted), and its DNS answers again.
        Assert.Equal(["s-1"], Live.Backends(bed, "s.test"));
        var s1 = Live.Instance(bed, "s-1");
        Assert.Equal(serverPid, s1.GetProperty("pid").GetInt32());
        Assert.Equal(0, s1.GetProperty("restarts").GetInt32());
        var again = Sh.InNs(client, "ping", "-4", "-c", "1", "-W", "5", "s.test");
        Assert.True(again.ExitCode == 0, again.Stdout + again.Stderr);
    }

    [Fact]
    public async Task Kill9_while_a_migration_is_requested_leaves_it_done_or_not_started_never_half_done()
    {
        await using var bed = new DaemonBed();
        bed.Ok("apply", "-f", Live.Write(bed, "net.yaml", Desired(bed.Network)));
        var client = bed.InstanceNamespace("c-1");
        var vip = Live.Vip4(bed, "s.test");
        var clientBefore = Live.Icmp(client)!;
        // One flow through the whole test: every crash, restart and migration.
        using var stream = PingProcess.Start(client, "-q", "-n", "-i", "0.001", vip);

        // When does a CLI request reach the daemon? About one CLI run after the process starts.
        var cli = Enumerable.Range(0, 3).Select(_ =>
        {
            var sw = Stopwatch.StartNew();
            bed.Ok("service", "ls");
            return sw.Elapsed.TotalMilliseconds;
        }).Order().ToArray()[1];
        output.WriteLine($"a CLI call takes {cli:0} ms");

        // Kill points spread from "request not sent yet" through "daemon at work" to "answered":
        // fractions of a CLI call, plus a few milliseconds of jitter so runs differ.
        double[] fractions = [0.2, 0.6, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.3];
        var current = "s-1";
        var outcomes = new List<string>();
        for (var k = 0; k < fractions.Length; k++)
        {
            var target = $"s-n{k}";
            bed.Ok("instance", "add", "s.test", "--name", target, "--standby");
            var delay = TimeSpan.FromMilliseconds(cli * fractions[k] + Random.Shared.Next(0, 8));

            var started = Stopwatch.StartNew();
            using var migrate = Process.Start(bed.Psi(["migrate", "s.test", "--to", target]))!;
            var stdout = migrate.StandardOutput.ReadToEndAsync();
            var stderr = migrate.StandardError.ReadToEndAsync();
            Live.SleepUntil(started, delay);
            var exitedBeforeKill = migrate.HasExited;
            var killedAt = started.Elapsed;
            bed.Kill9();
            Assert.True(migrate.WaitForExit(TimeSpan.FromSeconds(60)), "relay migrate did not end after the daemon died");
            migrate.WaitForExit();
            var answered = migrate.ExitCode == 0;
            var rewrites = Regex.Count(bed.DaemonLog, "table rewritten: True");
            bed.Start();
            // For the record only: the restore found the kernel ahead of the store (the kill landed
            // between a kernel change and its store write: the re-point, or the old instance's removal).
            var kernelAhead = Regex.Count(bed.DaemonLog, "table rewritten: True") > rewrites;

            // The daemon's view: exactly one of the two serves the service.
            var backends = Live.Backends(bed, "s.test");
            Assert.True(backends.Length == 1 && (backends[0] == current || backends[0] == target),
                $"after kill -9 at {killedAt.TotalMilliseconds:0} ms the service is on [{string.Join(", ", backends)}], expected {current} or {target}\n{bed.DaemonLog}");
            var on = backends[0];
            var done = on == target;
            // A migration the client was told succeeded is never undone.
            Assert.True(!answered || done, $"relay migrate succeeded ({await stdout}) but after the restart the service is on {on}");
            var instances = Live.Instances(bed).ToDictionary(i => i.GetProperty("name").GetString()!, StringComparer.Ordinal);
            Assert.Equal("active", instances[on].GetProperty("state").GetString());
            if (done)
            {
                // The old instance only drains (nothing to drain here), then goes.
                if (instances.TryGetValue(current, out var old))
                {
                    Assert.True(old.GetProperty("state").GetString() == "draining", $"{current} is {old} after the migration to {target} completed");
                }
                Live.WaitUntil(() => !Live.Instances(bed).Any(i => i.GetProperty("name").GetString() == current) && !Relay.Linux.Namespaces.Netns.Exists(bed.InstanceNamespace(current)),
                    TimeSpan.FromSeconds(60), () => $"{current} was not removed after the migration");
                Live.AssertPingsLandOn(client, vip, bed.InstanceNamespace(target), []);
            }
            else
            {
                Assert.Equal("standby", instances[target].GetProperty("state").GetString());
                Live.AssertPingsLandOn(client, vip, bed.InstanceNamespace(current), [bed.InstanceNamespace(target)]);
                bed.Ok("instance", "rm", target, "--drain", "0", "--wait");
            }
            var outcome = $"kill at {killedAt.TotalMilliseconds:0} ms: {(done ? "completed" : "not started")}" +
                $"{(kernelAhead ? " (the kernel was ahead of the store: table rewritten)" : "")}" +
                $"{(answered ? ", client got the answer" : exitedBeforeKill ? ", client had finished" : ", client got an error")}";
            outcomes.Add(outcome);
            var said = (await stderr).Trim().Split('\n')[0];
            output.WriteLine(outcome + (said.Length > 0 ? $" ({said})" : ""));
            current = on;
            Assert.True(!stream.HasExited, $"the ping stream ended: {stream.Output}");
        }

        stream.Interrupt();
        var summary = stream.WaitForSummary(TimeSpan.FromSeconds(30));
        // ping counts a request still in flight when it is interrupted as lost; the client's
        // kernel counts each request sent and each reply received, whenever ping reads it.
        Thread.Sleep(300);
        var clientAfter = Live.Icmp(client)!;
        var requests = clientAfter.OutEchos - clientBefore.OutEchos;
        var replies = clientAfter.InEchoReps - clientBefore.InEchoReps;
        output.WriteLine($"ping stream: {summary.Transmitted} sent, {summary.Received} received (ping's view); client kernel: {requests} requests, {replies} replies");
        Assert.True(summary.Transmitted > 1000, summary.Text);
        Assert.True(summary.Transmitted - summary.Received <= 1, $"pings lost: {summary.Text}");
        Assert.True(requests == replies, $"pings lost: {requests} echo requests left the client, {replies} replies came back\n{summary.Text}\n{string.Join("\n", outcomes)}");
    }
    /// <summary>
    /// The worst moment, hit on purpose rather than by chance: strace kills the daemon at its first
    /// file write after the request arrived, i.e. after the migration's nft transaction and its
    /// conntrack cleanup, before anything reached the store. The kernel then says "new", the store
    /// "old"; the restart must converge the kernel to the store, flows included.
    /// </summary>
    [Fact]
    public async Task Kill9_between_a_migrations_kernel_change_and_its_store_write_converges_to_the_store()
    {
        var strace = new[] { "/usr/bin/strace", "/bin/strace" }.FirstOrDefault(File.Exists);
        Assert.True(strace is not null, "this test needs strace (Debian package strace) to kill the daemon at an exact system call");
        await using var bed = new DaemonBed();
        bed.Ok("apply", "-f", Live.Write(bed, "net.yaml", Desired(bed.Network)));
        bed.Ok("instance", "add", "s.test", "--name", "s-new", "--standby");
        var client = bed.InstanceNamespace("c-1");
        var oldNs = bed.InstanceNamespace("s-1");
        var newNs = bed.InstanceNamespace("s-new");
        var vip = Live.Vip4(bed, "s.test");
        var clientBefore = Live.Icmp(client)!;
        using var stream = PingProcess.Start(client, "-q", "-n", "-i", "0.002", vip);
        var start = Live.Icmp(oldNs)!.InEchos;
        Live.WaitUntil(() => Live.Icmp(oldNs)!.InEchos - start >= 100, TimeSpan.FromSeconds(30), () => "the stream does not reach s-1");

        // SIGKILL at the first pwrite64 of any thread: the daemon writes files only when an
        // operation records what it did (its record file, then SQLite), so that is this one.
        var psi = new ProcessStartInfo(strace!) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in new[] { "-f", "-p", bed.DaemonPid.ToString(CultureInfo.InvariantCulture), "-e", "trace=pwrite64", "-e", "inject=pwrite64:signal=SIGKILL", "-o", "/dev/null" })
        {
            psi.ArgumentList.Add(a);
        }
        using var tracer = Process.Start(psi)!;
        var attached = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var traceLog = new StringBuilder();
        tracer.ErrorDataReceived += (_, e) =>
        {
            lock (traceLog)
            {
                traceLog.AppendLine(e.Data);
            }
            if (e.Data?.Contains("attached", StringComparison.Ordinal) == true)
            {
                attached.TrySetResult();
            }
        };
        tracer.BeginErrorReadLine();
        await attached.Task.WaitAsync(TimeSpan.FromSeconds(30));
        Thread.Sleep(500); // every thread

        var migrate = bed.RunCli(["migrate", "s.test", "--to", "s-new"], TimeSpan.FromSeconds(60));
        Assert.True(tracer.WaitForExit(TimeSpan.FromSeconds(30)), "the daemon was not killed: " + traceLog);
        bed.Kill9(); // reap it
        output.WriteLine($"relay migrate exited {migrate.ExitCode}: {migrate.Stderr.Split('\n')[0]}");
        Assert.NotEqual(0, migrate.ExitCode);

        // The kernel had moved: with nobody running, the stream reaches the new instance.
        var atCrash = Live.Icmp(newNs)!.InEchos;
        Live.WaitUntil(() => Live.Icmp(newNs)!.InEchos - atCrash >= 100, TimeSpan.FromSeconds(30),
            () => "the kill did not land between the re-point and the store write: the stream is not on s-new");

        bed.Start();

        // The store never heard of the migration: the service is on s-1, s-new is a standby,
        // and the kernel agrees, the stream that had moved included.
        Assert.Equal(["s-1"], Live.Backends(bed, "s.test"));
        Assert.Equal("standby", Live.Instance(bed, "s-new").GetProperty("state").GetString());
        Live.AssertPingsLandOn(client, vip, oldNs, [newNs]);
        // And the migration can be asked for again, and completes.
        bed.Ok("migrate", "s.test", "--to", "s-new");
        Assert.Equal(["s-new"], Live.Backends(bed, "s.test"));
        Live.WaitUntil(() => !Relay.Linux.Namespaces.Netns.Exists(oldNs), TimeSpan.FromSeconds(60), () => "s-1 was not removed");
        Live.AssertPingsLandOn(client, vip, newNs, []);

        stream.Interrupt();
        var summary = stream.WaitForSummary(TimeSpan.FromSeconds(30));
        Thread.Sleep(300);
        var clientAfter = Live.Icmp(client)!;
        output.WriteLine($"ping stream: {summary.Transmitted} sent, {summary.Received} received; client kernel: {clientAfter.OutEchos - clientBefore.OutEchos} requests, {clientAfter.InEchoReps - clientBefore.InEchoReps} replies");
        Assert.True(clientAfter.OutEchos - clientBefore.OutEchos == clientAfter.InEchoReps - clientBefore.InEchoReps, $"pings lost: {summary.Text}");
    }
}

/// <summary>What the tests of the real daemon share: its JSON views, kernel counters, waiting.</summary>
internal static class Live
{
    public static string Write(DaemonBed bed, string name, string text)
    {
        var path = Path.Combine(bed.Directory, name);
        File.WriteAllText(path, text);
        return path;
    }

    public static JsonElement[] Services(DaemonBed bed) => Array(bed.Ok("service", "ls", "-o", "json"));

    public static JsonElement[] Instances(DaemonBed bed) => Array(bed.Ok("instance", "ls", "-o", "json"));

    public static JsonElement Instance(DaemonBed bed, string name)
        => Instances(bed).Single(i => i.GetProperty("name").GetString() == name);

    public static JsonElement Service(DaemonBed bed, string name)
        => Services(bed).Single(s => s.GetProperty("name").GetString() == name);

    public static string Vip4(DaemonBed bed, string service) => Service(bed, service).GetProperty("vip4").GetString()!;

    public static string[] Backends(DaemonBed bed, string service)
        => Service(bed, service).GetProperty("backends").EnumerateArray().Select(b => b.GetString()!).ToArray();

    /// <summary>The daemon's recent events (relay events -o json).</summary>
    public static JsonElement[] Events(DaemonBed bed)
        => bed.Ok("events", "-o", "json").Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToArray();

    /// <summary>Polls <paramref name="condition"/> every 50 ms; fails with <paramref name="what"/> after <paramref name="timeout"/>.</summary>
    public static void WaitUntil(Func<bool> condition, TimeSpan timeout, Func<string> what)
    {
        var sw = Stopwatch.StartNew();
        while (!condition())
        {
            if (sw.Elapsed > timeout)
            {
                Assert.Fail($"waited {timeout.TotalSeconds:0} s: {what()}");
            }
            Thread.Sleep(50);
        }
    }

    /// <summary>Sleeps until <paramref name="clock"/> shows <paramref name="at"/> (spinning for the last milliseconds).</summary>
    public static void SleepUntil(Stopwatch clock, TimeSpan at)
    {
        while (at - clock.Elapsed > TimeSpan.FromMilliseconds(3))
        {
            Thread.Sleep(1);
        }
        while (clock.Elapsed < at)
        {
            Thread.SpinWait(100);
        }
    }

    /// <summary>ICMP echo counters of a namespace (null when it does not exist).</summary>
    public static IcmpCounters? Icmp(string netns)
    {
        var r = Sh.InNs(netns, "cat", "/proc/net/snmp", "/proc/net/snmp6");
        if (r.ExitCode != 0)
        {
            return null;
        }
        var lines = r.Stdout.Split('\n');
        var header = lines.First(l => l.StartsWith("Icmp: InMsgs", StringComparison.Ordinal)).Split(' ');
        var values = lines.First(l => l.StartsWith("Icmp: ", StringComparison.Ordinal) && char.IsDigit(l[6])).Split(' ');
        long V4(string name) => long.Parse(values[System.Array.IndexOf(header, name)], CultureInfo.InvariantCulture);
        long V6(string name) => long.Parse(lines.First(l => l.StartsWith(name + " ", StringComparison.Ordinal)).Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
        return new IcmpCounters(V4("InEchos"), V4("InEchoReps"), V4("OutEchos"),
            V6("Icmp6InEchos"), V6("Icmp6InEchoReplies"), V6("Icmp6OutEchos"));
    }

    /// <summary>
    /// The kernel agrees with the daemon: 50 pings from <paramref name="client"/> to
    /// <paramref name="vip"/> (a new flow) and whatever else flows to it all reach
    /// <paramref name="expected"/>, none reaches <paramref name="others"/>, none is lost.
    /// </summary>
    public static void AssertPingsLandOn(string client, string vip, string expected, IReadOnlyList<string> others)
    {
        var before = others.Select(o => Icmp(o)!.InEchos).ToArray();
        var target = Icmp(expected)!.InEchos;
        var r = Sh.InNs(client, "ping", "-q", "-n", "-c", "50", "-i", "0.005", "-W", "5", vip);
        var ping = PingSummary.Parse(r.Stdout);
        Thread.Sleep(100);
        var after = others.Select(o => Icmp(o)!.InEchos).ToArray();
        var landed = Icmp(expected)!.InEchos - target;
        Assert.True(ping.Transmitted == 50 && ping.Received == 50, $"pings to {vip} lost: {r.Stdout}{r.Stderr}");
        Assert.True(landed >= 50, $"{expected} received {landed} echo requests of the 50 sent to {vip}");
        for (var i = 0; i < others.Count; i++)
        {
            Assert.True(after[i] == before[i], $"{others[i]} received {after[i] - before[i]} echo requests sent to {vip}; only {expected} should");
        }
    }

    private static JsonElement[] Array(string json)
    {
        using var doc = JsonDocument.Parse(json);
        return doc.RootElement.EnumerateArray().Select(e => e.Clone()).ToArray();
    }
}

/// <summary>ICMP echo counters of one namespace, both families (/proc/net/snmp and snmp6).</summary>
internal sealed record IcmpCounters(long InEchos, long InEchoReps, long OutEchos, long InEchos6, long InEchoReps6, long OutEchos6);

/// <summary>ping's summary line.</summary>
internal sealed partial record PingSummary(long Transmitted, long Received, string Text)
{
    public static PingSummary Parse(string text)
    {
        var m = SummaryLine().Match(text);
        Assert.True(m.Success, "no ping summary in:\n" + text);
        return new PingSummary(long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), long.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture), text);
    }

    [GeneratedRegex(@"(\d+) packets transmitted, (\d+) received")]
    private static partial Regex SummaryLine();
}

/// <summary>A ping running inside a namespace (ip netns exec execs it: the pid is ping's).</summary>
internal sealed class PingProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private readonly TaskCompletionSource _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private PingProcess(Process process)
    {
        _process = process;
    }

    public static PingProcess Start(string netns, params string[] args)
    {
        var psi = new ProcessStartInfo("ip") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "netns", "exec", netns, "ping" }.Concat(args))
        {
            psi.ArgumentList.Add(a);
        }
        var ping = new PingProcess(Process.Start(psi)!);
        ping._process.OutputDataReceived += (_, e) => ping.Append(e.Data, stdout: true);
        ping._process.ErrorDataReceived += (_, e) => ping.Append(e.Data, stdout: false);
        ping._process.BeginOutputReadLine();
        ping._process.BeginErrorReadLine();
        return ping;
    }

    public bool HasExited => _process.HasExited;

    /// <summary>Everything it printed so far (stdout and stderr).</summary>
    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    /// <summary>Its output lines.</summary>
    public string[] Lines => Output.Split('\n', StringSplitOptions.RemoveEmptyEntries);

    /// <summary>SIGINT: ping stops and prints its summary.</summary>
    public void Interrupt() => Signals.Send(_process.Id, 2);

    /// <summary>Waits for it to end (and for all its output); its summary.</summary>
    public PingSummary WaitForSummary(TimeSpan timeout)
    {
        if (!_process.WaitForExit(timeout))
        {
            Assert.Fail($"ping did not end within {timeout.TotalSeconds:0} s:\n{Output}");
        }
        _process.WaitForExit();
        _closed.Task.Wait(TimeSpan.FromSeconds(10));
        return PingSummary.Parse(Output);
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            _process.WaitForExit();
        }
        _process.Dispose();
    }

    private void Append(string? line, bool stdout)
    {
        if (line is null)
        {
            if (stdout)
            {
                _closed.TrySetResult();
            }
            return;
        }
        lock (_output)
        {
            _output.AppendLine(line);
        }
    }
}
