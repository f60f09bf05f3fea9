using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Relay.Core.Model;
using Relay.Core.Naming;

namespace Relay.Core.Dns;

/// <summary>What a network's DNS server answers for one service.</summary>
/// <param name="Name">The service name in canonical form (lower case, no trailing dot).</param>
/// <param name="Vip4">The service's virtual IPv4 address (A).</param>
/// <param name="Vip6">The service's virtual IPv6 address (AAAA).</param>
/// <param name="Ports">The port mappings, published as SRV records <c>_PORT._PROTO.NAME</c>.</param>
/// <param name="FlowAddressing">True when each client gets its own addresses from an <see cref="IFlowAddressResolver"/>.</param>
public sealed record DnsServiceEntry(string Name, IPAddress Vip4, IPAddress Vip6, IReadOnlyList<PortMapping> Ports, bool FlowAddressing);

/// <summary>
/// An immutable snapshot of a network's names, built once per change and swapped atomically by
/// the engine; lookups by wire name do not allocate. Besides the services it indexes their
/// reverse names (<c>in-addr.arpa</c>, <c>ip6.arpa</c>) and the names above them (empty
/// non-terminals, which must answer NODATA rather than NXDOMAIN: RFC 8020 lets a resolver
/// take NXDOMAIN to mean that nothing exists below a name).
/// </summary>
public sealed class NameTable
{
    private readonly Dictionary<byte[], NameNode> _nodes;
    private readonly Dictionary<byte[], NameNode>.AlternateLookup<ReadOnlySpan<byte>> _lookup;

    private NameTable(Dictionary<byte[], NameNode> nodes, int count)
    {
        _nodes = nodes;
        _lookup = nodes.GetAlternateLookup<ReadOnlySpan<byte>>();
        Count = count;
    }

    /// <summary>A table without names.</summary>
    public static NameTable Empty { get; } = new(new Dictionary<byte[], NameNode>(WireNameComparer.Instance), 0);

    /// <summary>The number of services.</summary>
    public int Count { get; }

    /// <summary>
    /// Builds a table. Names are normalized again (case, trailing dot) for safety. Throws
    /// <see cref="ArgumentException"/> for an invalid or repeated name, an address of the wrong
    /// family, or two services sharing an address (their reverse names would collide).
    /// </summary>
    public static NameTable Build(IEnumerable<DnsServiceEntry> services)
    {
        ArgumentNullException.ThrowIfNull(services);
        var nodes = new Dictionary<byte[], NameNode>(WireNameComparer.Instance);
        var all = new List<ServiceData>();
        foreach (var entry in services)
        {
            ArgumentNullException.ThrowIfNull(entry, nameof(services));
            var canonical = DnsName.TryNormalize(entry.Name, out var reason)
                ?? throw new ArgumentException($"service name: {reason}", nameof(services));
            if (entry.Vip4?.AddressFamily != AddressFamily.InterNetwork)
            {
                throw new ArgumentException($"service '{canonical}': Vip4 must be an IPv4 address, not '{entry.Vip4}'", nameof(services));
            }
            if (entry.Vip6?.AddressFamily != AddressFamily.InterNetworkV6)
            {
                throw new ArgumentException($"service '{canonical}': Vip6 must be an IPv6 address, not '{entry.Vip6}'", nameof(services));
            }
            var data = new ServiceData(entry, DnsWireName.FromText(canonical));
            var node = Node(nodes, data.WireName);
            if (node.Service is not null)
            {
                throw new ArgumentException($"service '{canonical}' is listed twice", nameof(services));
            }
            node.Service = data;
            all.Add(data);
        }
        foreach (var data in all)
        {
            AddReverse(nodes, data, ReverseName(data.Entry.Vip4), data.Entry.Vip4);
            AddReverse(nodes, data, ReverseName(data.Entry.Vip6), data.Entry.Vip6);
            // Every proper ancestor, down to the top-level label; the root is never looked up.
            var name = data.WireName;
            for (var p = name[0] + 1; name[p] != 0; p += name[p] + 1)
            {
                Node(nodes, name[p..]).NonTerminal = true;
            }
        }
        return new NameTable(nodes, all.Count);
    }

