using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using Relay.Core.Model;
using Relay.Engine;
using Relay.Engine.Probes;
using Relay.Integration.Tests.Support;

namespace Relay.Integration.Tests.Engine;

public sealed class BalancingTests
{
    [Fact]
    public void Ping_VirtualAddresses_ReplyComesFromTheVirtualAddress()
    {
        using var t = new TestNetwork();
        var net = t.Network;
        net.AddService(new ServiceOptions { Name = "a.com" });
        var b = net.AddService(new ServiceOptions { Name = "b.com" });
        var a1 = net.AddInstance("a.com", new InstanceOptions { Name = "a1" });
        var b1 = net.AddInstance("b.com", new InstanceOptions { Name = "b1" });

        foreach (var vip in new[] { b.Vip4, b.Vip6 })
        {
            var r = Sh.InNs(a1.Namespace, "ping", "-c", "3", "-i", "0.2", "-W", "2", vip.ToString());
            Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
            Assert.Contains("3 received", r.Stdout);
            var froms = Regex.Matches(r.Stdout, @"bytes from ([0-9a-f:.]+):").Select(m => m.Groups[1].Value).Distinct().ToArray();
            Assert.Equal([vip.ToString()], froms);
        }
        // It really was translated to b1: the orchestrator's conntrack shows the flows.
        var flows = net.ListFlows();
        Assert.Contains(flows, f => f.Original.Destination.Equals(b.Vip4) && f.Reply.Source.Equals(b1.Address4));
        Assert.Contains(flows, f => f.Original.Destination.Equals(b.Vip6) && f.Reply.Source.Equals(b1.Address6));
    }

    [Theory]
    [InlineData("random")]
    [InlineData("round-robin")]
    [InlineData("maglev")]
    public void Udp_3000FlowsOver3Instances_EachGetsAThird(string policy)
    {
        using var t = new TestNetwork();
        var net = t.Network;
        net.AddService(new ServiceOptions { Name = "client.test" });
        var client = net.AddInstance("client.test");
        var svc = net.AddService(new ServiceOptions { Name = "spread.test", Policy = policy });
        var sinks = new List<UdpSink>();
        try
        {
            for (var i = 0; i < 3; i++)
            {
                var inst = net.AddInstance("spread.test");
                sinks.Add(new UdpSink(inst.Namespace, AddressFamily.InterNetwork, 9000));
            }
            var senders = NsSockets.ManyUdp(client.Namespace, AddressFamily.InterNetwork, 3000);
            try
            {
                var to = new IPEndPoint(svc.Vip4, 9000);
                var payload = new byte[8];
                for (var i = 0; i < senders.Length; i++)
                {
                    senders[i].SendTo(payload, to);
                    if (i % 100 == 99)
                    {
                        // Paced so no receive buffer overflows: the test is about where flows go.
                        Thread.Sleep(2);
                    }
                }
                WaitUntil(() => sinks.Sum(k => k.Count) >= 3000, TimeSpan.FromSeconds(10), () => string.Join(", ", sinks.Select(k => k.Count)));
            }
            finally
            {
                foreach (var s in senders)
                {
                    s.Dispose();
                }
            }
            var counts = sinks.Select(k => k.Count).ToArray();
            Assert.Equal(3000, counts.Sum());
            foreach (var c in counts)
            {
                var share = c / 3000.0;
                Assert.True(Math.Abs(share - 1 / 3.0) <= 0.05, $"{policy}: shares {string.Join(", ", counts)}");
            }
        }
        finally
        {
            sinks.ForEach(s => s.Dispose());
        }
    }

    [Fact]
    public void Source_SameClient_AlwaysSameInstance()
    {
        using var t = new TestNetwork();
        var net = t.Network;
        net.AddService(new ServiceOptions { Name = "client.test" });
        var client = net.AddInstance("client.test");
        var svc = net.AddService(new ServiceOptions { Name = "sticky.test", Policy = "source" });
        var sinks = new List<UdpSink>();
        try
        {
            for (var i = 0; i < 3; i++)
            {
                sinks.Add(new UdpSink(net.AddInstance("sticky.test").Namespace, AddressFamily.InterNetwork, 9000));
            }
            var senders = NsSockets.ManyUdp(client.Namespace, AddressFamily.InterNetwork, 200);
            foreach (var s in senders)
            {
                s.SendTo(new byte[8], new IPEndPoint(svc.Vip4, 9000));
                s.Dispose();
            }
            WaitUntil(() => sinks.Sum(k => k.Count) >= 200, TimeSpan.FromSeconds(10));
            Assert.Single(sinks, k => k.Count == 200);
        }
        finally
        {
            sinks.ForEach(s => s.Dispose());
        }
    }

