using System.Diagnostics;
using System.Text.Json;
using Relay.Cluster.Lab;
using Relay.Integration.Tests.Daemon;
using Relay.Integration.Tests.Support;
using Relay.Linux.Namespaces;

namespace Relay.Integration.Tests.Cluster;

/// <summary>
/// Real relay daemons on three lab hosts, joined as nodes through the lab's etcd cluster, driven
/// with the built relay binary as a user would (<c>--socket</c> picks the host).
/// </summary>
// Lab processes (etcd, daemons) start through `ip netns exec` while other tests add and delete
// namespaces: run them apart from the parallel tests.
[Collection(HostStateCollection.Name)]
public sealed class ClusterDaemonTests
{
    [Fact]
    public async Task LabDaemons_SeeEveryNode_KeepTheirNamespacesApart_AndSeeANodeGo()
    {
        var lab = await LabCluster.UpAsync(new LabOptions
        {
            Name = LabFixture.UniqueName(), Hosts = 3, Root = LabFixture.Root, HeartbeatMs = 50, ElectionMs = 500,
            RelayBinary = DaemonBed.Binary, LeaseTtl = TimeSpan.FromSeconds(2),
        });
        string[] orchestrators = [.. lab.Hosts.Take(2).Select(h => $"relay-default@{h.Name}")];
        try
        {
            var nodes = Nodes(lab, 0);
            Assert.Equal(lab.Hosts.Select(h => h.Name), nodes.Select(n => n.GetProperty("name").GetString()));
            Assert.All(nodes, n => Assert.Equal("ready", n.GetProperty("state").GetString()));
            Assert.True(nodes[0].GetProperty("self").GetBoolean());
            Assert.Equal(lab.Hosts[1].Underlay4, nodes[1].GetProperty("underlay").GetString());

            using (var status = JsonDocument.Parse(Ok(lab, 1, "status", "-o", "json")))
            {
                var cluster = status.RootElement.GetProperty("cluster");
                Assert.Equal(lab.Hosts[1].Name, cluster.GetProperty("node").GetString());
                Assert.True(cluster.GetProperty("watchConnected").GetBoolean());
                var members = cluster.GetProperty("members").EnumerateArray().ToList();
                Assert.Equal(3, members.Count);
                Assert.Single(members, m => m.GetProperty("leader").GetBoolean());
            }

            // The same network on two hosts of one machine: names carry the node, nothing collides.
            foreach (var host in new[] { 0, 1 })
            {
                Ok(lab, host, "service", "add", "b.com");
                Ok(lab, host, "instance", "add", "b.com");
            }
            Assert.All(orchestrators, o => Assert.True(Netns.Exists(o), o));
            Assert.Equal(1, Nodes(lab, 0)[0].GetProperty("instances").GetInt32());

            // A node whose daemon dies is seen to go by the others once its lease expires.
            LabCluster.KillDaemon(lab.Hosts[2]);
            var clock = Stopwatch.StartNew();
            while (Nodes(lab, 0)[2].GetProperty("state").GetString() != "lost")
            {
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(6), "node 3 still ready 6 s after its daemon was killed (lease TTL 2 s)");
                await Task.Delay(100);
            }
            Assert.InRange(clock.Elapsed.TotalSeconds, 0, 3.5);
        }
        finally
        {
            LabCluster.Down(lab, Relay.Engine.NetworkRecord.RemoveAll);
        }
        Assert.All(orchestrators, o => Assert.False(Netns.Exists(o), o + " left behind"));
        Assert.DoesNotContain(Netns.List(), n => n.Contains(lab.Name, StringComparison.Ordinal));
    }

    [Fact]
    public void Daemon_WithBadClusterOptions_ListsEveryErrorAndStartsNothing()
    {
        var socket = Path.Combine(Path.GetTempPath(), LabFixture.UniqueName() + ".sock");
        var r = Sh.Run(DaemonBed.Binary, "daemon", "--socket", socket, "--etcd", "etcd.example:2379", "--underlay", "not-an-address", "--lease-ttl", "0s");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("--etcd[0]", r.Stderr);
        Assert.Contains("--node", r.Stderr);
        Assert.Contains("--underlay", r.Stderr);
        Assert.Contains("--lease-ttl", r.Stderr);
        Assert.DoesNotContain("   at ", r.Stderr);
        Assert.False(File.Exists(socket));
    }

    private static List<JsonElement> Nodes(LabRecord lab, int host)
    {
        using var doc = JsonDocument.Parse(Ok(lab, host, "node", "ls", "-o", "json"));
        return doc.RootElement.EnumerateArray().Select(e => e.Clone()).ToList();
    }

    private static string Ok(LabRecord lab, int host, params string[] args)
    {
        var r = Sh.Run(DaemonBed.Binary, ["--socket", lab.Hosts[host].Socket, .. args]);
        Assert.True(r.ExitCode == 0, $"relay {string.Join(' ', args)} on {lab.Hosts[host].Name} exited {r.ExitCode}: {r.Stderr}{r.Stdout}");
        return r.Stdout;
    }
}
