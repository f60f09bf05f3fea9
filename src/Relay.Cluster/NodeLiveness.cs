namespace Relay.Cluster;

/// <summary>
/// Which peers this node takes for gone before etcd says so: the failure detector behind a
/// fail-over within the lease TTL. Every node writes a heartbeat (<c>alive/NODE</c>) every third of
/// the TTL; a peer whose heartbeat this node's watch has not delivered for a whole TTL is
/// <em>suspected</em>, as the node lifecycle controller of Kubernetes takes a node whose Lease it has
/// not seen renewed for its grace period. Why not only etcd's lease expiry: a member that becomes
/// leader renews every lease for a full TTL (and an election timeout), so when the lost node's
/// member was the leader, the expiry came a TTL and an election late (measured: 4.4-5.7 s with a
/// TTL of 3 s, against the goal of 4 s).
/// <para>
/// A verdict needs evidence: this node's own heartbeats must have come through its watch without a
/// gap for a grace period (half a period and 0.3 s), and the last one lately. A node cut
/// off from the store (its own heartbeats do not come back) suspects nobody new; when the store
/// comes back (an election, a quorum regained), every peer gets the grace period to be seen before
/// it can be suspected. A suspicion holds until the peer's heartbeat is seen again, or its lease
/// is gone (then the peer is lost, and <see cref="Gone"/> forgets it).
/// </para>
/// <para>Pure: the clock is the caller's (milliseconds of a monotonic clock).</para>
/// </summary>
public sealed class NodeLiveness
{
    private readonly string _self;
    private readonly long _ttl;
    private readonly long _period;
    private readonly long _grace;
    private readonly long _gap;
    private readonly Dictionary<string, long> _seen = new(StringComparer.Ordinal);
    private readonly HashSet<string> _suspected = new(StringComparer.Ordinal);
    private long? _selfSeen;
    private long _selfSince;
    private bool _changed;

    /// <summary>The detector of node <paramref name="self"/>, whose peers beat every third of <paramref name="ttl"/>.</summary>
    public NodeLiveness(string self, TimeSpan ttl)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(ttl, TimeSpan.FromMilliseconds(300));
        _self = self;
        _ttl = (long)ttl.TotalMilliseconds;
        _period = HeartbeatPeriod(ttl).Ticks / TimeSpan.TicksPerMillisecond;
        // A live peer's beat lands within ~0.1 s of the store's return (its writes are retried every
        // 100 ms; the one write that waited on a vanished leader, half a period at most, was before
        // the election ended): the grace is several times that, and short, since it adds to a
        // fail-over whose lost node's member led.
        _grace = _period / 2 + 300;
        // Own beats come a period apart (plus a write's latency): later than a quarter second
        // beyond that, the store or the watch was away.
        _gap = _period + 250;
    }

    /// <summary>How often a node writes its heartbeat: a third of the lease TTL, as it renews the lease.</summary>
    public static TimeSpan HeartbeatPeriod(TimeSpan ttl) => ttl / 3;

    /// <summary>The peers suspected now (never this node).</summary>
    public IReadOnlySet<string> Suspected => _suspected;

    /// <summary>True when <paramref name="node"/> is suspected.</summary>
    public bool IsSuspected(string node) => _suspected.Contains(node);

    /// <summary>
    /// A heartbeat of <paramref name="node"/> (or its record, written when it joins) was seen at
    /// <paramref name="now"/>. A suspected peer is suspected no more.
    /// </summary>
    public void Seen(string node, long now)
    {
        if (node == _self)
        {
            if (_selfSeen is not { } last || now - last > _gap)
            {
                // The first of a run of own heartbeats after a gap: the store (or the watch) was away.
                _selfSince = now;
            }
            _selfSeen = now;
            return;
        }
        _seen[node] = now;
        _changed |= _suspected.Remove(node);
    }

    /// <summary>The peer's lease is gone (the store deleted its record): it is lost, not suspected; forgotten until it joins again.</summary>
    public void Gone(string node)
    {
        _seen.Remove(node);
        _changed |= _suspected.Remove(node);
    }

    /// <summary>True while this node's own heartbeats come back through its watch (the last one within a period and a quarter second), since the grace period at least.</summary>
    public bool Trusted(long now)
        => _selfSeen is { } last && now - last <= _gap && now - _selfSince >= _grace;

    /// <summary>Suspects the peers unseen for a TTL (when <see cref="Trusted"/>); true when the suspected set changed since the last call.</summary>
    public bool Evaluate(long now)
    {
        if (Trusted(now))
        {
            // Trusted means the store has been back for the grace period: after a gap, every peer
            // had that long to be seen.
            foreach (var (node, seen) in _seen)
            {
                if (now - seen > _ttl && _suspected.Add(node))
                {
                    _changed = true;
                }
            }
        }
        var changed = _changed;
        _changed = false;
        return changed;
    }
}
