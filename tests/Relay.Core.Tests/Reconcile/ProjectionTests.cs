using System.Collections.Immutable;
using System.Net;
using Relay.Core.Dataplane;
using Relay.Core.LoadBalancing;
using Relay.Core.Reconcile;
using static Relay.Core.Tests.Dataplane.Specs;

namespace Relay.Core.Tests.Reconcile;

public class ProjectionTests
{
    private static ServiceEntry Svc(string name, int i, params string[] slots)
    {
        var (v4, v6) = Vip(i);
        return new ServiceEntry(name, v4, v6, LoadBalancingPolicy.RoundRobin, [], [.. slots]);
    }

    private static InstanceEntry Inst(string name, string service, string node, int i, InstanceMode mode = InstanceMode.Active)
        => new(name, service, node, Backend(i).Address4, Backend(i).Address6, mode);

    private static NetworkState State(IEnumerable<ServiceEntry> services, IEnumerable<InstanceEntry> instances, params string[] liveNodes) =>
        NetworkState.Empty("default") with
        {
            Revision = 7,
            Services = services.ToImmutableSortedDictionary(s => s.Name, s => s, StringComparer.Ordinal),
            Instances = instances.ToImmutableSortedDictionary(s => s.Name, s => s, StringComparer.Ordinal),
            Nodes = liveNodes.Select((n, k) => new NodeEntry(n, IPAddress.Parse($"198.18.1.{k + 1}"))).ToImmutableSortedDictionary(n => n.Name, n => n, StringComparer.Ordinal),
            Blocks = [new BlockEntry(IPNetwork.Parse("10.88.0.0/26"), "n1"), new BlockEntry(IPNetwork.Parse("10.88.0.64/26"), "n2"), new BlockEntry(IPNetwork.Parse("10.88.0.128/26"), "n3")],
        };

    [Fact]
    public void Project_EveryNodeBalancesOverLiveActiveInstances_LinksOnlyItsOwn_PeersAreTheOtherLiveNodes()
    {
        var state = State([Svc("b.com", 0)],
            [Inst("b-1", "b.com", "n1", 1), Inst("b-2", "b.com", "n2", 2), Inst("b-3", "b.com", "n3", 3), Inst("b-4", "b.com", "n2", 4, InstanceMode.Standby)],
            "n1", "n2");

        var n1 = Projection.Project(state, "n1");
        var n2 = Projection.Project(state, "n2");

        // n3's lease is gone: b-3 takes no flows anywhere; the standby b-4 neither.
        Assert.Equal(["b-1", "b-2"], n1.Dataplane.Services.Single().Backends.Select(b => b.Instance));
        Assert.True(DataplaneImage.Same(n1.Dataplane.Services[0], n2.Dataplane.Services[0]));
        Assert.Equal(["b-1"], n1.Local.Select(i => i.Name));
        Assert.Equal(["b-2", "b-4"], n2.Local.Select(i => i.Name));
        Assert.Equal([Backend(2).Address4, Backend(4).Address4], n2.Dataplane.Links.Select(l => l.Address4));
        Assert.Equal(["n2"], n1.Peers.Select(p => p.Node));
        Assert.Equal([IPNetwork.Parse("10.88.0.64/26")], n1.Peers[0].Blocks);
        Assert.Equal(["b.com"], n1.Names.Select(n => n.Name));
        Assert.Equal(7, n1.Revision);
    }

    [Fact]
    public void Project_OnlyInstancesThatPassedTheirCheck_TakeFlows_AndAllDoWhenNoneDid()
    {
        var checkedOne = Inst("b-2", "b.com", "n2", 2) with { Health = InstanceHealth.Unhealthy };
        var state = State([Svc("b.com", 0)],
            [Inst("b-1", "b.com", "n1", 1) with { Health = InstanceHealth.Healthy }, checkedOne, Inst("b-3", "b.com", "n1", 3) with { Health = InstanceHealth.Starting }, Inst("b-4", "b.com", "n2", 4)],
            "n1", "n2");

        // Healthy and unchecked instances take the flows, on every node alike.
        Assert.Equal(["b-1", "b-4"], Projection.Project(state, "n1").Balancers["b.com"].Select(i => i.Name));
        Assert.Equal(["b-1", "b-4"], Projection.Project(state, "n2").Balancers["b.com"].Select(i => i.Name));

        // None passed: all of them (failing open, as a single host does).
        var none = State([Svc("b.com", 0)], [checkedOne, Inst("b-3", "b.com", "n1", 3) with { Health = InstanceHealth.Starting }], "n1", "n2");
        Assert.Equal(["b-2", "b-3"], Projection.Project(none, "n1").Balancers["b.com"].Select(i => i.Name));

        // A check that fails moves the instance's stateless flows like a migration does.
        var before = Projection.Project(State([Svc("b.com", 0)], [Inst("b-1", "b.com", "n1", 1) with { Health = InstanceHealth.Healthy }, Inst("b-4", "b.com", "n2", 4)], "n1", "n2"), "n1");
        var after = Projection.Project(State([Svc("b.com", 0)], [Inst("b-1", "b.com", "n1", 1) with { Health = InstanceHealth.Unhealthy }, Inst("b-4", "b.com", "n2", 4)], "n1", "n2"), "n1");
        var stale = Assert.Single(Projection.Stale(before, after));
        Assert.Equal([Backend(1).Address4.ToString(), Backend(1).Address6.ToString()], stale.Backends.Select(a => a.ToString()));
    }

