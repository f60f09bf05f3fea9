using System.Buffers.Binary;
using System.Net;
using Relay.Core.Dns;
using Relay.Core.Model;

namespace Relay.Core.Tests.Dns;

/// <summary>One resource record of a parsed response; names inside the data are decoded to text.</summary>
internal sealed record ParsedRecord(string Name, DnsRecordType Type, ushort Class, uint Ttl, byte[] Data, IReadOnlyList<string> DataNames);

/// <summary>A response read back with <see cref="DnsReader"/>, checked to be well formed throughout.</summary>
internal sealed record ParsedMessage(
    DnsHeader Header, string? QuestionName, ushort QuestionType, ushort QuestionClass,
    IReadOnlyList<ParsedRecord> Answers, IReadOnlyList<ParsedRecord> Authority, IReadOnlyList<ParsedRecord> Additional)
{
    public DnsResponseCode HeaderRcode => (DnsResponseCode)Header.Rcode;

    public ParsedRecord? Opt => Additional.SingleOrDefault(r => r.Type == DnsRecordType.OPT);
}

internal sealed class FakeFlows(IPAddress? v4, IPAddress? v6, bool ok = true) : IFlowAddressResolver
{
    public int Calls { get; private set; }

    public IPAddress? LastClient { get; private set; }

    public bool TryGetFlowAddresses(IPAddress client, DnsServiceEntry service, out IPAddress? flow4, out IPAddress? flow6)
    {
        Calls++;
        LastClient = client;
        flow4 = v4;
        flow6 = v6;
        return ok;
    }
}

internal static class DnsTestKit
{
    public static readonly IPAddress Client = IPAddress.Parse("10.88.0.5");

    public static readonly IPAddress WebV4 = IPAddress.Parse("10.96.0.1");
    public static readonly IPAddress WebV6 = IPAddress.Parse("fd52:656c:6179:2::1");

    public static DnsServiceEntry Web { get; } = new(
        "web.relay.internal", WebV4, WebV6,
        [new PortMapping(TransportProtocol.Tcp, 80, 8080), new PortMapping(TransportProtocol.Udp, 53, 5353)], false);

    public static DnsServiceEntry B { get; } = new("b.com", IPAddress.Parse("10.96.0.2"), IPAddress.Parse("fd52:656c:6179:2::2"), [], false);

    public static DnsServiceEntry Flow { get; } = new("flow.relay.internal", IPAddress.Parse("10.96.0.3"), IPAddress.Parse("fd52:656c:6179:2::3"), [new PortMapping(TransportProtocol.Tcp, 443, 443)], true);

    public static DnsServiceEntry Api { get; } = new("api.prod.relay.internal", IPAddress.Parse("10.96.0.4"), IPAddress.Parse("fd52:656c:6179:2::4"), [], false);

    public static NameTable Names { get; } = NameTable.Build([Web, B, Flow, Api]);

    public static DnsOptions Options { get; } = new();

    /// <summary>A query built with the codec's writer: RD set, one question, optionally an OPT.</summary>
    public static byte[] Query(
        string name, DnsRecordType type, ushort id = 0xBEEF, bool edns = false, ushort ednsSize = 1232,
        byte ednsVersion = 0, ushort qclass = (ushort)DnsClass.IN, ushort flags = (ushort)DnsHeaderFlags.RecursionDesired)
    {
        var buffer = new byte[1024];
        var w = new DnsWriter(buffer);
        w.WriteHeader(new DnsHeader(id, flags, 1, 0, 0, edns ? (ushort)1 : (ushort)0));
        w.WriteQuestion(DnsWireName.FromText(name), (ushort)type, qclass);
        if (edns)
        {
            w.WriteOpt(ednsSize, version: ednsVersion);
        }
        Assert.False(w.Overflowed);
        return w.Written.ToArray();
    }

