using System.Text.Json;
using Microsoft.Extensions.Logging;
using Relay.Core.Errors;
using Relay.Core.Reconcile;
using Relay.Engine.Health;

namespace Relay.Engine.Cluster;

/// <summary>
/// The health checks of this node's instances: each local instance whose record carries a check
/// gets one in the <see cref="InstanceSupervisor"/> (the single host's, with its probes run from the
/// instance's namespace or the orchestrator), and every verdict is handed to
/// <see cref="HealthChanged"/>. The node does not act on it itself: the daemon writes it to the
/// store, and every node's balancers follow it from there, as they follow a lost node.
/// </summary>
public sealed partial class NodeNetwork
{
    private static readonly JsonSerializerOptions SpecJson = new(JsonSerializerDefaults.Web);

    /// <summary>
    /// A local instance's check changed its verdict: (instance, true) healthy, (instance, false)
    /// unhealthy, (instance, null) no verdict any more (the instance left, or its check stopped).
    /// Raised on the monitor's thread, outside this network's lock.
    /// </summary>
    public event Action<string, bool?>? HealthChanged;

    /// <summary>The state of local instance <paramref name="instance"/>'s check (null: it has none here).</summary>
    public HealthState? HealthOf(string instance)
    {
        lock (_gate)
        {
            return _supervisor.Monitors.TryGetValue(instance, out var m) ? m.State : null;
        }
    }

    /// <summary>Every local check's current verdict (true healthy, false unhealthy; checks not passed yet are left out).</summary>
    public IReadOnlyList<(string Instance, bool Healthy)> HealthVerdicts()
    {
        lock (_gate)
        {
            return _supervisor.Monitors.Where(m => m.Value.State != HealthState.Starting).Select(m => (m.Key, m.Value.State == HealthState.Healthy)).ToArray();
        }
    }

    /// <summary>Starts <paramref name="instance"/>'s check, when it has one. Under the gate.</summary>
    private void StartHealth(InstanceEntry instance)
    {
        if (instance.HealthSpec is not { } text || _supervisor.Monitors.ContainsKey(instance.Name))
        {
            return;
        }
        try
        {
            var errors = new ErrorCollector();
            var check = HealthCheck.FromSpec(JsonSerializer.Deserialize<Api.HealthSpec>(text, SpecJson), "health", errors);
            errors.ThrowIfAny();
            if (check is not null)
            {
                _supervisor.StartHealth(instance.Name, check, new ProbeTarget(InstanceNamespace(instance.Name), _orchestrator, instance.Address4));
            }
        }
        catch (Exception e) when (e is RelayException or JsonException)
        {
            LogHealthRefused(_log, _options.Name, Node, instance.Name, e.Message);
        }
    }

    /// <summary>Forgets an instance that leaves this node: its back-off, its count, its check, whose verdict is withdrawn. Under the gate.</summary>
    private void Forget(string instance)
    {
        if (_supervisor.Forget(instance) is { } monitor && monitor.State != HealthState.Starting)
        {
            var handler = HealthChanged;
            _ = Task.Run(() => handler?.Invoke(instance, null));
        }
    }

    void ISupervisorHost.HealthChanged(string instance, HealthMonitor monitor, HealthState state)
    {
        LogHealth(_log, _options.Name, Node, instance, state.ToString().ToLowerInvariant(), monitor.LastError ?? "");
        HealthChanged?.Invoke(instance, state switch { HealthState.Healthy => true, HealthState.Unhealthy => false, _ => null });
    }

    [LoggerMessage(EventId = 98, Level = LogLevel.Information, Message = "network {Network} on node {Node}: instance {Instance} is {State} {Reason}")]
    private static partial void LogHealth(ILogger log, string network, string node, string instance, string state, string reason);

    [LoggerMessage(EventId = 99, Level = LogLevel.Error, Message = "network {Network} on node {Node}: instance {Instance}: its health check cannot run: {Error}")]
    private static partial void LogHealthRefused(ILogger log, string network, string node, string instance, string error);
}