    [Fact]
    public void Project_SlotsGiveTheBalancerOrder_UnlistedFollowByName()
    {
        var state = State([Svc("b.com", 0, "b-3", "b-1")],
            [Inst("b-1", "b.com", "n1", 1), Inst("b-2", "b.com", "n1", 2), Inst("b-3", "b.com", "n2", 3)], "n1", "n2");

        Assert.Equal(["b-3", "b-1", "b-2"], Projection.Project(state, "n1").Balancers["b.com"].Select(i => i.Name));
    }

    [Fact]
    public void HostInterface_IsStable_FitsIfnamsiz_AndDiffersPerAddress()
    {
        var a = Inst("b-1", "b.com", "n1", 1);
        var b = Inst("b-2", "b.com", "n1", 2);

        Assert.Equal(Projection.HostInterface(a), Projection.HostInterface(a with { Mode = InstanceMode.Draining }));
        Assert.NotEqual(Projection.HostInterface(a), Projection.HostInterface(b));
        Assert.StartsWith(NftNames.HostInterfacePrefix, Projection.HostInterface(a));
        Assert.True(Projection.HostInterface(a).Length <= 15);
    }

    [Fact]
    public void Stale_AMigration_NamesExactlyTheOldInstancesAddresses_OnEveryNode()
    {
        var before = State([Svc("b.com", 0), Svc("c.com", 1)],
            [Inst("b-1", "b.com", "n2", 1), Inst("b-2", "b.com", "n3", 2, InstanceMode.Standby), Inst("c-1", "c.com", "n2", 3)], "n1", "n2", "n3");
        var after = before with
        {
            Revision = 8,
            Services = before.Services.SetItem("b.com", before.Services["b.com"] with { Slots = ["b-2"] }),
            Instances = before.Instances.SetItem("b-1", before.Instances["b-1"] with { Mode = InstanceMode.Draining })
                .SetItem("b-2", before.Instances["b-2"] with { Mode = InstanceMode.Active }),
        };

        foreach (var node in new[] { "n1", "n2", "n3" })
        {
            var stale = Projection.Stale(Projection.Project(before, node), Projection.Project(after, node));

            var only = Assert.Single(stale);
            Assert.Equal("b.com", only.Service);
            Assert.Equal([Vip(0).V4, Vip(0).V6], only.Virtual.ToArray());
            Assert.Equal([Backend(1).Address4, Backend(1).Address6], only.Backends.ToArray());
        }
    }

    [Fact]
    public void Stale_NodeLost_ItsInstancesFlowsAreStale_AndNothingForTheFirstStep()
    {
        var state = State([Svc("b.com", 0)], [Inst("b-1", "b.com", "n2", 1), Inst("b-2", "b.com", "n3", 2)], "n1", "n2", "n3");
        var lost = state with { Nodes = state.Nodes.Remove("n3") };

        var stale = Projection.Stale(Projection.Project(state, "n1"), Projection.Project(lost, "n1"));

        Assert.Equal([Backend(2).Address4, Backend(2).Address6], Assert.Single(stale).Backends.ToArray());
        Assert.Empty(Projection.Stale(null, Projection.Project(state, "n1")));
    }

    [Fact]
    public void PlanSync_OfTheSameStateRebuilt_IsEmpty_AndOneChangeAmongManyTouchesOnlyIt()
    {
        var services = Enumerable.Range(0, 1000).Select(i => Svc($"s{i}.com", i)).ToArray();
        var instances = Enumerable.Range(0, 1000).Select(i => Inst($"s{i}-1", $"s{i}.com", "n1", i)).ToArray();
        var state = State(services, instances, "n1");
        var image = new DataplaneImage();
        image.Commit(image.PlanSync(Projection.Project(state, "n1").Dataplane));

        // Rebuilt from scratch (as from a store read): equal by value, nothing to do.
        Assert.True(image.PlanSync(Projection.Project(State(services, instances, "n1"), "n1").Dataplane).Transaction.IsEmpty);

        var moved = state with { Instances = state.Instances.SetItem("s5-1", state.Instances["s5-1"] with { Mode = InstanceMode.Standby }) };
        var plan = image.PlanSync(Projection.Project(moved, "n1").Dataplane);
        // s5.com lost its only instance: its few elements go, nothing of the 999 others is emitted.
        Assert.Equal(0, plan.Transaction.ElementsAdded);
        Assert.InRange(plan.Transaction.ElementsDeleted, 1, 8);
        image.Commit(plan);

        var removed = moved with { Services = moved.Services.Remove("s7.com") };
        var removal = image.PlanSync(Projection.Project(removed, "n1").Dataplane);
        Assert.InRange(removal.Transaction.ElementsDeleted, 1, 8);
        Assert.Equal(0, removal.Transaction.ElementsAdded);
    }
}
