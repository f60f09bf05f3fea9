using System.Collections.Frozen;
using System.Globalization;
using System.Net;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Relay.Cluster;
using Relay.Cluster.Etcd;
using Relay.Core.Errors;
using Relay.Core.Overlay;
using Relay.Daemon.Api;

namespace Relay.Daemon;

/// <summary>
/// This daemon as a node of a cluster (<c>relay daemon --node NAME --etcd URL --underlay ADDR</c>): it
/// holds its node lease, and keeps the cluster's state current from a watch (every node's record
/// and applied revision), which is what <c>relay node ls</c> and <c>relay status</c> show. Nodes
/// whose lease expired while this daemon watched are kept as <c>lost</c>.
/// </summary>
public sealed partial class ClusterMembership : IAsyncDisposable
{
    private readonly EtcdConnection _etcd;
    private readonly NodeLease _lease;
    private readonly ClusterWatch _watch;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _watching;
    private readonly ILogger _log;
    private readonly Dictionary<string, (NodeRecord Record, DateTimeOffset Since)> _lost = new(StringComparer.Ordinal);
    private readonly Lock _gate = new();
    private readonly NodeLiveness _liveness;
    private readonly Task _judging;
    private volatile WatchStep? _state;
    private volatile IReadOnlySet<string> _suspected = FrozenSet<string>.Empty;
    private long _relevantRevision;

    private ClusterMembership(EtcdConnection etcd, NodeLease lease, ILogger log)
    {
        _etcd = etcd;
        _lease = lease;
        _log = log;
        _liveness = new NodeLiveness(lease.Record.Name, lease.Ttl);
        _watch = new ClusterWatch(etcd, ClusterKeys.Root);
        _watching = _watch.RunAsync(Observe, _stop.Token);
        _judging = JudgeAsync(_stop.Token);
    }

    /// <summary>
    /// Peers this node takes for gone while their lease still holds: no heartbeat seen for a TTL
    /// (see <see cref="NodeLiveness"/>). Their instances leave this node's balancers, as a failed
    /// health check's do; moving their instances elsewhere waits for the lease to expire.
    /// </summary>
    public IReadOnlySet<string> Suspected => _suspected;

    /// <summary>Raised (on a pool thread, never two at once) when <see cref="Suspected"/> changed.</summary>
    public event Action? SuspicionChanged;

    /// <summary>This node's name.</summary>
    public string Node => _lease.Record.Name;

    /// <summary>The connection to the cluster's etcd.</summary>
    public EtcdConnection Etcd => _etcd;

    /// <summary>This node's lease (its record and applied revision live on it).</summary>
    public NodeLease Lease => _lease;

    /// <summary>The etcd endpoints.</summary>
    public IReadOnlyList<string> Endpoints => _etcd.Endpoints;

    /// <summary>Checks the cluster options together; every error at once.</summary>
    public static void Validate(DaemonOptions options, ErrorCollector errors)
    {
        if (options.Etcd.Count == 0)
        {
            if (options.Underlay is not null)
            {
                errors.Add(ErrorCode.Invalid, "--underlay", "--underlay is for a cluster: it needs --etcd");
            }
            return;
        }
        EtcdConnection.ParseEndpoints(options.Etcd, "--etcd", errors);
        Relay.Core.Naming.ResourceName.ValidateNode(options.Node, "--node", errors);
        if (options.Underlay is null)
        {
            errors.Add(ErrorCode.Invalid, "--underlay", "a cluster node needs the address other nodes reach it at: --underlay ADDRESS");
        }
        else if (!IPAddress.TryParse(options.Underlay, out _))
        {
            errors.Add(ErrorCode.Invalid, "--underlay", $"'{options.Underlay}' is not an IP address");
        }
        if (options.LeaseTtl < TimeSpan.FromSeconds(1) || options.LeaseTtl > TimeSpan.FromMinutes(5))
        {
            errors.Add(ErrorCode.Invalid, "--lease-ttl", $"the node lease TTL must be between 1s and 5m, not {options.LeaseTtl.TotalSeconds:0.###}s");
        }
        if (options.RescheduleAfter < TimeSpan.Zero || options.RescheduleAfter > TimeSpan.FromDays(1))
        {
            errors.Add(ErrorCode.Invalid, "--reschedule-after", $"the wait before a lost node's instances start elsewhere must be between 0s and 1d, not {Relay.Core.Model.Duration.Format(options.RescheduleAfter)}");
        }
    }

    private const int JoinAttempts = 40;

