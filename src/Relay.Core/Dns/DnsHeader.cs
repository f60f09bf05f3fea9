namespace Relay.Core.Dns;

/// <summary>The fixed 12-byte header of a DNS message (RFC 1035 4.1.1).</summary>
/// <param name="Id">The query identifier, echoed in the response.</param>
/// <param name="Flags">The whole second word: QR, opcode, AA, TC, RD, RA, Z, AD, CD and RCODE.</param>
/// <param name="QuestionCount">QDCOUNT.</param>
/// <param name="AnswerCount">ANCOUNT.</param>
/// <param name="AuthorityCount">NSCOUNT.</param>
/// <param name="AdditionalCount">ARCOUNT.</param>
public readonly record struct DnsHeader(
    ushort Id, ushort Flags, ushort QuestionCount, ushort AnswerCount, ushort AuthorityCount, ushort AdditionalCount)
{
    /// <summary>The size of the header on the wire.</summary>
    public const int Size = 12;

    /// <summary>QR: true for a response.</summary>
    public bool IsResponse => Has(DnsHeaderFlags.Response);

    /// <summary>The 4-bit opcode (0 = QUERY).</summary>
    public int Opcode => (Flags >> 11) & 0xF;

    /// <summary>The 4-bit header RCODE (the low bits of an extended code).</summary>
    public int Rcode => Flags & 0xF;

    /// <summary>True when every bit of <paramref name="flags"/> is set.</summary>
    public bool Has(DnsHeaderFlags flags) => (Flags & (ushort)flags) == (ushort)flags;
}
