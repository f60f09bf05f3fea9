using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using Relay.Integration.Tests.Support;
using Relay.Linux.Processes;
using Xunit.Abstractions;

namespace Relay.Integration.Tests.Daemon;

/// <summary>
/// Through the real daemon: instance commands restarted as their policy says (also across a
/// kill -9 of the daemon), and an instance failing its health check leaving the balancer fast
/// enough that a ping stream resumes on a healthy instance within 500 ms.
/// </summary>
public sealed partial class HealthAndRestartTests(ITestOutputHelper output)
{
    private static string Instance(string network, string name, string restart, string script) => $"""
          - network: {network}
            service: r.test
            name: {name}
            restart: {restart}
            command: [sh, "-c", "{script}"]

        """;

    private static string Network(string network, string service, string instances) => $"""
        networks:
          - name: {network}
        services:
          - network: {network}
            name: {service}
        instances:
        {instances}
        """;

    [Fact]
    public async Task An_instance_command_that_exits_is_restarted_as_its_policy_says()
    {
        await using var bed = new DaemonBed();
        var n = bed.Network;
        bed.Ok("apply", "-f", Live.Write(bed, "net.yaml", Network(n, "r.test",
            Instance(n, "r-fail", "on-failure", "echo run; sleep 1; exit 3")
            + Instance(n, "r-always", "always", "echo run; sleep 1; exit 0")
            + Instance(n, "r-never", "never", "echo run; sleep 1; exit 3")
            + Instance(n, "r-clean", "on-failure", "echo run; sleep 1; exit 0"))));

        // Backoff 1 s, then 2 s: the second restart comes about 5 s after the start.
        var sw = Stopwatch.StartNew();
        Live.WaitUntil(() => Live.Instances(bed).Where(i => i.GetProperty("name").GetString() is "r-fail" or "r-always").All(i => i.GetProperty("restarts").GetInt32() >= 2),
            TimeSpan.FromSeconds(90), () => string.Join("\n", Live.Instances(bed)));
        output.WriteLine($"two restarts each after {sw.Elapsed.TotalSeconds:0.0} s");
        // r-never and r-clean exited at the same time as the others' first run: had they been
        // restarted, it would have been long ago.
        var instances = Live.Instances(bed).ToDictionary(i => i.GetProperty("name").GetString()!, StringComparer.Ordinal);
        foreach (var name in new[] { "r-never", "r-clean" })
        {
            Assert.Equal(0, instances[name].GetProperty("restarts").GetInt32());
            Assert.False(instances[name].TryGetProperty("pid", out _), $"{name} runs again: {instances[name]}");
            Assert.Equal(["run"], bed.Ok("instance", "logs", name).Split('\n', StringSplitOptions.RemoveEmptyEntries));
        }
        foreach (var name in new[] { "r-fail", "r-always" })
        {
            // Each restart really ran the command again.
            var runs = bed.Ok("instance", "logs", name).Split('\n', StringSplitOptions.RemoveEmptyEntries).Count(l => l == "run");
            Assert.True(runs >= 3, $"{name} ran {runs} times");
        }

        // The events say what happened and why.
        var events = Live.Events(bed);
        string? Data(JsonElement e, string key) => e.GetProperty("data").TryGetProperty(key, out var v) ? v.GetString() : null;
        JsonElement[] Of(string instance, string kind) => events.Where(e => e.GetProperty("subject").GetString() == instance && e.GetProperty("kind").GetString() == kind).ToArray();
        var neverExit = Assert.Single(Of("r-never", "instance.exited"));
        Assert.Equal("3", Data(neverExit, "exitCode"));
        Assert.Equal("false", Data(neverExit, "restart")?.ToLowerInvariant());
        Assert.Empty(Of("r-never", "instance.started"));
        var cleanExit = Assert.Single(Of("r-clean", "instance.exited"));
        Assert.Equal("0", Data(cleanExit, "exitCode"));
        Assert.Equal("false", Data(cleanExit, "restart")?.ToLowerInvariant());
        Assert.All(Of("r-fail", "instance.exited"), e => Assert.Equal(("3", "true"), (Data(e, "exitCode"), Data(e, "restart")?.ToLowerInvariant())));
        Assert.All(Of("r-always", "instance.exited"), e => Assert.Equal(("0", "true"), (Data(e, "exitCode"), Data(e, "restart")?.ToLowerInvariant())));
        Assert.True(Of("r-fail", "instance.started").Length >= 2);
        Assert.True(Of("r-always", "instance.started").Length >= 2);
    }

