using System.Collections.Immutable;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Relay.Core.Addressing;
using Relay.Core.Conntrack;
using Relay.Core.Dataplane;
using Relay.Core.Errors;
using Relay.Core.LoadBalancing;
using Relay.Core.Model;
using Relay.Core.Naming;
using Relay.Core.Dns;
using Relay.Engine.Dataplane;
using Relay.Engine.Dns;
using Relay.Linux.Namespaces;
using Relay.Linux.Processes;
using Relay.Linux.Topology;

namespace Relay.Engine;

/// <summary>
/// One Relay network on this host: an orchestrator namespace that routes and translates, one
/// namespace per service instance joined to it by a veth pair, and Relay's nft table.
/// <para>
/// Every operation validates everything first and reports all errors at once; then it changes the
/// kernel (each data-plane change one nft transaction) and only when that succeeded its memory. A
/// failed operation leaves both as they were. Operations are serialized.
/// </para>
/// </summary>
public sealed partial class RelayNetwork : IDisposable, IFlowAddressResolver
{
    private readonly object _gate = new();
    private readonly ILogger _log;
    private readonly NetworkOptions _options;
    private readonly NetnsThread _orchestrator;
    private readonly DataplaneRuntime _dataplane;
    private readonly Gateways _gateways;
    private readonly AddressPool _instances4;
    private readonly AddressPool _instances6;
    private readonly AddressPool _virtual4;
    private readonly AddressPool _virtual6;
    private readonly AddressPool _flows4;
    private readonly AddressPool _flows6;
    private readonly Dictionary<(string Client, ServiceName Service), FlowRecord> _flows = [];
    private readonly Dictionary<IPAddress, string> _instanceByAddress = [];
    private readonly DnsOptions _dnsOptions;
    private volatile NameTable _names = NameTable.Empty;
    private DnsServer? _dns;
    private readonly Dictionary<ServiceName, ServiceRecord> _services = [];
    private readonly Dictionary<string, InstanceRecord> _instanceRecords = new(StringComparer.Ordinal);
    private readonly Dictionary<string, NamespacedProcess> _processes = new(StringComparer.Ordinal);
    private int _nextIndex = 1;
    private bool _disposed;

    private RelayNetwork(NetworkOptions options, ILogger log, NetnsThread orchestrator, DataplaneRuntime dataplane, AddressPool[] pools)
    {
        _options = options;
        _log = log;
        _orchestrator = orchestrator;
        _dataplane = dataplane;
        (_instances4, _instances6, _virtual4, _virtual6, _flows4, _flows6) = (pools[0], pools[1], pools[2], pools[3], pools[4], pools[5]);
        _dnsOptions = DnsOptionsOf(options.Dns);
        _gateways = new Gateways(Gateway(_instances4.Prefix), Gateway(_instances6.Prefix));
        Name = options.Name;
    }

    /// <summary>The network's name.</summary>
    public string Name { get; }

    /// <summary>The orchestrator namespace (<c>ip netns exec</c> it to inspect the data plane).</summary>
    public string OrchestratorNamespace => NetworkNames.Orchestrator(Name);

    /// <summary>The gateway addresses instances route through (and, later, ask names of).</summary>
    public Gateways Gateways => _gateways;

    /// <summary>The orchestrator namespace's thread: for sockets and probes that must live there.</summary>
    public NetnsThread OrchestratorThread => _orchestrator;

    /// <summary>
    /// Creates a network: validates the options, creates the orchestrator namespace and installs
    /// Relay's table in one transaction. On any failure nothing is left behind.
    /// </summary>
    public static RelayNetwork Create(NetworkOptions options, ILogger? logger = null)
    {
        var log = logger ?? NullLogger.Instance;
        var errors = new ErrorCollector();
        var name = ResourceName.ValidateNetwork(options.Name, "network.name", errors);
        var pools = new AddressPool?[]
        {
            ParsePool(options.InstancePool4, "instance IPv4", "network.instancePool4", AddressFamily.InterNetwork, errors),
            ParsePool(options.InstancePool6, "instance IPv6", "network.instancePool6", AddressFamily.InterNetworkV6, errors),
            ParsePool(options.VirtualPool4, "virtual IPv4", "network.virtualPool4", AddressFamily.InterNetwork, errors),
            ParsePool(options.VirtualPool6, "virtual IPv6", "network.virtualPool6", AddressFamily.InterNetworkV6, errors),
            ParsePool(options.FlowPool4, "flow IPv4", "network.flowPool4", AddressFamily.InterNetwork, errors),
            ParsePool(options.FlowPool6, "flow IPv6", "network.flowPool6", AddressFamily.InterNetworkV6, errors),
        };
        for (var i = 0; i < pools.Length; i++)
        {
            for (var j = i + 1; j < pools.Length; j++)
            {
                CheckOverlap(pools[i], pools[j], errors);
            }
        }
        var upstreams = ValidateDns(options.Dns, errors);
        if (options.DrainTimeout < TimeSpan.Zero)
        {
            errors.Add(ErrorCode.Invalid, "network.drainTimeout", "the drain timeout cannot be negative");
        }
        if (name is not null && Netns.Exists(NetworkNames.Orchestrator(name)))
        {
            errors.Add(ErrorCode.Duplicate, "network.name", $"network '{name}' already exists (namespace {NetworkNames.Orchestrator(name)}); remove it with 'relay down --network {name}' or pick another name");
        }
        errors.ThrowIfAny();
        options = options with { Name = name! };

        var ns = NetworkNames.Orchestrator(options.Name);
        var thread = TopologyBuilder.CreateOrchestrator(ns);
        DataplaneRuntime? dataplane = null;
        try
        {
            dataplane = DataplaneRuntime.Open(thread, options.Name, log);
            var network = new RelayNetwork(options, log, thread, dataplane, pools!);
            if (options.Dns.Enabled)
            {
                network._dns = DnsServer.Start(thread, [network._gateways.V4, network._gateways.V6], 53,
                    () => network._names, network._dnsOptions, network, upstreams, log);
            }
            network.SaveRecord();
            LogCreated(log, options.Name, ns);
            return network;
        }
        catch
        {
            dataplane?.Dispose();
            thread.Dispose();
            Netns.Delete(ns);
            throw;
        }
    }

