using System.Net;

namespace Relay.Core.Conntrack;

/// <summary>One direction of a tracked connection (the kernel's <c>nf_conntrack_tuple</c>).</summary>
/// <param name="Source">Source address.</param>
/// <param name="Destination">Destination address.</param>
/// <param name="Protocol">IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6...).</param>
/// <param name="SourcePort">TCP/UDP/SCTP source port; 0 otherwise.</param>
/// <param name="DestinationPort">TCP/UDP/SCTP destination port; 0 otherwise.</param>
/// <param name="IcmpId">ICMP echo identifier; 0 otherwise.</param>
/// <param name="IcmpType">ICMP type; 0 otherwise.</param>
/// <param name="IcmpCode">ICMP code; 0 otherwise.</param>
public sealed record ConntrackTuple(
    IPAddress Source,
    IPAddress Destination,
    byte Protocol,
    ushort SourcePort = 0,
    ushort DestinationPort = 0,
    ushort IcmpId = 0,
    byte IcmpType = 0,
    byte IcmpCode = 0)
{
    /// <inheritdoc />
    public override string ToString() => Protocol switch
    {
        IpProtocols.Icmp or IpProtocols.Icmpv6 => $"{IpProtocols.Name(Protocol)} {Source} -> {Destination} id={IcmpId}",
        _ => $"{IpProtocols.Name(Protocol)} {Source}:{SourcePort} -> {Destination}:{DestinationPort}",
    };
}

/// <summary>A conntrack entry: the original direction (as the client sent it) and the reply direction (after NAT).</summary>
/// <param name="Original">As the first packet was seen: destination = the virtual address for a translated flow.</param>
/// <param name="Reply">As replies are expected: source = the instance the flow was translated to.</param>
/// <param name="TcpState">TCP state (the kernel's <c>tcp_conntrack</c> value), or null for other protocols.</param>
/// <param name="Zone">Conntrack zone (0 unless configured).</param>
/// <param name="Mark">Connection mark.</param>
public sealed record ConntrackEntry(ConntrackTuple Original, ConntrackTuple Reply, TcpConntrackState? TcpState = null, ushort Zone = 0, uint Mark = 0)
{
    /// <inheritdoc />
    public override string ToString() => $"{Original} (reply from {Reply.Source}{(TcpState is { } s ? ", " + s : "")})";
}

/// <summary>The kernel's TCP conntrack states (enum tcp_conntrack in nf_conntrack_tcp.h).</summary>
public enum TcpConntrackState : byte
{
    /// <summary>TCP_CONNTRACK_NONE.</summary>
    None = 0,
    /// <summary>TCP_CONNTRACK_SYN_SENT.</summary>
    SynSent = 1,
    /// <summary>TCP_CONNTRACK_SYN_RECV.</summary>
    SynRecv = 2,
    /// <summary>TCP_CONNTRACK_ESTABLISHED.</summary>
    Established = 3,
    /// <summary>TCP_CONNTRACK_FIN_WAIT.</summary>
    FinWait = 4,
    /// <summary>TCP_CONNTRACK_CLOSE_WAIT.</summary>
    CloseWait = 5,
    /// <summary>TCP_CONNTRACK_LAST_ACK.</summary>
    LastAck = 6,
    /// <summary>TCP_CONNTRACK_TIME_WAIT.</summary>
    TimeWait = 7,
    /// <summary>TCP_CONNTRACK_CLOSE.</summary>
    Close = 8,
    /// <summary>TCP_CONNTRACK_SYN_SENT2.</summary>
    SynSent2 = 9,
}

/// <summary>IP protocol numbers Relay cares about.</summary>
public static class IpProtocols
{
    /// <summary>ICMP.</summary>
    public const byte Icmp = 1;
    /// <summary>TCP.</summary>
    public const byte Tcp = 6;
    /// <summary>UDP.</summary>
    public const byte Udp = 17;
    /// <summary>ICMPv6.</summary>
    public const byte Icmpv6 = 58;
    /// <summary>SCTP.</summary>
    public const byte Sctp = 132;

    /// <summary>A short name for logs.</summary>
    public static string Name(byte protocol) => protocol switch
    {
        Icmp => "icmp",
        Tcp => "tcp",
        Udp => "udp",
        Icmpv6 => "icmpv6",
        Sctp => "sctp",
        _ => "proto-" + protocol,
    };
}
