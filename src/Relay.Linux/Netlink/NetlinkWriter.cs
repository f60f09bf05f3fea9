using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Relay.Linux.Interop;

namespace Relay.Linux.Netlink;

/// <summary>
/// Builds netlink messages (nlmsghdr, nfgenmsg, attributes) into one growable buffer, so several
/// requests can be packed back to back and handed to a single send().
/// <para>
/// Header fields are host order, as netlink wants; the typed attribute writers say which byte
/// order they use, because nfnetlink families carry most values big-endian.
/// </para>
/// </summary>
internal sealed class NetlinkWriter
{
    /// <summary>An attribute's length field is 16 bits; nested payloads larger than that cannot be expressed.</summary>
    private const int MaxAttributeLength = ushort.MaxValue;

    private byte[] _buffer;
    private int _length;

    public NetlinkWriter(int initialCapacity = 4096)
        => _buffer = new byte[Math.Max(initialCapacity, Libc.NLMSG_HDRLEN)];

    /// <summary>Bytes written so far.</summary>
    public int Length => _length;

    /// <summary>The messages written so far (valid until the next write).</summary>
    public Span<byte> WrittenSpan => _buffer.AsSpan(0, _length);

    /// <summary>Forgets everything written.</summary>
    public void Reset() => _length = 0;

    /// <summary>Drops everything after <paramref name="length"/>: how a message that did not fit a batch is taken back.</summary>
    public void Truncate(int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, _length);
        _length = length;
    }

    /// <summary>Starts a message; returns the token for <see cref="EndMessage"/>. nlmsg_pid is 0 (to the kernel).</summary>
    public int BeginMessage(ushort type, ushort flags, uint sequence = 0)
    {
        var start = _length;
        var header = Reserve(Libc.NLMSG_HDRLEN);
        WriteHost32(header, 0);
        WriteHost16(header[4..], type);
        WriteHost16(header[6..], flags);
        WriteHost32(header[8..], sequence);
        WriteHost32(header[12..], 0);
        return start;
    }

    /// <summary>Closes the message started at <paramref name="token"/> by writing its length.</summary>
    public void EndMessage(int token)
    {
        CheckToken(token, Libc.NLMSG_HDRLEN);
        WriteHost32(_buffer.AsSpan(token), (uint)(_length - token));
    }

    /// <summary>Appends the nfnetlink family header (struct nfgenmsg; res_id is big-endian).</summary>
    public void WriteNfGenMsg(byte family, byte version = 0, ushort resourceId = 0)
    {
        var span = Reserve(4);
        span[0] = family;
        span[1] = version;
        BinaryPrimitives.WriteUInt16BigEndian(span[2..], resourceId);
    }

    /// <summary>Starts a nested attribute (NLA_F_NESTED set, as strict kernel policies require); returns the token for <see cref="EndNested"/>.</summary>
    public int BeginNested(ushort type)
    {
        var start = _length;
        var header = Reserve(Libc.NLA_HDRLEN);
        WriteHost16(header, 0);
        WriteHost16(header[2..], (ushort)(type | Libc.NLA_F_NESTED));
        return start;
    }

    /// <summary>Closes the nested attribute started at <paramref name="token"/>.</summary>
    public void EndNested(int token)
    {
        CheckToken(token, Libc.NLA_HDRLEN);
        var length = _length - token;
        if (length > MaxAttributeLength)
        {
            throw new InvalidOperationException($"netlink: nested attribute of {length} bytes exceeds the 16-bit length field");
        }
        WriteHost16(_buffer.AsSpan(token), (ushort)length);
    }

    /// <summary>An attribute carrying one byte.</summary>
    public void WriteU8(ushort type, byte value) => WriteAttribute(type, 1)[0] = value;

    /// <summary>An attribute carrying a big-endian 16-bit value (ports, zones, ICMP ids).</summary>
    public void WriteU16BigEndian(ushort type, ushort value) => BinaryPrimitives.WriteUInt16BigEndian(WriteAttribute(type, 2), value);

    /// <summary>An attribute carrying a big-endian 32-bit value (marks, status).</summary>
    public void WriteU32BigEndian(ushort type, uint value) => BinaryPrimitives.WriteUInt32BigEndian(WriteAttribute(type, 4), value);

    /// <summary>An attribute carrying raw bytes (addresses, already in network order).</summary>
    public void WriteBytes(ushort type, ReadOnlySpan<byte> value) => value.CopyTo(WriteAttribute(type, value.Length));

    private Span<byte> WriteAttribute(ushort type, int payloadLength)
    {
        var length = Libc.NLA_HDRLEN + payloadLength;
        if (length > MaxAttributeLength)
        {
            throw new ArgumentOutOfRangeException(nameof(payloadLength), $"netlink: attribute of {length} bytes exceeds the 16-bit length field");
        }
        var span = Reserve(Align(length));
        WriteHost16(span, (ushort)length);
        WriteHost16(span[2..], type);
        // Padding goes out zeroed: the kernel ignores it, but stale bytes from a truncated message must not leak.
        span[length..].Clear();
        return span.Slice(Libc.NLA_HDRLEN, payloadLength);
    }

    /// <summary>NLMSG_ALIGN / NLA_ALIGN.</summary>
    public static int Align(int length) => (length + Libc.NLMSG_ALIGNTO - 1) & ~(Libc.NLMSG_ALIGNTO - 1);

    private Span<byte> Reserve(int count)
    {
        var needed = _length + count;
        if (needed > _buffer.Length)
        {
            Array.Resize(ref _buffer, Math.Max(needed, _buffer.Length * 2));
        }
        var span = _buffer.AsSpan(_length, count);
        _length = needed;
        return span;
    }

    private void CheckToken(int token, int headerLength)
    {
        if (token < 0 || token + headerLength > _length)
        {
            throw new ArgumentOutOfRangeException(nameof(token), "netlink: token does not belong to the bytes written");
        }
    }

    private static void WriteHost16(Span<byte> span, ushort value) => MemoryMarshal.Write(span, in value);

    private static void WriteHost32(Span<byte> span, uint value) => MemoryMarshal.Write(span, in value);
}
