using Relay.Engine.Health;

namespace Relay.Integration.Tests.Health;

/// <summary>The wire formats the probes build and parse, without a network.</summary>
public sealed class ProbeCodecTests
{
    [Theory]
    [InlineData("HTTP/1.0 200 OK", true, 200)]
    [InlineData("HTTP/1.1 503 Service Unavailable", true, 503)]
    [InlineData("HTTP/1.1 204", true, 204)]
    [InlineData("HTTP/2 302 Found", true, 302)]
    [InlineData("SSH-2.0-OpenSSH_9.2", false, 0)]
    [InlineData("HTTP/1.0 2000 OK", false, 0)]
    [InlineData("", false, 0)]
    public void TryParseStatus_Line_StatusOrNot(string line, bool ok, int status)
    {
        Assert.Equal(ok, HttpProbe.TryParseStatus(line, out var parsed));
        if (ok)
        {
            Assert.Equal(status, parsed);
        }
    }

    [Fact]
    public void EchoRequestPacket_Built_ChecksumVerifiesAndCarriesIdAndSequence()
    {
        var packet = IcmpProbe.EchoRequestPacket(0xbeef, 513);

        Assert.Equal(8, packet[0]);
        Assert.Equal(0, packet[1]);
        // The checksum over a packet including its own checksum is zero (RFC 1071).
        Assert.Equal(0, IcmpProbe.Checksum(packet));
        Assert.Equal([0xbe, 0xef, 0x02, 0x01], packet[4..8]);
    }

    [Fact]
    public void IsReply_MatchingAndOtherReplies_OnlyTheMatchingOne()
    {
        static byte[] Reply(byte type, ushort id, ushort seq)
        {
            var ip = new byte[20 + 8];
            ip[0] = 0x45; // IPv4, 20-byte header
            ip[20] = type;
            ip[24] = (byte)(id >> 8);
            ip[25] = (byte)id;
            ip[26] = (byte)(seq >> 8);
            ip[27] = (byte)seq;
            return ip;
        }

        Assert.True(IcmpProbe.IsReply(Reply(0, 7, 9), 7, 9));
        Assert.False(IcmpProbe.IsReply(Reply(0, 8, 9), 7, 9));
        Assert.False(IcmpProbe.IsReply(Reply(0, 7, 10), 7, 9));
        Assert.False(IcmpProbe.IsReply(Reply(8, 7, 9), 7, 9));
        Assert.False(IcmpProbe.IsReply(new byte[10], 7, 9));
    }
}
