using System.Collections.Immutable;
using System.Diagnostics;
using System.Net;
using System.Text.RegularExpressions;
using Relay.Cluster;
using Relay.Cluster.Etcd;
using Relay.Cluster.Lab;
using Relay.Daemon.Cluster;
using Microsoft.Extensions.Logging.Abstractions;
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
public sealed partial class NodeNetworkTests(LabFixture lab, Xunit.Abstractions.ITestOutputHelper output) : IClassFixture<LabFixture>
{
    private static readonly IPAddress Vip4 = IPAddress.Parse("10.65.0.10");
    private static readonly IPAddress Vip6 = IPAddress.Parse("fd00:65::10");

    [Fact]
    public async Task SharedState_PingByNameAcrossHosts_V4AndV6_ThenARepointMovesARunningPingToAnotherHost()
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
            await nodes[1].RemovalsDone().WaitAsync(TimeSpan.FromSeconds(10));
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

    [Fact]
    public async Task ThroughEtcd_AddsFromTwoHosts_EveryNodeApplies_ARepointIsOneTransactionThatEveryNodeHasAppliedWhenTheWaitReturns()
    {
        var network = "t" + Guid.NewGuid().ToString("N")[..6];
        var dir = Path.Combine(Path.GetTempPath(), "relay-test-nodes", network);
        var hosts = lab.Lab.Hosts.Take(3).ToArray();
        var pool4 = IPNetwork.Parse("10.64.0.0/16");
        var pool6 = IPNetwork.Parse("fd00:64::/64");
        IPAddress[] reserved = [IPAddress.Parse("10.64.0.1"), IPAddress.Parse("fd00:64::1")];
        var connections = new List<EtcdConnection>();
        var leases = new List<NodeLease>();
        var nodes = new List<NodeNetwork>();
        var runs = new List<Task>();
        using var stop = new CancellationTokenSource();
        try
        {
            for (var i = 0; i < hosts.Length; i++)
            {
                // Node names of this test's own: the lab's daemons (if any) keep theirs.
                var node = $"{network}n{i + 1}";
                var etcd = lab.Connect(i);
                connections.Add(etcd);
                leases.Add(await NodeLease.JoinAsync(etcd, node, hosts[i].Underlay4, Relay.Core.Overlay.VxlanPlan.Mac(node), TimeSpan.FromSeconds(3)));
                var n = NodeNetwork.Open(Options(network, node, dir), IPAddress.Parse(hosts[i].Underlay4), hosts[i].Namespace);
                nodes.Add(n);
                runs.Add(new ClusterReconciler(etcd, leases[i], n, pool4, pool6, NullLogger.Instance).RunAsync(stop.Token));
            }
            var one = new ClusterAllocator(connections[0], leases[0].Record.Name);
            var two = new ClusterAllocator(connections[1], leases[1].Record.Name);
            var three = new ClusterAllocator(connections[2], leases[2].Record.Name);
            // Services from two hosts at once; instances each on its own node's blocks.
            await Task.WhenAll(
                one.AddServiceAsync(network, "a.com", IPNetwork.Parse("10.65.0.0/24"), IPNetwork.Parse("fd00:65::/120")),
                two.AddServiceAsync(network, "b.com", IPNetwork.Parse("10.65.0.0/24"), IPNetwork.Parse("fd00:65::/120")));
            await one.AddInstanceAsync(network, "a-1", "a.com", pool4, pool6, reserved);
            var (b1, _) = await two.AddInstanceAsync(network, "b-1", "b.com", pool4, pool6, reserved);
            var (_, revision) = await three.AddInstanceAsync(network, "b-2", "b.com", pool4, pool6, reserved, mode: "standby");
            Assert.Empty(await ClusterReconciler.WaitAppliedAsync(connections[0], revision, TimeSpan.FromSeconds(10)));

            var a = nodes[0].InstanceNamespace("a-1");
            Assert.True(Netns.Exists(a));
            Assert.True(Netns.Exists(nodes[2].InstanceNamespace("b-2")));
            Assert.Equal(0, Sh.InNs(a, "ping", "-c", "2", "-i", "0.2", "-W", "2", "b.com").ExitCode);
            Assert.Equal(0, Sh.InNs(a, "ping", "-6", "-c", "2", "-i", "0.2", "-W", "2", "b.com").ExitCode);
            // Every node's DNS answers from the shared state.
            var vip = Sh.InNs(nodes[1].InstanceNamespace("b-1"), "dig", "+short", "b.com", "A").Stdout.Trim();
            Assert.Equal(vip, Sh.InNs(a, "dig", "+short", "b.com", "A").Stdout.Trim());

            using var ping = Process.Start(new ProcessStartInfo("ip", ["netns", "exec", a, "ping", "-i", "0.01", "-c", "300", "-W", "1", "b.com"]) { RedirectStandardOutput = true })!;
            Thread.Sleep(800);
            var clock = Stopwatch.StartNew();
            revision = await three.RepointAsync(network, "b.com", "b-2");
            var written = clock.Elapsed;
            Assert.Empty(await ClusterReconciler.WaitAppliedAsync(connections[2], revision, TimeSpan.FromSeconds(10)));
            var converged = clock.Elapsed;
            output.WriteLine($"re-point written in {written.TotalMilliseconds:F1} ms and applied by 3 nodes in {converged.TotalMilliseconds:F1} ms (reconciles: {string.Join(", ", nodes.Select(n => $"{n.LastResult!.Elapsed.TotalMilliseconds:F2} ms"))})");
            Assert.All(nodes, n => Assert.True(n.AppliedRevision >= revision));
            // The old instance still runs on its node, draining; every node balances to the new one.
            Assert.Equal(InstanceMode.Draining, Assert.Single(nodes[1].Applied!.Local, i => i.Name == "b-1").Mode);
            Assert.All(nodes, n => Assert.Equal(["b-2"], n.Applied!.Balancers["b.com"].Select(i => i.Name)));
            Thread.Sleep(800);
            Assert.True(await two.RemoveInstanceAsync(network, "b-1") > 0);
            var (gone, _) = await connections[1].GetPrefixAsync(ClusterKeys.Address(network, IPAddress.Parse(b1.Address4)));
            Assert.Empty(gone);
            await WaitUntil(() => !Netns.Exists(nodes[1].InstanceNamespace("b-1")), TimeSpan.FromSeconds(10));
            var printed = ping.StandardOutput.ReadToEnd();
            ping.WaitForExit();
            var m = Summary().Match(printed);
            Assert.True(m.Success, printed);
            Assert.Equal("300", m.Groups[2].Value);
            Assert.True(converged < TimeSpan.FromSeconds(5), $"three nodes applied the re-point in {converged.TotalMilliseconds:F1} ms");
        }
        finally
        {
            stop.Cancel();
            foreach (var r in runs)
            {
                await Task.WhenAny(r, Task.Delay(5000));
            }
            foreach (var n in nodes)
            {
                n.Remove();
            }
            foreach (var l in leases)
            {
                await l.DisposeAsync();
            }
            foreach (var c in connections)
            {
                c.Dispose();
            }
            if (Directory.Exists(dir))
            {
                Directory.Delete(dir, recursive: true);
            }
        }
        Assert.DoesNotContain(Netns.List(), ns => ns.StartsWith("relay-" + network, StringComparison.Ordinal));
    }

