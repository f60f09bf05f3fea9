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
/// and handed to <see cref="NodeNetwork.Reconcile(NetworkState, NetworkState, StateChange)"/>, then the revision is recorded as applied under
/// the node's lease (what <c>relay migrate</c> waits for). Steps that change only other nodes'
/// applied revisions are not reconciled: otherwise each record would start the next round.
/// A step the kernel refuses is logged and retried with the next one; the table stays as it was.
/// </summary>
public sealed partial class ClusterReconciler(EtcdConnection etcd, NodeLease lease, NodeNetwork network, IPNetwork pool4, IPNetwork pool6, ILogger log)
{
    private NetworkState? _state;

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
    /// Brings the kernel to <paramref name="step"/>'s state of this network. Skipped when the step
    /// touches neither the network nor the nodes; Failed (logged, the kernel as it was) when the
    /// kernel refused it. The caller records the revision.
    /// </summary>
    public StepOutcome Apply(WatchStep step)
    {
        if (!step.Resync && _state is not null && network.AppliedRevision > 0 && !step.Changed.Any(Relevant))
        {
            return StepOutcome.Skipped;
        }
        try
        {
            // The state is kept parsed: a step reads only the keys it changed.
            var from = _state;
            StateChange? change = null;
            var state = _state = step.Resync || from is null
                ? ClusterState.Read(network.Network, pool4, pool6, step.Revision, step.State)
                : ClusterState.Update(from, pool4, pool6, step.Revision, step.Changed.Where(Relevant), step.State, out change);
            network.Reconcile(state, from, change);
            LastError = null;
            return StepOutcome.Applied;
        }
        catch (Exception e) when (e is RelayException or IOException or InvalidOperationException)
        {
            LastError = e.Message;
            LogRefused(log, network.Network, step.Revision, e.Message);
            return StepOutcome.Failed;
        }
    }

    private bool Relevant(string key) => ClusterState.Concerns(network.Network, key);

    /// <summary>The network's state as of the last step applied or tried (null before the first).</summary>
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
