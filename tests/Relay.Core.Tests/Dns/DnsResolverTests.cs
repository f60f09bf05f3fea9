using System.Net;
using Relay.Core.Dns;
using Relay.Core.Model;
using static Relay.Core.Tests.Dns.DnsTestKit;

namespace Relay.Core.Tests.Dns;

public class DnsResolverTests
{
    [Fact]
    public void Respond_AForService_AnswersVip4Authoritatively()
    {
        var (result, m) = Ask(Query("web.relay.internal", DnsRecordType.A, id: 0x1234));

        Assert.Equal(new DnsResult(DnsOutcome.Answered, result.Length, DnsResponseCode.NoError, false), result);
        Assert.Equal(0x1234, m!.Header.Id);
        Assert.True(m.Header.IsResponse);
        Assert.True(m.Header.Has(DnsHeaderFlags.Authoritative));
        Assert.True(m.Header.Has(DnsHeaderFlags.RecursionDesired));
        Assert.False(m.Header.Has(DnsHeaderFlags.RecursionAvailable));
        Assert.Equal("web.relay.internal", m.QuestionName);
        var a = Assert.Single(m.Answers);
        Assert.Equal(("web.relay.internal", DnsRecordType.A, (ushort)1, 5u), (a.Name, a.Type, a.Class, a.Ttl));
        Assert.Equal(WebV4, Address(a));
        Assert.Empty(m.Authority);
        Assert.Empty(m.Additional);
    }

    [Fact]
    public void Respond_AForService_BytesMatchRfc1035Layout()
    {
        // Written out by hand from RFC 1035 4.1, independently of the codec's writer.
        byte[] query =
        [
            0xAB, 0xCD, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0,
            1, (byte)'B', 3, (byte)'c', (byte)'O', (byte)'m', 0, 0, 1, 0, 1,
        ];
        byte[] expected =
        [
            0xAB, 0xCD, 0x85, 0x00, 0, 1, 0, 1, 0, 0, 0, 0, // QR AA RD, NOERROR, 1 question, 1 answer
            1, (byte)'B', 3, (byte)'c', (byte)'O', (byte)'m', 0, 0, 1, 0, 1, // the question, case kept
            0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 10, 96, 0, 2, // pointer to the question name, A IN TTL 5, 10.96.0.2
        ];
        var response = new byte[512];

        var result = DnsResolver.Respond(query, response, false, Client, Names, Options, null);

        Assert.Equal(expected, response[..result.Length]);
    }

    [Fact]
    public void Respond_AaaaForService_AnswersVip6()
    {
        var (_, m) = Ask(Query("web.relay.internal", DnsRecordType.AAAA));

        var aaaa = Assert.Single(m!.Answers);
        Assert.Equal(DnsRecordType.AAAA, aaaa.Type);
        Assert.Equal(WebV6, Address(aaaa));
    }

    [Fact]
    public void Respond_AnyForService_AnswersBothAddresses()
    {
        var (_, m) = Ask(Query("web.relay.internal", DnsRecordType.ANY));

        Assert.Equal([WebV4, WebV6], m!.Answers.Select(Address));
    }

    [Fact]
    public void Respond_MixedCaseAndTrailingDot_AnswersAndEchoesQuestionAsReceived()
    {
        var (_, m) = Ask(Query("WeB.rElAy.InTeRnAl.", DnsRecordType.A));

        Assert.Equal("WeB.rElAy.InTeRnAl", m!.QuestionName);
        Assert.Equal(WebV4, Address(Assert.Single(m.Answers)));
        Assert.Equal("WeB.rElAy.InTeRnAl", m.Answers[0].Name);
    }

    [Fact]
    public void Respond_ServiceOutsideOwnedZones_AnswersAuthoritatively()
    {
        var (_, m) = Ask(Query("b.com", DnsRecordType.A));

        Assert.True(m!.Header.Has(DnsHeaderFlags.Authoritative));
        Assert.Equal(B.Vip4, Address(Assert.Single(m.Answers)));
    }

    [Fact]
    public void Respond_OtherTypeForServiceInZone_NoDataWithSoa()
    {
        var (result, m) = Ask(Query("web.relay.internal", DnsRecordType.MX));

        Assert.Equal(DnsResponseCode.NoError, result.Rcode);
        Assert.Empty(m!.Answers);
        var soa = Assert.Single(m.Authority);
        Assert.Equal(("relay.internal", DnsRecordType.SOA), (soa.Name, soa.Type));
        Assert.True(m.Header.Has(DnsHeaderFlags.Authoritative));
    }

