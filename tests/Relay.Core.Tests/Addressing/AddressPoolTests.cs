using System.Net;
using Relay.Core.Addressing;
using Relay.Core.Errors;

namespace Relay.Core.Tests.Addressing;

public class AddressPoolTests
{
    private static AddressPool Pool(string prefix, params string[] reserved)
        => new("virtual IPv4", IPNetwork.Parse(prefix), reserved.Select(IPAddress.Parse));

    private static IPAddress Ip(string s) => IPAddress.Parse(s);

    /// <summary>What the engine does for one automatic allocation: plan, then claim.</summary>
    private static IPAddress Allocate(AddressPool pool)
    {
        var address = pool.PeekOne("vip");
        pool.Claim(address);
        return address;
    }

    private static string[] Strings(IEnumerable<IPAddress> addresses) => addresses.Select(a => a.ToString()).ToArray();

    [Fact]
    public void PeekNext_FreshIpv4Pool_StartsAfterNetworkAddress()
    {
        var pool = Pool("10.99.0.0/24");

        Assert.Equal(["10.99.0.1", "10.99.0.2", "10.99.0.3"], Strings(pool.PeekNext(3)));
    }

    [Fact]
    public void PeekNext_CalledTwice_ReturnsSameAndChangesNothing()
    {
        var pool = Pool("10.99.0.0/24");

        var first = Strings(pool.PeekNext(2));
        var second = Strings(pool.PeekNext(2));

        Assert.Equal(first, second);
        Assert.Equal(0, pool.Allocated);
        Assert.False(pool.IsAllocated(Ip("10.99.0.1")));
        Assert.Equal(Ip("10.99.0.1"), pool.PeekOne("vip"));
        Assert.Equal(Ip("10.99.0.1"), pool.PeekOne("vip"));
    }

    [Fact]
    public void PeekNext_ZeroCount_ReturnsEmpty()
    {
        var pool = Pool("10.99.0.0/24");

        Assert.Empty(pool.PeekNext(0));
    }

    [Fact]
    public void PeekNext_NegativeCount_ReturnsEmpty()
    {
        var pool = Pool("10.99.0.0/24");

        Assert.Empty(pool.PeekNext(-1));
    }

    [Fact]
    public void PeekNext_WithSkip_LeavesPlannedAddressesAside()
    {
        var pool = Pool("10.99.0.0/24");
        var planned = new HashSet<IPAddress> { Ip("10.99.0.1"), Ip("10.99.0.3") };

        Assert.Equal(["10.99.0.2", "10.99.0.4", "10.99.0.5"], Strings(pool.PeekNext(3, planned)));
        Assert.Equal(Ip("10.99.0.2"), pool.PeekOne("vip", planned));
    }

    [Fact]
    public void PeekNext_ReservedAddresses_AreSkipped()
    {
        var pool = Pool("10.99.0.0/24", "10.99.0.1", "10.99.0.3", "192.168.1.1");

        Assert.Equal(["10.99.0.2", "10.99.0.4"], Strings(pool.PeekNext(2)));
        Assert.False(pool.Contains(Ip("10.99.0.1")));
        Assert.True(pool.Contains(Ip("10.99.0.2")));
    }

    [Fact]
    public void Claim_AutomaticAllocation_AdvancesCursor()
    {
        var pool = Pool("10.99.0.0/24");

        Assert.Equal(Ip("10.99.0.1"), Allocate(pool));
        Assert.Equal(Ip("10.99.0.2"), Allocate(pool));
        Assert.Equal(Ip("10.99.0.3"), pool.PeekOne("vip"));
        Assert.Equal(2, pool.Allocated);
        Assert.True(pool.IsAllocated(Ip("10.99.0.2")));
    }

    [Fact]
    public void Claim_ExplicitAddress_CursorJumpsPastIt()
    {
        var pool = Pool("10.99.0.0/24");

        pool.Claim(Ip("10.99.0.50"));

        Assert.Equal(Ip("10.99.0.51"), pool.PeekOne("vip"));
    }

