using System.Collections.Immutable;
using System.Net;
using Relay.Core.Dataplane;
using Relay.Core.LoadBalancing;
using Relay.Core.Reconcile;
using static Relay.Core.Tests.Dataplane.Specs;

namespace Relay.Core.Tests.Reconcile;

/// <summary>
/// The incremental step against the whole projection: whatever a random walk of steps does to the
/// state, the view a step leaves equals <c>Project</c> of the state after it, the table its changes
/// build equals the whole table, and what it calls stale is what the balancers lost.
/// </summary>
public class ProjectionStepTests
{
    private static readonly string[] Nodes = ["n1", "n2", "n3"];

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void Step_EqualsTheWholeProjection_OverARandomWalk(int seed)
    {
        var random = new Random(seed);
        var state = NetworkState.Empty("default") with
        {
            Nodes = Nodes.Select((n, k) => new NodeEntry(n, IPAddress.Parse($"198.18.1.{k + 1}"))).ToImmutableSortedDictionary(n => n.Name, n => n, StringComparer.Ordinal),
            Blocks = [new BlockEntry(IPNetwork.Parse("10.88.0.0/26"), "n1")],
        };
        var view = Projection.Project(state, "n1");
        var image = new DataplaneImage();
        image.Commit(image.PlanSync(view.Dataplane));
        var nextInstance = 0;
        for (var n = 0; n < 1500; n++)
        {
            var (after, change) = RandomStep(random, state, ref nextInstance);
            after = after with { Revision = n + 1 };
            var step = Projection.Step(view, after, change);
            var whole = Projection.Project(after, "n1");

            var plan = image.Plan(step.Services, step.RemovedServices, step.Links, step.RemovedLinks, step.Flows, step.RemovedFlows);
            image.Commit(plan);
            var rest = image.PlanSync(whole.Dataplane).Transaction;
            Assert.True(rest.IsEmpty, $"step {n}: the table built by the steps differs from the whole projection: {rest.ToString()[..Math.Min(400, rest.ToString().Length)]}");
            Assert.Equal(Describe(whole), Describe(step.View));
            Assert.Equal(!Projection.SameNames(view.Names, whole.Names), step.NamesChanged);
            Assert.Equal(!Projection.SamePeers(view.Peers, whole.Peers), step.PeersChanged);

            // Stale: exactly the (virtual, instance) translations the balancers lost, and the
            // flow addresses that lead elsewhere now.
            var expected = Projection.Stale(view, whole).SelectMany(s => s.Backends.Select(b => $"{s.Virtual[0]}>{b}")).ToList();
            foreach (var (id, was) in view.FlowEntries)
            {
                if (!whole.FlowEntries.TryGetValue(id, out var now) || !now.Backend4.Equals(was.Backend4) || !now.Backend6.Equals(was.Backend6))
                {
                    expected.Add($"{was.Flow4}>{was.Backend4}");
                    expected.Add($"{was.Flow4}>{was.Backend6}");
                }
            }
            var got = step.Stale.SelectMany(s => s.Backends.Select(b => $"{s.Virtual[0]}>{b}")).ToList();
            Assert.Equal(expected.Order(StringComparer.Ordinal), got.Order(StringComparer.Ordinal));

            (state, view) = (after, step.View);
        }
    }

    [Fact]
    public void Step_OfOneInstanceAmong10000Services_ChangesOneService()
    {
        var services = Enumerable.Range(0, 10_000).Select(i => new ServiceEntry($"s{i}.com", Vip(i).V4, Vip(i).V6, LoadBalancingPolicy.Random, [], []));
        var state = NetworkState.Empty("default") with
        {
            Services = services.ToImmutableSortedDictionary(s => s.Name, s => s, StringComparer.Ordinal),
            Instances = new[] { Inst("b-1", "s7.com", "n2", 1), Inst("b-2", "s7.com", "n3", 2, InstanceMode.Standby) }.ToImmutableSortedDictionary(i => i.Name, i => i, StringComparer.Ordinal),
            Nodes = Nodes.Select((n, k) => new NodeEntry(n, IPAddress.Parse($"198.18.1.{k + 1}"))).ToImmutableSortedDictionary(n => n.Name, n => n, StringComparer.Ordinal),
        };
        var view = Projection.Project(state, "n1");
        var moved = state with
        {
            Instances = state.Instances.SetItem("b-1", state.Instances["b-1"] with { Mode = InstanceMode.Draining }).SetItem("b-2", state.Instances["b-2"] with { Mode = InstanceMode.Active }),
        };

        var step = Projection.Step(view, moved, StateChange.OfInstances("b-1", "b-2"));

        var service = Assert.Single(step.Services);
        Assert.Equal(["b-2"], service.Backends.Select(b => b.Instance));
        Assert.Empty(step.RemovedServices);
        Assert.Empty(step.Links);
        Assert.False(step.NamesChanged);
        var stale = Assert.Single(step.Stale);
        Assert.Equal([Backend(1).Address4, Backend(1).Address6], stale.Backends.ToArray());
        Assert.Equal(10_000, step.View.Services.Count);
    }

    private static InstanceEntry Inst(string name, string service, string node, int i, InstanceMode mode = InstanceMode.Active)
        => new(name, service, node, Backend(i).Address4, Backend(i).Address6, mode);

