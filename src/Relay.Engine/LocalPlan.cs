using System.Collections.Immutable;
using System.Net;
using Relay.Core.Dataplane;
using Relay.Core.Naming;
using Relay.Core.Reconcile;

namespace Relay.Engine;

/// <summary>
/// A network's records at one moment, with the same state as the cluster's reconciler reads it
/// (<see cref="Net"/>: a cluster of one node) and what the kernel holds for it (<see cref="View"/>).
/// Immutable: an operation builds the next state beside the current one (<see cref="LocalStep"/>),
/// the kernel change is derived from the two by the one projection (<see cref="LocalPlan.Delta"/>,
/// <see cref="Projection.Step"/>), and the network takes the next state only once the kernel holds
/// it, so a failed step has nothing to undo.
/// </summary>
/// <param name="Services">Services by name.</param>
/// <param name="Instances">Instances by name.</param>
/// <param name="Flows">Per-client flow addresses by client and service.</param>
/// <param name="Net">The records as the projection reads them.</param>
/// <param name="View">The projection of <see cref="Net"/> (of an earlier state while a step is built: <see cref="LocalPlan.Next"/> brings it along).</param>
internal sealed record LocalState(
    ImmutableDictionary<ServiceName, ServiceRecord> Services,
    ImmutableDictionary<string, InstanceRecord> Instances,
    ImmutableDictionary<(string Client, ServiceName Service), FlowRecord> Flows,
    NetworkState Net,
    NodeView View)
{
    /// <summary>The single host's node, as the projection names it.</summary>
    public const string Node = "local";

    private static readonly NetworkState EmptyNet = NetworkState.Empty("local") with
    {
        Nodes = ImmutableSortedDictionary.Create<string, NodeEntry>(StringComparer.Ordinal).Add(Node, new NodeEntry(Node, IPAddress.Loopback)),
    };

    /// <summary>Nothing.</summary>
    public static LocalState Empty { get; } = new(
        ImmutableDictionary<ServiceName, ServiceRecord>.Empty,
        ImmutableDictionary.Create<string, InstanceRecord>(StringComparer.Ordinal),
        ImmutableDictionary<(string, ServiceName), FlowRecord>.Empty,
        EmptyNet,
        Projection.Project(EmptyNet, Node));

    /// <summary>A state of these records (a restore's), projected whole.</summary>
    public static LocalState Of(IEnumerable<ServiceRecord> services, IEnumerable<InstanceRecord> instances, IEnumerable<FlowRecord> flows)
    {
        var step = new LocalStep(Empty);
        foreach (var s in services)
        {
            step.Put(s);
        }
        foreach (var i in instances)
        {
            step.Put(i);
        }
        foreach (var f in flows)
        {
            step.Put(f);
        }
        return step.State with { View = Projection.Project(step.State.Net, Node) };
    }

    /// <summary>A service as the projection reads it: its balancer's members are its slots, in order.</summary>
    public static ServiceEntry Entry(ServiceRecord r) => new(r.Name.Value, r.Vip4, r.Vip6, r.Policy, r.Ports, [.. r.Backends])
    {
        TableSize = r.MaglevTableSize,
        FlowAddressing = r.FlowAddressing,
    };

    /// <summary>An instance as the projection reads it: active when its service's balancer lists it.</summary>
    public static InstanceEntry Entry(InstanceRecord r, ServiceRecord? service) => new(r.Name, r.Service.Value, Node, r.Address4, r.Address6,
        service is not null && service.Backends.Contains(r.Name) ? InstanceMode.Active : r.State == InstanceState.Draining ? InstanceMode.Draining : InstanceMode.Standby)
    {
        HostInterface = r.HostInterface,
        Health = r.Health switch
        {
            HealthStates.Healthy => InstanceHealth.Healthy,
            HealthStates.Unhealthy => InstanceHealth.Unhealthy,
            HealthStates.Starting => InstanceHealth.Starting,
            _ => InstanceHealth.None,
        },
    };

    /// <summary>A flow address as the projection reads it.</summary>
    public static FlowEntry Entry(FlowRecord f) => new(f.Id, f.Client, f.Service.Value, f.Flow4, f.Flow6, f.Backend);
}

/// <summary>
/// One operation's change of the records: the next state and the keys it touched. Every write
/// goes through it, so that what changed is known without comparing whole states.
/// </summary>
internal sealed class LocalStep(LocalState from)
{
    private readonly HashSet<string> _instances = new(StringComparer.Ordinal);
    private readonly HashSet<string> _flows = new(StringComparer.Ordinal);

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

