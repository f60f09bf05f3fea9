using System.Net;
using System.Net.Sockets;
using Relay.Core.Conntrack;
using Relay.Linux.Interop;
using Relay.Linux.Netlink;

namespace Relay.Linux.Conntrack;

/// <summary>
/// <see cref="IConntrack"/> over ctnetlink (NETLINK_NETFILTER, NFNL_SUBSYS_CTNETLINK), spoken
/// directly on a netlink socket: no conntrack(8) process and no native conntrack library.
/// <para>
/// The socket belongs to the network namespace of the thread that called <see cref="Open"/>; the
/// client may then be used from any thread (calls are serialized).
/// </para>
/// </summary>
public sealed class ConntrackClient : IConntrack
{
    /// <summary>
    /// Deletes packed into one send(): the kernel processes them in one system call, and 64 KiB is
    /// far below the socket's send limit (sk_sndbuf) on every default configuration.
    /// </summary>
    private const int ChunkBytes = 64 * 1024;

    /// <summary>
    /// A generous guess at the receive-queue cost (skb truesize) of one ack, to cap a batch so its
    /// acks cannot overrun the receive buffer when SO_RCVBUFFORCE was refused.
    /// </summary>
    private const int AckBudgetBytes = 2048;

    private const string ListCall = "ctnetlink IPCTNL_MSG_CT_GET (dump)";
    private const string DeleteCall = "ctnetlink IPCTNL_MSG_CT_DELETE";

    private readonly NetlinkSocket _socket;
    private readonly int _maxDeletesPerSend;

    private ConntrackClient(NetlinkSocket socket)
    {
        _socket = socket;
        _maxDeletesPerSend = Math.Max(16, socket.ReceiveBufferSize / AckBudgetBytes);
    }

    /// <summary>
    /// Opens a ctnetlink socket in the network namespace of the calling thread (run it on a
    /// <see cref="Namespaces.NetnsThread"/> for another namespace). Throws
    /// <see cref="SystemCallException"/> if the socket cannot be created or bound.
    /// </summary>
    public static ConntrackClient Open() => new(new NetlinkSocket(Libc.NETLINK_NETFILTER));

    /// <inheritdoc />
    /// <exception cref="SystemCallException">The kernel refused or aborted the dump.</exception>
    /// <exception cref="InvalidDataException">The reply was malformed.</exception>
    public IReadOnlyList<ConntrackEntry> List(AddressFamily family = AddressFamily.Unspecified)
    {
        var nfFamily = family switch
        {
            AddressFamily.Unspecified => Libc.AF_UNSPEC,
            AddressFamily.InterNetwork => Libc.AF_INET,
            AddressFamily.InterNetworkV6 => Libc.AF_INET6,
            _ => throw new ArgumentOutOfRangeException(nameof(family), family, "conntrack lists IPv4, IPv6 or both"),
        };
        var writer = new NetlinkWriter(64);
        var message = writer.BeginMessage(CtNetlink.MessageType(CtNetlink.IPCTNL_MSG_CT_GET), Libc.NLM_F_REQUEST | Libc.NLM_F_DUMP);
        writer.WriteNfGenMsg(nfFamily, CtNetlink.NFNETLINK_V0);
        writer.EndMessage(message);

        var entries = new List<ConntrackEntry>();
        _socket.Dump(writer.WrittenSpan, ListCall, (in NetlinkMessage m) =>
        {
            // The kernel filters by nfgen_family; checking again keeps the contract if an old kernel did not.
            if (TryParseEntry(m, out var entry)
                && (family == AddressFamily.Unspecified || entry.Original.Source.AddressFamily == family))
            {
                entries.Add(entry);
            }
        });
        return entries;
    }

