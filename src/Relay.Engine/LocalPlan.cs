using System.Collections.Immutable;
using System.Net;
using Relay.Core.Dataplane;
using Relay.Core.Naming;

namespace Relay.Engine;

/// <summary>
/// A network's records at one moment. Immutable: an operation builds the next state beside the
/// current one (<see cref="LocalStep"/>), the kernel change is derived from the two
/// (<see cref="LocalPlan.Delta"/>), and the network takes the next state only once the kernel
/// holds it, so a failed step has nothing to undo.
/// </summary>
/// <param name="Services">Services by name.</param>
/// <param name="Instances">Instances by name.</param>
/// <param name="Flows">Per-client flow addresses by client and service.</param>
internal sealed record LocalState(
    ImmutableDictionary<ServiceName, ServiceRecord> Services,
    ImmutableDictionary<string, InstanceRecord> Instances,
    ImmutableDictionary<(string Client, ServiceName Service), FlowRecord> Flows)
{
    /// <summary>Nothing.</summary>
    public static LocalState Empty { get; } = new(
        ImmutableDictionary<ServiceName, ServiceRecord>.Empty,
        ImmutableDictionary.Create<string, InstanceRecord>(StringComparer.Ordinal),
        ImmutableDictionary<(string, ServiceName), FlowRecord>.Empty);
}

/// <summary>
/// One operation's change of the records: the next state and the keys it touched. Every write
/// goes through it, so that what changed is known without comparing whole states.
/// </summary>
internal sealed class LocalStep(LocalState from)
{
    /// <summary>The state the step started from.</summary>
    public LocalState From { get; } = from;

    /// <summary>The state as the step left it so far.</summary>
    public LocalState State { get; private set; } = from;

    /// <summary>Services put or dropped.</summary>
    public HashSet<ServiceName> Services { get; } = [];

    /// <summary>Instances put or dropped.</summary>
    public HashSet<string> Instances { get; } = new(StringComparer.Ordinal);

    /// <summary>Flows put or dropped.</summary>
    public HashSet<(string Client, ServiceName Service)> Flows { get; } = [];

    public void Put(ServiceRecord record)
    {
        State = State with { Services = State.Services.SetItem(record.Name, record) };
        Services.Add(record.Name);
    }

    public void DropService(ServiceName name)
    {
        State = State with { Services = State.Services.Remove(name) };
        Services.Add(name);
    }

    public void Put(InstanceRecord record)
    {
        State = State with { Instances = State.Instances.SetItem(record.Name, record) };
        Instances.Add(record.Name);
    }

    public void DropInstance(string name)
    {
        State = State with { Instances = State.Instances.Remove(name) };
        Instances.Add(name);
    }

    public void Put(FlowRecord flow)
    {
        State = State with { Flows = State.Flows.SetItem((flow.Client, flow.Service), flow) };
        Flows.Add((flow.Client, flow.Service));
    }

    public void Drop(FlowRecord flow)
    {
        State = State with { Flows = State.Flows.Remove((flow.Client, flow.Service)) };
        Flows.Add((flow.Client, flow.Service));
    }

    /// <summary>The services whose balancer the step may have changed: those it touched, and those of the instances it touched.</summary>
    public IReadOnlySet<ServiceName> AffectedServices()
    {
        var affected = new HashSet<ServiceName>(Services);
        foreach (var name in Instances)
        {
            if (State.Instances.TryGetValue(name, out var now))
            {
                affected.Add(now.Service);
            }
            if (From.Instances.TryGetValue(name, out var was))
            {
                affected.Add(was.Service);
            }
        }
        return affected;
    }
}

/// <summary>What the kernel must do for one step: one nft transaction, then the conntrack entries it left stale.</summary>
/// <param name="Services">Services to install or change (the data plane skips those it already holds as they are).</param>
/// <param name="RemovedServices">Services to remove.</param>
/// <param name="Links">Instance links to add.</param>
/// <param name="RemovedLinks">Instance links (host interfaces) to remove.</param>
/// <param name="Flows">Flow addresses to install or re-point.</param>
/// <param name="RemovedFlows">Flow addresses to remove, by id.</param>
/// <param name="StaleVirtual">Virtual and flow addresses whose stateless conntrack entries may be stale.</param>
/// <param name="StaleBackends">The instance addresses those entries were translated to and no longer may be.</param>
internal sealed record LocalDelta(
    IReadOnlyList<DataplaneService> Services,
    IReadOnlyList<string> RemovedServices,
    IReadOnlyList<DataplaneLink> Links,
    IReadOnlyList<string> RemovedLinks,
    IReadOnlyList<DataplaneFlow> Flows,
    IReadOnlyList<string> RemovedFlows,
    IReadOnlyList<IPAddress> StaleVirtual,
    IReadOnlyList<IPAddress> StaleBackends)
{
    /// <summary>Whether the table must change at all.</summary>
    public bool TouchesTable => Services.Count + RemovedServices.Count + Links.Count + RemovedLinks.Count + Flows.Count + RemovedFlows.Count > 0;
}

