using System.Collections.Immutable;
using System.Net;
using Relay.Core.Dataplane;
using Relay.Core.Dns;
using Relay.Core.LoadBalancing;
using Relay.Core.Overlay;

namespace Relay.Core.Reconcile;

/// <summary>What one node's kernel holds for one network, derived from the desired state alone.</summary>
/// <param name="Node">The node.</param>
/// <param name="Revision">The state's revision.</param>
/// <param name="Dataplane">Relay's nft table in the node's orchestrator: every service with every live active instance (local ones reached over their veth, remote ones over the overlay), and the local instances' links.</param>
/// <param name="Local">The instances this node runs (any mode: a draining one still has its namespace).</param>
/// <param name="Peers">The other live nodes and the blocks routed to them over VXLAN.</param>
/// <param name="Names">What the node's DNS server answers.</param>
/// <param name="Balancers">Per service that has any: the instances that take its new flows, in slot order (a service without one is absent).</param>
public sealed record NodeView(
    string Node,
    long Revision,
    DataplaneSpec Dataplane,
    ImmutableArray<InstanceEntry> Local,
    ImmutableArray<VxlanPeer> Peers,
    ImmutableArray<DnsServiceEntry> Names,
    ImmutableDictionary<string, ImmutableArray<InstanceEntry>> Balancers);

/// <summary>Conntrack entries that must go after a step: stateless flows to <see cref="Virtual"/> translated to one of <see cref="Backends"/>.</summary>
/// <param name="Service">The service.</param>
/// <param name="Virtual">Its virtual addresses.</param>
/// <param name="Backends">Addresses of instances that no longer take its flows.</param>
public sealed record StaleTranslation(string Service, ImmutableArray<IPAddress> Virtual, ImmutableArray<IPAddress> Backends);

/// <summary>
/// The reconciler's pure half, as kube-proxy's one sync path: <c>Project(state)</c> is everything a
/// node's kernel should hold, whatever operation led to that state; what a step must clean up in
/// conntrack is <c>Stale(Project(before), Project(after))</c>, not something each operation decides.
/// </summary>
public static class Projection
{
    /// <summary>What <paramref name="node"/>'s kernel holds for <paramref name="state"/>.</summary>
    public static NodeView Project(NetworkState state, string node)
    {
        var byService = new Dictionary<string, List<InstanceEntry>>(StringComparer.Ordinal);
        var local = ImmutableArray.CreateBuilder<InstanceEntry>();
        foreach (var instance in state.Instances.Values)
        {
            if (instance.Node == node)
            {
                local.Add(instance);
            }
            // An instance whose node's lease is gone takes no new flows anywhere (as a failed
            // health check): nothing answers there, or nothing the others can reach.
            if (instance.Mode == InstanceMode.Active && state.Nodes.ContainsKey(instance.Node))
            {
                if (!byService.TryGetValue(instance.Service, out var list))
                {
                    byService[instance.Service] = list = [];
                }
                list.Add(instance);
            }
        }
        // Health, as on a single host: the members whose check passed (or that have none) take the
        // flows; when none of them does, all of them do (failing open beats refusing everything).
        foreach (var list in byService.Values)
        {
            if (list.Exists(i => i.Health is InstanceHealth.Starting or InstanceHealth.Unhealthy) && list.Exists(i => i.Health is InstanceHealth.None or InstanceHealth.Healthy))
            {
                list.RemoveAll(i => i.Health is InstanceHealth.Starting or InstanceHealth.Unhealthy);
            }
        }
        var balancers = ImmutableDictionary.CreateBuilder<string, ImmutableArray<InstanceEntry>>(StringComparer.Ordinal);
        var services = new List<DataplaneService>(state.Services.Count);
        var names = ImmutableArray.CreateBuilder<DnsServiceEntry>(state.Services.Count);
        foreach (var svc in state.Services.Values)
        {
            var members = byService.TryGetValue(svc.Name, out var list) ? InSlotOrder(svc, list) : [];
            if (members.Length > 0)
            {
                balancers[svc.Name] = members;
            }
            // A service and its members unchanged since the last projection (the same records: a
            // state updated from a watch step keeps what the step did not touch) give the same
            // objects, so that every later comparison of the step is one reference check.
            if (!Memo.TryGetValue(svc, out var memo) || !SameMembers(memo.Members, members))
            {
                memo = new Projected(members,
                    new DataplaneService(svc.Name, svc.Vip4, svc.Vip6, svc.Policy, Maglev.TableSize(members.Length), svc.Ports,
                        members.Select(m => new DataplaneBackend(m.Name, m.Address4, m.Address6)).ToArray()),
                    new DnsServiceEntry(svc.Name, svc.Vip4, svc.Vip6, svc.Ports, false));
                Memo.AddOrUpdate(svc, memo);
            }
            services.Add(memo.Service);
            names.Add(memo.Name);
        }
        var links = local.Select(i => new DataplaneLink(HostInterface(i), i.Address4, i.Address6)).ToArray();
        var peers = state.Nodes.Values.Where(n => n.Name != node)
            .Select(n => new VxlanPeer(n.Name, n.Underlay, state.Blocks.Where(b => b.Node == n.Name).Select(b => b.Prefix).OrderBy(p => p.ToString(), StringComparer.Ordinal).ToArray()))
            .ToImmutableArray();
        return new NodeView(node, state.Revision, new DataplaneSpec(services, links), local.ToImmutable(), peers, names.ToImmutable(), balancers.ToImmutable());
    }

