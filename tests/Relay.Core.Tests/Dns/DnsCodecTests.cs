using Relay.Core.Dns;

namespace Relay.Core.Tests.Dns;

public class DnsCodecTests
{
    private static byte[] Header(ushort qd = 1) => [0, 1, 0, 0, 0, (byte)qd, 0, 0, 0, 0, 0, 0];

    [Fact]
    public void TryReadName_CompressedName_Decompressed()
    {
        // "b.com" at 12, then "x" + pointer to "com" at 14.
        byte[] m = [.. Header(), 1, (byte)'b', 3, (byte)'c', (byte)'o', (byte)'m', 0, 1, (byte)'x', 0xC0, 14];
        var position = 19;
        var name = new byte[255];

        Assert.True(DnsReader.TryReadName(m, ref position, name, out var length));

        Assert.Equal("x.com", DnsWireName.ToText(name.AsSpan(0, length)));
        Assert.Equal(m.Length, position);
    }

    [Theory]
    [InlineData(12)] // points at itself
    [InlineData(14)] // points forwards
    public void TryReadName_PointerNotBackwards_False(byte target)
    {
        byte[] m = [.. Header(), 0xC0, target, 0, 0];
        var position = 12;

        Assert.False(DnsReader.TryReadName(m, ref position, new byte[255], out _));
    }

    [Fact]
    public void TryReadName_MutualPointerLoop_False()
    {
        // 12: "a" then pointer to 15; 15: pointer to 12. The second points backwards, the first forwards.
        byte[] m = [.. Header(), 1, (byte)'a', 0xC0, 15, 0xC0, 12];
        var position = 15;

        Assert.False(DnsReader.TryReadName(m, ref position, new byte[255], out _));
    }

    [Theory]
    [InlineData(DnsReader.MaxPointerJumps, true)]
    [InlineData(DnsReader.MaxPointerJumps + 1, false)]
    public void TryReadName_PointerChain_LimitedJumps(int jumps, bool ok)
    {
        // Root at 12, then a chain of pointers, each to the one before.
        var m = new List<byte>(Header()) { 0 };
        for (var i = 0; i < jumps; i++)
        {
            var target = i == 0 ? 12 : 13 + (i - 1) * 2;
            m.Add((byte)(0xC0 | (target >> 8)));
            m.Add((byte)target);
        }
        var position = m.Count - 2;

        Assert.Equal(ok, DnsReader.TryReadName(m.ToArray(), ref position, new byte[255], out _));
    }

    [Theory]
    [InlineData(0x40)]
    [InlineData(0x80)]
    public void TryReadName_ReservedLabelType_False(byte lengthByte)
    {
        byte[] m = [.. Header(), lengthByte, .. new byte[lengthByte], 0];
        var position = 12;

        Assert.False(DnsReader.TryReadName(m, ref position, new byte[255], out _));
    }

    [Theory]
    [InlineData(255, true)]
    [InlineData(256, false)]
    public void TryReadName_TotalLength_LimitedTo255(int total, bool ok)
    {
        // Labels of 63 plus a last one, so the wire form (final zero byte included) is `total` octets.
        var m = new List<byte>(Header());
        var left = total - 1;
        while (left > 0)
        {
            var label = Math.Min(63, left - 1);
            m.Add((byte)label);
            m.AddRange(Enumerable.Repeat((byte)'a', label));
            left -= label + 1;
        }
        m.Add(0);
        var position = 12;

        Assert.Equal(ok, DnsReader.TryReadName(m.ToArray(), ref position, new byte[255], out var length));
        Assert.Equal(ok ? total : 0, length);
    }

    [Fact]
    public void TryReadName_LengthBeyondMessage_False()
    {
        byte[] m = [.. Header(), 5, (byte)'a'];
        var position = 12;

        Assert.False(DnsReader.TryReadName(m, ref position, new byte[255], out _));
    }

    [Fact]
    public void TryReadName_DestinationTooSmall_False()
    {
        byte[] m = [.. Header(), 3, (byte)'a', (byte)'b', (byte)'c', 0];
        var position = 12;

        Assert.False(DnsReader.TryReadName(m, ref position, new byte[4], out _));
    }

    [Fact]
    public void TryReadRecord_DataLengthBeyondMessage_False()
    {
        byte[] m = [0, 0, 1, 0, 1, 0, 0, 0, 5, 0, 10, 1, 2, 3];
        var r = new DnsReader(m);

        Assert.False(r.TryReadRecord(new byte[255], out _, out _, out _, out _, out _, out _));
    }

