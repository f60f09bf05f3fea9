using Relay.Core.Dataplane;
using Relay.Core.LoadBalancing;
using Relay.Core.Model;
using static Relay.Core.Tests.Dataplane.Specs;

namespace Relay.Core.Tests.Dataplane;

public class NftScriptTests
{
    private static string[] Lines(NftTransaction tx) => tx.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);

    private static NftRuleset Compile(params DataplaneService[] services) => DataplaneCompiler.Compile(Spec(services));

    [Fact]
    public void Full_Empty_StartsWithAddThenDeleteTableThenSkeleton()
    {
        var tx = NftScript.Full(NftRuleset.Empty);

        Assert.StartsWith("add table inet relay\ndelete table inet relay\ntable inet relay {\n", tx.ToString());
        Assert.Contains(NftScript.Skeleton.TrimEnd(), tx.ToString());
        Assert.True(tx.IsFull);
        Assert.Equal(3, tx.Commands);
        Assert.Equal(0, tx.ElementsAdded);
        Assert.Equal(0, tx.ChainsAdded);
    }

    [Fact]
    public void Skeleton_DeclaresEveryMapAndBaseChain()
    {
        var s = NftScript.Skeleton;

        foreach (var set in new[] { "set src4", "set src6", "map svc4", "map svc6", "map port4", "map port6", "map be4", "map be6", "map pbe4t", "map pbe4u", "map pbe6t", "map pbe6u" })
        {
            Assert.Contains($"\t{set} {{", s);
        }
        Assert.Contains("type filter hook prerouting priority raw; policy accept;", s);
        Assert.Contains("type nat hook prerouting priority dstnat; policy accept;", s);
        Assert.Contains("type nat hook output priority -100; policy accept;", s);
        Assert.Contains("type nat hook postrouting priority srcnat; policy accept;", s);
        Assert.Contains("ip daddr vmap @svc4", s);
        Assert.Contains("ip6 daddr . meta l4proto . th dport vmap @port6", s);
        Assert.Contains("iifname \"rv*\" iifname . ip saddr != @src4 counter drop", s);
        Assert.DoesNotContain("\r", s);
        Assert.EndsWith("}\n", s);
    }

    [Fact]
    public void Full_Ruleset_AddsChainsBeforeElementsWithCounts()
    {
        var rs = Compile(Service(0, [0, 1]), Service(1, [2], ports: [new PortMapping(TransportProtocol.Tcp, 80, 8080)]));

        var tx = NftScript.Full(rs);
        var text = tx.ToString();

        Assert.Equal(4, tx.ChainsAdded);
        Assert.Equal(rs.ElementCount, tx.ElementsAdded);
        Assert.Contains("add chain inet relay lb4-round-robin-2\nadd rule inet relay lb4-round-robin-2 dnat ip to ip daddr . numgen inc mod 2 map @be4\n", text);
        Assert.Contains("add element inet relay svc4 { 10.99.0.1 : goto lb4-round-robin-2 }\n", text);
        Assert.Contains("add element inet relay be4 { 10.99.0.1 . 0 : 10.88.0.2, 10.99.0.1 . 1 : 10.88.0.3 }\n", text);
        Assert.Contains("add element inet relay pbe4t { 10.99.0.2 . 80 . 0 : 10.88.0.4 . 8080 }\n", text);
        Assert.True(text.LastIndexOf("add chain", StringComparison.Ordinal) < text.IndexOf("add element", StringComparison.Ordinal));
        Assert.DoesNotContain("add element inet relay src4", text);
    }

    [Fact]
    public void Full_Links_SetElementsHaveNoValue()
    {
        var rs = DataplaneCompiler.Compile(new DataplaneSpec([], [new DataplaneLink("rv3", System.Net.IPAddress.Parse("10.88.0.3"), System.Net.IPAddress.Parse("fd88::3"))]));

        var text = NftScript.Full(rs).ToString();

        Assert.Contains("add element inet relay src4 { \"rv3\" . 10.88.0.3 }\n", text);
        Assert.Contains("add element inet relay src6 { \"rv3\" . fd88::3 }\n", text);
    }

    [Fact]
    public void Full_AppliedOverAnyState_YieldsRuleset()
    {
        var old = Compile(Service(0, [0, 1, 2], LoadBalancingPolicy.Maglev), Service(3, [4]));
        var desired = Compile(Service(0, [0, 1]), Service(1, [2], ports: [new PortMapping(TransportProtocol.Udp, 53, 53)]));

        NftApply.AssertSame(desired, NftApply.Apply(old, NftScript.Full(desired)));
    }

    [Fact]
    public void Diff_SameRuleset_IsEmpty()
    {
        var rs = Compile(Service(0, [0, 1]), Service(1, [2, 3, 4], LoadBalancingPolicy.Maglev));

        var tx = NftScript.Diff(rs, rs);

        Assert.True(tx.IsEmpty);
        Assert.False(tx.IsFull);
        Assert.Equal("", tx.ToString());
        Assert.Equal(0, tx.ElementsAdded + tx.ElementsDeleted + tx.ChainsAdded + tx.ChainsChanged + tx.ChainsDeleted);
    }

    [Fact]
    public void Diff_EmptyToEmptyCompiled_IsEmpty()
    {
        Assert.True(NftScript.Diff(NftRuleset.Empty, DataplaneCompiler.Compile(DataplaneSpec.Empty)).IsEmpty);
    }

    [Fact]
    public void Diff_RepointOneServiceAmong10000_OneDeletionAndOneAdditionPerChangedElement()
    {
        var services = Enumerable.Range(0, 10_000).Select(i => Service(i, [i % 50])).ToArray();
        var current = Compile(services);
        var changed = services.ToArray();
        changed[4321] = Service(4321, [77]);
        var desired = Compile(changed);

        var tx = NftScript.Diff(current, desired);

        Assert.Equal(2, tx.ElementsDeleted);
        Assert.Equal(2, tx.ElementsAdded);
        Assert.Equal(0, tx.ChainsAdded);
        Assert.Equal(0, tx.ChainsChanged);
        Assert.Equal(0, tx.ChainsDeleted);
        Assert.Equal(4, tx.Commands);
        var (v4, v6) = Vip(4321);
        Assert.Equal(
        [
            $"delete element inet relay be4 {{ {v4} . 0 }}",
            $"delete element inet relay be6 {{ {v6} . 0 }}",
            $"add element inet relay be4 {{ {v4} . 0 : 10.88.0.79 }}",
            $"add element inet relay be6 {{ {v6} . 0 : fd88::4f }}",
        ], Lines(tx));
        Assert.DoesNotContain("chain", tx.ToString());
    }

    [Fact]
    public void Diff_AddBackendToNewCount_RepointsJumpAddsNewChainDeletesOldChain()
    {
        var current = Compile(Service(0, [0, 1]), Service(1, [2]));
        var desired = Compile(Service(0, [0, 1, 5]), Service(1, [2]));

        var tx = NftScript.Diff(current, desired);
        var text = tx.ToString();

        Assert.Equal(2, tx.ChainsAdded);
        Assert.Equal(0, tx.ChainsChanged);
        // One unused chain per family: lb4-round-robin-2 and lb6-round-robin-2.
        Assert.Equal(2, tx.ChainsDeleted);
        Assert.Equal(2, tx.ElementsDeleted); // svc4 and svc6 jumps
        Assert.Equal(4, tx.ElementsAdded);   // the two jumps again, and slot 2 in be4 and be6
        Assert.Equal(
        [
            "add chain inet relay lb4-round-robin-3",
            "add rule inet relay lb4-round-robin-3 dnat ip to ip daddr . numgen inc mod 3 map @be4",
            "add chain inet relay lb6-round-robin-3",
            "add rule inet relay lb6-round-robin-3 dnat ip6 to ip6 daddr . numgen inc mod 3 map @be6",
            "delete element inet relay svc4 { 10.99.0.1 }",
            "delete element inet relay svc6 { fd99::1 }",
            "add element inet relay be4 { 10.99.0.1 . 2 : 10.88.0.7 }",
            "add element inet relay be6 { fd99::1 . 2 : fd88::7 }",
            "add element inet relay svc4 { 10.99.0.1 : goto lb4-round-robin-3 }",
            "add element inet relay svc6 { fd99::1 : goto lb6-round-robin-3 }",
            "delete chain inet relay lb4-round-robin-2",
            "delete chain inet relay lb6-round-robin-2",
        ], Lines(tx));
        var firstDeleteChain = text.IndexOf("delete chain", StringComparison.Ordinal);
        Assert.True(firstDeleteChain > text.LastIndexOf("delete element", StringComparison.Ordinal));
        Assert.True(firstDeleteChain > text.LastIndexOf("add element", StringComparison.Ordinal));
        NftApply.AssertSame(desired, NftApply.Apply(current, tx));
    }

    [Fact]
    public void Diff_AddBackendToCountAlreadyInUse_NoChainAdded()
    {
        var current = Compile(Service(0, [0, 1]), Service(1, [2, 3, 4]), Service(2, [5, 6]));
        var desired = Compile(Service(0, [0, 1, 7]), Service(1, [2, 3, 4]), Service(2, [5, 6]));

        var tx = NftScript.Diff(current, desired);

        Assert.Equal(0, tx.ChainsAdded);
        Assert.Equal(0, tx.ChainsDeleted);
        Assert.Equal(2, tx.ElementsDeleted);
        Assert.Equal(4, tx.ElementsAdded);
        Assert.Contains("add element inet relay svc4 { 10.99.0.1 : goto lb4-round-robin-3 }", tx.ToString());
    }

    [Fact]
    public void Diff_RemoveLastServiceOfChain_DeletesElementsThenChain()
    {
        var current = Compile(Service(0, [0, 1]), Service(1, [2]));
        var desired = Compile(Service(1, [2]));

        var tx = NftScript.Diff(current, desired);

        Assert.Equal(8, tx.ElementsDeleted); // with the service's two traffic counters
        Assert.Equal(0, tx.ElementsAdded);
        Assert.Equal(2, tx.ChainsDeleted);
        Assert.EndsWith("delete chain inet relay lb4-round-robin-2\ndelete chain inet relay lb6-round-robin-2\n", tx.ToString());
        NftApply.AssertSame(desired, NftApply.Apply(current, tx));
    }

    [Fact]
    public void Diff_ChainWithDifferentRules_FlushedAndRefilled()
    {
        var current = new NftRuleset(
            new Dictionary<string, IReadOnlyList<string>> { ["lb4-random-2"] = ["old rule"] },
            new Dictionary<string, IReadOnlyDictionary<string, string>>());
        var desired = new NftRuleset(
            new Dictionary<string, IReadOnlyList<string>> { ["lb4-random-2"] = ["rule a", "rule b"] },
            new Dictionary<string, IReadOnlyDictionary<string, string>>());

        var tx = NftScript.Diff(current, desired);

        Assert.Equal(1, tx.ChainsChanged);
        Assert.Equal(0, tx.ChainsAdded);
        Assert.Equal(
        [
            "flush chain inet relay lb4-random-2",
            "add rule inet relay lb4-random-2 rule a",
            "add rule inet relay lb4-random-2 rule b",
        ], Lines(tx));
    }

    [Fact]
    public void Full_MoreElementsThanPerCommand_SplitAcrossCommands()
    {
        var count = 2 * NftScript.ElementsPerCommand + 1;
        var rs = Ruleset("be4", count);

        var tx = NftScript.Full(rs);
        var commands = Lines(tx).Where(l => l.StartsWith("add element inet relay be4 ", StringComparison.Ordinal)).ToArray();

        Assert.Equal(3, commands.Length);
        Assert.Equal([NftScript.ElementsPerCommand, NftScript.ElementsPerCommand, 1], commands.Select(c => c.Split(", ").Length));
        Assert.Equal(count, tx.ElementsAdded);
    }

    [Fact]
    public void Diff_MoreDeletionsThanPerCommand_SplitAcrossCommands()
    {
        var count = NftScript.ElementsPerCommand + 5;

        var tx = NftScript.Diff(Ruleset("be4", count), Ruleset("be4", 0));
        var commands = Lines(tx);

        Assert.Equal(2, commands.Length);
        Assert.All(commands, c => Assert.StartsWith("delete element inet relay be4 { ", c));
        Assert.Equal([NftScript.ElementsPerCommand, 5], commands.Select(c => c.Split(", ").Length));
        Assert.Equal(count, tx.ElementsDeleted);
    }

    [Fact]
    public void Diff_ExactlyPerCommandElements_OneCommand()
    {
        var tx = NftScript.Diff(NftRuleset.Empty, Ruleset("be6", NftScript.ElementsPerCommand));

        Assert.Equal(1, tx.Commands);
        Assert.Equal(NftScript.ElementsPerCommand, tx.ElementsAdded);
    }

    private static NftRuleset Ruleset(string set, int count)
    {
        var elements = new Dictionary<string, string>();
        for (var i = 0; i < count; i++)
        {
            elements[$"10.99.{i / 256}.{i % 256} . 0"] = "10.88.0.2";
        }
        return new NftRuleset(
            new Dictionary<string, IReadOnlyList<string>>(),
            new Dictionary<string, IReadOnlyDictionary<string, string>> { [set] = elements });
    }

    [Fact]
    public void Diff_RandomChangeSequence_AppliedDiffYieldsDesiredRuleset()
    {
        var random = new Random(1123);
        var model = new Model(random);
        var current = NftRuleset.Empty;
        var stats = new int[3];
        for (var step = 0; step < 300; step++)
        {
            model.Mutate();
            var desired = DataplaneCompiler.Compile(model.Spec());

            var tx = NftScript.Diff(current, desired);
            var applied = NftApply.Apply(current, tx);

            NftApply.AssertSame(desired, applied);
            Assert.True(NftScript.Diff(applied, desired).IsEmpty, $"step {step}: diff not idempotent");
            Assert.Equal(tx.ElementsDeleted + tx.ElementsAdded == 0 && tx.ChainsAdded + tx.ChainsDeleted == 0, tx.IsEmpty);
            stats[0] += tx.ChainsAdded;
            stats[1] += tx.ChainsDeleted;
            stats[2] += tx.ElementsDeleted;
            if (step % 75 == 0)
            {
                NftApply.AssertSame(desired, NftApply.Apply(current, NftScript.Full(desired)));
            }
            current = desired;
        }
        // The sequence did exercise chain creation, chain deletion and element replacement.
        Assert.All(stats, s => Assert.True(s > 10));
    }

    /// <summary>A random network: services with policies, ports and backends, and instance links.</summary>
    private sealed class Model(Random random)
    {
        private sealed class Svc
        {
            public LoadBalancingPolicy Policy;
            public List<int> Backends = [];
            public List<PortMapping> Ports = [];
            public int TableSize = Maglev.TableSize(0);
        }

        private readonly Dictionary<int, Svc> _services = [];
        private readonly SortedSet<int> _links = [];

        public DataplaneSpec Spec() => new(
            _services.OrderBy(s => s.Key).Select(s => Service(s.Key, s.Value.Backends, s.Value.Policy, [.. s.Value.Ports], s.Value.TableSize)).ToArray(),
            _links.Select(i => new DataplaneLink($"rv{i}", Backend(i).Address4, Backend(i).Address6)).ToArray());

        public void Mutate()
        {
            var op = random.Next(9);
            if (_services.Count == 0 || (op == 0 && _services.Count < 12))
            {
                var id = random.Next(16);
                if (!_services.ContainsKey(id))
                {
                    var svc = new Svc { Policy = RandomPolicy(), Ports = RandomPorts() };
                    var n = random.Next(0, 4);
                    while (svc.Backends.Count < n)
                    {
                        AddBackend(svc);
                    }
                    svc.TableSize = Maglev.GrowTableSize(svc.TableSize, svc.Backends.Count);
                    _services[id] = svc;
                }
                return;
            }
            var key = _services.Keys.Order().ElementAt(random.Next(_services.Count));
            var s = _services[key];
            switch (op)
            {
                case 1:
                    _services.Remove(key);
                    break;
                case 2 when s.Backends.Count < 6:
                    AddBackend(s);
                    break;
                case 3 when s.Backends.Count > 0:
                    s.Backends.RemoveAt(random.Next(s.Backends.Count));
                    break;
                case 4 when s.Backends.Count > 0:
                    var replacement = random.Next(20);
                    if (!s.Backends.Contains(replacement))
                    {
                        s.Backends[random.Next(s.Backends.Count)] = replacement;
                    }
                    break;
                case 5:
                    s.Policy = RandomPolicy();
                    break;
                case 6:
                    s.Ports = RandomPorts();
                    break;
                case 7:
                    var link = random.Next(20);
                    if (!_links.Remove(link))
                    {
                        _links.Add(link);
                    }
                    break;
                default:
                    AddBackend(s);
                    break;
            }
            s.TableSize = Maglev.GrowTableSize(s.TableSize, s.Backends.Count);
        }

        private void AddBackend(Svc s)
        {
            var b = random.Next(20);
            if (!s.Backends.Contains(b))
            {
                s.Backends.Add(b);
            }
        }

        private LoadBalancingPolicy RandomPolicy() => random.Next(5) switch
        {
            0 => LoadBalancingPolicy.Maglev,
            1 => LoadBalancingPolicy.Source,
            2 => LoadBalancingPolicy.Random,
            _ => LoadBalancingPolicy.RoundRobin,
        };

        private List<PortMapping> RandomPorts() => random.Next(3) switch
        {
            0 => [new PortMapping(TransportProtocol.Tcp, 80, 8080)],
            1 => [new PortMapping(TransportProtocol.Tcp, 443, 8443), new PortMapping(TransportProtocol.Udp, 53, 5353)],
            _ => [],
        };
    }
}
