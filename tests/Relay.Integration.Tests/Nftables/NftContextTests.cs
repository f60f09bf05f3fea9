using System.Net;
using System.Text.Json.Nodes;
using Relay.Core.Dataplane;
using Relay.Core.LoadBalancing;
using Relay.Core.Model;
using Relay.Integration.Tests.Support;
using Relay.Linux.Namespaces;
using Relay.Linux.Nftables;

namespace Relay.Integration.Tests.Nftables;

/// <summary>The rendered table on the real kernel, in a namespace of the test's own.</summary>
public sealed class NftContextTests : IDisposable
{
    private readonly string _ns = TestNetwork.UniqueName("relaytest-nft-");
    private readonly NetnsThread _thread;
    private readonly NftContext _nft;

    public NftContextTests()
    {
        Netns.Add(_ns);
        _thread = NetnsThread.Enter(_ns);
        _nft = NftContext.Open(_thread);
    }

    public void Dispose()
    {
        _nft.Dispose();
        _thread.Dispose();
        Netns.Delete(_ns);
    }

    private static DataplaneService Service(int i, LoadBalancingPolicy policy, int backends, params PortMapping[] ports) => new(
        $"s{i}.test",
        IPAddress.Parse($"10.89.{i / 250}.{i % 250 + 1}"),
        IPAddress.Parse($"fd52:656c:6179:2::{i + 1:x}"),
        policy,
        Maglev.TableSize(backends),
        ports,
        Enumerable.Range(0, backends).Select(b => new DataplaneBackend($"i{i}-{b}", IPAddress.Parse($"10.88.{i / 250}.{i % 250 + 2 + b * 0}"), IPAddress.Parse($"fd52:656c:6179:1::{i:x}:{b + 2:x}"))).ToArray());

    /// <summary>The table as nft's JSON, with every element list sorted: comparable across element orders.</summary>
    private JsonNode Normalized()
    {
        var root = JsonNode.Parse(_nft.RunJson("list table inet relay"))!;
        foreach (var item in root["nftables"]!.AsArray())
        {
            var obj = (item!["set"] ?? item["map"])?.AsObject();
            if (obj is not null)
            {
                obj.Remove("handle");
                if (obj["elem"] is JsonArray elems)
                {
                    var sorted = elems.Select(e => e!.ToJsonString()).Order(StringComparer.Ordinal).Select(s => JsonNode.Parse(s)).ToArray();
                    obj["elem"] = new JsonArray(sorted);
                }
            }
            (item!["chain"] ?? item["rule"] ?? item["table"])?.AsObject().Remove("handle");
        }
        // Kernel listing order follows creation order; compare by name instead, keeping each
        // chain's rules in their order (that order is meaningful).
        var items = root["nftables"]!.AsArray().Skip(1).Select(n => n!.ToJsonString()).Select(t => JsonNode.Parse(t)!).ToList();
        string Key(JsonNode n) => n["table"] is not null ? "0" : n["set"] is not null ? "1" + n["set"]!["name"] : n["map"] is not null ? "1" + n["map"]!["name"]
            : n["chain"] is not null ? "2" + n["chain"]!["name"] + "\u0000" : "2" + n["rule"]!["chain"] + "\u0001";
        return new JsonArray(items.Select((n, index) => (n, index)).OrderBy(x => Key(x.n), StringComparer.Ordinal).ThenBy(x => x.index).Select(x => x.n).ToArray());
    }

    [Fact]
    public void EveryPolicyAndKind_FullThenIncremental_EqualsFullResync()
    {
        var policies = new[] { LoadBalancingPolicy.Random, LoadBalancingPolicy.RoundRobin, LoadBalancingPolicy.Maglev, LoadBalancingPolicy.Source };
        var services = new List<DataplaneService>();
        var i = 0;
        foreach (var p in policies)
        {
            services.Add(Service(i++, p, 2));
            services.Add(Service(i++, p, 3, new PortMapping(TransportProtocol.Tcp, 80, 8080), new PortMapping(TransportProtocol.Udp, 53, 5353)));
        }
        var links = new[] { new DataplaneLink("rv1", IPAddress.Parse("10.88.0.2"), IPAddress.Parse("fd52:656c:6179:1::2")) };
        var image = new DataplaneImage();
        var plan = image.Plan(services, links: links);
        _nft.Run(NftScript.Full(image.ToRuleset(plan)).ToString());
        image.Commit(plan);

        // Incremental changes through the kernel: re-point, grow, shrink, remove, add.
        var changed = new List<DataplaneService>
        {
            services[0] with { Backends = [services[0].Backends[0], new DataplaneBackend("new", IPAddress.Parse("10.88.9.9"), IPAddress.Parse("fd52:656c:6179:1::9:9"))] },
            services[3] with { Backends = services[3].Backends.Take(1).ToArray() },
            services[4] with { Backends = [.. services[4].Backends, new DataplaneBackend("x", IPAddress.Parse("10.88.9.8"), IPAddress.Parse("fd52:656c:6179:1::9:8"))] },
            Service(50, LoadBalancingPolicy.RoundRobin, 1, new PortMapping(TransportProtocol.Udp, 5000, 5000)),
        };
        var step = image.Plan(changed, removedServices: [services[7].Name]);
        Assert.False(step.Transaction.IsFull);
        _nft.Run(step.Transaction.ToString());
        image.Commit(step);
        var incremental = Normalized();

        _nft.Run(NftScript.Full(image.ToRuleset()).ToString());
        Assert.Equal(incremental.ToJsonString(), Normalized().ToJsonString());
    }

    [Fact]
    public void Run_InvalidTransaction_ThrowsAndChangesNothing()
    {
        var image = new DataplaneImage();
        var plan = image.Plan([Service(1, LoadBalancingPolicy.Random, 1)]);
        _nft.Run(NftScript.Full(image.ToRuleset(plan)).ToString());
        var before = _nft.Run("list ruleset");
        var e = Assert.Throws<NftException>(() => _nft.Run("add element inet relay be4 { 10.89.0.99 . 0 : 10.88.0.9 }\nadd element inet relay nosuchmap { 1 }"));
        Assert.Contains("No such file or directory", e.Error);
        Assert.Equal(before, _nft.Run("list ruleset"));
    }
}

/// <summary>The context talks to the namespace it was opened in, whichever thread runs commands.</summary>
public sealed class NftContextThreadTests
{
    [Fact]
    public void Run_FromAThreadOutsideTheNamespace_ChangesTheContextsNamespaceOnly()
    {
        var ns = TestNetwork.UniqueName("relaytest-nftt-");
        Netns.Add(ns);
        try
        {
            using var thread = NetnsThread.Enter(ns);
            using var nft = NftContext.Open(thread);
            var table = "relaytestprobe" + ns[^8..];
            // This test thread is in the host's namespace; the table must land in ns, and listing
            // (which fills libnftables' cache) must read ns too.
            nft.Run($"add table inet {table}\nadd chain inet {table} c\nadd rule inet {table} c counter");
            Assert.Contains(table, nft.Run("list tables"));
            Assert.Contains(table, Sh.Ok("ip", "netns", "exec", ns, "nft", "list", "tables"));
            Assert.DoesNotContain(table, Sh.Ok("nft", "list", "tables"));
        }
        finally
        {
            Netns.Delete(ns);
        }
    }
}
