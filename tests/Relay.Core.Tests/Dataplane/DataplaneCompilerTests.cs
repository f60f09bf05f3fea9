using System.Net;
using Relay.Core.Dataplane;
using Relay.Core.LoadBalancing;
using Relay.Core.Model;
using static Relay.Core.Tests.Dataplane.Specs;

namespace Relay.Core.Tests.Dataplane;

public class DataplaneCompilerTests
{
    private const string Seed = "seed 0x52656c61";

    private static readonly string[] AllSets = ["be4", "be6", "flow4", "flow6", "fstat4", "fstat6", "pbe4t", "pbe4u", "pbe6t", "pbe6u", "port4", "port6", "src4", "src6", "svc4", "svc6", "vstat4", "vstat6"];

    [Fact]
    public void Compile_Layer3RoundRobinTwoBackends_SvcElementsJumpToSharedChain()
    {
        var rs = DataplaneCompiler.Compile(Spec(Service(0, [0, 1])));

        Assert.Equal(new Dictionary<string, string> { ["10.99.0.1"] = "goto lb4-round-robin-2" }, rs.Elements["svc4"]);
        Assert.Equal(new Dictionary<string, string> { ["fd99::1"] = "goto lb6-round-robin-2" }, rs.Elements["svc6"]);
    }

    [Fact]
    public void Compile_Layer3RoundRobinTwoBackends_BackendElementsPerSlot()
    {
        var rs = DataplaneCompiler.Compile(Spec(Service(0, [0, 1])));

        Assert.Equal(new Dictionary<string, string> { ["10.99.0.1 . 0"] = "10.88.0.2", ["10.99.0.1 . 1"] = "10.88.0.3" }, rs.Elements["be4"]);
        Assert.Equal(new Dictionary<string, string> { ["fd99::1 . 0"] = "fd88::2", ["fd99::1 . 1"] = "fd88::3" }, rs.Elements["be6"]);
        Assert.Empty(rs.Elements["port4"]);
        Assert.Empty(rs.Elements["pbe4t"]);
        Assert.Empty(rs.Elements["src4"]);
        Assert.Equal(8, rs.ElementCount); // 6 dispatch and slot elements, 2 traffic counters
    }

