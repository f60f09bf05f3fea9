using System.Collections.Immutable;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Relay.Cluster;
using Relay.Cluster.Etcd;
using Relay.Core.Errors;
using Relay.Core.LoadBalancing;
using Relay.Core.Naming;
using Relay.Core.Reconcile;
using Relay.Daemon.Api;
using Relay.Engine;
using Relay.Engine.Api;
using Relay.Engine.Cluster;

namespace Relay.Daemon.Cluster;

/// <summary>
/// The networks of a cluster as this node's daemon serves them. Writes go to etcd, each as one
/// guarded transaction (<see cref="ClusterAllocator"/>), and return once every live node has applied
/// them; reads come from the state this node watches. One watch feeds every network this node takes
/// part in (every network of the cluster: a node that has no instance of a network still answers its
/// names and balances to its instances): each step goes to each network's
/// <see cref="ClusterReconciler.Apply"/>, and the revision is recorded when all of them hold it.
/// <para>
/// The node also finishes the drains of its own instances: a draining instance is removed from the
/// state when its node's conntrack table holds no open TCP connection to it any more (every client's
/// flow passes the instance's own orchestrator), or at its drain deadline.
/// </para>
/// </summary>
public sealed partial class ClusterNetworks : IAsyncDisposable
{
    /// <summary>How long a change waits for every live node to apply it.</summary>
    public static readonly TimeSpan ApplyTimeout = TimeSpan.FromSeconds(5);

    private readonly DaemonOptions _options;
    private readonly EtcdConnection _etcd;
    private readonly NodeLease _lease;
    private readonly IPAddress _underlay;
    private readonly ILoggerFactory _logs;
    private readonly ILogger _log;
    private readonly Lock _gate = new();
    private readonly Dictionary<string, Part> _parts = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _failed = new(StringComparer.Ordinal);
    private readonly Dictionary<string, ClusterAllocator> _allocators = new(StringComparer.Ordinal);
    /// <summary>This node's draining instances (network, id) whose removal was written, until the state no longer has them.</summary>
    private readonly HashSet<(string Network, string Instance)> _leaving = [];
    private readonly System.Collections.Concurrent.ConcurrentDictionary<(string Network, string Instance, string From), byte> _rescheduling = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly TaskCompletionSource _firstStep = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ClusterWatch _watch;
    private readonly AppliedRecorder _recorder;
    private Task _watching = Task.CompletedTask;
    private Task _draining = Task.CompletedTask;
    private volatile WatchStep? _state;
    private volatile IReadOnlyDictionary<string, NetworkClaim>? _claims;
    private volatile ImmutableDictionary<string, AppliedRecord> _progress = ImmutableDictionary<string, AppliedRecord>.Empty;
    private TaskCompletionSource _stepped = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private bool _left;

    private sealed record Part(NetworkClaim Claim, NodeNetwork Network, ClusterReconciler Reconciler, IPNetwork Pool4, IPNetwork Pool6);

    private ClusterNetworks(DaemonOptions options, ClusterMembership membership, ILoggerFactory logs)
    {
        _options = options;
        _etcd = membership.Etcd;
        _lease = membership.Lease;
        _underlay = IPAddress.Parse(options.Underlay!);
        _logs = logs;
        _log = logs.CreateLogger("relay.cluster");
        _watch = new ClusterWatch(_etcd, ClusterKeys.Root);
        _recorder = new AppliedRecorder(_lease, _log);
        // Verdicts live on the node's lease: a node that had to join again under a new lease
        // writes them again (a check whose verdict did not change would not).
        _lease.Rejoined += _ => RewriteHealth();
        _membership = membership;
        membership.SuspicionChanged += Resuspect;
    }

    private readonly ClusterMembership _membership;

    /// <summary>A peer was suspected, or seen again: every network's kernel takes it out, or back in, at once.</summary>
    private void Resuspect()
    {
        Part[] parts;
        lock (_gate)
        {
            if (_left)
            {
                return;
            }
            parts = [.. _parts.Values];
        }
        var suspected = _membership.Suspected;
        foreach (var part in parts)
        {
            part.Reconciler.Resuspect(suspected);
        }
        // Waits for applied revisions leave suspected nodes out: wake them.
        WakeWaiters();
    }

    private void RewriteHealth()
    {
        Part[] parts;
        lock (_gate)
        {
            parts = [.. _parts.Values];
        }
        foreach (var part in parts)
        {
            foreach (var (instance, healthy) in part.Network.HealthVerdicts())
            {
                _ = WriteHealthAsync(part.Claim.Name, instance, healthy);
            }
        }
    }

    /// <summary>This node.</summary>
    public string Node => _lease.Record.Name;

    /// <summary>Starts watching and reconciling; returns once the first state was applied (or 10 s passed).</summary>
    public static async Task<ClusterNetworks> StartAsync(DaemonOptions options, ClusterMembership membership, ILoggerFactory logs, CancellationToken ct = default)
    {
        var networks = new ClusterNetworks(options, membership, logs);
        networks._watching = networks._watch.RunAsync(networks.OnStepAsync, networks._stop.Token);
        networks._draining = networks.FinishDrainsAsync(networks._stop.Token);
        await Task.WhenAny(networks._firstStep.Task, Task.Delay(TimeSpan.FromSeconds(10), ct)).ConfigureAwait(false);
        return networks;
    }

    /// <summary>This node's part of each network, by name.</summary>
    public IReadOnlyList<NodeNetwork> Parts
    {
        get
        {
            lock (_gate)
            {
                return _parts.Values.Select(p => p.Network).OrderBy(n => n.Network, StringComparer.Ordinal).ToArray();
            }
        }
    }

