using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using Relay.Cluster;
using Relay.Cluster.Lab;
using Relay.Core.Errors;
using Relay.Integration.Tests.Support;

namespace Relay.Integration.Tests.Cluster;

/// <summary>The cluster store against a real 3-member etcd cluster on three lab hosts.</summary>
// Lab processes (etcd, daemons) start through `ip netns exec` while other tests add and delete
// namespaces: run them apart from the parallel tests.
[Collection(HostStateCollection.Name)]
public sealed class ClusterStoreTests(LabFixture lab) : IClassFixture<LabFixture>
{
    private static readonly IPNetwork Virtual4 = IPNetwork.Parse("10.96.0.0/16");
    private static readonly IPNetwork Virtual6 = IPNetwork.Parse("fd00:96::/112");
    private static readonly IPNetwork Instances4 = IPNetwork.Parse("10.64.0.0/16");
    private static readonly IPNetwork Instances6 = IPNetwork.Parse("fd00:64::/112");

    [Fact]
    public async Task Services_AddedAtOnceFromTwoHosts_GetDistinctAddresses()
    {
        var network = "svc" + Guid.NewGuid().ToString("N")[..6];
        using var one = lab.Connect(0);
        using var two = lab.Connect(1);
        var a = new ClusterAllocator(one, lab.Lab.Hosts[0].Name);
        var b = new ClusterAllocator(two, lab.Lab.Hosts[1].Name);
        // A small pool, so that the two writers really race for the same addresses.
        var small4 = IPNetwork.Parse("10.97.0.0/26");
        var small6 = IPNetwork.Parse("fd00:97::/122");
        var adds = Enumerable.Range(0, 40).Select(i => (i % 2 == 0 ? a : b).AddServiceAsync(network, $"s{i}.com", small4, small6)).ToArray();
        var claims = await Task.WhenAll(adds);

        Assert.Equal(40, claims.Select(c => c.Claim.Virtual4).Distinct().Count());
        Assert.Equal(40, claims.Select(c => c.Claim.Virtual6).Distinct().Count());
        Assert.All(claims, c => Assert.True(small4.Contains(IPAddress.Parse(c.Claim.Virtual4))));
        // What etcd holds agrees: 40 services, 80 guards.
        var (services, _) = await one.GetPrefixAsync(ClusterKeys.ServicesPrefix(network));
        var (guards, _) = await two.GetPrefixAsync(ClusterKeys.AddressesPrefix(network));
        Assert.Equal(40, services.Count);
        Assert.Equal(80, guards.Count);
    }

    [Fact]
    public async Task Service_AddedTwice_IsDuplicateAndChangesNothing()
    {
        var network = "dup" + Guid.NewGuid().ToString("N")[..6];
        using var etcd = lab.Connect(2);
        var allocator = new ClusterAllocator(etcd, lab.Lab.Hosts[2].Name);
        await allocator.AddServiceAsync(network, "b.com", Virtual4, Virtual6);
        var (_, before) = await etcd.GetPrefixAsync(ClusterKeys.Network(network));

        var e = await Assert.ThrowsAsync<RelayException>(() => allocator.AddServiceAsync(network, "b.com", Virtual4, Virtual6));

        Assert.Equal(ErrorCode.Duplicate, e.Code);
        var (kvs, _) = await etcd.GetPrefixAsync(ClusterKeys.Network(network));
        Assert.Equal(3, kvs.Count);
        Assert.All(kvs, kv => Assert.True(kv.ModRevision <= before));
    }

