using System.Net;
using Relay.Core.Dns;
using static Relay.Core.Tests.Dns.DnsTestKit;

namespace Relay.Core.Tests.Dns;

public class NameTableTests
{
    [Fact]
    public void Build_Services_CountsServicesOnly()
    {
        Assert.Equal(4, Names.Count);
        Assert.Equal(0, NameTable.Empty.Count);
    }

    [Fact]
    public void TryGetService_AnyCaseTrailingDot_Found()
    {
        Assert.True(Names.TryGetService("WEB.relay.internal.", out var service));
        Assert.Same(Web, service);
    }

    [Theory]
    [InlineData("relay.internal")] // a name above a service
    [InlineData("1.0.96.10.in-addr.arpa")] // a reverse name
    [InlineData("a..b")]
    public void TryGetService_NotAService_False(string name)
    {
        Assert.False(Names.TryGetService(name, out _));
    }

    [Fact]
    public void Build_NonCanonicalName_Normalized()
    {
        var table = NameTable.Build([Web with { Name = "Web.Relay.Internal." }]);

        Assert.True(table.TryGetService("web.relay.internal", out _));
    }

    [Fact]
    public void Build_SameNameTwice_Throws()
    {
        var e = Assert.Throws<ArgumentException>(() => NameTable.Build([Web, B with { Name = "WEB.relay.internal" }]));
        Assert.Contains("twice", e.Message);
    }

    [Fact]
    public void Build_InvalidName_Throws()
    {
        Assert.Throws<ArgumentException>(() => NameTable.Build([Web with { Name = "a_b.com" }]));
    }

    [Fact]
    public void Build_Vip4NotIpv4_Throws()
    {
        var e = Assert.Throws<ArgumentException>(() => NameTable.Build([Web with { Vip4 = WebV6 }]));
        Assert.Contains("Vip4", e.Message);
    }

    [Fact]
    public void Build_Vip6NotIpv6_Throws()
    {
        var e = Assert.Throws<ArgumentException>(() => NameTable.Build([Web with { Vip6 = WebV4 }]));
        Assert.Contains("Vip6", e.Message);
    }

    [Fact]
    public void Build_SharedAddress_ThrowsNamingBoth()
    {
        var e = Assert.Throws<ArgumentException>(() => NameTable.Build([Web, B with { Vip4 = WebV4 }]));
        Assert.Contains("web.relay.internal", e.Message);
        Assert.Contains("b.com", e.Message);
    }

    [Theory]
    [InlineData("10.96.0.1", "1.0.96.10.in-addr.arpa")]
    [InlineData("2001:db8::567:89ab", "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa")]
    public void ReverseName_Address_Rfc1035And3596Form(string address, string expected)
    {
        Assert.Equal(expected, NameTable.ReverseName(IPAddress.Parse(address)));
    }
}
