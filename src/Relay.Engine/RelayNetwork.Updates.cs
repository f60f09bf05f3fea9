using System.Collections.Immutable;
using System.Text.Json;
using Relay.Core.Errors;
using Relay.Core.LoadBalancing;
using Relay.Core.Model;
using Relay.Engine.Health;

namespace Relay.Engine;

/// <summary>Changing what exists: a service's policy or ports; an instance's command, restart policy, check or standby.</summary>
public sealed partial class RelayNetwork
{
    /// <summary>
    /// Changes a service's policy and port mappings in one transaction. Its name, virtual addresses
    /// and addressing mode cannot change (clients hold them): remove and add the service for that.
    /// </summary>
    public ServiceInfo UpdateService(ServiceOptions options)
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            var errors = new ErrorCollector();
            var svc = FindService(options.Name, "service.name");
            if (!PolicyNames.TryParse(options.Policy, out var policy))
            {
                errors.Add(ErrorCode.Invalid, "service.policy", $"unknown policy '{options.Policy}'; choose one of {string.Join(", ", PolicyNames.All)}");
            }
            var seen = new HashSet<(TransportProtocol, int)>();
            for (var i = 0; i < options.Ports.Count; i++)
            {
                options.Ports[i].Validate($"service.ports[{i}]", errors);
                if (!seen.Add((options.Ports[i].Protocol, options.Ports[i].Port)))
                {
                    errors.Add(ErrorCode.Duplicate, $"service.ports[{i}]", $"port {options.Ports[i].Port}/{options.Ports[i].ProtocolName} is mapped twice");
                }
            }
            if ((options.Addressing?.ToLowerInvariant() == AddressingModes.Flow) != svc.FlowAddressing)
            {
                errors.Add(ErrorCode.Conflict, "service.addressing", $"the addressing of '{svc.Name}' cannot change; remove the service and add it again");
            }
            if (options.Vip4 is { } v4 && v4 != svc.Vip4.ToString() || options.Vip6 is { } v6 && v6 != svc.Vip6.ToString())
            {
                errors.Add(ErrorCode.Conflict, "service.vip", $"the virtual addresses of '{svc.Name}' are stable; remove the service and add it again to change them");
            }
            if (svc.FlowAddressing && options.Ports.Count > 0)
            {
                errors.Add(ErrorCode.Invalid, "service.ports", "flow addressing is for layer-3 services");
            }
            errors.ThrowIfAny();
            var updated = svc with { Policy = policy, Ports = [.. options.Ports] };
            if (updated.Policy == svc.Policy && updated.Ports.SequenceEqual(svc.Ports))
            {
                return Info(svc);
            }
            var step = Begin();
            step.Put(updated);
            Commit(step);
            PublishNames();
            Persist();
            Emit(EventKinds.ServiceChanged, svc.Name.Value, $"service {svc.Name} changed: policy {PolicyNames.Of(policy)}, ports {string.Join(' ', updated.Ports)}");
            return Info(updated);
        }
    }

    /// <summary>
    /// Changes an instance in place: a new command restarts it (its namespace, addresses and flows
    /// stay); a new restart policy applies to the next exit; a new check starts afresh; standby moves
    /// it out of or into the balancer. Its service cannot change.
    /// </summary>
    public InstanceInfo UpdateInstance(string instance, InstanceOptions options)
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            var errors = new ErrorCollector();
            var record = FindInstance(instance, "instance.name", errors);
            if (options.Command is { } cmd)
            {
                ValidateCommand(cmd, "instance.command", errors);
            }
            var restart = RestartPolicies.Parse(options.Restart, RestartPolicy.OnFailure, "instance.restart", errors);
            var check = HealthCheck.FromSpec(options.Health, "instance.health", errors);
            errors.ThrowIfAny();
            if (record!.State == InstanceState.Draining)
            {
                throw new RelayException(ErrorCode.Conflict, "instance", $"instance '{record.Name}' is leaving");
            }
            var updated = record with { Restart = RestartPolicies.Of(restart), Command = options.Command is null ? null : [.. options.Command] };

            var commandChanged = !SameCommand(record.Command, updated.Command);
            if (commandChanged)
            {
                if (_supervisor.Release(record.Name) is { } old)
                {
                    old.StopAsync(_options.StopGrace).GetAwaiter().GetResult();
                    old.Dispose();
                }
                updated = updated with { Pid = null, PidStart = null };
                if (updated.Command is { } command)
                {
                    var process = StartProcess(updated, command);
                    updated = updated with { Pid = process.Pid, PidStart = process.StartTime };
                    Supervise(updated.Name, process);
                }
            }
            if (!SameHealth(record.HealthSpec, options.Health))
            {
                _supervisor.StopHealth(record.Name);
                updated = updated with { HealthSpec = options.Health, Health = check is null ? HealthStates.None : HealthStates.Starting };
                if (check is not null)
                {
                    StartHealth(updated, check);
                }
            }
            var wantStandby = options.Standby;
            var svc = _state.Services[record.Service];
            ServiceRecord? newService = null;
            if (wantStandby && record.State == InstanceState.Active)
            {
                newService = svc with { Backends = svc.Backends.Remove(record.Name) };
                updated = updated with { State = InstanceState.Standby };
            }
            else if (!wantStandby && record.State == InstanceState.Standby)
            {
                newService = GrowBackends(svc, svc.Backends.Add(record.Name));
                updated = updated with { State = InstanceState.Active };
            }
            var step = Begin();
            if (newService is not null)
            {
                step.Put(newService);
            }
            step.Put(updated);
            Commit(step);
            Persist();
            Emit(EventKinds.InstanceAdded, updated.Name, $"instance {updated.Name} changed" + (commandChanged ? " (command restarted)" : ""), ("state", updated.State));
            return Info(updated);
        }
    }

    private static bool SameCommand(ImmutableArray<string>? a, ImmutableArray<string>? b)
        => a is null ? b is null : b is not null && a.Value.SequenceEqual(b.Value);

    private static bool SameHealth(Api.HealthSpec? a, Api.HealthSpec? b)
        => JsonSerializer.Serialize(a) == JsonSerializer.Serialize(b);
}
