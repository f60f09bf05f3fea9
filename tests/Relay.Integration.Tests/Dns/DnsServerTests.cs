using System.Buffers.Binary;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using Relay.Core.Model;
using Relay.Engine;
using Relay.Engine.Probes;
using Relay.Integration.Tests.Engine;
using Relay.Integration.Tests.Support;

namespace Relay.Integration.Tests.Dns;

/// <summary>The network's DNS server, asked by real clients (dig, ping, getent) inside instances.</summary>
public sealed class DnsServerTests : IDisposable
{
    private readonly TestNetwork _t = new();
    private readonly InstanceInfo _client;
    private readonly ServiceInfo _b;
    private readonly ServiceInfo _web;

    public DnsServerTests()
    {
        var net = _t.Network;
        net.AddService(new ServiceOptions { Name = "a.com" });
        _b = net.AddService(new ServiceOptions { Name = "b.com" });
        _web = net.AddService(new ServiceOptions { Name = "web.relay.internal", Ports = [new PortMapping(TransportProtocol.Tcp, 80, 8080), new PortMapping(TransportProtocol.Udp, 53, 5353)] });
        _client = net.AddInstance("a.com");
        net.AddInstance("b.com");
    }

    public void Dispose() => _t.Dispose();

    private Sh.Result Dig(params string[] args) => Sh.InNs(_client.Namespace, "dig", ["+time=2", "+tries=1", .. args]);

    private static string Status(Sh.Result r) => Regex.Match(r.Stdout, @"status: (\w+)").Groups[1].Value;

    [Fact]
    public void Dig_AAndAaaa_VirtualAddresses_CaseInsensitive_TrailingDot()
    {
        Assert.Equal(_b.Vip4.ToString(), Dig("+short", "b.com").Stdout.Trim());
        Assert.Equal(_b.Vip6.ToString(), Dig("+short", "AAAA", "b.com").Stdout.Trim());
        Assert.Equal(_b.Vip4.ToString(), Dig("+short", "B.CoM.").Stdout.Trim());
        var full = Dig("b.com");
        Assert.Equal("NOERROR", Status(full));
        Assert.Matches(@"flags: qr aa", full.Stdout);
        Assert.Matches(@"b\.com\.\s+5\s+IN\s+A\s+" + Regex.Escape(_b.Vip4.ToString()), full.Stdout);
    }

    [Fact]
    public void Dig_Srv_PortMappedService_AnswersPortAndAddresses()
    {
        var r = Dig("+noall", "+answer", "+additional", "SRV", "_80._tcp.web.relay.internal");
        Assert.Matches(@"_80\._tcp\.web\.relay\.internal\.\s+5\s+IN\s+SRV\s+0 0 80 web\.relay\.internal\.", r.Stdout);
        Assert.Contains(_web.Vip4.ToString(), r.Stdout);
        Assert.Contains(_web.Vip6.ToString(), r.Stdout);
        Assert.Matches(@"SRV\s+0 0 53 web", Dig("+noall", "+answer", "SRV", "_53._udp.web.relay.internal").Stdout);
    }

    [Fact]
    public void Dig_Ptr_VirtualAddresses_NameOfTheService()
    {
        Assert.Equal("b.com.", Dig("+short", "-x", _b.Vip4.ToString()).Stdout.Trim());
        Assert.Equal("b.com.", Dig("+short", "-x", _b.Vip6.ToString()).Stdout.Trim());
    }

    [Fact]
    public void Dig_UnknownNameInOwnedZone_NxDomainWithSoa()
    {
        var r = Dig("+noall", "+comments", "+authority", "nothing.relay.internal");
        Assert.Equal("NXDOMAIN", Status(r));
        Assert.Matches(@"relay\.internal\.\s+5\s+IN\s+SOA\s+ns\.relay\.internal\. hostmaster\.relay\.internal\.", r.Stdout);
    }

    [Fact]
    public void Dig_NameOutsideOwnedZones_RefusedByDefault()
        => Assert.Equal("REFUSED", Status(Dig("example.org")));

    [Fact]
    public void Dig_AnswerLargerThanUdpAllows_TruncatedThenServedOverTcp()
    {
        // _tcp.NAME lists every TCP port of a service: with 60 of them the answer is ~2.5 KB.
        _t.Network.AddService(new ServiceOptions
        {
            Name = "many.relay.internal",
            Ports = Enumerable.Range(1, 60).Select(p => new PortMapping(TransportProtocol.Tcp, 9000 + p, 9000 + p)).ToArray(),
        });
        var udp = Dig("+ignore", "SRV", "_tcp.many.relay.internal");
        Assert.Matches(@"flags: qr aa rd tc|flags: qr aa tc", udp.Stdout);
        Assert.Matches(@"ANSWER: 0,", udp.Stdout);
        var fallback = Dig("SRV", "_tcp.many.relay.internal");
        Assert.Contains("Truncated, retrying in TCP mode", fallback.Stdout);
        Assert.Equal("NOERROR", Status(fallback));
        Assert.Equal(60, Regex.Matches(fallback.Stdout, @"IN\s+SRV\s+0 0 9\d\d\d many\.relay\.internal\.").Count);
        Assert.Equal(_b.Vip4.ToString(), Dig("+tcp", "+short", "b.com").Stdout.Trim());
    }

