using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using Relay.Engine;
using Relay.Engine.Probes;
using Relay.Integration.Tests.Support;

namespace Relay.Integration.Tests.Engine;

public sealed class MigrationTests
{
    [Fact]
    public void Migrate_UnderPingFlood_20TimesInARow_LosesNothing()
    {
        using var t = new TestNetwork();
        var net = t.Network;
        net.AddService(new ServiceOptions { Name = "a.com" });
        var b = net.AddService(new ServiceOptions { Name = "b.com" });
        var a = net.AddInstance("a.com");
        var current = net.AddInstance("b.com").Name;

        using var ping4 = Start(a.Namespace, "ping", "-f", "-q", "-w", "8", b.Vip4.ToString());
        using var ping6 = Start(a.Namespace, "ping", "-f", "-q", "-w", "8", b.Vip6.ToString());
        Thread.Sleep(500);
        for (var i = 0; i < 20; i++)
        {
            var m = net.Replace(current, TimeSpan.Zero);
            Assert.Equal(current, m.From);
            current = m.To;
            Thread.Sleep(50);
        }
        Assert.Equal([current], net.GetService("b.com").Backends);
        foreach (var p in new[] { ping4, ping6 })
        {
            p.WaitForExit();
            var output = p.StandardOutput.ReadToEnd();
            var m = Regex.Match(output, @"(\d+) packets transmitted, (\d+) received");
            Assert.True(m.Success, output + p.StandardError.ReadToEnd());
            var sent = long.Parse(m.Groups[1].Value);
            var received = long.Parse(m.Groups[2].Value);
            Assert.True(sent > 1000, output);
            Assert.Equal(sent, received);
        }
    }

    [Fact]
    public void Migrate_UdpFromFixedSourcePort_NothingReachesOldInstanceAfterTheCall()
    {
        using var t = new TestNetwork();
        var net = t.Network;
        net.AddService(new ServiceOptions { Name = "c.com" });
        var svc = net.AddService(new ServiceOptions { Name = "a.com" });
        var client = net.AddInstance("c.com");
        var oldInstance = net.AddInstance("a.com");
        var newInstance = net.AddInstance("a.com", new InstanceOptions { Standby = true });
        using var oldSink = new UdpSink(oldInstance.Namespace, AddressFamily.InterNetwork, 9000);
        using var newSink = new UdpSink(newInstance.Namespace, AddressFamily.InterNetwork, 9000);
        long cutoff;
        long last;
        using (var stream = new UdpStream(client.Namespace, new IPEndPoint(svc.Vip4, 9000), 40000, TimeSpan.FromMilliseconds(0.5)))
        {
            BalancingTests.WaitUntil(() => oldSink.Count >= 200, TimeSpan.FromSeconds(5));
            var m = net.Migrate("a.com", oldInstance.Name, newInstance.Name, TimeSpan.FromSeconds(5));
            cutoff = stream.LastSent;
            Assert.True(m.StaleFlowsDeleted >= 1, "the fixed-port flow's conntrack entry must have been deleted");
            BalancingTests.WaitUntil(() => newSink.Count >= 500, TimeSpan.FromSeconds(5));
        }
        Thread.Sleep(200);
        last = Math.Max(oldSink.Sequences.DefaultIfEmpty().Max(), newSink.Sequences.DefaultIfEmpty().Max());
        var late = oldSink.Sequences.Where(s => s > cutoff).ToArray();
        Assert.True(late.Length == 0, $"{late.Length} datagrams sent after the migrate call returned reached the old instance");
        var seen = oldSink.Sequences.Concat(newSink.Sequences).ToHashSet();
        var missing = Enumerable.Range(1, (int)last).Count(s => !seen.Contains(s));
        Assert.True(missing == 0, $"{missing} of {last} datagrams were lost");
        Assert.True(newSink.Sequences.Count(s => s > cutoff) > 0);
    }

