using System.Net;
using Relay.Core.LoadBalancing;
using Relay.Core.Model;

namespace Relay.Core.Dataplane;

/// <summary>
/// Compiles the desired state of a network into nft objects. Pure: the same spec always gives the
/// same ruleset, which is what lets an incremental update and a full resync end in the same kernel state.
/// <para>
/// The design keeps every per-service fact in map elements and never in a chain of its own:
/// dispatch is one verdict-map lookup keyed by the virtual address, which jumps to a balancing
/// chain shared by every service with the same policy and instance count; that chain picks a slot
/// (<c>numgen</c> or <c>jhash</c>) and translates through one more map keyed by virtual address and
/// slot. Re-pointing a service is then a handful of element updates, and libnftables never has to
/// fetch thousands of chains into its cache (see docs/decisions/001-dataplane-maps-not-chains.md).
/// </para>
/// </summary>
public static class DataplaneCompiler
{
    /// <summary>Every set and map that holds elements.</summary>
    public static IReadOnlyList<string> ElementSets { get; } =
    [
        NftNames.Sources4, NftNames.Sources6, NftNames.Services4, NftNames.Services6, NftNames.Ports4,
        NftNames.Ports6, NftNames.Backends4, NftNames.Backends6,
        NftNames.TcpBackends4, NftNames.UdpBackends4, NftNames.TcpBackends6, NftNames.UdpBackends6,
        NftNames.Flows4, NftNames.Flows6, NftNames.FlowStats4, NftNames.FlowStats6,
        NftNames.ServiceStats4, NftNames.ServiceStats6,
    ];

    /// <summary>Compiles <paramref name="spec"/> as a whole (the full-resync path).</summary>
    public static NftRuleset Compile(DataplaneSpec spec)
        => Merge(spec.Links.Select(CompileLink).Concat(spec.Services.Select(CompileService)).Concat((spec.Flows ?? []).Select(CompileFlow)));

    /// <summary>
    /// One flow address: its translation, and its counter keyed by client and flow address (so it
    /// counts only the owner's packets and survives re-points, which change the translation only).
    /// </summary>
    public static NftFragment CompileFlow(DataplaneFlow flow) => new(
        new Dictionary<string, IReadOnlyList<string>>(),
        [
            new NftElement(NftNames.Flows4, flow.Flow4.ToString(), flow.Backend4.ToString()),
            new NftElement(NftNames.Flows6, flow.Flow6.ToString(), flow.Backend6.ToString()),
            new NftElement(NftNames.FlowStats4, $"{flow.Client4} . {flow.Flow4}", ""),
            new NftElement(NftNames.FlowStats6, $"{flow.Client6} . {flow.Flow6}", ""),
        ]);

    /// <summary>The union of fragments: shared chains once, every element.</summary>
    public static NftRuleset Merge(IEnumerable<NftFragment> fragments)
    {
        var chains = new SortedDictionary<string, IReadOnlyList<string>>(StringComparer.Ordinal);
        var elements = new SortedDictionary<string, Dictionary<string, string>>(StringComparer.Ordinal);
        foreach (var name in ElementSets)
        {
            elements[name] = new Dictionary<string, string>(StringComparer.Ordinal);
        }
        foreach (var f in fragments)
        {
            foreach (var (chain, rules) in f.Chains)
            {
                chains.TryAdd(chain, rules);
            }
            foreach (var e in f.Elements)
            {
                elements[e.Set][e.Key] = e.Value;
            }
        }
        var frozen = new SortedDictionary<string, IReadOnlyDictionary<string, string>>(StringComparer.Ordinal);
        foreach (var (name, map) in elements)
        {
            frozen[name] = map;
        }
        return new NftRuleset(chains, frozen);
    }

    /// <summary>The anti-spoofing (and hairpin) elements of one instance link.</summary>
    public static NftFragment CompileLink(DataplaneLink link) => new(
        new Dictionary<string, IReadOnlyList<string>>(),
        [
            new NftElement(NftNames.Sources4, $"\"{link.HostInterface}\" . {link.Address4}", ""),
            new NftElement(NftNames.Sources6, $"\"{link.HostInterface}\" . {link.Address6}", ""),
        ]);