    [Fact]
    public void Claim_WithoutAdvancingCursor_KeepsCursorButSkipsAddress()
    {
        var pool = Pool("10.99.0.0/24");

        pool.Claim(Ip("10.99.0.1"), advanceCursor: false);
        pool.Claim(Ip("10.99.0.50"), advanceCursor: false);

        Assert.Equal(["10.99.0.2", "10.99.0.3"], Strings(pool.PeekNext(2)));
        Assert.Equal(2, pool.Allocated);
    }

    [Fact]
    public void Claim_AlreadyUsed_ThrowsDuplicate()
    {
        var pool = Pool("10.99.0.0/24");
        pool.Claim(Ip("10.99.0.7"));

        var ex = Assert.Throws<RelayException>(() => pool.Claim(Ip("10.99.0.7")));

        Assert.Equal(ErrorCode.Duplicate, ex.Code);
        Assert.Equal(1, pool.Allocated);
    }

    [Fact]
    public void Claim_OutsidePool_ThrowsNotInPoolAndChangesNothing()
    {
        var pool = Pool("10.99.0.0/24");

        var ex = Assert.Throws<RelayException>(() => pool.Claim(Ip("10.98.0.7")));

        Assert.Equal(ErrorCode.NotInPool, ex.Code);
        Assert.Equal(0, pool.Allocated);
        Assert.Equal(Ip("10.99.0.1"), pool.PeekOne("vip"));
    }

    [Fact]
    public void Allocate_LastHost_SkipsBroadcastAndWrapsPastNetwork()
    {
        var pool = Pool("10.99.0.0/24");
        pool.Claim(Ip("10.99.0.254"));

        Assert.Equal(["10.99.0.1", "10.99.0.2"], Strings(pool.PeekNext(2)));
    }

    [Fact]
    public void Release_ThenAllocate_DoesNotReuseUntilPoolWraps()
    {
        // 10.99.0.0/29: hosts .1 to .6.
        var pool = Pool("10.99.0.0/29");
        Assert.Equal(Ip("10.99.0.1"), Allocate(pool));
        Assert.Equal(Ip("10.99.0.2"), Allocate(pool));
        Assert.Equal(Ip("10.99.0.3"), Allocate(pool));

        pool.Release(Ip("10.99.0.1"));

        Assert.False(pool.IsAllocated(Ip("10.99.0.1")));
        Assert.Equal(2, pool.Allocated);
        Assert.Equal(Ip("10.99.0.4"), Allocate(pool));
        Assert.Equal(Ip("10.99.0.5"), Allocate(pool));
        Assert.Equal(Ip("10.99.0.6"), Allocate(pool));
        // Only now, after the lap, is the released address handed out again.
        Assert.Equal(Ip("10.99.0.1"), Allocate(pool));
    }

    [Fact]
    public void Release_UnknownOrForeignAddress_IsIgnored()
    {
        var pool = Pool("10.99.0.0/24");
        Allocate(pool);

        pool.Release(Ip("10.99.0.9"));
        pool.Release(Ip("192.168.0.1"));
        pool.Release(Ip("fd00::1"));

        Assert.Equal(1, pool.Allocated);
        Assert.True(pool.IsAllocated(Ip("10.99.0.1")));
    }

    [Fact]
    public void PeekOne_Exhausted_ThrowsPoolExhaustedNamingPool()
    {
        var pool = Pool("10.99.0.0/29");
        for (var i = 0; i < 6; i++)
        {
            Allocate(pool);
        }

        var ex = Assert.Throws<RelayException>(() => pool.PeekOne("services[0].vip"));

        Assert.Equal(ErrorCode.PoolExhausted, ex.Code);
        Assert.Equal("services[0].vip", ex.Errors[0].Field);
        Assert.Contains("virtual IPv4", ex.Message);
        Assert.Contains("10.99.0.0/29", ex.Message);
        Assert.Contains("6 in use", ex.Message);
        Assert.Empty(pool.PeekNext(1));
    }

    [Fact]
    public void PeekOne_OnlyFreeAddressesSkipped_ThrowsPoolExhausted()
    {
        var pool = Pool("10.99.0.0/30");
        var planned = new HashSet<IPAddress> { Ip("10.99.0.1"), Ip("10.99.0.2") };

        var ex = Assert.Throws<RelayException>(() => pool.PeekOne("vip", planned));

        Assert.Equal(ErrorCode.PoolExhausted, ex.Code);
    }

