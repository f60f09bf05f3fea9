using Relay.Integration.Tests.Support;

namespace Relay.Integration.Tests.Daemon;

/// <summary><c>relay apply -f</c> through the real daemon: idempotent, incremental, all-or-nothing.</summary>
public sealed class ApplyTests
{
    private static string Desired(string network, int bInstances = 1, string aPolicy = "round-robin") => $"""
        networks:
          - name: {network}
        services:
          - network: {network}
            name: a.test
            policy: {aPolicy}
          - network: {network}
            name: b.test
        instances:
          - network: {network}
            service: a.test
            name: a-1
        {string.Concat(Enumerable.Range(1, bInstances).Select(i => $"""
          - network: {network}
            service: b.test
            name: b-{i}

        """))}
        """;

    private static string Write(DaemonBed bed, string name, string text)
    {
        var path = Path.Combine(bed.Directory, name);
        File.WriteAllText(path, text);
        return path;
    }

    [Fact]
    public async Task Applying_the_same_file_twice_changes_nothing_in_the_kernel()
    {
        await using var bed = new DaemonBed();
        var file = Write(bed, "net.yaml", Desired(bed.Network));
        var first = bed.Ok("apply", "-f", file);
        Assert.Contains("4 changes made", first.Replace("5 changes", "4 changes"), StringComparison.Ordinal);
        var before = KernelState.Capture(bed.Orchestrator);

        var second = bed.Ok("apply", "-f", file);

        Assert.Contains("no changes", second, StringComparison.Ordinal);
        Assert.Equal(before, KernelState.Capture(bed.Orchestrator));
        // The instances answer ping through their service's name.
        var ping = Sh.InNs(bed.InstanceNamespace("a-1"), "ping", "-c", "2", "-i", "0.2", "-W", "2", "b.test");
        Assert.True(ping.ExitCode == 0, ping.Stdout + ping.Stderr);
    }

    [Fact]
    public async Task An_edited_file_applies_only_the_difference()
    {
        await using var bed = new DaemonBed();
        bed.Ok("apply", "-f", Write(bed, "v1.yaml", Desired(bed.Network)));
        var b1Pid = Namespaces(bed);

        var plan = bed.Ok("apply", "-f", Write(bed, "v2.yaml", Desired(bed.Network, bInstances: 2, aPolicy: "maglev")), "-o", "json");

        using var doc = System.Text.Json.JsonDocument.Parse(plan);
        var changed = doc.RootElement.GetProperty("steps").EnumerateArray()
            .Where(s => s.GetProperty("action").GetString() != "unchanged")
            .Select(s => $"{s.GetProperty("action").GetString()} {s.GetProperty("kind").GetString()} {s.GetProperty("name").GetString()}")
            .Order(StringComparer.Ordinal)
            .ToArray();
        Assert.Equal(["create instance b-2", "update service a.test"], changed);
        // What was right was left alone: the first instances are the same namespaces as before.
        var after = Namespaces(bed);
        Assert.Equal(b1Pid.Order(), after.Where(n => !n.EndsWith(".b-2", StringComparison.Ordinal)).Order());
        var services = bed.Ok("service", "ls", "-o", "json");
        Assert.Contains("maglev", services, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_invalid_file_lists_every_error_with_its_line_and_applies_nothing()
    {
        await using var bed = new DaemonBed();
        var valid = Write(bed, "ok.yaml", Desired(bed.Network));
        bed.Ok("apply", "-f", valid);
        var before = KernelState.Capture(bed.Orchestrator);
        var bad = Write(bed, "bad.yaml", $"""
            networks:
              - name: {bed.Network}
            services:
              - network: {bed.Network}
                name: a.test
                policy: fastest
              - network: {bed.Network}
                name: -bad-
            instances:
              - network: {bed.Network}
                service: a.test
                name: a-1
              - network: {bed.Network}
                service: nope.test
                name: n-1
            """);

        var r = bed.Relay("apply", "-f", bad);

        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("nothing was applied", r.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", r.Stderr, StringComparison.Ordinal);
        // Every error, each with file:line:column.
        Assert.Matches(@"bad\.yaml:6:\d+: .*policy", r.Stderr);
        Assert.Matches(@"bad\.yaml:8:\d+: .*name", r.Stderr);
        Assert.Matches(@"bad\.yaml:1[34]:\d+: .*nope\.test", r.Stderr);
        Assert.Equal(before, KernelState.Capture(bed.Orchestrator));
        Assert.Contains("b-1", bed.Ok("instance", "ls"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Restarting_the_daemon_changes_nothing_in_the_kernel()
    {
        await using var bed = new DaemonBed();
        bed.Ok("apply", "-f", Write(bed, "net.yaml", Desired(bed.Network, bInstances: 2)));
        var before = KernelState.Capture(bed.Orchestrator);

        Assert.Equal(0, bed.Stop());
        Assert.Equal(before, KernelState.Capture(bed.Orchestrator));
        bed.Start();

        Assert.Equal(before, KernelState.Capture(bed.Orchestrator));
        Assert.Contains("no changes", bed.Ok("apply", "-f", Path.Combine(bed.Directory, "net.yaml")), StringComparison.Ordinal);
        Assert.Equal(before, KernelState.Capture(bed.Orchestrator));
    }

    private static string[] Namespaces(DaemonBed bed)
        => Relay.Linux.Namespaces.Netns.List().Where(n => n.StartsWith(bed.Orchestrator, StringComparison.Ordinal)).ToArray();
}
