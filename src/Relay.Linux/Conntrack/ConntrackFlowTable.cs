using System.Net;
using Relay.Core.Conntrack;
using Relay.Linux.Interop;
using Relay.Linux.Netlink;

namespace Relay.Linux.Conntrack;

/// <summary>
/// An in-process index of one network namespace's conntrack entries, kept current by ctnetlink
/// events (NFNLGRP_CONNTRACK_NEW and NFNLGRP_CONNTRACK_DESTROY), so the entries to a set of
/// destinations can be found in microseconds instead of by a table dump (a dump walks the kernel's
/// global conntrack hash, whatever namespace asks, and costs milliseconds).
/// <para>
/// A background thread ("conntrack events ...") reads the events as they come. <see cref="Find"/>
/// first reads whatever is still queued on the socket, so an entry the kernel confirmed before the
/// call is always seen; if the kernel dropped events since the last look (the receive queue
/// overflowed, ENOBUFS), it rebuilds the index from a full dump first (the slow path, counted in
/// <see cref="Resyncs"/>).
/// </para>
/// <para>
/// What is indexed is each entry as its NEW event (or the last dump) described it: UPDATE events are
/// not subscribed, so <see cref="ConntrackEntry.TcpState"/> and <see cref="ConntrackEntry.Mark"/> may
/// be out of date; tuples and zone never change for the life of an entry. An entry can outlive its
/// kernel counterpart in the index when the kernel sends no DESTROY event for it: with
/// net.netfilter.nf_conntrack_events = 2 (the default) entries created while nobody listened have no
/// event cache and end silently (set it to 1 in the namespace to get every DESTROY). Such leftovers
/// are harmless to a delete (ENOENT is not an error) and <see cref="Forget"/> drops them.
/// </para>
/// <para>All members are safe to call from any thread.</para>
/// </summary>
public sealed class ConntrackFlowTable : IDisposable
{
    /// <summary>
    /// The receive buffer asked for: a ctnetlink event costs about 1 KiB of queue (skb truesize), so
    /// 8 MiB absorbs several thousand events while the reader is descheduled or a dump runs.
    /// </summary>
    private const int DefaultReceiveBuffer = 8 << 20;

    /// <summary>NFNLGRP_CONNTRACK_NEW (1) and NFNLGRP_CONNTRACK_DESTROY (3) as bind(2) nl_groups bits (1 &lt;&lt; (group - 1)).</summary>
    private const uint EventGroups = (1u << (1 - 1)) | (1u << (3 - 1));

    /// <summary>Large enough for any event datagram (ctnetlink sends each event in its own skb of well under 4 KiB).</summary>
    private const int DatagramBuffer = 64 * 1024;

    /// <summary>
    /// The reader thread gives the lock back after this many datagrams, so a Find (or Dispose) never
    /// waits behind a whole backlog being read.
    /// </summary>
    private const int ReaderBatch = 256;

    /// <summary>
    /// What a queued datagram costs the receive buffer beyond its bytes, at least: the kernel charges
    /// skb truesize, which adds struct sk_buff and skb_shared_info (576 bytes on x86_64) to the data.
    /// </summary>
    private const int SkbOverheadLowerBound = 512;

    /// <summary>Dispose waits this long for the reader thread (it is woken at once; this only bounds a bug).</summary>
    private static readonly TimeSpan ReaderJoinTimeout = TimeSpan.FromSeconds(5);

    private static readonly ushort NewMessage = CtNetlink.MessageType(CtNetlink.IPCTNL_MSG_CT_NEW);
    private static readonly ushort DeleteMessage = CtNetlink.MessageType(CtNetlink.IPCTNL_MSG_CT_DELETE);