    /// <summary>Finds a service by name (any case, trailing dot optional). Not for the hot path: it allocates.</summary>
    public bool TryGetService(string name, [NotNullWhen(true)] out DnsServiceEntry? service)
    {
        service = null;
        byte[] wire;
        try
        {
            wire = DnsWireName.FromText(name);
        }
        catch (ArgumentException)
        {
            return false;
        }
        DnsWireName.ToLower(wire, wire);
        if (TryFind(wire, out var node) && node.Service is not null)
        {
            service = node.Service.Entry;
        }
        return service is not null;
    }

    /// <summary>Finds a lower-cased wire name.</summary>
    internal bool TryFind(ReadOnlySpan<byte> lowerWireName, [NotNullWhen(true)] out NameNode? node)
        => _lookup.TryGetValue(lowerWireName, out node);

    /// <summary>The reverse name of an address: <c>d.c.b.a.in-addr.arpa</c> or 32 nibbles and <c>ip6.arpa</c>.</summary>
    internal static string ReverseName(IPAddress address)
    {
        var bytes = address.GetAddressBytes();
        var sb = new StringBuilder();
        if (bytes.Length == 4)
        {
            for (var i = 3; i >= 0; i--)
            {
                sb.Append(bytes[i].ToString(CultureInfo.InvariantCulture)).Append('.');
            }
            return sb.Append("in-addr.arpa").ToString();
        }
        for (var i = 15; i >= 0; i--)
        {
            sb.Append("0123456789abcdef"[bytes[i] & 0xF]).Append('.').Append("0123456789abcdef"[bytes[i] >> 4]).Append('.');
        }
        return sb.Append("ip6.arpa").ToString();
    }

    private static void AddReverse(Dictionary<byte[], NameNode> nodes, ServiceData data, string reverseName, IPAddress address)
    {
        var node = Node(nodes, DnsWireName.FromText(reverseName));
        if (node.Reverse is not null)
        {
            throw new ArgumentException($"services '{node.Reverse.Entry.Name}' and '{data.Entry.Name}' share the address {address}", "services");
        }
        node.Reverse = data;
    }

    private static NameNode Node(Dictionary<byte[], NameNode> nodes, ReadOnlySpan<byte> wireName)
    {
        var lookup = nodes.GetAlternateLookup<ReadOnlySpan<byte>>();
        if (!lookup.TryGetValue(wireName, out var node))
        {
            node = new NameNode();
            lookup[wireName] = node;
        }
        return node;
    }
}

/// <summary>Everything the table knows about one lower-cased name.</summary>
internal sealed class NameNode
{
    /// <summary>The service of this name.</summary>
    public ServiceData? Service { get; set; }

    /// <summary>The service whose address this reverse name is.</summary>
    public ServiceData? Reverse { get; set; }

    /// <summary>True when a service name lies below this name.</summary>
    public bool NonTerminal { get; set; }
}

/// <summary>A service in the forms the resolver writes, prepared once per table.</summary>
internal sealed class ServiceData
{
    private readonly int[] _tcpPorts;
    private readonly int[] _udpPorts;

    public ServiceData(DnsServiceEntry entry, byte[] wireName)
    {
        Entry = entry;
        WireName = wireName;
        Vip4 = entry.Vip4.GetAddressBytes();
        Vip6 = entry.Vip6.GetAddressBytes();
        var ports = entry.Ports ?? [];
        _tcpPorts = [.. ports.Where(p => p.Protocol == TransportProtocol.Tcp).Select(p => p.Port).Distinct().Order()];
        _udpPorts = [.. ports.Where(p => p.Protocol == TransportProtocol.Udp).Select(p => p.Port).Distinct().Order()];
    }

    public DnsServiceEntry Entry { get; }

    /// <summary>The canonical (lower-case) name on the wire.</summary>
    public byte[] WireName { get; }

    public byte[] Vip4 { get; }

    public byte[] Vip6 { get; }

    /// <summary>The service's virtual ports over <paramref name="protocol"/>, ascending.</summary>
    public int[] PortsOf(TransportProtocol protocol) => protocol == TransportProtocol.Tcp ? _tcpPorts : _udpPorts;

    /// <summary>True when the service maps <paramref name="port"/> over <paramref name="protocol"/>.</summary>
    public bool HasPort(TransportProtocol protocol, int port)
        => Array.BinarySearch(protocol == TransportProtocol.Tcp ? _tcpPorts : _udpPorts, port) >= 0;
}
