using System.Text.Json;
using Relay.Core.Errors;
using Relay.Core.Model;
using Relay.Core.Naming;
using Relay.Engine;
using Relay.Engine.Api;

namespace Relay.Daemon;

/// <summary>One thing <c>apply</c> does (or would do, in a dry run).</summary>
/// <param name="Action">create, update, remove or unchanged.</param>
/// <param name="Kind">network, service or instance.</param>
/// <param name="Network">The network.</param>
/// <param name="Name">The object's name.</param>
/// <param name="Detail">What changes, for updates.</param>
public sealed record ApplyStep(string Action, string Kind, string Network, string Name, string Detail = "");

/// <summary>What <c>apply</c> did.</summary>
/// <param name="DryRun">True when nothing was changed.</param>
/// <param name="Steps">Every object of the document (and every one it removes), with what happened to it.</param>
public sealed record ApplyResult(bool DryRun, IReadOnlyList<ApplyStep> Steps)
{
    /// <summary>Number of creations, updates and removals.</summary>
    public int Changes => Steps.Count(s => s.Action != ApplyActions.Unchanged);
}

/// <summary>The actions of <see cref="ApplyStep"/>.</summary>
public static class ApplyActions
{
    /// <summary>Created.</summary>
    public const string Create = "create";
    /// <summary>Changed in place.</summary>
    public const string Update = "update";
    /// <summary>Removed.</summary>
    public const string Remove = "remove";
    /// <summary>Already as asked.</summary>
    public const string Unchanged = "unchanged";
}

/// <summary>
/// What <see cref="Applier"/> reads and changes: a single host's networks
/// (<see cref="LocalApplyTarget"/>) or a cluster's (<c>ClusterApplyTarget</c>), through the same
/// calls the API's other endpoints make.
/// </summary>
public interface IApplyTarget
{
    /// <summary>Whether the network exists.</summary>
    bool HasNetwork(string network);

    /// <summary>The settings of <paramref name="network"/> that differ from <paramref name="wanted"/> (fixed once a network exists), as "what a != b".</summary>
    IReadOnlyList<string> SettingsDiffer(string network, NetworkOptions wanted);

    /// <summary>The network's services.</summary>
    IReadOnlyList<ServiceInfo> Services(string network);

    /// <summary>The network's instances.</summary>
    IReadOnlyList<InstanceInfo> Instances(string network);

    /// <summary>An instance's health check as it was given (null: none).</summary>
    HealthSpec? HealthSpecOf(string network, string instance);

    /// <summary>Why an instance cannot be placed on <paramref name="node"/> of <paramref name="network"/> (null: it can).</summary>
    string? NodeUnavailable(string network, string node);

    /// <summary>Creates a network.</summary>
    Task CreateNetworkAsync(NetworkOptions options, CancellationToken ct);

    /// <summary>Adds services (one kernel transaction where the target can).</summary>
    Task AddServicesAsync(string network, IReadOnlyList<(ServiceOptions Options, ServiceSpec Spec)> services, CancellationToken ct);

    /// <summary>Changes a service's policy or ports.</summary>
    Task UpdateServiceAsync(string network, ServiceOptions options, ServiceSpec spec, CancellationToken ct);

    /// <summary>Removes a service (its instances are gone already).</summary>
    Task RemoveServiceAsync(string network, string service, CancellationToken ct);

    /// <summary>Adds an instance.</summary>
    Task AddInstanceAsync(string network, string service, InstanceOptions options, InstanceSpec spec, CancellationToken ct);

    /// <summary>Changes an instance in place.</summary>
    Task UpdateInstanceAsync(string network, string name, InstanceOptions options, CancellationToken ct);

    /// <summary>Removes an instance: at once (<paramref name="now"/>, waited for), or draining as the network says (not waited for).</summary>
    Task RemoveInstanceAsync(string network, string name, bool now, CancellationToken ct);
}