    /// <summary>The view, as text: services with their members, local instances, peers, names, flows.</summary>
    private static string Describe(NodeView v) => string.Join('\n',
        v.Services.Values.Select(s => $"svc {s.Name} {s.Vip4} {s.MaglevTableSize} [{string.Join(',', s.Backends.Select(b => b.Instance))}]")
            .Concat(v.Balancers.OrderBy(b => b.Key, StringComparer.Ordinal).Select(b => $"bal {b.Key} [{string.Join(',', b.Value.Select(i => i.Name))}]"))
            .Concat(v.Local.Select(i => $"local {i.Name} {Projection.HostInterface(i)}"))
            .Concat(v.Peers.Select(p => $"peer {p.Node} {p.Underlay} [{string.Join(',', p.Blocks)}]"))
            .Concat(v.Names.Select(d => $"name {d.Name} {d.Vip4} {d.FlowAddressing}"))
            .Concat(v.FlowEntries.Values.Select(f => $"flow {f.Id} {f.Flow4} {f.Backend4}")));

    private static (NetworkState After, StateChange Change) RandomStep(Random random, NetworkState s, ref int nextInstance)
    {
        var services = new HashSet<string>(StringComparer.Ordinal);
        var instances = new HashSet<string>(StringComparer.Ordinal);
        var flows = new HashSet<string>(StringComparer.Ordinal);
        var nodes = false;
        var names = s.Services.Keys.ToArray();
        var insts = s.Instances.Values.ToArray();
        switch (random.Next(11))
        {
            case 0 when s.Services.Count < 12:
            case 1 when s.Services.Count == 0:
            {
                var i = random.Next(40);
                var name = $"svc-{i}.example";
                var (v4, v6) = Vip(i);
                var entry = new ServiceEntry(name, v4, v6, random.Next(2) == 0 ? LoadBalancingPolicy.RoundRobin : LoadBalancingPolicy.Maglev, [], [])
                {
                    TableSize = random.Next(3) == 0 ? 251 : 0,
                    FlowAddressing = random.Next(4) == 0,
                };
                s = s with { Services = s.Services.SetItem(name, entry) };
                services.Add(name);
                break;
            }
            case 1:
            case 2 when names.Length > 0:
            {
                // An instance, on any node, in any mode (a name may come back with other addresses).
                var service = names[random.Next(names.Length)];
                // Addresses and interface names are unique in a network, as the allocator makes them.
                var k = nextInstance++;
                var name = random.Next(3) == 0 && insts.Length > 0 ? insts[random.Next(insts.Length)].Name : $"i-{k}";
                var address = Backend(k);
                var entry = new InstanceEntry(name, service, Nodes[random.Next(3)], address.Address4, address.Address6, (InstanceMode)random.Next(3))
                {
                    Health = (InstanceHealth)random.Next(4),
                    HostInterface = random.Next(2) == 0 ? $"rvx{k}" : null,
                };
                s = s with { Instances = s.Instances.SetItem(name, entry) };
                instances.Add(name);
                break;
            }
            case 3 when insts.Length > 0:
            {
                // A migration: one instance becomes active, another of its service drains.
                var to = insts[random.Next(insts.Length)];
                var leaving = insts.FirstOrDefault(i => i.Service == to.Service && i.Name != to.Name && i.Mode == InstanceMode.Active);
                var slots = s.Services.TryGetValue(to.Service, out var svc) ? svc.Slots.Add(to.Name) : [];
                var next = s.Instances.SetItem(to.Name, to with { Mode = InstanceMode.Active });
                instances.Add(to.Name);
                if (leaving is not null)
                {
                    next = next.SetItem(leaving.Name, leaving with { Mode = InstanceMode.Draining });
                    instances.Add(leaving.Name);
                }
                s = s with { Instances = next };
                if (svc is not null)
                {
                    s = s with { Services = s.Services.SetItem(svc.Name, svc with { Slots = slots }) };
                    services.Add(svc.Name);
                }
                break;
            }
            case 4 when insts.Length > 0:
            {
                var i = insts[random.Next(insts.Length)];
                s = s with { Instances = s.Instances.SetItem(i.Name, i with { Health = (InstanceHealth)random.Next(4) }) };
                instances.Add(i.Name);
                break;
            }
            case 5 when insts.Length > 0:
            {
                var i = insts[random.Next(insts.Length)];
                s = s with { Instances = s.Instances.Remove(i.Name) };
                instances.Add(i.Name);
                break;
            }
            case 6 when names.Length > 0:
            {
                var name = names[random.Next(names.Length)];
                s = s with { Services = s.Services.Remove(name) };
                services.Add(name);
                break;
            }
            case 7:
            {
                // A node goes or comes back; a block is claimed.
                var node = Nodes[1 + random.Next(2)];
                s = s.Nodes.ContainsKey(node)
                    ? s with { Nodes = s.Nodes.Remove(node) }
                    : s with { Nodes = s.Nodes.Add(node, new NodeEntry(node, IPAddress.Parse($"198.18.1.{node[1]}"))) };
                if (random.Next(2) == 0)
                {
                    s = s with { Blocks = s.Blocks.Add(new BlockEntry(IPNetwork.Parse($"10.88.{random.Next(1, 200)}.0/26"), node)) };
                }
                nodes = true;
                break;
            }
            case 8 or 9 when insts.Length > 1:
            {
                // A flow address of a client for a service, leading to one of its instances (or gone).
                var client = insts[random.Next(insts.Length)];
                var backend = insts[random.Next(insts.Length)];
                var id = $"{client.Name}>{backend.Service}";
                var f = random.Next(250);
                s = random.Next(4) == 0
                    ? s with { Flows = s.Flows.Remove(id) }
                    : s with { Flows = s.Flows.SetItem(id, new FlowEntry(id, client.Name, backend.Service, IPAddress.Parse($"10.77.0.{f}"), IPAddress.Parse($"fd77::{f:x}"), backend.Name)) };
                flows.Add(id);
                break;
            }
            default:
                // A step that changes nothing the projection reads.
                break;
        }
        return (s, new StateChange(services, instances, flows, nodes));
    }
}