    [Fact]
    public void PeekNext_MoreThanAvailable_ReturnsWhatThereIs()
    {
        var pool = Pool("10.99.0.0/29");
        Allocate(pool);

        Assert.Equal(["10.99.0.2", "10.99.0.3", "10.99.0.4", "10.99.0.5", "10.99.0.6"], Strings(pool.PeekNext(100)));
    }

    [Fact]
    public void PeekNext_FragmentedPool_FindsEveryFreeAddress()
    {
        // Every other host in use: the scan must go past the used ones to find the count asked for.
        var pool = Pool("10.99.0.0/24");
        for (var i = 1; i <= 253; i += 2)
        {
            pool.Claim(Ip($"10.99.0.{i}"), advanceCursor: false);
        }

        var free = pool.PeekNext(200);

        Assert.Equal(127, free.Count);
        Assert.Equal(Enumerable.Range(1, 127).Select(i => $"10.99.0.{2 * i}"), Strings(free));
        Assert.Equal(["10.99.0.2", "10.99.0.4"], Strings(pool.PeekNext(2)));
    }

    [Fact]
    public void CheckClaim_OutsidePrefix_IsNotInPool()
    {
        var pool = Pool("10.99.0.0/24");

        var error = pool.CheckClaim(Ip("10.99.1.1"), "vip");

        Assert.NotNull(error);
        Assert.Equal(ErrorCode.NotInPool, error.Code);
        Assert.Equal("vip", error.Field);
        Assert.Contains("not in the virtual IPv4 pool 10.99.0.0/24", error.Message);
    }

    [Fact]
    public void CheckClaim_OtherFamily_IsNotInPool()
    {
        var pool = Pool("10.99.0.0/24");

        Assert.Equal(ErrorCode.NotInPool, pool.CheckClaim(Ip("fd00::1"), "vip")?.Code);
        Assert.Equal(ErrorCode.NotInPool, pool.CheckClaim(Ip("::ffff:10.99.0.1"), "vip")?.Code);
    }

    [Theory]
    [InlineData("10.99.0.0")]
    [InlineData("10.99.0.255")]
    [InlineData("10.99.0.10")]
    public void CheckClaim_Reserved_IsNotInPool(string address)
    {
        var pool = Pool("10.99.0.0/24", "10.99.0.10");

        var error = pool.CheckClaim(Ip(address), "vip");

        Assert.Equal(ErrorCode.NotInPool, error?.Code);
        Assert.Contains("reserved", error?.Message);
    }

    [Fact]
    public void CheckClaim_Used_IsDuplicate()
    {
        var pool = Pool("10.99.0.0/24");
        pool.Claim(Ip("10.99.0.5"));

        var error = pool.CheckClaim(Ip("10.99.0.5"), "vip");

        Assert.Equal(ErrorCode.Duplicate, error?.Code);
        Assert.Contains("10.99.0.5 is already in use", error?.Message);
    }

    [Fact]
    public void CheckClaim_Free_IsNull()
    {
        var pool = Pool("10.99.0.0/24");

        Assert.Null(pool.CheckClaim(Ip("10.99.0.200"), "vip"));
    }

    [Fact]
    public void Ipv6Slash64_AllocatesFromOneAndWrapsWithoutBroadcast()
    {
        var pool = new AddressPool("virtual IPv6", IPNetwork.Parse("fd99:0:0:1::/64"));

        Assert.Equal(Ip("fd99:0:0:1::1"), Allocate(pool));
        Assert.Equal(Ip("fd99:0:0:1::2"), Allocate(pool));
        // In IPv6 the all-ones address is an ordinary host.
        Assert.Null(pool.CheckClaim(Ip("fd99:0:0:1:ffff:ffff:ffff:ffff"), "vip"));
        pool.Claim(Ip("fd99:0:0:1:ffff:ffff:ffff:fffe"));
        Assert.Equal([Ip("fd99:0:0:1:ffff:ffff:ffff:ffff"), Ip("fd99:0:0:1::3")], pool.PeekNext(2));
        Assert.Equal(ErrorCode.NotInPool, pool.CheckClaim(Ip("fd99:0:0:1::"), "vip")?.Code);
        Assert.Equal(ErrorCode.NotInPool, pool.CheckClaim(Ip("fd99:0:0:2::1"), "vip")?.Code);
        Assert.Equal(System.Net.Sockets.AddressFamily.InterNetworkV6, pool.Family);
    }

