using System.Threading.Channels;
using Relay.Engine;

namespace Relay.Daemon.Events;

/// <summary>
/// Every event of every network: the last <see cref="Capacity"/> kept for late readers, and pushed to
/// followers (<c>relay events --follow</c>). A follower that does not keep up loses the oldest of its
/// unread events rather than holding memory for them.
/// </summary>
public sealed class EventBus
{
    /// <summary>Events kept.</summary>
    public const int Capacity = 1000;

    private readonly Queue<RelayEvent> _recent = new();
    private readonly List<Channel<RelayEvent>> _followers = [];
    private readonly Lock _gate = new();

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
        }
        Published?.Invoke(e);
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
