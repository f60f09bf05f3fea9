using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using Relay.Linux.Interop;

namespace Relay.Linux.Netlink;

/// <summary>One netlink message: header fields (host order) and the payload after nlmsghdr.</summary>
internal readonly ref struct NetlinkMessage
{
    public NetlinkMessage(ushort type, ushort flags, uint sequence, uint portId, ReadOnlySpan<byte> payload)
    {
        Type = type;
        Flags = flags;
        Sequence = sequence;
        PortId = portId;
        Payload = payload;
    }

    public ushort Type { get; }

    public ushort Flags { get; }

    public uint Sequence { get; }

    public uint PortId { get; }

    public ReadOnlySpan<byte> Payload { get; }

    /// <summary>The attributes after a fixed family header of <paramref name="headerLength"/> bytes (4 for nfgenmsg).</summary>
    public NetlinkAttributeReader Attributes(int headerLength)
    {
        var start = NetlinkWriter.Align(headerLength);
        if (Payload.Length < start)
        {
            throw new InvalidDataException($"netlink: message type 0x{Type:x4} has {Payload.Length} payload bytes, shorter than its {headerLength}-byte family header");
        }
        return new NetlinkAttributeReader(Payload[start..]);
    }
}

/// <summary>
/// Walks the netlink messages of a received buffer. Every length is checked against what is left,
/// so a malformed buffer ends in <see cref="InvalidDataException"/>, never an out-of-range read.
/// </summary>
internal ref struct NetlinkReader
{
    private readonly ReadOnlySpan<byte> _buffer;
    private int _offset;

    public NetlinkReader(ReadOnlySpan<byte> buffer) => _buffer = buffer;

    /// <summary>Reads the next message; false at the end of the buffer.</summary>
    public bool TryRead(out NetlinkMessage message)
    {
        var remaining = _buffer.Length - _offset;
        if (remaining == 0)
        {
            message = default;
            return false;
        }
        if (remaining < Libc.NLMSG_HDRLEN)
        {
            throw new InvalidDataException($"netlink: {remaining} trailing bytes at offset {_offset} are too short for a message header");
        }
        var header = _buffer.Slice(_offset, Libc.NLMSG_HDRLEN);
        var length = MemoryMarshal.Read<uint>(header);
        if (length < Libc.NLMSG_HDRLEN || length > (uint)remaining)
        {
            throw new InvalidDataException($"netlink: message length {length} at offset {_offset} is outside 16..{remaining}");
        }
        message = new NetlinkMessage(
            MemoryMarshal.Read<ushort>(header[4..]),
            MemoryMarshal.Read<ushort>(header[6..]),
            MemoryMarshal.Read<uint>(header[8..]),
            MemoryMarshal.Read<uint>(header[12..]),
            _buffer.Slice(_offset + Libc.NLMSG_HDRLEN, (int)length - Libc.NLMSG_HDRLEN));
        // The last message of a datagram may lack its alignment padding.
        _offset += Math.Min(NetlinkWriter.Align((int)length), remaining);
        return true;
    }
}

/// <summary>One attribute: its type without the NLA_F_NESTED / NLA_F_NET_BYTEORDER bits, and its payload.</summary>
internal readonly ref struct NetlinkAttribute
{
    public NetlinkAttribute(ushort rawType, ReadOnlySpan<byte> payload)
    {
        Type = (ushort)(rawType & Libc.NLA_TYPE_MASK);
        IsNested = (rawType & Libc.NLA_F_NESTED) != 0;
        Payload = payload;
    }

    public ushort Type { get; }

    public bool IsNested { get; }

    public ReadOnlySpan<byte> Payload { get; }

    public byte GetU8() => Exactly(1)[0];

    public ushort GetU16BigEndian() => BinaryPrimitives.ReadUInt16BigEndian(Exactly(2));

    public uint GetU32BigEndian() => BinaryPrimitives.ReadUInt32BigEndian(Exactly(4));

    /// <summary>A NUL-terminated string (the terminator and anything after it dropped).</summary>
    public string GetString()
    {
        var end = Payload.IndexOf((byte)0);
        return Encoding.UTF8.GetString(end >= 0 ? Payload[..end] : Payload);
    }

    /// <summary>The attributes inside this one.</summary>
    public NetlinkAttributeReader GetNested() => new(Payload);

    /// <summary>The payload, checked to be exactly <paramref name="length"/> bytes (an address of the family's size, say).</summary>
    public ReadOnlySpan<byte> Exactly(int length)
        => Payload.Length == length
            ? Payload
            : throw new InvalidDataException($"netlink: attribute type {Type} has {Payload.Length} payload bytes, expected {length}");
}

