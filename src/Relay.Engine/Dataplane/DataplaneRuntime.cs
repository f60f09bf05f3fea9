using System.Diagnostics;
using System.Net;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Relay.Core.Conntrack;
using Relay.Core.Dataplane;
using Relay.Core.Errors;
using Relay.Linux.Conntrack;
using Relay.Linux.Namespaces;
using Relay.Linux.Nftables;

namespace Relay.Engine.Dataplane;

/// <summary>
/// The data plane of one orchestrator namespace, kept open for the life of the network: one
/// libnftables context, one ctnetlink socket, and an event-fed index of the namespace's conntrack
/// entries. Every change is one nft transaction; stale flows are found in the index, never by
/// dumping the kernel's table on the hot path (a dump walks the host's whole conntrack hash table:
/// ~3.5 ms whatever the number of entries, see docs/decisions/002-conntrack-index.md).
/// </summary>
public sealed partial class DataplaneRuntime : IDisposable
{
    private readonly object _gate = new();
    private readonly ILogger _log;
    private readonly string _name;
    private readonly INftables _nft;
    private readonly IConntrack _conntrack;
    private readonly ConntrackFlowTable _flows;
    private readonly DataplaneImage _image;
    private bool _dirty;

    private DataplaneRuntime(string name, INftables nft, IConntrack conntrack, ConntrackFlowTable flows, ILogger log, DataplaneImage image, bool dirty)
    {
        _name = name;
        _nft = nft;
        _conntrack = conntrack;
        _flows = flows;
        _log = log;
        _image = image;
        _dirty = dirty;
    }

