using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace Relay.Engine.Health;

/// <summary>
/// Healthy when the instance's IPv4 address answers an ICMP echo request from the orchestrator in
/// time. Each check uses its own raw socket, connected to the instance (so the kernel hands it only
/// that address's ICMP) and filtered to echo replies; the reply must carry this probe's identifier
/// and the check's sequence number, so concurrent probes in one process never take each other's
/// replies.
/// </summary>
internal sealed class IcmpProbe(ProbeTarget target) : BlockingProbe
{
    // Linux raw socket option (linux/icmp.h): a bit mask of ICMP types the socket does NOT receive.
    private const int SolRaw = 255;
    private const int IcmpFilter = 1;
    private const byte EchoReply = 0;
    private const byte EchoRequest = 8;
    private const int PayloadBytes = 16;

    // Identifiers are unique within the process (65536 probes before one repeats) and start at a
    // random point, so two Relay processes sharing a namespace are unlikely to collide either.
    private static int s_nextId = Random.Shared.Next(0x10000);

    private readonly ushort _id = (ushort)Interlocked.Increment(ref s_nextId);
    private int _sequence;

    /// <inheritdoc />
    protected override string? Run(Deadline deadline, CancellationToken ct)
    {
        var sequence = (ushort)Interlocked.Increment(ref _sequence);
        using var socket = ProbeSockets.Create(target.Orchestrator, () => Open(target.Address4), deadline, ct);
        if (socket is null)
        {
            return ProbeSockets.TimeoutReason(deadline);
        }
        try
        {
            socket.Send(EchoRequestPacket(_id, sequence));
            var buffer = new byte[1500];
            while (ProbeSockets.WaitFor(socket, SelectMode.SelectRead, deadline, ct))
            {
                int n;
                try
                {
                    n = socket.Receive(buffer);
                }
                catch (SocketException e) when (e.SocketErrorCode == SocketError.WouldBlock)
                {
                    continue;
                }
                if (IsReply(buffer.AsSpan(0, n), _id, sequence))
                {
                    return null;
                }
            }
            return ProbeSockets.TimeoutReason(deadline);
        }
        catch (SocketException e)
        {
            return ProbeSockets.Describe(e.SocketErrorCode);
        }
    }

    private static Socket Open(IPAddress address)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Raw, ProtocolType.Icmp) { Blocking = false };
        try
        {
            socket.SetRawSocketOption(SolRaw, IcmpFilter, BitConverter.GetBytes(~(1u << EchoReply)));
            socket.Connect(new IPEndPoint(address, 0));
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>An echo request: type, code, checksum, identifier, sequence, then a payload.</summary>
    internal static byte[] EchoRequestPacket(ushort id, ushort sequence)
    {
        var packet = new byte[8 + PayloadBytes];
        packet[0] = EchoRequest;
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(4), id);
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(6), sequence);
        "relay-health"u8.CopyTo(packet.AsSpan(8));
        // A raw IPv4 socket sends the ICMP message as given: the checksum is ours to compute.
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(2), Checksum(packet));
        return packet;
    }

    /// <summary>True when <paramref name="packet"/> (an IPv4 packet, as a raw socket receives it) is the echo reply to (id, sequence).</summary>
    internal static bool IsReply(ReadOnlySpan<byte> packet, ushort id, ushort sequence)
    {
        if (packet.Length < 20)
        {
            return false;
        }
        var icmp = packet[((packet[0] & 0x0f) * 4)..];
        return icmp.Length >= 8
            && icmp[0] == EchoReply
            && BinaryPrimitives.ReadUInt16BigEndian(icmp[4..]) == id
            && BinaryPrimitives.ReadUInt16BigEndian(icmp[6..]) == sequence;
    }

    /// <summary>The Internet checksum (RFC 1071) of <paramref name="data"/>.</summary>
    internal static ushort Checksum(ReadOnlySpan<byte> data)
    {
        uint sum = 0;
        var i = 0;
        for (; i + 1 < data.Length; i += 2)
        {
            sum += BinaryPrimitives.ReadUInt16BigEndian(data[i..]);
        }
        if (i < data.Length)
        {
            sum += (uint)data[i] << 8;
        }
        while (sum > 0xffff)
        {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        return (ushort)~sum;
    }
}
