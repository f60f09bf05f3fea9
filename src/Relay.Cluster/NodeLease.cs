using System.Text.Json;
using Etcdserverpb;
using Relay.Cluster.Etcd;
using Relay.Core.Errors;

namespace Relay.Cluster;

/// <summary>
/// A node's membership: its record and its applied revision live on an etcd lease that the node
/// renews (every third of the TTL). When the node dies, or is cut off from the quorum for longer
/// than the TTL, etcd deletes both keys: every other node sees the node go in its watch. A node
/// that restarts takes its name over (the old lease is revoked): the name is the node's identity,
/// as a kubelet's is.
/// </summary>
public sealed class NodeLease : IAsyncDisposable
{
    private readonly EtcdConnection _etcd;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _renewals;
    private readonly Task _beats;
    private long _lease;
    private long _renewedTicks;
    private int _disposed;

    private NodeLease(EtcdConnection etcd, NodeRecord record, TimeSpan ttl)
    {
        _etcd = etcd;
        Record = record;
        Ttl = ttl;
        _lease = record.Lease;
        _renewedTicks = Environment.TickCount64;
        _renewals = Task.Run(RenewLoopAsync);
        _beats = Task.Run(BeatLoopAsync);
    }

    /// <summary>The node's record as written.</summary>
    public NodeRecord Record { get; private set; }

    /// <summary>The lease's time to live.</summary>
    public TimeSpan Ttl { get; }

    /// <summary>The current lease id.</summary>
    public long Lease => Interlocked.Read(ref _lease);

    /// <summary>Time since the lease was last renewed (its "age", as <c>relay node ls</c> shows it).</summary>
    public TimeSpan SinceRenewal => TimeSpan.FromMilliseconds(Environment.TickCount64 - Interlocked.Read(ref _renewedTicks));

    /// <summary>The last renewal error, null while renewals succeed.</summary>
    public string? LastError { get; private set; }

    /// <summary>Raised (on a pool thread) when the lease had expired and the node joined again with a new one.</summary>
    public event Action<NodeLease>? Rejoined;

    /// <summary>Grants a lease and writes the node's record on it, replacing the record of an earlier daemon of the same node.</summary>
    public static async Task<NodeLease> JoinAsync(EtcdConnection etcd, string node, string underlay, string vtepMac, TimeSpan ttl, CancellationToken ct = default)
    {
        if (ttl < TimeSpan.FromSeconds(1))
        {
            throw new RelayException(ErrorCode.Invalid, "leaseTtl", $"the node lease TTL must be at least 1s, not {ttl.TotalSeconds}s");
        }
        var record = await WriteAsync(etcd, new NodeRecord(node, underlay, vtepMac, DateTimeOffset.UtcNow, 0), ttl, ct).ConfigureAwait(false);
        return new NodeLease(etcd, record, ttl);
    }

    private static async Task<NodeRecord> WriteAsync(EtcdConnection etcd, NodeRecord record, TimeSpan ttl, CancellationToken ct)
    {
        var previous = await etcd.GetAsync(ClusterKeys.Node(record.Name), ct).ConfigureAwait(false);
        var lease = await etcd.GrantLeaseAsync(ttl, ct).ConfigureAwait(false);
        record = record with { Lease = lease };
        var txn = new TxnRequest();
        txn.Success.Add(ClusterAllocator.Put(ClusterKeys.Node(record.Name), JsonSerializer.Serialize(record, ClusterJson.Default.NodeRecord), lease));
        txn.Success.Add(ClusterAllocator.Put(ClusterKeys.Applied(record.Name), AppliedRecord.None.ToJson(), lease));
        txn.Success.Add(ClusterAllocator.Put(ClusterKeys.Alive(record.Name), Beat(), lease));
        await etcd.TxnAsync(txn, ct).ConfigureAwait(false);
        var old = previous is null ? null : ClusterJson.TryParse(previous.Value.ToStringUtf8(), ClusterJson.Default.NodeRecord);
        if (old is not null && old.Lease != 0 && old.Lease != lease)
        {
            // The earlier daemon's lease: its keys were just overwritten, revoking it deletes nothing of ours.
            try
            {
                await etcd.RevokeLeaseAsync(old.Lease, ct).ConfigureAwait(false);
            }
            catch (Grpc.Core.RpcException)
            {
                // Already expired: nothing to revoke.
            }
        }
        return record;
    }

