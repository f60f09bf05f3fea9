using System.Net;
using System.Net.Sockets;
using Relay.Core.Overlay;
using Relay.Integration.Tests.Support;
using Relay.Linux.Namespaces;
using Relay.Linux.Topology;

namespace Relay.Integration.Tests.Cluster;

/// <summary>
/// Two orchestrators on two lab hosts joined by Relay's static VXLAN overlay: an instance behind
/// one reaches an instance behind the other over IPv4 and IPv6, over an IPv4 or an IPv6 underlay,
/// with the reduced MTU on the instance's own veth.
/// </summary>
// Lab processes (etcd, daemons) start through `ip netns exec` while other tests add and delete
// namespaces: run them apart from the parallel tests.
[Collection(HostStateCollection.Name)]
public sealed class VxlanOverlayTests(LabFixture lab) : IClassFixture<LabFixture>
{
    [Theory]
    [InlineData(AddressFamily.InterNetwork, 1450)]
    [InlineData(AddressFamily.InterNetworkV6, 1430)]
    public void InstancesOnTwoHosts_ReachEachOther_OverStaticEntries_WithTheReducedMtu(AddressFamily underlay, int mtu)
    {
        Assert.Equal(mtu, VxlanPlan.Mtu(underlay));
        var id = Guid.NewGuid().ToString("N")[..6];
        var hosts = lab.Lab.Hosts.Take(2).ToArray();
        string[] orchestrators = [$"relay.vxt{id}.o1", $"relay.vxt{id}.o2"];
        string[] instances = [$"relay.vxt{id}.i1", $"relay.vxt{id}.i2"];
        IPAddress[] v4 = [IPAddress.Parse("10.64.0.2"), IPAddress.Parse("10.64.0.66")];
        IPAddress[] v6 = [IPAddress.Parse("fd00:64::2"), IPAddress.Parse("fd00:64::42")];
        IPNetwork[][] blocks = [[IPNetwork.Parse("10.64.0.0/26"), IPNetwork.Parse("fd00:64::/122")], [IPNetwork.Parse("10.64.0.64/26"), IPNetwork.Parse("fd00:64::40/122")]];
        var gateways = new Gateways(IPAddress.Parse("10.64.0.1"), IPAddress.Parse("fd00:64::1"));
        var peers = hosts.Select((h, i) => new VxlanPeer(h.Name, IPAddress.Parse(underlay == AddressFamily.InterNetwork ? h.Underlay4 : h.Underlay6), blocks[i])).ToArray();
        var threads = new List<NetnsThread>();
        try
        {
            for (var i = 0; i < 2; i++)
            {
                threads.Add(TopologyBuilder.CreateOrchestrator(orchestrators[i]));
                TopologyBuilder.WireInstance(orchestrators[i], gateways, new InstanceWiring(instances[i], "rv1", v4[i], v6[i]), mtu);
                VxlanOverlay.Create(hosts[i].Namespace, orchestrators[i], "default", hosts[i].Name, peers[i].Underlay, mtu);
                VxlanOverlay.Sync(orchestrators[i], [], [peers[1 - i]]);
            }
            // The device is in the orchestrator, not in the host's namespace, and learns nothing.
            Assert.Contains("nolearning", Sh.Ok("ip", "-n", orchestrators[0], "-d", "link", "show", VxlanPlan.DeviceName));
            Assert.DoesNotContain(VxlanPlan.DeviceName, Sh.Ok("ip", "-n", hosts[0].Namespace, "link", "show"));
            Assert.Contains($"mtu {mtu}", Sh.Ok("ip", "-n", instances[0], "link", "show", "eth0"));

            Ping(instances[0], v4[1]);
            Ping(instances[0], v6[1]);
            Ping(instances[1], v4[0]);
            // The biggest packet that fits goes through unfragmented; one byte more is refused at
            // the instance (DF set), rather than vanishing in the tunnel.
            Assert.Equal(0, PingSized(instances[0], v4[1], mtu - 28));
            Assert.NotEqual(0, PingSized(instances[0], v4[1], mtu - 27));
            Assert.Equal(0, PingSized(instances[0], v6[1], mtu - 48));

            // Without the peer's entries, nothing gets there: the path is the static one.
            VxlanOverlay.Sync(orchestrators[0], [peers[1]], []);
            Assert.DoesNotContain("10.64.0.64/26", Sh.Ok("ip", "-n", orchestrators[0], "route", "show"));
            Assert.NotEqual(0, Sh.Run("ip", "netns", "exec", instances[0], "ping", "-c", "1", "-W", "1", v4[1].ToString()).ExitCode);
            VxlanOverlay.Sync(orchestrators[0], [], [peers[1]]);
            Ping(instances[0], v4[1]);
        }
        finally
        {
            for (var i = 0; i < 2; i++)
            {
                VxlanOverlay.Remove(orchestrators[i]);
                TopologyBuilder.UnwireInstance(orchestrators[i], new InstanceWiring(instances[i], "rv1", v4[i], v6[i]));
            }
            foreach (var t in threads)
            {
                t.Dispose();
            }
            foreach (var o in orchestrators)
            {
                Netns.Delete(o);
            }
        }
    }

    private static void Ping(string netns, IPAddress to)
    {
        var r = Sh.Run("ip", "netns", "exec", netns, "ping", "-c", "3", "-i", "0.2", "-W", "2", to.ToString());
        Assert.True(r.ExitCode == 0, $"ping {to} from {netns}: {r.Stdout}{r.Stderr}");
    }

    private static int PingSized(string netns, IPAddress to, int payload)
        => Sh.Run("ip", "netns", "exec", netns, "ping", "-c", "1", "-W", "2", "-M", "do", "-s", payload.ToString(System.Globalization.CultureInfo.InvariantCulture), to.ToString()).ExitCode;
}
