using System.Text;

namespace Relay.Core.Dataplane;

/// <summary>
/// Renders rulesets as nft command text for ONE libnftables call, i.e. one kernel transaction:
/// either a full replacement of Relay's table or the difference between two rulesets.
/// </summary>
public static class NftScript
{
    /// <summary>At most this many elements per command line: keeps lines and error messages readable.</summary>
    public const int ElementsPerCommand = 2048;

    /// <summary>
    /// The fixed part of the table. Port-mapped services have one slot map per protocol: nft 1.0.6
    /// cannot read a <c>typeof</c> mixing <c>ip</c> and <c>th</c> back from the kernel ("conflicting
    /// protocols specified: ip vs. th"), and a map whose data is a <c>tcp dport</c> makes every
    /// translation through it match TCP only. Priorities: the anti-spoofing guard runs at <c>raw</c> so a
    /// spoofed packet never creates a conntrack entry; translation at <c>dstnat</c>/<c>srcnat</c>.
    /// </summary>
    public static string Skeleton { get; } = $$"""
        table {{NftNames.QualifiedTable}} {
        	comment "Relay data plane: written only by relay, in relay's own namespace"
        	set {{NftNames.Sources4}} { type ifname . ipv4_addr; }
        	set {{NftNames.Sources6}} { type ifname . ipv6_addr; }
        	map {{NftNames.Services4}} { type ipv4_addr : verdict; }
        	map {{NftNames.Services6}} { type ipv6_addr : verdict; }
        	map {{NftNames.Ports4}} { type ipv4_addr . inet_proto . inet_service : verdict; }
        	map {{NftNames.Ports6}} { type ipv6_addr . inet_proto . inet_service : verdict; }
        	map {{NftNames.Backends4}} { typeof ip daddr . numgen inc mod 1 : ip daddr; }
        	map {{NftNames.Backends6}} { typeof ip6 daddr . numgen inc mod 1 : ip6 daddr; }
        	map {{NftNames.Flows4}} { type ipv4_addr : ipv4_addr; }
        	map {{NftNames.Flows6}} { type ipv6_addr : ipv6_addr; }
        	set {{NftNames.ServiceStats4}} { type ipv4_addr; counter; }
        	set {{NftNames.ServiceStats6}} { type ipv6_addr; counter; }
        	set {{NftNames.FlowStats4}} { type ipv4_addr . ipv4_addr; counter; }
        	set {{NftNames.FlowStats6}} { type ipv6_addr . ipv6_addr; counter; }
        	set {{NftNames.DnsRate4}} { type ipv4_addr; size 65535; flags dynamic,timeout; timeout 1m; }
        	set {{NftNames.DnsRate6}} { type ipv6_addr; size 65535; flags dynamic,timeout; timeout 1m; }
        	map {{NftNames.TcpBackends4}} { typeof ip daddr . tcp dport . numgen inc mod 1 : ip daddr . tcp dport; }
        	map {{NftNames.UdpBackends4}} { typeof ip daddr . udp dport . numgen inc mod 1 : ip daddr . udp dport; }
        	map {{NftNames.TcpBackends6}} { typeof ip6 daddr . tcp dport . numgen inc mod 1 : ip6 daddr . tcp dport; }
        	map {{NftNames.UdpBackends6}} { typeof ip6 daddr . udp dport . numgen inc mod 1 : ip6 daddr . udp dport; }
        	chain guard {
        		type filter hook prerouting priority raw; policy accept;
        		iifname "{{NftNames.HostInterfacePrefix}}*" iifname . ip saddr != @{{NftNames.Sources4}} counter drop comment "anti-spoofing"
        		iifname "{{NftNames.HostInterfacePrefix}}*" ip6 saddr != { ::, fe80::/10 } iifname . ip6 saddr != @{{NftNames.Sources6}} counter drop comment "anti-spoofing"
        		ip daddr @{{NftNames.ServiceStats4}} comment "per-service traffic: count"
        		ip6 daddr @{{NftNames.ServiceStats6}} comment "per-service traffic: count"
        		ip saddr . ip daddr @{{NftNames.FlowStats4}} comment "per-client flow addresses: count"
        		ip6 saddr . ip6 daddr @{{NftNames.FlowStats6}} comment "per-client flow addresses: count"
        	}
        	chain input {
        		type filter hook input priority filter; policy accept;
        		udp dport 53 add @{{NftNames.DnsRate4}} { ip saddr limit rate over {{NftNames.DnsFairRate}}/second burst {{NftNames.DnsFairRate}} packets } meta mark set {{NftNames.DnsHeavyMark}} comment "dns: a client over its fair rate queues apart"
        		udp dport 53 add @{{NftNames.DnsRate6}} { ip6 saddr limit rate over {{NftNames.DnsFairRate}}/second burst {{NftNames.DnsFairRate}} packets } meta mark set {{NftNames.DnsHeavyMark}} comment "dns: a client over its fair rate queues apart"
        	}
        	chain dispatch {
        		ip daddr . meta l4proto . th dport vmap @{{NftNames.Ports4}}
        		ip daddr vmap @{{NftNames.Services4}}
        		ip6 daddr . meta l4proto . th dport vmap @{{NftNames.Ports6}}
        		ip6 daddr vmap @{{NftNames.Services6}}
        		dnat ip to ip daddr map @{{NftNames.Flows4}}
        		dnat ip6 to ip6 daddr map @{{NftNames.Flows6}}
        	}
        	chain prerouting {
        		type nat hook prerouting priority dstnat; policy accept;
        		jump dispatch
        	}
        	chain output {
        		type nat hook output priority -100; policy accept;
        		jump dispatch
        	}
        	chain postrouting {
        		type nat hook postrouting priority srcnat; policy accept;
        		oifname . ip saddr @{{NftNames.Sources4}} masquerade comment "hairpin: an instance reached itself through a virtual address"
        		oifname . ip6 saddr @{{NftNames.Sources6}} masquerade comment "hairpin"
        	}
        }

        """.Replace("\r\n", "\n");