    /// <summary>
    /// Opens the handles inside <paramref name="orchestrator"/>'s namespace and installs Relay's
    /// table, empty, in one transaction (replacing any table of that name left there).
    /// </summary>
    public static DataplaneRuntime Open(NetnsThread orchestrator, string name, ILogger? log = null)
    {
        INftables? nft = null;
        try
        {
            nft = NftContext.Open(orchestrator);
            // Install the (empty) table first: its nat chains load conntrack into the namespace,
            // which the event subscription needs.
            nft.Run(NftScript.Full(NftRuleset.Empty).ToString());
            var runtime = OpenConntrack(orchestrator, name, nft, log, new DataplaneImage(), dirty: true);
            runtime.Apply([]);
            return runtime;
        }
        catch
        {
            nft?.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Takes over the table a previous run left in <paramref name="orchestrator"/>'s namespace. When it
    /// already holds exactly <paramref name="desired"/> nothing is written (a daemon restart changes
    /// nothing in the kernel); otherwise the whole table is replaced in one transaction.
    /// <paramref name="changed"/> says which. To compare, the desired table is rendered by nft itself in
    /// a scratch namespace and both listings are compared, so formatting never causes a false difference.
    /// </summary>
    public static DataplaneRuntime Adopt(NetnsThread orchestrator, string name, DataplaneSpec desired, ILogger? log, out bool changed)
    {
        INftables? nft = null;
        try
        {
            nft = NftContext.Open(orchestrator);
            var image = new DataplaneImage();
            var plan = image.Plan(desired.Services, links: desired.Links, flows: desired.Flows);
            var script = NftScript.Full(image.ToRuleset(plan)).ToString();
            string? current;
            try
            {
                current = nft.Run($"list table {NftNames.QualifiedTable}");
            }
            catch (NftException)
            {
                current = null; // no table (the namespace was recreated)
            }
            var expected = current is null ? null : RenderScratch(name, script);
            changed = current is null || !TableListing.Same(current, expected!);
            if (changed)
            {
                if (current is not null)
                {
                    var have = TableListing.Normalize(current);
                    var want = TableListing.Normalize(expected!);
                    LogTableDiffers(log ?? NullLogger.Instance, name, string.Join(" | ", have.Except(want).Take(5)), string.Join(" | ", want.Except(have).Take(5)));
                }
                nft.Run(script);
            }
            image.Commit(plan);
            return OpenConntrack(orchestrator, name, nft, log, image, dirty: false);
        }
        catch
        {
            nft?.Dispose();
            throw;
        }
    }

    private static DataplaneRuntime OpenConntrack(NetnsThread orchestrator, string name, INftables nft, ILogger? log, DataplaneImage image, bool dirty)
    {
        IConntrack? ct = null;
        ConntrackFlowTable? flows = null;
        try
        {
            // Events for every entry, including any created before the subscription (the default,
            // 2, only reports entries created after someone listened).
            if (Sysctl.Read(orchestrator, "net.netfilter.nf_conntrack_events") != "1")
            {
                Sysctl.Write(orchestrator, "net.netfilter.nf_conntrack_events", "1");
            }
            ct = orchestrator.Invoke(() => (IConntrack)ConntrackClient.Open());
            var client = ct;
            flows = orchestrator.Invoke(() => ConntrackFlowTable.Open(client));
            return new DataplaneRuntime(name, nft, ct, flows, log ?? NullLogger.Instance, image, dirty);
        }
        catch
        {
            flows?.Dispose();
            ct?.Dispose();
            throw;
        }
    }

    /// <summary>How nft lists <paramref name="script"/> once installed, in a scratch namespace removed at once.</summary>
    private static string RenderScratch(string network, string script)
    {
        // '_' cannot appear in network or instance names, so this never names a namespace of theirs.
        var ns = $"relay-{network}._verify";
        Netns.Delete(ns);
        Netns.Add(ns);
        try
        {
            using var thread = NetnsThread.Enter(ns);
            using var nft = NftContext.Open(thread);
            nft.Run(script);
            return nft.Run($"list table {NftNames.QualifiedTable}");
        }
        finally
        {
            Netns.Delete(ns);
        }
    }

    /// <summary>Number of services the kernel holds.</summary>
    public int ServiceCount
    {
        get
        {
            lock (_gate)
            {
                return _image.ServiceCount;
            }
        }
    }

    /// <summary>Conntrack entries in the index.</summary>
    public int IndexedFlows => _flows.Count;

    /// <summary>
    /// Sets <paramref name="services"/> (added or replaced), removes <paramref name="removedServices"/>,
    /// and likewise for links, in ONE transaction that emits only what changed (the whole table after a
    /// failure). On failure the kernel still holds the previous state and a <see cref="RelayException"/>
    /// (<see cref="ErrorCode.Kernel"/>) is thrown.
    /// </summary>
    public void Apply(
        IEnumerable<DataplaneService> services,
        IEnumerable<string>? removedServices = null,
        IEnumerable<DataplaneLink>? links = null,
        IEnumerable<string>? removedLinks = null,
        IEnumerable<DataplaneFlow>? flows = null,
        IEnumerable<string>? removedFlows = null)
    {
        lock (_gate)
        {
            var started = Stopwatch.GetTimestamp();
            Run(_image.Plan(services, removedServices, links, removedLinks, flows, removedFlows), started);
        }
    }

    /// <summary>
    /// Makes the table hold exactly <paramref name="desired"/>, in ONE transaction of what differs
    /// from what it holds (the whole table after a failure): the reconciler's one write. On failure
    /// the kernel still holds the previous state and a <see cref="RelayException"/> is thrown.
    /// </summary>
    public void Sync(DataplaneSpec desired)
    {
        lock (_gate)
        {
            var started = Stopwatch.GetTimestamp();
            Run(_image.PlanSync(desired), started);
        }
    }

    private void Run(DataplanePlan plan, long started)
    {
        {
            var tx = _dirty ? NftScript.Full(_image.ToRuleset(plan)) : plan.Transaction;
            if (!tx.IsEmpty)
            {
                var text = tx.ToString();
                var planned = Stopwatch.GetTimestamp();
                try
                {
                    _nft.Run(text);
                }
                catch (NftException e)
                {
                    // The kernel rejected the whole transaction, so it still holds the previous
                    // state; resync fully next time anyway, in case the table was changed behind
                    // our back.
                    _dirty = true;
                    LogNftFailed(_log, _name, e.Error, e.Commands);
                    throw new RelayException(ErrorCode.Kernel, "dataplane", e.Message, e);
                }
                LogTransaction(_log, _name, tx.IsFull ? "full" : "incremental", tx.Commands, tx.ElementsAdded, tx.ElementsDeleted,
                    Stopwatch.GetElapsedTime(started, planned).TotalMicroseconds, Stopwatch.GetElapsedTime(planned).TotalMicroseconds, text);
            }
            _image.Commit(plan);
            _dirty = false;
        }
    }

    /// <summary>Reinstalls the whole table from memory in one transaction (the recovery path).</summary>
    public void Resync()
    {
        lock (_gate)
        {
            _dirty = true;
        }
        Apply([]);
    }

    /// <summary>Deletes the stateless conntrack entries a step left stale (<see cref="DeleteStaleStatelessFlows"/>, one pass for all of them); returns the number deleted.</summary>
    public int DeleteStale(IReadOnlyList<Relay.Core.Reconcile.StaleTranslation> stale)
    {
        if (stale.Count == 0)
        {
            return 0;
        }
        var (virtualAddresses, oldAddresses) = Relay.Core.Reconcile.StaleTranslation.Addresses(stale);
        return DeleteStaleStatelessFlows([.. virtualAddresses], oldAddresses);
    }

    /// <summary>
    /// Deletes the ICMP/UDP (everything but TCP) conntrack entries whose original destination is one
    /// of <paramref name="virtualAddresses"/> and whose reply source is one of <paramref name="oldAddresses"/>,
    /// so their next packet is translated afresh. Call it only after the re-point committed: a packet
    /// in between would otherwise re-create the old mapping. Returns the number deleted.
    /// </summary>
    public int DeleteStaleStatelessFlows(IReadOnlyCollection<IPAddress> virtualAddresses, IEnumerable<IPAddress> oldAddresses)
    {
        var stale = new StaleFlows(virtualAddresses, oldAddresses);
        var entries = _flows.Find(virtualAddresses.ToHashSet(), stale.IsStatelessMatch);
        if (entries.Count == 0)
        {
            return 0;
        }
        var deleted = _conntrack.Delete(entries);
        _flows.Forget(entries);
        return deleted;
    }

    /// <summary>
    /// Every entry (any protocol) from <paramref name="virtualAddresses"/> translated to <paramref name="oldAddresses"/>,
    /// read from the kernel itself: a dump, so not for hot paths, but independent of the event index.
    /// </summary>
    public IReadOnlyList<ConntrackEntry> FlowsTo(IReadOnlyCollection<IPAddress> virtualAddresses, IEnumerable<IPAddress> oldAddresses)
    {
        var stale = new StaleFlows(virtualAddresses, oldAddresses);
        return _conntrack.List().Where(stale.Matches).ToArray();
    }

    /// <summary>Conntrack entries whose original destination is one of <paramref name="destinations"/> (from the event-fed index).</summary>
    public int CountFlowsTo(IReadOnlySet<IPAddress> destinations) => _flows.Find(destinations, static _ => true).Count;

    /// <summary>Deletes <paramref name="entries"/> (already gone ones are fine).</summary>
    public int DeleteFlows(IReadOnlyCollection<ConntrackEntry> entries)
    {
        if (entries.Count == 0)
        {
            return 0;
        }
        var deleted = _conntrack.Delete(entries);
        _flows.Forget(entries);
        return deleted;
    }

    /// <summary>Every conntrack entry of the namespace (a dump).</summary>
    public IReadOnlyList<ConntrackEntry> ListFlows() => _conntrack.List();

    /// <summary>One set of Relay's table as nft's JSON (with per-element counters).</summary>
    public string ListSetJson(string set) => _nft.RunJson($"list set {NftNames.QualifiedTable} {set}");

    /// <summary>Relay's table as nft lists it.</summary>
    public string ListTable() => _nft.Run($"list table {NftNames.QualifiedTable}");

    /// <summary>Closes the handles (the namespace can then go away).</summary>
    public void Dispose()
    {
        _flows.Dispose();
        _conntrack.Dispose();
        _nft.Dispose();
    }

    [LoggerMessage(EventId = 103, Level = LogLevel.Information, Message = "network {Network}: the kernel's table differs from the store (kernel only: {KernelOnly}; store only: {StoreOnly}); replacing it")]
    private static partial void LogTableDiffers(ILogger log, string network, string kernelOnly, string storeOnly);

    [LoggerMessage(EventId = 101, Level = LogLevel.Error, Message = "network {Network}: nftables refused a transaction: {Error}\n{Commands}")]
    private static partial void LogNftFailed(ILogger log, string network, string error, string commands);

    [LoggerMessage(EventId = 102, Level = LogLevel.Trace, Message = "network {Network}: {Kind} nft transaction, {Commands} commands, +{Added}/-{Deleted} elements, planned in {PlanUs:F0} us, committed in {RunUs:F0} us:\n{Text}")]
    private static partial void LogTransaction(ILogger log, string network, string kind, int commands, int added, int deleted, double planUs, double runUs, string text);
}
