using System.Collections.Immutable;
using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Relay.Core.Conntrack;
using Relay.Core.Dataplane;
using Relay.Core.Errors;
using Relay.Engine.Dataplane;
using Relay.Engine.Health;
using Relay.Engine.State;
using Relay.Linux.Namespaces;
using Relay.Linux.Processes;
using Relay.Linux.Topology;

namespace Relay.Engine;

/// <summary>
/// A daemon restart: the kernel kept forwarding while nobody was watching; now the network is
/// rebuilt from the store and the kernel is looked at and converged, without re-creating what is
/// already right. Namespaces, links, the table and running commands are adopted as they are.
/// </summary>
public sealed partial class RelayNetwork
{
    /// <summary>What a restore found and did.</summary>
    /// <param name="TableRewritten">False when the kernel's table already matched the store (nothing written).</param>
    /// <param name="InstancesRewired">Instances whose namespace or link had to be created again.</param>
    /// <param name="ProcessesAdopted">Commands found running and taken over.</param>
    /// <param name="ProcessesStarted">Commands that were not running and were started.</param>
    /// <param name="OrphansRemoved">Namespaces of this network the store did not know (a crash between kernel and store), removed.</param>
    public sealed record RestoreReport(bool TableRewritten, IReadOnlyList<string> InstancesRewired, IReadOnlyList<string> ProcessesAdopted, IReadOnlyList<string> ProcessesStarted, IReadOnlyList<string> OrphansRemoved);

    /// <summary>The last restore's report (null for a network created fresh).</summary>
    public RestoreReport? Restored { get; private set; }

    /// <summary>Rebuilds a network from <paramref name="stored"/> and converges the kernel to it.</summary>
    public static RelayNetwork Restore(StoredNetwork stored, ILogger? logger = null, INetworkStore? store = null)
    {
        var log = logger ?? NullLogger.Instance;
        var errors = new ErrorCollector();
        var (name, pools, upstreams) = ValidateOptions(stored.Options, errors);
        errors.ThrowIfAny();
        var options = stored.Options with { Name = name! };
        var ns = NetworkNames.Orchestrator(options.Name, options.Node);
        var fresh = !Netns.Exists(ns);
        var thread = fresh ? TopologyBuilder.CreateOrchestrator(ns) : TopologyBuilder.AdoptOrchestrator(ns);
        DataplaneRuntime? dataplane = null;
        try
        {
            var services = stored.Services.Select(FromStored).ToArray();
            var instances = stored.Instances.Select(FromStored).ToArray();
            var flows = stored.Flows.Select(FromStored).ToArray();

            // Records first, so the desired data plane can be computed before touching the kernel.
            var network = new RelayNetwork(options, log, thread, null!, pools) { _store = store };
            network._state = LocalState.Of(services, instances, flows);
            foreach (var s in services)
            {
                pools[2]!.Claim(s.Vip4);
                pools[3]!.Claim(s.Vip6);
            }
            foreach (var i in instances)
            {
                network._instanceByAddress[i.Address4] = i.Name;
                network._instanceByAddress[i.Address6] = i.Name;
                pools[0]!.Claim(i.Address4);
                pools[1]!.Claim(i.Address6);
                network._nextIndex = Math.Max(network._nextIndex, i.Index + 1);
            }
            foreach (var f in flows)
            {
                pools[4]!.Claim(f.Flow4);
                pools[5]!.Claim(f.Flow6);
            }
            dataplane = DataplaneRuntime.Adopt(thread, options.Name, LocalPlan.All(network._state), log, out var rewritten);
            network._dataplane = dataplane;
            var report = network.Converge(rewritten);
            network.PublishNames();
            network.StartDns(upstreams);
            network.Restored = report;
            LogRestored(log, options.Name, report.TableRewritten, report.InstancesRewired.Count, report.ProcessesAdopted.Count, report.ProcessesStarted.Count, report.OrphansRemoved.Count);
            network.Emit(EventKinds.NetworkUp, network.Name, $"network {network.Name} restored: table {(rewritten ? "rewritten" : "unchanged")}, " +
                $"{report.ProcessesAdopted.Count} commands adopted, {report.ProcessesStarted.Count} started, {report.InstancesRewired.Count} instances re-wired");
            return network;
        }
        catch
        {
            dataplane?.Dispose();
            thread.Dispose();
            if (fresh)
            {
                Netns.Delete(ns);
            }
            throw;
        }
    }