/// <summary>A single host's networks, as <see cref="Applier"/> sees them.</summary>
public sealed class LocalApplyTarget(RelayDaemon daemon) : IApplyTarget
{
    /// <inheritdoc/>
    public bool HasNetwork(string network) => daemon.HasNetwork(network);

    /// <inheritdoc/>
    public IReadOnlyList<string> SettingsDiffer(string network, NetworkOptions wanted) => Applier.Differences(daemon.Network(network).Options, wanted);

    /// <inheritdoc/>
    public IReadOnlyList<ServiceInfo> Services(string network) => daemon.Network(network).Services;

    /// <inheritdoc/>
    public IReadOnlyList<InstanceInfo> Instances(string network) => daemon.Network(network).Instances;

    /// <inheritdoc/>
    public HealthSpec? HealthSpecOf(string network, string instance) => daemon.Network(network).HealthSpecOf(instance);

    /// <inheritdoc/>
    public string? NodeUnavailable(string network, string node)
        => node == (daemon.Options.Node ?? Environment.MachineName) ? null : $"no node '{node}': this daemon is a single host; 'node' needs a cluster (relay daemon --etcd ...)";

    /// <inheritdoc/>
    public Task CreateNetworkAsync(NetworkOptions options, CancellationToken ct)
    {
        daemon.CreateNetwork(options);
        return Task.CompletedTask;
    }

    /// <inheritdoc/>
    public Task AddServicesAsync(string network, IReadOnlyList<(ServiceOptions Options, ServiceSpec Spec)> services, CancellationToken ct)
    {
        daemon.Network(network).AddServices([.. services.Select(s => s.Options)]);
        return Task.CompletedTask;
    }

    /// <inheritdoc/>
    public Task UpdateServiceAsync(string network, ServiceOptions options, ServiceSpec spec, CancellationToken ct)
    {
        daemon.Network(network).UpdateService(options);
        return Task.CompletedTask;
    }

    /// <inheritdoc/>
    public Task RemoveServiceAsync(string network, string service, CancellationToken ct)
    {
        daemon.Network(network).RemoveService(service);
        return Task.CompletedTask;
    }

    /// <inheritdoc/>
    public Task AddInstanceAsync(string network, string service, InstanceOptions options, InstanceSpec spec, CancellationToken ct)
    {
        daemon.Network(network).AddInstance(service, options);
        return Task.CompletedTask;
    }

    /// <inheritdoc/>
    public Task UpdateInstanceAsync(string network, string name, InstanceOptions options, CancellationToken ct)
    {
        daemon.Network(network).UpdateInstance(name, options);
        return Task.CompletedTask;
    }

    /// <inheritdoc/>
    public Task RemoveInstanceAsync(string network, string name, bool now, CancellationToken ct)
    {
        var removal = daemon.Network(network).RemoveInstanceAsync(name, now ? TimeSpan.Zero : null);
        return now ? removal : Task.CompletedTask;
    }
}

/// <summary>
/// Makes the networks named by a <see cref="DesiredState"/> match it: validates everything first
/// (nothing is applied when anything is wrong), plans the differences, then applies them in an order
/// that keeps traffic flowing (new before old). Networks the document does not name are not touched.
/// Applying the same document twice changes nothing. The same on one host and in a cluster: only
/// the <see cref="IApplyTarget"/> differs.
/// </summary>
public sealed class Applier(IApplyTarget target)
{
    /// <summary>Applies to a single host's networks.</summary>
    public Applier(RelayDaemon daemon) : this(new LocalApplyTarget(daemon))
    {
    }

