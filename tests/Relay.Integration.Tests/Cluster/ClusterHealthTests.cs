using System.Diagnostics;
using System.Text.Json;
using Relay.Cluster.Lab;
using Relay.Integration.Tests.Daemon;
using Relay.Integration.Tests.Support;
using Xunit.Abstractions;
using static Relay.Integration.Tests.Cluster.ClusterDaemonTests;

namespace Relay.Integration.Tests.Cluster;

/// <summary>
/// Health checks in a cluster: each instance's node runs its check and writes the verdict; every
/// node's balancers follow it, as a single host's does (only the healthy take flows; when none is
/// healthy, all do).
/// </summary>
[Collection(HostStateCollection.Name)]
public sealed class ClusterHealthTests(ITestOutputHelper output)
{
    [Fact]
    public async Task AnInstanceWhoseCheckFails_LeavesEveryNodesBalancer_AndComesBackWhenItPasses()
    {
        var lab = await LabFixture.UpWithDaemonsAsync(TimeSpan.FromSeconds(2));
        var h = lab.Hosts.Select(x => x.Name).ToArray();
        Process? listener = null;
        try
        {
            Ok(lab, 0, "service", "add", "a.com");
            Ok(lab, 0, "service", "add", "h.com");
            Ok(lab, 0, "instance", "add", "a.com", "--node", h[0]);
            // h-1 on host 2 listens on the checked port; h-2 on host 3 does not (yet).
            Ok(lab, 0, "instance", "add", "h.com", "--node", h[1], "--restart", "never", "--health-tcp", "8080", "--health-interval", "200ms", "--health-timeout", "200ms",
                "--", "socat", "TCP-LISTEN:8080,fork,reuseaddr", "SYSTEM:true");
            Ok(lab, 0, "instance", "add", "h.com", "--node", h[2], "--health-tcp", "8080", "--health-interval", "200ms", "--health-timeout", "200ms", "--", "sleep", "3600");

            // Every node's view: h-1 healthy and in the balancer, h-2 unhealthy and out.
            await LabFixture.Until(() => Seen(lab, 0, "h-1") == ("healthy", true) && Seen(lab, 0, "h-2") == ("unhealthy", false)
                && Seen(lab, 2, "h-1") == ("healthy", true) && Seen(lab, 2, "h-2") == ("unhealthy", false), TimeSpan.FromSeconds(10), "h-1 healthy, h-2 unhealthy, on hosts 1 and 3");
            var a = $"relay-default@{h[0]}.a-1";
            Assert.Equal(0, Sh.InNs(a, "ping", "-c", "3", "-i", "0.2", "-W", "2", "h.com").ExitCode);

            // h-2 starts to listen: it passes and joins the balancers.
            listener = Process.Start(new ProcessStartInfo("ip", ["netns", "exec", $"relay-default@{h[2]}.h-2", "socat", "TCP-LISTEN:8080,fork,reuseaddr", "SYSTEM:true"]))!;
            await LabFixture.Until(() => Seen(lab, 0, "h-2") == ("healthy", true) && Seen(lab, 1, "h-2") == ("healthy", true), TimeSpan.FromSeconds(10), "h-2 healthy and in host 1's and host 2's balancers");

            // h-1's listener dies (restart never): h-1 fails its check and leaves every balancer.
            var pid = Instances(lab, 1).Single(i => i.GetProperty("name").GetString() == "h-1").GetProperty("pid").GetInt32();
            Sh.Run("kill", "-9", pid.ToString(System.Globalization.CultureInfo.InvariantCulture));
            var clock = Stopwatch.StartNew();
            await LabFixture.Until(() => Seen(lab, 0, "h-1") == ("unhealthy", false) && Seen(lab, 2, "h-1") == ("unhealthy", false), TimeSpan.FromSeconds(10), "h-1 unhealthy and out on hosts 1 and 3");
            output.WriteLine($"h-1 out of every balancer {clock.ElapsedMilliseconds} ms after its listener died (3 failed checks at 200 ms)");
            Assert.Equal(0, Sh.InNs(a, "ping", "-c", "3", "-i", "0.2", "-W", "2", "h.com").ExitCode);

            // Removing an instance removes its verdict with it.
            Ok(lab, 0, "instance", "rm", "h-1", "--drain", "0");
            await LabFixture.Until(() => Instances(lab, 0).All(i => i.GetProperty("name").GetString() != "h-1"), TimeSpan.FromSeconds(10), "h-1 gone");
            using var etcd = LabCluster.Connect(lab, 0);
            Assert.Null(await etcd.GetAsync(Relay.Cluster.ClusterKeys.Health("default", "h-1")));

            // A migration to a fresh instance (no --to) keeps the check: the fresh one is checked too
            // (it runs 'sleep' like h-2, so it fails; being the only one, it takes the flows anyway).
            using var migrated = JsonDocument.Parse(Ok(lab, 0, "migrate", "h.com", "--from", "h-2", "--drain", "0", "-o", "json"));
            var fresh = migrated.RootElement.GetProperty("to").GetString()!;
            await LabFixture.Until(() => Seen(lab, 0, fresh) == ("unhealthy", true), TimeSpan.FromSeconds(10), $"{fresh} checked (unhealthy) and, alone, in the balancer");
        }
        finally
        {
            if (listener is { HasExited: false })
            {
                listener.Kill();
            }
            listener?.Dispose();
            LabCluster.Down(lab, Relay.Engine.NetworkRecord.RemoveAll);
        }
    }

    /// <summary>An instance's health and whether it takes flows, as host <paramref name="host"/>'s daemon sees them.</summary>
    private static (string?, bool) Seen(LabRecord lab, int host, string instance)
    {
        var i = Instances(lab, host).SingleOrDefault(x => x.GetProperty("name").GetString() == instance);
        return i.ValueKind != JsonValueKind.Object ? (null, false)
            : (i.GetProperty("health").GetString(), i.TryGetProperty("inBalancer", out var b) && b.GetBoolean());
    }
}
