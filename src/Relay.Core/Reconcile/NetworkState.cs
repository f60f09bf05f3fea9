using System.Collections.Immutable;
using System.Net;
using Relay.Core.LoadBalancing;
using Relay.Core.Model;

namespace Relay.Core.Reconcile;

/// <summary>Where an instance stands towards its service's balancer.</summary>
public enum InstanceMode
{
    /// <summary>In the balancer (when its node is alive).</summary>
    Active,

    /// <summary>Up, not in the balancer: a migration target.</summary>
    Standby,

    /// <summary>Out of the balancer; its TCP flows finish, then its node removes it.</summary>
    Draining,
}

/// <summary>A service of the desired state.</summary>
/// <param name="Name">Its canonical name.</param>
/// <param name="Vip4">Its virtual IPv4 address.</param>
/// <param name="Vip6">Its virtual IPv6 address.</param>
/// <param name="Policy">How a new flow picks an instance.</param>
/// <param name="Ports">Port mappings (empty: layer 3).</param>
/// <param name="Slots">
/// The balancer's order as the last migration left it: a migration puts the new instance in the
/// old one's slot, so with round-robin and random exactly the old instance's flows move. Active
/// instances not listed follow, by name.
/// </param>
public sealed record ServiceEntry(string Name, IPAddress Vip4, IPAddress Vip6, LoadBalancingPolicy Policy, ImmutableArray<PortMapping> Ports, ImmutableArray<string> Slots)
{
    /// <summary>The Maglev table size the store keeps (a single host's grows, never shrinks); 0: derived from the number of members.</summary>
    public int TableSize { get; init; }

    /// <summary>True when each client gets its own addresses for the service (flow addressing, single host).</summary>
    public bool FlowAddressing { get; init; }
}

/// <summary>A client's own addresses for a service (flow addressing) and the instance they lead to.</summary>
/// <param name="Id">Its id in the table.</param>
/// <param name="Client">The client instance.</param>
/// <param name="Service">The service.</param>
/// <param name="Flow4">The client's IPv4 address for the service.</param>
/// <param name="Flow6">Its IPv6 address.</param>
/// <param name="Backend">The instance it leads to.</param>
public sealed record FlowEntry(string Id, string Client, string Service, IPAddress Flow4, IPAddress Flow6, string Backend);

/// <summary>An instance of the desired state, placed on a node.</summary>
/// <param name="Name">Its name, unique in the network.</param>
/// <param name="Service">Its service.</param>
/// <param name="Node">The node that runs it.</param>
/// <param name="Address4">Its IPv4 address (from its node's block).</param>
/// <param name="Address6">Its IPv6 address.</param>
/// <param name="Mode">Active, standby or draining.</param>
public sealed record InstanceEntry(string Name, string Service, string Node, IPAddress Address4, IPAddress Address6, InstanceMode Mode)
{
    /// <summary>The orchestrator end of its veth as its node named it; null: derived from its IPv4 address (<see cref="Projection.HostInterface"/>).</summary>
    public string? HostInterface { get; init; }

    /// <summary>The command it runs, if any (its node starts it).</summary>
    public ImmutableArray<string>? Command { get; init; }

    /// <summary>When a draining instance's TCP flows are cut at the latest.</summary>
    public DateTimeOffset? DrainUntil { get; init; }

    /// <summary>Its restart policy as users write it (<c>never</c>, <c>on-failure</c>, <c>always</c>); null is the default, <c>on-failure</c>.</summary>
    public string? Restart { get; init; }

    /// <summary>Placed on its node by the user (<c>--node</c>): it stays there, also when that node is lost.</summary>
    public bool Pinned { get; init; }

    /// <summary>
    /// Its health check's verdict as its node last wrote it: <see cref="InstanceHealth.Starting"/>
    /// until the check passed, then healthy or unhealthy; <see cref="InstanceHealth.None"/> without a check.
    /// </summary>
    public InstanceHealth Health { get; init; }

    /// <summary>Its health check as the API gave it (JSON), which its node runs; null without one.</summary>
    public string? HealthSpec { get; init; }
}

/// <summary>An instance's health as the balancers see it.</summary>
public enum InstanceHealth
{
    /// <summary>No health check: it takes flows while active and its node lives.</summary>
    None,

    /// <summary>A check, not passed yet.</summary>
    Starting,

    /// <summary>The check passed.</summary>
    Healthy,

    /// <summary>The check failed.</summary>
    Unhealthy,
}

/// <summary>A live node: it holds a lease.</summary>
/// <param name="Name">The node's name.</param>
/// <param name="Underlay">Where its VXLAN tunnel ends.</param>
public sealed record NodeEntry(string Name, IPAddress Underlay);

/// <summary>A block of instance addresses and the node that claimed it.</summary>
/// <param name="Prefix">The block (a /26 or a /122).</param>
/// <param name="Node">Its node.</param>
public sealed record BlockEntry(IPNetwork Prefix, string Node);

/// <summary>
/// One network's desired state at one revision of the store: immutable, so that a reconcile step
/// compares two of them and nothing changes under it. The single-host store and etcd both produce
/// it; <see cref="Projection"/> turns it into what one node's kernel holds.
/// </summary>
/// <param name="Network">The network.</param>
/// <param name="Revision">The store's revision it reflects (etcd's revision; 0 when unknown).</param>
/// <param name="Services">Services by name.</param>
/// <param name="Instances">Instances by name.</param>
/// <param name="Nodes">Live nodes by name: an instance on a node missing here takes no flows.</param>
/// <param name="Blocks">Instance-address blocks and their nodes (where the overlay routes them).</param>
public sealed record NetworkState(
    string Network,
    long Revision,
    ImmutableSortedDictionary<string, ServiceEntry> Services,
    ImmutableSortedDictionary<string, InstanceEntry> Instances,
    ImmutableSortedDictionary<string, NodeEntry> Nodes,
    ImmutableArray<BlockEntry> Blocks)
{
    /// <summary>Flow addresses by id (a single host's; none in a cluster yet).</summary>
    public ImmutableSortedDictionary<string, FlowEntry> Flows { get; init; } = ImmutableSortedDictionary.Create<string, FlowEntry>(StringComparer.Ordinal);

    /// <summary>A network with nothing in it.</summary>
    public static NetworkState Empty(string network) => new(
        network, 0,
        ImmutableSortedDictionary.Create<string, ServiceEntry>(StringComparer.Ordinal),
        ImmutableSortedDictionary.Create<string, InstanceEntry>(StringComparer.Ordinal),
        ImmutableSortedDictionary.Create<string, NodeEntry>(StringComparer.Ordinal),
        []);
}

/// <summary>
/// The keys one step changed between two states: what <see cref="Projection.Step"/> looks at, so
/// that a step costs in proportion to what it changed, not to the size of the state. A key named
/// here may be unchanged; a key changed must be named.
/// </summary>
/// <param name="Services">Services put or removed.</param>
/// <param name="Instances">Instances put or removed (a health verdict included).</param>
/// <param name="Flows">Flow addresses put or removed.</param>
/// <param name="Nodes">True when a node or a block came, went or changed.</param>
public sealed record StateChange(IReadOnlySet<string> Services, IReadOnlySet<string> Instances, IReadOnlySet<string> Flows, bool Nodes)
{
    private static readonly IReadOnlySet<string> None = System.Collections.Frozen.FrozenSet<string>.Empty;

    /// <summary>A change of instances only.</summary>
    public static StateChange OfInstances(params string[] instances) => new(None, instances.ToHashSet(StringComparer.Ordinal), None, false);

}
