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
using Relay.Engine.Health;
using Relay.Linux.Namespaces;
using Relay.Linux.Processes;
using Relay.Engine.State;
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
public sealed partial class RelayNetwork : IDisposable, IFlowAddressResolver, ISupervisorHost
{
    private readonly object _gate = new();

    /// <summary>The record last written (see <see cref="SaveRecord"/>), to skip rewriting an unchanged one.</summary>
    private NetworkRecord? _savedRecord;

    private readonly ILogger _log;
    private readonly NetworkOptions _options;
    private readonly NetnsThread _orchestrator;
    private DataplaneRuntime _dataplane;
    private readonly Gateways _gateways;
    private readonly AddressPool _instances4;
    private readonly AddressPool _instances6;
    private readonly AddressPool _virtual4;
    private readonly AddressPool _virtual6;
    private readonly AddressPool _flows4;
    private readonly AddressPool _flows6;
    private readonly Dictionary<IPAddress, string> _instanceByAddress = [];
    private readonly DnsOptions _dnsOptions;
    private volatile NameTable _names = NameTable.Empty;
    private DnsServer? _dns;

    /// <summary>Open TCP connections of each draining instance at its drain's last look (written by the drain tasks).</summary>
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, int> _drainOpen = new(StringComparer.Ordinal);
    private int _nextIndex = 1;
    private bool _disposed;

    private RelayNetwork(NetworkOptions options, ILogger log, NetnsThread orchestrator, DataplaneRuntime dataplane, AddressPool?[] pools)
    {
        _options = options;
        _log = log;
        _orchestrator = orchestrator;
        _dataplane = dataplane;
        (_instances4, _instances6, _virtual4, _virtual6, _flows4, _flows6) = (pools[0]!, pools[1]!, pools[2]!, pools[3]!, pools[4]!, pools[5]!);
        _dnsOptions = DnsOptionsOf(options.Dns);
        _gateways = new Gateways(Gateway(_instances4.Prefix), Gateway(_instances6.Prefix));
        Name = options.Name;
        _supervisor = new InstanceSupervisor(_gate, this, log);
    }

    /// <summary>The network's name.</summary>
    public string Name { get; }

    /// <summary>The orchestrator namespace (<c>ip netns exec</c> it to inspect the data plane).</summary>
    public string OrchestratorNamespace => NetworkNames.Orchestrator(Name, _options.Node);

    /// <summary>The gateway addresses instances route through (and, later, ask names of).</summary>
    public Gateways Gateways => _gateways;

    /// <summary>The orchestrator namespace's thread: for sockets and probes that must live there.</summary>
    public NetnsThread OrchestratorThread => _orchestrator;

