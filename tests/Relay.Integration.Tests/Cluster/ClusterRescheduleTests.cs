using System.Diagnostics;
using Relay.Cluster.Lab;
using Relay.Integration.Tests.Support;
using Xunit.Abstractions;
using static Relay.Integration.Tests.Cluster.ClusterDaemonTests;

namespace Relay.Integration.Tests.Cluster;

/// <summary><c>relay daemon --reschedule-after</c>: a lost node's instances wait that long before they start elsewhere.</summary>
[Collection(HostStateCollection.Name)]
public sealed class ClusterRescheduleTests(ITestOutputHelper output)
{
    [Fact]
    public async Task ALostNodesInstances_LeaveTheBalancerAtOnce_ButStartElsewhereOnlyAfterTheGracePeriod()
    {
        var grace = TimeSpan.FromSeconds(4);
        var lab = await LabFixture.UpWithDaemonsAsync(TimeSpan.FromSeconds(2), grace);
        try
        {
            Ok(lab, 0, "service", "add", "c.com");
            // Added through host 3's daemon: on host 3, not pinned, restart policy on-failure.
            Ok(lab, 2, "instance", "add", "c.com", "--name", "c-1", "--", "sleep", "1000");
            Ok(lab, 0, "instance", "add", "c.com", "--name", "c-2", "--node", lab.Hosts[0].Name, "--", "sleep", "1000");

            // Seen lost by host 2, the node that moves c-1 (it has the fewest instances) and times the
            // grace from when it saw host 3 go: asked over its API every 20 ms. A CLI process per
            // poll (hundreds of ms on a loaded machine) made the moment seen late by up to a second.
            using var api = new Relay.Integration.Tests.Daemon.ApiClient(lab.Hosts[1].Socket);
            LabCluster.KillDaemon(lab.Hosts[2]);
            var clock = Stopwatch.StartNew();
            while (true)
            {
                var nodes = await api.SendAsync("GET", "v1/nodes", null, null);
                using var doc = System.Text.Json.JsonDocument.Parse(nodes.Body);
                if (doc.RootElement.EnumerateArray().Any(n => n.GetProperty("name").GetString() == lab.Hosts[2].Name && n.GetProperty("state").GetString() == "lost"))
                {
                    break;
                }
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(8), "not within 8 s: host 3 lost");
                await Task.Delay(20);
            }
            var lost = clock.Elapsed;
            using (var service = System.Text.Json.JsonDocument.Parse(Ok(lab, 0, "service", "ls", "-o", "json")))
            {
                Assert.Equal(["c-2"], service.RootElement[0].GetProperty("backends").EnumerateArray().Select(b => b.GetString()));
            }
            // Within the grace period c-1 stays on the lost node.
            await Task.Delay(grace / 2);
            Assert.Equal(lab.Hosts[2].Name, Instances(lab, 0).Single(i => i.GetProperty("name").GetString() == "c-1").GetProperty("node").GetString());
            // Then it starts again on a live node.
            await LabFixture.Until(() => Instances(lab, 0).Single(i => i.GetProperty("name").GetString() == "c-1").GetProperty("node").GetString() != lab.Hosts[2].Name,
                grace + TimeSpan.FromSeconds(6), "c-1 started elsewhere after the grace period");
            var moved = clock.Elapsed;
            output.WriteLine($"host 3 lost after {lost.TotalMilliseconds:F0} ms; c-1 moved after {moved.TotalMilliseconds:F0} ms (grace {grace.TotalSeconds} s)");
            Assert.True(moved - lost >= grace - TimeSpan.FromMilliseconds(500), $"c-1 moved {(moved - lost).TotalMilliseconds:F0} ms after the node was seen lost, within its {grace.TotalSeconds} s grace");
        }
        finally
        {
            LabCluster.Down(lab, Relay.Engine.NetworkRecord.RemoveAll);
        }
    }
}