    /// <summary>Networks whose part could not be opened on this node, with why.</summary>
    public IReadOnlyDictionary<string, string> Failed
    {
        get
        {
            lock (_gate)
            {
                return new Dictionary<string, string>(_failed, StringComparer.Ordinal);
            }
        }
    }

    private async Task OnStepAsync(WatchStep step)
    {
        _state = step;
        TrackProgress(step);
        TrackLostNodes(step);
        if (step.Resync || _claims is null || step.Changed.Any(IsNetworkSpec))
        {
            _claims = ClusterState.Networks(step.State);
        }
        var claims = _claims;
        Part[] parts;
        var changed = false;
        lock (_gate)
        {
            if (_left)
            {
                return;
            }
            foreach (var (name, part) in _parts.ToArray())
            {
                if (!claims.ContainsKey(name))
                {
                    // The network was removed from the cluster: this node's part goes.
                    _parts.Remove(name);
                    part.Network.Remove();
                    LogNetworkRemoved(_log, name, Node);
                    changed = true;
                }
            }
            foreach (var (name, claim) in claims)
            {
                if (!_parts.ContainsKey(name) && !_failed.ContainsKey(name))
                {
                    changed |= TryOpen(claim, step);
                }
            }
            parts = [.. _parts.Values];
        }
        var failed = false;
        var applied = false;
        foreach (var part in parts)
        {
            var outcome = part.Reconciler.Apply(step, _membership.Suspected);
            failed |= outcome == ClusterReconciler.StepOutcome.Failed;
            applied |= outcome == ClusterReconciler.StepOutcome.Applied;
        }
        if (!failed && (applied || changed))
        {
            _recorder.Record(step.Revision, DateTimeOffset.UtcNow);
        }
        Reschedule(parts);
        _firstStep.TrySetResult();
    }

    /// <summary>
    /// Lost nodes' instances that <see cref="ClusterPlacement"/> gives to this node start here: each
    /// move is one guarded transaction, written in the background (the step does not wait on the
    /// store); the next steps wire what it wrote. Every node computes the same placement, and the
    /// transaction's guards make a move happen once even when views differ.
    /// </summary>
    private void Reschedule(Part[] parts)
    {
        foreach (var part in parts)
        {
            if (part.Reconciler.State is not { } state)
            {
                continue;
            }
            foreach (var move in ClusterPlacement.Rescheduling(state, LostLongEnough))
            {
                var key = (part.Claim.Name, move.Instance.Name, move.Instance.Node);
                if (move.Target != Node || !_rescheduling.TryAdd(key, 0))
                {
                    continue;
                }
                _ = Task.Run(async () =>
                {
                    try
                    {
                        IPAddress[] reserved = [NodeNetwork.Gateway(part.Pool4), NodeNetwork.Gateway(part.Pool6)];
                        var (moved, revision) = await Allocator(Node).RescheduleAsync(part.Claim.Name, move.Instance.Name, move.Instance.Node, part.Pool4, part.Pool6, reserved, _stop.Token).ConfigureAwait(false);
                        if (moved)
                        {
                            LogRescheduled(_log, part.Claim.Name, move.Instance.Name, move.Instance.Node, Node, revision);
                        }
                    }
                    catch (Exception e) when (e is RelayException or OperationCanceledException)
                    {
                        LogRescheduleFailed(_log, part.Claim.Name, move.Instance.Name, move.Instance.Node, e.Message);
                    }
                    finally
                    {
                        _rescheduling.TryRemove(key, out _);
                    }
                });
            }
        }
    }

    /// <summary>When this node first saw each lost node gone (a node it never saw live: when it first saw its instances orphaned).</summary>
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, long> _lostSince = new(StringComparer.Ordinal);

    /// <summary>Whether <paramref name="node"/> has been gone for the grace period (<see cref="DaemonOptions.RescheduleAfter"/>).</summary>
    private bool LostLongEnough(string node)
    {
        if (_options.RescheduleAfter <= TimeSpan.Zero)
        {
            return true;
        }
        var since = _lostSince.GetOrAdd(node, n =>
        {
            LogLostWaiting(_log, n, Relay.Core.Model.Duration.Format(_options.RescheduleAfter));
            return Stopwatch.GetTimestamp();
        });
        return Stopwatch.GetElapsedTime(since) >= _options.RescheduleAfter;
    }

    /// <summary>Forgets the grace periods of nodes that are live again (their instances stayed).</summary>
    private void TrackLostNodes(WatchStep step)
    {
        foreach (var node in _lostSince.Keys)
        {
            if (step.State.ContainsKey(ClusterKeys.Node(node)))
            {
                _lostSince.TryRemove(node, out _);
            }
        }
    }

    private static bool IsNetworkSpec(string key)
        => key.StartsWith(ClusterKeys.Root + "networks/", StringComparison.Ordinal) && key.EndsWith("/spec", StringComparison.Ordinal);