    [Fact]
    public void Respond_OtherTypeForServiceOutsideZones_NoDataWithoutSoa()
    {
        var (result, m) = Ask(Query("b.com", DnsRecordType.MX));

        Assert.Equal(DnsResponseCode.NoError, result.Rcode);
        Assert.Empty(m!.Answers);
        Assert.Empty(m.Authority);
    }

    [Fact]
    public void Respond_SrvForMappedPort_AnswersTargetWithAddressesInAdditional()
    {
        var (result, m) = Ask(Query("_80._tcp.web.relay.internal", DnsRecordType.SRV));

        Assert.Equal(DnsResponseCode.NoError, result.Rcode);
        var srv = Assert.Single(m!.Answers);
        Assert.Equal(("_80._tcp.web.relay.internal", DnsRecordType.SRV), (srv.Name, srv.Type));
        Assert.Equal((0, 0, 80), (UInt16(srv, 0), UInt16(srv, 2), UInt16(srv, 4)));
        Assert.Equal(["web.relay.internal"], srv.DataNames);
        Assert.Equal(
            [("web.relay.internal", DnsRecordType.A, WebV4), ("web.relay.internal", DnsRecordType.AAAA, WebV6)],
            m.Additional.Select(r => (r.Name, r.Type, Address(r))));
    }

    [Fact]
    public void Respond_SrvForUdpMapping_Answers()
    {
        var (_, m) = Ask(Query("_53._UDP.web.relay.internal", DnsRecordType.SRV));

        Assert.Equal(53, UInt16(Assert.Single(m!.Answers), 4));
    }

    [Theory]
    [InlineData("_81._tcp.web.relay.internal")] // port not mapped
    [InlineData("_80._udp.web.relay.internal")] // mapped over the other protocol
    [InlineData("_80._sctp.web.relay.internal")] // a protocol services do not have
    public void Respond_SrvNameOfKnownServiceWithoutMapping_NoDataWithSoa(string name)
    {
        var (result, m) = Ask(Query(name, DnsRecordType.SRV));

        Assert.Equal(DnsResponseCode.NoError, result.Rcode);
        Assert.Empty(m!.Answers);
        Assert.Equal(DnsRecordType.SOA, Assert.Single(m.Authority).Type);
    }

    [Fact]
    public void Respond_SrvForProtocolName_ListsEveryPortOfThatProtocol()
    {
        var (result, m) = Ask(Query("_tcp.web.relay.internal", DnsRecordType.SRV));

        Assert.Equal(DnsResponseCode.NoError, result.Rcode);
        Assert.All(m!.Answers, a => Assert.Equal(DnsRecordType.SRV, a.Type));
        Assert.Contains(m.Answers, a => UInt16(a, 4) == 80);
        Assert.DoesNotContain(m.Answers, a => UInt16(a, 4) == 53);
    }

    [Fact]
    public void Respond_AForMappedSrvName_NoData()
    {
        var (result, m) = Ask(Query("_80._tcp.web.relay.internal", DnsRecordType.A));

        Assert.Equal(DnsResponseCode.NoError, result.Rcode);
        Assert.Empty(m!.Answers);
    }

    [Fact]
    public void Respond_SrvForServiceOutsideZones_AnswersWithoutSoaOnNoData()
    {
        var names = NameTable.Build([B with { Ports = [new PortMapping(TransportProtocol.Tcp, 443, 8443)] }]);

        var (_, hit) = Ask(Query("_443._tcp.b.com", DnsRecordType.SRV), names: names);
        var (_, miss) = Ask(Query("_80._tcp.b.com", DnsRecordType.SRV), names: names);

        Assert.Equal(["b.com"], Assert.Single(hit!.Answers).DataNames);
        Assert.Empty(miss!.Answers);
        Assert.Empty(miss.Authority);
        Assert.Equal(DnsResponseCode.NoError, miss.HeaderRcode);
    }

