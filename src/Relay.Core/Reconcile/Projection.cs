using System.Collections.Immutable;
using System.Net;
using System.Runtime.CompilerServices;
using Relay.Core.Dataplane;
using Relay.Core.Dns;
using Relay.Core.LoadBalancing;
using Relay.Core.Overlay;

namespace Relay.Core.Reconcile;

/// <summary>What one node's kernel holds for one network, derived from the desired state alone.</summary>
/// <remarks>Built by <see cref="Projection.Project"/> (the whole state) or <see cref="Projection.Step"/> (one step's keys); both give equal views of the same state.</remarks>
public sealed class NodeView
{
    private DataplaneSpec? _dataplane;
    private ImmutableArray<DnsServiceEntry> _names;

    internal NodeView(string node, NetworkState state,
        ImmutableSortedDictionary<string, DataplaneService> services,
        ImmutableSortedDictionary<string, InstanceEntry> local,
        ImmutableArray<VxlanPeer> peers,
        ImmutableSortedDictionary<string, DnsServiceEntry> names,
        ImmutableDictionary<string, ImmutableArray<InstanceEntry>> balancers,
        ImmutableSortedDictionary<string, DataplaneFlow> flows)
    {
        (Node, State, Services, LocalInstances, Peers, NameEntries, Balancers, FlowEntries) = (node, state, services, local, peers, names, balancers, flows);
    }

    /// <summary>The node.</summary>
    public string Node { get; }

    /// <summary>The state it was projected from.</summary>
    public NetworkState State { get; }

    /// <summary>The state's revision.</summary>
    public long Revision => State.Revision;

    /// <summary>Every service with every live active instance (local ones reached over their veth, remote ones over the overlay), by name.</summary>
    public ImmutableSortedDictionary<string, DataplaneService> Services { get; }

    /// <summary>The instances this node runs (any mode: a draining one still has its namespace), by name.</summary>
    public ImmutableSortedDictionary<string, InstanceEntry> LocalInstances { get; }

    /// <summary>The instances this node runs, by name.</summary>
    public IEnumerable<InstanceEntry> Local => LocalInstances.Values;

    /// <summary>The other live nodes and the blocks routed to them over VXLAN.</summary>
    public ImmutableArray<VxlanPeer> Peers { get; }

    /// <summary>What the node's DNS server answers, by name.</summary>
    public ImmutableSortedDictionary<string, DnsServiceEntry> NameEntries { get; }

    /// <summary>What the node's DNS server answers.</summary>
    public ImmutableArray<DnsServiceEntry> Names => _names.IsDefault ? _names = [.. NameEntries.Values] : _names;

    /// <summary>Per service that has any: the instances that take its new flows, in slot order (a service without one is absent).</summary>
    public ImmutableDictionary<string, ImmutableArray<InstanceEntry>> Balancers { get; }

    /// <summary>The flow addresses of this node's clients, by id.</summary>
    public ImmutableSortedDictionary<string, DataplaneFlow> FlowEntries { get; }

    /// <summary>Relay's nft table in the node's orchestrator, whole (what a full sync or an adoption compares with).</summary>
    public DataplaneSpec Dataplane => _dataplane ??= new DataplaneSpec(
        [.. Services.Values], [.. LocalInstances.Values.Select(Projection.Link)], [.. FlowEntries.Values]);
}

/// <summary>Conntrack entries that must go after a step: stateless flows to <see cref="Virtual"/> translated to one of <see cref="Backends"/>.</summary>
/// <param name="Service">The service.</param>
/// <param name="Virtual">Its virtual addresses (or a client's flow addresses for it).</param>
/// <param name="Backends">Addresses of instances that no longer take those flows.</param>
public sealed record StaleTranslation(string Service, ImmutableArray<IPAddress> Virtual, ImmutableArray<IPAddress> Backends)
{
    /// <summary>
    /// Every virtual (or flow) address of <paramref name="stale"/> and every instance address its
    /// entries may be translated to, for one conntrack pass (an address of one service is never
    /// translated to another's instance, so the cross product adds nothing).
    /// </summary>
    public static (IReadOnlyList<IPAddress> Virtual, IReadOnlyList<IPAddress> Backends) Addresses(IReadOnlyList<StaleTranslation> stale)
        => ([.. stale.SelectMany(s => s.Virtual).Distinct()], [.. stale.SelectMany(s => s.Backends).Distinct()]);
}