    /// <summary>Joins: connects, writes the node's record on a new lease, starts watching.</summary>
    public static async Task<ClusterMembership> JoinAsync(DaemonOptions options, ILogger log, CancellationToken ct = default)
    {
        var etcd = new EtcdConnection(options.Etcd);
        try
        {
            // A store that is away at start (a host coming back before its member caught up, a
            // member electing) is waited for, as a kubelet waits for its API server; a minute
            // without it is an error that says so.
            NodeLease lease;
            for (var attempt = 1; ; attempt++)
            {
                try
                {
                    lease = await NodeLease.JoinAsync(etcd, options.Node!, options.Underlay!, VxlanPlan.Mac(options.Node!), options.LeaseTtl, ct).ConfigureAwait(false);
                    break;
                }
                catch (Exception e) when (e is RelayException { Code: ErrorCode.Unavailable } or Grpc.Core.RpcException && attempt < JoinAttempts)
                {
                    LogJoinRetry(log, options.Node!, attempt, e is RelayException r ? r.Message : ((Grpc.Core.RpcException)e).Status.Detail);
                    await Task.Delay(TimeSpan.FromMilliseconds(Math.Min(2000, 100 * attempt)), ct).ConfigureAwait(false);
                }
                catch (Grpc.Core.RpcException e)
                {
                    throw new RelayException(ErrorCode.Unavailable, "cluster", $"cluster store unavailable: {e.Status.Detail}", e);
                }
            }
            LogJoined(log, options.Node!, string.Join(",", etcd.Endpoints), lease.Lease, options.LeaseTtl.TotalSeconds);
            return new ClusterMembership(etcd, lease, log);
        }
        catch
        {
            etcd.Dispose();
            throw;
        }
    }

    private Task Observe(WatchStep step)
    {
        var before = _state;
        _state = step;
        var now = Environment.TickCount64;
        lock (_gate)
        {
            if (step.Changed.Any(k => !k.StartsWith(ClusterKeys.AppliedPrefix, StringComparison.Ordinal) && !k.StartsWith(ClusterKeys.AlivePrefix, StringComparison.Ordinal)))
            {
                Interlocked.Exchange(ref _relevantRevision, step.Revision);
            }
            foreach (var key in step.Changed)
            {
                var alive = key.StartsWith(ClusterKeys.AlivePrefix, StringComparison.Ordinal);
                if (!alive && !key.StartsWith(ClusterKeys.NodesPrefix, StringComparison.Ordinal))
                {
                    continue;
                }
                var name = ClusterKeys.Leaf(key);
                if (step.State.ContainsKey(key))
                {
                    // A heartbeat, or the record of a node that joined: seen now.
                    _liveness.Seen(name, now);
                    if (!alive)
                    {
                        _lost.Remove(name);
                    }
                }
                else if (!alive)
                {
                    _liveness.Gone(name);
                    if (before is not null && before.State.TryGetValue(key, out var json) && ParseNode(json) is { } record)
                    {
                        _lost[name] = (record, DateTimeOffset.UtcNow);
                        LogNodeLost(_log, name);
                    }
                }
            }
        }
        Judge(now);
        return Task.CompletedTask;
    }