    private bool TryOpen(NetworkClaim claim, WatchStep step)
    {
        var errors = new ErrorCollector();
        var pool4 = NodeNetwork.Pool(claim.InstancePool4, "network.instancePool4", AddressFamily.InterNetwork, errors);
        var pool6 = NodeNetwork.Pool(claim.InstancePool6, "network.instancePool6", AddressFamily.InterNetworkV6, errors);
        try
        {
            errors.ThrowIfAny();
            var options = new NetworkOptions
            {
                Name = claim.Name,
                Node = Node,
                InstancePool4 = claim.InstancePool4,
                InstancePool6 = claim.InstancePool6,
                VirtualPool4 = claim.VirtualPool4,
                VirtualPool6 = claim.VirtualPool6,
                Dns = new DnsSettings { Zones = claim.Zones },
                LogDirectory = _options.EffectiveLogDirectory,
                RecordDirectory = _options.RecordDirectory,
            };
            var network = OpenOrAdopt(options, claim, pool4!.Value, pool6!.Value, step);
            var name = claim.Name;
            network.HealthChanged += (instance, healthy) => _ = WriteHealthAsync(name, instance, healthy);
            var reconciler = new ClusterReconciler(_etcd, _lease, network, pool4!.Value, pool6!.Value, _log);
            _parts[claim.Name] = new Part(claim, network, reconciler, pool4.Value, pool6.Value);
            return true;
        }
        catch (Exception e) when (e is RelayException or IOException or InvalidOperationException)
        {
            _failed[claim.Name] = e.Message;
            LogOpenFailed(_log, claim.Name, Node, e.Message);
            return false;
        }
    }

    /// <summary>
    /// This node's part of a network: taken over as it is when an earlier daemon of this node left
    /// one (a restart: forwarding never stopped, and nothing right is rewritten), else created. What
    /// cannot be taken over is removed, exactly as its record names it, and created again.
    /// </summary>
    private NodeNetwork OpenOrAdopt(NetworkOptions options, NetworkClaim claim, IPNetwork pool4, IPNetwork pool6, WatchStep step)
    {
        var log = _logs.CreateLogger("relay.network");
        if (NetworkRecord.Load(_options.RecordDirectory, claim.Name) is not { } left)
        {
            return NodeNetwork.Open(options, _underlay, null, log);
        }
        if (NodeNetwork.CanAdopt(left, Node))
        {
            try
            {
                return NodeNetwork.Adopt(options, _underlay, left, ClusterState.Read(claim.Name, pool4, pool6, step.Revision, step.State), log);
            }
            catch (Exception e) when (e is RelayException or IOException or InvalidOperationException)
            {
                LogAdoptFailed(_log, claim.Name, Node, e.Message);
            }
        }
        var removed = left.RemoveLeftovers(_options.RecordDirectory);
        LogLeftovers(_log, claim.Name, Node, removed.Count);
        return NodeNetwork.Open(options, _underlay, null, log);
    }

    // ---- reads, from the watched state ----

    private WatchStep State => _state ?? throw new RelayException(ErrorCode.Unavailable, "cluster", "cluster store unavailable: this node has not read the cluster's state yet");

    /// <summary>The networks of the cluster, with this node's part of each.</summary>
    public IReadOnlyList<NetworkSummary> Networks()
    {
        var step = State;
        var result = new List<NetworkSummary>();
        foreach (var claim in (_claims ?? ClusterState.Networks(step.State)).Values)
        {
            var services = ClusterState.Services(claim.Name, step.State);
            var instances = ClusterState.Instances(claim.Name, step.State);
            var part = PartOrNull(claim.Name);
            result.Add(new NetworkSummary(claim.Name, part?.Network.OrchestratorNamespace ?? "-", part?.Network.Gateways.V4.ToString() ?? "-", part?.Network.Gateways.V6.ToString() ?? "-",
                services.Count, instances.Count, instances.Count, 0));
        }
        return result;
    }

    private Part? PartOrNull(string network)
    {
        lock (_gate)
        {
            return _parts.GetValueOrDefault(network);
        }
    }

    private (NetworkClaim Claim, NetworkState State) Read(string network)
    {
        var step = State;
        var claims = _claims ?? ClusterState.Networks(step.State);
        if (!claims.TryGetValue(network, out var claim))
        {
            throw new RelayException(ErrorCode.NotFound, "network", $"no network '{network}' in the cluster"
                + (claims.Count == 0 ? "; a service added to 'default' creates it, or 'relay network create'" : $" (networks: {string.Join(", ", claims.Keys)})"));
        }
        // This node's reconciler keeps the network's state parsed; a network without a part here is read whole.
        if (PartOrNull(network)?.Reconciler.State is { } kept)
        {
            return (claim, kept);
        }
        var pool4 = IPNetwork.TryParse(claim.InstancePool4, out var p4) ? p4 : default;
        var pool6 = IPNetwork.TryParse(claim.InstancePool6, out var p6) ? p6 : default;
        return (claim, ClusterState.Read(network, pool4, pool6, step.Revision, step.State));
    }

    /// <summary>This node's view of <paramref name="state"/>: the one its kernel holds when that is of the same state (no projection of 10,000 services per API read), else projected.</summary>
    private NodeView View(string network, NetworkState state)
        => PartOrNull(network)?.Network.Applied is { } applied && ReferenceEquals(applied.State, state) ? applied : Projection.Project(state, Node);

    /// <summary>Every service of a network.</summary>
    public IReadOnlyList<ServiceInfo> Services(string network)
    {
        var (_, state) = Read(network);
        var view = View(network, state);
        return state.Services.Values.Select(s => Info(s, state, view)).ToArray();
    }

    /// <summary>One service.</summary>
    public ServiceInfo Service(string network, string service)
    {
        var (_, state) = Read(network);
        var name = CanonicalService(service);
        return state.Services.TryGetValue(name, out var s)
            ? Info(s, state, View(network, state))
            : throw new RelayException(ErrorCode.NotFound, "service", $"no service '{name}' in network '{network}'");
    }