    /// <inheritdoc />
    /// <exception cref="ArgumentException">An entry has no usable original tuple (checked before anything is sent).</exception>
    /// <exception cref="SystemCallException">The kernel refused a delete with an errno other than ENOENT (thrown once the acks of that send are read; later entries are not attempted).</exception>
    public int Delete(IReadOnlyCollection<ConntrackEntry> entries)
    {
        ArgumentNullException.ThrowIfNull(entries);
        // Validate everything first: a bad entry found halfway would leave the table half-cleaned.
        foreach (var entry in entries)
        {
            ValidateForDelete(entry);
        }

        var writer = new NetlinkWriter(ChunkBytes + 512);
        var chunk = new List<ConntrackEntry>();
        var deleted = 0;
        foreach (var entry in entries)
        {
            var mark = writer.Length;
            WriteDelete(writer, entry);
            if (writer.Length > ChunkBytes && chunk.Count > 0)
            {
                writer.Truncate(mark);
                deleted += SendDeletes(writer, chunk);
                WriteDelete(writer, entry);
            }
            chunk.Add(entry);
            if (chunk.Count >= _maxDeletesPerSend)
            {
                deleted += SendDeletes(writer, chunk);
            }
        }
        if (chunk.Count > 0)
        {
            deleted += SendDeletes(writer, chunk);
        }
        return deleted;
    }

    /// <summary>Closes the ctnetlink socket.</summary>
    public void Dispose() => _socket.Dispose();

    /// <summary>
    /// Parses a captured ctnetlink dump (one or more datagrams of multipart messages, back to back)
    /// into entries, stopping at NLMSG_DONE or the end of the bytes. Malformed bytes throw
    /// <see cref="InvalidDataException"/>; an NLMSG_ERROR (or a failed NLMSG_DONE) throws
    /// <see cref="SystemCallException"/>.
    /// </summary>
    internal static IReadOnlyList<ConntrackEntry> ParseDump(ReadOnlySpan<byte> buffer)
    {
        var entries = new List<ConntrackEntry>();
        NetlinkReplies.DispatchDump(buffer, ListCall, (in NetlinkMessage m) =>
        {
            if (TryParseEntry(m, out var entry))
            {
                entries.Add(entry);
            }
        });
        return entries;
    }

    /// <summary>
    /// Appends the IPCTNL_MSG_CT_DELETE request for <paramref name="entry"/>: always its original
    /// tuple (a delete without a tuple is a flush of the whole table), plus CTA_ZONE when non-zero.
    /// </summary>
    internal static void WriteDelete(NetlinkWriter writer, ConntrackEntry entry)
    {
        var family = ValidateForDelete(entry);
        var message = writer.BeginMessage(CtNetlink.MessageType(CtNetlink.IPCTNL_MSG_CT_DELETE), Libc.NLM_F_REQUEST | Libc.NLM_F_ACK);
        writer.WriteNfGenMsg(family, CtNetlink.NFNETLINK_V0);
        var tuple = writer.BeginNested(CtNetlink.CTA_TUPLE_ORIG);
        WriteTuple(writer, entry.Original);
        writer.EndNested(tuple);
        if (entry.Zone != 0)
        {
            writer.WriteU16BigEndian(CtNetlink.CTA_ZONE, entry.Zone);
        }
        writer.EndMessage(message);
    }

    private int SendDeletes(NetlinkWriter writer, List<ConntrackEntry> chunk)
    {
        var acks = _socket.Acknowledge(writer.WrittenSpan, DeleteCall);
        var deleted = 0;
        SystemCallException? failure = null;
        for (var i = 0; i < acks.Length; i++)
        {
            switch (acks[i].Errno)
            {
                case 0:
                    deleted++;
                    break;
                case (int)Errno.ENOENT:
                    // Gone already: it expired, or someone else deleted it. The caller's goal is met.
                    break;
                default:
                    failure ??= new SystemCallException(NetlinkReplies.WithDetail($"{DeleteCall} of {chunk[i]}", acks[i].Detail), acks[i].Errno);
                    break;
            }
        }
        writer.Reset();
        chunk.Clear();
        return failure is null ? deleted : throw failure;
    }

    private static byte ValidateForDelete(ConntrackEntry entry)
    {
        if (entry?.Original?.Source is not { } source || entry.Original.Destination is not { } destination)
        {
            throw new ArgumentException("a conntrack delete needs the entry's original tuple (source and destination)", nameof(entry));
        }
        if (source.AddressFamily != destination.AddressFamily)
        {
            throw new ArgumentException($"conntrack entry {entry} mixes address families", nameof(entry));
        }
        return source.AddressFamily switch
        {
            AddressFamily.InterNetwork => Libc.AF_INET,
            AddressFamily.InterNetworkV6 => Libc.AF_INET6,
            _ => throw new ArgumentException($"conntrack entry {entry} is neither IPv4 nor IPv6", nameof(entry)),
        };
    }