/// <summary>What one step changes in a node's kernel: one nft transaction, then the conntrack entries it leaves stale.</summary>
/// <param name="View">The view after the step.</param>
/// <param name="Services">Services to install or change.</param>
/// <param name="RemovedServices">Services to remove.</param>
/// <param name="Links">Local instances' links to add or change.</param>
/// <param name="RemovedLinks">Links (host interfaces) to remove.</param>
/// <param name="Flows">Flow addresses to install or re-point.</param>
/// <param name="RemovedFlows">Flow addresses to remove, by id.</param>
/// <param name="Stale">Translations the step took away.</param>
/// <param name="NamesChanged">True when the DNS answers changed.</param>
/// <param name="PeersChanged">True when the overlay's peers changed.</param>
public sealed record NodeStep(
    NodeView View,
    IReadOnlyList<DataplaneService> Services,
    IReadOnlyList<string> RemovedServices,
    IReadOnlyList<DataplaneLink> Links,
    IReadOnlyList<string> RemovedLinks,
    IReadOnlyList<DataplaneFlow> Flows,
    IReadOnlyList<string> RemovedFlows,
    IReadOnlyList<StaleTranslation> Stale,
    bool NamesChanged,
    bool PeersChanged)
{
    /// <summary>Whether the table must change at all.</summary>
    public bool TouchesTable => Services.Count + RemovedServices.Count + Links.Count + RemovedLinks.Count + Flows.Count + RemovedFlows.Count > 0;

    /// <summary>Every virtual (or flow) address whose stateless entries may be stale.</summary>
    public IReadOnlyList<IPAddress> StaleVirtual => StaleTranslation.Addresses(Stale).Virtual;

    /// <summary>Every instance address those entries may be translated to.</summary>
    public IReadOnlyList<IPAddress> StaleBackends => StaleTranslation.Addresses(Stale).Backends;
}

/// <summary>
/// The reconciler's pure half, as kube-proxy's one sync path, for a cluster's node and for a single
/// host (a cluster of one) alike: <c>Project(state)</c> is everything a node's kernel should hold,
/// whatever operation led to that state; <c>Step(view, state', change)</c> is the same projection
/// applied to the keys one step changed, so that a re-point among 10,000 services costs what it
/// changed. What a step must clean up in conntrack comes out of it, not out of each operation.
/// </summary>
public static class Projection
{
    /// <summary>What <paramref name="node"/>'s kernel holds for <paramref name="state"/>.</summary>
    public static NodeView Project(NetworkState state, string node)
    {
        var index = IndexOf(state.Instances);
        var services = ImmutableSortedDictionary.CreateBuilder<string, DataplaneService>(StringComparer.Ordinal);
        var names = ImmutableSortedDictionary.CreateBuilder<string, DnsServiceEntry>(StringComparer.Ordinal);
        var balancers = ImmutableDictionary.CreateBuilder<string, ImmutableArray<InstanceEntry>>(StringComparer.Ordinal);
        foreach (var svc in state.Services.Values)
        {
            var members = Members(state, svc, index);
            var projected = Projected(svc, members);
            services[svc.Name] = projected.Service;
            names[svc.Name] = projected.Name;
            if (members.Length > 0)
            {
                balancers[svc.Name] = members;
            }
        }
        var local = ImmutableSortedDictionary.CreateBuilder<string, InstanceEntry>(StringComparer.Ordinal);
        foreach (var instance in state.Instances.Values)
        {
            if (instance.Node == node)
            {
                local[instance.Name] = instance;
            }
        }
        var flows = ImmutableSortedDictionary.CreateBuilder<string, DataplaneFlow>(StringComparer.Ordinal);
        foreach (var flow in state.Flows.Values)
        {
            if (Flow(state, flow, node) is { } f)
            {
                flows[f.Id] = f;
            }
        }
        return new NodeView(node, state, services.ToImmutable(), local.ToImmutable(), PeersOf(state, node), names.ToImmutable(), balancers.ToImmutable(), flows.ToImmutable());
    }

