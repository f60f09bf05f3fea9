using System.Diagnostics;
using System.Net;
using Relay.Core.Dns;
using Xunit.Abstractions;
using static Relay.Core.Tests.Dns.DnsTestKit;

namespace Relay.Core.Tests.Dns;

/// <summary>
/// The codec is hand-rolled (decision 003), so it meets hostile input here: seeded, so every run
/// sends the same packets. Each must come back without an exception as Drop, Forward, or a
/// response that parses back whole.
/// </summary>
public class DnsFuzzTests(ITestOutputHelper output)
{
    private const int Packets = 120_000;

    private static readonly DnsOptions[] Variants =
    [
        Options,
        Options with { Forward = true },
        Options with { Zones = ["relay.internal", "com", "in-addr.arpa"], MaxUdpPayload = 512 },
        Options with { NameServer = $"ns.{new string('n', 63)}.{new string('n', 63)}.example", SoaHostmaster = $"h.{new string('h', 63)}.{new string('h', 63)}.example" },
    ];

    private static readonly string[] Names =
    [
        "web.relay.internal", "WEB.Relay.Internal", "b.com", "flow.relay.internal", "api.prod.relay.internal",
        "prod.relay.internal", "relay.internal", "nothing.relay.internal", "example.org", ".",
        "_80._tcp.web.relay.internal", "_53._udp.web.relay.internal", "_81._tcp.web.relay.internal", "_tcp.web.relay.internal",
        "_443._tcp.flow.relay.internal", "1.0.96.10.in-addr.arpa", "9.9.9.9.in-addr.arpa",
        "3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.2.0.0.0.9.7.1.6.c.6.5.6.2.5.d.f.ip6.arpa",
        $"{new string('x', 63)}.{new string('y', 63)}.{new string('z', 63)}.relay.internal",
    ];

    private static readonly DnsRecordType[] Types =
    [
        DnsRecordType.A, DnsRecordType.AAAA, DnsRecordType.ANY, DnsRecordType.SRV, DnsRecordType.PTR,
        DnsRecordType.SOA, DnsRecordType.NS, DnsRecordType.MX, DnsRecordType.TXT, DnsRecordType.AXFR, DnsRecordType.OPT,
    ];