    private static ServiceInfo Info(ServiceEntry s, NetworkState state, NodeView view)
        => new(s.Name, s.Vip4, s.Vip6, PolicyNames.Of(s.Policy), s.Ports, view.Balancers.TryGetValue(s.Name, out var b) ? b.Select(i => i.Name).ToArray() : [],
            state.Instances.Values.Where(i => i.Service == s.Name).Select(i => i.Name).ToArray(), AddressingModes.Service);

    /// <summary>Every instance of a network, on every node.</summary>
    public IReadOnlyList<InstanceInfo> Instances(string network)
    {
        var (_, state) = Read(network);
        var view = View(network, state);
        var part = PartOrNull(network)?.Network;
        return state.Instances.Values.Select(i => Info(network, i, view, part)).ToArray();
    }

    /// <summary>One instance.</summary>
    public InstanceInfo Instance(string network, string instance)
    {
        var (_, state) = Read(network);
        return state.Instances.TryGetValue(instance, out var i)
            ? Info(network, i, View(network, state), PartOrNull(network)?.Network)
            : throw new RelayException(ErrorCode.NotFound, "instance", $"no instance '{instance}' in network '{network}'");
    }

    /// <summary>An instance as the API shows it; its command's pid and restarts only where it runs (<paramref name="part"/> is this node's).</summary>
    private static InstanceInfo Info(string network, InstanceEntry i, NodeView view, NodeNetwork? part)
        => new(i.Name, i.Service, NetworkNames.Instance(network, i.Name, i.Node), Projection.HostInterface(i), i.Address4, i.Address6,
            i.Mode switch { InstanceMode.Standby => InstanceState.Standby, InstanceMode.Draining => InstanceState.Draining, _ => InstanceState.Active },
            i.Command is { } c ? [.. c] : null, i.Node == view.Node ? part?.ProcessId(i.Name) : null)
        {
            Node = i.Node,
            Pinned = i.Pinned,
            Restart = i.Restart ?? Relay.Engine.Health.RestartPolicies.OnFailure,
            Restarts = i.Node == view.Node ? part?.Restarts(i.Name) ?? 0 : 0, // counted by the node that restarts it
            Health = i.Health switch
            {
                InstanceHealth.Healthy => HealthStates.Healthy,
                InstanceHealth.Unhealthy => HealthStates.Unhealthy,
                InstanceHealth.Starting => HealthStates.Starting,
                _ => HealthStates.None,
            },
            InBalancer = view.Balancers.TryGetValue(i.Service, out var b) && b.Any(x => x.Name == i.Name),
            DrainUntil = i.DrainUntil,
        };

    /// <summary>A name as the network's DNS servers answer it.</summary>
    public ResolveResponse? Resolve(string name, string? network)
    {
        var step = State;
        foreach (var claim in (_claims ?? ClusterState.Networks(step.State)).Values.Where(c => network is null || c.Name == network))
        {
            var (_, state) = Read(claim.Name);
            if (state.Services.TryGetValue(name, out var s))
            {
                var view = View(claim.Name, state);
                return new ResolveResponse(s.Name, claim.Name, s.Vip4.ToString(), s.Vip6.ToString(), s.Ports.Select(p => p.ToString()).ToArray(), AddressingModes.Service,
                    view.Balancers.TryGetValue(s.Name, out var b) ? b.Select(i => i.Name).ToArray() : []);
            }
        }
        return null;
    }

    // ---- writes, each one guarded transaction, then waited for ----

    /// <summary>Creates a network in the cluster (Duplicate when it exists).</summary>
    public async Task<NetworkSummary> CreateNetworkAsync(NetworkOptions options, CancellationToken ct)
    {
        var (claim, created, revision) = await Allocator(Node).EnsureNetworkAsync(Claim(options), ct).ConfigureAwait(false);
        if (!created)
        {
            throw new RelayException(ErrorCode.Duplicate, "network.name", $"network '{claim.Name}' already exists in the cluster");
        }
        await WaitAsync(revision, ct).ConfigureAwait(false);
        return Networks().First(n => n.Name == claim.Name);
    }

    /// <summary>Removes a network from the cluster: every node removes its part.</summary>
    public async Task RemoveNetworkAsync(string network, CancellationToken ct)
    {
        Read(network);
        await Allocator(Node).RemoveNetworkAsync(network, ct).ConfigureAwait(false);
        var revision = await CurrentRevisionAsync(ct).ConfigureAwait(false);
        await WaitAsync(revision, ct).ConfigureAwait(false);
    }

    private static NetworkClaim Claim(NetworkOptions o)
        => new(o.Name, o.InstancePool4, o.InstancePool6, o.VirtualPool4, o.VirtualPool6, o.Dns.Zones, Guid.NewGuid().ToString("N"));

    /// <summary>Adds a service; the network "default" comes into being with its first service, as on one host.</summary>
    public async Task<ServiceInfo> AddServiceAsync(string network, ServiceSpec spec, CancellationToken ct)
    {
        var errors = new ErrorCollector();
        var options = SpecMapping.ToServiceOptions(spec, "service", errors);
        if (options.Addressing != AddressingModes.Service)
        {
            errors.Add(ErrorCode.Invalid, "service.addressing", "per-client flow addresses are not available in a cluster yet; use addressing 'service'");
        }
        errors.ThrowIfAny();
        var claim = await NetworkForNewServiceAsync(network, ct).ConfigureAwait(false);
        var pools = (V4: IPNetwork.Parse(claim.VirtualPool4), V6: IPNetwork.Parse(claim.VirtualPool6));
        var json = new JsonObject
        {
            ["policy"] = options.Policy,
            ["ports"] = new JsonArray([.. options.Ports.Select(p => (JsonNode)JsonValue.Create(p.ToString())!)]),
        };
        var (_, revision) = await Allocator(Node).AddServiceAsync(network, options.Name, pools.V4, pools.V6, json,
            options.Vip4 is null ? null : IPAddress.Parse(options.Vip4), options.Vip6 is null ? null : IPAddress.Parse(options.Vip6), ct).ConfigureAwait(false);
        await WaitAsync(revision, ct).ConfigureAwait(false);
        return Service(network, options.Name);
    }