    /// <summary>
    /// The step from <paramref name="before"/> to <paramref name="after"/>, looking only at what
    /// <paramref name="change"/> names (and, when nodes changed, at the instances on them): the
    /// view after it (equal to <c>Project(after)</c>) and what the kernel must do.
    /// </summary>
    public static NodeStep Step(NodeView before, NetworkState after, StateChange change)
    {
        var node = before.Node;
        var prev = before.State;
        var index = IndexOf(after.Instances, prev.Instances, change.Instances);

        var affected = new HashSet<string>(change.Services, StringComparer.Ordinal);
        foreach (var name in change.Instances)
        {
            if (prev.Instances.TryGetValue(name, out var was))
            {
                affected.Add(was.Service);
            }
            if (after.Instances.TryGetValue(name, out var now))
            {
                affected.Add(now.Service);
            }
        }
        var peers = before.Peers;
        var peersChanged = false;
        if (change.Nodes)
        {
            // A node that came or went changes the balancers of the services with instances on it.
            var changedNodes = prev.Nodes.Keys.Concat(after.Nodes.Keys).Distinct(StringComparer.Ordinal)
                .Where(n => prev.Nodes.GetValueOrDefault(n) != after.Nodes.GetValueOrDefault(n)).ToHashSet(StringComparer.Ordinal);
            if (changedNodes.Count > 0)
            {
                foreach (var instance in after.Instances.Values.Concat(prev.Instances.Values))
                {
                    if (changedNodes.Contains(instance.Node))
                    {
                        affected.Add(instance.Service);
                    }
                }
            }
            peers = PeersOf(after, node);
            peersChanged = !SamePeers(before.Peers, peers);
        }

        var services = before.Services.ToBuilder();
        var names = before.NameEntries.ToBuilder();
        var balancers = before.Balancers.ToBuilder();
        var changedServices = new List<DataplaneService>();
        var removedServices = new List<string>();
        var stale = new List<StaleTranslation>();
        var namesChanged = false;
        foreach (var name in affected)
        {
            var svc = after.Services.GetValueOrDefault(name);
            var was = before.Services.GetValueOrDefault(name);
            var wasMembers = before.Balancers.GetValueOrDefault(name);
            var members = svc is null ? [] : Members(after, svc, index);
            if (svc is null)
            {
                if (was is not null)
                {
                    removedServices.Add(name);
                    services.Remove(name);
                    names.Remove(name);
                    namesChanged = true;
                }
                balancers.Remove(name);
            }
            else
            {
                var projected = Projected(svc, members);
                if (was is null || (!ReferenceEquals(was, projected.Service) && !DataplaneImage.Same(was, projected.Service)))
                {
                    changedServices.Add(projected.Service);
                    services[name] = projected.Service;
                }
                if (!names.TryGetValue(name, out var had) || !SameName(had, projected.Name))
                {
                    names[name] = projected.Name;
                    namesChanged = true;
                }
                if (members.Length > 0)
                {
                    balancers[name] = members;
                }
                else
                {
                    balancers.Remove(name);
                }
            }
            // Instances that took the service's flows and no longer do: the stateless flows
            // translated to them must go, so that their next packet is balanced afresh.
            if (!wasMembers.IsDefaultOrEmpty && was is not null)
            {
                var taking = members.Select(i => i.Name).ToHashSet(StringComparer.Ordinal);
                var left = wasMembers.Where(i => !taking.Contains(i.Name)).SelectMany(i => new[] { i.Address4, i.Address6 }).ToImmutableArray();
                if (left.Length > 0)
                {
                    stale.Add(new StaleTranslation(name, [was.Vip4, was.Vip6], left));
                }
            }
        }

        var local = before.LocalInstances.ToBuilder();
        var links = new List<DataplaneLink>();
        var removedLinks = new List<string>();
        foreach (var name in change.Instances)
        {
            var now = after.Instances.GetValueOrDefault(name) is { } n && n.Node == node ? n : null;
            var had = before.LocalInstances.GetValueOrDefault(name);
            var oldLink = had is null ? null : Link(had);
            if (now is null)
            {
                if (oldLink is not null)
                {
                    local.Remove(name);
                    removedLinks.Add(oldLink.HostInterface);
                }
                continue;
            }
            local[name] = now;
            var link = Link(now);
            if (oldLink != link)
            {
                if (oldLink is not null && oldLink.HostInterface != link.HostInterface)
                {
                    removedLinks.Add(oldLink.HostInterface);
                }
                links.Add(link);
            }
        }

        var flows = before.FlowEntries.ToBuilder();
        var changedFlows = new List<DataplaneFlow>();
        var removedFlows = new List<string>();
        var revisit = change.Flows;
        if (change.Instances.Count > 0 && (!prev.Flows.IsEmpty || !after.Flows.IsEmpty))
        {
            // A flow address follows its client and its instance: where they went, what they are.
            var ids = new HashSet<string>(change.Flows, StringComparer.Ordinal);
            foreach (var f in prev.Flows.Values.Concat(after.Flows.Values))
            {
                if (change.Instances.Contains(f.Client) || change.Instances.Contains(f.Backend))
                {
                    ids.Add(f.Id);
                }
            }
            revisit = ids;
        }
        foreach (var id in revisit)
        {
            var had = before.FlowEntries.GetValueOrDefault(id);
            var now = after.Flows.TryGetValue(id, out var entry) ? Flow(after, entry, node) : null;
            if (now is null)
            {
                if (had is not null)
                {
                    flows.Remove(id);
                    removedFlows.Add(id);
                }
            }
            else if (now != had)
            {
                flows[id] = now;
                changedFlows.Add(now);
            }
            // A flow address that led to another instance: its stateless entries follow it.
            if (had is not null && (now is null || !now.Backend4.Equals(had.Backend4) || !now.Backend6.Equals(had.Backend6)))
            {
                stale.Add(new StaleTranslation(prev.Flows.GetValueOrDefault(id)?.Service ?? entry?.Service ?? "", [had.Flow4, had.Flow6], [had.Backend4, had.Backend6]));
            }
        }

        var view = new NodeView(node, after, services.ToImmutable(), local.ToImmutable(), peers, names.ToImmutable(), balancers.ToImmutable(), flows.ToImmutable());
        return new NodeStep(view, changedServices, removedServices, links, removedLinks, changedFlows, removedFlows, stale, namesChanged, peersChanged);
    }

