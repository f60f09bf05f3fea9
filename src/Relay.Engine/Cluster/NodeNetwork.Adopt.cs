using System.Net;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Relay.Core.Conntrack;
using Relay.Core.Overlay;
using Relay.Core.Reconcile;
using Relay.Engine.Dataplane;
using Relay.Linux.Namespaces;
using Relay.Linux.Processes;
using Relay.Linux.Topology;

namespace Relay.Engine.Cluster;

/// <summary>What an adoption found and did.</summary>
/// <param name="TableRewritten">False when the kernel's table already held the state (nothing written).</param>
/// <param name="Adopted">Local instances whose namespace and veth were found and kept as they are.</param>
/// <param name="ProcessesAdopted">Commands found running and taken over.</param>
/// <param name="Wired">Local instances of the state that had to be created.</param>
/// <param name="Removed">Namespaces the record listed that the state no longer has, removed.</param>
/// <param name="StaleFlows">Stateless conntrack entries to an instance that no longer takes them, deleted.</param>
public sealed record AdoptReport(bool TableRewritten, IReadOnlyList<string> Adopted, IReadOnlyList<string> ProcessesAdopted, IReadOnlyList<string> Wired, IReadOnlyList<string> Removed, int StaleFlows);

/// <summary>
/// A daemon restart on a node: the kernel kept forwarding while nobody watched; the node's part is
/// taken over as it is and brought to the cluster's state without re-creating what is right. What
/// the previous daemon made is known from its <see cref="NetworkRecord"/> only, never from names.
/// </summary>
public sealed partial class NodeNetwork
{
    /// <summary>The last adoption's report (null for a part opened fresh).</summary>
    public AdoptReport? Adopted { get; private set; }

    /// <summary>
    /// True when <paramref name="record"/> describes a part of this node that can be taken over: its
    /// orchestrator namespace and its VXLAN device are still there.
    /// </summary>
    public static bool CanAdopt(NetworkRecord record, string node)
        => record.Node == node && record.Orchestrator == NetworkNames.Orchestrator(record.Network, node)
            && Netns.Exists(record.Orchestrator) && VxlanOverlay.Exists(record.Orchestrator);

    /// <summary>
    /// Takes over the part an earlier daemon of this node left (<paramref name="record"/>, see
    /// <see cref="CanAdopt"/>) and converges it to <paramref name="state"/>: instances whose namespace
    /// and veth exist are kept with their running commands; the table is compared with the state and
    /// written (one transaction) only when it differs; stateless flows the missed steps left pointing
    /// at an instance that no longer takes them are deleted; namespaces the record lists that the state
    /// no longer places here are removed. Nothing that is already right is touched.
    /// </summary>
    public static NodeNetwork Adopt(NetworkOptions options, IPAddress underlay, NetworkRecord record, NetworkState state, ILogger? logger = null)
    {
        var log = logger ?? NullLogger.Instance;
        var gateways = Validate(options);
        var ns = NetworkNames.Orchestrator(options.Name, options.Node);
        var mtu = VxlanPlan.Mtu(underlay.AddressFamily);
        var view = Projection.Project(state, options.Node!);
        var thread = TopologyBuilder.AdoptOrchestrator(ns);
        DataplaneRuntime? dataplane = null;
        NodeNetwork? network = null;
        try
        {
            dataplane = DataplaneRuntime.Adopt(thread, options.Name, view.Dataplane, log, out var rewritten);
            network = new NodeNetwork(options, log, thread, dataplane, gateways, mtu);
            var report = network.TakeOver(record, view, rewritten);
            network.Adopted = report;
            LogAdopted(log, options.Name, options.Node!, rewritten ? "rewritten" : "unchanged", report.Adopted.Count, report.ProcessesAdopted.Count, report.Wired.Count, report.Removed.Count, report.StaleFlows);
            return network;
        }
        catch
        {
            // The kernel is left as it was found: it keeps forwarding, the next daemon tries again.
            if (network is not null)
            {
                network.Dispose();
            }
            else
            {
                dataplane?.Dispose();
                thread.Dispose();
            }
            throw;
        }
    }

