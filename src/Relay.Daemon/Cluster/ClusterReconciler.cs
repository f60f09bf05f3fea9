using System.Collections.Frozen;
using System.Globalization;
using System.Net;
using Microsoft.Extensions.Logging;
using Relay.Cluster;
using Relay.Cluster.Etcd;
using Relay.Core.Errors;
using Relay.Core.Reconcile;
using Relay.Engine.Cluster;

namespace Relay.Daemon.Cluster;

/// <summary>
/// Keeps one network's part on this node at the cluster's desired state: every watch step that
/// touches the network, or the nodes, is read into one <see cref="Relay.Core.Reconcile.NetworkState"/>
/// and handed to <see cref="NodeNetwork.Reconcile(NetworkState, NetworkState, StateChange, bool)"/>, then the revision is recorded as applied under
/// the node's lease (what <c>relay migrate</c> waits for). Steps that change only other nodes'
/// applied revisions are not reconciled: otherwise each record would start the next round.
/// A step the kernel refuses is logged and retried with the next one; the table stays as it was.
/// </summary>
public sealed partial class ClusterReconciler(EtcdConnection etcd, NodeLease lease, NodeNetwork network, IPNetwork pool4, IPNetwork pool6, ILogger log)
{
    private readonly Lock _gate = new();
    private NetworkState? _state;
    private NetworkState? _handed;
    private IReadOnlySet<string> _masked = FrozenSet<string>.Empty;

    /// <summary>The last error, or null after a step that applied.</summary>
    public string? LastError { get; private set; }

    /// <summary>Watches and reconciles until <paramref name="ct"/> is cancelled, recording each applied revision.</summary>
    public async Task RunAsync(CancellationToken ct)
    {
        await using var recorder = new AppliedRecorder(lease, log);
        await new ClusterWatch(etcd, ClusterKeys.Root).RunAsync(step =>
        {
            if (Apply(step) == StepOutcome.Applied)
            {
                recorder.Record(step.Revision, DateTimeOffset.UtcNow);
            }
            return Task.CompletedTask;
        }, ct).ConfigureAwait(false);
    }

    /// <summary>
    /// Brings the kernel to <paramref name="step"/>'s state of this network, without the nodes in
    /// <paramref name="suspected"/> (peers this node takes for gone before their lease expires: their
    /// instances leave its balancers and its VXLAN peers). Skipped when the step touches neither the
    /// network nor the nodes; Failed (logged, the kernel as it was) when the kernel refused it. The
    /// caller records the revision.
    /// </summary>
    public StepOutcome Apply(WatchStep step, IReadOnlySet<string>? suspected = null)
    {
        lock (_gate)
        {
            if (!step.Resync && _state is not null && network.AppliedRevision > 0 && !step.Changed.Any(Relevant))
            {
                return StepOutcome.Skipped;
            }
            StateChange? change = null;
            try
            {
                // The state is kept parsed: a step reads only the keys it changed.
                var from = _state;
                _state = step.Resync || from is null
                    ? ClusterState.Read(network.Network, pool4, pool6, step.Revision, step.State)
                    : ClusterState.Update(from, pool4, pool6, step.Revision, step.Changed.Where(Relevant), step.State, out change);
            }
            catch (Exception e) when (e is RelayException or InvalidOperationException)
            {
                LastError = e.Message;
                LogRefused(log, network.Network, step.Revision, e.Message);
                return StepOutcome.Failed;
            }
            return Hand(change, suspected ?? _masked, again: false);
        }
    }

    /// <summary>
    /// Applies the last state again without the nodes now in <paramref name="suspected"/>, when that
    /// changes which of its nodes are left out; the store's revision is the same.
    /// </summary>
    public StepOutcome Resuspect(IReadOnlySet<string> suspected)
    {
        lock (_gate)
        {
            if (_state is not { } state || SameNodesLeftOut(state, suspected, _masked))
            {
                return StepOutcome.Skipped;
            }
            return Hand(new StateChange(FrozenSet<string>.Empty, FrozenSet<string>.Empty, FrozenSet<string>.Empty, true), suspected, again: true);
        }
    }

    /// <summary>Hands the state, less the suspected nodes, to the node; the caller holds the gate.</summary>
    private StepOutcome Hand(StateChange? change, IReadOnlySet<string> suspected, bool again)
    {
        var state = _state!;
        var view = LeaveOut(state, suspected);
        if (change is not null && !SameNodesLeftOut(state, suspected, _masked))
        {
            change = change with { Nodes = true };
        }
        try
        {
            network.Reconcile(view, _handed, change, again);
            LastError = null;
            return StepOutcome.Applied;
        }
        catch (Exception e) when (e is RelayException or IOException or InvalidOperationException)
        {
            LastError = e.Message;
            LogRefused(log, network.Network, state.Revision, e.Message);
            return StepOutcome.Failed;
        }
        finally
        {
            _handed = view;
            _masked = suspected;
        }
    }

    /// <summary><paramref name="state"/> without the nodes in <paramref name="suspected"/> (the same object when none of them is in it).</summary>
    private static NetworkState LeaveOut(NetworkState state, IReadOnlySet<string> suspected)
        => suspected.Count == 0 || !suspected.Any(state.Nodes.ContainsKey) ? state : state with { Nodes = state.Nodes.RemoveRange(suspected) };

    private static bool SameNodesLeftOut(NetworkState state, IReadOnlySet<string> a, IReadOnlySet<string> b)
        => state.Nodes.Keys.All(n => a.Contains(n) == b.Contains(n));

    private bool Relevant(string key) => ClusterState.Concerns(network.Network, key);

    /// <summary>The network's state as of the last step applied or tried (null before the first), suspected nodes included: what the store says.</summary>
    public NetworkState? State => _state;

    /// <summary>
    /// Waits until every live node has recorded a revision at least <paramref name="revision"/>;
    /// returns the nodes that had not when <paramref name="timeout"/> passed (empty: all did).
    /// </summary>
    public static async Task<IReadOnlyList<string>> WaitAppliedAsync(EtcdConnection etcd, long revision, TimeSpan timeout, CancellationToken ct = default)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var (nodes, _) = await etcd.GetPrefixAsync(ClusterKeys.NodesPrefix, ct).ConfigureAwait(false);
            var (applied, _) = await etcd.GetPrefixAsync(ClusterKeys.AppliedPrefix, ct).ConfigureAwait(false);
            var at = applied.ToDictionary(kv => ClusterKeys.Leaf(kv.Key.ToStringUtf8()), kv => AppliedRecord.Parse(kv.Value.ToStringUtf8()).Revision, StringComparer.Ordinal);
            var behind = nodes.Select(kv => ClusterKeys.Leaf(kv.Key.ToStringUtf8())).Where(n => at.GetValueOrDefault(n) < revision).Order(StringComparer.Ordinal).ToArray();
            if (behind.Length == 0 || DateTime.UtcNow >= deadline)
            {
                return behind;
            }
            await Task.Delay(1, ct).ConfigureAwait(false);
        }
    }

    /// <summary>What <see cref="Apply"/> did with a step.</summary>
    public enum StepOutcome
    {
        /// <summary>Nothing of this network changed.</summary>
        Skipped,

        /// <summary>The kernel holds the step's state.</summary>
        Applied,

        /// <summary>The kernel refused it; it keeps the last applied state.</summary>
        Failed,
    }

    [LoggerMessage(EventId = 85, Level = LogLevel.Error, Message = "network {Network}: revision {Revision} not applied: {Error}; the kernel keeps the last applied state, the next change retries")]
    private static partial void LogRefused(ILogger log, string network, long revision, string error);
}
