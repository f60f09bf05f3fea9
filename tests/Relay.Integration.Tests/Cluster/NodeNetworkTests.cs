using System.Collections.Immutable;
using System.Diagnostics;
using System.Net;
using System.Text.RegularExpressions;
using Relay.Cluster.Lab;
using Relay.Core.LoadBalancing;
using Relay.Core.Reconcile;
using Relay.Engine;
using Relay.Engine.Cluster;
using Relay.Integration.Tests.Support;
using Relay.Linux.Namespaces;

namespace Relay.Integration.Tests.Cluster;

/// <summary>
/// The reconciler on three lab hosts, fed one shared desired state: each node's kernel gets the same
/// service maps, its own instances' namespaces and the overlay to the others; a name resolves and
/// answers across hosts, and a re-point in the state moves a running ping to another host's instance.
/// </summary>
[Collection(HostStateCollection.Name)]
public sealed partial class NodeNetworkTests(LabFixture lab) : IClassFixture<LabFixture>
{
    private static readonly IPAddress Vip4 = IPAddress.Parse("10.65.0.10");
    private static readonly IPAddress Vip6 = IPAddress.Parse("fd00:65::10");

    [Fact]
    public void SharedState_PingByNameAcrossHosts_V4AndV6_ThenARepointMovesARunningPingToAnotherHost()
    {
        var network = "t" + Guid.NewGuid().ToString("N")[..6];
        var dir = Path.Combine(Path.GetTempPath(), "relay-test-nodes", network);
        var hosts = lab.Lab.Hosts.Take(3).ToArray();
        var nodes = new List<NodeNetwork>();
        try
        {
            foreach (var h in hosts)
            {
                nodes.Add(NodeNetwork.Open(Options(network, h.Name, dir), IPAddress.Parse(h.Underlay4), h.Namespace));
            }
            var state = Base(network, hosts) with
            {
                Revision = 1,
                Services = Map(Svc("a.com"), Svc("b.com", Vip4, Vip6, "b-1")),
                Instances = Map(Inst("a-1", "a.com", hosts[0].Name, 2), Inst("b-1", "b.com", hosts[1].Name, 66)),
            };
            ReconcileAll(nodes, state);

            // Same maps everywhere; each node wires only its own instances.
            var a = nodes[0].InstanceNamespace("a-1");
            Assert.True(Netns.Exists(a));
            Assert.False(Netns.Exists(nodes[1].InstanceNamespace("a-1")));
            Assert.True(Netns.Exists(nodes[1].InstanceNamespace("b-1")));
            foreach (var n in nodes)
            {
                Assert.Contains("10.64.0.66", n.Dataplane.ListTable());
            }

            // a.com on host 1 reaches b.com on host 2 by name, both families, through host 1's DNS.
            Assert.Contains(Vip4.ToString(), Sh.InNs(a, "dig", "+short", "b.com", "A").Stdout);
            Assert.Equal(0, Sh.InNs(a, "ping", "-c", "2", "-i", "0.2", "-W", "2", "b.com").ExitCode);
            Assert.Equal(0, Sh.InNs(a, "ping", "-6", "-c", "2", "-i", "0.2", "-W", "2", "b.com").ExitCode);

            // A second instance on host 3, standing by; then the re-point, one state step that every
            // node applies while a ping runs: nothing lost.
            state = state with { Revision = 2, Instances = state.Instances.Add("b-2", Inst("b-2", "b.com", hosts[2].Name, 130, InstanceMode.Standby)) };
            ReconcileAll(nodes, state);
            using var ping = Process.Start(new ProcessStartInfo("ip", ["netns", "exec", a, "ping", "-i", "0.01", "-c", "300", "-W", "1", "b.com"]) { RedirectStandardOutput = true })!;
            Thread.Sleep(800);
            state = state with
            {
                Revision = 3,
                Services = state.Services.SetItem("b.com", Svc("b.com", Vip4, Vip6, "b-2")),
                Instances = state.Instances
                    .SetItem("b-1", state.Instances["b-1"] with { Mode = InstanceMode.Draining })
                    .SetItem("b-2", state.Instances["b-2"] with { Mode = InstanceMode.Active }),
            };
            var results = ReconcileAll(nodes, state);
            Assert.True(results[0].StaleFlows >= 1, "host 1 deletes the ping's translation to b-1");
            Thread.Sleep(800);
            // The old instance goes: the ping can only be answered on host 3 now.
            state = state with { Revision = 4, Instances = state.Instances.Remove("b-1") };
            ReconcileAll(nodes, state);
            Assert.False(Netns.Exists(nodes[1].InstanceNamespace("b-1")));
            var output = ping.StandardOutput.ReadToEnd();
            ping.WaitForExit();
            var m = Summary().Match(output);
            Assert.True(m.Success, output);
            Assert.Equal("300", m.Groups[1].Value);
            Assert.Equal("300", m.Groups[2].Value);

            // A state that is not newer changes nothing.
            Assert.Equal(0, nodes[0].Reconcile(state with { Instances = state.Instances.Clear() }).Removed);
            Assert.True(Netns.Exists(a));
        }
        finally
        {
            foreach (var n in nodes)
            {
                n.Remove();
            }
            Directory.Delete(dir, recursive: true);
        }
        Assert.DoesNotContain(Netns.List(), ns => ns.StartsWith("relay-" + network, StringComparison.Ordinal));
    }

    private static ReconcileResult[] ReconcileAll(List<NodeNetwork> nodes, NetworkState state)
        => nodes.Select(n => n.Reconcile(state)).ToArray();

    private static NetworkOptions Options(string network, string node, string dir) => new()
    {
        Name = network,
        Node = node,
        InstancePool4 = "10.64.0.0/16",
        InstancePool6 = "fd00:64::/64",
        RecordDirectory = Path.Combine(dir, node, "records"),
        LogDirectory = Path.Combine(dir, node, "logs"),
    };

    private static NetworkState Base(string network, LabHost[] hosts) => NetworkState.Empty(network) with
    {
        Nodes = hosts.Select(h => new NodeEntry(h.Name, IPAddress.Parse(h.Underlay4))).ToImmutableSortedDictionary(n => n.Name, n => n, StringComparer.Ordinal),
        Blocks = [.. hosts.SelectMany((h, i) => new[]
        {
            new BlockEntry(IPNetwork.Parse($"10.64.0.{i * 64}/26"), h.Name),
            new BlockEntry(IPNetwork.Parse($"fd00:64::{i * 64:x}/122"), h.Name),
        })],
    };

    private static ServiceEntry Svc(string name) => Svc(name, IPAddress.Parse("10.65.0.20"), IPAddress.Parse("fd00:65::20"));

    private static ServiceEntry Svc(string name, IPAddress v4, IPAddress v6, params string[] slots)
        => new(name, v4, v6, LoadBalancingPolicy.Random, [], [.. slots]);

    private static InstanceEntry Inst(string name, string service, string node, int host, InstanceMode mode = InstanceMode.Active)
        => new(name, service, node, IPAddress.Parse($"10.64.0.{host}"), IPAddress.Parse($"fd00:64::{host:x}"), mode);

    private static ImmutableSortedDictionary<string, T> Map<T>(params T[] items) where T : class
        => items.ToImmutableSortedDictionary(i => i switch { ServiceEntry s => s.Name, InstanceEntry x => x.Name, _ => throw new ArgumentException() }, i => i, StringComparer.Ordinal);

    [GeneratedRegex(@"(\d+) packets transmitted, (\d+) received")]
    private static partial Regex Summary();
}