    [Fact]
    public void Ipv6Slash120_Holds255AddressesThenIsExhausted()
    {
        var pool = new AddressPool("instance IPv6", IPNetwork.Parse("fd88::/120"));

        var all = new List<IPAddress>();
        for (var i = 0; i < 255; i++)
        {
            all.Add(Allocate(pool));
        }

        Assert.Equal(Ip("fd88::1"), all[0]);
        Assert.Equal(Ip("fd88::ff"), all[^1]);
        Assert.Equal(255, all.Distinct().Count());
        Assert.Equal(ErrorCode.PoolExhausted, Assert.Throws<RelayException>(() => pool.PeekOne("x")).Code);
    }

    [Fact]
    public void Slash30_HandsOutTheTwoHostsThenIsExhausted()
    {
        var pool = Pool("10.99.0.0/30");

        Assert.Equal(["10.99.0.1", "10.99.0.2"], Strings(pool.PeekNext(5)));
        Assert.Equal(Ip("10.99.0.1"), Allocate(pool));
        Assert.Equal(Ip("10.99.0.2"), Allocate(pool));
        Assert.Equal(ErrorCode.PoolExhausted, Assert.Throws<RelayException>(() => pool.PeekOne("x")).Code);
        Assert.Equal(ErrorCode.NotInPool, pool.CheckClaim(Ip("10.99.0.3"), "x")?.Code);
    }

    [Fact]
    public void Slash31_NeverHandsOutAnAddressOutsideThePrefix()
    {
        var pool = Pool("10.99.0.0/31");

        var free = pool.PeekNext(5);

        Assert.NotEmpty(free);
        Assert.All(free, a => Assert.True(IPNetwork.Parse("10.99.0.0/31").Contains(a)));
        foreach (var a in free)
        {
            pool.Claim(a);
        }
        Assert.Equal(ErrorCode.PoolExhausted, Assert.Throws<RelayException>(() => pool.PeekOne("x")).Code);
    }

    [Fact]
    public void Slash32_NeverHandsOutAnAddressOutsideThePrefix()
    {
        var pool = Pool("10.99.0.7/32");

        var free = pool.PeekNext(5);

        Assert.All(free, a => Assert.Equal(Ip("10.99.0.7"), a));
        Assert.Equal(ErrorCode.NotInPool, pool.CheckClaim(Ip("10.99.0.8"), "x")?.Code);
    }

    [Fact]
    public void Slash31AndSlash32_OfferEveryAddressAsRfc3021Hosts()
    {
        Assert.Equal(["10.99.0.0", "10.99.0.1"], Strings(Pool("10.99.0.0/31").PeekNext(5)));
        Assert.Equal(["10.99.0.7"], Strings(Pool("10.99.0.7/32").PeekNext(5)));
    }

    [Fact]
    public void Contains_AddressOfOtherFamilyOrReserved_IsFalse()
    {
        var pool = Pool("10.99.0.0/24", "10.99.0.1");

        Assert.True(pool.Contains(Ip("10.99.0.2")));
        Assert.False(pool.Contains(Ip("10.99.0.1")));
        Assert.False(pool.Contains(Ip("10.99.0.0")));
        Assert.False(pool.Contains(Ip("10.99.0.255")));
        Assert.False(pool.Contains(Ip("10.99.1.2")));
        Assert.False(pool.Contains(Ip("fd00::2")));
    }

    [Fact]
    public void Properties_ReflectConstructorArguments()
    {
        var pool = new AddressPool("virtual IPv4", IPNetwork.Parse("10.99.0.0/16"));

        Assert.Equal("virtual IPv4", pool.Name);
        Assert.Equal(IPNetwork.Parse("10.99.0.0/16"), pool.Prefix);
        Assert.Equal(System.Net.Sockets.AddressFamily.InterNetwork, pool.Family);
        Assert.Equal(0, pool.Allocated);
    }
}
