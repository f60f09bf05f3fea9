using Relay.Core.Dns;
using Relay.Core.Model;
using static Relay.Core.Tests.Dns.DnsTestKit;

namespace Relay.Core.Tests.Dns;

/// <summary>
/// Service answers stay far below 512 bytes whatever the number of port mappings (one SRV per
/// <c>_PORT._PROTO</c> name, at most two addresses), so the large response here is an NXDOMAIN
/// whose question and SOA names are long: 672 bytes.
/// </summary>
public class DnsTruncationTests
{
    private static readonly string LongLabel = new('l', 63);
    private static readonly string LongName = $"{LongLabel}.{LongLabel}.{LongLabel}.relay.internal"; // 208 octets on the wire

    private static readonly DnsOptions LongSoa = Options with
    {
        NameServer = $"ns.{LongLabel}.{LongLabel}.{LongLabel}.example",
        SoaHostmaster = $"hostmaster.{LongLabel}.{LongLabel}.{LongLabel}.example",
    };

    [Fact]
    public void Respond_ServiceWith500PortMappings_AnswersStaySmall()
    {
        var ports = Enumerable.Range(1, 500).Select(p => new PortMapping(TransportProtocol.Tcp, p, 8000 + p)).ToArray();
        var names = NameTable.Build([Web with { Ports = ports }]);

        var (srv, srvMessage) = Ask(Query("_499._tcp.web.relay.internal", DnsRecordType.SRV), names: names);
        var (any, _) = Ask(Query("web.relay.internal", DnsRecordType.ANY), names: names);

        Assert.Single(srvMessage!.Answers);
        Assert.False(srv.Truncated);
        Assert.True(srv.Length < 200);
        Assert.False(any.Truncated);
    }

    [Fact]
    public void Respond_LargeAnswer_IsOver512WhenWhole()
    {
        var (result, _) = Ask(Query(LongName, DnsRecordType.A), overTcp: true, options: LongSoa);

        Assert.Equal(672, result.Length);
    }

    [Fact]
    public void Respond_LargeAnswerOverUdpWithoutEdns_TruncatedToHeaderAndQuestion()
    {
        var (result, m) = Ask(Query(LongName, DnsRecordType.A), options: LongSoa);

        Assert.True(result.Truncated);
        Assert.True(result.Length <= 512);
        Assert.True(m!.Header.Has(DnsHeaderFlags.Truncated));
        Assert.Equal(DnsResponseCode.NXDomain, result.Rcode);
        Assert.Equal(DnsResponseCode.NXDomain, m.HeaderRcode);
        Assert.Equal(LongName, m.QuestionName);
        Assert.Empty(m.Answers);
        Assert.Empty(m.Authority);
        Assert.Empty(m.Additional);
    }

    [Fact]
    public void Respond_LargeAnswerOverUdpWithEdns_FitsWhole()
    {
        var (result, m) = Ask(Query(LongName, DnsRecordType.A, edns: true, ednsSize: 4096), options: LongSoa);

        Assert.False(result.Truncated);
        Assert.True(result.Length is > 512 and <= 1232);
        Assert.Single(m!.Authority);
        Assert.NotNull(m.Opt);
    }

    [Fact]
    public void Respond_LargeAnswerClientEdnsSize512_TruncatedKeepingOpt()
    {
        var (result, m) = Ask(Query(LongName, DnsRecordType.A, edns: true, ednsSize: 512), options: LongSoa);

        Assert.True(result.Truncated);
        Assert.Empty(m!.Authority);
        Assert.Equal((ushort)1232, m.Opt!.Class);
    }

    [Fact]
    public void Respond_ClientEdnsSizeBelow512_TreatedAs512()
    {
        var (result, m) = Ask(Query("web.relay.internal", DnsRecordType.ANY, edns: true, ednsSize: 20));

        Assert.False(result.Truncated);
        Assert.Equal(2, m!.Answers.Count);
    }

    [Fact]
    public void Respond_LargeAnswerOurMaxUdpPayloadSmaller_Truncated()
    {
        var options = LongSoa with { MaxUdpPayload = 600 };

        var (result, m) = Ask(Query(LongName, DnsRecordType.A, edns: true, ednsSize: 4096), options: options);

        Assert.True(result.Truncated);
        Assert.True(result.Length <= 600);
        Assert.Equal((ushort)600, m!.Opt!.Class);
    }

    [Fact]
    public void Respond_LargeAnswerOverTcp_FitsWhole()
    {
        var (result, m) = Ask(Query(LongName, DnsRecordType.A), overTcp: true, options: LongSoa);

        Assert.False(result.Truncated);
        Assert.True(result.Length > 512);
        Assert.Single(m!.Authority);
    }

    [Fact]
    public void Respond_LargeAnswerOverTcpSmallBuffer_TruncatedToBuffer()
    {
        var (result, m) = Ask(Query(LongName, DnsRecordType.A), overTcp: true, options: LongSoa, bufferSize: 600);

        Assert.True(result.Truncated);
        Assert.True(m!.Header.Has(DnsHeaderFlags.Truncated));
    }
}
