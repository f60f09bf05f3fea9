using System.Net;
using System.Net.Sockets;
using Relay.Core.Addressing;

namespace Relay.Core.Tests.Addressing;

public class IpMathTests
{
    [Theory]
    [InlineData("10.88.0.0/16")]
    [InlineData("10.88.0.0/24")]
    [InlineData("10.88.0.7/32")]
    [InlineData("0.0.0.0/0")]
    [InlineData("fd00::/64")]
    [InlineData("fd00::1/128")]
    [InlineData("::/0")]
    public void TryParsePrefix_Valid_ReturnsPrefix(string text)
    {
        Assert.True(IpMath.TryParsePrefix(text, out var prefix, out var reason), reason);
        Assert.Equal(IPNetwork.Parse(text), prefix);
        Assert.Equal("", reason);
    }

    [Theory]
    [InlineData("10.88.0.1/16", "did you mean 10.88.0.0/16?")]
    [InlineData("10.88.3.4/22", "did you mean 10.88.0.0/22?")]
    [InlineData("10.88.0.1/0", "did you mean 0.0.0.0/0?")]
    [InlineData("fd00::1/64", "did you mean fd00::/64?")]
    [InlineData("fd00:0:0:1:2::/63", "did you mean fd00::/63?")]
    public void TryParsePrefix_HostBitsSet_SuggestsMaskedPrefix(string text, string suggestion)
    {
        Assert.False(IpMath.TryParsePrefix(text, out _, out var reason));
        Assert.Contains("host bits set", reason);
        Assert.Contains(suggestion, reason);
    }

    [Fact]
    public void TryParsePrefix_SignedOrSpacedLength_SaysNotAPrefix()
    {
        foreach (var text in new[] { "10.88.0.0/+16", "10.88.0.0/ 16" })
        {
            Assert.False(IpMath.TryParsePrefix(text, out _, out var reason));
            Assert.DoesNotContain("host bits", reason);
            Assert.Contains("is not a prefix", reason);
        }
    }

    [Theory]
    [InlineData("10.88.0.0/33", "between 0 and 32")]
    [InlineData("10.88.0.0/-1", "between 0 and 32")]
    [InlineData("fd00::/129", "between 0 and 128")]
    public void TryParsePrefix_LengthOutOfRange_SaysRange(string text, string reasonMentions)
    {
        Assert.False(IpMath.TryParsePrefix(text, out _, out var reason));
        Assert.Contains(reasonMentions, reason);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("  ")]
    [InlineData("10.88.0.0")]
    [InlineData("10.88.0.0/")]
    [InlineData("10.88.0.0/x")]
    [InlineData("nope/16")]
    [InlineData("/16")]
    public void TryParsePrefix_NotAPrefix_SaysExpectedForm(string? text)
    {
        Assert.False(IpMath.TryParsePrefix(text, out _, out var reason));
        Assert.Contains("is not a prefix", reason);
        Assert.Contains("ADDRESS/LENGTH", reason);
    }

    [Theory]
    [InlineData("0.0.0.0", 0UL)]
    [InlineData("0.0.0.1", 1UL)]
    [InlineData("10.88.1.2", 0x0A580102UL)]
    [InlineData("255.255.255.255", 0xFFFFFFFFUL)]
    [InlineData("::1", 1UL)]
    public void ToInteger_Address_IsHostOrderValue(string address, ulong expected)
    {
        Assert.Equal((UInt128)expected, IpMath.ToInteger(IPAddress.Parse(address)));
    }

    [Fact]
    public void ToInteger_Ipv6_UsesAll128Bits()
    {
        var value = IpMath.ToInteger(IPAddress.Parse("8000::1"));

        Assert.Equal((UInt128.One << 127) + 1, value);
    }

    [Theory]
    [InlineData("10.88.1.2")]
    [InlineData("255.255.255.255")]
    [InlineData("fd00::abcd:1")]
    [InlineData("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")]
    public void FromInteger_RoundTripsToInteger(string address)
    {
        var ip = IPAddress.Parse(address);

        Assert.Equal(ip, IpMath.FromInteger(IpMath.ToInteger(ip), ip.AddressFamily));
    }

    [Fact]
    public void FromInteger_Ipv4_UsesLow32Bits()
    {
        Assert.Equal(IPAddress.Parse("10.0.0.5"), IpMath.FromInteger(0x0A000005, AddressFamily.InterNetwork));
    }

    [Theory]
    [InlineData("10.0.0.0/24", 256UL)]
    [InlineData("10.0.0.0/32", 1UL)]
    [InlineData("0.0.0.0/0", 4294967296UL)]
    [InlineData("fd00::/120", 256UL)]
    public void Size_Prefix_IsTwoToTheHostBits(string prefix, ulong expected)
    {
        Assert.Equal((UInt128)expected, IpMath.Size(IPNetwork.Parse(prefix)));
    }

    [Fact]
    public void Size_Ipv6Slash64_IsTwoToThe64()
    {
        Assert.Equal(UInt128.One << 64, IpMath.Size(IPNetwork.Parse("fd00::/64")));
    }

    [Fact]
    public void Size_Ipv6Slash0_Saturates()
    {
        Assert.Equal(UInt128.MaxValue, IpMath.Size(IPNetwork.Parse("::/0")));
    }
}