    // ---------------------------------------------------------------- services

    /// <summary>Registers a service and gives it stable virtual addresses.</summary>
    public ServiceInfo AddService(ServiceOptions options) => AddServices([options])[0];

    /// <summary>
    /// Registers several services at once: every one is validated first (all errors reported
    /// together, with their index), then all are installed in ONE transaction.
    /// </summary>
    public IReadOnlyList<ServiceInfo> AddServices(IReadOnlyList<ServiceOptions> services)
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            var errors = new ErrorCollector();
            var planned = new List<(ServiceRecord Record, bool AutoVip4, bool AutoVip6)>();
            var names = new HashSet<ServiceName>();
            var valid = new List<(ServiceName Name, LoadBalancingPolicy Policy, bool Flow, ServiceOptions Options, IPAddress? Vip4, IPAddress? Vip6)>();
            var explicitVips = new HashSet<IPAddress>();
            for (var n = 0; n < services.Count; n++)
            {
                var options = services[n];
                var at = services.Count == 1 ? "service" : $"services[{n}]";
                var before = errors.Errors.Count;
                if (!ServiceName.TryParse(options.Name, out var name, out var why))
                {
                    errors.Add(ErrorCode.Invalid, at + ".name", why);
                }
                else if (_services.ContainsKey(name) || !names.Add(name))
                {
                    errors.Add(ErrorCode.Duplicate, at + ".name", $"service '{name}' already exists");
                }
                if (!PolicyNames.TryParse(options.Policy, out var policy))
                {
                    errors.Add(ErrorCode.Invalid, at + ".policy", $"unknown policy '{options.Policy}'; choose one of {string.Join(", ", PolicyNames.All)}");
                }
                var seen = new HashSet<(TransportProtocol, int)>();
                for (var i = 0; i < options.Ports.Count; i++)
                {
                    var p = options.Ports[i];
                    p.Validate($"{at}.ports[{i}]", errors);
                    if (!seen.Add((p.Protocol, p.Port)))
                    {
                        errors.Add(ErrorCode.Duplicate, $"{at}.ports[{i}]", $"port {p.Port}/{p.ProtocolName} is mapped twice");
                    }
                }
                var flow = options.Addressing?.ToLowerInvariant() switch
                {
                    AddressingModes.Service or null => false,
                    AddressingModes.Flow => true,
                    _ => Invalid(errors, at + ".addressing", $"unknown addressing '{options.Addressing}'; choose {AddressingModes.Service} or {AddressingModes.Flow}"),
                };
                if (flow && options.Ports.Count > 0)
                {
                    errors.Add(ErrorCode.Invalid, at + ".addressing", "flow addressing is for layer-3 services; a service with port mappings uses its virtual addresses");
                }
                var vip4 = options.Vip4 is null ? null : ExplicitAddress(_virtual4, options.Vip4, at + ".vip4", errors, explicitVips);
                var vip6 = options.Vip6 is null ? null : ExplicitAddress(_virtual6, options.Vip6, at + ".vip6", errors, explicitVips);
                if (errors.Errors.Count == before)
                {
                    valid.Add((name, policy, flow, options, vip4, vip6));
                }
            }
            // Automatic addresses in one walk of each pool, skipping those asked for explicitly.
            var auto4 = _virtual4.PeekNext(valid.Count(v => v.Vip4 is null), explicitVips);
            var auto6 = _virtual6.PeekNext(valid.Count(v => v.Vip6 is null), explicitVips);
            if (auto4.Count < valid.Count(v => v.Vip4 is null))
            {
                errors.Add(ErrorCode.PoolExhausted, services.Count == 1 ? "service.vip4" : "services", $"the {_virtual4.Name} pool {_virtual4.Prefix} has {auto4.Count} free addresses, {valid.Count(v => v.Vip4 is null)} needed");
            }
            if (auto6.Count < valid.Count(v => v.Vip6 is null))
            {
                errors.Add(ErrorCode.PoolExhausted, services.Count == 1 ? "service.vip6" : "services", $"the {_virtual6.Name} pool {_virtual6.Prefix} has {auto6.Count} free addresses, {valid.Count(v => v.Vip6 is null)} needed");
            }
            errors.ThrowIfAny();
            int next4 = 0, next6 = 0;
            foreach (var v in valid)
            {
                var vip4 = v.Vip4 ?? auto4[next4++];
                var vip6 = v.Vip6 ?? auto6[next6++];
                planned.Add((new ServiceRecord(v.Name, vip4, vip6, v.Policy, Maglev.TableSize(0), [.. v.Options.Ports], [], v.Flow), v.Vip4 is null, v.Vip6 is null));
            }

