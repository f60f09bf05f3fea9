using System.Net;
using System.Net.Sockets;
using Relay.Core.Model;

namespace Relay.Core.Dns;

/// <summary>
/// Turns one DNS query into one response, for a network's embedded server: service names,
/// their SRV and reverse names, and the SOA/NS of the zones the network owns. Pure: no I/O, no
/// clock; it allocates nothing (the server answers ~10^5 queries per second per core), except
/// what an <see cref="IFlowAddressResolver"/> does and the first use of a new
/// <see cref="DnsOptions"/> instance.
/// </summary>
public static class DnsResolver
{
    /// <summary>The smallest response buffer accepted: the classic UDP limit (RFC 1035 4.2.1).</summary>
    public const int MinResponseBuffer = 512;

    /// <summary>The largest DNS message (TCP's 2-byte length prefix).</summary>
    public const int MaxMessageSize = 65535;

    private const int ClassicUdpLimit = 512;
    private const int OptRecordSize = 11;
    private const ushort EchoedFlags = 0x7800 | (ushort)(DnsHeaderFlags.RecursionDesired | DnsHeaderFlags.CheckingDisabled);

    // SOA timers (RFC 1912 2.2 ranges). Nothing transfers these zones, so only the minimum
    // (negative-caching TTL, RFC 2308) matters; it is the record TTL.
    private const uint SoaSerial = 1;
    private const uint SoaRefresh = 3600;
    private const uint SoaRetry = 600;
    private const uint SoaExpire = 86400;