    private async Task<NetworkClaim> NetworkForNewServiceAsync(string network, CancellationToken ct)
    {
        var claims = _claims ?? ClusterState.Networks(State.State);
        if (claims.TryGetValue(network, out var known))
        {
            return known;
        }
        if (network != SpecMapping.DefaultNetwork)
        {
            Read(network); // NotFound, naming those that exist
        }
        var (claim, _, revision) = await Allocator(Node).EnsureNetworkAsync(Claim(new NetworkOptions { Name = network }), ct).ConfigureAwait(false);
        await WaitAsync(revision, ct).ConfigureAwait(false);
        return claim;
    }

    /// <summary>Removes a service; with instances only when <paramref name="force"/> (they go at once).</summary>
    public async Task RemoveServiceAsync(string network, string service, bool force, CancellationToken ct)
    {
        var info = Service(network, service);
        if (info.Instances.Count > 0 && !force)
        {
            throw new RelayException(ErrorCode.Conflict, "service", $"service '{info.Name}' has instances ({string.Join(", ", info.Instances)}); remove them first or use --force");
        }
        foreach (var instance in info.Instances)
        {
            await Allocator(Node).RemoveInstanceAsync(network, instance, ct).ConfigureAwait(false);
        }
        var revision = await Allocator(Node).RemoveServiceAsync(network, info.Name, ct).ConfigureAwait(false);
        await WaitAsync(revision, ct).ConfigureAwait(false);
    }

    /// <summary>
    /// Adds an instance on a live node: this one, or the one <see cref="InstanceSpec.Node"/> names,
    /// which pins it there (it is not started elsewhere when that node is lost).
    /// </summary>
    public Task<InstanceInfo> AddInstanceAsync(string network, InstanceSpec spec, CancellationToken ct)
        => AddInstanceAsync(network, spec, pinned: spec.Node is not null, ct);

    private async Task<InstanceInfo> AddInstanceAsync(string network, InstanceSpec spec, bool pinned, CancellationToken ct)
    {
        var errors = new ErrorCollector();
        var options = SpecMapping.ToInstanceOptions(spec, "instance", errors);
        if (spec.Service is null)
        {
            errors.Add(ErrorCode.Invalid, "instance.service", "the service is required");
        }
        if (options.Name is not null)
        {
            ResourceName.ValidateInstance(options.Name, "instance.name", errors);
        }
        var (claim, state) = Read(network);
        var service = spec.Service is null ? "" : CanonicalService(spec.Service);
        if (spec.Service is not null && !state.Services.ContainsKey(service))
        {
            errors.Add(ErrorCode.NotFound, "instance.service", $"no service '{service}' in network '{network}'");
        }
        var node = spec.Node ?? Node;
        if (!state.Nodes.ContainsKey(node))
        {
            errors.Add(ErrorCode.NotFound, "instance.node", $"no live node '{node}' (nodes: {string.Join(", ", state.Nodes.Keys)})");
        }
        errors.ThrowIfAny();
        var name = options.Name ?? ResourceName.NextInstance(service, state.Instances.Keys);
        var json = SpecOf(options.Command, options.Restart, spec.Health);
        var pool4 = IPNetwork.Parse(claim.InstancePool4);
        var pool6 = IPNetwork.Parse(claim.InstancePool6);
        IPAddress[] reserved = [NodeNetwork.Gateway(pool4), NodeNetwork.Gateway(pool6)];
        var (_, revision) = await Allocator(node).AddInstanceAsync(network, name, service, pool4, pool6, reserved, json, options.Standby ? "standby" : null, ct, pinned).ConfigureAwait(false);
        await WaitAsync(revision, ct).ConfigureAwait(false);
        return Instance(network, name);
    }

    /// <summary>An instance's record of what runs in it: command, restart policy, check (as the API gave it, checked; its node runs it).</summary>
    private static JsonObject SpecOf(IReadOnlyList<string>? command, string? restart, HealthSpec? health)
    {
        var json = new JsonObject();
        if (command is not null)
        {
            json["command"] = new JsonArray([.. command.Select(a => (JsonNode)JsonValue.Create(a)!)]);
        }
        if (restart is not null)
        {
            json["restart"] = restart;
        }
        if (health is not null)
        {
            json["health"] = JsonSerializer.SerializeToNode(health, HealthJson);
        }
        return json;
    }

    /// <summary>
    /// Changes an instance in place, as on one host: a new command restarts it on its node (its
    /// namespace, addresses and flows stay), a new check starts afresh, a new restart policy applies
    /// to the next exit, standby takes it out of or into every balancer. One guarded transaction,
    /// waited for until every live node applied it.
    /// </summary>
    public async Task<InstanceInfo> UpdateInstanceAsync(string network, string name, InstanceOptions options, CancellationToken ct)
    {
        var current = Instance(network, name);
        var revision = await Allocator(Node).UpdateInstanceSpecAsync(network, current.Name, SpecOf(options.Command, options.Restart, options.Health), options.Standby, ct).ConfigureAwait(false);
        await WaitAsync(revision, ct).ConfigureAwait(false);
        return Instance(network, current.Name);
    }

