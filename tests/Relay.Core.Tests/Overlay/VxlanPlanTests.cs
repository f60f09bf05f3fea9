using System.Net;
using System.Net.Sockets;
using Relay.Core.Overlay;

namespace Relay.Core.Tests.Overlay;

public sealed class VxlanPlanTests
{
    [Fact]
    public void Mtu_LeavesRoomForTheOuterHeaders()
    {
        Assert.Equal(1450, VxlanPlan.Mtu(AddressFamily.InterNetwork));
        Assert.Equal(1430, VxlanPlan.Mtu(AddressFamily.InterNetworkV6));
        Assert.Equal(8950, VxlanPlan.Mtu(AddressFamily.InterNetwork, 9000));
    }

    [Theory]
    [InlineData("host1")]
    [InlineData("lab-2")]
    [InlineData("a-very-long-node-name.example.com")]
    public void Mac_IsStableLocallyAdministeredUnicast(string node)
    {
        var mac = VxlanPlan.Mac(node);
        Assert.Equal(mac, VxlanPlan.Mac(node));
        Assert.Matches("^[0-9a-f]{2}(:[0-9a-f]{2}){5}$", mac);
        var first = Convert.ToByte(mac[..2], 16);
        Assert.Equal(0x02, first & 0x03); // locally administered, not multicast
    }

    [Fact]
    public void Mac_DiffersBetweenNodes()
    {
        var macs = Enumerable.Range(1, 1000).Select(i => VxlanPlan.Mac("node" + i)).ToHashSet();
        Assert.Equal(1000, macs.Count);
    }

    [Fact]
    public void NextHop_IsTheEui64LinkLocalOfTheMac()
    {
        var mac = VxlanPlan.Mac("host1").Split(':').Select(h => Convert.ToByte(h, 16)).ToArray();
        var hop = VxlanPlan.NextHop("host1").GetAddressBytes();
        Assert.Equal(new byte[] { 0xfe, 0x80, 0, 0, 0, 0, 0, 0 }, hop[..8]);
        Assert.Equal((byte)(mac[0] ^ 0x02), hop[8]);
        Assert.Equal(new byte[] { mac[1], mac[2], 0xff, 0xfe, mac[3], mac[4], mac[5] }, hop[9..]);
    }

    [Fact]
    public void Vni_IsStableAndInRange()
    {
        Assert.Equal(VxlanPlan.Vni("default"), VxlanPlan.Vni("default"));
        Assert.NotEqual(VxlanPlan.Vni("default"), VxlanPlan.Vni("other"));
        Assert.All(Enumerable.Range(0, 500).Select(i => VxlanPlan.Vni("n" + i)), v => Assert.InRange(v, 1, 16_777_214));
    }

    [Fact]
    public void Entries_PerPeer_AreFdbNeighbourAndARouteForEachBlock()
    {
        var peer = new VxlanPeer("host2", IPAddress.Parse("198.18.1.2"), [IPNetwork.Parse("10.64.0.64/26"), IPNetwork.Parse("fd00:64::40/122")]);
        var entries = VxlanPlan.Entries([peer]);

        Assert.Equal(4, entries.Count);
        Assert.Equal("bridge", entries[0].Tool);
        Assert.Equal($"fdb replace {VxlanPlan.Mac("host2")} dev relay-vx0 dst 198.18.1.2 self permanent", entries[0].Replace);
        Assert.Equal($"neigh replace {VxlanPlan.NextHop("host2")} lladdr {VxlanPlan.Mac("host2")} dev relay-vx0 nud permanent", entries[1].Replace);
        Assert.Equal($"route replace 10.64.0.64/26 via inet6 {VxlanPlan.NextHop("host2")} dev relay-vx0", entries[2].Replace);
        Assert.Equal($"route replace fd00:64::40/122 via {VxlanPlan.NextHop("host2")} dev relay-vx0", entries[3].Replace);
    }

    [Fact]
    public void Diff_RemovesOnlyWhatIsGone_RoutesBeforeTheirNeighbour()
    {
        var two = new VxlanPeer("host2", IPAddress.Parse("198.18.1.2"), [IPNetwork.Parse("10.64.0.64/26")]);
        var three = new VxlanPeer("host3", IPAddress.Parse("198.18.1.3"), [IPNetwork.Parse("10.64.0.128/26")]);
        var threeGrown = three with { Blocks = [IPNetwork.Parse("10.64.0.128/26"), IPNetwork.Parse("10.64.0.192/26")] };

        var (remove, install) = VxlanPlan.Diff([two, three], [threeGrown]);

        Assert.Equal(3, remove.Count);
        Assert.StartsWith("route del 10.64.0.64/26", remove[0].Delete);
        Assert.StartsWith("neigh del", remove[1].Delete);
        Assert.StartsWith("fdb del", remove[2].Delete);
        Assert.Equal(4, install.Count);
        Assert.Empty(VxlanPlan.Diff([three], [three]).Remove);
    }

    [Fact]
    public void CreateDevice_KeepsTheSocketWhereTheCommandRuns_AndTurnsLearningOff()
    {
        var v4 = VxlanPlan.CreateDevice("relay-default", "default", "host1", IPAddress.Parse("198.18.1.1"), 1450);
        Assert.Contains("netns relay-default", v4);
        Assert.Contains("nolearning", v4);
        Assert.Contains("mtu 1450", v4);
        Assert.Contains("local fd52::1 ", VxlanPlan.CreateDevice("relay-default", "default", "host1", IPAddress.Parse("fd52::1"), 1430));
    }
}
