using Microsoft.Extensions.Logging;
using Relay.Cluster;
using Relay.Core.Errors;

namespace Relay.Daemon.Cluster;

/// <summary>
/// Writes this node's <c>applied/NODE</c> record off the watch's path: the watch hands it each
/// revision its kernel took and goes on to the next step at once, instead of waiting a store round
/// trip per step. One write at a time; revisions that came while one was in flight are folded into
/// the next (only the newest is worth recording). A write the store refused (it is away) is tried
/// again every half second until it lands or a newer revision replaces it.
/// </summary>
public sealed partial class AppliedRecorder : IAsyncDisposable
{
    private static readonly TimeSpan RetryAfter = TimeSpan.FromMilliseconds(500);

    private readonly NodeLease _lease;
    private readonly string _node;
    private readonly ILogger _log;
    private readonly Lock _gate = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly SemaphoreSlim _wake = new(0, 1);
    private readonly Task _loop;
    private AppliedRecord? _pending;
    private long _written;

    /// <param name="lease">The node's lease: the record lives on it.</param>
    /// <param name="log">Where a late record is reported.</param>
    public AppliedRecorder(NodeLease lease, ILogger log)
    {
        _lease = lease;
        _node = lease.Record.Name;
        _log = log;
        _loop = Task.Run(RunAsync);
    }

    /// <summary>The newest revision recorded in the store so far.</summary>
    public long Written => Interlocked.Read(ref _written);

    /// <summary>Records, soon, that this node's kernel holds <paramref name="revision"/> since <paramref name="at"/>; returns at once.</summary>
    public void Record(long revision, DateTimeOffset at)
    {
        lock (_gate)
        {
            if (revision <= Written || (_pending is { } p && p.Revision >= revision))
            {
                return;
            }
            _pending = new AppliedRecord(revision, at);
        }
        if (_wake.CurrentCount == 0)
        {
            try
            {
                _wake.Release();
            }
            catch (SemaphoreFullException)
            {
                // Already woken: the loop takes the newest pending record.
            }
        }
    }

    private async Task RunAsync()
    {
        var failing = false;
        while (!_stop.IsCancellationRequested)
        {
            AppliedRecord? next;
            lock (_gate)
            {
                next = _pending;
                _pending = null;
            }
            if (next is null)
            {
                try
                {
                    await _wake.WaitAsync(_stop.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                continue;
            }
            try
            {
                await _lease.RecordAppliedAsync(next.Revision, next.At ?? DateTimeOffset.UtcNow, _stop.Token).ConfigureAwait(false);
                Interlocked.Exchange(ref _written, next.Revision);
                if (failing)
                {
                    failing = false;
                    LogRecorded(_log, _node, next.Revision);
                }
            }
            catch (Exception) when (_stop.IsCancellationRequested)
            {
                return; // stopping: the daemon's lease goes with it
            }
            catch (Exception e) when (e is RelayException or Grpc.Core.RpcException)
            {
                // The kernel holds the state; only the record of it is late (the store is away).
                // Said once per outage, not at every try.
                if (!failing)
                {
                    failing = true;
                    LogNotRecorded(_log, _node, next.Revision, e.Message);
                }
                lock (_gate)
                {
                    _pending ??= next;
                }
                try
                {
                    await Task.Delay(RetryAfter, _stop.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    /// <inheritdoc/>
    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        await _loop.ConfigureAwait(false);
        _stop.Dispose();
        _wake.Dispose();
    }

    [LoggerMessage(EventId = 86, Level = LogLevel.Warning, Message = "node {Node}: revision {Revision} applied but not recorded yet: {Error}; tried again every 0.5 s")]
    private static partial void LogNotRecorded(ILogger log, string node, long revision, string error);

    [LoggerMessage(EventId = 106, Level = LogLevel.Information, Message = "node {Node}: revision {Revision} recorded as applied (the store answers again)")]
    private static partial void LogRecorded(ILogger log, string node, long revision);
}
