using System.Collections.Immutable;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json.Nodes;
using Relay.Core.Errors;
using Relay.Core.LoadBalancing;
using Relay.Core.Model;
using Relay.Core.Reconcile;

namespace Relay.Cluster;

/// <summary>
/// Reads one network's desired state out of the keys under <see cref="ClusterKeys.Root"/>: the pure
/// step between a watch and <see cref="Projection.Project"/>. A value that is not a record Relay
/// wrote (a key put by hand) is skipped, never a reason to stop reconciling the rest.
/// </summary>
public static class ClusterState
{
    /// <summary>The state of <paramref name="network"/> at <paramref name="revision"/> in <paramref name="keys"/>; nodes are those whose lease holds their key.</summary>
    public static NetworkState Read(string network, IPNetwork pool4, IPNetwork pool6, long revision, IReadOnlyDictionary<string, string> keys)
    {
        var services = ImmutableSortedDictionary.CreateBuilder<string, ServiceEntry>(StringComparer.Ordinal);
        var instances = ImmutableSortedDictionary.CreateBuilder<string, InstanceEntry>(StringComparer.Ordinal);
        var nodes = ImmutableSortedDictionary.CreateBuilder<string, NodeEntry>(StringComparer.Ordinal);
        var blocks = ImmutableArray.CreateBuilder<BlockEntry>();
        var servicePrefix = ClusterKeys.ServicesPrefix(network);
        var instancePrefix = ClusterKeys.InstancesPrefix(network);
        var block4 = ClusterKeys.BlocksPrefix(network, AddressFamily.InterNetwork);
        var block6 = ClusterKeys.BlocksPrefix(network, AddressFamily.InterNetworkV6);
        var healthPrefix = ClusterKeys.HealthPrefix(network);
        foreach (var (key, value) in keys)
        {
            if (key.StartsWith(ClusterKeys.NodesPrefix, StringComparison.Ordinal))
            {
                if (ClusterJson.TryParse(value, ClusterJson.Default.NodeRecord) is { } n && IPAddress.TryParse(n.Underlay, out var underlay))
                {
                    nodes[n.Name] = new NodeEntry(n.Name, underlay);
                }
            }
            else if (key.StartsWith(servicePrefix, StringComparison.Ordinal))
            {
                if (ClusterJson.TryParse(value, ClusterJson.Default.ServiceClaim) is { } s && Service(s) is { } entry)
                {
                    services[entry.Name] = entry;
                }
            }
            else if (key.StartsWith(instancePrefix, StringComparison.Ordinal))
            {
                if (ClusterJson.TryParse(value, ClusterJson.Default.InstanceClaim) is { } i && Instance(i, Verdict(keys, healthPrefix + i.Id)) is { } entry)
                {
                    instances[entry.Name] = entry;
                }
            }
            else if (key.StartsWith(block4, StringComparison.Ordinal) || key.StartsWith(block6, StringComparison.Ordinal))
            {
                if (int.TryParse(ClusterKeys.Leaf(key), NumberStyles.None, CultureInfo.InvariantCulture, out var index) && index >= 0)
                {
                    blocks.Add(new BlockEntry(ClusterAllocator.BlockPrefix(key.StartsWith(block4, StringComparison.Ordinal) ? pool4 : pool6, index), value));
                }
            }
        }
        return new NetworkState(network, revision, services.ToImmutable(), instances.ToImmutable(), nodes.ToImmutable(), blocks.ToImmutable());
    }

    /// <summary>
    /// <paramref name="previous"/> brought to <paramref name="revision"/> from the keys that changed
    /// (<paramref name="changed"/>, looked up in <paramref name="keys"/>: present means put, absent
    /// means deleted), without reading the rest: what a watch step costs is what it changed, not the
    /// size of the state. The result equals <see cref="Read"/> of the same keys.
    /// </summary>
    public static NetworkState Update(NetworkState previous, IPNetwork pool4, IPNetwork pool6, long revision, IEnumerable<string> changed, IReadOnlyDictionary<string, string> keys)
        => Update(previous, pool4, pool6, revision, changed, keys, out _);