    /// <summary>
    /// Removes an instance: it leaves every balancer at once and its node removes it when its TCP
    /// flows are done (or at the drain deadline); a zero drain, or an instance outside the balancer,
    /// goes at once.
    /// </summary>
    public async Task RemoveInstanceAsync(string network, string instance, TimeSpan? drain, CancellationToken ct)
    {
        var info = Instance(network, instance);
        var deadline = drain ?? TimeSpan.FromSeconds(30);
        long revision;
        if (deadline > TimeSpan.Zero && info.State == InstanceState.Active)
        {
            (_, revision) = await Allocator(Node).DrainInstanceAsync(network, instance, DateTimeOffset.UtcNow + deadline, ct).ConfigureAwait(false);
        }
        else
        {
            revision = await Allocator(Node).RemoveInstanceAsync(network, instance, ct).ConfigureAwait(false);
        }
        await WaitAsync(revision, ct).ConfigureAwait(false);
    }

    /// <summary>
    /// Moves a service to another instance, on any node, make before break: one etcd transaction,
    /// then the call waits for every live node to apply it and names those that did not in time.
    /// Without <see cref="MigrateRequest.To"/> a fresh standby instance with the old one's command
    /// is started on the old one's node first.
    /// </summary>
    public async Task<MigrateResponse> MigrateAsync(string network, string service, MigrateRequest request, TimeSpan? drain, CancellationToken ct)
    {
        var svc = Service(network, service);
        var from = request.From ?? (svc.Backends.Count == 1 ? svc.Backends[0]
            : throw new RelayException(ErrorCode.Invalid, "from", $"service '{svc.Name}' has {svc.Backends.Count} instances in the balancer ({string.Join(", ", svc.Backends)}); say which one moves with --from"));
        var old = Instance(network, from);
        var to = request.To;
        if (to is null)
        {
            // On the old one's node, as pinned as the old one was, with its restart policy and health check.
            var check = Read(network).State.Instances.TryGetValue(from, out var entry) && entry.HealthSpec is { } text
                ? JsonSerializer.Deserialize<HealthSpec>(text, HealthJson)
                : null;
            var fresh = await AddInstanceAsync(network, new InstanceSpec { Service = svc.Name, Command = old.Command, Restart = old.Restart, Health = check, Standby = true, Node = old.Node }, old.Pinned, ct).ConfigureAwait(false);
            to = fresh.Name;
        }
        else if (Instance(network, to).Service != svc.Name)
        {
            throw new RelayException(ErrorCode.Conflict, "to", $"instance '{to}' serves '{Instance(network, to).Service}', not '{svc.Name}'");
        }
        // The records as this node's watch holds them guard the transaction (one round trip); a
        // view that is behind costs a read and a second try, never a wrong write.
        var keys = State.State;
        var (_, state) = Read(network);
        var records = state.Instances.Values.Where(i => i.Service == svc.Name)
            .Select(i => ClusterKeys.Instance(network, i.Name)).Where(keys.ContainsKey).Select(k => (k, keys[k])).ToArray();
        var started = Stopwatch.GetTimestamp();
        var startedAt = DateTimeOffset.UtcNow;
        var until = startedAt + (drain ?? TimeSpan.FromSeconds(30));
        var (revision, _) = keys.TryGetValue(ClusterKeys.Service(network, svc.Name), out var record)
            ? await Allocator(Node).RepointAsync(network, svc.Name, to, until, record, records, ct, from).ConfigureAwait(false)
            : await Allocator(Node).RepointAsync(network, svc.Name, to, until, ct, from).ConfigureAwait(false);
        var written = Stopwatch.GetTimestamp();
        var behind = await WaitAppliedAsync(revision, ApplyTimeout, ct).ConfigureAwait(false);
        var applied = Stopwatch.GetTimestamp();
        var last = behind.Count == 0 ? LastAppliedAt(revision) : null;
        LogMigrated(_log, network, svc.Name, from, to, revision, Stopwatch.GetElapsedTime(started, written).TotalMilliseconds, Stopwatch.GetElapsedTime(started, applied).TotalMilliseconds);
        return new MigrateResponse(svc.Name, from, to, Math.Round(Stopwatch.GetElapsedTime(started, written).TotalMicroseconds), Math.Round(Stopwatch.GetElapsedTime(started, applied).TotalMicroseconds), 0)
        {
            Revision = revision,
            NotApplied = behind.Count == 0 ? null : behind,
            ConvergedUs = last is null ? null : Math.Round(Math.Max(0, (last.Value - startedAt).TotalMicroseconds)),
            AppliedAt = last,
        };
    }

    /// <summary>Leaves every network on this node (what <c>relay down</c> means for a node): its parts are removed, the cluster's state is kept.</summary>
    public IReadOnlyList<string> Leave()
    {
        lock (_gate)
        {
            _left = true;
            var names = _parts.Keys.Order(StringComparer.Ordinal).ToArray();
            foreach (var part in _parts.Values)
            {
                part.Network.Remove();
            }
            _parts.Clear();
            return names;
        }
    }

    private static readonly JsonSerializerOptions HealthJson = new(JsonSerializerDefaults.Web) { DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull };
    private readonly SemaphoreSlim _healthWrites = new(1, 1);