    /// <summary>
    /// Creates a network: validates the options, creates the orchestrator namespace and installs
    /// Relay's table in one transaction. On any failure nothing is left behind.
    /// </summary>
    public static RelayNetwork Create(NetworkOptions options, ILogger? logger = null, INetworkStore? store = null)
    {
        var log = logger ?? NullLogger.Instance;
        var errors = new ErrorCollector();
        var (name, pools, upstreams) = ValidateOptions(options, errors);
        if (name is not null && Netns.Exists(NetworkNames.Orchestrator(name, options.Node)))
        {
            errors.Add(ErrorCode.Duplicate, "network.name", $"network '{name}' already exists (namespace {NetworkNames.Orchestrator(name, options.Node)}); remove it with 'relay down --network {name}' or pick another name");
        }
        errors.ThrowIfAny();
        options = options with { Name = name! };

        var ns = NetworkNames.Orchestrator(options.Name, options.Node);
        var thread = TopologyBuilder.CreateOrchestrator(ns);
        DataplaneRuntime? dataplane = null;
        try
        {
            dataplane = DataplaneRuntime.Open(thread, options.Name, log);
            var network = new RelayNetwork(options, log, thread, dataplane, pools) { _store = store };
            network.StartDns(upstreams);
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

    private void StartDns(IReadOnlyList<IPEndPoint> upstreams)
    {
        if (_options.Dns.Enabled)
        {
            _dns = DnsServer.Start(_orchestrator, [_gateways.V4, _gateways.V6], 53, () => _names, _dnsOptions, this, upstreams, _log);
        }
    }

    private static (string? Name, AddressPool?[] Pools, IReadOnlyList<IPEndPoint> Upstreams) ValidateOptions(NetworkOptions options, ErrorCollector errors)
    {
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
        return (name, pools, upstreams);
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
                else if (_state.Services.ContainsKey(name) || !names.Add(name))
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

            var step = Begin();
            foreach (var p in planned)
            {
                step.Put(p.Record);
            }
            Commit(step);
            foreach (var (record, isAuto4, isAuto6) in planned)
            {
                _virtual4.Claim(record.Vip4, advanceCursor: isAuto4);
                _virtual6.Claim(record.Vip6, advanceCursor: isAuto6);
                LogServiceAdded(_log, Name, record.Name.Value, record.Vip4, record.Vip6, PolicyNames.Of(record.Policy));
                Emit(EventKinds.ServiceAdded, record.Name.Value, $"service {record.Name} added at {record.Vip4} and {record.Vip6}",
                    ("vip4", record.Vip4), ("vip6", record.Vip6), ("policy", PolicyNames.Of(record.Policy)));
            }
            PublishNames();
            Persist();
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
            // Its flow addresses go with it (Commit drops them).
            var step = Begin();
            step.DropService(record.Name);
            Commit(step);
            _virtual4.Release(record.Vip4);
            _virtual6.Release(record.Vip6);
            PublishNames();
            Persist();
            Emit(EventKinds.ServiceRemoved, record.Name.Value, $"service {record.Name} removed");
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
                return _state.Services.Values.OrderBy(s => s.Name).Select(Info).ToArray();
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

    // ---------------------------------------------------------------- data plane

    /// <summary>The health check an instance was given (null: none).</summary>
    public Api.HealthSpec? HealthSpecOf(string instance)
    {
        lock (_gate)
        {
            return _state.Instances.TryGetValue(instance, out var r) ? r.HealthSpec : null;
        }
    }

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
            Emit(EventKinds.NetworkDown, Name, $"network {Name} removed");
            _disposed = true;
            Try(() => _dns?.Dispose());
            var processes = _supervisor.Stop();
            // All at once: one slow process must not hold up the others' grace periods.
            Try(() => Task.WhenAll(processes.Select(p => p.StopAsync(_options.StopGrace))).GetAwaiter().GetResult());
            foreach (var p in processes)
            {
                p.Dispose();
            }
            foreach (var record in _state.Instances.Values)
            {
                Try(() => NamespacedProcess.KillNamespace(record.Namespace));
                Try(() => Netns.Delete(record.Namespace));
                Try(() => NetnsEtc.Remove(record.Namespace));
                Try(() =>
                {
                    if (File.Exists(LogFile(record)))
                    {
                        File.Delete(LogFile(record));
                    }
                });
            }
            _state = LocalState.Empty;
            Try(() =>
            {
                // The network's log directory, if nothing but Relay's logs was in it.
                var logs = Path.Combine(_options.LogDirectory, Name);
                if (Directory.Exists(logs) && !Directory.EnumerateFileSystemEntries(logs).Any())
                {
                    Directory.Delete(logs);
                }
            });
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

    /// <summary>
    /// Lets go of the network without touching it: the DNS server and watchers stop, handles close,
    /// but namespaces, links, the table and instance commands stay, and the kernel goes on
    /// forwarding. What a daemon does when it stops; the next one restores the network.
    /// </summary>
    public void Detach()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
            _dns?.Dispose();
            foreach (var p in _supervisor.Stop())
            {
                p.Dispose();
            }
            _dataplane.Dispose();
            _orchestrator.Dispose();
        }
        LogDetached(_log, Name);
    }

    // ---------------------------------------------------------------- internals

    private static ServiceRecord GrowBackends(ServiceRecord s, ImmutableList<string> backends)
        => s with { Backends = backends, MaglevTableSize = Maglev.GrowTableSize(s.MaglevTableSize, backends.Count) };

    private void SaveRecord()
    {
        var record = new NetworkRecord
        {
            Network = Name,
            OwnerPid = Environment.ProcessId,
            Orchestrator = OrchestratorNamespace,
            Node = _options.Node,
            Instances = _state.Instances.Values.Select(i => i.Namespace).Order(StringComparer.Ordinal).ToArray(),
        };
        // Most changes (a migration, a health change, a flow) leave the set of namespaces as it was:
        // rewriting the same record would only add a write and a rename (which can start writeback)
        // before the call returns.
        if (_savedRecord is { } saved && saved.OwnerPid == record.OwnerPid && saved.Orchestrator == record.Orchestrator
            && saved.Instances.SequenceEqual(record.Instances, StringComparer.Ordinal))
        {
            return;
        }
        try
        {
            record.Save(_options.RecordDirectory);
            _savedRecord = record;
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
        return _state.Services.TryGetValue(name, out var record)
            ? record
            : throw new RelayException(ErrorCode.NotFound, field, $"no service '{name}' in network '{Name}'");
    }

    private InstanceRecord? FindInstance(string instance, string field, ErrorCollector errors)
    {
        if (instance is not null && _state.Instances.TryGetValue(instance.ToLowerInvariant(), out var record))
        {
            return record;
        }
        errors.Add(ErrorCode.NotFound, field, $"no instance '{instance}' in network '{Name}'");
        return null;
    }

    private IEnumerable<InstanceRecord> InstancesOf(ServiceName service) => _state.Instances.Values.Where(i => i.Service == service);

    private string GenerateInstanceName(ServiceName service) => ResourceName.NextInstance(service.Value, _state.Instances.Keys);

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
        r.Name, r.Service.Value, r.Namespace, r.HostInterface, r.Address4, r.Address6, r.State, r.Command, r.Pid)
    {
        Health = r.Health,
        Restart = r.Restart,
        Restarts = r.Restarts,
        InBalancer = _state.Services.TryGetValue(r.Service, out var svc) && LocalPlan.EffectiveBackends(_state, svc).Any(b => b.Name == r.Name),
        DrainUntil = r.State == InstanceState.Draining ? r.DrainUntil : null,
        OpenTcpFlows = r.State == InstanceState.Draining && _drainOpen.TryGetValue(r.Name, out var open) ? open : null,
    };

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);
}