/// <summary>
/// The single host's reconciler, its pure half: what the kernel holds for a state
/// (<see cref="All"/>, the restore's and the recovery's target) and what one step changes in it
/// (<see cref="Delta"/>, the same projection applied to the keys the step touched). Every operation
/// (add, remove, migrate, a health verdict, a flow address) only builds the next state; none of
/// them decides which elements to write or which conntrack entries are stale.
/// </summary>
internal static class LocalPlan
{
    /// <summary>
    /// The instances of <paramref name="service"/> that take new flows: the members of the balancer
    /// that pass their health check (or have none). When none passes, all members stay: an instance
    /// that fails a check may still serve, and no instance surely would not.
    /// </summary>
    public static IReadOnlyList<InstanceRecord> EffectiveBackends(LocalState state, ServiceRecord service)
    {
        var members = new List<InstanceRecord>(service.Backends.Count);
        foreach (var name in service.Backends)
        {
            if (state.Instances.TryGetValue(name, out var member))
            {
                members.Add(member);
            }
        }
        var healthy = members.FindAll(i => i.Health is HealthStates.None or HealthStates.Healthy);
        return healthy.Count > 0 ? healthy : members;
    }

    /// <summary>One service as the data plane holds it.</summary>
    public static DataplaneService Service(LocalState state, ServiceRecord s)
        => new(s.Name.Value, s.Vip4, s.Vip6, s.Policy, s.MaglevTableSize, s.Ports,
            EffectiveBackends(state, s).Select(i => new DataplaneBackend(i.Name, i.Address4, i.Address6)).ToArray());

    /// <summary>One instance's link (its veth's orchestrator end and its addresses, for anti-spoofing).</summary>
    public static DataplaneLink Link(InstanceRecord r) => new(r.HostInterface, r.Address4, r.Address6);

    /// <summary>One flow address as the data plane holds it.</summary>
    public static DataplaneFlow Flow(LocalState state, FlowRecord f)
    {
        var client = state.Instances[f.Client];
        var backend = state.Instances[f.Backend];
        return new DataplaneFlow(f.Id, client.Address4, client.Address6, f.Flow4, f.Flow6, backend.Address4, backend.Address6);
    }

    /// <summary>Everything the kernel holds for <paramref name="state"/>.</summary>
    public static DataplaneSpec All(LocalState state) => new(
        state.Services.Values.Select(s => Service(state, s)).ToArray(),
        state.Instances.Values.Select(Link).ToArray(),
        state.Flows.Values.Select(f => Flow(state, f)).ToArray());

    /// <summary>What the kernel must do to go from the step's start to its end.</summary>
    public static LocalDelta Delta(LocalStep step)
    {
        var (before, after) = (step.From, step.State);
        var services = new List<DataplaneService>();
        var removedServices = new List<string>();
        var staleVirtual = new List<IPAddress>();
        var staleBackends = new List<IPAddress>();
        foreach (var name in step.AffectedServices())
        {
            var was = before.Services.GetValueOrDefault(name);
            var now = after.Services.GetValueOrDefault(name);
            if (now is not null)
            {
                services.Add(Service(after, now));
            }
            else if (was is not null)
            {
                removedServices.Add(name.Value);
            }
            if (was is null)
            {
                continue;
            }
            // Instances that took the service's flows and no longer do: the stateless flows
            // translated to them must go, so that their next packet is balanced afresh.
            var taking = now is null ? [] : EffectiveBackends(after, now).Select(i => i.Name).ToHashSet(StringComparer.Ordinal);
            var left = EffectiveBackends(before, was).Where(i => !taking.Contains(i.Name)).ToArray();
            if (left.Length > 0)
            {
                staleVirtual.Add(was.Vip4);
                staleVirtual.Add(was.Vip6);
                foreach (var i in left)
                {
                    staleBackends.Add(i.Address4);
                    staleBackends.Add(i.Address6);
                }
            }
        }
        var links = new List<DataplaneLink>();
        var removedLinks = new List<string>();
        foreach (var name in step.Instances)
        {
            var was = before.Instances.GetValueOrDefault(name);
            var now = after.Instances.GetValueOrDefault(name);
            if (now is not null && was is null)
            {
                links.Add(Link(now));
            }
            else if (now is null && was is not null)
            {
                removedLinks.Add(was.HostInterface);
            }
        }
        var flows = new List<DataplaneFlow>();
        var removedFlows = new List<string>();
        foreach (var key in step.Flows)
        {
            var was = before.Flows.GetValueOrDefault(key);
            var now = after.Flows.GetValueOrDefault(key);
            if (now is not null)
            {
                flows.Add(Flow(after, now));
            }
            else if (was is not null)
            {
                removedFlows.Add(was.Id);
            }
            if (was is not null && (now is null || now.Backend != was.Backend) && before.Instances.TryGetValue(was.Backend, out var old))
            {
                staleVirtual.Add(was.Flow4);
                staleVirtual.Add(was.Flow6);
                staleBackends.Add(old.Address4);
                staleBackends.Add(old.Address6);
            }
        }
        return new LocalDelta(services, removedServices, links, removedLinks, flows, removedFlows, staleVirtual.Distinct().ToArray(), staleBackends.Distinct().ToArray());
    }
}