    [Fact]
    public void PortMapping_VirtualPortReachesTargetPort_OtherPortsDoNot()
    {
        using var t = new TestNetwork();
        var net = t.Network;
        net.AddService(new ServiceOptions { Name = "client.test" });
        var client = net.AddInstance("client.test");
        var svc = net.AddService(new ServiceOptions
        {
            Name = "web.test",
            Ports = [new PortMapping(TransportProtocol.Tcp, 80, 8080), new PortMapping(TransportProtocol.Udp, 53, 5353)],
        });
        var web = net.AddInstance("web.test", new InstanceOptions
        {
            Command = ["socat", "TCP6-LISTEN:8080,ipv6only=0,fork,reuseaddr", "SYSTEM:echo hello-from-web"],
        });
        using var udp = new UdpSink(web.Namespace, AddressFamily.InterNetwork, 5353);
        WaitUntil(() => Sh.InNs(web.Namespace, "ss", "-ltn").Stdout.Contains(":8080"), TimeSpan.FromSeconds(5));

        foreach (var vip in new[] { svc.Vip4, svc.Vip6 })
        {
            var host = vip.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{vip}]" : vip.ToString();
            var r = Sh.InNs(client.Namespace, "socat", "-T", "2", "-", $"TCP:{host}:80");
            Assert.True(r.ExitCode == 0, r.Stderr);
            Assert.Equal("hello-from-web", r.Stdout.Trim());
            // Port 8080 on the virtual address is not mapped: no translation, no route.
            var miss = Sh.InNs(client.Namespace, "socat", "-T", "2", "-", $"TCP:{host}:8080,connect-timeout=2");
            Assert.NotEqual(0, miss.ExitCode);
        }
        using (var s = NsSockets.Udp(client.Namespace, AddressFamily.InterNetwork))
        {
            s.SendTo(new byte[8], new IPEndPoint(svc.Vip4, 53));
        }
        WaitUntil(() => udp.Count == 1, TimeSpan.FromSeconds(5));
    }

    [Fact]
    public void Hairpin_InstanceReachesItselfThroughItsVirtualAddress()
    {
        using var t = new TestNetwork();
        var net = t.Network;
        var svc = net.AddService(new ServiceOptions { Name = "self.test" });
        var only = net.AddInstance("self.test");
        foreach (var vip in new[] { svc.Vip4, svc.Vip6 })
        {
            var r = Sh.InNs(only.Namespace, "ping", "-c", "2", "-i", "0.2", "-W", "2", vip.ToString());
            Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
        }
    }

    [Fact]
    public void AntiSpoofing_ForgedSource_IsDropped_RealSource_Passes()
    {
        using var t = new TestNetwork();
        var net = t.Network;
        net.AddService(new ServiceOptions { Name = "a.test" });
        net.AddService(new ServiceOptions { Name = "b.test" });
        var a = net.AddInstance("a.test");
        var b = net.AddInstance("b.test");
        using var sink = new UdpSink(b.Namespace, AddressFamily.InterNetwork, 9000);
        // Give a's namespace an address that is not its own (another instance's would do too),
        // and send from it: the orchestrator must drop it at the door.
        const string forged = "10.88.200.200";
        Sh.Ok("ip", "-n", a.Namespace, "addr", "add", forged + "/32", "dev", "eth0");
        using (var s = NsSockets.Udp(a.Namespace, AddressFamily.InterNetwork, 0, IPAddress.Parse(forged)))
        {
            for (var i = 0; i < 5; i++)
            {
                s.SendTo(new byte[8], new IPEndPoint(b.Address4, 9000));
            }
        }
        Thread.Sleep(300);
        Assert.Equal(0, sink.Count);
        var guard = Sh.Ok("ip", "netns", "exec", net.OrchestratorNamespace, "nft", "list", "chain", "inet", "relay", "guard");
        Assert.Matches(@"counter packets [1-9]\d* bytes \d+ drop", guard);

        using (var s = NsSockets.Udp(a.Namespace, AddressFamily.InterNetwork, 0, a.Address4))
        {
            s.SendTo(new byte[8], new IPEndPoint(b.Address4, 9000));
        }
        WaitUntil(() => sink.Count == 1, TimeSpan.FromSeconds(5));
    }

    internal static void WaitUntil(Func<bool> condition, TimeSpan timeout, Func<string>? state = null)
    {
        var until = DateTime.UtcNow + timeout;
        while (!condition())
        {
            if (DateTime.UtcNow > until)
            {
                Assert.Fail($"condition not met within {timeout}{(state is null ? "" : ": " + state())}");
            }
            Thread.Sleep(20);
        }
    }
}
