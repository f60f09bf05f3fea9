using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace Relay.Cluster;

/// <summary>A node of the cluster as it announces itself (on its lease: the key goes when the node does).</summary>
/// <param name="Name">The node's name (<c>--node</c>).</param>
/// <param name="Underlay">The address other nodes reach it at, for VXLAN (<c>--underlay</c>).</param>
/// <param name="VtepMac">The MAC address of its VXLAN devices (derived from the name, see <see cref="Relay.Core.Overlay.VxlanPlan"/>).</param>
/// <param name="StartedAt">When its daemon started.</param>
/// <param name="Lease">The etcd lease that holds its keys.</param>
public sealed record NodeRecord(string Name, string Underlay, string VtepMac, DateTimeOffset StartedAt, long Lease);

/// <summary>A network's own settings, shared by every node that takes part in it (<c>networks/NET/spec</c>).</summary>
/// <param name="Name">The network's name.</param>
/// <param name="InstancePool4">Instance IPv4 addresses; nodes claim blocks of it. The first address is every node's gateway.</param>
/// <param name="InstancePool6">Instance IPv6 addresses.</param>
/// <param name="VirtualPool4">Service IPv4 addresses.</param>
/// <param name="VirtualPool6">Service IPv6 addresses.</param>
/// <param name="Zones">DNS zones the network owns.</param>
/// <param name="Request">The id of the request that created it.</param>
public sealed record NetworkClaim(string Name, string InstancePool4, string InstancePool6, string VirtualPool4, string VirtualPool6, IReadOnlyList<string> Zones, string Request);

/// <summary>A service with the virtual addresses the cluster gave it.</summary>
/// <param name="Name">The service's name.</param>
/// <param name="Virtual4">Its virtual IPv4 address (unique in the network, cluster-wide).</param>
/// <param name="Virtual6">Its virtual IPv6 address.</param>
/// <param name="Spec">The rest of its desired state, as the API gave it.</param>
/// <param name="Request">The id of the request that created it: how a retried write recognises its own earlier success.</param>
public sealed record ServiceClaim(string Name, string Virtual4, string Virtual6, JsonObject? Spec, string Request)
{
    /// <summary>The instances that hold its balancer's slots, in order (a migration puts the new instance in the old one's slot); null: by name.</summary>
    public IReadOnlyList<string>? Slots { get; init; }
}

/// <summary>An instance with its node and addresses (from its node's blocks).</summary>
/// <param name="Id">The instance's id, unique in the network.</param>
/// <param name="Service">The service it serves.</param>
/// <param name="Node">The node it runs on.</param>
/// <param name="Address4">Its IPv4 address.</param>
/// <param name="Address6">Its IPv6 address.</param>
/// <param name="Spec">The rest of its desired state (command, health, restart policy).</param>
/// <param name="Request">The id of the request that created it.</param>
public sealed record InstanceClaim(string Id, string Service, string Node, string Address4, string Address6, JsonObject? Spec, string Request)
{
    /// <summary>"standby" (wired, takes no flows), "draining" (leaving after a migration), or null: active.</summary>
    public string? Mode { get; init; }

    /// <summary>While draining: when its node removes it at the latest (its TCP flows are cut then).</summary>
    public DateTimeOffset? DrainUntil { get; init; }

    /// <summary>True when the user chose its node (<c>--node</c>): it is never placed elsewhere; null otherwise.</summary>
    public bool? Pinned { get; init; }
}

/// <summary>
/// What a node's kernel holds (<c>applied/NODE</c>): the etcd revision it reflects and when this
/// node's kernel took it (its nft transaction and conntrack cleanup done), by the node's clock.
/// </summary>
/// <param name="Revision">The revision applied (0: none yet).</param>
/// <param name="At">When it was applied; null in records of a node that has applied nothing yet.</param>
public sealed record AppliedRecord(long Revision, DateTimeOffset? At)
{
    /// <summary>The record as stored (JSON).</summary>
    public string ToJson() => JsonSerializer.Serialize(this, ClusterJson.Default.AppliedRecord);

    /// <summary>A stored value; revision 0 when it is missing or not one Relay wrote.</summary>
    public static AppliedRecord Parse(string? value)
        => value is null ? None
            : long.TryParse(value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var bare) ? new AppliedRecord(bare, null)
            : ClusterJson.TryParse(value, ClusterJson.Default.AppliedRecord) ?? None;

    /// <summary>Nothing applied.</summary>
    public static AppliedRecord None { get; } = new(0, null);
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(NodeRecord))]
[JsonSerializable(typeof(NetworkClaim))]
[JsonSerializable(typeof(ServiceClaim))]
[JsonSerializable(typeof(InstanceClaim))]
[JsonSerializable(typeof(AppliedRecord))]
internal sealed partial class ClusterJson : JsonSerializerContext
{
    /// <summary>Parses a stored value; null (and no exception) when it is not a record of that type: a key Relay did not write.</summary>
    public static T? TryParse<T>(string json, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type) where T : class
    {
        try
        {
            return JsonSerializer.Deserialize(json, type);
        }
        catch (JsonException)
        {
            return null;
        }
    }
}