    /// <summary>
    /// Answers <paramref name="query"/> (one message as received: a UDP payload, or a TCP message
    /// without its length prefix) into <paramref name="response"/>.
    /// </summary>
    /// <param name="query">The query.</param>
    /// <param name="response">The caller's buffer, at least <see cref="MinResponseBuffer"/> bytes; pass 65535 for TCP.</param>
    /// <param name="overTcp">
    /// False for UDP: the response is limited to max(512, min(the client's EDNS size,
    /// <see cref="DnsOptions.MaxUdpPayload"/>)) and truncated (TC=1) beyond it. True for TCP: 65535.
    /// </param>
    /// <param name="client">The client's address, for flow addressing.</param>
    /// <param name="names">The network's names.</param>
    /// <param name="options">How to answer.</param>
    /// <param name="flows">
    /// Per-client addresses for services with flow addressing; null to answer their virtual
    /// addresses. It is asked only for A, AAAA, ANY and SRV answers of such services; an exception
    /// it throws is not caught here.
    /// </param>
    /// <exception cref="ArgumentException">The buffer is too small or the options are invalid (never because of the query).</exception>
    public static DnsResult Respond(
        ReadOnlySpan<byte> query, Span<byte> response, bool overTcp, IPAddress client,
        NameTable names, DnsOptions options, IFlowAddressResolver? flows)
    {
        ArgumentNullException.ThrowIfNull(client);
        ArgumentNullException.ThrowIfNull(names);
        ArgumentNullException.ThrowIfNull(options);
        if (response.Length < MinResponseBuffer)
        {
            throw new ArgumentException($"the response buffer must hold at least {MinResponseBuffer} bytes", nameof(response));
        }
        var o = CompiledDnsOptions.For(options);

        // Below a header there is no ID to answer; above 65535 it is no DNS message.
        if (query.Length < DnsHeader.Size || query.Length > MaxMessageSize)
        {
            return Drop;
        }
        var reader = new DnsReader(query);
        reader.TryReadHeader(out var header);
        // Answering responses would let two servers (or a spoofed source) bounce packets forever.
        if (header.IsResponse)
        {
            return Drop;
        }
        var flags = (ushort)((ushort)DnsHeaderFlags.Response | (header.Flags & EchoedFlags)
            | (o.Forward ? (ushort)DnsHeaderFlags.RecursionAvailable : 0));
        if (header.Opcode != 0)
        {
            return Fail(response, header.Id, flags, DnsResponseCode.NotImp, default, 0, 0);
        }
        if (header.QuestionCount != 1)
        {
            return Fail(response, header.Id, flags, DnsResponseCode.FormErr, default, 0, 0);
        }
        Span<byte> question = stackalloc byte[DnsReader.MaxNameLength];
        if (!reader.TryReadQuestion(question, out var questionLength, out var qtype, out var qclass))
        {
            return Fail(response, header.Id, flags, DnsResponseCode.FormErr, default, 0, 0);
        }
        question = question[..questionLength];

        // Queries carry nothing in these sections, but they are walked to reach the OPT record.
        for (var i = 0; i < header.AnswerCount + header.AuthorityCount; i++)
        {
            if (!reader.TrySkipRecord())
            {
                return Fail(response, header.Id, flags, DnsResponseCode.FormErr, question, qtype, qclass);
            }
        }
        var hasOpt = false;
        ushort clientUdp = 0;
        byte ednsVersion = 0;
        Span<byte> scratch = stackalloc byte[DnsReader.MaxNameLength];
        for (var i = 0; i < header.AdditionalCount; i++)
        {
            if (!reader.TryReadRecord(scratch, out var ownerLength, out var type, out var @class, out var ttl, out _, out _))
            {
                return Fail(response, header.Id, flags, DnsResponseCode.FormErr, question, qtype, qclass);
            }
            if (type == (ushort)DnsRecordType.OPT)
            {
                // RFC 6891 6.1.1: at most one OPT, owned by the root.
                if (hasOpt || ownerLength != 1)
                {
                    return Fail(response, header.Id, flags, DnsResponseCode.FormErr, question, qtype, qclass);
                }
                hasOpt = true;
                clientUdp = @class;
                ednsVersion = (byte)(ttl >> 16);
            }
        }
        if (!overTcp && !hasOpt && query.Length > ClassicUdpLimit)
        {
            return Fail(response, header.Id, flags, DnsResponseCode.FormErr, question, qtype, qclass);
        }

        var limit = overTcp ? MaxMessageSize : hasOpt ? Math.Max(ClassicUdpLimit, Math.Min((int)clientUdp, o.MaxUdpPayload)) : ClassicUdpLimit;
        var w = new DnsWriter(response, Math.Min(limit, response.Length));
        w.WriteHeader(new DnsHeader(header.Id, flags, 1, 0, 0, 0));
        w.WriteQuestion(question, qtype, qclass);
        var questionEnd = w.Position;

        DnsResponseCode rcode;
        var authoritative = false;
        Sections sections = default;
        if (hasOpt && ednsVersion != 0)
        {
            // RFC 6891 6.1.3: BADVERS (16) is RCODE 0 in the header and 1 in the OPT's upper bits.
            w.WriteOpt(o.MaxUdpPayload, extendedRcode: 1);
            w.PatchFlags(flags);
            w.PatchCounts(1, 0, 0, 1);
            return new DnsResult(DnsOutcome.Answered, w.Position, DnsResponseCode.BadVers, false);
        }
        if (qclass != (ushort)DnsClass.IN && qclass != (ushort)DnsClass.ANY)
        {
            rcode = DnsResponseCode.Refused;
        }
        else if (qtype == (ushort)DnsRecordType.OPT)
        {
            rcode = DnsResponseCode.FormErr; // a pseudo-type, never a question (RFC 6891 6.1.1)
        }
        else if (qtype is (ushort)DnsRecordType.AXFR or (ushort)DnsRecordType.IXFR)
        {
            rcode = DnsResponseCode.NotImp; // there are no zone files to transfer
        }
        else
        {
            Span<byte> name = stackalloc byte[DnsReader.MaxNameLength];
            name = name[..questionLength];
            DnsWireName.ToLower(question, name);
            rcode = Resolve(ref w, name, qtype, client, names, o, flows, ref sections, out authoritative, out var forward);
            if (forward)
            {
                return new DnsResult(DnsOutcome.Forward, 0, DnsResponseCode.NoError, false);
            }
        }

        if (hasOpt)
        {
            w.WriteOpt(o.MaxUdpPayload);
            sections.Additional++;
        }
        var truncated = w.Overflowed;
        if (truncated)
        {
            // RFC 2181 9: a truncated answer is dropped whole, not cut at a record; the client retries over TCP.
            w.Rewind(questionEnd);
            sections = default;
            if (hasOpt)
            {
                w.WriteOpt(o.MaxUdpPayload);
                sections.Additional = 1;
            }
            flags |= (ushort)DnsHeaderFlags.Truncated;
        }
        if (authoritative)
        {
            flags |= (ushort)DnsHeaderFlags.Authoritative;
        }
        w.PatchFlags((ushort)(flags | (byte)rcode));
        w.PatchCounts(1, sections.Answers, sections.Authority, sections.Additional);
        return new DnsResult(DnsOutcome.Answered, w.Position, rcode, truncated);
    }