    /// <summary>As <see cref="Update(NetworkState, IPNetwork, IPNetwork, long, IEnumerable{string}, IReadOnlyDictionary{string, string})"/>, naming what the keys changed (what <see cref="Projection.Step"/> looks at).</summary>
    public static NetworkState Update(NetworkState previous, IPNetwork pool4, IPNetwork pool6, long revision, IEnumerable<string> changed, IReadOnlyDictionary<string, string> keys, out StateChange change)
    {
        var touchedServices = new HashSet<string>(StringComparer.Ordinal);
        var touchedInstances = new HashSet<string>(StringComparer.Ordinal);
        var touchedNodes = false;
        var network = previous.Network;
        var services = previous.Services.ToBuilder();
        var instances = previous.Instances.ToBuilder();
        var nodes = previous.Nodes.ToBuilder();
        var blocks = previous.Blocks;
        var servicePrefix = ClusterKeys.ServicesPrefix(network);
        var instancePrefix = ClusterKeys.InstancesPrefix(network);
        var block4 = ClusterKeys.BlocksPrefix(network, AddressFamily.InterNetwork);
        var block6 = ClusterKeys.BlocksPrefix(network, AddressFamily.InterNetworkV6);
        var healthPrefix = ClusterKeys.HealthPrefix(network);
        foreach (var key in changed)
        {
            keys.TryGetValue(key, out var value);
            if (key.StartsWith(healthPrefix, StringComparison.Ordinal))
            {
                // A verdict changes its instance only (the instance's own record may come in the same step: read below from it).
                var id = ClusterKeys.Leaf(key);
                if (instances.TryGetValue(id, out var had) && had.Health != InstanceHealth.None)
                {
                    instances[id] = had with { Health = Verdict(keys, key) };
                    touchedInstances.Add(id);
                }
                continue;
            }
            if (key.StartsWith(ClusterKeys.NodesPrefix, StringComparison.Ordinal))
            {
                touchedNodes = true;
                nodes.Remove(ClusterKeys.Leaf(key));
                if (value is not null && ClusterJson.TryParse(value, ClusterJson.Default.NodeRecord) is { } n && IPAddress.TryParse(n.Underlay, out var underlay))
                {
                    nodes[n.Name] = new NodeEntry(n.Name, underlay);
                }
            }
            else if (key.StartsWith(servicePrefix, StringComparison.Ordinal))
            {
                touchedServices.Add(ClusterKeys.Leaf(key));
                services.Remove(ClusterKeys.Leaf(key));
                if (value is not null && ClusterJson.TryParse(value, ClusterJson.Default.ServiceClaim) is { } s && Service(s) is { } entry)
                {
                    services[entry.Name] = entry;
                }
            }
            else if (key.StartsWith(instancePrefix, StringComparison.Ordinal))
            {
                touchedInstances.Add(ClusterKeys.Leaf(key));
                instances.Remove(ClusterKeys.Leaf(key));
                if (value is not null && ClusterJson.TryParse(value, ClusterJson.Default.InstanceClaim) is { } i && Instance(i, Verdict(keys, healthPrefix + i.Id)) is { } entry)
                {
                    instances[entry.Name] = entry;
                }
            }
            else if ((key.StartsWith(block4, StringComparison.Ordinal) || key.StartsWith(block6, StringComparison.Ordinal))
                && int.TryParse(ClusterKeys.Leaf(key), NumberStyles.None, CultureInfo.InvariantCulture, out var index) && index >= 0)
            {
                touchedNodes = true;
                var prefix = ClusterAllocator.BlockPrefix(key.StartsWith(block4, StringComparison.Ordinal) ? pool4 : pool6, index);
                blocks = blocks.RemoveAll(b => b.Prefix.Equals(prefix));
                if (value is not null)
                {
                    blocks = blocks.Add(new BlockEntry(prefix, value));
                }
            }
        }
        change = new StateChange(touchedServices, touchedInstances, System.Collections.Frozen.FrozenSet<string>.Empty, touchedNodes);
        return new NetworkState(network, revision, services.ToImmutable(), instances.ToImmutable(), nodes.ToImmutable(), blocks);
    }

    /// <summary>True when <paramref name="key"/> is one that <see cref="Read"/> of <paramref name="network"/> looks at.</summary>
    public static bool Concerns(string network, string key)
        => key.StartsWith(ClusterKeys.NodesPrefix, StringComparison.Ordinal) || key.StartsWith(ClusterKeys.Network(network), StringComparison.Ordinal);