    [Fact]
    public void TrySkipRecord_WholeRecord_Skipped()
    {
        byte[] m = [0, 0, 1, 0, 1, 0, 0, 0, 5, 0, 2, 1, 2, 9];
        var r = new DnsReader(m);

        Assert.True(r.TrySkipRecord());
        Assert.Equal(13, r.Position);
    }

    [Fact]
    public void Writer_WriteBeyondLimit_OverflowsAndStopsWriting()
    {
        var buffer = new byte[32];
        var w = new DnsWriter(buffer, 14);

        w.WriteHeader(new DnsHeader(1, 0, 0, 0, 0, 0));
        w.WriteUInt32(7);
        w.WriteUInt16(1);

        Assert.True(w.Overflowed);
        Assert.Equal(12, w.Position);
        Assert.All(buffer[12..], b => Assert.Equal(0, b));
    }

    [Fact]
    public void Writer_Rewind_ClearsOverflow()
    {
        var w = new DnsWriter(new byte[13]);
        w.WriteHeader(default);
        w.WriteUInt16(1);

        w.Rewind(12);
        w.WriteBytes([9]);

        Assert.False(w.Overflowed);
        Assert.Equal(13, w.Position);
    }

    [Fact]
    public void Writer_PatchCounts_RewritesHeader()
    {
        var w = new DnsWriter(new byte[12]);
        w.WriteHeader(new DnsHeader(5, 0, 0, 0, 0, 0));

        w.PatchCounts(1, 2, 3, 4);

        var r = new DnsReader(w.Written);
        Assert.True(r.TryReadHeader(out var header));
        Assert.Equal(new DnsHeader(5, 0, 1, 2, 3, 4), header);
    }

    [Fact]
    public void Writer_Opt_Rfc6891Layout()
    {
        var w = new DnsWriter(new byte[11]);

        w.WriteOpt(1232, extendedRcode: 1, version: 0, dnssecOk: true);

        Assert.Equal([0, 0, 41, 0x04, 0xD0, 1, 0, 0x80, 0, 0, 0], w.Written.ToArray());
    }

    [Fact]
    public void Writer_SrvRecord_PointsAtTarget()
    {
        var w = new DnsWriter(new byte[64]);

        w.WriteSrvRecord(12, 5, 0, 0, 80, 20);

        Assert.Equal([0xC0, 12, 0, 33, 0, 1, 0, 0, 0, 5, 0, 8, 0, 0, 0, 0, 0, 80, 0xC0, 20], w.Written.ToArray());
    }

    [Theory]
    [InlineData("b.com", new byte[] { 1, (byte)'b', 3, (byte)'c', (byte)'o', (byte)'m', 0 })]
    [InlineData("B.com.", new byte[] { 1, (byte)'B', 3, (byte)'c', (byte)'o', (byte)'m', 0 })]
    [InlineData(".", new byte[] { 0 })]
    [InlineData("", new byte[] { 0 })]
    public void FromText_Names_WireForm(string text, byte[] wire)
    {
        Assert.Equal(wire, DnsWireName.FromText(text));
    }

    [Theory]
    [InlineData("a..b")]
    [InlineData("é.com")]
    public void FromText_Invalid_Throws(string text)
    {
        Assert.Throws<ArgumentException>(() => DnsWireName.FromText(text));
    }

    [Fact]
    public void FromText_LabelOf64_Throws()
    {
        Assert.Throws<ArgumentException>(() => DnsWireName.FromText(new string('a', 64) + ".com"));
    }

    [Fact]
    public void ToText_SpecialBytes_Escaped()
    {
        byte[] wire = [3, (byte)'a', (byte)'.', 0x01, 1, (byte)'\\', 0];

        Assert.Equal("a\\.\\001.\\\\", DnsWireName.ToText(wire));
    }

    [Fact]
    public void ToLower_UpperCaseLetters_LowerCasedOthersKept()
    {
        byte[] wire = [3, (byte)'A', (byte)'z', (byte)'[', 2, (byte)'_', (byte)'Q', 0];
        var lower = new byte[wire.Length];

        DnsWireName.ToLower(wire, lower);

        Assert.Equal([3, (byte)'a', (byte)'z', (byte)'[', 2, (byte)'_', (byte)'q', 0], lower);
    }
}
