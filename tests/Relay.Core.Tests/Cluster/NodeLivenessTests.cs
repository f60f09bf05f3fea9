using Relay.Cluster;

namespace Relay.Core.Tests.Cluster;

/// <summary>
/// The heartbeat failure detector, on a simulated clock (TTL 3 s: a beat every 1 s, grace 0.8 s).
/// Each case runs 50 ms ticks, delivering the beats of a schedule and evaluating after each tick.
/// </summary>
public class NodeLivenessTests
{
    private static readonly TimeSpan Ttl = TimeSpan.FromSeconds(3);

    /// <summary>Runs from 0 to <paramref name="until"/> ms; <paramref name="beats"/> says whether a node's beat is seen at a tick; returns when each node was first suspected and cleared.</summary>
    private static (Dictionary<string, long> Suspected, Dictionary<string, long> Cleared, int Changes) Run(long until, Func<string, long, bool> beats, params string[] peers)
    {
        var liveness = new NodeLiveness("self", Ttl);
        var suspected = new Dictionary<string, long>();
        var cleared = new Dictionary<string, long>();
        var changes = 0;
        foreach (var p in peers.Append("self"))
        {
            liveness.Seen(p, 0);
        }
        for (long now = 50; now <= until; now += 50)
        {
            foreach (var p in peers.Append("self"))
            {
                if (beats(p, now))
                {
                    liveness.Seen(p, now);
                }
            }
            if (liveness.Evaluate(now))
            {
                changes++;
            }
            foreach (var p in peers)
            {
                if (liveness.IsSuspected(p) && !suspected.ContainsKey(p))
                {
                    suspected[p] = now;
                }
                if (!liveness.IsSuspected(p) && suspected.ContainsKey(p) && !cleared.ContainsKey(p))
                {
                    cleared[p] = now;
                }
            }
            Assert.DoesNotContain("self", liveness.Suspected);
        }
        return (suspected, cleared, changes);
    }

    private static bool Every(long now, long period, long phase = 0) => now >= phase && (now - phase) % period == 0;

    [Fact]
    public void PeersThatBeat_AreNeverSuspected()
    {
        var (suspected, _, changes) = Run(20_000, (_, now) => Every(now, 1000), "a", "b");
        Assert.Empty(suspected);
        Assert.Equal(0, changes);
    }

    [Fact]
    public void APeerThatStopsBeating_IsSuspectedAfterOneTtl_AndClearedWhenItBeatsAgain()
    {
        // b beats until 5 s, is silent until 12 s, then beats again.
        var (suspected, cleared, changes) = Run(15_000, (node, now) => node != "b" ? Every(now, 1000) : Every(now, 1000) && (now <= 5000 || now >= 12_000), "a", "b");
        Assert.False(suspected.ContainsKey("a"));
        Assert.Equal(8050, suspected["b"]);
        Assert.Equal(12_000, cleared["b"]);
        Assert.Equal(2, changes);
    }

    [Fact]
    public void WhileItsOwnBeatsDoNotComeBack_ANodeSuspectsNobodyNew()
    {
        // The store is away from 2 s on for everyone (the node is cut off): nobody's beat comes.
        var (suspected, _, _) = Run(20_000, (_, now) => Every(now, 1000) && now <= 2000, "a");
        Assert.Empty(suspected);
    }

    [Fact]
    public void AfterAnElection_LivePeersGetTheGracePeriod_TheDeadOneIsSuspectedWithinTheTtl()
    {
        // At 10 s the leader's host dies (with peer d); the store is back at 11.5 s. Beats resume
        // after it: this node's at 11.6 s, a's (slower to get through) at 12.3 s, then every second.
        var (suspected, _, _) = Run(20_000, (node, now) => node switch
        {
            "d" => Every(now, 1000) && now <= 10_000,
            "a" => Every(now, 1000) && now <= 10_000 || now >= 12_300 && Every(now, 1000, 12_300),
            _ => Every(now, 1000) && now <= 10_000 || now >= 11_600 && Every(now, 1000, 11_600),
        }, "a", "d");
        Assert.False(suspected.ContainsKey("a"), $"a suspected at {suspected.GetValueOrDefault("a")}");
        // d's last beat at 10 s: unseen for a TTL at 13 s (this node trusts its watch again at 12.4 s).
        Assert.Equal(13_050, suspected["d"]);
    }

    [Fact]
    public void AfterALongOutage_EveryPeerHasTheGracePeriodFromTheStoresReturn()
    {
        // The store is away from 5 s to 15 s; a beats again 0.6 s after the return (this node's
        // own beat at 15.0 s), d never does.
        var (suspected, _, _) = Run(25_000, (node, now) => node switch
        {
            "d" => Every(now, 1000) && now <= 5000,
            "a" => Every(now, 1000) && now <= 5000 || now >= 15_600 && Every(now, 1000, 15_600),
            _ => Every(now, 1000) && (now <= 5000 || now >= 15_000),
        }, "a", "d");
        Assert.False(suspected.ContainsKey("a"), $"a suspected at {suspected.GetValueOrDefault("a")}");
        // Trusted again at 15 s + 0.8 s grace; d is unseen since 5 s.
        Assert.Equal(15_800, suspected["d"]);
    }

    [Fact]
    public void APeerWhoseLeaseWentIsForgotten_NotSuspected()
    {
        var liveness = new NodeLiveness("self", Ttl);
        liveness.Seen("self", 0);
        liveness.Seen("b", 0);
        for (long now = 1000; now <= 4000; now += 1000)
        {
            liveness.Seen("self", now);
        }
        Assert.True(liveness.Evaluate(4000));
        Assert.Contains("b", liveness.Suspected);
        liveness.Gone("b");
        Assert.True(liveness.Evaluate(4100));
        Assert.Empty(liveness.Suspected);
        liveness.Seen("self", 5000);
        Assert.False(liveness.Evaluate(9000));
    }
}