    /// <summary>
    /// Everything one service contributes: its dispatch elements, its slot elements and the
    /// (shared) balancing chains they jump to. Services never share an element (their virtual
    /// addresses differ), only chains.
    /// </summary>
    public static NftFragment CompileService(DataplaneService service)
    {
        var chains = new Dictionary<string, IReadOnlyList<string>>(StringComparer.Ordinal);
        // Counted whether or not it has instances: traffic to a service with none is worth seeing.
        var elements = new List<NftElement>
        {
            new(NftNames.ServiceStats4, service.Vip4.ToString(), ""),
            new(NftNames.ServiceStats6, service.Vip6.ToString(), ""),
        };
        if (service.Backends.Count == 0)
        {
            // No entry at all: the orchestrator has no route for virtual addresses, so the
            // client gets "no route to host" at once instead of a silent black hole.
            return new NftFragment(chains, elements);
        }
        var slots = SlotOwners(service);
        var modulus = slots.Length;
        var policy = PolicyNames.Of(service.Policy);
        if (service.Ports.Count == 0)
        {
            var chain4 = NftNames.BalancerChain(4, null, policy, modulus);
            var chain6 = NftNames.BalancerChain(6, null, policy, modulus);
            chains[chain4] = BalancerRules(4, null, service.Policy, modulus);
            chains[chain6] = BalancerRules(6, null, service.Policy, modulus);
            elements.Add(new NftElement(NftNames.Services4, service.Vip4.ToString(), "goto " + chain4));
            elements.Add(new NftElement(NftNames.Services6, service.Vip6.ToString(), "goto " + chain6));
            for (var s = 0; s < slots.Length; s++)
            {
                var b = service.Backends[slots[s]];
                elements.Add(new NftElement(NftNames.Backends4, $"{service.Vip4} . {s}", b.Address4.ToString()));
                elements.Add(new NftElement(NftNames.Backends6, $"{service.Vip6} . {s}", b.Address6.ToString()));
            }
            return new NftFragment(chains, elements);
        }
        foreach (var port in service.Ports)
        {
            var chain4 = NftNames.BalancerChain(4, port.Protocol, policy, modulus);
            var chain6 = NftNames.BalancerChain(6, port.Protocol, policy, modulus);
            chains[chain4] = BalancerRules(4, port.Protocol, service.Policy, modulus);
            chains[chain6] = BalancerRules(6, port.Protocol, service.Policy, modulus);
            elements.Add(new NftElement(NftNames.Ports4, $"{service.Vip4} . {port.ProtocolName} . {port.Port}", "goto " + chain4));
            elements.Add(new NftElement(NftNames.Ports6, $"{service.Vip6} . {port.ProtocolName} . {port.Port}", "goto " + chain6));
            var map4 = NftNames.PortBackends(4, port.Protocol);
            var map6 = NftNames.PortBackends(6, port.Protocol);
            for (var s = 0; s < slots.Length; s++)
            {
                var b = service.Backends[slots[s]];
                elements.Add(new NftElement(map4, $"{service.Vip4} . {port.Port} . {s}", $"{b.Address4} . {port.TargetPort}"));
                elements.Add(new NftElement(map6, $"{service.Vip6} . {port.Port} . {s}", $"{b.Address6} . {port.TargetPort}"));
            }
        }
        return new NftFragment(chains, elements);
    }

    /// <summary>
    /// Which backend owns each slot. Round-robin and random: slot i is backend i, so replacing one
    /// backend in place moves only its flows. Maglev and source: the Maglev lookup table.
    /// </summary>
    public static int[] SlotOwners(DataplaneService service)
    {
        if (PolicyNames.UsesLookupTable(service.Policy))
        {
            var names = service.Backends.Select(b => b.Instance).ToArray();
            return Maglev.Build(names, service.MaglevTableSize);
        }
        return Enumerable.Range(0, service.Backends.Count).ToArray();
    }

    /// <summary>The rules of a balancing chain; they depend only on the chain's name parts.</summary>
    public static IReadOnlyList<string> BalancerRules(int family, TransportProtocol? protocol, LoadBalancingPolicy policy, int modulus)
    {
        var ip = family == 4 ? "ip" : "ip6";
        var icmp = family == 4 ? "icmp" : "icmpv6";
        var map = protocol is { } p ? NftNames.PortBackends(family, p) : (family == 4 ? NftNames.Backends4 : NftNames.Backends6);
        // The key starts with what dispatch already matched (the virtual address, and the port for
        // port-mapped services), then the slot. A port chain serves one protocol only, so it names
        // it (tcp dport), which is also what nft expects of a map whose data holds that port.
        var proto = protocol switch { TransportProtocol.Tcp => "tcp", TransportProtocol.Udp => "udp", _ => null };
        var prefix = proto is null ? $"{ip} daddr" : $"{ip} daddr . {proto} dport";
        string Dnat(string slot) => $"dnat {ip} to {prefix} . {slot} map @{map}";
        var seed = NftNames.HashSeed;
        return policy switch
        {
            LoadBalancingPolicy.RoundRobin => [Dnat($"numgen inc mod {modulus}")],
            LoadBalancingPolicy.Random => [Dnat($"numgen random mod {modulus}")],
            LoadBalancingPolicy.Source => [Dnat($"jhash {ip} saddr mod {modulus} seed {seed}")],
            LoadBalancingPolicy.Maglev when proto is not null => [Dnat($"jhash {ip} saddr . {proto} sport mod {modulus} seed {seed}")],
            LoadBalancingPolicy.Maglev =>
            [
                $"meta l4proto {{ tcp, udp, sctp }} " + Dnat($"jhash {ip} saddr . meta l4proto . th sport . th dport mod {modulus} seed {seed}"),
                $"{icmp} type echo-request " + Dnat($"jhash {ip} saddr . {icmp} id mod {modulus} seed {seed}"),
                Dnat($"jhash {ip} saddr mod {modulus} seed {seed}"),
            ],
            _ => throw new ArgumentOutOfRangeException(nameof(policy)),
        };
    }
}