    [Fact]
    public async Task ACommandThatExits_IsRestartedOnItsNode_AsItsRestartPolicySays()
    {
        var network = "t" + Guid.NewGuid().ToString("N")[..6];
        var dir = Path.Combine(Path.GetTempPath(), "relay-test-nodes", network);
        var host = lab.Lab.Hosts[0];
        var node = NodeNetwork.Open(Options(network, host.Name, dir), IPAddress.Parse(host.Underlay4), host.Namespace);
        try
        {
            ImmutableArray<string> sleep = ["sleep", "600"];
            var state = Base(network, [host]) with
            {
                Revision = 1,
                Services = Map(Svc("a.com")),
                Instances = Map(
                    Inst("a-1", "a.com", host.Name, 2) with { Command = sleep },                           // on-failure (the default)
                    Inst("a-2", "a.com", host.Name, 3) with { Command = sleep, Restart = "never" },
                    Inst("a-3", "a.com", host.Name, 4) with { Command = ["sh", "-c", "sleep 0.3; exit 0"], Restart = "always" },
                    Inst("a-4", "a.com", host.Name, 5) with { Command = ["sh", "-c", "exit 0"] }),         // on-failure, exits cleanly
            };
            node.Reconcile(state);
            var first1 = node.ProcessId("a-1")!.Value;
            var first2 = node.ProcessId("a-2")!.Value;
            Sh.Run("kill", "-9", first1.ToString(System.Globalization.CultureInfo.InvariantCulture));
            Sh.Run("kill", "-9", first2.ToString(System.Globalization.CultureInfo.InvariantCulture));

            // Killed, on-failure: a new pid after the back-off's first second, in the instance's namespace.
            await WaitUntil(() => node.ProcessId("a-1") is { } p && p != first1, TimeSpan.FromSeconds(5));
            Assert.Equal(1, node.Restarts("a-1"));
            // The new process enters the namespace just after it starts (sh, then ip netns exec,
            // then the command): seen once under the parallel suite, the pid was not in it yet.
            var restarted = node.ProcessId("a-1")!.Value;
            await WaitUntil(() => Netns.Pids(node.InstanceNamespace("a-1")).Contains(restarted), TimeSpan.FromSeconds(2));
            Assert.Contains(restarted, Netns.Pids(node.InstanceNamespace("a-1")));
            // 'always' restarts a command that exits 0, again and again (1 s, then 2 s of back-off).
            await WaitUntil(() => node.Restarts("a-3") >= 2, TimeSpan.FromSeconds(8));

            // 'never' stays down, and so does an on-failure command that exited 0; their instances stay wired.
            Assert.Null(node.ProcessId("a-2"));
            Assert.Equal(0, node.Restarts("a-2"));
            Assert.Null(node.ProcessId("a-4"));
            Assert.Equal(0, node.Restarts("a-4"));
            Assert.True(Netns.Exists(node.InstanceNamespace("a-2")));

            // A draining instance's command is not restarted.
            state = state with { Revision = 2, Instances = state.Instances.SetItem("a-1", state.Instances["a-1"] with { Mode = InstanceMode.Draining }) };
            node.Reconcile(state);
            var second = node.ProcessId("a-1")!.Value;
            Sh.Run("kill", "-9", second.ToString(System.Globalization.CultureInfo.InvariantCulture));
            await Task.Delay(TimeSpan.FromSeconds(2.5));
            Assert.Null(node.ProcessId("a-1"));
            Assert.Equal(1, node.Restarts("a-1"));
        }
        finally
        {
            node.Remove();
            Directory.Delete(dir, recursive: true);
        }
        Assert.DoesNotContain(Netns.List(), ns => ns.StartsWith("relay-" + network, StringComparison.Ordinal));
    }

    private static async Task WaitUntil(Func<bool> done, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!done())
        {
            Assert.True(DateTime.UtcNow < deadline, "timed out");
            await Task.Delay(10);
        }
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