    [Fact]
    public void PingAndGetent_ByServiceName_Resolve()
    {
        var ping = Sh.InNs(_client.Namespace, "ping", "-4", "-c", "3", "-i", "0.2", "-W", "2", "b.com");
        Assert.True(ping.ExitCode == 0, ping.Stdout + ping.Stderr);
        // (iputils prints the name it resolved; with -4 it may print it empty, so check the address.)
        Assert.Contains($"({_b.Vip4})", ping.Stdout);
        Assert.Contains("3 received", ping.Stdout);
        var getent = Sh.InNs(_client.Namespace, "getent", "hosts", "b.com");
        Assert.Equal(0, getent.ExitCode);
        Assert.Matches($@"^({Regex.Escape(_b.Vip6.ToString())}|{Regex.Escape(_b.Vip4.ToString())})\s+b\.com", getent.Stdout);
        Assert.Matches($@"{Regex.Escape(_b.Vip4.ToString())}\s+STREAM b\.com", Sh.InNs(_client.Namespace, "getent", "ahostsv4", "b.com").Stdout);
    }

    [Fact]
    public void NameAddedAfterClientStarted_ResolvesOnNextQuery_RemovedGivesNxDomain()
    {
        Assert.Equal("NXDOMAIN", Status(Dig("late.relay.internal")));
        var late = _t.Network.AddService(new ServiceOptions { Name = "late.relay.internal" });
        Assert.Equal(late.Vip4.ToString(), Dig("+short", "late.relay.internal").Stdout.Trim());
        _t.Network.RemoveService("late.relay.internal");
        Assert.Equal("NXDOMAIN", Status(Dig("late.relay.internal")));
    }

    [Fact]
    public void Garbage_100000RandomAndMutatedPackets_ServerStillAnswersWithin100Ms()
    {
        var server = new IPEndPoint(_t.Network.Gateways.V4, 53);
        var valid = Query(0x4242, "b.com");
        var rng = new Random(7);
        using (var s = NsSockets.Udp(_client.Namespace, AddressFamily.InterNetwork))
        {
            var buf = new byte[600];
            for (var i = 0; i < 100_000; i++)
            {
                int len;
                if (i % 2 == 0)
                {
                    len = rng.Next(0, 600);
                    rng.NextBytes(buf.AsSpan(0, len));
                }
                else
                {
                    len = valid.Length + rng.Next(-valid.Length, 40);
                    len = Math.Clamp(len, 0, buf.Length);
                    valid.AsSpan(0, Math.Min(len, valid.Length)).CopyTo(buf);
                    rng.NextBytes(buf.AsSpan(Math.Min(len, valid.Length), len - Math.Min(len, valid.Length)));
                    for (var k = rng.Next(1, 4); k > 0 && len > 0; k--)
                    {
                        buf[rng.Next(len)] ^= (byte)(1 << rng.Next(8));
                    }
                }
                s.SendTo(buf.AsSpan(0, len), SocketFlags.None, server);
                if (i % 500 == 0)
                {
                    Thread.Sleep(1); // stays a torrent, but the test's own socket buffer must not be the bottleneck
                }
            }
        }
        using var probe = NsSockets.Udp(_client.Namespace, AddressFamily.InterNetwork);
        probe.ReceiveTimeout = 2000;
        var answer = new byte[512];
        var started = Stopwatch.GetTimestamp();
        probe.SendTo(valid, server);
        int n;
        do
        {
            n = probe.Receive(answer);
        }
        while (BinaryPrimitives.ReadUInt16BigEndian(answer) != 0x4242);
        var elapsed = Stopwatch.GetElapsedTime(started);
        Assert.True(n > valid.Length, "a real answer");
        Assert.True(elapsed < TimeSpan.FromMilliseconds(100), $"answered in {elapsed.TotalMilliseconds:F1} ms");
    }

    [Fact]
    public void Flood_OneClientFloods_OtherClientStillResolves()
    {
        var other = _t.Network.AddInstance("a.com");
        var server = new IPEndPoint(_t.Network.Gateways.V4, 53);
        using var stop = new CancellationTokenSource();
        var senders = NsSockets.ManyUdp(_client.Namespace, AddressFamily.InterNetwork, 2);
        var flooders = senders.Select(s => new Thread(() =>
        {
            var q = Query(1, "b.com");
            while (!stop.IsCancellationRequested)
            {
                s.SendTo(q, server);
            }
        })).ToArray();
        foreach (var f in flooders)
        {
            f.Start();
        }
        try
        {
            Thread.Sleep(300);
            // One try, one second: the flood's excess queues apart, so every lookup must succeed.
            for (var i = 0; i < 10; i++)
            {
                var r = Sh.InNs(other.Namespace, "dig", "+time=1", "+tries=1", "+short", "b.com");
                Assert.Equal(_b.Vip4.ToString(), r.Stdout.Trim());
            }
            var counters = _t.Network.DnsCounters;
            Assert.True(counters["UDP_HEAVY"] > 0, "the flood must have been recognised as heavy");
        }
        finally
        {
            stop.Cancel();
            foreach (var f in flooders)
            {
                f.Join();
            }
            foreach (var s in senders)
            {
                s.Dispose();
            }
        }
    }

    /// <summary>A minimal A query, built by hand (the codec under test is not used to test itself).</summary>
    internal static byte[] Query(ushort id, string name)
    {
        var labels = name.Split('.');
        var q = new byte[12 + labels.Sum(l => l.Length + 1) + 1 + 4];
        BinaryPrimitives.WriteUInt16BigEndian(q, id);
        q[2] = 0x01; // RD
        q[5] = 1;    // QDCOUNT
        var p = 12;
        foreach (var l in labels)
        {
            q[p++] = (byte)l.Length;
            foreach (var c in l)
            {
                q[p++] = (byte)c;
            }
        }
        q[p++] = 0;
        q[p + 1] = 1; // A
        q[p + 3] = 1; // IN
        return q;
    }
}