    [Theory]
    [InlineData("_80._tcp.nothing.relay.internal")]
    [InlineData("_x80._tcp.web.relay.internal")]
    [InlineData("_99999._tcp.web.relay.internal")]
    [InlineData("_80.web.relay.internal")]
    [InlineData("x.web.relay.internal")]
    public void Respond_NotAServiceName_NxDomain(string name)
    {
        var (result, m) = Ask(Query(name, DnsRecordType.SRV));

        Assert.Equal(DnsResponseCode.NXDomain, result.Rcode);
        Assert.Equal(DnsResponseCode.NXDomain, m!.HeaderRcode);
    }

    [Fact]
    public void Respond_PtrForVip4_AnswersServiceName()
    {
        var (_, m) = Ask(Query("1.0.96.10.in-addr.arpa", DnsRecordType.PTR));

        var ptr = Assert.Single(m!.Answers);
        Assert.Equal(DnsRecordType.PTR, ptr.Type);
        Assert.Equal(["web.relay.internal"], ptr.DataNames);
        Assert.True(m.Header.Has(DnsHeaderFlags.Authoritative));
    }

    [Fact]
    public void Respond_PtrForVip6NibblesInUpperCase_AnswersServiceName()
    {
        // fd52:656c:6179:2::2, nibbles reversed.
        var name = "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.2.0.0.0.9.7.1.6.C.6.5.6.2.5.D.F.IP6.ARPA";

        var (_, m) = Ask(Query(name, DnsRecordType.PTR));

        Assert.Equal(["b.com"], Assert.Single(m!.Answers).DataNames);
    }

    [Fact]
    public void Respond_AForReverseName_NoData()
    {
        var (result, m) = Ask(Query("1.0.96.10.in-addr.arpa", DnsRecordType.A));

        Assert.Equal(DnsResponseCode.NoError, result.Rcode);
        Assert.Empty(m!.Answers);
    }

    [Fact]
    public void Respond_PtrForUnknownAddressOutsideZones_RefusedOrForwarded()
    {
        var query = Query("9.9.96.10.in-addr.arpa", DnsRecordType.PTR);

        Assert.Equal(DnsResponseCode.Refused, Ask(query).Result.Rcode);
        Assert.Equal(DnsOutcome.Forward, Ask(query, options: Options with { Forward = true }).Result.Outcome);
    }

    [Fact]
    public void Respond_PtrForUnknownAddressInOwnedReverseZone_NxDomainWithThatZonesSoa()
    {
        var options = Options with { Zones = ["relay.internal", "96.10.in-addr.arpa"] };

        var (result, m) = Ask(Query("9.9.96.10.in-addr.arpa", DnsRecordType.PTR), options: options);

        Assert.Equal(DnsResponseCode.NXDomain, result.Rcode);
        Assert.Equal("96.10.in-addr.arpa", Assert.Single(m!.Authority).Name);
    }

    [Fact]
    public void Respond_FlowAddressedService_AnswersClientsFlowAddresses()
    {
        var flows = new FakeFlows(IPAddress.Parse("10.97.0.9"), IPAddress.Parse("fd00::9"));

        var (_, m) = Ask(Query("flow.relay.internal", DnsRecordType.ANY), flows: flows);

        Assert.Equal([IPAddress.Parse("10.97.0.9"), IPAddress.Parse("fd00::9")], m!.Answers.Select(Address));
        Assert.Equal(Client, flows.LastClient);
    }

    [Fact]
    public void Respond_FlowResolverFails_ServFail()
    {
        var flows = new FakeFlows(null, null, ok: false);

        var (result, m) = Ask(Query("flow.relay.internal", DnsRecordType.A), flows: flows);

        Assert.Equal(DnsResponseCode.ServFail, result.Rcode);
        Assert.Equal(DnsResponseCode.ServFail, m!.HeaderRcode);
        Assert.Empty(m.Answers);
        Assert.False(m.Header.Has(DnsHeaderFlags.Authoritative));
    }

    [Fact]
    public void Respond_FlowResolverGivesNoV6_AaaaIsNoData()
    {
        var flows = new FakeFlows(IPAddress.Parse("10.97.0.9"), null);

        var (result, m) = Ask(Query("flow.relay.internal", DnsRecordType.AAAA), flows: flows);

        Assert.Equal(DnsResponseCode.NoError, result.Rcode);
        Assert.Empty(m!.Answers);
        Assert.Single(m.Authority);
    }