    private static void WriteTuple(NetlinkWriter writer, ConntrackTuple tuple)
    {
        var v4 = tuple.Source.AddressFamily == AddressFamily.InterNetwork;
        Span<byte> address = stackalloc byte[16];

        var ip = writer.BeginNested(CtNetlink.CTA_TUPLE_IP);
        tuple.Source.TryWriteBytes(address, out var written);
        writer.WriteBytes(v4 ? CtNetlink.CTA_IP_V4_SRC : CtNetlink.CTA_IP_V6_SRC, address[..written]);
        tuple.Destination.TryWriteBytes(address, out written);
        writer.WriteBytes(v4 ? CtNetlink.CTA_IP_V4_DST : CtNetlink.CTA_IP_V6_DST, address[..written]);
        writer.EndNested(ip);

        var proto = writer.BeginNested(CtNetlink.CTA_TUPLE_PROTO);
        writer.WriteU8(CtNetlink.CTA_PROTO_NUM, tuple.Protocol);
        // The kernel's per-protocol parsers require every field of the tuple they know (ports, or
        // ICMP id/type/code) and reject a delete that lacks one.
        switch (tuple.Protocol)
        {
            case IpProtocols.Icmp:
                writer.WriteU16BigEndian(CtNetlink.CTA_PROTO_ICMP_ID, tuple.IcmpId);
                writer.WriteU8(CtNetlink.CTA_PROTO_ICMP_TYPE, tuple.IcmpType);
                writer.WriteU8(CtNetlink.CTA_PROTO_ICMP_CODE, tuple.IcmpCode);
                break;
            case IpProtocols.Icmpv6:
                writer.WriteU16BigEndian(CtNetlink.CTA_PROTO_ICMPV6_ID, tuple.IcmpId);
                writer.WriteU8(CtNetlink.CTA_PROTO_ICMPV6_TYPE, tuple.IcmpType);
                writer.WriteU8(CtNetlink.CTA_PROTO_ICMPV6_CODE, tuple.IcmpCode);
                break;
            default:
                if (HasPorts(tuple.Protocol) || tuple.SourcePort != 0 || tuple.DestinationPort != 0)
                {
                    writer.WriteU16BigEndian(CtNetlink.CTA_PROTO_SRC_PORT, tuple.SourcePort);
                    writer.WriteU16BigEndian(CtNetlink.CTA_PROTO_DST_PORT, tuple.DestinationPort);
                }
                break;
        }
        writer.EndNested(proto);
    }

    /// <summary>Protocols whose conntrack tuple carries ports (GRE carries its keys in the same attributes).</summary>
    private static bool HasPorts(byte protocol) => protocol is IpProtocols.Tcp or IpProtocols.Udp or IpProtocols.Sctp
        or 33 /* DCCP */ or 47 /* GRE */ or 136 /* UDP-Lite */;

    /// <summary>
    /// Parses a dump message into an entry; false (and no entry) for a message that is not
    /// IPCTNL_MSG_CT_NEW. Malformed attributes throw <see cref="InvalidDataException"/>.
    /// </summary>
    internal static bool TryParseEntry(in NetlinkMessage message, out ConntrackEntry entry)
    {
        entry = null!;
        // A dump answers with IPCTNL_MSG_CT_NEW messages; anything else is not an entry.
        if (message.Type != CtNetlink.MessageType(CtNetlink.IPCTNL_MSG_CT_NEW))
        {
            return false;
        }
        entry = ParseEntry(message);
        return true;
    }