    [Fact]
    public async Task Restart_policies_hold_across_a_kill9_of_the_daemon()
    {
        await using var bed = new DaemonBed();
        var n = bed.Network;
        bed.Ok("apply", "-f", Live.Write(bed, "net.yaml", Network(n, "r.test",
            Instance(n, "p-fail", "on-failure", "echo run; exec sleep 3600")
            + Instance(n, "p-never", "never", "echo run; exec sleep 3600")
            + Instance(n, "n-done", "never", "echo run; exit 3")
            + Instance(n, "q-fail", "on-failure", "echo run; exec sleep 3600")
            + Instance(n, "q-never", "never", "echo run; exec sleep 3600"))));
        Live.WaitUntil(() => !Live.Instance(bed, "n-done").TryGetProperty("pid", out _), TimeSpan.FromSeconds(30), () => "n-done's command did not exit");
        var pids = Live.Instances(bed).Where(i => i.TryGetProperty("pid", out _)).ToDictionary(i => i.GetProperty("name").GetString()!, i => i.GetProperty("pid").GetInt32());
        Assert.Equal(["p-fail", "p-never", "q-fail", "q-never"], pids.Keys.Order());

        bed.Kill9();
        // These two end while nobody watches.
        foreach (var name in new[] { "q-fail", "q-never" })
        {
            Signals.Send(pids[name], Signals.Terminate);
            var pid = pids[name];
            Live.WaitUntil(() => !File.Exists($"/proc/{pid}/stat") || File.ReadAllText($"/proc/{pid}/stat").Split(") ")[1][0] == 'Z',
                TimeSpan.FromSeconds(10), () => $"{name}'s command did not end");
            pids.Remove(name);
        }
        bed.Start();

        // The command that ended while the daemon was down: restarted if its policy says so (its
        // exit code is unknown: a failure), counted as a restart; with never, it stays down.
        var qFail = Live.Instance(bed, "q-fail");
        Assert.True(qFail.TryGetProperty("pid", out _) && qFail.GetProperty("restarts").GetInt32() == 1, $"q-fail: {qFail}");
        var qNever = Live.Instance(bed, "q-never");
        Assert.True(!qNever.TryGetProperty("pid", out _) && qNever.GetProperty("restarts").GetInt32() == 0, $"q-never (restart: never) runs again after the restart: {qNever}");

        // The running commands are adopted, not started again; the one that had ended stays ended.
        foreach (var (name, pid) in pids)
        {
            var i = Live.Instance(bed, name);
            Assert.Equal(pid, i.GetProperty("pid").GetInt32());
            Assert.Equal(0, i.GetProperty("restarts").GetInt32());
        }
        var done = Live.Instance(bed, "n-done");
        Assert.False(done.TryGetProperty("pid", out _), $"n-done (restart: never, exited before the crash) runs again after the restart: {done}");

        // Adopted commands are not the daemon's children: their exit is seen all the same (as
        // zombies here, where nobody reaps orphans) and the policy applies.
        foreach (var pid in pids.Values)
        {
            Signals.Send(pid, Signals.Terminate);
        }
        Live.WaitUntil(() => Live.Instance(bed, "p-fail") is var i && i.GetProperty("restarts").GetInt32() >= 1 && i.TryGetProperty("pid", out var p) && p.GetInt32() != pids["p-fail"],
            TimeSpan.FromSeconds(60), () => $"p-fail was not restarted: {Live.Instance(bed, "p-fail")}\n{bed.DaemonLog}");
        Live.WaitUntil(() => !Live.Instance(bed, "p-never").TryGetProperty("pid", out _),
            TimeSpan.FromSeconds(30), () => $"p-never's exit was not seen: {Live.Instance(bed, "p-never")}");
        // Give a wrong restart of p-never time to happen (p-fail's came after 1 s of backoff).
        Thread.Sleep(2000);
        var never = Live.Instance(bed, "p-never");
        Assert.False(never.TryGetProperty("pid", out _), $"p-never was restarted: {never}");
        Assert.Equal(0, never.GetProperty("restarts").GetInt32());
        Assert.Equal(["run"], bed.Ok("instance", "logs", "p-never").Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal(["run"], bed.Ok("instance", "logs", "n-done").Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal(2, bed.Ok("instance", "logs", "p-fail").Split('\n', StringSplitOptions.RemoveEmptyEntries).Count(l => l == "run"));
        Assert.Equal(2, bed.Ok("instance", "logs", "q-fail").Split('\n', StringSplitOptions.RemoveEmptyEntries).Count(l => l == "run"));
        Assert.Equal(["run"], bed.Ok("instance", "logs", "q-never").Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Fact]
    public async Task A_ping_stream_resumes_on_a_healthy_instance_within_500ms_of_a_failure()
    {
        await using var bed = new DaemonBed();
        var n = bed.Network;
        var checkedInstances = string.Concat(new[] { "h-1", "h-2", "h-3" }.Select(name => $"""
              - network: {n}
                service: h.test
                name: {name}
                health:
                  type: icmp
                  interval: 100ms
                  unhealthyThreshold: 2

            """));
        bed.Ok("apply", "-f", Live.Write(bed, "net.yaml", $"""
            networks:
              - name: {n}
            services:
              - network: {n}
                name: c.test
              - network: {n}
                name: h.test
            instances:
              - network: {n}
                service: c.test
                name: c-1
            {checkedInstances}
            """));
        var healthy = new List<string> { "h-1", "h-2", "h-3" };
        Live.WaitUntil(() => Live.Instances(bed).Where(i => i.GetProperty("service").GetString() == "h.test")
                .All(i => i.GetProperty("health").GetString() == "healthy" && i.GetProperty("inBalancer").GetBoolean()),
            TimeSpan.FromSeconds(60), () => string.Join("\n", Live.Instances(bed)));
        var vip = Live.Vip4(bed, "h.test");
        var client = bed.InstanceNamespace("c-1");

        // One flow, a request every 10 ms, each line stamped with the time (-D), missing answers
        // reported (-O). It stays on its instance (conntrack) until that instance fails.
        using var ping = PingProcess.Start(client, "-D", "-O", "-n", "-i", "0.01", "-c", "100000", vip);
        var rounds = new List<(string Instance, string How, double Down0, double Down1)>();
        // Round 1: the instance's link goes down. Round 2: the instance that took the flow stops
        // answering (it is up, but ignores echo requests), then recovers and rejoins.
        foreach (var how in new[] { "link down", "ignores echo requests" })
        {
            var receiver = Receiver(healthy);
            var ns = bed.InstanceNamespace(receiver);
            var down0 = Now();
            var r = how == "link down"
                ? Sh.Run("ip", "-n", ns, "link", "set", "eth0", "down")
                : Sh.InNs(ns, "sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=1");
            var down1 = Now();
            Assert.True(r.ExitCode == 0, r.Stderr);
            rounds.Add((receiver, how, down0, down1));
            healthy.Remove(receiver);
            Live.WaitUntil(() => Live.Instance(bed, receiver) is var i && i.GetProperty("health").GetString() == "unhealthy" && !i.GetProperty("inBalancer").GetBoolean(),
                TimeSpan.FromSeconds(30), () => $"{receiver} did not leave the balancer: {Live.Instance(bed, receiver)}");
            // Let the stream run on the new instance for a while.
            Thread.Sleep(1000);
            Assert.False(ping.HasExited, ping.Output);
        }
        var second = rounds[1].Instance;
        Assert.True(Sh.InNs(bed.InstanceNamespace(second), "sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=0").ExitCode == 0);
        Live.WaitUntil(() => Live.Instance(bed, second) is var i && i.GetProperty("health").GetString() == "healthy" && i.GetProperty("inBalancer").GetBoolean(),
            TimeSpan.FromSeconds(30), () => $"{second} did not rejoin the balancer after it recovered: {Live.Instance(bed, second)}");
        ping.Interrupt();
        ping.WaitForSummary(TimeSpan.FromSeconds(30));

        var replies = ping.Lines.Select(l => Reply().Match(l)).Where(m => m.Success)
            .Select(m => double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture)).ToArray();
        var unanswered = ping.Lines.Count(l => l.Contains("no answer yet", StringComparison.Ordinal));
        var gaps = new List<double>();
        for (var k = 0; k < rounds.Count; k++)
        {
            var (instance, how, down0, down1) = rounds[k];
            var end = k + 1 < rounds.Count ? rounds[k + 1].Down0 : double.MaxValue;
            var before = replies.Where(t => t <= down1).DefaultIfEmpty(double.NaN).Max();
            Assert.False(double.IsNaN(before), "no reply before the failure:\n" + ping.Output);
            var window = replies.Where(t => t >= down0 - 0.2 && t < end).Prepend(before).Order().ToArray();
            Assert.True(window.Any(t => t > down1 + 0.6), $"round {k + 1} ({instance} {how}): the stream did not resume:\n{ping.Output}");
            // The outage is the largest gap between two replies around the failure.
            var gap = window.Zip(window.Skip(1), (a, b) => b - a).Max() * 1000;
            gaps.Add(gap);
            output.WriteLine($"round {k + 1}: {instance} {how}: the stream resumed on a healthy instance after {gap:0} ms without a reply");
        }
        output.WriteLine($"{replies.Length} replies, {unanswered} requests reported unanswered in all");
        Assert.All(gaps, g => Assert.True(g < 500, $"the stream stood still for {g:0} ms (gaps: {string.Join(", ", gaps.Select(x => x.ToString("0", CultureInfo.InvariantCulture)))} ms)"));

        string Receiver(IReadOnlyList<string> candidates)
        {
            var before = candidates.Select(c => Live.Icmp(bed.InstanceNamespace(c))!.InEchos).ToArray();
            Thread.Sleep(1500);
            var deltas = candidates.Select((c, i) => Live.Icmp(bed.InstanceNamespace(c))!.InEchos - before[i]).ToArray();
            var order = deltas.Select((d, i) => (d, i)).OrderByDescending(x => x.d).ToArray();
            // Health checks send 10 per second to each; the stream 100 per second to one.
            Assert.True(order[0].d - order[1].d >= 50, $"no instance of h.test takes the stream: {string.Join(", ", candidates.Zip(deltas))}\n{ping.Output}");
            return candidates[order[0].i];
        }
    }

    private static double Now() => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 1000.0;

    [GeneratedRegex(@"^\[(\d+\.\d+)\] \d+ bytes from ")]
    private static partial Regex Reply();
}