    /// <summary>Plans, and unless <paramref name="dryRun"/>, applies <paramref name="state"/>.</summary>
    public async Task<ApplyResult> ApplyAsync(DesiredState state, bool dryRun, CancellationToken ct = default)
    {
        var errors = new ErrorCollector();
        errors.AddRange(SpecMapping.Validate(state));
        errors.ThrowIfAny();

        var plan = Plan(state, errors);
        errors.ThrowIfAny();
        if (dryRun)
        {
            return new ApplyResult(true, plan.Steps);
        }
        foreach (var (options, _) in plan.NewNetworks)
        {
            await target.CreateNetworkAsync(options, ct).ConfigureAwait(false);
        }
        foreach (var (network, changes) in plan.Networks)
        {
            if (changes.AddServices.Count > 0)
            {
                await target.AddServicesAsync(network, changes.AddServices, ct).ConfigureAwait(false);
            }
            foreach (var (options, spec) in changes.UpdateServices)
            {
                await target.UpdateServiceAsync(network, options, spec, ct).ConfigureAwait(false);
            }
            // Instances of services that go are cut at once: the service goes with them.
            await Task.WhenAll(changes.RemoveInstancesNow.Select(i => target.RemoveInstanceAsync(network, i, now: true, ct))).ConfigureAwait(false);
            foreach (var s in changes.RemoveServices)
            {
                await target.RemoveServiceAsync(network, s, ct).ConfigureAwait(false);
            }
            foreach (var (service, options, spec) in changes.AddInstances)
            {
                await target.AddInstanceAsync(network, service, options, spec, ct).ConfigureAwait(false);
            }
            foreach (var (name, options) in changes.UpdateInstances)
            {
                await target.UpdateInstanceAsync(network, name, options, ct).ConfigureAwait(false);
            }
            // The others drain as the network's drain timeout says; apply does not wait for them.
            foreach (var i in changes.RemoveInstances)
            {
                await target.RemoveInstanceAsync(network, i, now: false, ct).ConfigureAwait(false);
            }
        }
        return new ApplyResult(false, plan.Steps);
    }

    private sealed class NetworkChanges
    {
        public List<(ServiceOptions Options, ServiceSpec Spec)> AddServices { get; } = [];
        public List<(ServiceOptions Options, ServiceSpec Spec)> UpdateServices { get; } = [];
        public List<string> RemoveServices { get; } = [];
        public List<(string Service, InstanceOptions Options, InstanceSpec Spec)> AddInstances { get; } = [];
        public List<(string Name, InstanceOptions Options)> UpdateInstances { get; } = [];
        public List<string> RemoveInstances { get; } = [];
        public List<string> RemoveInstancesNow { get; } = [];
    }

    private sealed record ApplyPlan(List<(NetworkOptions Options, int Index)> NewNetworks, SortedDictionary<string, NetworkChanges> Networks, List<ApplyStep> Steps);

    private ApplyPlan Plan(DesiredState state, ErrorCollector errors)
    {
        var steps = new List<ApplyStep>();
        var newNetworks = new List<(NetworkOptions, int)>();
        var names = new SortedSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < state.Networks.Count; i++)
        {
            var spec = state.Networks[i];
            var options = SpecMapping.ToNetworkOptions(spec, $"networks[{i}]", new ErrorCollector()) with { Name = spec.Name!.ToLowerInvariant() };
            names.Add(options.Name);
            if (!target.HasNetwork(options.Name))
            {
                newNetworks.Add((options, i));
                steps.Add(new ApplyStep(ApplyActions.Create, "network", options.Name, options.Name));
                continue;
            }
            var differs = target.SettingsDiffer(options.Name, options);
            if (differs.Count > 0)
            {
                errors.Add(ErrorCode.Conflict, $"networks[{i}]", $"network '{options.Name}' exists with other settings ({string.Join(", ", differs)}); a network's pools and settings are fixed: 'relay down --network {options.Name}' first");
            }
            steps.Add(new ApplyStep(ApplyActions.Unchanged, "network", options.Name, options.Name));
        }
        foreach (var n in state.Services.Select(s => Net(s.Network)).Concat(state.Instances.Select(i => Net(i.Network))))
        {
            if (!names.Contains(n) && !target.HasNetwork(n) && n == SpecMapping.DefaultNetwork)
            {
                // The default network comes into being with its first service, as 'relay service add' makes it.
                newNetworks.Add((new NetworkOptions { Name = n }, -1));
                steps.Add(new ApplyStep(ApplyActions.Create, "network", n, n));
            }
            else if (!names.Contains(n) && !target.HasNetwork(n))
            {
                var index = state.Services.Select((s, i) => (s, i)).Where(x => Net(x.s.Network) == n).Select(x => $"services[{x.i}].network")
                    .Concat(state.Instances.Select((s, i) => (s, i)).Where(x => Net(x.s.Network) == n).Select(x => $"instances[{x.i}].network")).First();
                errors.Add(ErrorCode.NotFound, index, $"network '{n}' is neither in this document nor existing; add it under 'networks:'");
            }
            names.Add(n);
        }

