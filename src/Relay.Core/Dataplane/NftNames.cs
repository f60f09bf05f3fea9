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
    /// <summary>Map virtual IPv4 . proto . port . slot -> instance IPv4 . port.</summary>
    public const string PortBackends4 = "pbe4";
    /// <summary>Map virtual IPv6 . proto . port . slot -> instance IPv6 . port.</summary>
    public const string PortBackends6 = "pbe6";

    /// <summary>Host-side veth names all start with this; the anti-spoofing rule matches it.</summary>
    public const string HostInterfacePrefix = "rv";

    /// <summary>Seed of the kernel's jhash for Maglev and Source policies ("Rela").</summary>
    public const string HashSeed = "0x52656c61";

    /// <summary>
    /// The balancing chain for a family (4 or 6), port-mapped or not, policy and modulus. Bound:
    /// "lbp6-" (5) + "round-robin" (11) + "-" (1) + at most 10 digits = 27 characters, well under
    /// nft's 256-byte chain name limit. The set of such chains is small (one per policy and
    /// instance count in use), never one per service.
    /// </summary>
    public static string BalancerChain(int family, bool ports, string policyName, int modulus)
        => $"lb{(ports ? "p" : "")}{family}-{policyName}-{modulus}";
}
