using System.Text.Json;
using System.Text.Json.Nodes;
using Relay.Core.Errors;
using Relay.Engine;
using Relay.Engine.Api;

namespace Relay.Daemon.Cluster;

/// <summary>
/// <c>relay apply</c> on a cluster node: the same planner as on one host (<see cref="Applier"/>),
/// writing through the cluster's own guarded transactions, each waited for until every live node
/// applied it. An instance changed in place keeps its node, namespace and addresses; its node
/// restarts its command or check (<see cref="UpdateInstanceAsync"/>).
/// </summary>
public sealed partial class ClusterNetworks : IApplyTarget
{
    /// <summary>Whether the cluster has <paramref name="network"/>.</summary>
    public bool HasNetwork(string network) => (_claims ?? Relay.Cluster.ClusterState.Networks(State.State)).ContainsKey(network);

    IReadOnlyList<string> IApplyTarget.SettingsDiffer(string network, NetworkOptions wanted)
    {
        // What a cluster's network keeps, compared as on one host; the settings its record does
        // not keep yet are taken as wanted.
        var (claim, _) = Read(network);
        var current = wanted with
        {
            InstancePool4 = claim.InstancePool4, InstancePool6 = claim.InstancePool6,
            VirtualPool4 = claim.VirtualPool4, VirtualPool6 = claim.VirtualPool6,
            Dns = wanted.Dns with { Zones = claim.Zones },
        };
        return Applier.Differences(current, wanted);
    }

    /// <summary>An instance's health check as it was given (null: none).</summary>
    public HealthSpec? HealthSpecOf(string network, string instance)
        => Read(network).State.Instances.TryGetValue(instance, out var entry) && entry.HealthSpec is { } text ? JsonSerializer.Deserialize<HealthSpec>(text, HealthJson) : null;

    string? IApplyTarget.NodeUnavailable(string network, string node)
    {
        // Live nodes are the cluster's, not a network's: those whose lease holds their key.
        var nodes = State.State.Keys.Where(k => k.StartsWith(Relay.Cluster.ClusterKeys.NodesPrefix, StringComparison.Ordinal)).Select(Relay.Cluster.ClusterKeys.Leaf).ToArray();
        return nodes.Contains(node, StringComparer.Ordinal) ? null : $"no live node '{node}' (nodes: {string.Join(", ", nodes)})";
    }

    async Task IApplyTarget.CreateNetworkAsync(NetworkOptions options, CancellationToken ct) => await CreateNetworkAsync(options, ct).ConfigureAwait(false);

    async Task IApplyTarget.AddServicesAsync(string network, IReadOnlyList<(ServiceOptions Options, ServiceSpec Spec)> services, CancellationToken ct)
    {
        foreach (var (_, spec) in services)
        {
            await AddServiceAsync(network, spec, ct).ConfigureAwait(false);
        }
    }

    Task IApplyTarget.UpdateServiceAsync(string network, ServiceOptions options, ServiceSpec spec, CancellationToken ct) => UpdateServiceAsync(network, spec, ct);

    Task IApplyTarget.RemoveServiceAsync(string network, string service, CancellationToken ct) => RemoveServiceAsync(network, service, force: true, ct);

    async Task IApplyTarget.AddInstanceAsync(string network, string service, InstanceOptions options, InstanceSpec spec, CancellationToken ct)
        => await AddInstanceAsync(network, spec, ct).ConfigureAwait(false);

    async Task IApplyTarget.UpdateInstanceAsync(string network, string name, InstanceOptions options, CancellationToken ct)
        => await UpdateInstanceAsync(network, name, options, ct).ConfigureAwait(false);

    Task IApplyTarget.RemoveInstanceAsync(string network, string name, bool now, CancellationToken ct) => RemoveInstanceAsync(network, name, now ? TimeSpan.Zero : null, ct);

    /// <summary>Changes a service's policy or ports: one guarded transaction, waited for; its virtual addresses and balancer stay.</summary>
    public async Task<ServiceInfo> UpdateServiceAsync(string network, ServiceSpec spec, CancellationToken ct)
    {
        var errors = new ErrorCollector();
        var options = SpecMapping.ToServiceOptions(spec, "service", errors);
        errors.ThrowIfAny();
        var current = Service(network, options.Name);
        var json = new JsonObject
        {
            ["policy"] = options.Policy,
            ["ports"] = new JsonArray([.. options.Ports.Select(p => (JsonNode)JsonValue.Create(p.ToString())!)]),
        };
        var revision = await Allocator(Node).UpdateServiceSpecAsync(network, current.Name, json, ct).ConfigureAwait(false);
        await WaitAsync(revision, ct).ConfigureAwait(false);
        return Service(network, current.Name);
    }
}