    /// <summary>Records that this node's kernel reflects <paramref name="revision"/> since <paramref name="at"/>.</summary>
    public Task RecordAppliedAsync(long revision, DateTimeOffset at, CancellationToken ct = default)
        => _etcd.PutAsync(ClusterKeys.Applied(Record.Name), new AppliedRecord(revision, at).ToJson(), Lease, ct);

    private static string Beat() => DateTimeOffset.UtcNow.ToString("O", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>
    /// Writes the heartbeat (<c>alive/NODE</c>: the time by this node's clock) every third of the
    /// TTL, and 100 ms after a write that failed: peers take a node whose heartbeat they have not
    /// seen for a TTL for gone (<see cref="NodeLiveness"/>). A write waits on one member for half a
    /// period at most, so that a member that vanished does not hold the next beat back.
    /// </summary>
    private async Task BeatLoopAsync()
    {
        var period = NodeLiveness.HeartbeatPeriod(Ttl);
        var perMember = TimeSpan.FromMilliseconds(Math.Min(1000, period.TotalMilliseconds / 2));
        var wait = period;
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(wait, _stop.Token).ConfigureAwait(false);
                await _etcd.PutAsync(ClusterKeys.Alive(Record.Name), Beat(), Lease, _stop.Token, perMember).ConfigureAwait(false);
                wait = period;
            }
            catch (OperationCanceledException) when (_stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is RelayException or Grpc.Core.RpcException)
            {
                // The store is away, or the lease expired (the renewals join again): beat again soon.
                wait = TimeSpan.FromMilliseconds(100);
            }
        }
    }

    private async Task RenewLoopAsync()
    {
        var period = Ttl / 3;
        var wait = period;
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(wait, _stop.Token).ConfigureAwait(false);
                // After a renewal that failed (the leader gone, an election), the next comes soon,
                // not a period later: a new leader gives every lease one TTL from its election, and
                // a live node that waited out whole periods between tries was seen to lose its lease.
                wait = TimeSpan.FromMilliseconds(Math.Min(200, period.TotalMilliseconds));
                // Each member gets a sixth of the TTL: a member cut off from the quorum (seen: the
                // connection preferred the lost node's member) must not hold the renewal until the
                // lease is gone, which made a healthy node "lost" together with the lost one.
                var left = await _etcd.KeepAliveOnceAsync(Lease, _stop.Token, period / 2).ConfigureAwait(false);
                if (left <= 0)
                {
                    // Expired while the node was cut off: everyone has seen it go; join again.
                    Record = await WriteAsync(_etcd, Record with { StartedAt = Record.StartedAt }, Ttl, _stop.Token).ConfigureAwait(false);
                    Interlocked.Exchange(ref _lease, Record.Lease);
                    Rejoined?.Invoke(this);
                }
                Interlocked.Exchange(ref _renewedTicks, Environment.TickCount64);
                LastError = null;
                wait = period;
            }
            catch (OperationCanceledException) when (_stop.IsCancellationRequested)
            {
                return;
            }
            catch (RelayException e)
            {
                LastError = e.Message;
            }
            catch (Grpc.Core.RpcException e)
            {
                // Not a member failure (those are RelayException): said, and tried again.
                LastError = e.Status.Detail;
            }
        }
    }

    /// <summary>Leaves the cluster: stops renewing and revokes the lease, so that others see the node go at once.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        await _stop.CancelAsync().ConfigureAwait(false);
        try
        {
            await Task.WhenAll(_renewals, _beats).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
        try
        {
            await _etcd.RevokeLeaseAsync(Lease).ConfigureAwait(false);
        }
        catch (Exception e) when (e is RelayException or Grpc.Core.RpcException)
        {
            // The store is away, or the lease is gone already: it expires on its own.
        }
    }

    /// <summary>Stops renewing without revoking (what a crash looks like to the cluster); for tests and the lab.</summary>
    internal async Task AbandonAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        try
        {
            await Task.WhenAll(_renewals, _beats).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
    }
}