    /// <summary>
    /// The orchestrator end of a local instance's veth: the name its node gave it, or <c>rv</c> and
    /// the instance's IPv4 address in hex (10 characters, within IFNAMSIZ). The address is unique in
    /// the network and fixed for the instance's life, and every node derives the same name without
    /// a counter of its own.
    /// </summary>
    public static string HostInterface(InstanceEntry instance)
    {
        if (instance.HostInterface is { } given)
        {
            return given;
        }
        var b = instance.Address4.GetAddressBytes();
        var value = ((uint)b[0] << 24) | ((uint)b[1] << 16) | ((uint)b[2] << 8) | b[3];
        return NftNames.HostInterfacePrefix + value.ToString("x8", System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>A local instance's link (its veth's orchestrator end and its addresses, for anti-spoofing).</summary>
    public static DataplaneLink Link(InstanceEntry instance) => new(HostInterface(instance), instance.Address4, instance.Address6);

    /// <summary>The conntrack entries a step from <paramref name="before"/> to <paramref name="after"/> leaves stale, from the two whole views.</summary>
    public static IReadOnlyList<StaleTranslation> Stale(NodeView? before, NodeView after)
    {
        if (before is null)
        {
            return [];
        }
        var gone = new List<StaleTranslation>();
        foreach (var (service, was) in before.Balancers)
        {
            if (after.Balancers.TryGetValue(service, out var n) && (n == was || n.SequenceEqual(was)))
            {
                continue;
            }
            var now = n.IsDefault ? [] : n.Select(i => i.Name).ToHashSet(StringComparer.Ordinal);
            var left = was.Where(i => !now.Contains(i.Name)).SelectMany(i => new[] { i.Address4, i.Address6 }).ToImmutableArray();
            var vips = before.Services.GetValueOrDefault(service) ?? after.Services.GetValueOrDefault(service);
            if (left.Length > 0 && vips is not null)
            {
                gone.Add(new StaleTranslation(service, [vips.Vip4, vips.Vip6], left));
            }
        }
        return gone;
    }

    /// <summary>The instances of <paramref name="service"/> that take its new flows in <paramref name="state"/>, in slot order (none when it does not exist).</summary>
    public static ImmutableArray<InstanceEntry> TakingFlows(NetworkState state, string service)
        => state.Services.TryGetValue(service, out var svc) ? Members(state, svc, IndexOf(state.Instances)) : [];

    /// <summary>
    /// The instances of <paramref name="svc"/> that take new flows, in slot order: the active ones
    /// on live nodes; of those, the ones whose check passed (or that have none), and all of them
    /// when none did (failing open beats refusing everything).
    /// </summary>
    private static ImmutableArray<InstanceEntry> Members(NetworkState state, ServiceEntry svc, ImmutableDictionary<string, ImmutableSortedSet<string>> index)
    {
        if (!index.TryGetValue(svc.Name, out var names))
        {
            return [];
        }
        var list = new List<InstanceEntry>(names.Count);
        foreach (var name in names)
        {
            // An instance whose node's lease is gone takes no new flows anywhere (as a failed
            // health check): nothing answers there, or nothing the others can reach.
            if (state.Instances.TryGetValue(name, out var i) && i.Mode == InstanceMode.Active && state.Nodes.ContainsKey(i.Node))
            {
                list.Add(i);
            }
        }
        if (list.Exists(i => i.Health is InstanceHealth.Starting or InstanceHealth.Unhealthy) && list.Exists(i => i.Health is InstanceHealth.None or InstanceHealth.Healthy))
        {
            list.RemoveAll(i => i.Health is InstanceHealth.Starting or InstanceHealth.Unhealthy);
        }
        return list.Count == 0 ? [] : InSlotOrder(svc, list);
    }

    private static DataplaneFlow? Flow(NetworkState state, FlowEntry flow, string node)
        => state.Instances.TryGetValue(flow.Client, out var client) && client.Node == node && state.Instances.TryGetValue(flow.Backend, out var backend)
            ? new DataplaneFlow(flow.Id, client.Address4, client.Address6, flow.Flow4, flow.Flow6, backend.Address4, backend.Address6)
            : null;

    private static ImmutableArray<VxlanPeer> PeersOf(NetworkState state, string node)
        => [.. state.Nodes.Values.Where(n => n.Name != node)
            .Select(n => new VxlanPeer(n.Name, n.Underlay, state.Blocks.Where(b => b.Node == n.Name).Select(b => b.Prefix).OrderBy(p => p.ToString(), StringComparer.Ordinal).ToArray()))];

    /// <summary>True when two peer lists route the same blocks to the same underlay addresses.</summary>
    public static bool SamePeers(IReadOnlyList<VxlanPeer> a, IReadOnlyList<VxlanPeer> b)
        => a.Count == b.Count && a.Zip(b).All(p => p.First.Node == p.Second.Node && p.First.Underlay.Equals(p.Second.Underlay) && p.First.Blocks.SequenceEqual(p.Second.Blocks));

    /// <summary>Whether two name lists answer the same (a re-point changes none: the name table is not rebuilt).</summary>
    public static bool SameNames(IReadOnlyList<DnsServiceEntry> a, IReadOnlyList<DnsServiceEntry> b)
        => a.Count == b.Count && a.Zip(b).All(p => SameName(p.First, p.Second));

    private static bool SameName(DnsServiceEntry x, DnsServiceEntry y)
        => ReferenceEquals(x, y) || (x.Name == y.Name && x.Vip4.Equals(y.Vip4) && x.Vip6.Equals(y.Vip6) && x.FlowAddressing == y.FlowAddressing && x.Ports.SequenceEqual(y.Ports));

    private sealed record ProjectedService(ImmutableArray<InstanceEntry> Members, DataplaneService Service, DnsServiceEntry Name);

    /// <summary>What each service record was last projected to; an entry lives as long as its record.</summary>
    private static readonly ConditionalWeakTable<ServiceEntry, ProjectedService> Memo = new();

    /// <summary>
    /// A service and its members as the data plane and the DNS server hold them. A service and its
    /// members unchanged since the last projection (the same records: a state updated by a step
    /// keeps what the step did not touch) give the same objects, so that every later comparison of
    /// the step is one reference check.
    /// </summary>
    private static ProjectedService Projected(ServiceEntry svc, ImmutableArray<InstanceEntry> members)
    {
        if (!Memo.TryGetValue(svc, out var memo) || !SameMembers(memo.Members, members))
        {
            var tableSize = svc.TableSize > 0 ? svc.TableSize : Maglev.TableSize(members.Length);
            memo = new ProjectedService(members,
                new DataplaneService(svc.Name, svc.Vip4, svc.Vip6, svc.Policy, tableSize, svc.Ports,
                    members.Select(m => new DataplaneBackend(m.Name, m.Address4, m.Address6)).ToArray()),
                new DnsServiceEntry(svc.Name, svc.Vip4, svc.Vip6, svc.Ports, svc.FlowAddressing));
            Memo.AddOrUpdate(svc, memo);
        }
        return memo;
    }

    /// <summary>Instance names by service, for one instances dictionary (immutable, so the index is kept as long as the dictionary lives).</summary>
    private static readonly ConditionalWeakTable<ImmutableSortedDictionary<string, InstanceEntry>, ImmutableDictionary<string, ImmutableSortedSet<string>>> Indexes = new();

    private static ImmutableDictionary<string, ImmutableSortedSet<string>> IndexOf(ImmutableSortedDictionary<string, InstanceEntry> instances)
    {
        if (Indexes.TryGetValue(instances, out var index))
        {
            return index;
        }
        var builder = new Dictionary<string, ImmutableSortedSet<string>.Builder>(StringComparer.Ordinal);
        foreach (var i in instances.Values)
        {
            if (!builder.TryGetValue(i.Service, out var set))
            {
                builder[i.Service] = set = ImmutableSortedSet.CreateBuilder<string>(StringComparer.Ordinal);
            }
            set.Add(i.Name);
        }
        index = builder.ToImmutableDictionary(kv => kv.Key, kv => kv.Value.ToImmutable(), StringComparer.Ordinal);
        Indexes.AddOrUpdate(instances, index);
        return index;
    }

    /// <summary>The index of <paramref name="after"/>, from that of <paramref name="before"/> and the names that changed when it is known.</summary>
    private static ImmutableDictionary<string, ImmutableSortedSet<string>> IndexOf(ImmutableSortedDictionary<string, InstanceEntry> after,
        ImmutableSortedDictionary<string, InstanceEntry> before, IReadOnlySet<string> changed)
    {
        if (Indexes.TryGetValue(after, out var index))
        {
            return index;
        }
        if (!Indexes.TryGetValue(before, out var from))
        {
            return IndexOf(after);
        }
        var builder = from.ToBuilder();
        foreach (var name in changed)
        {
            var was = before.GetValueOrDefault(name);
            var now = after.GetValueOrDefault(name);
            if (was is not null && was.Service != now?.Service && builder.TryGetValue(was.Service, out var set))
            {
                set = set.Remove(name);
                if (set.IsEmpty)
                {
                    builder.Remove(was.Service);
                }
                else
                {
                    builder[was.Service] = set;
                }
            }
            if (now is not null)
            {
                builder[now.Service] = (builder.TryGetValue(now.Service, out var to) ? to : ImmutableSortedSet.Create<string>(StringComparer.Ordinal)).Add(name);
            }
        }
        index = builder.ToImmutable();
        Indexes.AddOrUpdate(after, index);
        return index;
    }

    private static bool SameMembers(ImmutableArray<InstanceEntry> a, ImmutableArray<InstanceEntry> b)
    {
        if (a.Length != b.Length)
        {
            return false;
        }
        for (var i = 0; i < a.Length; i++)
        {
            if (!ReferenceEquals(a[i], b[i]) && a[i] != b[i])
            {
                return false;
            }
        }
        return true;
    }

    private static ImmutableArray<InstanceEntry> InSlotOrder(ServiceEntry svc, List<InstanceEntry> members)
    {
        if (svc.Slots.IsDefaultOrEmpty)
        {
            return [.. members.OrderBy(m => m.Name, StringComparer.Ordinal)];
        }
        var position = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < svc.Slots.Length; i++)
        {
            position.TryAdd(svc.Slots[i], i);
        }
        return [.. members.OrderBy(m => position.GetValueOrDefault(m.Name, int.MaxValue)).ThenBy(m => m.Name, StringComparer.Ordinal)];
    }
}