            ApplyLocked(planned.Select(p => p.Record).ToArray(), [], [], []);
            foreach (var (record, isAuto4, isAuto6) in planned)
            {
                _virtual4.Claim(record.Vip4, advanceCursor: isAuto4);
                _virtual6.Claim(record.Vip6, advanceCursor: isAuto6);
                _services[record.Name] = record;
                LogServiceAdded(_log, Name, record.Name.Value, record.Vip4, record.Vip6, PolicyNames.Of(record.Policy));
            }
            PublishNames();
            return planned.Select(p => Info(p.Record)).ToArray();
        }
    }

    /// <summary>Removes a service that has no instances left; its virtual addresses return to the pool.</summary>
    public void RemoveService(string service)
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            var record = FindService(service, "service");
            var instances = InstancesOf(record.Name).ToArray();
            if (instances.Length > 0)
            {
                throw new RelayException(ErrorCode.Conflict, "service", $"service '{record.Name}' still has instances ({string.Join(", ", instances.Select(i => i.Name))}); remove them first");
            }
            var flows = _flows.Values.Where(f => f.Service == record.Name).ToArray();
            ApplyLocked([], [record.Name.Value], [], [], removedFlows: flows);
            ForgetFlows(flows);
            _services.Remove(record.Name);
            _virtual4.Release(record.Vip4);
            _virtual6.Release(record.Vip6);
            PublishNames();
            LogServiceRemoved(_log, Name, record.Name.Value);
        }
    }

    /// <summary>Every service, sorted by name.</summary>
    public IReadOnlyList<ServiceInfo> Services
    {
        get
        {
            lock (_gate)
            {
                return _services.Values.OrderBy(s => s.Name).Select(Info).ToArray();
            }
        }
    }

    /// <summary>One service.</summary>
    public ServiceInfo GetService(string service)
    {
        lock (_gate)
        {
            return Info(FindService(service, "service"));
        }
    }

    // ---------------------------------------------------------------- instances

    /// <summary>
    /// Adds an instance of <paramref name="service"/>: its namespace and veth, its addresses, its
    /// command, and (unless standby) its place in the balancer, in that order, so that it only
    /// receives traffic once it is up.
    /// </summary>
    public InstanceInfo AddInstance(string service, InstanceOptions? options = null)
    {
        options ??= new InstanceOptions();
        lock (_gate)
        {
            ThrowIfDisposed();
            var errors = new ErrorCollector();
            ServiceRecord? svc = null;
            try
            {
                svc = FindService(service, "instance.service");
            }
            catch (RelayException e)
            {
                errors.AddRange(e.Errors);
            }
            var name = options.Name is null ? (svc is null ? null : GenerateInstanceName(svc.Name)) : ResourceName.ValidateInstance(options.Name, "instance.name", errors);
            if (name is not null && _instanceRecords.ContainsKey(name))
            {
                errors.Add(ErrorCode.Duplicate, "instance.name", $"instance '{name}' already exists");
            }
            if (options.Command is { } cmd)
            {
                ValidateCommand(cmd, "instance.command", errors);
            }
            var a4 = PickAddress(_instances4, null, "instance.address4", errors);
            var a6 = PickAddress(_instances6, null, "instance.address6", errors);
            errors.ThrowIfAny();

            var index = _nextIndex;
            var record = new InstanceRecord(name!, svc!.Name, index, NetworkNames.Instance(Name, name!), NetworkNames.HostInterface(index), a4!, a6!,
                options.Command is null ? null : [.. options.Command], options.Standby ? InstanceState.Standby : InstanceState.Active);
            var wiring = Wiring(record);
            TopologyBuilder.WireInstance(OrchestratorNamespace, _gateways, wiring);
            NamespacedProcess? process = null;
            try
            {
                WriteResolvConf(record);
                if (record.Command is { } command)
                {
                    process = StartProcess(record, command);
                }
                var newService = options.Standby ? svc : GrowBackends(svc, svc.Backends.Add(record.Name));
                _instanceRecords[record.Name] = record;
                try
                {
                    ApplyLocked(options.Standby ? [] : [newService], [], [Link(record)], []);
                }
                catch
                {
                    _instanceRecords.Remove(record.Name);
                    throw;
                }
                _services[svc.Name] = newService;
            }
            catch
            {
                if (process is not null)
                {
                    StopProcess(record.Name, process).GetAwaiter().GetResult();
                }
                NamespacedProcess.KillNamespace(record.Namespace);
                TopologyBuilder.UnwireInstance(OrchestratorNamespace, wiring);
                NetnsEtc.Remove(record.Namespace);
                throw;
            }
            _instanceByAddress[record.Address4] = record.Name;
            _instanceByAddress[record.Address6] = record.Name;
            if (process is not null)
            {
                _processes[record.Name] = process;
            }
            _instances4.Claim(a4!);
            _instances6.Claim(a6!);
            _nextIndex++;
            SaveRecord();
            LogInstanceAdded(_log, Name, record.Name, record.Service.Value, record.Address4, record.Address6, record.State.ToString());
            return Info(record);
        }
    }

    /// <summary>
    /// Takes an instance out of the balancer (its ICMP/UDP flows move to the remaining instances at
    /// once), lets its TCP flows drain until they close or <paramref name="drain"/> passes (default:
    /// the network's drain timeout; zero cuts them), then stops it and removes its namespace.
    /// The returned task completes when the instance is gone.
    /// </summary>
    public Task<DrainResult> RemoveInstanceAsync(string instance, TimeSpan? drain = null)
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            var errors = new ErrorCollector();
            var record = FindInstance(instance, "instance", errors);
            CheckDrain(drain, errors);
            errors.ThrowIfAny();
            if (record!.State == InstanceState.Draining)
            {
                throw new RelayException(ErrorCode.Conflict, "instance", $"instance '{record.Name}' is already leaving");
            }
            var svc = _services[record.Service];
            var started = Stopwatch.GetTimestamp();
            var moved = Array.Empty<FlowRecord>();
            if (record.State == InstanceState.Active)
            {
                var newService = svc with { Backends = svc.Backends.Remove(record.Name) };
                // Its flow addresses move to the instances that remain (or go, with the last one).
                var affected = FlowsTo(svc.Name, record.Name);
                moved = newService.Backends.Count == 0 ? [] : affected.Select(f => f with { Backend = PickBackend(newService, f.Client) }).ToArray();
                var dropped = newService.Backends.Count == 0 ? affected : [];
                ApplyLocked([newService], [], [], [], moved, dropped);
                _services[svc.Name] = newService;
                Remember(moved);
                ForgetFlows(dropped);
            }
            _instanceRecords[record.Name] = record with { State = InstanceState.Draining };
            DeleteStaleStatelessFlows(svc, [record], moved);
            return StartDrain(record, svc, drain ?? _options.DrainTimeout, started);
        }
    }

    /// <summary>Every instance, sorted by name.</summary>
    public IReadOnlyList<InstanceInfo> Instances
    {
        get
        {
            lock (_gate)
            {
                return _instanceRecords.Values.OrderBy(i => i.Name, StringComparer.Ordinal).Select(Info).ToArray();
            }
        }
    }

    /// <summary>One instance.</summary>
    public InstanceInfo GetInstance(string instance)
    {
        lock (_gate)
        {
            var errors = new ErrorCollector();
            var record = FindInstance(instance, "instance", errors);
            errors.ThrowIfAny();
            return Info(record!);
        }
    }

    /// <summary>The recent output of an instance's command.</summary>
    public IReadOnlyList<string> Logs(string instance)
    {
        lock (_gate)
        {
            var errors = new ErrorCollector();
            var record = FindInstance(instance, "instance", errors);
            errors.ThrowIfAny();
            return _processes.TryGetValue(record!.Name, out var p) ? p.RecentOutput() : [];
        }
    }

    /// <summary>Runs a command inside an instance's namespace; the caller owns (and disposes) the process.</summary>
    public NamespacedProcess Exec(string instance, IReadOnlyList<string> command, Action<string>? onOutput = null)
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            var errors = new ErrorCollector();
            var record = FindInstance(instance, "instance", errors);
            ValidateCommand(command, "command", errors);
            errors.ThrowIfAny();
            return NamespacedProcess.Start(record!.Namespace, command, onOutput);
        }
    }

    // ---------------------------------------------------------------- migration

    /// <summary>
    /// Moves <paramref name="service"/> from instance <paramref name="from"/> to instance <paramref name="to"/>,
    /// make-before-break: (1) <paramref name="to"/> is already up; (2) one nft transaction gives it
    /// <paramref name="from"/>'s slots; (3) only then exactly the stale ICMP/UDP conntrack entries
    /// (original destination = a virtual address of the service, reply source = <paramref name="from"/>)
    /// are deleted, so their next packet is translated afresh to <paramref name="to"/>; (4) TCP flows
    /// drain on <paramref name="from"/>, which stops when they are closed or the deadline passed.
    /// The call returns after step 3; <see cref="MigrationResult.Drained"/> completes after step 4.
    /// </summary>
    public MigrationResult Migrate(string service, string from, string to, TimeSpan? drain = null)
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            var errors = new ErrorCollector();
            ServiceRecord? svc = null;
            try
            {
                svc = FindService(service, "service");
            }
            catch (RelayException e)
            {
                errors.AddRange(e.Errors);
            }
            var old = FindInstance(from, "from", errors);
            var next = FindInstance(to, "to", errors);
            CheckDrain(drain, errors);
            if (svc is not null && old is not null && old.Service != svc.Name)
            {
                errors.Add(ErrorCode.Conflict, "from", $"instance '{old.Name}' belongs to service '{old.Service}', not '{svc.Name}'");
            }
            if (svc is not null && next is not null && next.Service != svc.Name)
            {
                errors.Add(ErrorCode.Conflict, "to", $"instance '{next.Name}' belongs to service '{next.Service}', not '{svc.Name}'; a service can only move to its own instances");
            }
            if (old is not null && next is not null && old.Name == next.Name)
            {
                errors.Add(ErrorCode.Conflict, "to", "an instance cannot be migrated to itself");
            }
            if (old is not null && old.State != InstanceState.Active)
            {
                errors.Add(ErrorCode.Conflict, "from", $"instance '{old.Name}' is {old.State.ToString().ToLowerInvariant()}, not in the balancer");
            }
            if (next is not null && next.State == InstanceState.Draining)
            {
                errors.Add(ErrorCode.Conflict, "to", $"instance '{next.Name}' is leaving and cannot receive flows");
            }
            errors.ThrowIfAny();

            var started = Stopwatch.GetTimestamp();
            // In place: the new instance takes the old one's slot, so with round-robin and random
            // exactly the old instance's flows move and the others stay where they are.
            var backends = next!.State == InstanceState.Active
                ? svc!.Backends.Remove(old!.Name)
                : svc!.Backends.SetItem(svc.Backends.IndexOf(old!.Name), next.Name);
            var newService = GrowBackends(svc, backends);
            // Every flow address of the service on the old instance moves in the same transaction.
            var flows = FlowsTo(svc.Name, old.Name).Select(f => f with { Backend = next.Name }).ToArray();
            ApplyLocked([newService], [], [], [], flows);
            var repointed = Stopwatch.GetTimestamp();
            _services[svc.Name] = newService;
            Remember(flows);
            _instanceRecords[next.Name] = next with { State = InstanceState.Active };
            _instanceRecords[old.Name] = old with { State = InstanceState.Draining };
            var deleted = DeleteStaleStatelessFlows(svc, [old], flows);
            var cleaned = Stopwatch.GetTimestamp();
            LogMigrated(_log, Name, svc.Name.Value, old.Name, next.Name, Stopwatch.GetElapsedTime(started, repointed).TotalMicroseconds,
                Stopwatch.GetElapsedTime(repointed, cleaned).TotalMicroseconds, deleted);
            var drained = StartDrain(old, svc, drain ?? _options.DrainTimeout, repointed);
            return new MigrationResult(svc.Name.Value, old.Name, next.Name, started, repointed, cleaned, deleted, drained);
        }
    }

    /// <summary>
    /// Replaces <paramref name="instance"/> by a fresh one of the same service running the same command:
    /// the fresh instance is started in standby, then the service migrates to it.
    /// </summary>
    public MigrationResult Replace(string instance, TimeSpan? drain = null, string? newName = null)
    {
        lock (_gate)
        {
            var errors = new ErrorCollector();
            var old = FindInstance(instance, "instance", errors);
            CheckDrain(drain, errors);
            errors.ThrowIfAny();
            if (old!.State != InstanceState.Active)
            {
                throw new RelayException(ErrorCode.Conflict, "instance", $"instance '{old.Name}' is {old.State.ToString().ToLowerInvariant()}, not in the balancer");
            }
            var fresh = AddInstance(old.Service.Value, new InstanceOptions { Name = newName, Command = old.Command, Standby = true });
            try
            {
                return Migrate(old.Service.Value, old.Name, fresh.Name, drain);
            }
            catch
            {
                // The fresh instance never had a flow: remove it at once, no drain.
                RemoveNowLocked(_instanceRecords[fresh.Name]);
                throw;
            }
        }
    }

    // ---------------------------------------------------------------- data plane

    /// <summary>Reinstalls the whole table from memory in one transaction (the recovery path).</summary>
    public void Resync()
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            _dataplane.Resync();
        }
    }

    /// <summary>Relay's table as nft lists it (for inspection and tests).</summary>
    public string ListTable() => _dataplane.ListTable();

    /// <summary>Conntrack entries of the orchestrator namespace.</summary>
    public IReadOnlyList<ConntrackEntry> ListFlows() => _dataplane.ListFlows();

    // ---------------------------------------------------------------- teardown

    /// <summary>
    /// Removes everything this network created: instance processes and namespaces (with their
    /// veths), the orchestrator namespace (with Relay's table) and the record. Nothing else.
    /// Drains in progress are cut.
    /// </summary>
    public void Dispose()
    {
        List<Exception> failures = [];
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
            Try(() => _dns?.Dispose());
            // All at once: one slow process must not hold up the others' grace periods.
            Try(() => Task.WhenAll(_processes.Select(p => StopProcess(p.Key, p.Value))).GetAwaiter().GetResult());
            _processes.Clear();
            foreach (var record in _instanceRecords.Values)
            {
                Try(() => NamespacedProcess.KillNamespace(record.Namespace));
                Try(() => Netns.Delete(record.Namespace));
                Try(() => NetnsEtc.Remove(record.Namespace));
            }
            _instanceRecords.Clear();
            Try(_dataplane.Dispose);
            Try(_orchestrator.Dispose);
            Try(() => NamespacedProcess.KillNamespace(OrchestratorNamespace));
            Try(() => Netns.Delete(OrchestratorNamespace));
            Try(() => File.Delete(NetworkRecord.PathFor(_options.RecordDirectory, Name)));
        }
        LogTornDown(_log, Name);
        if (failures.Count > 0)
        {
            throw new AggregateException($"tearing down network {Name} left errors", failures);
        }

        void Try(Action a)
        {
            try
            {
                a();
            }
            catch (Exception e)
            {
                failures.Add(e);
            }
        }
    }

    // ---------------------------------------------------------------- internals

    private void ApplyLocked(
        IReadOnlyCollection<ServiceRecord> services,
        IReadOnlyCollection<string> removedServices,
        IReadOnlyCollection<DataplaneLink> links,
        IReadOnlyCollection<string> removedLinks,
        IReadOnlyCollection<FlowRecord>? flows = null,
        IReadOnlyCollection<FlowRecord>? removedFlows = null)
        => _dataplane.Apply(services.Select(ToDataplane), removedServices, links, removedLinks, (flows ?? []).Select(ToDataplane), (removedFlows ?? []).Select(f => f.Id));

    private DataplaneService ToDataplane(ServiceRecord s)
    {
        var backends = s.Backends.Select(n => _instanceRecords[n]).Select(i => new DataplaneBackend(i.Name, i.Address4, i.Address6)).ToArray();
        return new DataplaneService(s.Name.Value, s.Vip4, s.Vip6, s.Policy, s.MaglevTableSize, s.Ports, backends);
    }

    private static ServiceRecord GrowBackends(ServiceRecord s, ImmutableList<string> backends)
        => s with { Backends = backends, MaglevTableSize = Maglev.GrowTableSize(s.MaglevTableSize, backends.Count) };

    private int DeleteStaleStatelessFlows(ServiceRecord svc, IReadOnlyList<InstanceRecord> old, IReadOnlyCollection<FlowRecord> movedFlows)
        => _dataplane.DeleteStaleStatelessFlows(
            [svc.Vip4, svc.Vip6, .. movedFlows.SelectMany(f => new[] { f.Flow4, f.Flow6 })],
            old.SelectMany(o => new[] { o.Address4, o.Address6 }));

    private Task<DrainResult> StartDrain(InstanceRecord record, ServiceRecord svc, TimeSpan deadline, long started)
    {
        return Task.Run(async () =>
        {
            var vips = new[] { svc.Vip4, svc.Vip6 };
            var olds = new[] { record.Address4, record.Address6 };
            var stale = new StaleFlows(vips, olds);
            int? atStart = null;
            var cut = 0;
            var until = started + (long)(deadline.TotalSeconds * Stopwatch.Frequency);
            while (!_disposed)
            {
                // Read from the kernel, not the event index: a stateless flow whose translation was
                // decided while the re-point committed can have escaped the index; it goes now.
                var flows = _dataplane.FlowsTo(vips, olds);
                var stragglers = flows.Where(stale.IsStatelessMatch).ToArray();
                if (stragglers.Length > 0)
                {
                    LogStragglers(_log, Name, record.Name, stragglers.Length);
                    _dataplane.DeleteFlows(stragglers);
                }
                var open = flows.Where(stale.IsTcpMatch).ToArray();
                var draining = open.Count(stale.IsDrainingTcp);
                atStart ??= draining;
                if (draining == 0)
                {
                    break;
                }
                if (Stopwatch.GetTimestamp() >= until)
                {
                    // The deadline: forget the old instance's TCP entries, so the client's next
                    // segment is picked up afresh, reaches an instance without that connection
                    // and gets a reset instead of silence.
                    cut = draining;
                    _dataplane.DeleteFlows(open);
                    break;
                }
                await Task.Delay(TimeSpan.FromMilliseconds(100)).ConfigureAwait(false);
            }
            await StopInstanceAsync(record.Name).ConfigureAwait(false);
            var result = new DrainResult(record.Name, atStart ?? 0, cut, Stopwatch.GetElapsedTime(started));
            LogDrained(_log, Name, record.Name, result.TcpFlowsAtStart, cut, result.Duration.TotalMilliseconds);
            return result;
        });
    }

    private async Task StopInstanceAsync(string name)
    {
        NamespacedProcess? process;
        InstanceRecord? record;
        lock (_gate)
        {
            if (_disposed || !_instanceRecords.TryGetValue(name, out record))
            {
                return;
            }
            _processes.Remove(name, out process);
        }
        if (process is not null)
        {
            await StopProcess(name, process).ConfigureAwait(false);
        }
        lock (_gate)
        {
            if (!_disposed)
            {
                RemoveNowLocked(record);
            }
        }
    }

    /// <summary>Removes an instance that is out of the balancer: processes, anti-spoofing elements, link, namespace, addresses.</summary>
    private void RemoveNowLocked(InstanceRecord record)
    {
        if (_processes.Remove(record.Name, out var process))
        {
            StopProcess(record.Name, process).GetAwaiter().GetResult();
        }
        // Whatever else runs in the instance (children, commands run with Exec) stops with it.
        NamespacedProcess.TerminateNamespaceAsync(record.Namespace, _options.StopGrace).GetAwaiter().GetResult();
        // The flow addresses it held as a client go with it.
        var clientFlows = _flows.Values.Where(f => f.Client == record.Name).ToArray();
        ApplyLocked([], [], [], [record.HostInterface], removedFlows: clientFlows);
        ForgetFlows(clientFlows);
        TopologyBuilder.UnwireInstance(OrchestratorNamespace, Wiring(record));
        NetnsEtc.Remove(record.Namespace);
        _instanceByAddress.Remove(record.Address4);
        _instanceByAddress.Remove(record.Address6);
        _instanceRecords.Remove(record.Name);
        _instances4.Release(record.Address4);
        _instances6.Release(record.Address6);
        SaveRecord();
        LogInstanceRemoved(_log, Name, record.Name);
    }

    private async Task StopProcess(string instance, NamespacedProcess process)
    {
        await process.StopAsync(_options.StopGrace).ConfigureAwait(false);
        LogProcessStopped(_log, Name, instance, process.Pid, process.HasExited ? process.ExitCode : -1);
        process.Dispose();
    }

    private NamespacedProcess StartProcess(InstanceRecord record, IReadOnlyList<string> command)
    {
        var name = record.Name;
        var process = NamespacedProcess.Start(record.Namespace, command, line => LogInstanceOutput(_log, Name, name, line));
        LogProcessStarted(_log, Name, name, process.Pid, string.Join(' ', command));
        return process;
    }

    private void SaveRecord()
    {
        try
        {
            new NetworkRecord
            {
                Network = Name,
                OwnerPid = Environment.ProcessId,
                Orchestrator = OrchestratorNamespace,
                Instances = _instanceRecords.Values.Select(i => i.Namespace).Order(StringComparer.Ordinal).ToArray(),
            }.Save(_options.RecordDirectory);
        }
        catch (IOException e)
        {
            LogRecordFailed(_log, Name, e.Message);
        }
    }

    private ServiceRecord FindService(string service, string field)
    {
        if (!ServiceName.TryParse(service, out var name, out var why))
        {
            throw new RelayException(ErrorCode.Invalid, field, why);
        }
        return _services.TryGetValue(name, out var record)
            ? record
            : throw new RelayException(ErrorCode.NotFound, field, $"no service '{name}' in network '{Name}'");
    }

    private InstanceRecord? FindInstance(string instance, string field, ErrorCollector errors)
    {
        if (instance is not null && _instanceRecords.TryGetValue(instance.ToLowerInvariant(), out var record))
        {
            return record;
        }
        errors.Add(ErrorCode.NotFound, field, $"no instance '{instance}' in network '{Name}'");
        return null;
    }

    private IEnumerable<InstanceRecord> InstancesOf(ServiceName service) => _instanceRecords.Values.Where(i => i.Service == service);

    private string GenerateInstanceName(ServiceName service)
    {
        var label = service.Value.Split('.')[0];
        label = label.Length > 50 ? label[..50].TrimEnd('-') : label;
        for (var n = _nextIndex; ; n++)
        {
            var candidate = $"{label}-{n}";
            if (!_instanceRecords.ContainsKey(candidate))
            {
                return candidate;
            }
        }
    }

    private static void ValidateCommand(IReadOnlyList<string> command, string field, ErrorCollector errors)
    {
        if (command.Count == 0 || string.IsNullOrWhiteSpace(command[0]))
        {
            errors.Add(ErrorCode.Invalid, field, "the command is empty");
            return;
        }
        if (!ExecutableExists(command[0]))
        {
            errors.Add(ErrorCode.NotFound, field, $"'{command[0]}' is not an executable file or a program on PATH");
        }
    }

    private static bool ExecutableExists(string program)
    {
        if (program.Contains('/'))
        {
            return File.Exists(program);
        }
        var path = Environment.GetEnvironmentVariable("PATH") ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
        return path.Split(':', StringSplitOptions.RemoveEmptyEntries).Any(d => File.Exists(Path.Combine(d, program)));
    }

    private void CheckDrain(TimeSpan? drain, ErrorCollector errors)
    {
        if (drain is { } d && d < TimeSpan.Zero)
        {
            errors.Add(ErrorCode.Invalid, "drain", "the drain deadline cannot be negative (0 cuts TCP flows at once)");
        }
    }

    private static IPAddress? PickAddress(AddressPool pool, string? requested, string field, ErrorCollector errors)
    {
        if (requested is not null)
        {
            return ExplicitAddress(pool, requested, field, errors, []);
        }
        try
        {
            return pool.PeekOne(field);
        }
        catch (RelayException e)
        {
            errors.AddRange(e.Errors);
            return null;
        }
    }

    private static IPAddress? ExplicitAddress(AddressPool pool, string requested, string field, ErrorCollector errors, HashSet<IPAddress> taken)
    {
        if (!IPAddress.TryParse(requested, out var address))
        {
            errors.Add(ErrorCode.Invalid, field, $"'{requested}' is not an IP address");
            return null;
        }
        var error = pool.CheckClaim(address, field);
        if (error is null && !taken.Add(address))
        {
            error = new RelayError(ErrorCode.Duplicate, field, $"{address} is requested twice");
        }
        if (error is not null)
        {
            errors.AddRange([error]);
            return null;
        }
        return address;
    }

    private static AddressPool? ParsePool(string text, string what, string field, AddressFamily family, ErrorCollector errors)
    {
        if (!IpMath.TryParsePrefix(text, out var prefix, out var reason))
        {
            errors.Add(ErrorCode.Invalid, field, reason);
            return null;
        }
        if (prefix.BaseAddress.AddressFamily != family)
        {
            errors.Add(ErrorCode.Invalid, field, $"{text} is not an {(family == AddressFamily.InterNetwork ? "IPv4" : "IPv6")} prefix");
            return null;
        }
        var size = IpMath.Size(prefix);
        if (size < 4)
        {
            errors.Add(ErrorCode.Invalid, field, $"{text} is too small for a {what} pool");
            return null;
        }
        // Instance pools keep their first host address for the gateway.
        var reserved = what.StartsWith("instance", StringComparison.Ordinal) ? new[] { Gateway(prefix) } : [];
        return new AddressPool(what, prefix, reserved);
    }

    private static void CheckOverlap(AddressPool? a, AddressPool? b, ErrorCollector errors)
    {
        if (a is not null && b is not null && (a.Prefix.Contains(b.Prefix.BaseAddress) || b.Prefix.Contains(a.Prefix.BaseAddress)))
        {
            errors.Add(ErrorCode.Invalid, "network", $"the {a.Name} pool {a.Prefix} overlaps the {b.Name} pool {b.Prefix}");
        }
    }

    private static IPAddress Gateway(IPNetwork prefix) => IpMath.FromInteger(IpMath.ToInteger(prefix.BaseAddress) + 1, prefix.BaseAddress.AddressFamily);

    private static InstanceWiring Wiring(InstanceRecord r) => new(r.Namespace, r.HostInterface, r.Address4, r.Address6);

    private static DataplaneLink Link(InstanceRecord r) => new(r.HostInterface, r.Address4, r.Address6);

    private ServiceInfo Info(ServiceRecord s) => new(
        s.Name.Value, s.Vip4, s.Vip6, PolicyNames.Of(s.Policy), s.Ports, s.Backends,
        InstancesOf(s.Name).Select(i => i.Name).Order(StringComparer.Ordinal).ToArray(),
        s.FlowAddressing ? AddressingModes.Flow : AddressingModes.Service);

    private static bool Invalid(ErrorCollector errors, string field, string message)
    {
        errors.Add(ErrorCode.Invalid, field, message);
        return false;
    }

    private InstanceInfo Info(InstanceRecord r) => new(
        r.Name, r.Service.Value, r.Namespace, r.HostInterface, r.Address4, r.Address6, r.State, r.Command,
        _processes.TryGetValue(r.Name, out var p) && !p.HasExited ? p.Pid : null);

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);
}