    private static DnsResult Drop => new(DnsOutcome.Drop, 0, DnsResponseCode.NoError, false);

    /// <summary>The answer for a name, written after the question; the rcode, or <paramref name="forward"/>.</summary>
    private static DnsResponseCode Resolve(
        ref DnsWriter w, scoped ReadOnlySpan<byte> name, ushort qtype, IPAddress client, NameTable names,
        CompiledDnsOptions o, IFlowAddressResolver? flows, ref Sections sections, out bool authoritative, out bool forward)
    {
        authoritative = true;
        forward = false;
        var zone = FindZone(name, o.Zones);
        names.TryFind(name, out var node);
        if (node?.Service is { } service)
        {
            var wantA = qtype is (ushort)DnsRecordType.A or (ushort)DnsRecordType.ANY;
            var wantAaaa = qtype is (ushort)DnsRecordType.AAAA or (ushort)DnsRecordType.ANY;
            if (wantA || wantAaaa)
            {
                Span<byte> v4 = stackalloc byte[16];
                Span<byte> v6 = stackalloc byte[16];
                if (!TryAddresses(service, client, flows, ref v4, ref v6))
                {
                    authoritative = false;
                    return DnsResponseCode.ServFail;
                }
                if (wantA && !v4.IsEmpty)
                {
                    w.WriteAddressRecord(DnsWriter.QuestionNameOffset, o.Ttl, v4);
                    sections.Answers++;
                }
                if (wantAaaa && !v6.IsEmpty)
                {
                    w.WriteAddressRecord(DnsWriter.QuestionNameOffset, o.Ttl, v6);
                    sections.Answers++;
                }
            }
            return sections.Answers > 0 ? DnsResponseCode.NoError : NoData(ref w, zone, o, ref sections);
        }
        if (node?.Reverse is { } owner)
        {
            if (qtype is not ((ushort)DnsRecordType.PTR or (ushort)DnsRecordType.ANY))
            {
                return NoData(ref w, zone, o, ref sections);
            }
            w.WriteNameRecord(DnsWriter.QuestionNameOffset, DnsRecordType.PTR, o.Ttl, owner.WireName);
            sections.Answers++;
            return DnsResponseCode.NoError;
        }
        if (zone == 0)
        {
            var soa = qtype is (ushort)DnsRecordType.SOA or (ushort)DnsRecordType.ANY;
            var ns = qtype is (ushort)DnsRecordType.NS or (ushort)DnsRecordType.ANY;
            if (soa)
            {
                WriteSoa(ref w, zone, o, ref sections.Answers);
            }
            if (ns)
            {
                w.WriteNameRecord(DnsWriter.QuestionNameOffset, DnsRecordType.NS, o.Ttl, o.NameServer);
                sections.Answers++;
            }
            // The apex exists, so other types are NODATA, not NXDOMAIN: a resolver may take an
            // NXDOMAIN as "nothing below this name exists" (RFC 8020) and deny every service.
            return soa || ns ? DnsResponseCode.NoError : NoData(ref w, zone, o, ref sections);
        }
        if (zone > 0 && node is { NonTerminal: true })
        {
            return NoData(ref w, zone, o, ref sections); // a name with services below it (RFC 8020 again)
        }
        if (TryServiceLabels(name, names, out var target, out var protocol, out var port, out var targetOffset))
        {
            // _PORT._PROTO.NAME: the one mapping; _PROTO.NAME: every mapping of that protocol (a
            // listing of the service's ports, as DNS-SD browses; with many ports it takes TCP).
            if (protocol is { } p && (port >= 0 ? target.HasPort(p, port) : target.PortsOf(p).Length > 0)
                && qtype is (ushort)DnsRecordType.SRV or (ushort)DnsRecordType.ANY)
            {
                var targetName = DnsWriter.QuestionNameOffset + targetOffset;
                if (port >= 0)
                {
                    w.WriteSrvRecord(DnsWriter.QuestionNameOffset, o.Ttl, 0, 0, (ushort)port, targetName);
                    sections.Answers++;
                }
                else
                {
                    foreach (var each in target.PortsOf(p))
                    {
                        w.WriteSrvRecord(DnsWriter.QuestionNameOffset, o.Ttl, 0, 0, (ushort)each, targetName);
                        sections.Answers++;
                    }
                }
                // The target's addresses save the client a round trip. Flow addresses that cannot be
                // had are left out rather than failing an answer that is right without them.
                Span<byte> v4 = stackalloc byte[16];
                Span<byte> v6 = stackalloc byte[16];
                if (TryAddresses(target, client, flows, ref v4, ref v6))
                {
                    if (!v4.IsEmpty)
                    {
                        w.WriteAddressRecord(targetName, o.Ttl, v4);
                        sections.Additional++;
                    }
                    if (!v6.IsEmpty)
                    {
                        w.WriteAddressRecord(targetName, o.Ttl, v6);
                        sections.Additional++;
                    }
                }
                return DnsResponseCode.NoError;
            }
            return NoData(ref w, zone, o, ref sections);
        }
        if (zone > 0)
        {
            WriteSoa(ref w, zone, o, ref sections.Authority);
            return DnsResponseCode.NXDomain;
        }
        authoritative = false;
        if (o.Forward)
        {
            forward = true;
            return DnsResponseCode.NoError;
        }
        return DnsResponseCode.Refused;
    }

