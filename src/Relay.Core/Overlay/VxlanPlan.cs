using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;

namespace Relay.Core.Overlay;

/// <summary>A node another node reaches over VXLAN: where its tunnel ends and which instance blocks it holds.</summary>
/// <param name="Node">The node's name.</param>
/// <param name="Underlay">Its underlay address (the outer destination).</param>
/// <param name="Blocks">The instance-address blocks routed to it.</param>
public sealed record VxlanPeer(string Node, IPAddress Underlay, IReadOnlyList<IPNetwork> Blocks);

/// <summary>One kernel entry of the overlay: what <c>ip</c> or <c>bridge</c> is told, in replace or delete form.</summary>
/// <param name="Tool"><c>ip</c> or <c>bridge</c>.</param>
/// <param name="Replace">The command that installs (or re-installs, unchanged) the entry.</param>
/// <param name="Delete">The command that removes it.</param>
public sealed record OverlayEntry(string Tool, string Replace, string Delete);

/// <summary>
/// The static VXLAN overlay between nodes, as Flannel learned to build it: no multicast, no
/// learning, no kernel miss callbacks. For each peer node: an FDB entry (its VTEP MAC -> its
/// underlay address), a permanent neighbour entry (its link-local next hop -> its VTEP MAC), and a
/// route per instance block via that next hop. IPv4 blocks are routed via the IPv6 link-local next
/// hop too (RFC 5549, Linux 5.2+), so no IPv4 address has to be set aside for tunnel ends. Every
/// value is derived from node records, so any node computes every other node's entries.
/// </summary>
public static class VxlanPlan
{
    /// <summary>
    /// The device's name: there is one per orchestrator namespace, and it exists only there. Not
    /// <c>rv...</c>: the anti-spoofing guard treats every <c>rv*</c> link as one instance's veth,
    /// and packets from other nodes' instances arrive here with their own sources.
    /// </summary>
    public const string DeviceName = "relay-vx0";

    /// <summary>The IANA VXLAN port.</summary>
    public const int Port = 4789;

    /// <summary>Outer headers over an IPv4 underlay: IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14.</summary>
    public const int OverheadIPv4 = 50;

    /// <summary>Outer headers over an IPv6 underlay: IPv6 40 + UDP 8 + VXLAN 8 + inner Ethernet 14.</summary>
    public const int OverheadIPv6 = 70;

    /// <summary>The MTU of the overlay (and of every instance's veth) over an underlay of <paramref name="underlayMtu"/>.</summary>
    public static int Mtu(AddressFamily underlay, int underlayMtu = 1500)
        => underlayMtu - (underlay == AddressFamily.InterNetworkV6 ? OverheadIPv6 : OverheadIPv4);

    /// <summary>The VXLAN network id of a network: stable from its name, in 1..2^24-2.</summary>
    public static int Vni(string network)
    {
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes("relay-vni:" + network));
        return 1 + (int)((((uint)hash[0] << 16) | ((uint)hash[1] << 8) | hash[2]) % 16_777_214u);
    }

    /// <summary>
    /// The MAC of a node's VXLAN devices: locally administered, unicast, from a hash of the node's name
    /// (a collision among a cluster's nodes has odds of about n^2 / 2^41).
    /// </summary>
    public static string Mac(string node)
    {
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes("relay-vtep:" + node));
        hash[0] = (byte)((hash[0] & 0xfc) | 0x02);
        return string.Join(':', hash.Take(6).Select(b => b.ToString("x2", CultureInfo.InvariantCulture)));
    }

    /// <summary>The node's next-hop address on the overlay: the EUI-64 link-local address of its VTEP MAC.</summary>
    public static IPAddress NextHop(string node)
    {
        var mac = Mac(node).Split(':').Select(h => byte.Parse(h, NumberStyles.HexNumber, CultureInfo.InvariantCulture)).ToArray();
        var bytes = new byte[16];
        bytes[0] = 0xfe;
        bytes[1] = 0x80;
        bytes[8] = (byte)(mac[0] ^ 0x02);
        bytes[9] = mac[1];
        bytes[10] = mac[2];
        bytes[11] = 0xff;
        bytes[12] = 0xfe;
        bytes[13] = mac[3];
        bytes[14] = mac[4];
        bytes[15] = mac[5];
        return new IPAddress(bytes);
    }

    /// <summary>
    /// The commands that create the device in <paramref name="orchestrator"/> with its UDP socket in
    /// the namespace the commands run in (the host's): the kernel keeps a tunnel's socket in the
    /// namespace that created it.
    /// </summary>
    public static string CreateDevice(string orchestrator, string network, string node, IPAddress local, int mtu)
    {
        var inv = CultureInfo.InvariantCulture;
        return $"link add {DeviceName} netns {orchestrator} address {Mac(node)} mtu {mtu.ToString(inv)} type vxlan id {Vni(network).ToString(inv)} local {local} dstport {Port.ToString(inv)} nolearning";
    }

    /// <summary>The commands run inside the orchestrator once the device is there: its link-local address, up.</summary>
    public static IReadOnlyList<string> ConfigureDevice(string node) =>
    [
        $"addr add {NextHop(node)}/64 dev {DeviceName} nodad",
        $"link set {DeviceName} up",
    ];

    /// <summary>Every kernel entry that reaches <paramref name="peers"/> (this node itself excluded by the caller).</summary>
    public static IReadOnlyList<OverlayEntry> Entries(IEnumerable<VxlanPeer> peers)
    {
        var entries = new List<OverlayEntry>();
        foreach (var peer in peers.OrderBy(p => p.Node, StringComparer.Ordinal))
        {
            var mac = Mac(peer.Node);
            var hop = NextHop(peer.Node);
            entries.Add(new OverlayEntry("bridge", $"fdb replace {mac} dev {DeviceName} dst {peer.Underlay} self permanent", $"fdb del {mac} dev {DeviceName} dst {peer.Underlay} self"));
            entries.Add(new OverlayEntry("ip", $"neigh replace {hop} lladdr {mac} dev {DeviceName} nud permanent", $"neigh del {hop} dev {DeviceName}"));
            foreach (var block in peer.Blocks)
            {
                var via = block.BaseAddress.AddressFamily == AddressFamily.InterNetwork ? $"via inet6 {hop}" : $"via {hop}";
                entries.Add(new OverlayEntry("ip", $"route replace {block} {via} dev {DeviceName}", $"route del {block} dev {DeviceName}"));
            }
        }
        return entries;
    }

    /// <summary>
    /// What to run to go from the entries of <paramref name="before"/> to those of <paramref name="after"/>:
    /// deletions of entries that are gone (routes first), then every entry of the new set in its
    /// idempotent replace form.
    /// </summary>
    public static (IReadOnlyList<OverlayEntry> Remove, IReadOnlyList<OverlayEntry> Install) Diff(IEnumerable<VxlanPeer> before, IEnumerable<VxlanPeer> after)
    {
        var next = Entries(after);
        var keep = next.Select(e => e.Replace).ToHashSet(StringComparer.Ordinal);
        var remove = Entries(before).Where(e => !keep.Contains(e.Replace)).Reverse().ToArray();
        return (remove, next);
    }
}