    /// <summary>
    /// Replaces Relay's table with <paramref name="ruleset"/> in one transaction. <c>add table</c>
    /// first makes <c>delete table</c> valid when the table does not exist yet.
    /// </summary>
    public static NftTransaction Full(NftRuleset ruleset)
    {
        var tx = new NftTransaction(full: true);
        tx.Append($"add table {NftNames.QualifiedTable}");
        tx.Append($"delete table {NftNames.QualifiedTable}");
        tx.Append(Skeleton.TrimEnd());
        foreach (var (chain, rules) in ruleset.Chains)
        {
            AddChain(tx, chain, rules);
        }
        foreach (var (set, elements) in ruleset.Elements)
        {
            AddElements(tx, set, elements.Select(e => Element(e.Key, e.Value)));
        }
        return tx;
    }

    /// <summary>The commands that turn <paramref name="current"/> into <paramref name="desired"/>, emitting only what changed.</summary>
    public static NftTransaction Diff(NftRuleset current, NftRuleset desired)
    {
        var delta = new NftDelta();
        foreach (var (chain, rules) in desired.Chains)
        {
            if (!current.Chains.TryGetValue(chain, out var old))
            {
                delta.AddChains[chain] = rules;
            }
            else if (!old.SequenceEqual(rules))
            {
                delta.ReplaceChains[chain] = rules;
            }
        }
        foreach (var chain in current.Chains.Keys)
        {
            if (!desired.Chains.ContainsKey(chain))
            {
                delta.DeleteChains.Add(chain);
            }
        }
        var empty = new Dictionary<string, string>();
        foreach (var set in current.Elements.Keys.Union(desired.Elements.Keys, StringComparer.Ordinal))
        {
            delta.DiffElements(set, current.Elements.GetValueOrDefault(set) ?? empty, desired.Elements.GetValueOrDefault(set) ?? empty);
        }
        return Render(delta);
    }

    /// <summary>
    /// Renders a delta. Order matters inside the one transaction: new chains before the elements
    /// that jump to them; element deletions before additions (a changed element is deleted and
    /// re-added, as nft 1.0.6 has no replace); unused chains last, once nothing refers to them.
    /// </summary>
    public static NftTransaction Render(NftDelta delta)
    {
        var tx = new NftTransaction(full: false);
        foreach (var (chain, rules) in delta.AddChains.OrderBy(c => c.Key, StringComparer.Ordinal))
        {
            AddChain(tx, chain, rules);
        }
        foreach (var (chain, rules) in delta.ReplaceChains.OrderBy(c => c.Key, StringComparer.Ordinal))
        {
            tx.Append($"flush chain {NftNames.QualifiedTable} {chain}");
            foreach (var rule in rules)
            {
                tx.Append($"add rule {NftNames.QualifiedTable} {chain} {rule}");
            }
            tx.ChainsChanged++;
        }
        foreach (var (set, keys) in delta.Deletions.OrderBy(d => d.Key, StringComparer.Ordinal))
        {
            DeleteElements(tx, set, keys.Order(StringComparer.Ordinal).ToList());
        }
        foreach (var (set, elements) in delta.Additions.OrderBy(d => d.Key, StringComparer.Ordinal))
        {
            AddElements(tx, set, elements.OrderBy(e => e.Key, StringComparer.Ordinal).Select(e => Element(e.Key, e.Value)));
        }
        foreach (var chain in delta.DeleteChains.Order(StringComparer.Ordinal))
        {
            tx.Append($"delete chain {NftNames.QualifiedTable} {chain}");
            tx.ChainsDeleted++;
        }
        return tx;
    }

