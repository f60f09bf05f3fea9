using System.Net;
using Relay.Core.Dns;
using static Relay.Core.Tests.Dns.DnsTestKit;

namespace Relay.Core.Tests.Dns;

public class DnsAllocationTests
{
    [Fact]
    public void Respond_WarmPath_AllocatesNothing()
    {
        byte[][] queries =
        [
            Query("web.relay.internal", DnsRecordType.A),
            Query("Web.Relay.Internal", DnsRecordType.AAAA, edns: true),
            Query("nothing.relay.internal", DnsRecordType.A),
            Query("b.com", DnsRecordType.ANY),
            Query("_80._tcp.web.relay.internal", DnsRecordType.SRV, edns: true),
            Query("1.0.96.10.in-addr.arpa", DnsRecordType.PTR),
            Query("relay.internal", DnsRecordType.SOA),
            Query("example.org", DnsRecordType.A),
            Query("flow.relay.internal", DnsRecordType.A),
            [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 1, 0, 1],
        ];
        var response = new byte[65535];
        var names = DnsTestKit.Names;
        var options = Options with { };
        var flows = new FakeFlows(IPAddress.Parse("10.97.0.9"), IPAddress.Parse("fd00::9"));
        var client = Client;
        void RunAll(int rounds)
        {
            for (var r = 0; r < rounds; r++)
            {
                foreach (var query in queries)
                {
                    DnsResolver.Respond(query, response, false, client, names, options, flows);
                }
            }
        }
        RunAll(1000);

        // The runtime itself may allocate on this thread now and then while the
        // window is open (tiered JIT promoting a method: a clean-clone CI run saw
        // 7 KB once). A real allocation on the warm path shows in every window
        // (10,000 rounds of 10 queries), so the best of three windows must be 0.
        var best = long.MaxValue;
        for (var attempt = 0; attempt < 3 && best != 0; attempt++)
        {
            var before = GC.GetAllocatedBytesForCurrentThread();
            RunAll(10_000);
            best = Math.Min(best, GC.GetAllocatedBytesForCurrentThread() - before);
        }

        Assert.Equal(0, best);
    }
}