    /// <summary>
    /// Parses the attributes of a ctnetlink conntrack message whatever its operation: a dump entry or
    /// NEW event (IPCTNL_MSG_CT_NEW) and a DESTROY event (IPCTNL_MSG_CT_DELETE) carry the same
    /// attributes. Throws <see cref="InvalidDataException"/> if the message is malformed or lacks
    /// either tuple.
    /// </summary>
    internal static ConntrackEntry ParseEntry(in NetlinkMessage message)
    {
        ConntrackTuple? original = null, reply = null;
        TcpConntrackState? tcpState = null;
        ushort zone = 0;
        uint mark = 0;
        var attributes = message.Attributes(headerLength: 4);
        while (attributes.TryRead(out var attribute))
        {
            switch (attribute.Type)
            {
                case CtNetlink.CTA_TUPLE_ORIG:
                    original = ParseTuple(attribute.GetNested());
                    break;
                case CtNetlink.CTA_TUPLE_REPLY:
                    reply = ParseTuple(attribute.GetNested());
                    break;
                case CtNetlink.CTA_PROTOINFO:
                    tcpState = ParseTcpState(attribute.GetNested()) ?? tcpState;
                    break;
                case CtNetlink.CTA_ZONE:
                    zone = attribute.GetU16BigEndian();
                    break;
                case CtNetlink.CTA_MARK:
                    mark = attribute.GetU32BigEndian();
                    break;
            }
        }
        if (original is null || reply is null)
        {
            throw new InvalidDataException("ctnetlink: an entry lacks its original or reply tuple");
        }
        return new ConntrackEntry(original, reply, original.Protocol == IpProtocols.Tcp ? tcpState : null, zone, mark);
    }

    private static ConntrackTuple ParseTuple(NetlinkAttributeReader attributes)
    {
        IPAddress? source = null, destination = null;
        byte? protocol = null;
        ushort sourcePort = 0, destinationPort = 0, icmpId = 0;
        byte icmpType = 0, icmpCode = 0;
        while (attributes.TryRead(out var attribute))
        {
            switch (attribute.Type)
            {
                case CtNetlink.CTA_TUPLE_IP:
                    var ip = attribute.GetNested();
                    while (ip.TryRead(out var a))
                    {
                        switch (a.Type)
                        {
                            case CtNetlink.CTA_IP_V4_SRC:
                                source = new IPAddress(a.Exactly(4));
                                break;
                            case CtNetlink.CTA_IP_V4_DST:
                                destination = new IPAddress(a.Exactly(4));
                                break;
                            case CtNetlink.CTA_IP_V6_SRC:
                                source = new IPAddress(a.Exactly(16));
                                break;
                            case CtNetlink.CTA_IP_V6_DST:
                                destination = new IPAddress(a.Exactly(16));
                                break;
                        }
                    }
                    break;
                case CtNetlink.CTA_TUPLE_PROTO:
                    var proto = attribute.GetNested();
                    while (proto.TryRead(out var a))
                    {
                        switch (a.Type)
                        {
                            case CtNetlink.CTA_PROTO_NUM:
                                protocol = a.GetU8();
                                break;
                            case CtNetlink.CTA_PROTO_SRC_PORT:
                                sourcePort = a.GetU16BigEndian();
                                break;
                            case CtNetlink.CTA_PROTO_DST_PORT:
                                destinationPort = a.GetU16BigEndian();
                                break;
                            case CtNetlink.CTA_PROTO_ICMP_ID or CtNetlink.CTA_PROTO_ICMPV6_ID:
                                icmpId = a.GetU16BigEndian();
                                break;
                            case CtNetlink.CTA_PROTO_ICMP_TYPE or CtNetlink.CTA_PROTO_ICMPV6_TYPE:
                                icmpType = a.GetU8();
                                break;
                            case CtNetlink.CTA_PROTO_ICMP_CODE or CtNetlink.CTA_PROTO_ICMPV6_CODE:
                                icmpCode = a.GetU8();
                                break;
                        }
                    }
                    break;
            }
        }
        if (source is null || destination is null || protocol is null)
        {
            throw new InvalidDataException("ctnetlink: a tuple lacks its source, destination or protocol");
        }
        if (source.AddressFamily != destination.AddressFamily)
        {
            throw new InvalidDataException("ctnetlink: a tuple mixes IPv4 and IPv6 addresses");
        }
        return new ConntrackTuple(source, destination, protocol.Value, sourcePort, destinationPort, icmpId, icmpType, icmpCode);
    }

    private static TcpConntrackState? ParseTcpState(NetlinkAttributeReader protoinfo)
    {
        TcpConntrackState? state = null;
        while (protoinfo.TryRead(out var attribute))
        {
            if (attribute.Type != CtNetlink.CTA_PROTOINFO_TCP)
            {
                continue;
            }
            var tcp = attribute.GetNested();
            while (tcp.TryRead(out var a))
            {
                if (a.Type == CtNetlink.CTA_PROTOINFO_TCP_STATE)
                {
                    state = (TcpConntrackState)a.GetU8();
                }
            }
        }
        return state;
    }
}
