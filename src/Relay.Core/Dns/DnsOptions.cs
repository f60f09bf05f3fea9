using System.Runtime.CompilerServices;
using Relay.Core.Naming;

namespace Relay.Core.Dns;

/// <summary>How a network's DNS server answers. Immutable; change it with <c>with</c>.</summary>
public sealed record DnsOptions
{
    /// <summary>
    /// The zones this network owns: for unknown names under them the answer is NXDOMAIN with the
    /// zone's SOA; names outside every zone are forwarded or refused (<see cref="Forward"/>).
    /// </summary>
    public IReadOnlyList<string> Zones { get; init; } = ["relay.internal"];

    /// <summary>The TTL of every record, and the SOA minimum (the negative-caching TTL).</summary>
    public TimeSpan Ttl { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// True: queries for names outside the owned zones that are not services are to be forwarded
    /// (the resolver says so; the server relays them), and responses say recursion is available.
    /// False: they are refused.
    /// </summary>
    public bool Forward { get; init; }

    /// <summary>The SOA's responsible mailbox, as a name (the first dot stands for '@').</summary>
    public string SoaHostmaster { get; init; } = "hostmaster.relay.internal";

    /// <summary>The SOA's primary server and the zones' NS record.</summary>
    public string NameServer { get; init; } = "ns.relay.internal";

    /// <summary>The UDP payload size this server advertises in EDNS and accepts at most (512-65535; DNS flag day 2020: 1232).</summary>
    public int MaxUdpPayload { get; init; } = 1232;

    /// <summary>Throws <see cref="ArgumentException"/> listing what is wrong, if anything; the server should call it once at start.</summary>
    public void Validate() => CompiledDnsOptions.For(this);
}

/// <summary>
/// <see cref="DnsOptions"/> in wire form, made once per options instance and then found by
/// reference, so a query never encodes a name from a string.
/// </summary>
internal sealed class CompiledDnsOptions
{
    private static readonly ConditionalWeakTable<DnsOptions, CompiledDnsOptions> Cache = new();

    // The server uses one options instance for many queries: a reference compare skips the table.
    private static CompiledDnsOptions? _last;

    private CompiledDnsOptions(DnsOptions source)
    {
        Source = source;
        var problems = new List<string>();
        var zones = new List<byte[]>();
        foreach (var zone in source.Zones ?? [])
        {
            var canonical = DnsName.TryNormalize(zone, out var reason);
            if (canonical is null)
            {
                problems.Add($"zone: {reason}");
                continue;
            }
            zones.Add(DnsWireName.FromText(canonical));
        }
        Zones = [.. zones];
        NameServer = Encode(source.NameServer, "name server", problems);
        Hostmaster = Encode(source.SoaHostmaster, "SOA hostmaster", problems);
        if (source.Ttl < TimeSpan.Zero || source.Ttl.TotalSeconds > int.MaxValue)
        {
            problems.Add($"TTL {source.Ttl} is out of range 0-{int.MaxValue} s");
        }
        if (source.MaxUdpPayload is < 512 or > 65535)
        {
            problems.Add($"MaxUdpPayload {source.MaxUdpPayload} is out of range 512-65535");
        }
        if (problems.Count > 0)
        {
            throw new ArgumentException("invalid DNS options: " + string.Join("; ", problems), nameof(source));
        }
        Ttl = (uint)source.Ttl.TotalSeconds;
        MaxUdpPayload = (ushort)source.MaxUdpPayload;
        Forward = source.Forward;
    }

    public DnsOptions Source { get; }

    /// <summary>Owned zones, lower-cased wire names.</summary>
    public byte[][] Zones { get; }

    public byte[] NameServer { get; }

    public byte[] Hostmaster { get; }

    public uint Ttl { get; }

    public ushort MaxUdpPayload { get; }

    public bool Forward { get; }

    public static CompiledDnsOptions For(DnsOptions options)
    {
        var last = _last;
        if (last is not null && ReferenceEquals(last.Source, options))
        {
            return last;
        }
        var compiled = Cache.GetValue(options, static o => new CompiledDnsOptions(o));
        _last = compiled;
        return compiled;
    }

    private static byte[] Encode(string? name, string what, List<string> problems)
    {
        try
        {
            var wire = DnsWireName.FromText(name ?? "");
            if (wire.Length == 1)
            {
                problems.Add($"{what}: a name is required");
            }
            DnsWireName.ToLower(wire, wire);
            return wire;
        }
        catch (ArgumentException e)
        {
            problems.Add($"{what}: {e.Message}");
            return [0];
        }
    }
}