    /// <summary>Every network's settings in <paramref name="keys"/> (<c>networks/NET/spec</c>), by name.</summary>
    public static IReadOnlyDictionary<string, NetworkClaim> Networks(IReadOnlyDictionary<string, string> keys)
    {
        var result = new SortedDictionary<string, NetworkClaim>(StringComparer.Ordinal);
        foreach (var (key, value) in keys)
        {
            if (key.StartsWith(ClusterKeys.Root + "networks/", StringComparison.Ordinal) && key.EndsWith("/spec", StringComparison.Ordinal)
                && ClusterJson.TryParse(value, ClusterJson.Default.NetworkClaim) is { } claim && key == ClusterKeys.NetworkSpec(claim.Name))
            {
                result[claim.Name] = claim;
            }
        }
        return result;
    }

    /// <summary>The service records of <paramref name="network"/> as stored (with their specs).</summary>
    public static IReadOnlyList<ServiceClaim> Services(string network, IReadOnlyDictionary<string, string> keys)
        => Records(ClusterKeys.ServicesPrefix(network), keys, ClusterJson.Default.ServiceClaim);

    /// <summary>The instance records of <paramref name="network"/> as stored (with their specs).</summary>
    public static IReadOnlyList<InstanceClaim> Instances(string network, IReadOnlyDictionary<string, string> keys)
        => Records(ClusterKeys.InstancesPrefix(network), keys, ClusterJson.Default.InstanceClaim);

    private static T[] Records<T>(string prefix, IReadOnlyDictionary<string, string> keys, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type) where T : class
        => keys.Where(kv => kv.Key.StartsWith(prefix, StringComparison.Ordinal)).Select(kv => ClusterJson.TryParse(kv.Value, type)).OfType<T>().ToArray();

    private static ServiceEntry? Service(ServiceClaim s)
    {
        if (!IPAddress.TryParse(s.Virtual4, out var v4) || !IPAddress.TryParse(s.Virtual6, out var v6))
        {
            return null;
        }
        var policy = s.Spec?["policy"] is JsonValue p && p.TryGetValue<string>(out var text) && PolicyNames.TryParse(text, out var parsed) ? parsed : LoadBalancingPolicy.Random;
        var ports = ImmutableArray.CreateBuilder<PortMapping>();
        if (s.Spec?["ports"] is JsonArray list)
        {
            var ignored = new ErrorCollector();
            foreach (var item in list)
            {
                if (item is JsonValue v && v.TryGetValue<string>(out var port) && PortMapping.TryParse(port, "ports", ignored) is { } mapping)
                {
                    ports.Add(mapping);
                }
            }
        }
        return new ServiceEntry(s.Name, v4, v6, policy, ports.ToImmutable(), s.Slots is null ? [] : [.. s.Slots]);
    }

    /// <summary>The verdict stored at <paramref name="key"/>: healthy, unhealthy, or (absent) not passed yet.</summary>
    private static InstanceHealth Verdict(IReadOnlyDictionary<string, string> keys, string key)
        => keys.TryGetValue(key, out var v) ? v switch { "healthy" => InstanceHealth.Healthy, "unhealthy" => InstanceHealth.Unhealthy, _ => InstanceHealth.Starting } : InstanceHealth.Starting;

    private static InstanceEntry? Instance(InstanceClaim i, InstanceHealth verdict)
    {
        if (!IPAddress.TryParse(i.Address4, out var a4) || !IPAddress.TryParse(i.Address6, out var a6))
        {
            return null;
        }
        var mode = i.Mode switch
        {
            null or "active" => InstanceMode.Active,
            "standby" => InstanceMode.Standby,
            "draining" => InstanceMode.Draining,
            _ => (InstanceMode?)null,
        };
        if (mode is null)
        {
            return null;
        }
        var command = i.Spec?["command"] is JsonArray array && array.All(x => x is JsonValue v && v.TryGetValue<string>(out _))
            ? array.Select(x => x!.GetValue<string>()).ToImmutableArray()
            : (ImmutableArray<string>?)null;
        var restart = i.Spec?["restart"] is JsonValue r && r.TryGetValue<string>(out var policy) ? policy : null;
        var check = i.Spec?["health"] as JsonObject;
        return new InstanceEntry(i.Id, i.Service, i.Node, a4, a6, mode.Value)
        {
            Command = command, DrainUntil = i.DrainUntil, Restart = restart, Pinned = i.Pinned == true,
            Health = check is null ? InstanceHealth.None : verdict, HealthSpec = check?.ToJsonString(),
        };
    }
}