        var plan = new SortedDictionary<string, NetworkChanges>(StringComparer.Ordinal);
        foreach (var network in names)
        {
            var changes = plan[network] = new NetworkChanges();
            var exists = target.HasNetwork(network) && !newNetworks.Exists(x => x.Item1.Name == network);
            var currentServices = exists ? target.Services(network).ToDictionary(s => s.Name, StringComparer.Ordinal) : [];
            var currentInstances = exists ? target.Instances(network).ToDictionary(i => i.Name, StringComparer.Ordinal) : [];
            var wantedServices = new HashSet<string>(StringComparer.Ordinal);
            for (var i = 0; i < state.Services.Count; i++)
            {
                var spec = state.Services[i];
                if (Net(spec.Network) != network)
                {
                    continue;
                }
                var options = SpecMapping.ToServiceOptions(spec, $"services[{i}]", new ErrorCollector());
                var name = ServiceName.Parse(spec.Name).Value;
                options = options with { Name = name };
                wantedServices.Add(name);
                if (!currentServices.TryGetValue(name, out var current))
                {
                    changes.AddServices.Add((options, spec));
                    steps.Add(new ApplyStep(ApplyActions.Create, "service", network, name));
                    continue;
                }
                if (current.Addressing != options.Addressing || options.Vip4 is { } v4 && v4 != current.Vip4.ToString() || options.Vip6 is { } v6 && v6 != current.Vip6.ToString())
                {
                    errors.Add(ErrorCode.Conflict, $"services[{i}]", $"service '{name}' exists with other virtual addresses or addressing; those are stable: remove it from the file, apply, then add it back");
                    continue;
                }
                var detail = new List<string>();
                if (current.Policy != (Relay.Core.LoadBalancing.PolicyNames.TryParse(options.Policy, out var p) ? Relay.Core.LoadBalancing.PolicyNames.Of(p) : options.Policy))
                {
                    detail.Add($"policy {current.Policy} -> {options.Policy}");
                }
                if (!SamePorts(current.Ports, options.Ports))
                {
                    detail.Add($"ports {string.Join(' ', current.Ports)} -> {string.Join(' ', options.Ports)}");
                }
                if (detail.Count > 0)
                {
                    changes.UpdateServices.Add((options, spec));
                }
                steps.Add(new ApplyStep(detail.Count > 0 ? ApplyActions.Update : ApplyActions.Unchanged, "service", network, name, string.Join("; ", detail)));
            }
            var wantedInstances = new HashSet<string>(StringComparer.Ordinal);
            for (var i = 0; i < state.Instances.Count; i++)
            {
                var spec = state.Instances[i];
                if (Net(spec.Network) != network)
                {
                    continue;
                }
                var options = SpecMapping.ToInstanceOptions(spec, $"instances[{i}]", new ErrorCollector());
                var name = spec.Name!.ToLowerInvariant();
                var service = ServiceName.Parse(spec.Service).Value;
                wantedInstances.Add(name);
                if (spec.Node is { } wantedNode && target.NodeUnavailable(network, wantedNode) is { } noNode)
                {
                    errors.Add(ErrorCode.NotFound, $"instances[{i}].node", noNode);
                }
                if (!currentInstances.TryGetValue(name, out var current) || current.Service != service)
                {
                    if (current is not null)
                    {
                        // Moving to another service is a new instance under the same name.
                        changes.RemoveInstancesNow.Add(name);
                        steps.Add(new ApplyStep(ApplyActions.Remove, "instance", network, name, $"was of {current.Service}"));
                    }
                    changes.AddInstances.Add((service, options with { Name = name }, spec with { Name = name, Service = service }));
                    steps.Add(new ApplyStep(ApplyActions.Create, "instance", network, name));
                    continue;
                }
                var detail = new List<string>();
                if (!(current.Command ?? []).SequenceEqual(options.Command ?? []))
                {
                    detail.Add("command");
                }
                if (current.Restart != (options.Restart ?? "on-failure"))
                {
                    detail.Add($"restart {current.Restart} -> {options.Restart}");
                }
                if (JsonSerializer.Serialize(target.HealthSpecOf(network, name)) != JsonSerializer.Serialize(options.Health))
                {
                    detail.Add("health check");
                }
                if ((current.State == InstanceState.Standby) != options.Standby && current.State != InstanceState.Draining)
                {
                    detail.Add(options.Standby ? "to standby" : "into the balancer");
                }
                if (spec.Node is { } node && current.Node is { } on && !string.Equals(node, on, StringComparison.Ordinal))
                {
                    errors.Add(ErrorCode.Conflict, $"instances[{i}].node", $"instance '{name}' runs on node '{on}', not '{node}': an instance does not change nodes in place; 'relay migrate {service} --to' an instance on '{node}', or give this one another name");
                }
                if (detail.Count > 0)
                {
                    changes.UpdateInstances.Add((name, options));
                }
                steps.Add(new ApplyStep(detail.Count > 0 ? ApplyActions.Update : ApplyActions.Unchanged, "instance", network, name, string.Join("; ", detail)));
            }
            foreach (var (name, current) in currentInstances)
            {
                if (wantedInstances.Contains(name) || current.State == InstanceState.Draining)
                {
                    continue;
                }
                if (wantedServices.Contains(current.Service))
                {
                    changes.RemoveInstances.Add(name);
                }
                else
                {
                    changes.RemoveInstancesNow.Add(name);
                }
                steps.Add(new ApplyStep(ApplyActions.Remove, "instance", network, name));
            }
            foreach (var name in currentServices.Keys.Where(n => !wantedServices.Contains(n)))
            {
                changes.RemoveServices.Add(name);
                steps.Add(new ApplyStep(ApplyActions.Remove, "service", network, name));
            }
        }
        return new ApplyPlan(newNetworks, plan, steps);
    }

    private static string Net(string? network) => (network ?? SpecMapping.DefaultNetwork).ToLowerInvariant();

    private static bool SamePorts(IReadOnlyList<PortMapping> a, IReadOnlyList<PortMapping> b)
        => a.Select(p => p.ToString()).Order(StringComparer.Ordinal).SequenceEqual(b.Select(p => p.ToString()).Order(StringComparer.Ordinal));

    /// <summary>The fixed settings of a single host's network that differ.</summary>
    internal static List<string> Differences(NetworkOptions current, NetworkOptions wanted)
    {
        var d = new List<string>();
        void Check(string what, string a, string b)
        {
            if (!string.Equals(a, b, StringComparison.OrdinalIgnoreCase))
            {
                d.Add($"{what} {a} != {b}");
            }
        }
        Check("instancePool4", current.InstancePool4, wanted.InstancePool4);
        Check("instancePool6", current.InstancePool6, wanted.InstancePool6);
        Check("virtualPool4", current.VirtualPool4, wanted.VirtualPool4);
        Check("virtualPool6", current.VirtualPool6, wanted.VirtualPool6);
        Check("flowPool4", current.FlowPool4, wanted.FlowPool4);
        Check("flowPool6", current.FlowPool6, wanted.FlowPool6);
        Check("drain", Duration.Format(current.DrainTimeout), Duration.Format(wanted.DrainTimeout));
        Check("dns", JsonSerializer.Serialize(current.Dns), JsonSerializer.Serialize(wanted.Dns));
        return d;
    }
}