/// <summary>Walks a run of attributes, bounds-checked like <see cref="NetlinkReader"/>.</summary>
internal ref struct NetlinkAttributeReader
{
    private readonly ReadOnlySpan<byte> _buffer;
    private int _offset;

    public NetlinkAttributeReader(ReadOnlySpan<byte> buffer) => _buffer = buffer;

    /// <summary>Reads the next attribute; false at the end of the run.</summary>
    public bool TryRead(out NetlinkAttribute attribute)
    {
        var remaining = _buffer.Length - _offset;
        if (remaining == 0)
        {
            attribute = default;
            return false;
        }
        if (remaining < Libc.NLA_HDRLEN)
        {
            throw new InvalidDataException($"netlink: {remaining} trailing bytes at attribute offset {_offset} are too short for an attribute header");
        }
        var length = MemoryMarshal.Read<ushort>(_buffer[_offset..]);
        if (length < Libc.NLA_HDRLEN || length > remaining)
        {
            throw new InvalidDataException($"netlink: attribute length {length} at offset {_offset} is outside 4..{remaining}");
        }
        attribute = new NetlinkAttribute(
            MemoryMarshal.Read<ushort>(_buffer[(_offset + 2)..]),
            _buffer.Slice(_offset + Libc.NLA_HDRLEN, length - Libc.NLA_HDRLEN));
        _offset += Math.Min(NetlinkWriter.Align(length), remaining);
        return true;
    }
}

/// <summary>Receives each data message of a dump (message types at or above NLMSG_MIN_TYPE).</summary>
internal delegate void NetlinkMessageHandler(in NetlinkMessage message);

/// <summary>The reply-side rules shared by live dumps and captured buffers.</summary>
internal static class NetlinkReplies
{
    /// <summary>The smallest errno the kernel reports (MAX_ERRNO in linux/err.h).</summary>
    private const int MaxErrno = 4095;

    /// <summary>
    /// Hands the data messages of <paramref name="datagram"/> to <paramref name="onMessage"/> until NLMSG_DONE.
    /// Messages not for <paramref name="sequence"/>/<paramref name="portId"/> (when given) are left out: they are
    /// late replies to an earlier, abandoned request. An error reply, a failed NLMSG_DONE or NLMSG_OVERRUN throws
    /// <see cref="SystemCallException"/>; malformed bytes throw <see cref="InvalidDataException"/>.
    /// </summary>
    /// <returns>True when NLMSG_DONE was seen (the dump is complete).</returns>
    public static bool DispatchDump(ReadOnlySpan<byte> datagram, string call, NetlinkMessageHandler onMessage, uint? sequence = null, uint? portId = null)
    {
        var reader = new NetlinkReader(datagram);
        while (reader.TryRead(out var message))
        {
            if ((sequence is { } s && message.Sequence != s) || (portId is { } p && message.PortId != p))
            {
                continue;
            }
            switch (message.Type)
            {
                case Libc.NLMSG_DONE:
                    // Since 4.x a dump that fails midway reports it here, as a negative errno after the header.
                    if (message.Payload.Length >= 4)
                    {
                        var status = MemoryMarshal.Read<int>(message.Payload);
                        if (status < 0)
                        {
                            throw new SystemCallException(call, CheckedErrno(status));
                        }
                    }
                    return true;
                case Libc.NLMSG_ERROR:
                    var (errno, detail) = ParseError(message);
                    if (errno != 0)
                    {
                        throw new SystemCallException(WithDetail(call, detail), errno);
                    }
                    break;
                case Libc.NLMSG_OVERRUN:
                    throw new SystemCallException(call + " (NLMSG_OVERRUN: data lost)", (int)Errno.ENOBUFS);
                case < 0x10:
                    // NLMSG_NOOP and reserved control types carry nothing for us.
                    break;
                default:
                    onMessage(message);
                    break;
            }
        }
        return false;
    }

    /// <summary>
    /// The errno (positive, 0 for an ack) of an NLMSG_ERROR and the kernel's extended-ack text if it sent one.
    /// </summary>
    public static (int Errno, string? Detail) ParseError(in NetlinkMessage message)
    {
        var payload = message.Payload;
        if (payload.Length < 4)
        {
            throw new InvalidDataException($"netlink: NLMSG_ERROR with {payload.Length} payload bytes");
        }
        var errno = CheckedErrno(MemoryMarshal.Read<int>(payload));
        return (errno, ExtendedAck(message));
    }

    /// <summary>"call (kernel: detail)" when the kernel explained itself.</summary>
    public static string WithDetail(string call, string? detail) => detail is null ? call : $"{call} (kernel: {detail})";

    private static int CheckedErrno(int status)
        => status is <= 0 and >= -MaxErrno
            ? -status
            : throw new InvalidDataException($"netlink: error status {status} is not a negative errno");

    private static string? ExtendedAck(in NetlinkMessage message)
    {
        if ((message.Flags & Libc.NLM_F_ACK_TLVS) == 0 || message.Payload.Length < 4 + Libc.NLMSG_HDRLEN)
        {
            return null;
        }
        var echoed = (message.Flags & Libc.NLM_F_CAPPED) != 0
            ? Libc.NLMSG_HDRLEN
            : (long)NetlinkWriter.Align((int)Math.Min(MemoryMarshal.Read<uint>(message.Payload[4..]), int.MaxValue - 8));
        var start = 4 + echoed;
        if (start > message.Payload.Length)
        {
            return null;
        }
        try
        {
            var attributes = new NetlinkAttributeReader(message.Payload[(int)start..]);
            while (attributes.TryRead(out var attribute))
            {
                if (attribute.Type == Libc.NLMSGERR_ATTR_MSG)
                {
                    return attribute.GetString();
                }
            }
        }
        catch (InvalidDataException)
        {
            // The text is only a diagnostic: a damaged one must not hide the errno itself.
        }
        return null;
    }
}