    private static string Element(string key, string value) => value.Length == 0 ? key : $"{key} : {value}";

    private static void AddChain(NftTransaction tx, string chain, IReadOnlyList<string> rules)
    {
        tx.Append($"add chain {NftNames.QualifiedTable} {chain}");
        foreach (var rule in rules)
        {
            tx.Append($"add rule {NftNames.QualifiedTable} {chain} {rule}");
        }
        tx.ChainsAdded++;
    }

    private static void AddElements(NftTransaction tx, string set, IEnumerable<string> elements)
    {
        foreach (var chunk in elements.Chunk(ElementsPerCommand))
        {
            tx.Append($"add element {NftNames.QualifiedTable} {set} {{ {string.Join(", ", chunk)} }}");
            tx.ElementsAdded += chunk.Length;
        }
    }

    private static void DeleteElements(NftTransaction tx, string set, IReadOnlyList<string> keys)
    {
        foreach (var chunk in keys.Chunk(ElementsPerCommand))
        {
            tx.Append($"delete element {NftNames.QualifiedTable} {set} {{ {string.Join(", ", chunk)} }}");
            tx.ElementsDeleted += chunk.Length;
        }
    }
}

/// <summary>What changes between two states of the table, before rendering.</summary>
public sealed class NftDelta
{
    /// <summary>Chains to create, with their rules.</summary>
    public Dictionary<string, IReadOnlyList<string>> AddChains { get; } = new(StringComparer.Ordinal);

    /// <summary>Existing chains whose rules are replaced.</summary>
    public Dictionary<string, IReadOnlyList<string>> ReplaceChains { get; } = new(StringComparer.Ordinal);

    /// <summary>Chains to delete (after element changes).</summary>
    public HashSet<string> DeleteChains { get; } = new(StringComparer.Ordinal);

    /// <summary>Set -> keys to delete.</summary>
    public Dictionary<string, List<string>> Deletions { get; } = new(StringComparer.Ordinal);

    /// <summary>Set -> key -> value to add.</summary>
    public Dictionary<string, Dictionary<string, string>> Additions { get; } = new(StringComparer.Ordinal);

    /// <summary>Records the element changes that turn <paramref name="before"/> into <paramref name="after"/> in <paramref name="set"/>.</summary>
    public void DiffElements(string set, IReadOnlyDictionary<string, string> before, IReadOnlyDictionary<string, string> after)
    {
        foreach (var (key, value) in before)
        {
            if (!after.TryGetValue(key, out var v) || v != value)
            {
                Delete(set, key);
            }
        }
        foreach (var (key, value) in after)
        {
            if (!before.TryGetValue(key, out var v) || v != value)
            {
                Add(set, key, value);
            }
        }
    }

    /// <summary>Deletes one element.</summary>
    public void Delete(string set, string key)
    {
        if (!Deletions.TryGetValue(set, out var list))
        {
            Deletions[set] = list = [];
        }
        list.Add(key);
    }

    /// <summary>Adds one element.</summary>
    public void Add(string set, string key, string value)
    {
        if (!Additions.TryGetValue(set, out var map))
        {
            Additions[set] = map = new Dictionary<string, string>(StringComparer.Ordinal);
        }
        map[key] = value;
    }
}

/// <summary>
/// One nft transaction as a value: commands appended in order, rendered once, run once.
/// The counts let tests assert that an update emitted only what changed.
/// </summary>
public sealed class NftTransaction
{
    private readonly StringBuilder _text = new();

    /// <summary>Creates an empty transaction.</summary>
    public NftTransaction(bool full) => IsFull = full;

    /// <summary>True when this replaces the whole table.</summary>
    public bool IsFull { get; }

    /// <summary>Number of commands.</summary>
    public int Commands { get; private set; }

    /// <summary>Elements added.</summary>
    public int ElementsAdded { get; internal set; }

    /// <summary>Elements deleted.</summary>
    public int ElementsDeleted { get; internal set; }

    /// <summary>Chains added.</summary>
    public int ChainsAdded { get; internal set; }

    /// <summary>Chains whose rules were replaced.</summary>
    public int ChainsChanged { get; internal set; }

    /// <summary>Chains deleted.</summary>
    public int ChainsDeleted { get; internal set; }

    /// <summary>True when there is nothing to do.</summary>
    public bool IsEmpty => Commands == 0;

    /// <summary>Appends one command (or a block).</summary>
    public void Append(string command)
    {
        _text.Append(command).Append('\n');
        Commands++;
    }

    /// <summary>The text for <c>nft_run_cmd_from_buffer</c>.</summary>
    public override string ToString() => _text.ToString();
}
