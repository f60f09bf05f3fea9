using System.Collections.Immutable;
using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using Relay.Cluster;
using Relay.Core.Reconcile;

namespace Relay.Core.Tests.Cluster;

public class ClusterPlacementTests
{
    private static InstanceEntry I(string name, string node, InstanceMode mode = InstanceMode.Active, string? restart = null, bool pinned = false)
        => new(name, "b.com", node, IPAddress.Parse("10.64.0.2"), IPAddress.Parse("fd00::2"), mode) { Restart = restart, Pinned = pinned };

    private static NetworkState State(string[] nodes, params InstanceEntry[] instances) => NetworkState.Empty("default") with
    {
        Nodes = nodes.ToImmutableSortedDictionary(n => n, n => new NodeEntry(n, IPAddress.Loopback), StringComparer.Ordinal),
        Instances = instances.ToImmutableSortedDictionary(i => i.Name, i => i, StringComparer.Ordinal),
    };

    [Fact]
    public void ALostNodesInstances_GoToTheLiveNodeWithTheFewest_EachMoveCounted_TiesByName()
    {
        var state = State(["n1", "n2", "n3"],
            I("a-1", "n1"), I("a-2", "n1"), I("a-3", "n2"),
            I("b-1", "gone"), I("b-2", "gone"), I("b-3", "gone"));

        var moves = ClusterPlacement.Rescheduling(state);

        // n3 has none: b-1 goes there; then n2 and n3 have one each (n2 first by name), then n3.
        Assert.Equal(["b-1 -> n3", "b-2 -> n2", "b-3 -> n3"], moves.Select(m => $"{m.Instance.Name} -> {m.Target}"));
    }

    [Fact]
    public void PinnedNeverAndDraining_StayWhereTheyAre_LiveNodesInstancesNeverMove()
    {
        var state = State(["n1"],
            I("b-1", "gone", pinned: true), I("b-2", "gone", restart: "never"), I("b-3", "gone", InstanceMode.Draining),
            I("b-4", "n1"), I("b-5", "gone", InstanceMode.Standby, restart: "always"), I("b-6", "gone", restart: "on-failure"));

        Assert.Equal(["b-5", "b-6"], ClusterPlacement.Rescheduling(state).Select(m => m.Instance.Name));
    }

    [Fact]
    public void ANodeInItsGracePeriod_KeepsItsInstances_OthersMove()
    {
        var state = State(["n1"], I("a-1", "waiting"), I("b-1", "due"));
        Assert.Equal(["b-1 -> n1"], ClusterPlacement.Rescheduling(state, node => node == "due").Select(m => $"{m.Instance.Name} -> {m.Target}"));
    }

    [Fact]
    public void NoLiveNode_NoMove()
        => Assert.Empty(ClusterPlacement.Rescheduling(State([], I("b-1", "gone"))));

    [Fact]
    public void TheRecordsPinAndRestartPolicy_ReachTheState()
    {
        var keys = new Dictionary<string, string>
        {
            [ClusterKeys.Instance("default", "b-1")] = JsonSerializer.Serialize(
                new InstanceClaim("b-1", "b.com", "n1", "10.64.0.2", "fd00:64::2", new JsonObject { ["restart"] = "never" }, "r") { Pinned = true }, JsonSerializerOptions.Web),
            [ClusterKeys.Instance("default", "b-2")] = JsonSerializer.Serialize(new InstanceClaim("b-2", "b.com", "n1", "10.64.0.3", "fd00:64::3", null, "r"), JsonSerializerOptions.Web),
        };
        var state = ClusterState.Read("default", IPNetwork.Parse("10.64.0.0/16"), IPNetwork.Parse("fd00:64::/64"), 1, keys);
        Assert.True(state.Instances["b-1"].Pinned);
        Assert.Equal("never", state.Instances["b-1"].Restart);
        Assert.False(state.Instances["b-2"].Pinned);
        Assert.Null(state.Instances["b-2"].Restart);
    }
}
