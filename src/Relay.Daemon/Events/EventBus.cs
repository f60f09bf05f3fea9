using System.Threading.Channels;
using Relay.Engine;

namespace Relay.Daemon.Events;

/// <summary>
/// Every event of every network: the last <see cref="Capacity"/> kept for late readers, and pushed to
/// followers (<c>relay events --follow</c>). A follower that does not keep up loses the oldest of its
/// unread events rather than holding memory for them.
/// <para>
/// With <see cref="PersistTo"/>, the kept events also survive the daemon: they are written to the
/// store by a background writer in batches (never on the caller's path: a migration emits its event
/// before it returns), and loaded at the next start. A kill -9 loses at most the events of the last
/// few milliseconds.
/// </para>
/// </summary>
public sealed class EventBus : IDisposable
{
    /// <summary>Events kept.</summary>
    public const int Capacity = 1000;

    private readonly Queue<RelayEvent> _recent = new();
    private readonly List<Channel<RelayEvent>> _followers = [];
    private readonly Lock _gate = new();
    private Channel<RelayEvent>? _unsaved;
    private Task? _writer;

    /// <summary>Raised for each event (metrics count them).</summary>
    public event Action<RelayEvent>? Published;

    /// <summary>Records <paramref name="e"/> and hands it to followers.</summary>
    public void Publish(RelayEvent e)
    {
        lock (_gate)
        {
            _recent.Enqueue(e);
            while (_recent.Count > Capacity)
            {
                _recent.Dequeue();
            }
            foreach (var f in _followers)
            {
                f.Writer.TryWrite(e);
            }
            _unsaved?.Writer.TryWrite(e);
        }
        Published?.Invoke(e);
    }

    /// <summary>
    /// Loads the events kept in <paramref name="store"/> (before anything is published) and from
    /// now on writes every event there. <paramref name="failed"/> is told when a write fails; the
    /// events stay in memory.
    /// </summary>
    public void PersistTo(Store.RelayStore store, Action<string> failed)
    {
        var saved = store.LoadEvents(Capacity);
        var unsaved = Channel.CreateBounded<RelayEvent>(new BoundedChannelOptions(Capacity) { FullMode = BoundedChannelFullMode.DropOldest, SingleReader = true });
        lock (_gate)
        {
            // The stored events are older than anything published so far.
            var published = _recent.ToArray();
            _recent.Clear();
            foreach (var e in saved.Concat(published).TakeLast(Capacity))
            {
                _recent.Enqueue(e);
            }
            _unsaved = unsaved;
        }
        _writer = Task.Run(async () =>
        {
            var batch = new List<RelayEvent>();
            while (await unsaved.Reader.WaitToReadAsync().ConfigureAwait(false))
            {
                while (batch.Count < 256 && unsaved.Reader.TryRead(out var e))
                {
                    batch.Add(e);
                }
                try
                {
                    store.AppendEvents(batch, Capacity);
                }
                catch (Exception ex) when (ex is Microsoft.Data.Sqlite.SqliteException or InvalidOperationException or ObjectDisposedException)
                {
                    failed(ex.Message);
                }
                batch.Clear();
            }
        });
    }

    /// <summary>Writes the events not yet in the store, then stops writing.</summary>
    public void Dispose()
    {
        Channel<RelayEvent>? unsaved;
        lock (_gate)
        {
            unsaved = _unsaved;
            _unsaved = null;
        }
        unsaved?.Writer.TryComplete();
        _writer?.Wait(TimeSpan.FromSeconds(5));
    }

    /// <summary>The kept events, oldest first.</summary>
    public IReadOnlyList<RelayEvent> Recent()
    {
        lock (_gate)
        {
            return _recent.ToArray();
        }
    }

    /// <summary>The kept events, then every new one until <paramref name="ct"/> is cancelled.</summary>
    public async IAsyncEnumerable<RelayEvent> Follow([System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct)
    {
        var channel = Channel.CreateBounded<RelayEvent>(new BoundedChannelOptions(Capacity) { FullMode = BoundedChannelFullMode.DropOldest });
        RelayEvent[] backlog;
        lock (_gate)
        {
            backlog = _recent.ToArray();
            _followers.Add(channel);
        }
        try
        {
            foreach (var e in backlog)
            {
                yield return e;
            }
            while (await channel.Reader.WaitToReadAsync(ct).ConfigureAwait(false))
            {
                while (channel.Reader.TryRead(out var e))
                {
                    yield return e;
                }
            }
        }
        finally
        {
            lock (_gate)
            {
                _followers.Remove(channel);
            }
        }
    }
}