    /// <summary>
    /// Writes a local instance's health verdict to the store on this node's lease, one write at a
    /// time (in the order the verdicts came). Every node's balancers follow it from there; a store
    /// that is away delays it (logged), the forwarding keeps the last verdict meanwhile.
    /// </summary>
    private async Task WriteHealthAsync(string network, string instance, bool? healthy)
    {
        await _healthWrites.WaitAsync().ConfigureAwait(false);
        try
        {
            await Allocator(Node).SetHealthAsync(network, instance, healthy, _lease.Lease, _stop.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is RelayException or OperationCanceledException or ObjectDisposedException)
        {
            LogHealthNotWritten(_log, network, instance, healthy switch { true => "healthy", false => "unhealthy", _ => "none" }, e.Message);
        }
        finally
        {
            _healthWrites.Release();
        }
    }

    [LoggerMessage(EventId = 84, Level = LogLevel.Warning, Message = "network {Network}: the health verdict of instance {Instance} ({Verdict}) was not written: {Error}")]
    private static partial void LogHealthNotWritten(ILogger log, string network, string instance, string verdict, string error);

    private ClusterAllocator Allocator(string node)
    {
        lock (_gate)
        {
            if (!_allocators.TryGetValue(node, out var allocator))
            {
                _allocators[node] = allocator = new ClusterAllocator(_etcd, node);
            }
            return allocator;
        }
    }

    private static string CanonicalService(string name)
        => ServiceName.TryParse(name, out var canonical, out var why) ? canonical.Value : throw new RelayException(ErrorCode.Invalid, "service", why);

    private async Task<long> CurrentRevisionAsync(CancellationToken ct)
    {
        var (_, revision) = await _etcd.GetPrefixAsync(ClusterKeys.NodesPrefix, ct).ConfigureAwait(false);
        return revision;
    }

    /// <summary>Waits for every live node to apply <paramref name="revision"/>; a node that did not in time is named in the error.</summary>
    private async Task WaitAsync(long revision, CancellationToken ct)
    {
        if (revision == 0)
        {
            return;
        }
        var behind = await WaitAppliedAsync(revision, ApplyTimeout, ct).ConfigureAwait(false);
        if (behind.Count > 0)
        {
            throw new RelayException(ErrorCode.Unavailable, "cluster",
                $"the change was written (revision {revision}) but node(s) {string.Join(", ", behind)} did not apply it within {ApplyTimeout.TotalSeconds:0} s; 'relay node ls' shows their lag");
        }
    }

    /// <summary>
    /// Each live node's applied revision, as this node's watch last saw it: the nodes' and applied
    /// keys of a step (all of them after a resync), so that a wait looks at a few entries, not at
    /// the whole state. Waiters wake at each step.
    /// </summary>
    private void TrackProgress(WatchStep step)
    {
        var progress = _progress;
        if (step.Resync)
        {
            progress = ImmutableDictionary<string, AppliedRecord>.Empty;
            foreach (var (key, value) in step.State)
            {
                if (key.StartsWith(ClusterKeys.NodesPrefix, StringComparison.Ordinal))
                {
                    var node = ClusterKeys.Leaf(key);
                    progress = progress.SetItem(node, AppliedOf(step, node));
                }
            }
        }
        else
        {
            foreach (var key in step.Changed)
            {
                if (key.StartsWith(ClusterKeys.NodesPrefix, StringComparison.Ordinal) || key.StartsWith(ClusterKeys.AppliedPrefix, StringComparison.Ordinal))
                {
                    var node = ClusterKeys.Leaf(key);
                    progress = step.State.ContainsKey(ClusterKeys.Node(node)) ? progress.SetItem(node, AppliedOf(step, node)) : progress.Remove(node);
                }
            }
        }
        _progress = progress;
        WakeWaiters();
    }

    /// <summary>Wakes every <see cref="WaitAppliedAsync"/> to look at the nodes' progress again.</summary>
    private void WakeWaiters()
    {
        Interlocked.Exchange(ref _stepped, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
    }

    private static AppliedRecord AppliedOf(WatchStep step, string node)
        => AppliedRecord.Parse(step.State.GetValueOrDefault(ClusterKeys.Applied(node)));

    /// <summary>
    /// The latest time at which a live node recorded having applied <paramref name="revision"/> or a
    /// later one, by the nodes' clocks (on one machine, as in a lab: one clock); null when a node
    /// has not, or did not say when.
    /// </summary>
    private DateTimeOffset? LastAppliedAt(long revision)
    {
        var progress = Live(_progress);
        return progress.Count > 0 && progress.Values.All(r => r.Revision >= revision && r.At is not null) ? progress.Values.Max(r => r.At) : null;
    }

    /// <summary>The nodes' progress without the suspected ones (they apply nothing until they are seen again).</summary>
    private ImmutableDictionary<string, AppliedRecord> Live(ImmutableDictionary<string, AppliedRecord> progress)
    {
        var suspected = _membership.Suspected;
        return suspected.Count == 0 ? progress : progress.RemoveRange(suspected);
    }

    /// <summary>
    /// Waits until every live node has recorded a revision at least <paramref name="revision"/>, as
    /// this node's watch sees their records (no polling: each step wakes the wait); returns the
    /// nodes that had not when <paramref name="timeout"/> passed (empty: all did).
    /// </summary>
    public async Task<IReadOnlyList<string>> WaitAppliedAsync(long revision, TimeSpan timeout, CancellationToken ct = default)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        while (true)
        {
            var stepped = Volatile.Read(ref _stepped).Task;
            var progress = Live(_progress);
            if (progress.Count > 0 && progress.Values.All(r => r.Revision >= revision))
            {
                return [];
            }
            var left = deadline - Stopwatch.GetTimestamp();
            if (left <= 0)
            {
                return progress.Count == 0 ? [Node] : progress.Where(p => p.Value.Revision < revision).Select(p => p.Key).Order(StringComparer.Ordinal).ToArray();
            }
            await Task.WhenAny(stepped, Task.Delay(TimeSpan.FromSeconds((double)left / Stopwatch.Frequency), ct)).ConfigureAwait(false);
            ct.ThrowIfCancellationRequested();
        }
    }

    /// <summary>Every 100 ms: this node's draining instances whose TCP flows are done, or whose deadline passed, leave the state.</summary>
    private async Task FinishDrainsAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(TimeSpan.FromMilliseconds(100), ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            Part[] parts;
            lock (_gate)
            {
                parts = [.. _parts.Values];
            }
            if (!_lostSince.IsEmpty)
            {
                // A lost node's grace period ends without a watch step to say so. Once none of its
                // instances is left to move, it is not looked at again.
                Reschedule(parts);
                foreach (var node in _lostSince.Keys)
                {
                    if (!parts.Any(p => p.Reconciler.State is { } s && s.Instances.Values.Any(i => i.Node == node && ClusterPlacement.Restartable(i))))
                    {
                        _lostSince.TryRemove(node, out _);
                    }
                }
            }
            var draining = new HashSet<(string, string)>();
            foreach (var part in parts)
            {
                // From the state the reconciler keeps parsed: a look costs this node's instances, not the whole state.
                if (part.Reconciler.State is not { } state)
                {
                    continue;
                }
                var mine = state.Instances.Values.Where(i => i.Node == Node && i.Mode == InstanceMode.Draining).ToArray();
                draining.UnionWith(mine.Select(i => (part.Claim.Name, i.Name)));
                if (mine.Length == 0)
                {
                    continue;
                }
                var open = part.Network.OpenTcpFlows();
                foreach (var instance in mine)
                {
                    if (_leaving.Contains((part.Claim.Name, instance.Name)))
                    {
                        continue;
                    }
                    var flows = open.GetValueOrDefault(instance.Address4) + open.GetValueOrDefault(instance.Address6);
                    var expired = instance.DrainUntil is { } until && DateTimeOffset.UtcNow >= until;
                    if (flows > 0 && !expired)
                    {
                        continue;
                    }
                    _leaving.Add((part.Claim.Name, instance.Name));
                    try
                    {
                        await Allocator(Node).RemoveInstanceAsync(part.Claim.Name, instance.Name, ct).ConfigureAwait(false);
                        LogDrained(_log, part.Claim.Name, instance.Name, Node, flows);
                    }
                    catch (Exception e) when (e is RelayException or OperationCanceledException)
                    {
                        _leaving.Remove((part.Claim.Name, instance.Name));
                    }
                }
            }
            // Forget removals the state has caught up with: a later instance may take the same name.
            _leaving.IntersectWith(draining);
        }
    }

