using System.Collections.Immutable;
using System.Diagnostics;
using System.Net;
using Relay.Core.Conntrack;
using Relay.Core.Dataplane;
using Relay.Core.Errors;
using Relay.Core.Naming;
using Relay.Linux.Namespaces;
using Relay.Linux.Processes;
using Relay.Linux.Topology;

namespace Relay.Engine;

public sealed partial class RelayNetwork
{

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
            if (next is not null && next.Health is HealthStates.Starting or HealthStates.Unhealthy)
            {
                // Make before break: the target must pass its check before it takes the flows.
                errors.Add(ErrorCode.Conflict, "to", $"instance '{next.Name}' is {next.Health}, not healthy; wait for its health check to pass");
            }
            errors.ThrowIfAny();

            var started = Stopwatch.GetTimestamp();
            // In place: the new instance takes the old one's slot (the cluster's rule too).
            var backends = ImmutableList.CreateRange(Relay.Core.Reconcile.BalancerSlots.Repoint(svc!.Backends, old!.Name, next!.Name));
            var deadline = drain ?? _options.DrainTimeout;
            var step = Begin();
            step.Put(GrowBackends(svc, backends));
            // Every flow address of the service on the old instance moves in the same transaction.
            foreach (var flow in FlowsTo(svc.Name, old.Name))
            {
                step.Put(flow with { Backend = next.Name });
            }
            step.Put(next with { State = InstanceState.Active });
            step.Put(old with { State = InstanceState.Draining, DrainUntil = DateTimeOffset.UtcNow + deadline });
            var (repointed, deleted) = Commit(step);
            var cleaned = Stopwatch.GetTimestamp();
            Persist();
            LogMigrated(_log, Name, svc.Name.Value, old.Name, next.Name, Stopwatch.GetElapsedTime(started, repointed).TotalMicroseconds,
                Stopwatch.GetElapsedTime(repointed, cleaned).TotalMicroseconds, deleted);
            Emit(EventKinds.Migration, svc.Name.Value, $"{svc.Name} moved {old.Name} -> {next.Name}",
                ("from", old.Name), ("to", next.Name), ("repointUs", Math.Round(Stopwatch.GetElapsedTime(started, repointed).TotalMicroseconds)),
                ("cleanupUs", Math.Round(Stopwatch.GetElapsedTime(repointed, cleaned).TotalMicroseconds)), ("staleFlows", deleted));
            var drained = StartDrain(old, svc, deadline, repointed);
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
                RemoveNowLocked(_state.Instances[fresh.Name]);
                throw;
            }
        }
    }
}