    [Fact]
    public void Respond_FlowAddressedServiceWithoutResolver_AnswersVip()
    {
        var (_, m) = Ask(Query("flow.relay.internal", DnsRecordType.A), flows: null);

        Assert.Equal(Flow.Vip4, Address(Assert.Single(m!.Answers)));
    }

    [Fact]
    public void Respond_ServiceWithoutFlowAddressing_ResolverNotAsked()
    {
        var flows = new FakeFlows(IPAddress.Parse("10.97.0.9"), null);

        var (_, m) = Ask(Query("web.relay.internal", DnsRecordType.A), flows: flows);

        Assert.Equal(WebV4, Address(Assert.Single(m!.Answers)));
        Assert.Equal(0, flows.Calls);
    }

    [Fact]
    public void Respond_SrvOfFlowAddressedService_AdditionalCarriesFlowAddresses()
    {
        var flows = new FakeFlows(IPAddress.Parse("10.97.0.9"), null);

        var (_, m) = Ask(Query("_443._tcp.flow.relay.internal", DnsRecordType.SRV), flows: flows);

        Assert.Single(m!.Answers);
        Assert.Equal(IPAddress.Parse("10.97.0.9"), Address(Assert.Single(m.Additional)));
    }

    [Fact]
    public void Respond_SrvOfFlowAddressedServiceWhenResolverFails_SrvWithoutAdditional()
    {
        var (result, m) = Ask(Query("_443._tcp.flow.relay.internal", DnsRecordType.SRV), flows: new FakeFlows(null, null, ok: false));

        Assert.Equal(DnsResponseCode.NoError, result.Rcode);
        Assert.Single(m!.Answers);
        Assert.Empty(m.Additional);
    }

    [Fact]
    public void Respond_UnknownNameInZone_NxDomainWithSoaFields()
    {
        var options = Options with { Ttl = TimeSpan.FromSeconds(30) };

        var (result, m) = Ask(Query("nothing.relay.internal", DnsRecordType.A), options: options);

        Assert.Equal(DnsResponseCode.NXDomain, result.Rcode);
        Assert.True(m!.Header.Has(DnsHeaderFlags.Authoritative));
        Assert.Empty(m.Answers);
        var soa = Assert.Single(m.Authority);
        Assert.Equal(("relay.internal", DnsRecordType.SOA, 30u), (soa.Name, soa.Type, soa.Ttl));
        Assert.Equal(["ns.relay.internal", "hostmaster.relay.internal"], soa.DataNames);
        var timers = soa.Data[^20..];
        Assert.Equal([1u, 3600u, 600u, 86400u, 30u], Enumerable.Range(0, 5).Select(i => UInt32At(timers, i * 4)));
    }

    [Fact]
    public void Respond_SoaAtApex_AnswersSoa()
    {
        var (result, m) = Ask(Query("Relay.Internal", DnsRecordType.SOA));

        Assert.Equal(DnsResponseCode.NoError, result.Rcode);
        var soa = Assert.Single(m!.Answers);
        Assert.Equal(("Relay.Internal", DnsRecordType.SOA), (soa.Name, soa.Type));
        Assert.Empty(m.Authority);
        Assert.True(m.Header.Has(DnsHeaderFlags.Authoritative));
    }

    [Fact]
    public void Respond_NsAtApex_AnswersNameServer()
    {
        var (_, m) = Ask(Query("relay.internal", DnsRecordType.NS), options: Options with { NameServer = "dns.example." });

        var ns = Assert.Single(m!.Answers);
        Assert.Equal(DnsRecordType.NS, ns.Type);
        Assert.Equal(["dns.example"], ns.DataNames);
    }

    [Fact]
    public void Respond_AnyAtApex_AnswersSoaAndNs()
    {
        var (_, m) = Ask(Query("relay.internal", DnsRecordType.ANY));

        Assert.Equal([DnsRecordType.SOA, DnsRecordType.NS], m!.Answers.Select(r => r.Type));
    }

    [Fact]
    public void Respond_AAtApex_NoDataWithSoaNotNxDomain()
    {
        // NXDOMAIN at the apex would tell an RFC 8020 resolver that no service below it exists.
        var (result, m) = Ask(Query("relay.internal", DnsRecordType.A));

        Assert.Equal(DnsResponseCode.NoError, result.Rcode);
        Assert.Empty(m!.Answers);
        Assert.Equal(DnsRecordType.SOA, Assert.Single(m.Authority).Type);
    }