    [Fact]
    public async Task Instances_AddedAtOnceOnAllHosts_GetDistinctAddressesFromEachNodesBlocks()
    {
        var network = "ins" + Guid.NewGuid().ToString("N")[..6];
        var connections = Enumerable.Range(0, 3).Select(i => lab.Connect(i)).ToArray();
        try
        {
            var allocators = connections.Select((c, i) => new ClusterAllocator(c, lab.Lab.Hosts[i].Name)).ToArray();
            IPAddress[] reserved = [IPAddress.Parse("10.64.0.1"), IPAddress.Parse("fd00:64::1")];
            // 100 per node: each node needs two blocks of 64, claimed while the others claim theirs.
            var perNode = allocators.Select(a => Task.Run(async () =>
            {
                var mine = new List<InstanceClaim>();
                for (var i = 0; i < 100; i++)
                {
                    mine.Add((await a.AddInstanceAsync(network, $"{a.Node}-i{i}", "b.com", Instances4, Instances6, reserved)).Claim);
                }
                return mine;
            })).ToArray();
            var all = (await Task.WhenAll(perNode)).SelectMany(x => x).ToList();

            Assert.Equal(300, all.Select(c => c.Address4).Distinct().Count());
            Assert.Equal(300, all.Select(c => c.Address6).Distinct().Count());
            Assert.DoesNotContain(all, c => c.Address4 == "10.64.0.1" || c.Address4 == "10.64.0.0");
            // Blocks: each /26 belongs to exactly one node, and every address lies in a block of its node.
            var block = all.GroupBy(c => IpBlock(c.Address4)).ToList();
            Assert.All(block, g => Assert.Single(g.Select(c => c.Node).Distinct()));
            var (claims, _) = await connections[0].GetPrefixAsync(ClusterKeys.BlocksPrefix(network, System.Net.Sockets.AddressFamily.InterNetwork));
            Assert.Equal(6, claims.Count);
        }
        finally
        {
            foreach (var c in connections)
            {
                c.Dispose();
            }
        }

        static string IpBlock(string a) => $"{string.Join('.', a.Split('.')[..3])}.{int.Parse(a.Split('.')[3]) / 64}";
    }

    [Fact]
    public async Task Writes_GoToTheRaftLeader_WhicheverMemberIsPreferred()
    {
        var key = ClusterKeys.Root + "test/" + Guid.NewGuid().ToString("N")[..8];
        for (var host = 0; host < 3; host++)
        {
            using var etcd = lab.Connect(host);
            // The first write goes to the preferred member and teaches the connection who leads.
            await etcd.PutAsync(key, "first");
            await WaitFor(() => etcd.LeaderIndex >= 0, TimeSpan.FromSeconds(5));
            var statuses = await etcd.MemberStatusAsync();
            var leader = statuses.Select(s => s.Status?.Leader ?? 0).First(id => id != 0);

            var txn = new Etcdserverpb.TxnRequest();
            txn.Success.Add(ClusterAllocator.Put(key, "host" + host));
            var answer = await etcd.TxnAsync(txn);

            // The member that answered is the leader, not (for two of the three hosts) the local one.
            Assert.Equal(leader, answer.Header.MemberId);
            Assert.Equal(statuses[etcd.LeaderIndex].Status!.Header.MemberId, leader);
        }
    }