    [Fact]
    public void Compile_Layer3RoundRobin_ChainRules()
    {
        var rs = DataplaneCompiler.Compile(Spec(Service(0, [0, 1])));

        Assert.Equal(["lb4-round-robin-2", "lb6-round-robin-2"], rs.Chains.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(["dnat ip to ip daddr . numgen inc mod 2 map @be4"], rs.Chains["lb4-round-robin-2"]);
        Assert.Equal(["dnat ip6 to ip6 daddr . numgen inc mod 2 map @be6"], rs.Chains["lb6-round-robin-2"]);
    }

    [Fact]
    public void Compile_Random_UsesNumgenRandom()
    {
        var rs = DataplaneCompiler.Compile(Spec(Service(0, [0, 1, 2], LoadBalancingPolicy.Random)));

        Assert.Equal("goto lb4-random-3", rs.Elements["svc4"]["10.99.0.1"]);
        Assert.Equal(["dnat ip to ip daddr . numgen random mod 3 map @be4"], rs.Chains["lb4-random-3"]);
        Assert.Equal(["dnat ip6 to ip6 daddr . numgen random mod 3 map @be6"], rs.Chains["lb6-random-3"]);
        Assert.Equal(["10.88.0.2", "10.88.0.3", "10.88.0.4"], Enumerable.Range(0, 3).Select(s => rs.Elements["be4"][$"10.99.0.1 . {s}"]));
    }

    [Fact]
    public void Compile_Maglev_OneElementPerTableSlotAndChainNamedForTableSize()
    {
        var m = Maglev.TableSize(3);
        var service = Service(0, [0, 1, 2], LoadBalancingPolicy.Maglev, tableSize: m);

        var rs = DataplaneCompiler.Compile(Spec(service));

        Assert.Equal(m, rs.Elements["be4"].Count);
        Assert.Equal(m, rs.Elements["be6"].Count);
        Assert.Equal("goto lb4-maglev-1009", rs.Elements["svc4"]["10.99.0.1"]);
        Assert.Equal("goto lb6-maglev-1009", rs.Elements["svc6"]["fd99::1"]);
        Assert.Equal(
        [
            $"meta l4proto {{ tcp, udp, sctp }} dnat ip to ip daddr . jhash ip saddr . meta l4proto . th sport . th dport mod 1009 {Seed} map @be4",
            $"icmp type echo-request dnat ip to ip daddr . jhash ip saddr . icmp id mod 1009 {Seed} map @be4",
            $"dnat ip to ip daddr . jhash ip saddr mod 1009 {Seed} map @be4",
        ], rs.Chains["lb4-maglev-1009"]);
        Assert.StartsWith("icmpv6 type echo-request dnat ip6 to ip6 daddr . jhash ip6 saddr . icmpv6 id mod 1009", rs.Chains["lb6-maglev-1009"][1]);
    }

    [Fact]
    public void Compile_Maglev_SlotsFollowLookupTable()
    {
        var service = Service(0, [0, 1, 2], LoadBalancingPolicy.Maglev);
        var table = Maglev.Build(["inst-0", "inst-1", "inst-2"], service.MaglevTableSize);

        var rs = DataplaneCompiler.Compile(Spec(service));

        for (var s = 0; s < table.Length; s++)
        {
            Assert.Equal(service.Backends[table[s]].Address4.ToString(), rs.Elements["be4"][$"10.99.0.1 . {s}"]);
            Assert.Equal(service.Backends[table[s]].Address6.ToString(), rs.Elements["be6"][$"fd99::1 . {s}"]);
        }
        var perBackend = rs.Elements["be4"].Values.GroupBy(v => v).Select(g => g.Count()).ToArray();
        Assert.Equal(3, perBackend.Length);
        Assert.All(perBackend, c => Assert.InRange(c, 1009 / 3, 1009 / 3 + 1));
    }

    [Fact]
    public void Compile_Source_HashesClientAddressOnly()
    {
        var rs = DataplaneCompiler.Compile(Spec(Service(0, [0, 1], LoadBalancingPolicy.Source)));

        Assert.Equal(["lb4-source-1009", "lb6-source-1009"], rs.Chains.Keys.Order(StringComparer.Ordinal));
        Assert.Equal([$"dnat ip to ip daddr . jhash ip saddr mod 1009 {Seed} map @be4"], rs.Chains["lb4-source-1009"]);
        Assert.Equal([$"dnat ip6 to ip6 daddr . jhash ip6 saddr mod 1009 {Seed} map @be6"], rs.Chains["lb6-source-1009"]);
        Assert.Equal(1009, rs.Elements["be4"].Count);
    }

    [Fact]
    public void SlotOwners_RoundRobinAndRandom_SlotIIsBackendI()
    {
        Assert.Equal([0, 1, 2, 3], DataplaneCompiler.SlotOwners(Service(0, [5, 6, 7, 8])));
        Assert.Equal([0, 1], DataplaneCompiler.SlotOwners(Service(0, [5, 6], LoadBalancingPolicy.Random)));
    }

    [Fact]
    public void SlotOwners_Maglev_IsLookupTableOfInstanceNames()
    {
        var service = Service(0, [5, 6, 7], LoadBalancingPolicy.Maglev);

        Assert.Equal(Maglev.Build(["inst-5", "inst-6", "inst-7"], 1009), DataplaneCompiler.SlotOwners(service));
    }

    [Fact]
    public void Compile_PortMappedService_PortElementsOnly()
    {
        var service = Service(0, [0], ports: [new PortMapping(TransportProtocol.Tcp, 80, 8080)]);

        var rs = DataplaneCompiler.Compile(Spec(service));

        Assert.Equal(new Dictionary<string, string> { ["10.99.0.1 . tcp . 80"] = "goto lb4t-round-robin-1" }, rs.Elements["port4"]);
        Assert.Equal(new Dictionary<string, string> { ["fd99::1 . tcp . 80"] = "goto lb6t-round-robin-1" }, rs.Elements["port6"]);
        Assert.Equal(new Dictionary<string, string> { ["10.99.0.1 . 80 . 0"] = "10.88.0.2 . 8080" }, rs.Elements["pbe4t"]);
        Assert.Equal(new Dictionary<string, string> { ["fd99::1 . 80 . 0"] = "fd88::2 . 8080" }, rs.Elements["pbe6t"]);
        Assert.Empty(rs.Elements["pbe4u"]);
        Assert.Empty(rs.Elements["svc4"]);
        Assert.Empty(rs.Elements["svc6"]);
        Assert.Empty(rs.Elements["be4"]);
        Assert.Empty(rs.Elements["be6"]);
        Assert.Equal(["dnat ip to ip daddr . tcp dport . numgen inc mod 1 map @pbe4t"], rs.Chains["lb4t-round-robin-1"]);
        Assert.Equal(["dnat ip6 to ip6 daddr . tcp dport . numgen inc mod 1 map @pbe6t"], rs.Chains["lb6t-round-robin-1"]);
        Assert.Equal(2, rs.Chains.Count);
    }

    [Fact]
    public void Compile_PortMappedServiceTwoPortsTwoBackends_ElementsPerPortAndSlot()
    {
        var service = Service(0, [0, 1], ports:
        [
            new PortMapping(TransportProtocol.Tcp, 80, 8080),
            new PortMapping(TransportProtocol.Udp, 53, 5353),
        ]);

        var rs = DataplaneCompiler.Compile(Spec(service));

        Assert.Equal(new Dictionary<string, string>
        {
            ["10.99.0.1 . 80 . 0"] = "10.88.0.2 . 8080",
            ["10.99.0.1 . 80 . 1"] = "10.88.0.3 . 8080",
        }, rs.Elements["pbe4t"]);
        Assert.Equal(new Dictionary<string, string>
        {
            ["10.99.0.1 . 53 . 0"] = "10.88.0.2 . 5353",
            ["10.99.0.1 . 53 . 1"] = "10.88.0.3 . 5353",
        }, rs.Elements["pbe4u"]);
        Assert.Equal("goto lb4u-round-robin-2", rs.Elements["port4"]["10.99.0.1 . udp . 53"]);
        Assert.Equal("goto lb4t-round-robin-2", rs.Elements["port4"]["10.99.0.1 . tcp . 80"]);
        // Each protocol's chain matches only its own protocol (nft adds that to a port translation).
        Assert.Equal(["dnat ip to ip daddr . udp dport . numgen inc mod 2 map @pbe4u"], rs.Chains["lb4u-round-robin-2"]);
    }

    [Fact]
    public void Compile_PortMappedMaglev_HashesSourceAndPort()
    {
        var service = Service(0, [0, 1], LoadBalancingPolicy.Maglev, ports: [new PortMapping(TransportProtocol.Tcp, 443, 443)]);

        var rs = DataplaneCompiler.Compile(Spec(service));

        Assert.Equal([$"dnat ip to ip daddr . tcp dport . jhash ip saddr . tcp sport mod 1009 {Seed} map @pbe4t"], rs.Chains["lb4t-maglev-1009"]);
        Assert.Equal(1009, rs.Elements["pbe4t"].Count);
    }

    [Fact]
    public void Compile_ServiceWithoutBackends_OnlyItsTrafficCountersNoChains()
    {
        var rs = DataplaneCompiler.Compile(Spec(
            Service(0, []),
            Service(1, [], LoadBalancingPolicy.Maglev, ports: [new PortMapping(TransportProtocol.Tcp, 80, 80)])));

        Assert.Equal(4, rs.ElementCount);
        Assert.Equal(2, rs.Elements["vstat4"].Count);
        Assert.Equal(2, rs.Elements["vstat6"].Count);
        Assert.Empty(rs.Chains);
        Assert.Equal(AllSets, rs.Elements.Keys);
    }

    [Fact]
    public void Compile_EmptySpec_EverySetPresentAndEmpty()
    {
        var rs = DataplaneCompiler.Compile(DataplaneSpec.Empty);

        Assert.Equal(AllSets, rs.Elements.Keys);
        Assert.All(rs.Elements.Values, Assert.Empty);
        Assert.Empty(rs.Chains);
    }

    [Fact]
    public void Compile_Links_SourceSetElements()
    {
        var spec = new DataplaneSpec([],
        [
            new DataplaneLink("rv3", IPAddress.Parse("10.88.0.3"), IPAddress.Parse("fd88::3")),
            new DataplaneLink("rv4", IPAddress.Parse("10.88.0.4"), IPAddress.Parse("fd88::4")),
        ]);

        var rs = DataplaneCompiler.Compile(spec);

        Assert.Equal(new Dictionary<string, string> { ["\"rv3\" . 10.88.0.3"] = "", ["\"rv4\" . 10.88.0.4"] = "" }, rs.Elements["src4"]);
        Assert.Equal(new Dictionary<string, string> { ["\"rv3\" . fd88::3"] = "", ["\"rv4\" . fd88::4"] = "" }, rs.Elements["src6"]);
        Assert.Equal(4, rs.ElementCount);
    }

    [Fact]
    public void Compile_TwoServicesSamePolicyAndCount_ShareOneChainPerFamily()
    {
        var rs = DataplaneCompiler.Compile(Spec(Service(0, [0, 1]), Service(1, [2, 3])));

        Assert.Equal(["lb4-round-robin-2", "lb6-round-robin-2"], rs.Chains.Keys.Order(StringComparer.Ordinal));
        Assert.Equal("goto lb4-round-robin-2", rs.Elements["svc4"]["10.99.0.1"]);
        Assert.Equal("goto lb4-round-robin-2", rs.Elements["svc4"]["10.99.0.2"]);
        Assert.Equal("10.88.0.4", rs.Elements["be4"]["10.99.0.2 . 0"]);
    }

    [Fact]
    public void Compile_ServicesDifferingInCountOrPolicy_OwnChains()
    {
        var rs = DataplaneCompiler.Compile(Spec(
            Service(0, [0, 1]),
            Service(1, [0, 1, 2]),
            Service(2, [0, 1], LoadBalancingPolicy.Random)));

        Assert.Equal(
            ["lb4-random-2", "lb4-round-robin-2", "lb4-round-robin-3", "lb6-random-2", "lb6-round-robin-2", "lb6-round-robin-3"],
            rs.Chains.Keys.Order(StringComparer.Ordinal));
    }

    [Fact]
    public void Compile_SameSpecTwice_SameRuleset()
    {
        var spec = Spec(Service(0, [0, 1]), Service(1, [2], LoadBalancingPolicy.Maglev), Service(2, [3], ports: [new PortMapping(TransportProtocol.Udp, 53, 53)]));

        var a = DataplaneCompiler.Compile(spec);
        var b = DataplaneCompiler.Compile(spec);

        NftApply.AssertSame(a, b);
        Assert.True(NftScript.Diff(a, b).IsEmpty);
    }

    [Fact]
    public void BalancerRules_DependOnlyOnNameParts()
    {
        Assert.Equal(
            DataplaneCompiler.BalancerRules(4, null, LoadBalancingPolicy.RoundRobin, 7),
            DataplaneCompiler.BalancerRules(4, null, LoadBalancingPolicy.RoundRobin, 7));
        Assert.NotEqual(
            DataplaneCompiler.BalancerRules(4, null, LoadBalancingPolicy.RoundRobin, 7),
            DataplaneCompiler.BalancerRules(4, null, LoadBalancingPolicy.RoundRobin, 8));
        Assert.Throws<ArgumentOutOfRangeException>(() => DataplaneCompiler.BalancerRules(4, null, (LoadBalancingPolicy)42, 1));
    }

    [Theory]
    [InlineData(4, null, "round-robin", 2, "lb4-round-robin-2")]
    [InlineData(6, TransportProtocol.Tcp, "maglev", 1009, "lb6t-maglev-1009")]
    [InlineData(4, TransportProtocol.Udp, "round-robin", 3, "lb4u-round-robin-3")]
    public void BalancerChain_Parts_Name(int family, TransportProtocol? protocol, string policy, int modulus, string expected)
    {
        Assert.Equal(expected, NftNames.BalancerChain(family, protocol, policy, modulus));
    }
}