    [Fact]
    public void Respond_NameAboveAServiceInZone_NoDataNotNxDomain()
    {
        var (result, m) = Ask(Query("prod.relay.internal", DnsRecordType.A));

        Assert.Equal(DnsResponseCode.NoError, result.Rcode);
        Assert.Empty(m!.Answers);
        Assert.Single(m.Authority);
    }

    [Fact]
    public void Respond_NameAboveAServiceOutsideZones_NotOurs()
    {
        // b.com makes "com" a name above a service, but the network does not own "com".
        var (result, _) = Ask(Query("com", DnsRecordType.A));

        Assert.Equal(DnsResponseCode.Refused, result.Rcode);
    }

    [Fact]
    public void Respond_NestedZones_SoaOfTheLongest()
    {
        var options = Options with { Zones = ["relay.internal", "prod.relay.internal"] };

        var (_, m) = Ask(Query("x.prod.relay.internal", DnsRecordType.A), options: options);

        Assert.Equal("prod.relay.internal", Assert.Single(m!.Authority).Name);
    }

    [Fact]
    public void Respond_UnknownNameOutsideZonesForwarding_ForwardWithoutResponse()
    {
        var (result, m) = Ask(Query("example.org", DnsRecordType.A), options: Options with { Forward = true });

        Assert.Equal(new DnsResult(DnsOutcome.Forward, 0, DnsResponseCode.NoError, false), result);
        Assert.Null(m);
    }

    [Fact]
    public void Respond_UnknownNameOutsideZonesNotForwarding_RefusedNotAuthoritative()
    {
        var (result, m) = Ask(Query("example.org", DnsRecordType.A));

        Assert.Equal(DnsResponseCode.Refused, result.Rcode);
        Assert.Equal(DnsResponseCode.Refused, m!.HeaderRcode);
        Assert.False(m.Header.Has(DnsHeaderFlags.Authoritative));
        Assert.Equal("example.org", m.QuestionName);
    }

    [Fact]
    public void Respond_RootName_RefusedOrForwarded()
    {
        Assert.Equal(DnsResponseCode.Refused, Ask(Query(".", DnsRecordType.NS)).Result.Rcode);
        Assert.Equal(DnsOutcome.Forward, Ask(Query(".", DnsRecordType.NS), options: Options with { Forward = true }).Result.Outcome);
    }

    [Fact]
    public void Respond_Forwarding_RecursionAvailableSet()
    {
        var (_, m) = Ask(Query("web.relay.internal", DnsRecordType.A), options: Options with { Forward = true });

        Assert.True(m!.Header.Has(DnsHeaderFlags.RecursionAvailable));
    }

    [Fact]
    public void Respond_RdClearCdSet_FlagsCopied()
    {
        var (_, m) = Ask(Query("web.relay.internal", DnsRecordType.A, flags: (ushort)DnsHeaderFlags.CheckingDisabled));

        Assert.False(m!.Header.Has(DnsHeaderFlags.RecursionDesired));
        Assert.True(m.Header.Has(DnsHeaderFlags.CheckingDisabled));
    }

    [Fact]
    public void Respond_ResponsePacket_Dropped()
    {
        var query = Query("web.relay.internal", DnsRecordType.A, flags: (ushort)DnsHeaderFlags.Response);

        Assert.Equal(DnsOutcome.Drop, Ask(query).Result.Outcome);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(11)]
    public void Respond_ShorterThanHeader_Dropped(int length)
    {
        Assert.Equal(DnsOutcome.Drop, Ask(new byte[length]).Result.Outcome);
    }

    [Fact]
    public void Respond_LongerThan65535_Dropped()
    {
        var query = new byte[65536];
        Query("web.relay.internal", DnsRecordType.A).CopyTo(query, 0);

        Assert.Equal(DnsOutcome.Drop, Ask(query, overTcp: true).Result.Outcome);
    }

