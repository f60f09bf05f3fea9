using System.Buffers.Binary;

namespace Relay.Core.Dns;

/// <summary>
/// Writes a DNS message into a caller's buffer, up to a size limit, without allocating.
/// A write that does not fit writes nothing and sets <see cref="Overflowed"/>, which stays set;
/// so a response is written straight through and checked once at the end (then rewritten
/// truncated), instead of checking every call.
/// Names are written uncompressed, or as a pointer to an earlier offset that the caller knows
/// holds the name (answers point at the question name, offset 12: <c>0xC00C</c>).
/// </summary>
public ref struct DnsWriter
{
    /// <summary>The offset of the question name in every message that has one.</summary>
    public const int QuestionNameOffset = DnsHeader.Size;

    private readonly Span<byte> _buffer;
    private readonly int _limit;
    private int _position;
    private bool _overflowed;

    /// <summary>Creates a writer that may use all of <paramref name="buffer"/>.</summary>
    public DnsWriter(Span<byte> buffer)
        : this(buffer, buffer.Length)
    {
    }

    /// <summary>Creates a writer that may use the first <paramref name="limit"/> bytes of <paramref name="buffer"/>.</summary>
    public DnsWriter(Span<byte> buffer, int limit)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(limit);
        _buffer = buffer;
        _limit = Math.Min(limit, buffer.Length);
        _position = 0;
        _overflowed = false;
    }

    /// <summary>The bytes written so far: the length of the message.</summary>
    public readonly int Position => _position;

    /// <summary>True once a write did not fit; nothing after it was written.</summary>
    public readonly bool Overflowed => _overflowed;

    /// <summary>The message written so far.</summary>
    public readonly ReadOnlySpan<byte> Written => _buffer[.._position];

    /// <summary>Goes back to <paramref name="position"/> (no further than what was written) and clears <see cref="Overflowed"/>.</summary>
    public void Rewind(int position)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan((uint)position, (uint)_position, nameof(position));
        _position = position;
        _overflowed = false;
    }

    /// <summary>Writes the 12-byte header.</summary>
    public void WriteHeader(in DnsHeader header)
    {
        if (!Reserve(DnsHeader.Size, out var h))
        {
            return;
        }
        BinaryPrimitives.WriteUInt16BigEndian(h, header.Id);
        BinaryPrimitives.WriteUInt16BigEndian(h[2..], header.Flags);
        BinaryPrimitives.WriteUInt16BigEndian(h[4..], header.QuestionCount);
        BinaryPrimitives.WriteUInt16BigEndian(h[6..], header.AnswerCount);
        BinaryPrimitives.WriteUInt16BigEndian(h[8..], header.AuthorityCount);
        BinaryPrimitives.WriteUInt16BigEndian(h[10..], header.AdditionalCount);
    }

    /// <summary>Overwrites the header's flags word (the header must have been written).</summary>
    public readonly void PatchFlags(ushort flags) => Patch(2, flags);

    /// <summary>Overwrites the header's four counts (the header must have been written).</summary>
    public readonly void PatchCounts(ushort questions, ushort answers, ushort authority, ushort additional)
    {
        Patch(4, questions);
        Patch(6, answers);
        Patch(8, authority);
        Patch(10, additional);
    }

    /// <summary>Writes a big-endian 16-bit value.</summary>
    public void WriteUInt16(ushort value)
    {
        if (Reserve(2, out var s))
        {
            BinaryPrimitives.WriteUInt16BigEndian(s, value);
        }
    }

    /// <summary>Writes a big-endian 32-bit value.</summary>
    public void WriteUInt32(uint value)
    {
        if (Reserve(4, out var s))
        {
            BinaryPrimitives.WriteUInt32BigEndian(s, value);
        }
    }

    /// <summary>Writes raw bytes.</summary>
    public void WriteBytes(scoped ReadOnlySpan<byte> bytes)
    {
        if (Reserve(bytes.Length, out var s))
        {
            bytes.CopyTo(s);
        }
    }

    /// <summary>Writes a name in uncompressed wire form, as is (the caller vouches for its form).</summary>
    public void WriteName(scoped ReadOnlySpan<byte> wireName) => WriteBytes(wireName);

    /// <summary>Writes a compression pointer to the name at <paramref name="offset"/> (below 0x4000).</summary>
    public void WritePointer(int offset)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan((uint)offset, 0x3FFFu, nameof(offset));
        WriteUInt16((ushort)(0xC000 | offset));
    }

    /// <summary>Writes one question.</summary>
    public void WriteQuestion(scoped ReadOnlySpan<byte> wireName, ushort type, ushort @class)
    {
        if (Reserve(wireName.Length + 4, out var s))
        {
            wireName.CopyTo(s);
            BinaryPrimitives.WriteUInt16BigEndian(s[wireName.Length..], type);
            BinaryPrimitives.WriteUInt16BigEndian(s[(wireName.Length + 2)..], @class);
        }
    }

    /// <summary>Writes an A or AAAA record (by the length of <paramref name="address"/>: 4 or 16) owned by the name at <paramref name="ownerOffset"/>.</summary>
    public void WriteAddressRecord(int ownerOffset, uint ttl, scoped ReadOnlySpan<byte> address)
    {
        var type = address.Length switch
        {
            4 => DnsRecordType.A,
            16 => DnsRecordType.AAAA,
            _ => throw new ArgumentException("an address has 4 or 16 bytes", nameof(address)),
        };
        if (Reserve(12 + address.Length, out var s))
        {
            WriteRecordHeader(s, ownerOffset, type, ttl, address.Length);
            address.CopyTo(s[12..]);
        }
    }

    /// <summary>Writes an SRV record whose target is the name at <paramref name="targetOffset"/>.</summary>
    public void WriteSrvRecord(int ownerOffset, uint ttl, ushort priority, ushort weight, ushort port, int targetOffset)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan((uint)targetOffset, 0x3FFFu, nameof(targetOffset));
        if (Reserve(12 + 8, out var s))
        {
            WriteRecordHeader(s, ownerOffset, DnsRecordType.SRV, ttl, 8);
            BinaryPrimitives.WriteUInt16BigEndian(s[12..], priority);
            BinaryPrimitives.WriteUInt16BigEndian(s[14..], weight);
            BinaryPrimitives.WriteUInt16BigEndian(s[16..], port);
            BinaryPrimitives.WriteUInt16BigEndian(s[18..], (ushort)(0xC000 | targetOffset));
        }
    }

    /// <summary>Writes a record whose data is one uncompressed name: PTR, NS or CNAME.</summary>
    public void WriteNameRecord(int ownerOffset, DnsRecordType type, uint ttl, scoped ReadOnlySpan<byte> wireName)
    {
        if (Reserve(12 + wireName.Length, out var s))
        {
            WriteRecordHeader(s, ownerOffset, type, ttl, wireName.Length);
            wireName.CopyTo(s[12..]);
        }
    }

    /// <summary>Writes an SOA record (RFC 1035 3.3.13) with uncompressed names.</summary>
    public void WriteSoaRecord(
        int ownerOffset, uint ttl, scoped ReadOnlySpan<byte> primary, scoped ReadOnlySpan<byte> mailbox,
        uint serial, uint refresh, uint retry, uint expire, uint minimum)
    {
        var dataLength = primary.Length + mailbox.Length + 20;
        if (Reserve(12 + dataLength, out var s))
        {
            WriteRecordHeader(s, ownerOffset, DnsRecordType.SOA, ttl, dataLength);
            var d = s[12..];
            primary.CopyTo(d);
            d = d[primary.Length..];
            mailbox.CopyTo(d);
            d = d[mailbox.Length..];
            BinaryPrimitives.WriteUInt32BigEndian(d, serial);
            BinaryPrimitives.WriteUInt32BigEndian(d[4..], refresh);
            BinaryPrimitives.WriteUInt32BigEndian(d[8..], retry);
            BinaryPrimitives.WriteUInt32BigEndian(d[12..], expire);
            BinaryPrimitives.WriteUInt32BigEndian(d[16..], minimum);
        }
    }

    /// <summary>
    /// Writes an EDNS OPT pseudo-record (RFC 6891 6.1.2) without options: owner root, CLASS the
    /// UDP payload size, TTL the upper 8 bits of the extended RCODE, the version and the DO bit.
    /// </summary>
    public void WriteOpt(ushort udpPayloadSize, byte extendedRcode = 0, byte version = 0, bool dnssecOk = false)
    {
        if (Reserve(11, out var s))
        {
            s[0] = 0;
            BinaryPrimitives.WriteUInt16BigEndian(s[1..], (ushort)DnsRecordType.OPT);
            BinaryPrimitives.WriteUInt16BigEndian(s[3..], udpPayloadSize);
            s[5] = extendedRcode;
            s[6] = version;
            BinaryPrimitives.WriteUInt16BigEndian(s[7..], dnssecOk ? (ushort)0x8000 : (ushort)0);
            BinaryPrimitives.WriteUInt16BigEndian(s[9..], 0);
        }
    }

    private static void WriteRecordHeader(Span<byte> s, int ownerOffset, DnsRecordType type, uint ttl, int dataLength)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan((uint)ownerOffset, 0x3FFFu, nameof(ownerOffset));
        BinaryPrimitives.WriteUInt16BigEndian(s, (ushort)(0xC000 | ownerOffset));
        BinaryPrimitives.WriteUInt16BigEndian(s[2..], (ushort)type);
        BinaryPrimitives.WriteUInt16BigEndian(s[4..], (ushort)DnsClass.IN);
        BinaryPrimitives.WriteUInt32BigEndian(s[6..], ttl);
        BinaryPrimitives.WriteUInt16BigEndian(s[10..], (ushort)dataLength);
    }

    private readonly void Patch(int offset, ushort value)
    {
        if (_position < DnsHeader.Size)
        {
            throw new InvalidOperationException("the header has not been written");
        }
        BinaryPrimitives.WriteUInt16BigEndian(_buffer[offset..], value);
    }

    private bool Reserve(int count, out Span<byte> span)
    {
        if (_overflowed || count > _limit - _position)
        {
            _overflowed = true;
            span = default;
            return false;
        }
        span = _buffer.Slice(_position, count);
        _position += count;
        return true;
    }
}
