using System.Buffers.Binary;

namespace Relay.Core.Dns;

/// <summary>
/// A bounds-checked reader over one DNS message. Every method returns false instead of reading
/// past the end or accepting an invalid name; it never throws on hostile input and never allocates.
/// Names are returned uncompressed, in wire form (length-prefixed labels ending with a zero byte),
/// with their case as received.
/// </summary>
public ref struct DnsReader
{
    /// <summary>The longest name on the wire, the final zero byte included (RFC 1035 3.1).</summary>
    public const int MaxNameLength = 255;

    /// <summary>The longest label (RFC 1035 2.3.4).</summary>
    public const int MaxLabelLength = 63;

    /// <summary>
    /// The most compression pointers followed in one name. Pointers must also point backwards,
    /// which alone rules out loops; the cap bounds the work of a long backward chain.
    /// </summary>
    public const int MaxPointerJumps = 128;

    private readonly ReadOnlySpan<byte> _message;
    private int _position;

    /// <summary>Creates a reader positioned at the start of <paramref name="message"/>.</summary>
    public DnsReader(ReadOnlySpan<byte> message)
    {
        _message = message;
        _position = 0;
    }

    /// <summary>The offset of the next byte to read.</summary>
    public readonly int Position => _position;

    /// <summary>The bytes not read yet.</summary>
    public readonly int Remaining => _message.Length - _position;

    /// <summary>Reads the 12-byte header.</summary>
    public bool TryReadHeader(out DnsHeader header)
    {
        if (Remaining < DnsHeader.Size)
        {
            header = default;
            return false;
        }
        var h = _message.Slice(_position, DnsHeader.Size);
        header = new DnsHeader(
            BinaryPrimitives.ReadUInt16BigEndian(h),
            BinaryPrimitives.ReadUInt16BigEndian(h[2..]),
            BinaryPrimitives.ReadUInt16BigEndian(h[4..]),
            BinaryPrimitives.ReadUInt16BigEndian(h[6..]),
            BinaryPrimitives.ReadUInt16BigEndian(h[8..]),
            BinaryPrimitives.ReadUInt16BigEndian(h[10..]));
        _position += DnsHeader.Size;
        return true;
    }

    /// <summary>Reads a big-endian 16-bit value.</summary>
    public bool TryReadUInt16(out ushort value)
    {
        if (Remaining < 2)
        {
            value = 0;
            return false;
        }
        value = BinaryPrimitives.ReadUInt16BigEndian(_message[_position..]);
        _position += 2;
        return true;
    }

    /// <summary>Reads a big-endian 32-bit value.</summary>
    public bool TryReadUInt32(out uint value)
    {
        if (Remaining < 4)
        {
            value = 0;
            return false;
        }
        value = BinaryPrimitives.ReadUInt32BigEndian(_message[_position..]);
        _position += 4;
        return true;
    }

    /// <summary>
    /// Reads a name at the current position into <paramref name="destination"/> (at least
    /// <see cref="MaxNameLength"/> bytes), following compression pointers.
    /// </summary>
    /// <param name="destination">Receives the uncompressed wire form.</param>
    /// <param name="length">The bytes written, the final zero byte included (1 for the root).</param>
    public bool TryReadName(scoped Span<byte> destination, out int length)
        => TryReadName(_message, ref _position, destination, out length);

    /// <summary>Skips a name at the current position, checking it as <see cref="TryReadName(Span{byte}, out int)"/> does.</summary>
    public bool TrySkipName()
    {
        Span<byte> scratch = stackalloc byte[MaxNameLength];
        return TryReadName(scratch, out _);
    }

    /// <summary>Reads one question: name, QTYPE and QCLASS.</summary>
    public bool TryReadQuestion(scoped Span<byte> name, out int nameLength, out ushort type, out ushort @class)
    {
        type = 0;
        @class = 0;
        return TryReadName(name, out nameLength) && TryReadUInt16(out type) && TryReadUInt16(out @class);
    }

    /// <summary>
    /// Reads one resource record. <paramref name="data"/> is a slice of the message, so names
    /// inside it can be read with <see cref="TryReadName(ReadOnlySpan{byte}, ref int, Span{byte}, out int)"/>
    /// from <paramref name="dataOffset"/>.
    /// </summary>
    public bool TryReadRecord(
        scoped Span<byte> name, out int nameLength, out ushort type, out ushort @class, out uint ttl,
        out ReadOnlySpan<byte> data, out int dataOffset)
    {
        type = 0;
        @class = 0;
        ttl = 0;
        data = default;
        dataOffset = 0;
        if (!TryReadName(name, out nameLength)
            || !TryReadUInt16(out type) || !TryReadUInt16(out @class) || !TryReadUInt32(out ttl)
            || !TryReadUInt16(out var dataLength) || Remaining < dataLength)
        {
            return false;
        }
        dataOffset = _position;
        data = _message.Slice(_position, dataLength);
        _position += dataLength;
        return true;
    }

    /// <summary>Skips one resource record, checking its name and that its data is within the message.</summary>
    public bool TrySkipRecord()
    {
        if (!TrySkipName() || Remaining < 10)
        {
            return false;
        }
        var dataLength = BinaryPrimitives.ReadUInt16BigEndian(_message[(_position + 8)..]);
        if (Remaining - 10 < dataLength)
        {
            return false;
        }
        _position += 10 + dataLength;
        return true;
    }

    /// <summary>
    /// Reads a name at <paramref name="position"/> of <paramref name="message"/> and advances
    /// <paramref name="position"/> past it (past the first pointer, if the name is compressed).
    /// Rejects labels over 63 octets, names over 255, the reserved label types 01 and 10, pointers
    /// that do not point backwards, and more than <see cref="MaxPointerJumps"/> jumps.
    /// </summary>
    public static bool TryReadName(ReadOnlySpan<byte> message, ref int position, Span<byte> destination, out int length)
    {
        length = 0;
        var p = position;
        var end = -1; // where the caller resumes: after the first pointer, or after the final zero byte
        var jumps = 0;
        var written = 0;
        while (true)
        {
            if ((uint)p >= (uint)message.Length)
            {
                return false;
            }
            int b = message[p];
            if (b == 0)
            {
                if (written + 1 > MaxNameLength || written + 1 > destination.Length)
                {
                    return false;
                }
                destination[written++] = 0;
                position = end < 0 ? p + 1 : end;
                length = written;
                return true;
            }
            switch (b & 0xC0)
            {
                case 0xC0:
                    if (p + 1 >= message.Length || ++jumps > MaxPointerJumps)
                    {
                        return false;
                    }
                    var target = ((b & 0x3F) << 8) | message[p + 1];
                    // A pointer names a prior occurrence (RFC 1035 4.1.4); forward or self
                    // pointers are how loops are built, so they are refused outright.
                    if (target >= p)
                    {
                        return false;
                    }
                    if (end < 0)
                    {
                        end = p + 2;
                    }
                    p = target;
                    continue;
                case 0x00:
                    // Room for the label, its length byte, and the final zero byte still to come.
                    if (written + 1 + b + 1 > MaxNameLength || written + 1 + b > destination.Length
                        || p + 1 + b > message.Length)
                    {
                        return false;
                    }
                    message.Slice(p, b + 1).CopyTo(destination[written..]);
                    written += b + 1;
                    p += b + 1;
                    continue;
                default:
                    return false; // 0x40 and 0x80: extended and reserved label types
            }
        }
    }
}