    [Fact]
    public void Respond_HeaderOnlyWithOneQuestion_FormErrEchoingIdWithoutQuestion()
    {
        byte[] query = [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];

        var (result, m) = Ask(query);

        Assert.Equal(DnsResponseCode.FormErr, result.Rcode);
        Assert.Equal(0x1234, m!.Header.Id);
        Assert.Equal(0, m.Header.QuestionCount);
        Assert.True(m.Header.IsResponse);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(2)]
    public void Respond_QuestionCountNotOne_FormErr(ushort count)
    {
        var query = Query("web.relay.internal", DnsRecordType.A);
        query[5] = (byte)count;

        var (result, m) = Ask(query);

        Assert.Equal(DnsResponseCode.FormErr, result.Rcode);
        Assert.Null(m!.QuestionName);
    }

    [Fact]
    public void Respond_TruncatedQuestion_FormErr()
    {
        var query = Query("web.relay.internal", DnsRecordType.A);

        Assert.Equal(DnsResponseCode.FormErr, Ask(query[..^2]).Result.Rcode);
    }

    [Fact]
    public void Respond_AdditionalCountBeyondData_FormErrWithQuestion()
    {
        var query = Query("web.relay.internal", DnsRecordType.A);
        query[11] = 1;

        var (result, m) = Ask(query);

        Assert.Equal(DnsResponseCode.FormErr, result.Rcode);
        Assert.Equal("web.relay.internal", m!.QuestionName);
    }

    [Theory]
    [InlineData(1)] // IQUERY
    [InlineData(2)] // STATUS
    [InlineData(5)] // UPDATE
    public void Respond_OtherOpcode_NotImpEchoingOpcode(int opcode)
    {
        var query = Query("web.relay.internal", DnsRecordType.A, flags: (ushort)(opcode << 11));

        var (result, m) = Ask(query);

        Assert.Equal(DnsResponseCode.NotImp, result.Rcode);
        Assert.Equal(opcode, m!.Header.Opcode);
    }

    [Fact]
    public void Respond_ClassChaos_Refused()
    {
        var (result, _) = Ask(Query("version.bind", DnsRecordType.TXT, qclass: (ushort)DnsClass.CH));

        Assert.Equal(DnsResponseCode.Refused, result.Rcode);
    }

    [Fact]
    public void Respond_ClassAny_Answered()
    {
        var (_, m) = Ask(Query("web.relay.internal", DnsRecordType.A, qclass: (ushort)DnsClass.ANY));

        Assert.Equal((ushort)DnsClass.IN, Assert.Single(m!.Answers).Class);
        Assert.Equal((ushort)DnsClass.ANY, m.QuestionClass);
    }

    [Fact]
    public void Respond_ZoneTransfer_NotImp()
    {
        Assert.Equal(DnsResponseCode.NotImp, Ask(Query("relay.internal", DnsRecordType.AXFR), overTcp: true).Result.Rcode);
    }

    [Fact]
    public void Respond_QueryTypeOpt_FormErr()
    {
        Assert.Equal(DnsResponseCode.FormErr, Ask(Query("web.relay.internal", DnsRecordType.OPT)).Result.Rcode);
    }

    [Fact]
    public void Respond_WithOpt_ResponseCarriesOurOpt()
    {
        var (_, m) = Ask(Query("web.relay.internal", DnsRecordType.A, edns: true, ednsSize: 4096));

        Assert.Single(m!.Answers);
        var opt = m.Opt!;
        Assert.Equal((".", (ushort)1232, 0u), (opt.Name, opt.Class, opt.Ttl));
        Assert.Empty(opt.Data);
    }

    [Fact]
    public void Respond_WithoutOpt_ResponseHasNone()
    {
        var (_, m) = Ask(Query("web.relay.internal", DnsRecordType.A));

        Assert.Null(m!.Opt);
    }

    [Fact]
    public void Respond_OptVersion1_BadVers()
    {
        var (result, m) = Ask(Query("web.relay.internal", DnsRecordType.A, edns: true, ednsVersion: 1));

        Assert.Equal(DnsResponseCode.BadVers, result.Rcode);
        Assert.Equal(DnsResponseCode.NoError, m!.HeaderRcode);
        Assert.Empty(m.Answers);
        Assert.Equal(1u, m.Opt!.Ttl >> 24); // upper 8 bits of the 12-bit code: 16 >> 4
        Assert.Equal(0u, (m.Opt.Ttl >> 16) & 0xFF); // our version
    }