    [Fact]
    public async Task Migrate_OpenTcpConnection_DrainsOnOldInstance_NewConnectionsGoToNew()
    {
        using var t = new TestNetwork();
        var (net, client, b1, vip) = EchoPair(t);

        using var old = NsSockets.TcpConnect(client.Namespace, vip);
        Assert.Equal("b1", ReadLine(old));
        var m = net.Migrate("echo.test", "b1", "b2", TimeSpan.FromSeconds(20));
        Assert.Equal("ping1", Echo(old, "ping1"));
        using (var fresh = NsSockets.TcpConnect(client.Namespace, vip))
        {
            Assert.Equal("b2", ReadLine(fresh));
        }
        Assert.False(m.Drained.IsCompleted, "the old instance must wait for its open connection");
        Assert.Equal("ping2", Echo(old, "ping2"));
        // The drain looks at the kernel's table every 100 ms (on the thread pool, late when the
        // machine is busy): close only once it has seen the connection, as users watching
        // `relay instance ls` would.
        BalancingTests.WaitUntil(() => net.Instances.Single(i => i.Name == "b1").OpenTcpFlows == 1, TimeSpan.FromSeconds(10));
        var b1Now = net.Instances.Single(i => i.Name == "b1");
        Assert.Equal(InstanceState.Draining, b1Now.State);
        Assert.NotNull(b1Now.DrainUntil);
        Assert.False(m.Drained.IsCompleted);
        old.Shutdown(SocketShutdown.Both);
        old.Close();
        var drained = await m.Drained.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(1, drained.TcpFlowsAtStart);
        Assert.Equal(0, drained.TcpFlowsCut);
        Assert.DoesNotContain(net.Instances, i => i.Name == "b1");
    }

    [Fact]
    public async Task Migrate_DeadlineZero_CutsOpenTcpConnection()
    {
        using var t = new TestNetwork();
        var (net, client, b1, vip) = EchoPair(t);

        using var old = NsSockets.TcpConnect(client.Namespace, vip);
        Assert.Equal("b1", ReadLine(old));
        var m = net.Migrate("echo.test", "b1", "b2", TimeSpan.Zero);
        var drained = await m.Drained.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(1, drained.TcpFlowsCut);
        Assert.False(Netns(b1.Namespace), "the old instance's namespace must be gone");
        // The connection is gone: the next exchange fails (reset) instead of reaching b1.
        var failed = false;
        try
        {
            old.Send(Encoding.ASCII.GetBytes("after\n"));
            var buf = new byte[64];
            failed = old.Receive(buf) == 0;
        }
        catch (SocketException)
        {
            failed = true;
        }
        Assert.True(failed, "the old connection should have been cut");
    }

    /// <summary>A client and an echo service with b1 in the balancer and b2 in standby, both serving TCP 7000.</summary>
    private static (RelayNetwork Net, InstanceInfo Client, InstanceInfo B1, IPEndPoint Vip) EchoPair(TestNetwork t)
    {
        var net = t.Network;
        net.AddService(new ServiceOptions { Name = "client.test" });
        var svc = net.AddService(new ServiceOptions { Name = "echo.test" });
        var client = net.AddInstance("client.test");
        var b1 = net.AddInstance("echo.test", new InstanceOptions { Name = "b1", Command = EchoServer("b1") });
        var b2 = net.AddInstance("echo.test", new InstanceOptions { Name = "b2", Command = EchoServer("b2"), Standby = true });
        WaitListening(b1.Namespace);
        WaitListening(b2.Namespace);
        return (net, client, b1, new IPEndPoint(svc.Vip4, 7000));
    }

    private static bool Netns(string name) => Relay.Linux.Namespaces.Netns.Exists(name);

    internal static string[] EchoServer(string name)
        => ["socat", "TCP-LISTEN:7000,fork,reuseaddr", $"SYSTEM:echo {name}; exec cat"];

    internal static void WaitListening(string netns)
        => BalancingTests.WaitUntil(() => Sh.InNs(netns, "ss", "-ltn").Stdout.Contains(":7000"), TimeSpan.FromSeconds(5));

    private static string ReadLine(Socket s)
    {
        var sb = new StringBuilder();
        var b = new byte[1];
        while (s.Receive(b) == 1 && b[0] != '\n')
        {
            sb.Append((char)b[0]);
        }
        return sb.ToString();
    }

    private static string Echo(Socket s, string text)
    {
        s.Send(Encoding.ASCII.GetBytes(text + "\n"));
        return ReadLine(s);
    }

    private static Process Start(string netns, params string[] command)
    {
        var psi = new ProcessStartInfo("ip") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "netns", "exec", netns }.Concat(command))
        {
            psi.ArgumentList.Add(a);
        }
        return Process.Start(psi)!;
    }
}
