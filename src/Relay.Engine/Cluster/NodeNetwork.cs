using System.Collections.Immutable;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Relay.Core.Addressing;
using Relay.Core.Dns;
using Relay.Core.Errors;
using Relay.Core.Overlay;
using Relay.Core.Reconcile;
using Relay.Engine.Dataplane;
using Relay.Engine.Dns;
using Relay.Engine.Health;
using Relay.Linux.Namespaces;
using Relay.Linux.Processes;
using Relay.Linux.Topology;

namespace Relay.Engine.Cluster;

/// <summary>What one <see cref="NodeNetwork.Reconcile(NetworkState)"/> did.</summary>
/// <param name="Revision">The state's revision now applied.</param>
/// <param name="Wired">Local instances created.</param>
/// <param name="Removed">Local instances removed.</param>
/// <param name="StaleFlows">Stateless conntrack entries deleted.</param>
/// <param name="PeersChanged">Whether the overlay's entries changed.</param>
/// <param name="Elapsed">Time from the call to the kernel holding the state.</param>
public sealed record ReconcileResult(long Revision, int Wired, int Removed, int StaleFlows, bool PeersChanged, TimeSpan Elapsed);

/// <summary>
/// One network's part on one node of a cluster: the node's orchestrator namespace, its nft table,
/// its end of the VXLAN overlay, its DNS server and the namespaces of the instances the node runs.
/// <para>
/// It has one operation, <see cref="Reconcile(NetworkState)"/>: given the whole desired state it derives this
/// node's view (<see cref="Projection.Project"/>) and brings the kernel there, in a fixed order that
/// makes every step safe for the flows in between: new local instances are wired before any table
/// points at them; the table (every service's map) changes in one nft transaction; the conntrack
/// entries that the step left stale are deleted after it; peers are synced; instances that left are
/// removed last, when nothing points at them any more; the DNS table is published. Whatever led to a
/// state (an add, a migration, a node's loss), this is the only path to the kernel.
/// </para>
/// </summary>
public sealed partial class NodeNetwork : IDisposable
{
    private readonly object _gate = new();
    private readonly NetworkOptions _options;
    private readonly ILogger _log;
    private readonly NetnsThread _orchestrator;
    private readonly DataplaneRuntime _dataplane;
    private readonly Gateways _gateways;
    private readonly int _mtu;
    private readonly DnsServer? _dns;
    private readonly IReadOnlyList<string> _zones;
    private readonly InstanceSupervisor _supervisor;

    /// <summary>The local instances whose namespaces exist now (ahead of <see cref="_applied"/> when a step failed half-way).</summary>
    private readonly Dictionary<string, InstanceEntry> _wired = new(StringComparer.Ordinal);

    /// <summary>Instances whose namespaces are being removed in the background, and those removals (both under their own lock, never taken with <see cref="_gate"/> held by the removal).</summary>
    private readonly Dictionary<string, InstanceEntry> _leaving = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Task> _removals = new(StringComparer.Ordinal);
    private volatile NameTable _names = NameTable.Empty;
    private NodeView? _applied;
    private bool _disposed;

    private NodeNetwork(NetworkOptions options, ILogger log, NetnsThread orchestrator, DataplaneRuntime dataplane, Gateways gateways, int mtu)
    {
        _options = options;
        _log = log;
        _orchestrator = orchestrator;
        _dataplane = dataplane;
        _gateways = gateways;
        _mtu = mtu;
        _supervisor = new InstanceSupervisor(_gate, this, log);
        _zones = options.Dns.Zones.Select(z => z.TrimEnd('.').ToLowerInvariant()).ToArray();
        _dns = options.Dns.Enabled
            ? DnsServer.Start(orchestrator, [gateways.V4, gateways.V6], 53, () => _names, new DnsOptions { Zones = _zones, Ttl = options.Dns.Ttl }, null, [], log)
            : null;
    }

    /// <summary>The network.</summary>
    public string Network => _options.Name;

    /// <summary>This node.</summary>
    public string Node => _options.Node!;

    /// <summary>The orchestrator namespace.</summary>
    public string OrchestratorNamespace => NetworkNames.Orchestrator(_options.Name, _options.Node);

    /// <summary>The revision of the state last applied (0 before the first).</summary>
    public long AppliedRevision => Volatile.Read(ref _appliedRevision);

    private long _appliedRevision;

    /// <summary>What the last reconcile that changed something did (null before the first).</summary>
    public ReconcileResult? LastResult { get; private set; }

