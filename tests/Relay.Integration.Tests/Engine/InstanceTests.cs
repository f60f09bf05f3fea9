using System.Net;
using System.Net.Sockets;
using Relay.Engine;
using Relay.Engine.Probes;
using Relay.Integration.Tests.Support;

namespace Relay.Integration.Tests.Engine;

public sealed class InstanceTests
{
    [Fact]
    public async Task AddInstance_WithCommand_OutputCapturedAndStoppedWithTheInstance()
    {
        using var t = new TestNetwork();
        var net = t.Network;
        net.AddService(new ServiceOptions { Name = "worker.test" });
        var w = net.AddInstance("worker.test", new InstanceOptions
        {
            // The command sees its own namespace: its address is the instance's.
            Command = ["sh", "-c", "echo started; ip -o -4 addr show dev eth0; exec sleep 300"],
        });
        Assert.NotNull(w.Pid);
        BalancingTests.WaitUntil(() => net.Logs(w.Name).Any(l => l.Contains(w.Address4.ToString())), TimeSpan.FromSeconds(5), () => string.Join(" | ", net.Logs(w.Name)));
        Assert.Equal("started", net.Logs(w.Name)[0]);
        var pid = w.Pid!.Value;

        var drained = await net.RemoveInstanceAsync(w.Name).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(0, drained.TcpFlowsAtStart);
        Assert.False(Directory.Exists($"/proc/{pid}"), "the command must stop with its instance");
        Assert.False(Relay.Linux.Namespaces.Netns.Exists(w.Namespace));
        Assert.Empty(net.Instances);
    }

    [Fact]
    public async Task RemoveInstance_ActiveBackend_UdpFlowMovesToTheOtherInstance()
    {
        using var t = new TestNetwork();
        var net = t.Network;
        net.AddService(new ServiceOptions { Name = "client.test" });
        var svc = net.AddService(new ServiceOptions { Name = "pair.test" });
        var client = net.AddInstance("client.test");
        var first = net.AddInstance("pair.test");
        using var firstSink = new UdpSink(first.Namespace, AddressFamily.InterNetwork, 9000);
        using var stream = new UdpStream(client.Namespace, new IPEndPoint(svc.Vip4, 9000), 41000, TimeSpan.FromMilliseconds(1));
        BalancingTests.WaitUntil(() => firstSink.Count > 50, TimeSpan.FromSeconds(5));
        var second = net.AddInstance("pair.test");
        using var secondSink = new UdpSink(second.Namespace, AddressFamily.InterNetwork, 9000);
        Thread.Sleep(100);
        // The flow is pinned by conntrack: a new instance does not take it over.
        Assert.Equal(0, secondSink.Count);

        var drained = net.RemoveInstanceAsync(first.Name);
        BalancingTests.WaitUntil(() => secondSink.Count > 50, TimeSpan.FromSeconds(5));
        await drained.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal([second.Name], net.GetService("pair.test").Backends);
    }

    [Fact]
    public async Task Resync_AfterChanges_KernelTableUnchanged()
    {
        using var t = new TestNetwork();
        var net = t.Network;
        net.AddService(new ServiceOptions { Name = "a.test", Policy = "maglev" });
        net.AddService(new ServiceOptions { Name = "b.test", Policy = "round-robin", Ports = [new Relay.Core.Model.PortMapping(Relay.Core.Model.TransportProtocol.Udp, 53, 53)] });
        var a1 = net.AddInstance("a.test");
        net.AddInstance("a.test");
        net.AddInstance("b.test");
        var b2 = net.AddInstance("b.test", new InstanceOptions { Standby = true });
        await net.Migrate("b.test", net.GetService("b.test").Backends[0], b2.Name, TimeSpan.Zero).Drained;
        await net.RemoveInstanceAsync(a1.Name, TimeSpan.Zero);
        var before = Normalize(net.ListTable());
        net.Resync();
        Assert.Equal(before, Normalize(net.ListTable()));
    }

    // Element order within a listing follows the kernel's hash order; chains follow creation order.
    private static string Normalize(string listing)
        => string.Join('\n', listing.Split('\n').Select(l => l.Trim().TrimEnd(',')).Where(l => l.Length > 0).SelectMany(l => l.Split(", ")).Order(StringComparer.Ordinal));
}