    /// <summary>What the step changed, as the projection names it: its instances include the members whose mode a service's balancer changed, its flows the id a key had before.</summary>
    public StateChange Change => new(Services.Select(s => s.Value).ToHashSet(StringComparer.Ordinal), _instances, _flows, false);

    public void Put(ServiceRecord record)
    {
        var old = State.Services.GetValueOrDefault(record.Name);
        var net = State.Net with { Services = State.Net.Services.SetItem(record.Name.Value, LocalState.Entry(record)) };
        // The members it had and has: whether they are active comes from its balancer.
        var instances = net.Instances;
        foreach (var name in record.Backends.Concat(old?.Backends ?? []))
        {
            if (State.Instances.TryGetValue(name, out var member))
            {
                instances = instances.SetItem(name, LocalState.Entry(member, record));
                _instances.Add(name);
            }
        }
        State = State with { Services = State.Services.SetItem(record.Name, record), Net = net with { Instances = instances } };
        Services.Add(record.Name);
    }

    public void DropService(ServiceName name)
    {
        State = State with { Services = State.Services.Remove(name), Net = State.Net with { Services = State.Net.Services.Remove(name.Value) } };
        Services.Add(name);
    }

    public void Put(InstanceRecord record)
    {
        State = State with
        {
            Instances = State.Instances.SetItem(record.Name, record),
            Net = State.Net with { Instances = State.Net.Instances.SetItem(record.Name, LocalState.Entry(record, State.Services.GetValueOrDefault(record.Service))) },
        };
        Instances.Add(record.Name);
        _instances.Add(record.Name);
    }

    public void DropInstance(string name)
    {
        State = State with { Instances = State.Instances.Remove(name), Net = State.Net with { Instances = State.Net.Instances.Remove(name) } };
        Instances.Add(name);
        _instances.Add(name);
    }

    public void Put(FlowRecord flow)
    {
        var flows = State.Net.Flows;
        if (State.Flows.TryGetValue((flow.Client, flow.Service), out var had) && had.Id != flow.Id)
        {
            flows = flows.Remove(had.Id);
            _flows.Add(had.Id);
        }
        State = State with
        {
            Flows = State.Flows.SetItem((flow.Client, flow.Service), flow),
            Net = State.Net with { Flows = flows.SetItem(flow.Id, LocalState.Entry(flow)) },
        };
        Flows.Add((flow.Client, flow.Service));
        _flows.Add(flow.Id);
    }

    public void Drop(FlowRecord flow)
    {
        State = State with { Flows = State.Flows.Remove((flow.Client, flow.Service)), Net = State.Net with { Flows = State.Net.Flows.Remove(flow.Id) } };
        Flows.Add((flow.Client, flow.Service));
        _flows.Add(flow.Id);
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

/// <summary>
/// The single host's side of the one reconciler: its records read as a cluster of one node
/// (<see cref="LocalState.Net"/>), projected by the cluster's own <see cref="Projection"/>. What
/// the kernel holds for a state (<see cref="All"/>, the restore's and the recovery's target) and
/// what one step changes in it (<see cref="Delta"/>) come from there; no operation decides which
/// elements to write or which conntrack entries are stale.
/// </summary>
internal static class LocalPlan
{
    /// <summary>
    /// The instances of <paramref name="service"/> that take new flows, as the projection decides
    /// (the balancer's members that pass their check, all of them when none does).
    /// </summary>
    public static IReadOnlyList<InstanceRecord> EffectiveBackends(LocalState state, ServiceRecord service)
        => [.. Projection.TakingFlows(state.Net, service.Name.Value).Select(e => state.Instances[e.Name])];

    /// <summary>Everything the kernel holds for <paramref name="state"/>.</summary>
    public static DataplaneSpec All(LocalState state) => Projection.Project(state.Net, LocalState.Node).Dataplane;

    /// <summary>What the kernel must do to go from the step's start to its end.</summary>
    public static NodeStep Delta(LocalStep step)
    {
        var before = ReferenceEquals(step.From.View.State, step.From.Net) ? step.From.View : Projection.Project(step.From.Net, LocalState.Node);
        return Projection.Step(before, step.State.Net, step.Change);
    }

    /// <summary>The step's state once the kernel holds it: with the view <paramref name="delta"/> left.</summary>
    public static LocalState Next(LocalStep step, NodeStep delta) => step.State with { View = delta.View };
}
