using System.Diagnostics;
using System.Net;
using System.Text.RegularExpressions;
using Relay.Engine;
using Relay.Engine.Probes;
using Relay.Integration.Tests.Support;

namespace Relay.Integration.Tests.Dns;

/// <summary>Per-client flow addresses: handed out by DNS, translated per client, moved together or alone.</summary>
public sealed class FlowAddressTests : IDisposable
{
    private readonly TestNetwork _t = new();
    private readonly RelayNetwork _net;
    private readonly InstanceInfo _c1;
    private readonly InstanceInfo _c2;

    public FlowAddressTests()
    {
        _net = _t.Network;
        _net.AddService(new ServiceOptions { Name = "client.test" });
        _net.AddService(new ServiceOptions { Name = "flow.test", Addressing = AddressingModes.Flow, Policy = "round-robin" });
        _c1 = _net.AddInstance("client.test", new InstanceOptions { Name = "c1" });
        _c2 = _net.AddInstance("client.test", new InstanceOptions { Name = "c2" });
    }

    public void Dispose() => _t.Dispose();

    private static string Resolve(InstanceInfo client, string type = "A")
        => Sh.InNs(client.Namespace, "dig", "+time=2", "+tries=1", "+short", type, "flow.test").Stdout.Trim();

    [Fact]
    public void Resolve_TwoClients_DifferentAddresses_SameClientSameTwice()
    {
        _net.AddInstance("flow.test", new InstanceOptions { Name = "f1" });
        var c1First = Resolve(_c1);
        var c1Again = Resolve(_c1);
        var c2 = Resolve(_c2);
        Assert.Equal(c1First, c1Again);
        Assert.NotEqual(c1First, c2);
        Assert.StartsWith("10.90.", c1First);
        Assert.StartsWith("10.90.", c2);
        Assert.StartsWith("fd52:656c:6179:3::", Resolve(_c1, "AAAA"));
        var flows = _net.Flows("flow.test");
        Assert.Equal(["c1", "c2"], flows.Select(f => f.Client));
        Assert.All(flows, f => Assert.Equal("f1", f.Instance));
        Assert.Equal(c1First, flows[0].Flow4.ToString());
        // The service's shared virtual address is not what flow clients get.
        Assert.NotEqual(_net.GetService("flow.test").Vip4.ToString(), c1First);
    }

    [Fact]
    public void Migrate_MovesEveryFlowInOneGo_NoPingLost()
    {
        _net.AddInstance("flow.test", new InstanceOptions { Name = "f1" });
        var pings = new[] { _c1, _c2 }.Select(c => Start(c.Namespace, "ping", "-4", "-f", "-q", "-w", "4", "flow.test")).ToArray();
        try
        {
            Thread.Sleep(700);
            var m = _net.Replace("f1", TimeSpan.Zero, newName: "f2");
            Assert.True(m.StaleFlowsDeleted >= 2, $"both clients' ICMP flows must have been moved ({m.StaleFlowsDeleted})");
            Assert.All(_net.Flows("flow.test"), f => Assert.Equal("f2", f.Instance));
            foreach (var p in pings)
            {
                p.WaitForExit();
                var output = p.StandardOutput.ReadToEnd();
                var match = Regex.Match(output, @"(\d+) packets transmitted, (\d+) received");
                Assert.True(match.Success, output + p.StandardError.ReadToEnd());
                Assert.True(long.Parse(match.Groups[1].Value) > 1000, output);
                Assert.Equal(match.Groups[1].Value, match.Groups[2].Value);
            }
        }
        finally
        {
            foreach (var p in pings)
            {
                p.Dispose();
            }
        }
        var counted = _net.Flows("flow.test");
        Assert.All(counted, f => Assert.True(f.Packets > 1000 && f.Bytes > 1000 * 84, $"{f.Client}: {f.Packets} packets, {f.Bytes} bytes"));
    }

    [Fact]
    public void RepointFlow_OneClient_OnlyThatFlowMoves()
    {
        _net.AddInstance("flow.test", new InstanceOptions { Name = "f1" });
        Resolve(_c1);
        Resolve(_c2);
        var target = _net.AddInstance("flow.test", new InstanceOptions { Name = "f2" });
        var before = _net.Flows("flow.test").ToDictionary(f => f.Client);
        Assert.All(before.Values, f => Assert.Equal("f1", f.Instance));

        using var watcher = new IcmpEchoWatcher(target.Namespace);
        var moved = _net.RepointFlow("c1", "flow.test", "f2");
        Assert.Equal("f2", moved.Instance);
        var after = _net.Flows("flow.test").ToDictionary(f => f.Client);
        Assert.Equal("f2", after["c1"].Instance);
        Assert.Equal("f1", after["c2"].Instance);
        Assert.Equal(before["c1"].Flow4, after["c1"].Flow4);

        // Traffic agrees: c2's pings do not reach f2, c1's do.
        Assert.Equal(0, Sh.InNs(_c2.Namespace, "ping", "-4", "-c", "3", "-i", "0.2", "flow.test").ExitCode);
        Assert.Equal(0, watcher.Count);
        Assert.Equal(0, Sh.InNs(_c1.Namespace, "ping", "-4", "-c", "3", "-i", "0.2", "flow.test").ExitCode);
        Assert.True(watcher.WaitFirst(TimeSpan.FromSeconds(2)) != 0);
        Assert.Equal(3, watcher.Count);
    }

    [Fact]
    public async Task RemoveClient_ReleasesItsFlowAddresses()
    {
        _net.AddInstance("flow.test", new InstanceOptions { Name = "f1" });
        var gone = Resolve(_c1);
        Resolve(_c2);
        Assert.Contains(gone + " : ", _net.ListTable());
        await _net.RemoveInstanceAsync("c1", TimeSpan.Zero);
        Assert.Equal(["c2"], _net.Flows().Select(f => f.Client));
        Assert.DoesNotContain(gone + " ", _net.ListTable());
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