    [Fact]
    public void Respond_TwoOpts_FormErr()
    {
        var buffer = new byte[512];
        var w = new DnsWriter(buffer);
        w.WriteHeader(new DnsHeader(7, 0, 1, 0, 0, 2));
        w.WriteQuestion(DnsWireName.FromText("web.relay.internal"), (ushort)DnsRecordType.A, 1);
        w.WriteOpt(1232);
        w.WriteOpt(1232);

        var (result, m) = Ask(w.Written.ToArray());

        Assert.Equal(DnsResponseCode.FormErr, result.Rcode);
        Assert.Null(m!.Opt);
    }

    [Fact]
    public void Respond_OptNotOwnedByRoot_FormErr()
    {
        var query = Query("web.relay.internal", DnsRecordType.A);
        byte[] opt = [1, (byte)'x', 0, 0, 41, 4, 0, 0, 0, 0, 0, 0, 0];
        query = [.. query, .. opt];
        query[11] = 1;

        Assert.Equal(DnsResponseCode.FormErr, Ask(query).Result.Rcode);
    }

    [Fact]
    public void Respond_OtherAdditionalRecords_Ignored()
    {
        var query = Query("web.relay.internal", DnsRecordType.A, edns: true);
        byte[] txt = [0, 0, 16, 0, 1, 0, 0, 0, 0, 0, 2, 1, (byte)'x'];
        query = [.. query, .. txt];
        query[11] = 2;

        var (_, m) = Ask(query);

        Assert.Single(m!.Answers);
        Assert.NotNull(m.Opt);
    }

    [Fact]
    public void Respond_TrailingBytes_Ignored()
    {
        var (result, _) = Ask([.. Query("web.relay.internal", DnsRecordType.A), 0xFF, 0xFF]);

        Assert.Equal(DnsResponseCode.NoError, result.Rcode);
    }

    [Fact]
    public void Respond_UdpQueryOver512WithoutEdns_FormErr()
    {
        byte[] query = [.. Query("web.relay.internal", DnsRecordType.A), .. new byte[500]];

        Assert.Equal(DnsResponseCode.FormErr, Ask(query).Result.Rcode);
        Assert.Equal(DnsResponseCode.NoError, Ask(query, overTcp: true).Result.Rcode);
    }

    [Fact]
    public void Respond_UdpQueryOver512WithEdns_Answered()
    {
        byte[] query = [.. Query("web.relay.internal", DnsRecordType.A, edns: true), .. new byte[500]];

        Assert.Equal(DnsResponseCode.NoError, Ask(query).Result.Rcode);
    }

    [Fact]
    public void Respond_CompressionLoopInQuestion_FormErr()
    {
        byte[] query = [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 1, 0, 1];

        var (result, m) = Ask(query);

        Assert.Equal(DnsResponseCode.FormErr, result.Rcode);
        Assert.Null(m!.QuestionName);
    }

    [Fact]
    public void Respond_BufferUnder512_Throws()
    {
        var query = Query("web.relay.internal", DnsRecordType.A);

        Assert.Throws<ArgumentException>(() => DnsResolver.Respond(query, new byte[511], false, Client, Names, Options, null));
    }

    [Fact]
    public void Respond_InvalidOptions_Throws()
    {
        var query = Query("web.relay.internal", DnsRecordType.A);
        var options = Options with { Zones = ["bad..zone"], MaxUdpPayload = 100 };

        var e = Assert.Throws<ArgumentException>(() => DnsResolver.Respond(query, new byte[512], false, Client, Names, options, null));
        Assert.Contains("zone", e.Message);
        Assert.Contains("MaxUdpPayload", e.Message);
    }

    [Fact]
    public void Validate_InvalidOptions_ThrowsListingEach()
    {
        var options = Options with { NameServer = "", Ttl = TimeSpan.FromSeconds(-1) };

        var e = Assert.Throws<ArgumentException>(options.Validate);
        Assert.Contains("name server", e.Message);
        Assert.Contains("TTL", e.Message);
    }

    [Fact]
    public void Validate_Defaults_Pass()
    {
        new DnsOptions().Validate();
    }

    [Fact]
    public void Respond_EmptyTable_NxDomainInZone()
    {
        Assert.Equal(DnsResponseCode.NXDomain, Ask(Query("web.relay.internal", DnsRecordType.A), names: NameTable.Empty).Result.Rcode);
    }
}
