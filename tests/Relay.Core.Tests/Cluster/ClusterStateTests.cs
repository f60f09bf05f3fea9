using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using Relay.Cluster;
using Relay.Core.LoadBalancing;
using Relay.Core.Reconcile;

namespace Relay.Core.Tests.Cluster;

public class ClusterStateTests
{
    private static readonly JsonSerializerOptions Camel = new(JsonSerializerDefaults.Web);
    private static readonly IPNetwork Pool4 = IPNetwork.Parse("10.64.0.0/16");
    private static readonly IPNetwork Pool6 = IPNetwork.Parse("fd00:64::/64");

    private static string Json<T>(T value) => JsonSerializer.Serialize(value, Camel);

    [Fact]
    public void Read_TakesThisNetworksRecords_NodesFromTheirLeasedKeys_BlocksAsPrefixes_AndSkipsWhatRelayDidNotWrite()
    {
        var keys = new Dictionary<string, string>
        {
            [ClusterKeys.Node("n1")] = Json(new NodeRecord("n1", "198.18.0.1", "02:00:00:00:00:01", DateTimeOffset.UnixEpoch, 7)),
            [ClusterKeys.Node("n2")] = Json(new NodeRecord("n2", "fd00:18::2", "02:00:00:00:00:02", DateTimeOffset.UnixEpoch, 8)),
            [ClusterKeys.Node("bad")] = "{not json",
            [ClusterKeys.Applied("n1")] = "41",
            [ClusterKeys.Service("default", "b.com")] = Json(new ServiceClaim("b.com", "10.65.0.10", "fd00:65::10", new JsonObject { ["policy"] = "maglev" }, "r1") { Slots = ["b-2", "b-1"] }),
            [ClusterKeys.Service("default", "c.com")] = Json(new ServiceClaim("c.com", "10.65.0.11", "fd00:65::11", null, "r2")),
            [ClusterKeys.Service("other", "x.com")] = Json(new ServiceClaim("x.com", "10.66.0.1", "fd00:66::1", null, "r3")),
            [ClusterKeys.Instance("default", "b-1")] = Json(new InstanceClaim("b-1", "b.com", "n1", "10.64.0.2", "fd00:64::2", new JsonObject { ["command"] = new JsonArray("sleep", "9") }, "r4") { Mode = "draining" }),
            [ClusterKeys.Instance("default", "b-2")] = Json(new InstanceClaim("b-2", "b.com", "n2", "10.64.0.66", "fd00:64::42", null, "r5")),
            [ClusterKeys.Instance("default", "b-3")] = Json(new InstanceClaim("b-3", "b.com", "n2", "10.64.0.67", "fd00:64::43", null, "r6") { Mode = "sideways" }),
            [ClusterKeys.Block("default", System.Net.Sockets.AddressFamily.InterNetwork, 1)] = "n2",
            [ClusterKeys.Block("default", System.Net.Sockets.AddressFamily.InterNetworkV6, 1)] = "n2",
            [ClusterKeys.Block("default", System.Net.Sockets.AddressFamily.InterNetwork, -3)] = "n1",
        };

        var state = ClusterState.Read("default", Pool4, Pool6, 42, keys);

        Assert.Equal(42, state.Revision);
        Assert.Equal(["n1", "n2"], state.Nodes.Keys);
        Assert.Equal(IPAddress.Parse("fd00:18::2"), state.Nodes["n2"].Underlay);
        Assert.Equal(["b.com", "c.com"], state.Services.Keys);
        Assert.Equal(LoadBalancingPolicy.Maglev, state.Services["b.com"].Policy);
        Assert.Equal(LoadBalancingPolicy.Random, state.Services["c.com"].Policy);
        Assert.Equal(["b-2", "b-1"], state.Services["b.com"].Slots.ToArray());
        // b-3's mode is not one Relay writes: the record is skipped, not guessed at.
        Assert.Equal(["b-1", "b-2"], state.Instances.Keys);
        Assert.Equal(InstanceMode.Draining, state.Instances["b-1"].Mode);
        Assert.Equal(["sleep", "9"], state.Instances["b-1"].Command!.Value.ToArray());
        Assert.Equal(InstanceMode.Active, state.Instances["b-2"].Mode);
        Assert.Null(state.Instances["b-2"].Command);
        Assert.Equal([new BlockEntry(IPNetwork.Parse("10.64.0.64/26"), "n2"), new BlockEntry(IPNetwork.Parse("fd00:64::40/122"), "n2")],
            state.Blocks.OrderBy(b => b.Prefix.BaseAddress.AddressFamily));

        // The projection of what was read: n1 balances b.com to b-2 only, over the overlay to n2.
        var n1 = Projection.Project(state, "n1");
        Assert.Equal(["b-2"], n1.Balancers["b.com"].Select(i => i.Name));
        Assert.Equal(["b-1"], n1.Local.Select(i => i.Name));
        Assert.Equal(2, Assert.Single(n1.Peers).Blocks.Count);
    }

