using System.Diagnostics;
using System.Net.Sockets;

namespace Relay.Engine.Health;

/// <summary>
/// A probe that checks synchronously on the calling thread, needing no thread-pool thread to
/// finish: <see cref="HealthMonitor"/> runs it on its own thread, so a starved pool (blocking
/// work elsewhere in the process, a test host on two cores) cannot delay a health verdict by the
/// second the pool takes to grow. <see cref="CheckAsync"/> runs the same check on a thread of its
/// own for callers that want a task.
/// </summary>
internal abstract class BlockingProbe : IHealthProbe
{
    private volatile string? _lastError;

    /// <inheritdoc />
    public string? LastError => _lastError;

    /// <summary>Runs one check on the calling thread; see <see cref="IHealthProbe.CheckAsync"/> for the contract.</summary>
    public bool Check(TimeSpan timeout, CancellationToken ct)
    {
        ct.ThrowIfCancellationRequested();
        string? error;
        try
        {
            error = Run(new Deadline(timeout), ct);
        }
        catch (SocketException e)
        {
            // Creating the socket failed (no permission for a raw socket, no buffers): a failed
            // check with its reason, not an exception the caller must know about.
            error = ProbeSockets.Describe(e.SocketErrorCode);
        }
        catch (ObjectDisposedException)
        {
            error = "the orchestrator's namespace thread has stopped (the network is going away)";
        }
        _lastError = error;
        return error is null;
    }

    /// <inheritdoc />
    public Task<bool> CheckAsync(TimeSpan timeout, CancellationToken ct)
        => Task.Factory.StartNew(() => Check(timeout, ct), ct, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    /// <summary>Runs the check until <paramref name="deadline"/>; returns null when it passed, otherwise why it failed.</summary>
    protected abstract string? Run(Deadline deadline, CancellationToken ct);
}

/// <summary>The end of a check's time budget.</summary>
internal readonly struct Deadline
{
    private readonly long _end;

    public Deadline(TimeSpan budget)
    {
        Budget = budget;
        _end = Stopwatch.GetTimestamp() + (long)(budget.TotalSeconds * Stopwatch.Frequency);
    }

    /// <summary>The whole budget, for messages ("timeout (300ms)").</summary>
    public TimeSpan Budget { get; }

    /// <summary>Time left (zero once passed).</summary>
    public TimeSpan Remaining
    {
        get
        {
            var left = _end - Stopwatch.GetTimestamp();
            return left <= 0 ? TimeSpan.Zero : TimeSpan.FromSeconds((double)left / Stopwatch.Frequency);
        }
    }

    public bool Passed => Stopwatch.GetTimestamp() >= _end;

    /// <summary>The time left as a wait of at most <paramref name="slice"/> milliseconds, rounded up so a wait never ends just short of the deadline.</summary>
    public int SliceMilliseconds(int slice) => (int)Math.Min(slice, Math.Ceiling(Remaining.TotalMilliseconds));
}