    /// <summary>
    /// Matches <c>_PORT._PROTO.NAME</c> (port ≥ 0, protocol null when not tcp/udp) and
    /// <c>_tcp.NAME</c> / <c>_udp.NAME</c> (port -1: every mapping of that protocol)
    /// for a service NAME; <paramref name="targetOffset"/> is where NAME starts in the query name.
    /// </summary>
    private static bool TryServiceLabels(
        ReadOnlySpan<byte> name, NameTable names, out ServiceData target, out TransportProtocol? protocol, out int port, out int targetOffset)
    {
        target = null!;
        protocol = null;
        port = -1;
        targetOffset = 0;
        int first = name[0];
        if (first < 2 || name[1] != '_')
        {
            return false;
        }
        var second = 1 + first;
        int secondLength = name[second];
        if (secondLength == 0)
        {
            return false;
        }
        if (TryProtocol(name.Slice(1, first), out var onlyProtocol))
        {
            // _tcp.NAME: above every _PORT._tcp.NAME, so it exists (empty non-terminal).
            if (names.TryFind(name[second..], out var node) && node.Service is { } s)
            {
                target = s;
                protocol = onlyProtocol;
                targetOffset = second;
                return true;
            }
        }
        var portLabel = name.Slice(2, first - 1);
        if (portLabel.Length > 5 || name[second + 1] != '_' || secondLength < 2)
        {
            return false;
        }
        var value = 0;
        foreach (var digit in portLabel)
        {
            if ((uint)(digit - '0') > 9)
            {
                return false;
            }
            value = value * 10 + (digit - '0');
        }
        var third = second + 1 + secondLength;
        if (value > 65535 || name[third] == 0 || !names.TryFind(name[third..], out var found) || found.Service is null)
        {
            return false;
        }
        target = found.Service;
        protocol = TryProtocol(name.Slice(second + 1, secondLength), out var pr) ? pr : null;
        port = value;
        targetOffset = third;
        return true;
    }

