using System.Collections.Immutable;
using System.Net;
using Relay.Core.LoadBalancing;
using Relay.Core.Model;
using Relay.Core.Naming;
using Relay.Engine.State;

namespace Relay.Engine;

/// <summary>
/// Persistence: every record change is a <see cref="LocalStep"/>, whose <see cref="Commit"/>
/// remembers what changed; at the end of each operation <see cref="Persist"/> hands the changes to
/// the store in one call. Events are raised the same way.
/// </summary>
public sealed partial class RelayNetwork
{
    private readonly HashSet<ServiceName> _dirtyServices = [];
    private readonly HashSet<string> _dirtyInstances = new(StringComparer.Ordinal);
    private readonly HashSet<string> _dirtyFlows = new(StringComparer.Ordinal);
    private INetworkStore? _store;

    /// <summary>Every change, as it happens (raised with the network's lock held: handlers must be quick).</summary>
    public event Action<RelayEvent>? Events;

    /// <summary>Where changes are written (the daemon's store); set once, before the first change.</summary>
    public INetworkStore? Store
    {
        get => _store;
        set => _store = value;
    }

    /// <summary>The options the network was created with.</summary>
    public NetworkOptions Options => _options;

    /// <summary>The whole state, as the store keeps it.</summary>
    public StoredNetwork Export()
    {
        lock (_gate)
        {
            return new StoredNetwork(_options, _state.Services.Values.Select(ToStored).ToArray(), _state.Instances.Values.Select(ToStored).ToArray(), _state.Flows.Values.Select(ToStored).ToArray());
        }
    }

    /// <summary>Writes what the current operation changed. Call with the lock held, after the kernel accepted the change.</summary>
    private void Persist()
    {
        if (_dirtyServices.Count + _dirtyInstances.Count + _dirtyFlows.Count == 0)
        {
            return;
        }
        var flowsById = _state.Flows.Values.ToDictionary(f => f.Id, StringComparer.Ordinal);
        var change = new NetworkChange(
            Name,
            _dirtyServices.Where(_state.Services.ContainsKey).Select(n => ToStored(_state.Services[n])).ToArray(),
            _dirtyServices.Where(n => !_state.Services.ContainsKey(n)).Select(n => n.Value).ToArray(),
            _dirtyInstances.Where(_state.Instances.ContainsKey).Select(n => ToStored(_state.Instances[n])).ToArray(),
            _dirtyInstances.Where(n => !_state.Instances.ContainsKey(n)).ToArray(),
            _dirtyFlows.Where(flowsById.ContainsKey).Select(id => ToStored(flowsById[id])).ToArray(),
            _dirtyFlows.Where(id => !flowsById.ContainsKey(id)).ToArray());
        _dirtyServices.Clear();
        _dirtyInstances.Clear();
        _dirtyFlows.Clear();
        SaveRecord();
        if (_store is not null && !change.IsEmpty)
        {
            try
            {
                _store.Save(change);
            }
            catch (Exception e)
            {
                // The kernel already holds the change; a later change, or the next restart's
                // convergence, reconciles. Losing the process over a full disk would be worse.
                LogStoreFailed(_log, Name, e.Message);
            }
        }
    }

    private void Emit(string kind, string subject, string message, params (string Key, object? Value)[] data)
    {
        var handler = Events;
        if (handler is null)
        {
            return;
        }
        var dict = data.Where(d => d.Value is not null).ToDictionary(d => d.Key, d => Convert.ToString(d.Value, System.Globalization.CultureInfo.InvariantCulture)!);
        try
        {
            handler(new RelayEvent(DateTimeOffset.UtcNow, Name, kind, subject, message, dict));
        }
        catch (Exception e)
        {
            LogEventHandlerFailed(_log, Name, e.Message);
        }
    }

    private static StoredService ToStored(ServiceRecord s) => new(
        s.Name.Value, s.Vip4.ToString(), s.Vip6.ToString(), PolicyNames.Of(s.Policy), s.MaglevTableSize,
        s.Ports.Select(p => p.ToString()).ToArray(), s.Backends.ToArray(), s.FlowAddressing);

    private static StoredInstance ToStored(InstanceRecord r) => new(
        r.Name, r.Service.Value, r.Index, r.Namespace, r.HostInterface, r.Address4.ToString(), r.Address6.ToString(),
        r.Command?.ToArray(), r.State.ToString(), r.Restart, r.HealthSpec, r.Pid, r.PidStart, r.DrainUntil, r.Restarts, r.Health, r.Ended);

    private static StoredFlow ToStored(FlowRecord f) => new(f.Id, f.Client, f.Service.Value, f.Flow4.ToString(), f.Flow6.ToString(), f.Backend);

    private static ServiceRecord FromStored(StoredService s)
    {
        var errors = new Relay.Core.Errors.ErrorCollector();
        var ports = s.Ports.Select((p, i) => PortMapping.TryParse(p, $"ports[{i}]", errors)).OfType<PortMapping>().ToImmutableArray();
        errors.ThrowIfAny();
        PolicyNames.TryParse(s.Policy, out var policy);
        return new ServiceRecord(ServiceName.Parse(s.Name), IPAddress.Parse(s.Vip4), IPAddress.Parse(s.Vip6), policy, s.MaglevTableSize,
            ports, [.. s.Backends], s.FlowAddressing);
    }

    private static InstanceRecord FromStored(StoredInstance i) => new(
        i.Name, ServiceName.Parse(i.Service), i.Index, i.Namespace, i.HostInterface, IPAddress.Parse(i.Address4), IPAddress.Parse(i.Address6),
        i.Command is null ? null : [.. i.Command], Enum.Parse<InstanceState>(i.State))
    {
        Restart = i.Restart,
        HealthSpec = i.HealthCheck,
        Pid = i.Pid,
        PidStart = i.PidStart,
        DrainUntil = i.DrainUntil,
        Restarts = i.Restarts,
        Health = i.Health,
        Ended = i.Ended,
    };

    private static FlowRecord FromStored(StoredFlow f)
        => new(f.Id, f.Client, ServiceName.Parse(f.Service), IPAddress.Parse(f.Flow4), IPAddress.Parse(f.Flow6), f.Backend);
}
