using Relay.Core.Model;
using Relay.Core.Reconcile;

namespace Relay.Cluster;

/// <summary>
/// Where the instances of a lost node start again: the pure decision, from one network's state.
/// An instance whose node holds no lease any more, that has a restart policy (anything but
/// <c>never</c>), that the user did not pin to its node, and that is not leaving anyway (draining),
/// goes to the live node with the fewest instances of the network (ties: by name), as Swarm
/// reschedules a lost node's tasks. Every node computes the same answer from the same state; the
/// target node writes the move, guarded by the instance's record and the lost node's absence, so a
/// node whose view is behind cannot move an instance twice.
/// </summary>
public static class ClusterPlacement
{
    /// <summary>One instance to start again on <paramref name="Target"/>.</summary>
    public sealed record Move(InstanceEntry Instance, string Target);

    /// <summary>
    /// The moves <paramref name="state"/> calls for, in instance-name order; none when no node is
    /// live. <paramref name="due"/> says of a lost node whether its instances may move yet (null: all
    /// may); those of a node still in its grace period are left where they are.
    /// </summary>
    public static IReadOnlyList<Move> Rescheduling(NetworkState state, Func<string, bool>? due = null)
    {
        if (state.Nodes.Count == 0)
        {
            return [];
        }
        var load = state.Nodes.Keys.ToDictionary(n => n, _ => 0, StringComparer.Ordinal);
        var orphans = new List<InstanceEntry>();
        foreach (var instance in state.Instances.Values)
        {
            if (load.TryGetValue(instance.Node, out var count))
            {
                load[instance.Node] = count + 1;
            }
            else if (Restartable(instance) && (due is null || due(instance.Node)))
            {
                orphans.Add(instance);
            }
        }
        var moves = new List<Move>(orphans.Count);
        foreach (var instance in orphans)
        {
            var target = load.OrderBy(x => x.Value).ThenBy(x => x.Key, StringComparer.Ordinal).First().Key;
            load[target]++;
            moves.Add(new Move(instance, target));
        }
        return moves;
    }

    /// <summary>Whether a lost node's <paramref name="instance"/> starts again elsewhere.</summary>
    public static bool Restartable(InstanceEntry instance)
        => !instance.Pinned && instance.Mode != InstanceMode.Draining && instance.Restart is not "never";
}
