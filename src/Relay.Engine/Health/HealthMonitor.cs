using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Relay.Engine.Health;

/// <summary>
/// Checks one instance every <see cref="HealthCheck.Interval"/> and keeps its
/// <see cref="HealthState"/>: <see cref="HealthState.Starting"/> until
/// <see cref="HealthCheck.HealthyThreshold"/> checks in a row pass, then
/// <see cref="HealthState.Healthy"/> or <see cref="HealthState.Unhealthy"/> as consecutive results
/// cross the thresholds (see <see cref="HealthCounter"/>).
/// <para>
/// Each monitor runs on a dedicated thread, and the probes <see cref="HealthProbes"/> creates check
/// synchronously on it: nothing waits for the thread pool, so a starved pool elsewhere in the
/// process cannot hold a verdict back (it did, by a second, under a test host on two cores).
/// Checks start at a fixed rate (start + k * interval), not "interval after the previous check
/// ended", so with a 100 ms interval and an unhealthy threshold of 2 a failure is seen at most
/// about 200 ms plus one check's duration after it began. The first check runs at
/// <see cref="Start"/>. A check never overlaps the next: one that overruns its slot is followed
/// at once by the next, and the missed ticks are skipped.
/// </para>
/// </summary>
public sealed partial class HealthMonitor : IDisposable
{
    // A probe must honour its timeout; this is only the backstop for one that does not.
    private static readonly TimeSpan ProbeBackstop = TimeSpan.FromMilliseconds(500);

    // How long Dispose waits for a check in flight to end (an exec check reaps the process it killed).
    private static readonly TimeSpan DisposeWait = TimeSpan.FromSeconds(6);

    private readonly IHealthProbe _probe;
    private readonly ILogger _logger;
    private readonly HealthCounter _counter;
    private readonly CancellationTokenSource _stop = new();
    private readonly object _gate = new();
    private Thread? _thread;
    private string? _lastError;
    private long _checks;
    private int _disposed;
    private int _raising;

    /// <summary>A monitor of <paramref name="check"/> using <paramref name="probe"/>; call <see cref="Start"/> after subscribing to <see cref="Changed"/>.</summary>
    /// <exception cref="Relay.Core.Errors.RelayException"><paramref name="check"/> is invalid.</exception>
    public HealthMonitor(HealthCheck check, IHealthProbe probe, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(check);
        ArgumentNullException.ThrowIfNull(probe);
        check.ThrowIfInvalid();
        Check = check;
        _probe = probe;
        _logger = logger ?? NullLogger.Instance;
        _counter = new HealthCounter(check.HealthyThreshold, check.UnhealthyThreshold);
    }

    /// <summary>
    /// Raised with (old, new) on every state change, in order, one at a time, on the monitor's
    /// own thread (named "health ..."; not the caller of <see cref="Start"/>). The next check
    /// waits for the handlers, so they should be quick; an exception from one is logged and
    /// monitoring goes on. A handler may call <see cref="Dispose"/>, and may take a lock that
    /// the caller of <see cref="Dispose"/> holds: Dispose does not wait for a handler already
    /// running, so such a handler can still be finishing after Dispose returned (it should
    /// check that the monitor is still the one it cares about). No new event starts once
    /// Dispose has begun.
    /// </summary>
    public event Action<HealthState, HealthState>? Changed;

    /// <summary>The check being run.</summary>
    public HealthCheck Check { get; }

    /// <summary>The current state (<see cref="HealthState.Starting"/> until the first transition).</summary>
    public HealthState State
    {
        get
        {
            lock (_gate)
            {
                return _counter.State;
            }
        }
    }

    /// <summary>Why the latest check failed ("connection refused", "timeout (1s)", "exit code 1"...); null after a success.</summary>
    public string? LastError
    {
        get
        {
            lock (_gate)
            {
                return _lastError;
            }
        }
    }

    /// <summary>Failed checks since the last success.</summary>
    public int ConsecutiveFailures
    {
        get
        {
            lock (_gate)
            {
                return _counter.ConsecutiveFailures;
            }
        }
    }

    /// <summary>Passed checks since the last failure.</summary>
    public int ConsecutiveSuccesses
    {
        get
        {
            lock (_gate)
            {
                return _counter.ConsecutiveSuccesses;
            }
        }
    }

    /// <summary>Checks completed so far.</summary>
    public long Checks => Interlocked.Read(ref _checks);