    /// <summary>The gateway addresses (the DNS server listens there).</summary>
    public Gateways Gateways => _gateways;

    /// <summary>The view last applied.</summary>
    public NodeView? Applied
    {
        get
        {
            lock (_gate)
            {
                return _applied;
            }
        }
    }

    /// <summary>The namespace of local instance <paramref name="instance"/>.</summary>
    public string InstanceNamespace(string instance) => NetworkNames.Instance(_options.Name, instance, _options.Node);

    /// <summary>
    /// TCP connections still open (not TIME_WAIT or CLOSE) to a local instance at these addresses, read
    /// from this node's conntrack table. Every flow to a local instance passes this node's
    /// orchestrator, whichever node its client is on (a remote client's arrives over VXLAN, already
    /// translated), so this count is the drain's view of every node at once.
    /// </summary>
    /// <remarks>One conntrack dump for every instance asked about: counts by the reply's source address.</remarks>
    public IReadOnlyDictionary<IPAddress, int> OpenTcpFlows()
        => _dataplane.ListFlows().Where(e => e.Original.Protocol == Relay.Core.Conntrack.IpProtocols.Tcp
                && e.TcpState is not (Relay.Core.Conntrack.TcpConntrackState.TimeWait or Relay.Core.Conntrack.TcpConntrackState.Close))
            .GroupBy(e => e.Reply.Source).ToDictionary(g => g.Key, g => g.Count());

    /// <summary>The pid of the command local instance <paramref name="instance"/> runs, while it runs (null otherwise).</summary>
    public int? ProcessId(string instance)
    {
        lock (_gate)
        {
            return _supervisor.Processes.TryGetValue(instance, out var p) && !p.HasExited ? p.Pid : null;
        }
    }

    /// <summary>The data plane (for inspection by tests and status).</summary>
    public DataplaneRuntime Dataplane => _dataplane;

    /// <summary>
    /// Creates the node's part of the network: orchestrator, table, VXLAN device with its socket in
    /// <paramref name="hostNamespace"/> (null: this process's), DNS server; nothing is left behind on
    /// failure. <paramref name="underlay"/> is this node's underlay address; its family sets the MTU.
    /// </summary>
    public static NodeNetwork Open(NetworkOptions options, IPAddress underlay, string? hostNamespace = null, ILogger? logger = null)
    {
        var log = logger ?? NullLogger.Instance;
        var gateways = Validate(options);
        var mtu = VxlanPlan.Mtu(underlay.AddressFamily);
        var ns = NetworkNames.Orchestrator(options.Name, options.Node);
        var thread = TopologyBuilder.CreateOrchestrator(ns);
        DataplaneRuntime? dataplane = null;
        try
        {
            // The record first: a crash from here on leaves nothing that 'relay down' cannot find.
            new NetworkRecord { Network = options.Name, OwnerPid = Environment.ProcessId, Orchestrator = ns, Node = options.Node }.Save(options.RecordDirectory);
            dataplane = DataplaneRuntime.Open(thread, options.Name, log);
            VxlanOverlay.Create(hostNamespace, ns, options.Name, options.Node!, underlay, mtu);
            var network = new NodeNetwork(options, log, thread, dataplane, gateways, mtu);
            LogOpened(log, options.Name, options.Node!, ns, mtu);
            return network;
        }
        catch
        {
            dataplane?.Dispose();
            thread.Dispose();
            NamespacedProcess.KillNamespace(ns);
            Netns.Delete(ns);
            File.Delete(NetworkRecord.PathFor(options.RecordDirectory, options.Name));
            throw;
        }
    }

    private static Gateways Validate(NetworkOptions options)
    {
        var errors = new ErrorCollector();
        if (options.Node is null)
        {
            errors.Add(ErrorCode.Invalid, "node", "a cluster network needs the node's name");
        }
        var pool4 = Pool(options.InstancePool4, "network.instancePool4", AddressFamily.InterNetwork, errors);
        var pool6 = Pool(options.InstancePool6, "network.instancePool6", AddressFamily.InterNetworkV6, errors);
        errors.ThrowIfAny();
        return new Gateways(Gateway(pool4!.Value), Gateway(pool6!.Value));
    }

    /// <summary>
    /// Brings this node's kernel to <paramref name="state"/>. A state whose revision is not newer
    /// than the one applied changes nothing. Throws (and leaves the table as it was) when the kernel
    /// refuses the transaction; the next call retries from what was last applied.
    /// </summary>
    public ReconcileResult Reconcile(NetworkState state) => Reconcile(state, null, null);