    /// <summary>Every 100 ms: which peers' heartbeats stayed away for a TTL.</summary>
    private async Task JudgeAsync(CancellationToken ct)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(100));
        try
        {
            while (await timer.WaitForNextTickAsync(ct).ConfigureAwait(false))
            {
                Judge(Environment.TickCount64);
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private readonly Lock _judge = new();

    private void Judge(long now)
    {
        lock (_judge)
        {
            IReadOnlySet<string> was = _suspected, next;
            lock (_gate)
            {
                if (!_liveness.Evaluate(now))
                {
                    return;
                }
                next = _liveness.Suspected.ToFrozenSet(StringComparer.Ordinal);
            }
            _suspected = next;
            foreach (var node in next.Except(was))
            {
                LogSuspected(_log, node, _lease.Ttl.TotalSeconds);
            }
            foreach (var node in was.Except(next))
            {
                LogCleared(_log, node, _state?.State.ContainsKey(ClusterKeys.Node(node)) == true ? "its heartbeat came again" : "its lease expired: it is lost");
            }
            SuspicionChanged?.Invoke();
        }
    }

    /// <summary>Every node: live ones from the cluster's state, lost ones this daemon saw go.</summary>
    public async Task<IReadOnlyList<NodeInfo>> NodesAsync(CancellationToken ct = default)
    {
        var state = _state;
        var result = new List<NodeInfo>();
        if (state is not null)
        {
            var instances = state.State.Where(kv => kv.Key.Contains("/instances/", StringComparison.Ordinal))
                .Select(kv => JsonDocumentNode(kv.Value)).Where(n => n is not null).GroupBy(n => n!).ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);
            foreach (var (key, json) in state.State.Where(kv => kv.Key.StartsWith(ClusterKeys.NodesPrefix, StringComparison.Ordinal)))
            {
                if (ParseNode(json) is not { } record)
                {
                    continue;
                }
                var appliedRecord = AppliedRecord.Parse(state.State.GetValueOrDefault(ClusterKeys.Applied(record.Name)));
                var applied = appliedRecord.Revision;
                var age = await LeaseAgeAsync(record, ct).ConfigureAwait(false);
                // Lag counts the revisions that changed desired state: heartbeats and applied records do not.
                var lag = applied == 0 ? (long?)null : Math.Max(0, Interlocked.Read(ref _relevantRevision) - applied);
                var condition = _suspected.Contains(record.Name) ? "suspect" : "ready";
                result.Add(new NodeInfo(record.Name, record.Underlay, condition, age, instances.GetValueOrDefault(record.Name), applied, lag, record.StartedAt, record.Name == Node) { AppliedAt = appliedRecord.At });
            }
        }
        lock (_gate)
        {
            foreach (var (name, (record, since)) in _lost)
            {
                result.Add(new NodeInfo(name, record.Underlay, "lost", null, 0, 0, null, since, false));
            }
        }
        return result.OrderBy(n => n.Name, StringComparer.Ordinal).ToArray();
    }

    /// <summary>How long ago a node last renewed its lease (granted TTL minus what is left), null when unknown.</summary>
    private async Task<double?> LeaseAgeAsync(NodeRecord record, CancellationToken ct)
    {
        if (record.Name == Node)
        {
            return _lease.SinceRenewal.TotalSeconds;
        }
        try
        {
            var (granted, left) = await _etcd.LeaseTimeToLiveAsync(record.Lease, ct).ConfigureAwait(false);
            return left < 0 ? null : granted - left;
        }
        catch (RelayException)
        {
            return null;
        }
    }

    /// <summary>The cluster's health: etcd members and leader, this node's watch, every node's lag.</summary>
    public async Task<ClusterStatus> StatusAsync(CancellationToken ct = default)
    {
        var members = new List<EtcdMemberInfo>();
        string? error = null;
        try
        {
            var list = await _etcd.MembersAsync(ct).ConfigureAwait(false);
            var status = await _etcd.MemberStatusAsync(ct).ConfigureAwait(false);
            var leader = status.Select(s => s.Status?.Leader ?? 0).FirstOrDefault(l => l != 0);
            foreach (var m in list)
            {
                var url = m.ClientURLs.FirstOrDefault() ?? "";
                var s = status.FirstOrDefault(x => m.ClientURLs.Contains(x.Endpoint));
                members.Add(new EtcdMemberInfo(m.Name, url, m.ID == leader, s.Status is null ? (s.Endpoint is null ? "unknown" : "unreachable") : "started", s.Status?.Header.Revision));
            }
        }
        catch (RelayException e)
        {
            error = e.Message;
        }
        var nodes = await NodesAsync(ct).ConfigureAwait(false);
        return new ClusterStatus(Node, _etcd.Endpoints, members, _watch.Connected, _watch.Revision, _lease.LastError ?? _watch.LastError ?? error, nodes);
    }

    private static NodeRecord? ParseNode(string json)
    {
        try
        {
            return JsonSerializer.Deserialize<NodeRecord>(json, ApiJson.Options);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static string? JsonDocumentNode(string json)
    {
        try
        {
            using var doc = JsonDocument.Parse(json);
            return doc.RootElement.TryGetProperty("node", out var n) && n.ValueKind == JsonValueKind.String ? n.GetString() : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>Leaves the cluster (revokes the lease: others see the node go at once) and stops watching.</summary>
    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        await _watching.ConfigureAwait(false);
        await _judging.ConfigureAwait(false);
        await _lease.DisposeAsync().ConfigureAwait(false);
        _etcd.Dispose();
        _stop.Dispose();
        LogLeft(_log, Node);
    }

    [LoggerMessage(EventId = 70, Level = LogLevel.Information, Message = "node {Node}: joined the cluster at {Etcd} (lease {Lease:x}, TTL {Ttl}s)")]
    private static partial void LogJoined(ILogger log, string node, string etcd, long lease, double ttl);

    [LoggerMessage(EventId = 71, Level = LogLevel.Warning, Message = "node {Node}: its lease expired; it left the cluster")]
    private static partial void LogNodeLost(ILogger log, string node);

    [LoggerMessage(EventId = 74, Level = LogLevel.Warning, Message = "node {Node}: no heartbeat seen for a lease TTL ({Ttl}s) while this node's came through: suspected; its instances leave this node's balancers until it beats again (or its lease expires and it is lost)")]
    private static partial void LogSuspected(ILogger log, string node, double ttl);

    [LoggerMessage(EventId = 75, Level = LogLevel.Information, Message = "node {Node}: no longer suspected: {Why}")]
    private static partial void LogCleared(ILogger log, string node, string why);

    [LoggerMessage(EventId = 73, Level = LogLevel.Warning, Message = "node {Node}: cannot join yet (attempt {Attempt}): {Error}; trying again")]
    private static partial void LogJoinRetry(ILogger log, string node, int attempt, string error);

    [LoggerMessage(EventId = 72, Level = LogLevel.Information, Message = "node {Node}: left the cluster")]
    private static partial void LogLeft(ILogger log, string node);
}