    /// <summary>Stops watching; every part is left running in the kernel (the next start adopts it).</summary>
    public async ValueTask DisposeAsync()
    {
        _membership.SuspicionChanged -= Resuspect;
        await _stop.CancelAsync().ConfigureAwait(false);
        await Task.WhenAll(_watching, _draining).ConfigureAwait(false);
        await _recorder.DisposeAsync().ConfigureAwait(false);
        lock (_gate)
        {
            foreach (var part in _parts.Values)
            {
                part.Network.Dispose();
            }
            _parts.Clear();
        }
        _stop.Dispose();
    }

    [LoggerMessage(EventId = 87, Level = LogLevel.Error, Message = "network {Network} on node {Node}: could not open this node's part: {Error}")]
    private static partial void LogOpenFailed(ILogger log, string network, string node, string error);

    [LoggerMessage(EventId = 88, Level = LogLevel.Information, Message = "network {Network} on node {Node}: removed (the network left the cluster)")]
    private static partial void LogNetworkRemoved(ILogger log, string network, string node);

    [LoggerMessage(EventId = 92, Level = LogLevel.Warning, Message = "network {Network} on node {Node}: the part an earlier daemon left could not be taken over ({Error}); it is removed and created again")]
    private static partial void LogAdoptFailed(ILogger log, string network, string node, string error);

    [LoggerMessage(EventId = 89, Level = LogLevel.Warning, Message = "network {Network} on node {Node}: removed {Count} objects an earlier daemon of this node left")]
    private static partial void LogLeftovers(ILogger log, string network, string node, int count);

    [LoggerMessage(EventId = 90, Level = LogLevel.Information, Message = "network {Network}: {Service} moved from {From} to {To} at revision {Revision}: written in {WrittenMs:F2} ms, applied by every node in {AppliedMs:F2} ms")]
    private static partial void LogMigrated(ILogger log, string network, string service, string from, string to, long revision, double writtenMs, double appliedMs);

    [LoggerMessage(EventId = 104, Level = LogLevel.Warning, Message = "node {Node} is lost: its instances left every balancer; they start again elsewhere in {Wait} unless it comes back")]
    private static partial void LogLostWaiting(ILogger log, string node, string wait);

    [LoggerMessage(EventId = 93, Level = LogLevel.Information, Message = "network {Network}: instance {Instance} of lost node {From} starts again on node {Node} (revision {Revision})")]
    private static partial void LogRescheduled(ILogger log, string network, string instance, string from, string node, long revision);

    [LoggerMessage(EventId = 94, Level = LogLevel.Warning, Message = "network {Network}: instance {Instance} of lost node {From} could not start again here: {Error}")]
    private static partial void LogRescheduleFailed(ILogger log, string network, string instance, string from, string error);

    [LoggerMessage(EventId = 91, Level = LogLevel.Information, Message = "network {Network}: instance {Instance} on node {Node} drained ({Open} TCP flows left at removal)")]
    private static partial void LogDrained(ILogger log, string network, string instance, string node, int open);
}