    [Fact]
    public void Respond_RandomAndMutatedPackets_NeverThrowsAndAnswersWellFormed()
    {
        var random = new Random(20240603);
        var flows = new FakeFlows(IPAddress.Parse("10.97.0.9"), IPAddress.Parse("fd00::9"));
        var failingFlows = new FakeFlows(null, null, ok: false);
        var response = new byte[65535];
        var outcomes = new Dictionary<string, int>();
        var clock = Stopwatch.StartNew();
        var slowest = TimeSpan.Zero;

        for (var i = 0; i < Packets; i++)
        {
            var packet = i % 4 == 0 ? RandomBytes(random) : Mutate(random, ValidQuery(random));
            var overTcp = random.Next(4) == 0;
            var buffer = response.AsSpan(0, random.Next(3) == 0 ? DnsResolver.MinResponseBuffer : response.Length);
            var options = Variants[random.Next(Variants.Length)];
            var resolver = random.Next(3) switch { 0 => null, 1 => flows, _ => failingFlows };

            var started = clock.Elapsed;
            DnsResult result;
            try
            {
                result = DnsResolver.Respond(packet, buffer, overTcp, Client, DnsTestKit.Names, options, resolver);
            }
            catch (Exception e)
            {
                Assert.Fail($"packet {i} ({Convert.ToHexString(packet)}) threw {e}");
                throw;
            }
            var took = clock.Elapsed - started;
            slowest = took > slowest ? took : slowest;

            Check(i, packet, buffer, overTcp, options, result);
            var key = result.Outcome == DnsOutcome.Answered ? result.Rcode.ToString() : result.Outcome.ToString();
            outcomes[key] = outcomes.GetValueOrDefault(key) + 1;
        }

        output.WriteLine($"{Packets} packets in {clock.Elapsed.TotalMilliseconds:F0} ms, slowest {slowest.TotalMicroseconds:F0} us: "
            + string.Join(", ", outcomes.OrderByDescending(o => o.Value).Select(o => $"{o.Key} {o.Value}")));
        // Every kind of answer was reached, so the mutations got past the header and the question.
        foreach (var kind in new[] { "Drop", "Forward", "NoError", "NXDomain", "FormErr", "Refused", "NotImp", "ServFail", "BadVers" })
        {
            Assert.True(outcomes.GetValueOrDefault(kind) > 0, $"no {kind} among {string.Join(", ", outcomes)}");
        }
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"{Packets} packets took {clock.Elapsed}");
        Assert.True(slowest < TimeSpan.FromSeconds(1), $"the slowest packet took {slowest}");
    }

    private static void Check(int i, byte[] packet, Span<byte> buffer, bool overTcp, DnsOptions options, DnsResult result)
    {
        switch (result.Outcome)
        {
            case DnsOutcome.Drop:
            case DnsOutcome.Forward:
                Assert.Equal(0, result.Length);
                return;
        }
        var udpLimit = Math.Max(512, options.MaxUdpPayload);
        Assert.InRange(result.Length, DnsHeader.Size, overTcp ? buffer.Length : Math.Min(buffer.Length, udpLimit));
        var message = Parse(buffer[..result.Length]);
        Assert.True(message is not null, $"packet {i} ({Convert.ToHexString(packet)}) got a malformed response");
        Assert.True(message.Header.IsResponse);
        Assert.Equal((ushort)((packet[0] << 8) | packet[1]), message.Header.Id);
        Assert.Equal(result.Truncated, message.Header.Has(DnsHeaderFlags.Truncated));
        Assert.Equal((int)result.Rcode & 0xF, message.Header.Rcode);
    }

    private static byte[] RandomBytes(Random random)
    {
        var packet = new byte[random.Next(0, 601)];
        random.NextBytes(packet);
        if (random.Next(2) == 0 && packet.Length > 2)
        {
            packet[2] &= 0x7F; // half of them queries, or nearly all would be dropped as responses
        }
        return packet;
    }

    private static byte[] ValidQuery(Random random)
    {
        var name = Names[random.Next(Names.Length)];
        var type = Types[random.Next(Types.Length)];
        var edns = random.Next(2) == 0;
        return Query(name, type, (ushort)random.Next(65536), edns, ednsSize: (ushort)random.Next(0, 5000),
            ednsVersion: random.Next(10) == 0 ? (byte)1 : (byte)0);
    }

    private static byte[] Mutate(Random random, byte[] query)
    {
        var packet = new List<byte>(query);
        var mutations = random.Next(0, 4);
        for (var m = 0; m < mutations; m++)
        {
            if (packet.Count == 0)
            {
                break;
            }
            var at = random.Next(packet.Count);
            switch (random.Next(7))
            {
                case 0: // bit flips
                    packet[at] ^= (byte)(1 << random.Next(8));
                    break;
                case 1: // truncation
                    packet.RemoveRange(at, packet.Count - at);
                    break;
                case 2: // inserted bytes
                    var bytes = new byte[random.Next(1, 20)];
                    random.NextBytes(bytes);
                    packet.InsertRange(at, bytes);
                    break;
                case 3: // a compression pointer: to itself, forwards, backwards, anywhere
                    var target = random.Next(4) switch { 0 => at, 1 => at + 2, 2 => random.Next(Math.Max(1, at)), _ => random.Next(0x4000) };
                    packet[at] = (byte)(0xC0 | ((target >> 8) & 0x3F));
                    if (at + 1 < packet.Count)
                    {
                        packet[at + 1] = (byte)target;
                    }
                    break;
                case 4: // a huge label length, or a reserved label type, inside the question name
                    var nameAt = Math.Min(packet.Count - 1, DnsHeader.Size + random.Next(8));
                    packet[nameAt] = (byte)random.Next(56, 256);
                    break;
                case 5: // a count set to the maximum
                    var count = 4 + 2 * random.Next(4);
                    if (count + 1 < packet.Count)
                    {
                        packet[count] = 0xFF;
                        packet[count + 1] = 0xFF;
                    }
                    break;
                default: // padding past the classic limit
                    packet.AddRange(new byte[random.Next(1, 600)]);
                    break;
            }
        }
        return packet.ToArray();
    }
}
