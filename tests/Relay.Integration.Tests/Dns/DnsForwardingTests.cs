using Relay.Engine;
using Relay.Integration.Tests.Engine;
using Relay.Integration.Tests.Support;

namespace Relay.Integration.Tests.Dns;

public sealed class DnsForwardingTests
{
    [Fact]
    public void Dig_NameOutsideZones_WithUpstream_ForwardedOverUdpAndTcp()
    {
        // The first instance always gets the pool's first free address; it runs the upstream.
        using var t = new TestNetwork(o => o with { Dns = new DnsSettings { Upstreams = ["10.88.0.2"] } });
        var net = t.Network;
        net.AddService(new ServiceOptions { Name = "upstream.test" });
        var hosts = Path.Combine(Path.GetTempPath(), t.Network.Name + "-hosts");
        File.WriteAllText(hosts, "192.0.2.10 outside.example\n");
        try
        {
            var upstream = net.AddInstance("upstream.test", new InstanceOptions
            {
                Command = ["dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", $"--addn-hosts={hosts}", "--listen-address=10.88.0.2", "--bind-interfaces", "--pid-file="],
            });
            Assert.Equal("10.88.0.2", upstream.Address4.ToString());
            var client = net.AddInstance("upstream.test");
            BalancingTests.WaitUntil(() => Sh.InNs(upstream.Namespace, "ss", "-lun").Stdout.Contains("10.88.0.2:53"), TimeSpan.FromSeconds(5));

            var udp = Sh.InNs(client.Namespace, "dig", "+time=2", "+tries=2", "+short", "outside.example");
            Assert.Equal("192.0.2.10", udp.Stdout.Trim());
            var tcp = Sh.InNs(client.Namespace, "dig", "+tcp", "+time=2", "+tries=2", "+short", "outside.example");
            Assert.Equal("192.0.2.10", tcp.Stdout.Trim());
            // Service names are still answered by Relay itself.
            Assert.Equal(net.GetService("upstream.test").Vip4.ToString(), Sh.InNs(client.Namespace, "dig", "+short", "upstream.test").Stdout.Trim());
            Assert.True(net.DnsCounters["FORWARDED"] >= 2);
        }
        finally
        {
            File.Delete(hosts);
        }
    }
}