    private AdoptReport TakeOver(NetworkRecord record, NodeView view, bool rewritten)
    {
        lock (_gate)
        {
            var adopted = new List<string>();
            var processes = new List<string>();
            var pids = record.Processes.ToDictionary(p => p.Instance, StringComparer.Ordinal);
            var listed = record.Instances.ToHashSet(StringComparer.Ordinal);
            foreach (var instance in view.Local)
            {
                var wiring = WiringOf(instance);
                if (!listed.Contains(wiring.Namespace))
                {
                    continue; // wired by the reconcile below
                }
                if (!TopologyBuilder.IsWired(OrchestratorNamespace, wiring))
                {
                    // Half there (a crash while wiring): what remains goes, the reconcile below wires it again.
                    NamespacedProcess.KillNamespace(wiring.Namespace);
                    TopologyBuilder.UnwireInstance(OrchestratorNamespace, wiring);
                    continue;
                }
                _wired[instance.Name] = instance;
                adopted.Add(instance.Name);
                StartHealth(instance);
                if (instance.Command is { IsDefaultOrEmpty: false } command && pids.TryGetValue(instance.Name, out var p)
                    && InstanceProcess.Adopt(wiring.Namespace, command, LogFile(instance), p.Pid, p.StartTime) is { } process)
                {
                    _supervisor.Supervise(instance.Name, process);
                    processes.Add(instance.Name);
                }
            }

            // What the record lists and the state no longer places here: the previous daemon's, gone now.
            var keep = view.Local.Select(i => InstanceNamespace(i.Name)).ToHashSet(StringComparer.Ordinal);
            var removed = new List<string>();
            foreach (var ns in record.Instances.Where(n => !keep.Contains(n) && n.StartsWith(OrchestratorNamespace + ".", StringComparison.Ordinal)))
            {
                if (Netns.Exists(ns))
                {
                    NamespacedProcess.KillNamespace(ns);
                    Netns.Delete(ns);
                    removed.Add(ns);
                }
                NetnsEtc.Remove(ns);
            }

            // Stateless flows that follow a translation the missed steps took away: their next packet follows the table.
            var stale = DeleteFlowsNotIn(view);

            // The rest is an ordinary step from nothing known: missing instances wired, peers
            // (re)installed with replace, names published. The table already holds the state.
            var before = _wired.Keys.ToHashSet(StringComparer.Ordinal);
            Apply(view, System.Diagnostics.Stopwatch.GetTimestamp());
            var wired = view.Local.Select(i => i.Name).Where(n => !before.Contains(n)).ToArray();
            SaveRecord(view); // this process owns it now
            return new AdoptReport(rewritten, adopted, processes, wired, removed, stale);
        }
    }

    private int DeleteFlowsNotIn(NodeView view)
    {
        var allowed = new Dictionary<IPAddress, HashSet<IPAddress>>();
        foreach (var s in view.Dataplane.Services)
        {
            var to = s.Backends.SelectMany(b => new[] { b.Address4, b.Address6 }).ToHashSet();
            allowed[s.Vip4] = to;
            allowed[s.Vip6] = to;
        }
        var stale = _dataplane.ListFlows()
            .Where(e => e.Original.Protocol != IpProtocols.Tcp && allowed.TryGetValue(e.Original.Destination, out var to) && !to.Contains(e.Reply.Source))
            .ToArray();
        return stale.Length == 0 ? 0 : _dataplane.DeleteFlows(stale);
    }

    [LoggerMessage(EventId = 83, Level = LogLevel.Information, Message = "network {Network} on node {Node}: taken over from the previous daemon (table {Table}): {Adopted} instances kept, {Processes} commands adopted, {Wired} wired, {Removed} removed, {Stale} stale flows deleted")]
    private static partial void LogAdopted(ILogger log, string network, string node, string table, int adopted, int processes, int wired, int removed, int stale);
}