    /// <summary>
    /// The orchestrator end of a local instance's veth: <c>rv</c> and the instance's IPv4 address in
    /// hex (10 characters, within IFNAMSIZ). The address is unique in the network and fixed for the
    /// instance's life, and every node derives the same name without a counter of its own.
    /// </summary>
    public static string HostInterface(InstanceEntry instance)
    {
        var b = instance.Address4.GetAddressBytes();
        var value = ((uint)b[0] << 24) | ((uint)b[1] << 16) | ((uint)b[2] << 8) | b[3];
        return NftNames.HostInterfacePrefix + value.ToString("x8", System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>The conntrack entries a step from <paramref name="before"/> to <paramref name="after"/> leaves stale.</summary>
    public static IReadOnlyList<StaleTranslation> Stale(NodeView? before, NodeView after)
    {
        if (before is null)
        {
            return [];
        }
        // Only services with instances are in a balancer: the few a step touched are found first,
        // and the services' addresses are looked up for those alone.
        var gone = new List<(string Service, ImmutableArray<IPAddress> Backends)>();
        foreach (var (service, was) in before.Balancers)
        {
            if (after.Balancers.TryGetValue(service, out var n) && (n == was || n.SequenceEqual(was)))
            {
                continue;
            }
            var now = n.IsDefault ? [] : n.Select(i => i.Name).ToHashSet(StringComparer.Ordinal);
            var left = was.Where(i => !now.Contains(i.Name)).SelectMany(i => new[] { i.Address4, i.Address6 }).ToImmutableArray();
            if (left.Length > 0)
            {
                gone.Add((service, left));
            }
        }
        if (gone.Count == 0)
        {
            return [];
        }
        var vips = new Dictionary<string, ImmutableArray<IPAddress>>(StringComparer.Ordinal);
        foreach (var s in after.Dataplane.Services.Concat(before.Dataplane.Services))
        {
            if (gone.Exists(g => g.Service == s.Name))
            {
                vips.TryAdd(s.Name, [s.Vip4, s.Vip6]);
            }
        }
        return gone.Select(g => new StaleTranslation(g.Service, vips[g.Service], g.Backends)).ToArray();
    }

    private sealed record Projected(ImmutableArray<InstanceEntry> Members, DataplaneService Service, DnsServiceEntry Name);

    /// <summary>What each service record was last projected to; an entry lives as long as its record.</summary>
    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<ServiceEntry, Projected> Memo = new();

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
