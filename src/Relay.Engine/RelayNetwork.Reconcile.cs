using System.Diagnostics;

namespace Relay.Engine;

/// <summary>
/// The one path to the kernel: an operation validates, builds the next state in a
/// <see cref="LocalStep"/> and hands it to <see cref="Commit"/>, which lets the flow addresses
/// follow their balancers, derives the kernel change (<see cref="LocalPlan.Delta"/>, the cluster's
/// <see cref="Relay.Core.Reconcile.Projection.Step"/> over the records as a cluster of one), applies it
/// in one nft transaction, and only then takes the state and deletes the conntrack entries the
/// step left stale. Nothing is written before the kernel accepted it, so a failure has nothing to undo.
/// </summary>
public sealed partial class RelayNetwork
{
    private LocalState _state = LocalState.Empty;

    /// <summary>What <see cref="Commit"/> did.</summary>
    /// <param name="Applied">When the kernel held the new table (a <see cref="Stopwatch"/> timestamp).</param>
    /// <param name="StaleFlows">Stateless conntrack entries deleted after it.</param>
    private readonly record struct Committed(long Applied, int StaleFlows);

    private LocalStep Begin() => new(_state);

    /// <summary>Brings the kernel to the step's state, then takes it. Call with the lock held.</summary>
    private Committed Commit(LocalStep step)
    {
        FlowsFollow(step);
        var delta = LocalPlan.Delta(step);
        if (delta.TouchesTable)
        {
            _dataplane.Apply(delta.Services, delta.RemovedServices, delta.Links, delta.RemovedLinks, delta.Flows, delta.RemovedFlows);
        }
        var applied = Stopwatch.GetTimestamp();
        _state = LocalPlan.Next(step, delta);
        _dirtyServices.UnionWith(step.Services);
        _dirtyInstances.UnionWith(step.Instances);
        foreach (var key in step.Flows)
        {
            _dirtyFlows.Add(FlowId(key.Client, key.Service));
            if (!step.State.Flows.ContainsKey(key) && step.From.Flows.TryGetValue(key, out var gone))
            {
                _flows4.Release(gone.Flow4);
                _flows6.Release(gone.Flow6);
            }
        }
        var stale = _dataplane.DeleteStale(delta.Stale);
        return new Committed(applied, stale);
    }

    /// <summary>
    /// Flow addresses follow their service's balancer: one whose instance no longer takes the
    /// service's flows is re-pointed by the service's policy; one whose client or whose last
    /// instance is gone goes. A migration points them at its target itself, before this runs.
    /// </summary>
    private void FlowsFollow(LocalStep step)
    {
        if (step.State.Flows.IsEmpty)
        {
            return;
        }
        var affected = step.AffectedServices();
        foreach (var flow in step.State.Flows.Values.ToArray())
        {
            var clientGone = !step.State.Instances.ContainsKey(flow.Client);
            if (!clientGone && !affected.Contains(flow.Service))
            {
                continue;
            }
            var svc = step.State.Services.GetValueOrDefault(flow.Service);
            var taking = svc is null ? [] : LocalPlan.EffectiveBackends(step.State, svc);
            if (clientGone || taking.Count == 0)
            {
                step.Drop(flow);
            }
            else if (!taking.Any(b => b.Name == flow.Backend))
            {
                step.Put(flow with { Backend = PickBackend(step.State, svc!, flow.Client) });
            }
        }
    }

    private static string FlowId(string client, Relay.Core.Naming.ServiceName service) => $"{client}>{service}";
}