    private readonly Lock _lock = new();
    private readonly IConntrack _conntrack;
    private readonly NetlinkSocket _events;
    private readonly SocketWaiter _waiter = new();
    private readonly byte[] _datagram = new byte[DatagramBuffer];
    private readonly Dictionary<FlowKey, ConntrackEntry> _flows = [];
    private readonly Dictionary<IPAddress, Dictionary<FlowKey, ConntrackEntry>> _byDestination = [];
    private Thread? _reader;
    private volatile bool _stopping;
    private int _disposed;

    // Guarded by _lock (read without it through Interlocked.Read).
    private bool _lost;
    private long _eventsSeen;
    private long _malformedEvents;
    private long _resyncs;
    private long _overruns;

    private ConntrackFlowTable(IConntrack conntrack, NetlinkSocket events)
    {
        _conntrack = conntrack;
        _events = events;
    }

    /// <summary>Entries indexed now (without reading queued events first).</summary>
    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _flows.Count;
            }
        }
    }

    /// <summary>ctnetlink NEW and DESTROY events read so far (malformed ones included; the dumps are not events).</summary>
    public long EventsSeen => Interlocked.Read(ref _eventsSeen);

    /// <summary>Events that could not be parsed and were skipped.</summary>
    public long MalformedEvents => Interlocked.Read(ref _malformedEvents);

    /// <summary>How many times the index was rebuilt from a full dump because the kernel had dropped events.</summary>
    public long Resyncs => Interlocked.Read(ref _resyncs);

    /// <summary>Receive-queue overruns (ENOBUFS, or a cut datagram) seen: each means events were lost.</summary>
    internal long Overruns => Interlocked.Read(ref _overruns);

    /// <summary>The receive buffer the kernel granted the event socket.</summary>
    internal int ReceiveBufferSize => _events.ReceiveBufferSize;

    /// <summary>True while the reader thread runs.</summary>
    internal bool IsReaderRunning => _reader?.IsAlive == true;

    /// <summary>The exception that stopped the reader thread, if one did (the index then stays correct through <see cref="Find"/>, only slower).</summary>
    internal Exception? ReaderFault { get; private set; }

    /// <summary>
    /// Subscribes to the conntrack events of the network namespace of the CALLING THREAD, then seeds
    /// the index with one full <see cref="IConntrack.List"/> and starts the reader thread.
    /// <para>
    /// Call it on a thread inside the target namespace (a <see cref="Namespaces.NetnsThread"/>, such as
    /// the orchestrator's), with a <paramref name="conntrack"/> opened in that same namespace: the event
    /// socket belongs to the namespace of the thread that creates it. Subscribing before dumping means no
    /// entry created in between is missed (one seen both ways is simply indexed once).
    /// </para>
    /// <para>
    /// <paramref name="conntrack"/> stays owned by the caller and must outlive this table (resyncs dump
    /// through it).
    /// </para>
    /// </summary>
    /// <exception cref="SystemCallException">The socket could not be opened or the dump failed.</exception>
    public static ConntrackFlowTable Open(IConntrack conntrack) => Open(conntrack, DefaultReceiveBuffer);

    /// <summary><see cref="Open(IConntrack)"/> with a chosen receive buffer (tests force overruns with a tiny one).</summary>
    internal static ConntrackFlowTable Open(IConntrack conntrack, int receiveBufferBytes)
    {
        ArgumentNullException.ThrowIfNull(conntrack);
        var socket = new NetlinkSocket(Libc.NETLINK_NETFILTER, EventGroups, receiveBufferBytes);
        ConntrackFlowTable? table = null;
        try
        {
            table = new ConntrackFlowTable(conntrack, socket);
            var label = NamespaceLabel();
            lock (table._lock)
            {
                table.Rebuild(conntrack.List());
                // Events queued during the dump, applied after it; a loss among them leaves _lost set
                // and the first Find resyncs.
                table.DrainQueued();
            }
            table._reader = new Thread(table.ReadEvents) { IsBackground = true, Name = "conntrack events " + label };
            table._reader.Start();
            return table;
        }
        catch
        {
            if (table is null)
            {
                socket.Dispose();
            }
            else
            {
                table.Dispose();
            }
            throw;
        }
    }

    /// <summary>
    /// The indexed entries whose original destination is in <paramref name="originalDestinations"/>
    /// and that match <paramref name="predicate"/>. Every event already queued is applied first, so
    /// any entry the kernel confirmed before this call is considered; if events were lost since the
    /// last resync, the index is first rebuilt from a full dump (milliseconds; see <see cref="Resyncs"/>).
    /// <paramref name="predicate"/> runs under the table's lock: keep it quick and do not block in it.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The table is disposed.</exception>
    /// <exception cref="SystemCallException">Reading the events or the resync dump failed.</exception>
    public IReadOnlyList<ConntrackEntry> Find(IReadOnlySet<IPAddress> originalDestinations, Func<ConntrackEntry, bool> predicate)
    {
        ArgumentNullException.ThrowIfNull(originalDestinations);
        ArgumentNullException.ThrowIfNull(predicate);
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed != 0, this);
            DrainQueued();
            if (_lost)
            {
                Resync();
            }

            var found = new List<ConntrackEntry>();
            // Walk whichever side is smaller: usually the few destinations asked for.
            if (originalDestinations.Count <= _byDestination.Count)
            {
                foreach (var destination in originalDestinations)
                {
                    if (destination is not null && _byDestination.TryGetValue(destination, out var flows))
                    {
                        Collect(flows, predicate, found);
                    }
                }
            }
            else
            {
                foreach (var (destination, flows) in _byDestination)
                {
                    if (originalDestinations.Contains(destination))
                    {
                        Collect(flows, predicate, found);
                    }
                }
            }
            return found;
        }
    }

    /// <summary>
    /// Drops <paramref name="entries"/> from the index, typically right after deleting them from the
    /// kernel (their DESTROY events, if any, come later and change nothing: removal is idempotent).
    /// An entry is dropped only while the indexed entry with its original tuple and zone also has its
    /// reply tuple, so a NEW entry that already replaced a deleted one (same client tuple, translated
    /// elsewhere) is kept.
    /// </summary>
    public void Forget(IEnumerable<ConntrackEntry> entries)
    {
        ArgumentNullException.ThrowIfNull(entries);
        lock (_lock)
        {
            foreach (var entry in entries)
            {
                if (entry?.Original is null)
                {
                    continue;
                }
                var key = new FlowKey(entry.Original, entry.Zone);
                if (_flows.TryGetValue(key, out var indexed)
                    && (ReferenceEquals(indexed, entry) || Equals(indexed.Reply, entry.Reply)))
                {
                    Remove(key);
                }
            }
        }
    }

    /// <summary>
    /// Stops the reader thread (woken at once, waited for a bounded time) and closes the event socket.
    /// The <see cref="IConntrack"/> given to <see cref="Open(IConntrack)"/> is not disposed.
    /// </summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        _stopping = true;
        _waiter.Wake();
        if (_reader is { } reader && reader != Thread.CurrentThread)
        {
            reader.Join(ReaderJoinTimeout);
        }
        lock (_lock)
        {
            // Reference-counted: if the reader were still in recv/poll, the close waits for it.
            _events.Dispose();
        }
        _waiter.Dispose();
    }

    /// <summary>
    /// Holds the table's lock until the result is disposed, on the calling thread: the reader thread
    /// cannot drain meanwhile, so events pile up on the socket (tests force an overrun with it).
    /// Dispose the result on the same thread.
    /// </summary>
    internal IDisposable PauseReader()
    {
        _lock.Enter();
        return new LockRelease(_lock);
    }

    /// <summary>Applies one datagram of events as if it had been received (tests feed crafted bytes).</summary>
    internal void ApplyDatagram(ReadOnlySpan<byte> datagram)
    {
        lock (_lock)
        {
            Apply(datagram);
        }
    }

    private static void Collect(Dictionary<FlowKey, ConntrackEntry> flows, Func<ConntrackEntry, bool> predicate, List<ConntrackEntry> found)
    {
        foreach (var entry in flows.Values)
        {
            if (predicate(entry))
            {
                found.Add(entry);
            }
        }
    }

    /// <summary>"net:[4026532xxx]": the calling thread's network namespace, for the reader thread's name.</summary>
    private static string NamespaceLabel()
    {
        try
        {
            return new FileInfo("/proc/thread-self/ns/net").LinkTarget ?? "net:[?]";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return "net:[?]";
        }
    }

    /// <summary>The reader thread: waits for the socket to be readable, then drains it under the lock.</summary>
    private void ReadEvents()
    {
        // Waiting happens outside the lock, reading inside it: a datagram is never taken off the socket
        // without being applied in the same critical section, which is what lets Find's own drain
        // promise that nothing queued before it is missed.
        var idleWakeups = 0;
        try
        {
            while (!_stopping)
            {
                var result = _waiter.Wait(_events.Handle, Timeout.Infinite);
                if (result == SocketWaitResult.Woken)
                {
                    return;
                }
                if (result != SocketWaitResult.Ready)
                {
                    continue;
                }
                int read;
                lock (_lock)
                {
                    if (_stopping)
                    {
                        return;
                    }
                    read = Drain(ReaderBatch, long.MaxValue);
                }
                // A Find may have drained the socket between the wakeup and the lock; but a socket that
                // keeps polling ready with nothing to read must not spin a core.
                idleWakeups = read == 0 ? idleWakeups + 1 : 0;
                if (idleWakeups >= 100)
                {
                    Thread.Sleep(1);
                }
            }
        }
        catch (ObjectDisposedException) when (_stopping)
        {
            // Disposed while waking up.
        }
        catch (Exception e)
        {
            // A background thread must not take the process down. The events stay queued on the socket:
            // Find drains them (and resyncs after the overrun that follows), so the index stays correct.
            ReaderFault = e;
        }
    }

    /// <summary>
    /// Applies every datagram that was queued on the socket when called. Call under the lock.
    /// <para>
    /// It reads until EAGAIN, but no further than the receive buffer: what was queued at the start is
    /// charged at most sk_rcvbuf (plus the one datagram the kernel lets overshoot), and each datagram
    /// read is counted at no more than it was charged, so once the count passes that, everything queued
    /// at the start has been read. Under an event flood faster than it reads, it stops there instead of
    /// chasing the producer.
    /// </para>
    /// </summary>
    private void DrainQueued() => Drain(int.MaxValue, (long)_events.ReceiveBufferSize + DatagramBuffer + SkbOverheadLowerBound);

    /// <summary>
    /// Applies queued datagrams until EAGAIN, <paramref name="maxDatagrams"/> datagrams, or datagrams
    /// charged (at least) <paramref name="chargeBudget"/> bytes of receive buffer. Call under the lock.
    /// Returns how many receives returned something (datagrams and overrun reports).
    /// </summary>
    private int Drain(int maxDatagrams, long chargeBudget)
    {
        var read = 0;
        long charged = 0;
        while (read < maxDatagrams && charged < chargeBudget)
        {
            switch (_events.ReceiveNotification(_datagram, out var length))
            {
                case NetlinkNotification.None:
                    return read;
                case NetlinkNotification.Datagram:
                    charged += length + SkbOverheadLowerBound;
                    Apply(_datagram.AsSpan(0, length));
                    break;
                case NetlinkNotification.Truncated:
                    // A datagram bigger than the buffer was read and cut: its events are gone.
                    charged += DatagramBuffer + SkbOverheadLowerBound;
                    _malformedEvents++;
                    _lost = true;
                    _overruns++;
                    break;
                default:
                    // Overrun: the kernel dropped events; the index is incomplete until resynced.
                    _lost = true;
                    _overruns++;
                    break;
            }
            read++;
        }
        return read;
    }

    /// <summary>
    /// Reads the datagrams queued when called and throws them away (the dump that follows supersedes
    /// them), bounded like <see cref="DrainQueued"/>. Call under the lock.
    /// </summary>
    private void Discard()
    {
        var budget = (long)_events.ReceiveBufferSize + DatagramBuffer + SkbOverheadLowerBound;
        long charged = 0;
        while (charged < budget)
        {
            switch (_events.ReceiveNotification(_datagram, out var length))
            {
                case NetlinkNotification.None:
                    return;
                case NetlinkNotification.Datagram:
                    charged += length + SkbOverheadLowerBound;
                    break;
                case NetlinkNotification.Truncated:
                    charged += DatagramBuffer + SkbOverheadLowerBound;
                    break;
            }
        }
    }

    /// <summary>
    /// Rebuilds the index from a full dump, then applies the events queued meanwhile. Call under the lock.
    /// Entries confirmed before the dump began are in it, so one pass is enough for the caller; a loss
    /// during the dump only concerns later entries and leaves <see cref="_lost"/> set for the next Find.
    /// </summary>
    private void Resync()
    {
        _resyncs++;
        // Events queued before the dump are older than it, and among them may be a NEW whose DESTROY was
        // dropped: applied after the dump, it would resurrect a dead entry.
        Discard();
        _lost = false;
        IReadOnlyList<ConntrackEntry> entries;
        try
        {
            entries = _conntrack.List();
        }
        catch
        {
            // Events were discarded: the index is stale until a resync succeeds.
            _lost = true;
            throw;
        }
        Rebuild(entries);
        DrainQueued();
    }

    private void Rebuild(IReadOnlyList<ConntrackEntry> entries)
    {
        _flows.Clear();
        _byDestination.Clear();
        foreach (var entry in entries)
        {
            Upsert(entry);
        }
    }

    /// <summary>Applies the events in one datagram (several may be batched). Call under the lock.</summary>
    private void Apply(ReadOnlySpan<byte> datagram)
    {
        var reader = new NetlinkReader(datagram);
        try
        {
            while (reader.TryRead(out var message))
            {
                // Control messages (NLMSG_NOOP and the like) and anything not a conntrack event are not ours.
                if (message.Type != NewMessage && message.Type != DeleteMessage)
                {
                    continue;
                }
                _eventsSeen++;
                ConntrackEntry entry;
                try
                {
                    entry = ConntrackClient.ParseEntry(message);
                }
                catch (InvalidDataException)
                {
                    _malformedEvents++;
                    continue;
                }
                if (message.Type == NewMessage)
                {
                    Upsert(entry);
                }
                else
                {
                    Remove(new FlowKey(entry.Original, entry.Zone));
                }
            }
        }
        catch (InvalidDataException)
        {
            // The framing itself is broken: the rest of the datagram, however many events, is unreadable.
            _malformedEvents++;
            _lost = true;
        }
    }

    private void Upsert(ConntrackEntry entry)
    {
        var key = new FlowKey(entry.Original, entry.Zone);
        _flows[key] = entry;
        var destination = entry.Original.Destination;
        if (!_byDestination.TryGetValue(destination, out var flows))
        {
            flows = [];
            _byDestination.Add(destination, flows);
        }
        flows[key] = entry;
    }

    private void Remove(FlowKey key)
    {
        if (!_flows.Remove(key))
        {
            return;
        }
        var destination = key.Original.Destination;
        if (_byDestination.TryGetValue(destination, out var flows) && flows.Remove(key) && flows.Count == 0)
        {
            _byDestination.Remove(destination);
        }
    }

    /// <summary>What identifies an entry in the kernel's table: its original tuple and its zone.</summary>
    private readonly record struct FlowKey(ConntrackTuple Original, ushort Zone);

    private sealed class LockRelease(Lock held) : IDisposable
    {
        private int _released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0)
            {
                held.Exit();
            }
        }
    }
}
