namespace Relay.Core.Dataplane;

/// <summary>
/// Every name Relay uses in nftables. Relay owns exactly one table, <c>inet relay</c>, in the
/// orchestrator namespace of each network (never in the host's namespace): everything in it is
/// Relay's and nothing outside it is touched. See src/Relay.Core/Dataplane/README.md.
/// </summary>
public static class NftNames
{
    /// <summary>Table family.</summary>
    public const string Family = "inet";
    /// <summary>Table name.</summary>
    public const string Table = "relay";
    /// <summary><c>inet relay</c>, as commands write it.</summary>
    public const string QualifiedTable = Family + " " + Table;

    /// <summary>Set of <c>ifname . ipv4_addr</c>: what each instance link may send from.</summary>
    public const string Sources4 = "src4";
    /// <summary>Set of <c>ifname . ipv6_addr</c>.</summary>
    public const string Sources6 = "src6";
    /// <summary>Verdict map virtual IPv4 -> balancing chain (layer-3 services).</summary>
    public const string Services4 = "svc4";
    /// <summary>Verdict map virtual IPv6 -> balancing chain.</summary>
    public const string Services6 = "svc6";
    /// <summary>Verdict map virtual IPv4 . proto . port -> balancing chain (port-mapped services).</summary>
    public const string Ports4 = "port4";
    /// <summary>Verdict map virtual IPv6 . proto . port -> balancing chain.</summary>
    public const string Ports6 = "port6";
    /// <summary>Map virtual IPv4 . slot -> instance IPv4.</summary>
    public const string Backends4 = "be4";
    /// <summary>Map virtual IPv6 . slot -> instance IPv6.</summary>
    public const string Backends6 = "be6";
    /// <summary>Map virtual IPv4 . TCP port . slot -> instance IPv4 . port.</summary>
    public const string TcpBackends4 = "pbe4t";
    /// <summary>Map virtual IPv4 . UDP port . slot -> instance IPv4 . port.</summary>
    public const string UdpBackends4 = "pbe4u";
    /// <summary>Map virtual IPv6 . TCP port . slot -> instance IPv6 . port.</summary>
    public const string TcpBackends6 = "pbe6t";
    /// <summary>Map virtual IPv6 . UDP port . slot -> instance IPv6 . port.</summary>
    public const string UdpBackends6 = "pbe6u";

    /// <summary>
    /// The slot map of port-mapped services of one family and protocol. One map per protocol:
    /// a map whose data names a port makes nft add a match on that port's protocol to every rule
    /// that translates through it, so a map shared by TCP and UDP would serve only one of them.
    /// </summary>
    public static string PortBackends(int family, Model.TransportProtocol protocol) => (family, protocol) switch
    {
        (4, Model.TransportProtocol.Tcp) => TcpBackends4,
        (4, _) => UdpBackends4,
        (_, Model.TransportProtocol.Tcp) => TcpBackends6,
        _ => UdpBackends6,
    };

    /// <summary>Map flow IPv4 address -> instance IPv4 (per-client flow addresses).</summary>
    public const string Flows4 = "flow4";
    /// <summary>Map flow IPv6 address -> instance IPv6.</summary>
    public const string Flows6 = "flow6";
    /// <summary>Set of client IPv4 . flow IPv4 with a counter per element: each flow's traffic.</summary>
    public const string FlowStats4 = "fstat4";
    /// <summary>Set of client IPv6 . flow IPv6 with a counter per element.</summary>
    public const string FlowStats6 = "fstat6";

    /// <summary>Set of virtual IPv4 addresses with a counter each: every packet sent to a service.</summary>
    public const string ServiceStats4 = "vstat4";
    /// <summary>Set of virtual IPv6 addresses with a counter each.</summary>
    public const string ServiceStats6 = "vstat6";

    /// <summary>Dynamic sets of DNS clients over their fair rate (per source address).</summary>
    public const string DnsRate4 = "dnsrate4";
    /// <summary>The IPv6 counterpart of <see cref="DnsRate4"/>.</summary>
    public const string DnsRate6 = "dnsrate6";

    /// <summary>
    /// Packet mark of DNS queries over a client's fair rate; the DNS server's SO_REUSEPORT group
    /// steers them to a separate socket, so a flood queues behind itself, not in front of others.
    /// </summary>
    public const uint DnsHeavyMark = 0x5259;

    /// <summary>Queries per second (and burst) a client may send before its queries count as heavy.</summary>
    public const int DnsFairRate = 20000;

    /// <summary>Host-side veth names all start with this; the anti-spoofing rule matches it.</summary>
    public const string HostInterfacePrefix = "rv";

    /// <summary>Seed of the kernel's jhash for Maglev and Source policies ("Rela").</summary>
    public const string HashSeed = "0x52656c61";

    /// <summary>
    /// The balancing chain for a family (4 or 6), layer 3 or a port protocol, policy and modulus:
    /// <c>lb4-random-2</c>, <c>lb6t-maglev-1009</c>, <c>lb4u-round-robin-3</c>. Bound: "lb6u-" (5) +
    /// "round-robin" (11) + "-" (1) + at most 10 digits = 27 characters, well under nft's 256-byte
    /// limit. The set of such chains is small (one per policy and modulus in use), never one per service.
    /// </summary>
    public static string BalancerChain(int family, Model.TransportProtocol? protocol, string policyName, int modulus)
        => $"lb{family}{protocol switch { Model.TransportProtocol.Tcp => "t", Model.TransportProtocol.Udp => "u", _ => "" }}-{policyName}-{modulus}";
}
