using System.Net;
using Relay.Core.Conntrack;

namespace Relay.Core.Tests.Conntrack;

public class StaleFlowsTests
{
    private static readonly IPAddress Client = IPAddress.Parse("10.88.0.9");
    private static readonly IPAddress Vip4 = IPAddress.Parse("10.99.0.1");
    private static readonly IPAddress Vip6 = IPAddress.Parse("fd99::1");
    private static readonly IPAddress OtherVip = IPAddress.Parse("10.99.0.2");
    private static readonly IPAddress Old4 = IPAddress.Parse("10.88.0.2");
    private static readonly IPAddress Old6 = IPAddress.Parse("fd88::2");
    private static readonly IPAddress New4 = IPAddress.Parse("10.88.0.3");

    private static readonly StaleFlows Stale = new([Vip4, Vip6], [Old4, Old6]);

    /// <summary>An entry for a flow from the client to <paramref name="destination"/>, translated to <paramref name="instance"/>.</summary>
    private static ConntrackEntry Flow(IPAddress destination, IPAddress instance, byte protocol, TcpConntrackState? state = null, IPAddress? client = null)
    {
        var source = client ?? Client;
        return new ConntrackEntry(
            new ConntrackTuple(source, destination, protocol, 40000, 80),
            new ConntrackTuple(instance, source, protocol, 80, 40000),
            state);
    }

    [Fact]
    public void Matches_VipToOldInstance_True()
    {
        Assert.True(Stale.Matches(Flow(Vip4, Old4, IpProtocols.Tcp, TcpConntrackState.Established)));
        Assert.True(Stale.Matches(Flow(Vip6, Old6, IpProtocols.Udp, client: IPAddress.Parse("fd88::9"))));
    }

    [Fact]
    public void Matches_VipToNewInstance_False()
    {
        Assert.False(Stale.Matches(Flow(Vip4, New4, IpProtocols.Tcp, TcpConntrackState.Established)));
    }

    [Fact]
    public void Matches_OtherServiceVipToOldInstance_False()
    {
        // The old instance may also serve another service: that service's flows are not touched.
        Assert.False(Stale.Matches(Flow(OtherVip, Old4, IpProtocols.Tcp, TcpConntrackState.Established)));
    }

    [Fact]
    public void Matches_DirectFlowToOldInstance_False()
    {
        // Not translated: original destination is the instance itself.
        Assert.False(Stale.Matches(Flow(Old4, Old4, IpProtocols.Tcp, TcpConntrackState.Established)));
    }

    [Fact]
    public void Matches_OldInstanceAsOriginalDestinationOnly_False()
    {
        // Reply source is what counts, not the original destination.
        var entry = new ConntrackEntry(
            new ConntrackTuple(Old4, Vip4, IpProtocols.Udp, 5353, 53),
            new ConntrackTuple(New4, Old4, IpProtocols.Udp, 53, 5353));

        Assert.False(Stale.Matches(entry));
    }

    [Fact]
    public void IsStatelessMatch_UdpAndIcmpToOldInstance_True()
    {
        Assert.True(Stale.IsStatelessMatch(Flow(Vip4, Old4, IpProtocols.Udp)));
        var ping = new ConntrackEntry(
            new ConntrackTuple(Client, Vip4, IpProtocols.Icmp, IcmpId: 7, IcmpType: 8),
            new ConntrackTuple(Old4, Client, IpProtocols.Icmp, IcmpId: 7, IcmpType: 0));
        Assert.True(Stale.IsStatelessMatch(ping));
    }

    [Fact]
    public void IsStatelessMatch_Tcp_False()
    {
        Assert.False(Stale.IsStatelessMatch(Flow(Vip4, Old4, IpProtocols.Tcp, TcpConntrackState.Established)));
    }

    [Fact]
    public void IsStatelessMatch_UdpToNewInstance_False()
    {
        Assert.False(Stale.IsStatelessMatch(Flow(Vip4, New4, IpProtocols.Udp)));
    }

    [Theory]
    [InlineData(TcpConntrackState.SynSent)]
    [InlineData(TcpConntrackState.SynRecv)]
    [InlineData(TcpConntrackState.Established)]
    [InlineData(TcpConntrackState.FinWait)]
    [InlineData(TcpConntrackState.CloseWait)]
    [InlineData(TcpConntrackState.LastAck)]
    [InlineData(TcpConntrackState.SynSent2)]
    [InlineData(TcpConntrackState.None)]
    public void IsDrainingTcp_LiveState_True(TcpConntrackState state)
    {
        Assert.True(Stale.IsDrainingTcp(Flow(Vip4, Old4, IpProtocols.Tcp, state)));
    }

    [Theory]
    [InlineData(TcpConntrackState.TimeWait)]
    [InlineData(TcpConntrackState.Close)]
    public void IsDrainingTcp_FinishedState_FalseButStillTcpMatch(TcpConntrackState state)
    {
        var entry = Flow(Vip4, Old4, IpProtocols.Tcp, state);

        Assert.False(Stale.IsDrainingTcp(entry));
        Assert.True(Stale.IsTcpMatch(entry));
        Assert.False(Stale.IsStatelessMatch(entry));
    }

    [Fact]
    public void IsDrainingTcp_UnknownState_True()
    {
        Assert.True(Stale.IsDrainingTcp(Flow(Vip4, Old4, IpProtocols.Tcp, state: null)));
    }

    [Fact]
    public void IsDrainingTcp_NotStaleOrNotTcp_False()
    {
        Assert.False(Stale.IsDrainingTcp(Flow(Vip4, New4, IpProtocols.Tcp, TcpConntrackState.Established)));
        Assert.False(Stale.IsDrainingTcp(Flow(OtherVip, Old4, IpProtocols.Tcp, TcpConntrackState.Established)));
        Assert.False(Stale.IsDrainingTcp(Flow(Vip4, Old4, IpProtocols.Udp)));
    }

    [Fact]
    public void IsTcpMatch_OnlyTcpOfOldInstances()
    {
        Assert.True(Stale.IsTcpMatch(Flow(Vip4, Old4, IpProtocols.Tcp, TcpConntrackState.Established)));
        Assert.False(Stale.IsTcpMatch(Flow(Vip4, Old4, IpProtocols.Udp)));
        Assert.False(Stale.IsTcpMatch(Flow(Vip4, New4, IpProtocols.Tcp, TcpConntrackState.Established)));
    }

    [Fact]
    public void Matches_NoOldInstances_NeverMatches()
    {
        var none = new StaleFlows([Vip4], []);

        Assert.False(none.Matches(Flow(Vip4, Old4, IpProtocols.Tcp, TcpConntrackState.Established)));
    }

    [Fact]
    public void ToString_Entries_DescribeFlow()
    {
        Assert.Equal("tcp 10.88.0.9:40000 -> 10.99.0.1:80 (reply from 10.88.0.2, Established)",
            Flow(Vip4, Old4, IpProtocols.Tcp, TcpConntrackState.Established).ToString());
        Assert.Equal("icmp 10.88.0.9 -> 10.99.0.1 id=7",
            new ConntrackTuple(Client, Vip4, IpProtocols.Icmp, IcmpId: 7).ToString());
        Assert.Equal("proto-47", IpProtocols.Name(47));
    }
}