    /// <summary>Runs the resolver and, when it answered, parses the response (which must be well formed).</summary>
    public static (DnsResult Result, ParsedMessage? Message) Ask(
        byte[] query, bool overTcp = false, NameTable? names = null, DnsOptions? options = null,
        IFlowAddressResolver? flows = null, int bufferSize = 65535)
    {
        var response = new byte[bufferSize];
        var result = DnsResolver.Respond(query, response, overTcp, Client, names ?? Names, options ?? Options, flows);
        if (result.Outcome != DnsOutcome.Answered)
        {
            Assert.Equal(0, result.Length);
            return (result, null);
        }
        var message = Parse(response.AsSpan(0, result.Length));
        Assert.NotNull(message);
        return (result, message);
    }

    /// <summary>Parses a whole message strictly: every count honoured, nothing left over; null if malformed.</summary>
    public static ParsedMessage? Parse(ReadOnlySpan<byte> message)
    {
        var r = new DnsReader(message);
        if (!r.TryReadHeader(out var header) || header.QuestionCount > 1)
        {
            return null;
        }
        Span<byte> name = stackalloc byte[DnsReader.MaxNameLength];
        string? questionName = null;
        ushort qtype = 0, qclass = 0;
        if (header.QuestionCount == 1)
        {
            if (!r.TryReadQuestion(name, out var length, out qtype, out qclass))
            {
                return null;
            }
            questionName = DnsWireName.ToText(name[..length]);
        }
        var sections = new List<ParsedRecord>[3];
        ushort[] counts = [header.AnswerCount, header.AuthorityCount, header.AdditionalCount];
        for (var s = 0; s < 3; s++)
        {
            sections[s] = [];
            for (var i = 0; i < counts[s]; i++)
            {
                if (!r.TryReadRecord(name, out var length, out var type, out var cls, out var ttl, out var data, out var dataOffset))
                {
                    return null;
                }
                var dataNames = DataNames(message, (DnsRecordType)type, data, dataOffset);
                if (dataNames is null)
                {
                    return null;
                }
                sections[s].Add(new ParsedRecord(DnsWireName.ToText(name[..length]), (DnsRecordType)type, cls, ttl, data.ToArray(), dataNames));
            }
        }
        return r.Remaining == 0 ? new ParsedMessage(header, questionName, qtype, qclass, sections[0], sections[1], sections[2]) : null;
    }

    /// <summary>Decodes the names inside PTR, NS, CNAME, SRV and SOA data, checking the data's length.</summary>
    private static List<string>? DataNames(ReadOnlySpan<byte> message, DnsRecordType type, ReadOnlySpan<byte> data, int offset)
    {
        var names = new List<string>();
        var end = offset + data.Length;
        var p = offset;
        Span<byte> name = stackalloc byte[DnsReader.MaxNameLength];
        bool Next(ReadOnlySpan<byte> m, Span<byte> buffer)
        {
            if (!DnsReader.TryReadName(m, ref p, buffer, out var length) || p > end)
            {
                return false;
            }
            names.Add(DnsWireName.ToText(buffer[..length]));
            return true;
        }
        switch (type)
        {
            case DnsRecordType.PTR or DnsRecordType.NS or DnsRecordType.CNAME:
                return Next(message, name) && p == end ? names : null;
            case DnsRecordType.SRV:
                p += 6;
                return data.Length > 6 && Next(message, name) && p == end ? names : null;
            case DnsRecordType.SOA:
                return Next(message, name) && Next(message, name) && p + 20 == end ? names : null;
            case DnsRecordType.A:
                return data.Length == 4 ? names : null;
            case DnsRecordType.AAAA:
                return data.Length == 16 ? names : null;
            default:
                return names;
        }
    }

    public static IPAddress Address(ParsedRecord record) => new(record.Data);

    public static ushort UInt16(ParsedRecord record, int offset) => BinaryPrimitives.ReadUInt16BigEndian(record.Data.AsSpan(offset));

    public static uint UInt32At(byte[] data, int offset) => BinaryPrimitives.ReadUInt32BigEndian(data.AsSpan(offset));
}