    [Fact]
    public async Task Watch_OnAnotherMember_SeesEveryWriteInOrder()
    {
        var prefix = ClusterKeys.Root + "test/" + Guid.NewGuid().ToString("N")[..8] + "/";
        using var writer = lab.Connect(0);
        using var reader = lab.Connect(1);
        var watch = new ClusterWatch(reader, prefix);
        var seen = new ConcurrentQueue<WatchStep>();
        using var cts = new CancellationTokenSource();
        var first = new TaskCompletionSource();
        var run = watch.RunAsync(s => { seen.Enqueue(s); first.TrySetResult(); return Task.CompletedTask; }, cts.Token);
        await first.Task.WaitAsync(TimeSpan.FromSeconds(10));

        for (var i = 0; i < 50; i++)
        {
            await writer.PutAsync(prefix + "k", i.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }
        await WaitFor(() => seen.LastOrDefault()?.State.GetValueOrDefault(prefix + "k") == "49", TimeSpan.FromSeconds(10));
        await cts.CancelAsync();
        await run;

        // etcd may deliver several writes in one response (one step): the values only ever go forward.
        var values = seen.Where(s => !s.Resync).Select(s => int.Parse(s.State[prefix + "k"], System.Globalization.CultureInfo.InvariantCulture)).ToList();
        Assert.Equal(values.Order(), values);
        Assert.Equal(values.Distinct().Count(), values.Count);
        Assert.Equal(49, values[^1]);
        Assert.Equal(1, watch.Resyncs);
    }

    [Fact]
    public async Task Watch_WhoseStartRevisionWasCompacted_ReadsTheStateAgain()
    {
        var prefix = ClusterKeys.Root + "test/" + Guid.NewGuid().ToString("N")[..8] + "/";
        using var etcd = lab.Connect(0);
        await etcd.PutAsync(prefix + "a", "1");
        var watch = new ClusterWatch(etcd, prefix);
        var steps = new ConcurrentQueue<WatchStep>();
        using var cts = new CancellationTokenSource();
        // The consumer holds the first step until the history behind it is compacted away: the
        // watch then starts from a revision etcd no longer has.
        var release = new TaskCompletionSource();
        var run = watch.RunAsync(async s =>
        {
            steps.Enqueue(s);
            if (steps.Count == 1)
            {
                await release.Task;
            }
        }, cts.Token);
        await WaitFor(() => !steps.IsEmpty, TimeSpan.FromSeconds(10));
        await etcd.PutAsync(prefix + "b", "2");
        var top = await etcd.PutAsync(prefix + "c", "3");
        await Compact(top);
        release.SetResult();

        await WaitFor(() => steps.LastOrDefault() is { } s && s.State.Count == 3, TimeSpan.FromSeconds(10));
        await cts.CancelAsync();
        await run;
        Assert.Equal(2, watch.Resyncs);
        Assert.True(steps.Last().Resync);
        Assert.Equal(["1", "2", "3"], steps.Last().State.Values);
    }

    [Fact]
    public async Task NodeLease_OfANodeThatStopsRenewing_GoesAfterItsTtl_AndOthersSeeIt()
    {
        var node = "n" + Guid.NewGuid().ToString("N")[..6];
        using var own = lab.Connect(0);
        using var other = lab.Connect(2);
        var lease = await NodeLease.JoinAsync(own, node, "198.18.0.1", Relay.Core.Overlay.VxlanPlan.Mac(node), TimeSpan.FromSeconds(2));
        Assert.NotNull(await other.GetAsync(ClusterKeys.Node(node)));
        // Renewals keep it past its TTL.
        await Task.Delay(3000);
        Assert.NotNull(await other.GetAsync(ClusterKeys.Node(node)));

        await lease.AbandonAsync();
        var clock = Stopwatch.StartNew();
        await WaitFor(async () => await other.GetAsync(ClusterKeys.Node(node)) is null, TimeSpan.FromSeconds(6));

        // etcd expires a 2 s lease between 2 s after its last renewal and about one second later.
        Assert.InRange(clock.Elapsed.TotalSeconds, 0.3, 3.5);
        Assert.Null(await other.GetAsync(ClusterKeys.Applied(node)));
    }

    [Fact]
    public async Task NodeLease_RestartedDaemonTakesItsNameOver_AndLeavingRemovesTheRecordAtOnce()
    {
        var node = "n" + Guid.NewGuid().ToString("N")[..6];
        using var etcd = lab.Connect(1);
        var first = await NodeLease.JoinAsync(etcd, node, "198.18.0.2", "02:00:00:00:00:01", TimeSpan.FromSeconds(3));
        await first.AbandonAsync(); // a kill -9: the old lease is still alive

        await using var second = await NodeLease.JoinAsync(etcd, node, "198.18.0.2", "02:00:00:00:00:01", TimeSpan.FromSeconds(3));
        Assert.NotEqual(first.Lease, second.Lease);
        var at = DateTimeOffset.UtcNow;
        await second.RecordAppliedAsync(1234, at);
        Assert.Equal(new AppliedRecord(1234, at), AppliedRecord.Parse((await etcd.GetAsync(ClusterKeys.Applied(node)))!.Value.ToStringUtf8()));
        // The old lease was revoked: its expiry later must not take the new record with it.
        await Task.Delay(3500);
        Assert.NotNull(await etcd.GetAsync(ClusterKeys.Node(node)));

        await second.DisposeAsync();
        Assert.Null(await etcd.GetAsync(ClusterKeys.Node(node)));
    }

    private async Task Compact(long revision)
    {
        var r = Sh.Run("ip", "netns", "exec", lab.Lab.Hosts[0].Namespace, "etcdctl", "--endpoints", lab.Lab.Hosts[0].Etcd, "compaction", revision.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.True(r.ExitCode == 0, r.Stderr);
        await Task.CompletedTask;
    }

    internal static Task WaitFor(Func<bool> condition, TimeSpan timeout) => WaitFor(() => Task.FromResult(condition()), timeout);

    internal static async Task WaitFor(Func<Task<bool>> condition, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (!await condition())
        {
            Assert.True(clock.Elapsed < timeout, $"condition not met within {timeout.TotalSeconds}s");
            await Task.Delay(20);
        }
    }
}

/// <summary>Members lost and quorum lost, each on a lab of its own (these tests break their lab).</summary>
// Lab processes (etcd, daemons) start through `ip netns exec` while other tests add and delete
// namespaces: run them apart from the parallel tests.
[Collection(HostStateCollection.Name)]
public sealed class ClusterFailureTests
{
    [Fact]
    public async Task QuorumLost_WritesFailWithAClearErrorAndChangeNothing_AndWorkWhenItIsBack()
    {
        var lab = await LabFixture.UpAsync();
        try
        {
            using var etcd = LabFixture.ConnectOnly(lab, 0, TimeSpan.FromSeconds(1));
            var allocator = new ClusterAllocator(etcd, lab.Hosts[0].Name);
            await allocator.AddServiceAsync("q", "a.com", IPNetwork.Parse("10.96.0.0/16"), IPNetwork.Parse("fd00:96::/112"));
            LabCluster.SetLinkUp(lab, lab.Hosts[0], false); // host 1 is cut off: its member has no quorum

            var clock = Stopwatch.StartNew();
            var e = await Assert.ThrowsAsync<RelayException>(() => allocator.AddServiceAsync("q", "b.com", IPNetwork.Parse("10.96.0.0/16"), IPNetwork.Parse("fd00:96::/112")));
            Assert.Equal(ErrorCode.Unavailable, e.Code);
            Assert.StartsWith("cluster: cluster store unavailable:", e.Message);
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"the error took {clock.Elapsed.TotalSeconds:0.0}s");

            // The other two members still form a quorum, and nothing of b.com reached them.
            using (var majority = LabFixture.ConnectOnly(lab, 1))
            {
                // When the cut-off member was the leader, the other two elect a new one first (~1 s).
                await ClusterStoreTests.WaitFor(async () =>
                {
                    try
                    {
                        await majority.GetAsync(ClusterKeys.Service("q", "a.com"));
                        return true;
                    }
                    catch (RelayException x) when (x.Code == ErrorCode.Unavailable)
                    {
                        return false;
                    }
                }, TimeSpan.FromSeconds(10));
                Assert.Null(await majority.GetAsync(ClusterKeys.Service("q", "b.com")));
                Assert.NotNull(await majority.GetAsync(ClusterKeys.Service("q", "a.com")));
            }

            LabCluster.SetLinkUp(lab, lab.Hosts[0], true);
            await ClusterStoreTests.WaitFor(async () =>
            {
                try
                {
                    await allocator.AddServiceAsync("q", "b.com", IPNetwork.Parse("10.96.0.0/16"), IPNetwork.Parse("fd00:96::/112"));
                    return true;
                }
                catch (RelayException r) when (r.Code == ErrorCode.Unavailable)
                {
                    return false;
                }
            }, TimeSpan.FromSeconds(15));
        }
        finally
        {
            LabCluster.Down(lab);
        }
    }

    [Fact]
    public async Task MemberKilled_WatchGoesOnFromAnotherMember_WithoutLosingAWrite()
    {
        var lab = await LabFixture.UpAsync();
        try
        {
            var prefix = ClusterKeys.Root + "test/kill/";
            using var reader = LabFixture.Connect(lab, 1);
            using var writer = LabFixture.Connect(lab, 0);
            var watch = new ClusterWatch(reader, prefix);
            var last = "";
            using var cts = new CancellationTokenSource();
            var run = watch.RunAsync(s => { last = s.State.GetValueOrDefault(prefix + "k", ""); return Task.CompletedTask; }, cts.Token);
            await writer.PutAsync(prefix + "k", "before");
            await ClusterStoreTests.WaitFor(() => last == "before", TimeSpan.FromSeconds(10));

            LabCluster.KillMember(lab.Hosts[1]); // the member the watch is on
            for (var i = 0; i < 20; i++)
            {
                await writer.PutAsync(prefix + "k", "after" + i);
            }
            await ClusterStoreTests.WaitFor(() => last == "after19", TimeSpan.FromSeconds(10));
            await cts.CancelAsync();
            await run;
            Assert.Equal(1, watch.Resyncs); // resumed from its revision, not read again
        }
        finally
        {
            LabCluster.Down(lab);
        }
    }
}

/// <summary>The lab leaves the machine as it found it.</summary>
[Collection(HostStateCollection.Name)]
public sealed class LabTests
{
    [Fact]
    public async Task LabDown_RemovesExactlyWhatUpMade()
    {
        var before = KernelState.Capture();
        var etcdBefore = LiveEtcd();
        var lab = await LabFixture.UpAsync(2);
        try
        {
            Assert.Equal(2, lab.Hosts.Count);
            Assert.All(lab.Hosts, h => Assert.True(Relay.Linux.Namespaces.Netns.Exists(h.Namespace)));
            // The host namespace got nothing: no link, no table.
            Assert.Equal(before.HostLinks, KernelState.Capture().HostLinks);
            Assert.Contains(LabCluster.List(LabFixture.Root), l => l.Name == lab.Name && l.Hosts.Count == 2);
            var dup = await Assert.ThrowsAsync<RelayException>(() => LabCluster.UpAsync(new LabOptions { Name = lab.Name, Root = LabFixture.Root }));
            Assert.Equal(ErrorCode.Duplicate, dup.Code);
        }
        finally
        {
            LabCluster.Down(lab);
        }
        Assert.Equal(before, KernelState.Capture());
        Assert.Equal(etcdBefore, LiveEtcd());
        Assert.DoesNotContain(LabCluster.List(LabFixture.Root), l => l.Name == lab.Name);
    }

    /// <summary>etcd processes that run (exited ones wait as zombies where pid 1 does not reap them).</summary>
    private static string LiveEtcd() => string.Join(',', Sh.Run("ps", "-C", "etcd", "-o", "pid=,stat=").Stdout
        .Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
        .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)).Where(f => f.Length == 2 && !f[1].StartsWith('Z')).Select(f => f[0]));

    [Fact]
    public async Task LabUp_WithBadOptions_ListsEveryErrorAndMakesNothing()
    {
        var before = Relay.Linux.Namespaces.Netns.List();
        var e = await Assert.ThrowsAsync<RelayException>(() => LabCluster.UpAsync(new LabOptions { Name = "Bad_Name", Hosts = 40, Root = LabFixture.Root }));
        Assert.Equal(2, e.Errors.Count);
        Assert.Equal(before, Relay.Linux.Namespaces.Netns.List());
    }
}