    /// <summary>
    /// As <see cref="Reconcile(NetworkState)"/>, for a state that follows <paramref name="from"/> by
    /// <paramref name="change"/>: when the kernel holds <paramref name="from"/>, only what the change
    /// names is projected and written (a re-point among 10,000 services costs what it changed);
    /// otherwise (the first step, or after one that failed) the whole state is. With
    /// <paramref name="again"/>, a state at the revision already applied is applied too: this node's
    /// view changed without the store changing (a peer suspected, or seen again).
    /// </summary>
    public ReconcileResult Reconcile(NetworkState state, NetworkState? from, StateChange? change, bool again = false)
    {
        var started = Stopwatch.GetTimestamp();
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (state.Network != _options.Name)
            {
                throw new ArgumentException($"state of network '{state.Network}' given to network '{_options.Name}'", nameof(state));
            }
            if (_applied is { } last && state.Revision != 0 && (state.Revision < last.Revision || (state.Revision == last.Revision && !again)))
            {
                return new ReconcileResult(last.Revision, 0, 0, 0, false, Stopwatch.GetElapsedTime(started));
            }
            return _applied is { } held && change is not null && ReferenceEquals(held.State, from)
                ? Apply(Projection.Step(held, state, change), started)
                : Apply(Projection.Project(state, Node), started);
        }
    }

    private ReconcileResult Apply(NodeView view, long started) => Apply(view, null, started);

    private ReconcileResult Apply(NodeStep step, long started) => Apply(step.View, step, started);

    /// <summary>Brings the kernel to <paramref name="view"/>: by <paramref name="step"/>'s changes when given, else by comparing the whole view with what is held.</summary>
    private ReconcileResult Apply(NodeView view, NodeStep? step, long started)
    {
        lock (_gate)
        {
            var after = view.LocalInstances;

            // 1. Wire what is new (or changed address: a new instance under an old name). What is
            // wired is remembered at once, so a step that fails half-way is resumed, not repeated.
            var wired = 0;
            foreach (var instance in view.Local)
            {
                if (_wired.TryGetValue(instance.Name, out var was) && Equals(was.Address4, instance.Address4) && Equals(was.Address6, instance.Address6))
                {
                    // Changed in place (relay apply): its namespace, addresses and flows stay.
                    wired += Respec(was, instance) ? 1 : 0;
                    continue;
                }
                if (was is not null)
                {
                    Unwire(was);
                }
                WaitRemoval(instance.Name); // the same name leaving in the background goes first
                SaveRecord(view);
                Wire(instance);
                wired++;
            }
            if (wired > 0)
            {
                SaveRecord(view); // with the commands' pids
            }

            // 2. The table, in one transaction.
            if (step is null)
            {
                _dataplane.Sync(view.Dataplane);
            }
            else if (step.TouchesTable)
            {
                _dataplane.Apply(step.Services, step.RemovedServices, step.Links, step.RemovedLinks, step.Flows, step.RemovedFlows);
            }

            // 3. Conntrack: stateless flows of instances that left a balancer follow at once.
            var stale = _dataplane.DeleteStale(step?.Stale ?? Projection.Stale(_applied, view));

            // 4. The overlay.
            var peersChanged = step?.PeersChanged ?? !Projection.SamePeers(_applied?.Peers ?? [], view.Peers);
            if (peersChanged)
            {
                VxlanOverlay.Sync(OrchestratorNamespace, _applied?.Peers ?? [], view.Peers);
            }

            // 5. Instances that left this node, now that no map points at them: their namespaces
            // go in the background (tens of ms each), so that the step is applied without waiting.
            // The record keeps them until they are gone.
            var removed = 0;
            foreach (var (name, was) in _wired.ToArray())
            {
                if (!after.ContainsKey(name))
                {
                    RemoveLater(was);
                    removed++;
                }
            }

            // 6. Names.
            if (_applied is null || (step?.NamesChanged ?? !Projection.SameNames(_applied.Names, view.Names)))
            {
                _names = NameTable.Build(view.Names);
            }
            _applied = view;
            Volatile.Write(ref _appliedRevision, view.Revision);
            var elapsed = Stopwatch.GetElapsedTime(started);
            LogReconciled(_log, _options.Name, Node, view.Revision, wired, removed, stale, peersChanged, elapsed.TotalMilliseconds);
            return LastResult = new ReconcileResult(view.Revision, wired, removed, stale, peersChanged, elapsed);
        }
    }

    private void Wire(InstanceEntry instance)
    {
        var wiring = WiringOf(instance);
        TopologyBuilder.WireInstance(OrchestratorNamespace, _gateways, wiring, _mtu);
        _wired[instance.Name] = instance;
        try
        {
            if (_dns is not null)
            {
                NetnsEtc.WriteResolvConf(wiring.Namespace, [_gateways.V4, _gateways.V6], _zones,
                    $"written by relay for instance {instance.Name} of network {_options.Name} on node {Node}; removed with the instance");
            }
            if (instance.Command is { IsDefaultOrEmpty: false } command)
            {
                _supervisor.Supervise(instance.Name, StartCommand(instance, command));
            }
            StartHealth(instance);
        }
        catch
        {
            Unwire(instance);
            throw;
        }
    }

    /// <summary>
    /// An instance wired here whose record changed in place: a new command restarts it (the old one
    /// stopped first, TERM then KILL after the stop grace), a new check starts afresh (its verdict
    /// is none until it has one); a new restart policy or mode needs nothing here (the supervisor
    /// and the projection read the record). True when a command was restarted (the pid changed).
    /// </summary>
    private bool Respec(InstanceEntry was, InstanceEntry now)
    {
        var commandChanged = !(was.Command ?? []).SequenceEqual(now.Command ?? []);
        var checkChanged = was.HealthSpec != now.HealthSpec;
        if (!commandChanged && !checkChanged)
        {
            _wired[now.Name] = now;
            return false;
        }
        if (commandChanged)
        {
            if (_supervisor.Release(now.Name) is { } old)
            {
                old.StopAsync(_options.StopGrace).GetAwaiter().GetResult();
                old.Dispose();
            }
            if (now.Command is { IsDefaultOrEmpty: false } command)
            {
                _supervisor.Supervise(now.Name, StartCommand(now, command));
            }
        }
        if (checkChanged)
        {
            Forget(now.Name);
            StartHealth(now);
        }
        _wired[now.Name] = now;
        LogRespecced(_log, _options.Name, Node, now.Name, commandChanged ? "command restarted" : "command kept", checkChanged ? "check started afresh" : "check kept");
        return commandChanged;
    }

    [LoggerMessage(EventId = 105, Level = LogLevel.Information, Message = "network {Network} on node {Node}: instance {Instance} changed in place: {Command}, {Check}")]
    private static partial void LogRespecced(ILogger log, string network, string node, string instance, string command, string check);

    private void Unwire(InstanceEntry instance)
    {
        _supervisor.Release(instance.Name)?.Dispose();
        Forget(instance.Name);
        DeleteNamespace(instance);
        _wired.Remove(instance.Name);
    }

    /// <summary>Its processes, its namespace and veth, its /etc/netns files.</summary>
    private void DeleteNamespace(InstanceEntry instance)
    {
        var wiring = WiringOf(instance);
        NamespacedProcess.KillNamespace(wiring.Namespace);
        TopologyBuilder.UnwireInstance(OrchestratorNamespace, wiring);
        NetnsEtc.Remove(wiring.Namespace);
    }

    /// <summary>Takes <paramref name="instance"/> out of what is wired and removes its namespace on a pool thread.</summary>
    private void RemoveLater(InstanceEntry instance)
    {
        _wired.Remove(instance.Name);
        var process = _supervisor.Release(instance.Name);
        Forget(instance.Name);
        // Waiters wait for 'done', set before the record is rewritten under the gate they may hold.
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_removals)
        {
            _leaving[instance.Name] = instance;
            _removals[instance.Name] = done.Task;
            _ = Task.Run(() =>
            {
                try
                {
                    process?.Dispose();
                    DeleteNamespace(instance);
                }
                catch (Exception e) when (e is RelayException or IOException or InvalidOperationException)
                {
                    LogRemoveFailed(_log, _options.Name, Node, $"instance {instance.Name}: {e.Message}");
                }
                finally
                {
                    lock (_removals)
                    {
                        _removals.Remove(instance.Name);
                        _leaving.Remove(instance.Name);
                    }
                    done.TrySetResult();
                }
                lock (_gate)
                {
                    if (!_disposed && _applied is { } applied)
                    {
                        SaveRecord(applied);
                    }
                }
            });
        }
    }

    /// <summary>Waits until the background removal of <paramref name="instance"/>, if any, is done.</summary>
    private void WaitRemoval(string instance)
    {
        Task? pending;
        lock (_removals)
        {
            pending = _removals.GetValueOrDefault(instance);
        }
        pending?.Wait();
    }

    /// <summary>Completes when every instance that left this node so far has had its namespace removed.</summary>
    public Task RemovalsDone()
    {
        lock (_removals)
        {
            return Task.WhenAll(_removals.Values.ToArray());
        }
    }

    private string LogFile(InstanceEntry instance) => Path.Combine(_options.LogDirectory, _options.Name, instance.Name + ".log");

    private InstanceWiring WiringOf(InstanceEntry instance)
        => new(InstanceNamespace(instance.Name), Projection.HostInterface(instance), instance.Address4, instance.Address6);

    private void SaveRecord(NodeView view)
        => new NetworkRecord
        {
            Network = _options.Name,
            OwnerPid = Environment.ProcessId,
            Orchestrator = OrchestratorNamespace,
            Node = Node,
            Instances = _wired.Values.Concat(view.Local).Concat(Leaving()).Select(i => InstanceNamespace(i.Name)).Distinct().ToArray(),
            Processes = _supervisor.Processes.Select(p => new RecordedProcess(p.Key, p.Value.Pid, p.Value.StartTime)).ToArray(),
        }.Save(_options.RecordDirectory);

    private InstanceEntry[] Leaving()
    {
        lock (_removals)
        {
            return [.. _leaving.Values];
        }
    }

    /// <summary>An instance pool of <paramref name="family"/>, or an error on <paramref name="field"/>.</summary>
    public static IPNetwork? Pool(string text, string field, AddressFamily family, ErrorCollector errors)
    {
        if (!IPNetwork.TryParse(text, out var prefix) || prefix.BaseAddress.AddressFamily != family)
        {
            errors.Add(ErrorCode.Invalid, field, $"'{text}' is not an {(family == AddressFamily.InterNetwork ? "IPv4" : "IPv6")} prefix");
            return null;
        }
        return prefix;
    }

    /// <summary>A pool's gateway: its first address after the base, the same on every node.</summary>
    public static IPAddress Gateway(IPNetwork prefix) => IpMath.FromInteger(IpMath.ToInteger(prefix.BaseAddress) + 1, prefix.BaseAddress.AddressFamily);

    /// <summary>
    /// Removes the node's part of the network: instances, DNS server, overlay, orchestrator (its
    /// table goes with it) and the record. What other nodes hold is theirs.
    /// </summary>
    public void Remove()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }
            foreach (var instance in _wired.Values.ToArray())
            {
                Try(() => Unwire(instance));
            }
            Try(() => RemovalsDone().Wait(TimeSpan.FromSeconds(30)));
            Dispose();
            Try(() => VxlanOverlay.Remove(OrchestratorNamespace));
            Try(() => NamespacedProcess.KillNamespace(OrchestratorNamespace));
            Try(() => Netns.Delete(OrchestratorNamespace));
            Try(() => File.Delete(NetworkRecord.PathFor(_options.RecordDirectory, _options.Name)));
        }
    }

    private void Try(Action step)
    {
        try
        {
            step();
        }
        catch (Exception e) when (e is RelayException or IOException)
        {
            LogRemoveFailed(_log, _options.Name, Node, e.Message);
        }
    }

    /// <summary>Stops the DNS server and leaves the kernel as it is (a daemon stopping: forwarding goes on).</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
            // The verdicts stay in the store on this node's lease: the next daemon's checks replace them.
            foreach (var p in _supervisor.Stop())
            {
                p.Dispose();
            }
            _dns?.Dispose();
            _dataplane.Dispose();
            _orchestrator.Dispose();
        }
    }

    [LoggerMessage(EventId = 80, Level = LogLevel.Information, Message = "network {Network} on node {Node}: orchestrator {Namespace} ready, overlay MTU {Mtu}")]
    private static partial void LogOpened(ILogger log, string network, string node, string @namespace, int mtu);

    [LoggerMessage(EventId = 81, Level = LogLevel.Debug, Message = "network {Network} on node {Node}: revision {Revision} applied (+{Wired}/-{Removed} instances, {Stale} stale flows, peers changed: {Peers}) in {Ms:F2} ms")]
    private static partial void LogReconciled(ILogger log, string network, string node, long revision, int wired, int removed, int stale, bool peers, double ms);

    [LoggerMessage(EventId = 82, Level = LogLevel.Warning, Message = "network {Network} on node {Node}: a removal step failed: {Error}")]
    private static partial void LogRemoveFailed(ILogger log, string network, string node, string error);
}