    [Fact]
    public void HealthVerdicts_ApplyToInstancesWithACheck_AbsentIsStarting_AndUpdateFollowsThem()
    {
        var check = new JsonObject { ["type"] = "tcp", ["port"] = 80 };
        var keys = new Dictionary<string, string>
        {
            [ClusterKeys.Instance("default", "b-1")] = Json(new InstanceClaim("b-1", "b.com", "n1", "10.64.0.2", "fd00:64::2", new JsonObject { ["health"] = check.DeepClone() }, "r1")),
            [ClusterKeys.Instance("default", "b-2")] = Json(new InstanceClaim("b-2", "b.com", "n1", "10.64.0.3", "fd00:64::3", new JsonObject { ["health"] = check.DeepClone() }, "r2")),
            [ClusterKeys.Instance("default", "b-3")] = Json(new InstanceClaim("b-3", "b.com", "n1", "10.64.0.4", "fd00:64::4", null, "r3")),
            [ClusterKeys.Health("default", "b-2")] = "unhealthy",
            [ClusterKeys.Health("default", "b-3")] = "unhealthy", // no check: a stray verdict means nothing
        };
        var state = ClusterState.Read("default", Pool4, Pool6, 1, keys);
        Assert.Equal(InstanceHealth.Starting, state.Instances["b-1"].Health);
        Assert.Equal(InstanceHealth.Unhealthy, state.Instances["b-2"].Health);
        Assert.Equal(InstanceHealth.None, state.Instances["b-3"].Health);
        Assert.Equal(check.ToJsonString(), state.Instances["b-1"].HealthSpec);

        keys[ClusterKeys.Health("default", "b-1")] = "healthy";
        keys.Remove(ClusterKeys.Health("default", "b-2"));
        var updated = ClusterState.Update(state, Pool4, Pool6, 2, [ClusterKeys.Health("default", "b-1"), ClusterKeys.Health("default", "b-2")], keys);
        Assert.Equal(InstanceHealth.Healthy, updated.Instances["b-1"].Health);
        Assert.Equal(InstanceHealth.Starting, updated.Instances["b-2"].Health);
        Assert.Equal(ClusterState.Read("default", Pool4, Pool6, 2, keys).Instances, updated.Instances);
    }

    [Fact]
    public void Update_FromTheChangedKeysOnly_EqualsAReadOfTheWholeState_StepAfterStep()
    {
        var random = new Random(7);
        var keys = new Dictionary<string, string>();
        var state = ClusterState.Read("default", Pool4, Pool6, 1, keys);
        for (var step = 2; step < 300; step++)
        {
            var changed = new List<string>();
            for (var k = random.Next(1, 5); k > 0; k--)
            {
                var n = random.Next(6);
                var (key, value) = random.Next(6) switch
                {
                    0 => (ClusterKeys.Node($"n{n}"), Json(new NodeRecord($"n{n}", $"198.18.0.{n + 1}", "02:00:00:00:00:01", DateTimeOffset.UnixEpoch, n))),
                    1 => (ClusterKeys.Service("default", $"s{n}.com"), Json(new ServiceClaim($"s{n}.com", $"10.65.0.{n + 1}", $"fd00:65::{n + 1}",
                        new JsonObject { ["policy"] = random.Next(2) == 0 ? "maglev" : "random", ["ports"] = new JsonArray($"{80 + n}:8080/tcp") }, "r") { Slots = [$"i{step % 6}"] })),
                    2 => (ClusterKeys.Instance("default", $"i{n}"), Json(new InstanceClaim($"i{n}", $"s{n % 3}.com", $"n{n % 2}", $"10.64.0.{n + 2}", $"fd00:64::{n + 2}", null, "r") { Mode = random.Next(3) == 0 ? "standby" : null })),
                    3 => (ClusterKeys.Block("default", System.Net.Sockets.AddressFamily.InterNetwork, n), $"n{random.Next(3)}"),
                    4 => (ClusterKeys.Service("other", $"x{n}.com"), Json(new ServiceClaim($"x{n}.com", "10.66.0.1", "fd00:66::1", null, "r"))),
                    _ => (ClusterKeys.Applied($"n{n}"), step.ToString(System.Globalization.CultureInfo.InvariantCulture)),
                };
                if (random.Next(4) == 0)
                {
                    keys.Remove(key);
                }
                else
                {
                    keys[key] = value;
                }
                changed.Add(key);
            }
            state = ClusterState.Update(state, Pool4, Pool6, step, changed.Where(c => ClusterState.Concerns("default", c)), keys);
            Assert.Equal(Render(ClusterState.Read("default", Pool4, Pool6, step, keys)), Render(state));
        }
        Assert.NotEmpty(state.Services);
        Assert.NotEmpty(state.Instances);
    }

    private static string Render(NetworkState s)
        => $"{s.Revision}|" + string.Join(";", s.Services.Values.Select(v => $"{v.Name} {v.Vip4} {v.Vip6} {v.Policy} {string.Join(",", v.Ports)} {string.Join(",", v.Slots)}"))
            + "|" + string.Join(";", s.Instances.Values.Select(i => $"{i.Name} {i.Service} {i.Node} {i.Address4} {i.Mode}"))
            + "|" + string.Join(";", s.Nodes.Values.Select(n => $"{n.Name} {n.Underlay}"))
            + "|" + string.Join(";", s.Blocks.Select(b => $"{b.Prefix} {b.Node}").Order(StringComparer.Ordinal));
}