    private static bool TryProtocol(ReadOnlySpan<byte> label, out TransportProtocol protocol)
    {
        protocol = TransportProtocol.Tcp;
        if (label.SequenceEqual("_tcp"u8))
        {
            return true;
        }
        protocol = TransportProtocol.Udp;
        return label.SequenceEqual("_udp"u8);
    }

    /// <summary>The offset in <paramref name="name"/> of the longest owned zone it is in (0: the apex), or -1.</summary>
    private static int FindZone(ReadOnlySpan<byte> name, byte[][] zones)
    {
        for (var p = 0; name[p] != 0; p += name[p] + 1)
        {
            var suffix = name[p..];
            foreach (var zone in zones)
            {
                if (suffix.SequenceEqual(zone))
                {
                    return p;
                }
            }
        }
        return -1;
    }

    /// <summary>
    /// The service's addresses for this client, written into the spans, which are then cut to
    /// 4 and 16 bytes, or to empty for a family the client gets none of. False: SERVFAIL.
    /// </summary>
    private static bool TryAddresses(ServiceData service, IPAddress client, IFlowAddressResolver? flows, ref Span<byte> v4, ref Span<byte> v6)
    {
        if (!service.Entry.FlowAddressing || flows is null)
        {
            v4 = service.Vip4;
            v6 = service.Vip6;
            return true;
        }
        if (!flows.TryGetFlowAddresses(client, service.Entry, out var flow4, out var flow6))
        {
            return false;
        }
        v4 = flow4 is { AddressFamily: AddressFamily.InterNetwork } && flow4.TryWriteBytes(v4, out var n4) ? v4[..n4] : default;
        v6 = flow6 is { AddressFamily: AddressFamily.InterNetworkV6 } && flow6.TryWriteBytes(v6, out var n6) ? v6[..n6] : default;
        return true;
    }

    /// <summary>NOERROR without answers; the zone's SOA in the authority section when the name is in one (RFC 2308 2.2).</summary>
    private static DnsResponseCode NoData(ref DnsWriter w, int zone, CompiledDnsOptions o, ref Sections sections)
    {
        if (zone >= 0)
        {
            WriteSoa(ref w, zone, o, ref sections.Authority);
        }
        return DnsResponseCode.NoError;
    }

    /// <summary>Writes the SOA of the zone at offset <paramref name="zone"/> of the question name (a suffix of it, so a pointer).</summary>
    private static void WriteSoa(ref DnsWriter w, int zone, CompiledDnsOptions o, ref ushort count)
    {
        w.WriteSoaRecord(DnsWriter.QuestionNameOffset + zone, o.Ttl, o.NameServer, o.Hostmaster,
            SoaSerial, SoaRefresh, SoaRetry, SoaExpire, o.Ttl);
        count++;
    }

    /// <summary>A response with the header, and the question when there is one, and no records.</summary>
    private static DnsResult Fail(Span<byte> response, ushort id, ushort flags, DnsResponseCode rcode, ReadOnlySpan<byte> question, ushort qtype, ushort qclass)
    {
        var w = new DnsWriter(response);
        var hasQuestion = !question.IsEmpty;
        w.WriteHeader(new DnsHeader(id, (ushort)(flags | (byte)rcode), hasQuestion ? (ushort)1 : (ushort)0, 0, 0, 0));
        if (hasQuestion)
        {
            w.WriteQuestion(question, qtype, qclass);
        }
        return new DnsResult(DnsOutcome.Answered, w.Position, rcode, false);
    }

    private struct Sections
    {
        public ushort Answers;
        public ushort Authority;
        public ushort Additional;
    }
}