    /// <summary>Starts checking (the first check at once). Calling it again does nothing.</summary>
    public void Start()
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        lock (_gate)
        {
            if (_thread is not null)
            {
                return;
            }
            _thread = new Thread(Run) { IsBackground = true, Name = "health " + Check.ToString() };
            _thread.Start();
        }
    }

    /// <summary>
    /// Stops checking and waits for a check in flight to end (its processes and sockets gone);
    /// a <see cref="Changed"/> handler in progress is not waited for (see there). Returns within
    /// about 50 ms for the built-in probes.
    /// </summary>
    public void Dispose()
    {
        // A full fence, paired with the one in Record: either the loop sees it and raises no
        // more events, or this sees the loop raising one and does not wait for it.
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        _stop.Cancel();
        Thread? thread;
        lock (_gate)
        {
            thread = _thread;
        }
        if (thread == Thread.CurrentThread || Volatile.Read(ref _raising) != 0)
        {
            // A handler is running (maybe this very call comes from it, maybe it waits for a
            // lock our caller holds): waiting for the loop could deadlock. The loop ends by
            // itself after the handler, and the token it checks is never disposed.
            return;
        }
        if (thread is null || thread.Join(Check.Timeout + DisposeWait))
        {
            _stop.Dispose();
        }
        else
        {
            LogStuck(_logger, Check.ToString());
        }
    }

    private void Run()
    {
        var ct = _stop.Token;
        // Ticks are due at start + k * interval, computed here rather than by a periodic timer:
        // .NET's timers re-arm relative to when they fired, so a 100 ms period drifts by the
        // firing latency every tick. Each wait here is late by at most that latency, never by
        // its sum.
        var interval = (long)(Check.Interval.TotalSeconds * Stopwatch.Frequency);
        var start = Stopwatch.GetTimestamp();
        long tick = 0;
        try
        {
            while (!ct.IsCancellationRequested)
            {
                var (ok, error) = CheckOnce(ct);
                Record(ok, error);
                var now = Stopwatch.GetTimestamp();
                tick++;
                if (start + tick * interval <= now)
                {
                    // The check overran its slot (or the process stalled): check again at once,
                    // then keep to the grid from there, skipping the ticks missed rather than
                    // running them in a burst.
                    tick = (now - start) / interval;
                    continue;
                }
                // Rounded up: waking a fraction of a millisecond early would run the check early.
                var wait = (int)Math.Ceiling(Stopwatch.GetElapsedTime(now, start + tick * interval).TotalMilliseconds);
                if (ct.WaitHandle.WaitOne(wait))
                {
                    break;
                }
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
    }

    private (bool Ok, string? Error) CheckOnce(CancellationToken ct)
    {
        try
        {
            if (_probe is BlockingProbe blocking)
            {
                var passed = blocking.Check(Check.Timeout, ct);
                return (passed, passed ? null : blocking.LastError ?? "check failed");
            }
            // Another probe (a test's, a future one): wait for its task here. Its continuations
            // may need the pool; only the built-in probes are immune to a starved one. The wait
            // ignores ct: the probe has ct itself, and Dispose promises that the check in flight
            // has ended, so it is waited for (bounded) even when cancelled.
            var task = _probe.CheckAsync(Check.Timeout, ct);
            if (!task.Wait(Check.Timeout + ProbeBackstop))
            {
                return (false, $"timeout (the probe did not return within {(Check.Timeout + ProbeBackstop).TotalMilliseconds:0} ms)");
            }
            var ok = task.Result;
            return (ok, ok ? null : _probe.LastError ?? "check failed");
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            throw;
        }
        catch (AggregateException e) when (e.InnerException is OperationCanceledException && ct.IsCancellationRequested)
        {
            throw new OperationCanceledException(ct);
        }
        catch (Exception e)
        {
            // A probe that throws is a failed check, not a dead monitor.
            return (false, (e is AggregateException { InnerException: { } inner } ? inner : e).Message);
        }
    }

    private void Record(bool ok, string? error)
    {
        HealthTransition? transition;
        lock (_gate)
        {
            _lastError = error;
            transition = _counter.Record(ok);
        }
        Interlocked.Increment(ref _checks);
        if (transition is not { } t)
        {
            return;
        }
        Interlocked.Exchange(ref _raising, 1);
        try
        {
            if (Volatile.Read(ref _disposed) != 0)
            {
                return;
            }
            Changed?.Invoke(t.From, t.To);
        }
        catch (Exception e)
        {
            LogHandlerFailed(_logger, e, Check.ToString(), t.From, t.To);
        }
        finally
        {
            Volatile.Write(ref _raising, 0);
        }
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "health check {Check}: a Changed handler failed on {From} -> {To}")]
    private static partial void LogHandlerFailed(ILogger logger, Exception exception, string check, HealthState from, HealthState to);

    [LoggerMessage(Level = LogLevel.Warning, Message = "health check {Check}: the check in flight did not end in time after Dispose")]
    private static partial void LogStuck(ILogger logger, string check);
}