    /// <summary>Instances: wiring, resolver file, command, health check, pending drains; then orphans.</summary>
    private RestoreReport Converge(bool tableRewritten)
    {
        lock (_gate)
        {
            var rewired = new List<string>();
            var adopted = new List<string>();
            var started = new List<string>();
            foreach (var record in _state.Instances.Values.ToArray())
            {
                var wiring = Wiring(record);
                if (!TopologyBuilder.IsWired(OrchestratorNamespace, wiring))
                {
                    TopologyBuilder.UnwireInstance(OrchestratorNamespace, wiring);
                    TopologyBuilder.WireInstance(OrchestratorNamespace, _gateways, wiring);
                    rewired.Add(record.Name);
                }
                WriteResolvConf(record);
                var current = record;
                if (record.Command is { } command && record.State != InstanceState.Draining)
                {
                    var process = record.Pid is { } pid && record.PidStart is { } start
                        ? InstanceProcess.Adopt(record.Namespace, command, LogFile(record), pid, start)
                        : null;
                    if (process is not null)
                    {
                        adopted.Add(record.Name);
                        Supervise(record.Name, process);
                    }
                    else if (StartsAgain(record))
                    {
                        // It exited while nobody watched (exit code unknown: a failure, as for an
                        // adopted command), or its restart was pending: this start is that restart.
                        process = StartProcess(record, command);
                        current = record with { Pid = process.Pid, PidStart = process.StartTime, Restarts = record.Restarts + 1, Ended = false };
                        Update(current);
                        started.Add(record.Name);
                        Supervise(record.Name, process);
                    }
                    else if (!record.Ended)
                    {
                        current = record with { Pid = null, PidStart = null, Ended = true };
                        Update(current);
                    }
                }
                if (HealthCheck.FromSpec(record.HealthSpec, "health", new ErrorCollector()) is { } check)
                {
                    StartHealth(current, check);
                }
                if (record.State == InstanceState.Draining && _state.Services.TryGetValue(record.Service, out var svc))
                {
                    var remaining = record.DrainUntil is { } until ? until - DateTimeOffset.UtcNow : TimeSpan.Zero;
                    _ = StartDrain(record, svc, remaining < TimeSpan.Zero ? TimeSpan.Zero : remaining, Stopwatch.GetTimestamp());
                }
            }
            var orphans = RemoveOrphans();
            DeleteFlowsTheStoreDoesNotKnow();
            Persist();
            return new RestoreReport(tableRewritten, rewired, adopted, started, orphans);
        }
    }

    /// <summary>
    /// Whether a command found not running is started at restore: never when it ended and its
    /// policy kept it down, nor when its policy is never; otherwise yes (it exited while the daemon
    /// was down with an unknown exit code, counted as a failure, or its restart was pending).
    /// </summary>
    private static bool StartsAgain(InstanceRecord record)
        => !record.Ended && RestartPolicies.Parse(record.Restart, RestartPolicy.OnFailure, "restart", new ErrorCollector()) != RestartPolicy.Never;

    /// <summary>
    /// Stateless (non-TCP) conntrack entries of a virtual or flow address translated to an instance
    /// that, by the store, does not take that address's flows. A daemon killed inside an operation
    /// after the kernel changed and before the store did (a migration: re-pointed, stale entries
    /// deleted, the next packets translated to the new instance, then the crash) has its table put
    /// back to the store's view by the restore, but flows created meanwhile would keep following
    /// the lost change for as long as they last; the daemon would say one instance and the kernel
    /// deliver to another. Deleted after the table is right, their next packet follows the table.
    /// TCP connections stay where they are, as in a migration.
    /// </summary>
    private int DeleteFlowsTheStoreDoesNotKnow()
    {
        var allowed = new Dictionary<System.Net.IPAddress, HashSet<System.Net.IPAddress>>();
        foreach (var svc in _state.Services.Values)
        {
            var to = EffectiveBackends(svc).SelectMany(i => new[] { i.Address4, i.Address6 }).ToHashSet();
            allowed[svc.Vip4] = to;
            allowed[svc.Vip6] = to;
        }
        foreach (var f in _state.Flows.Values)
        {
            var to = _state.Instances.TryGetValue(f.Backend, out var b) ? new HashSet<System.Net.IPAddress> { b.Address4, b.Address6 } : [];
            allowed[f.Flow4] = to;
            allowed[f.Flow6] = to;
        }
        var stale = _dataplane.ListFlows()
            .Where(e => e.Original.Protocol != IpProtocols.Tcp && allowed.TryGetValue(e.Original.Destination, out var to) && !to.Contains(e.Reply.Source))
            .ToArray();
        if (stale.Length > 0)
        {
            LogStaleAtRestore(_log, Name, stale.Length);
            _dataplane.DeleteFlows(stale);
        }
        return stale.Length;
    }

    /// <summary>
    /// Namespaces named as this network's instances (<c>relay-NET.NAME</c>) that the store does not
    /// list: created by an operation that crashed before it was recorded. They are Relay's by name
    /// and by record of nobody else, so they go.
    /// </summary>
    private List<string> RemoveOrphans()
    {
        var known = _state.Instances.Values.Select(i => i.Namespace).ToHashSet(StringComparer.Ordinal);
        var prefix = OrchestratorNamespace + ".";
        var removed = new List<string>();
        foreach (var ns in Netns.List())
        {
            if (ns.StartsWith(prefix, StringComparison.Ordinal) && !known.Contains(ns))
            {
                NamespacedProcess.KillNamespace(ns);
                Netns.Delete(ns);
                NetnsEtc.Remove(ns);
                removed.Add(ns);
            }
        }
        return removed;
    }
}
