using System.Collections.Concurrent;
using System.Diagnostics;
using Relay.Core.Errors;
using Relay.Engine.Health;
using Xunit.Abstractions;

namespace Relay.Integration.Tests.Health;

public sealed class HealthMonitorTests(ITestOutputHelper output)
{
    [Fact]
    public void HealthMonitor_ListenerKilledAndRestarted_UnhealthyWithinASecondThenHealthyAgain()
    {
        using var bed = new HealthBed();
        bed.Listen(7001, "echo");
        var check = new HealthCheck
        {
            Type = HealthCheckType.Tcp,
            Port = 7001,
            Interval = TimeSpan.FromMilliseconds(100),
            Timeout = TimeSpan.FromMilliseconds(100),
            HealthyThreshold = 1,
            UnhealthyThreshold = 2,
        };
        var changes = new ConcurrentQueue<(HealthState From, HealthState To, long At)>();
        using var monitor = new HealthMonitor(check, HealthProbes.Create(check, bed.Target()));
        monitor.Changed += (from, to) => changes.Enqueue((from, to, Stopwatch.GetTimestamp()));
        Assert.Equal(HealthState.Starting, monitor.State);
        monitor.Start();
        WaitFor(() => monitor.State == HealthState.Healthy, TimeSpan.FromSeconds(3), monitor);
        // A few checks in the healthy state, so the kill does not race the first ones.
        WaitFor(() => monitor.Checks >= 4, TimeSpan.FromSeconds(3), monitor);

        var killed = Stopwatch.GetTimestamp();
        HealthBed.KillAll(bed.Instance);
        WaitFor(() => changes.Count >= 2, TimeSpan.FromSeconds(3), monitor);

        var down = changes.Single(c => c.From == HealthState.Healthy && c.To == HealthState.Unhealthy);
        var detection = Stopwatch.GetElapsedTime(killed, down.At);
        output.WriteLine($"detection: {detection.TotalMilliseconds:0.0} ms (interval 100 ms, unhealthy threshold 2); last error: {monitor.LastError}");
        Assert.True(detection < TimeSpan.FromSeconds(1), $"unhealthy {detection.TotalMilliseconds:0} ms after the kill");
        Assert.Equal("connection refused", monitor.LastError);
        Assert.True(monitor.ConsecutiveFailures >= 2);

        var restarted = Stopwatch.GetTimestamp();
        bed.Listen(7001, "echo");
        // The state changes before the Changed event is raised: wait for the event itself.
        WaitFor(() => changes.Count >= 3, TimeSpan.FromSeconds(3), monitor);
        var up = changes.Last();
        output.WriteLine($"recovery: {Stopwatch.GetElapsedTime(restarted, up.At).TotalMilliseconds:0.0} ms after socat was started (including its start)");
        Assert.Null(monitor.LastError);

        Assert.Equal(
            [(HealthState.Starting, HealthState.Healthy), (HealthState.Healthy, HealthState.Unhealthy), (HealthState.Unhealthy, HealthState.Healthy)],
            changes.Select(c => (c.From, c.To)).ToArray());
    }

    [Fact]
    public void HealthMonitor_ScriptedProbe_KeepsTheIntervalAndRaisesEachTransitionOnce()
    {
        var probe = new ScriptedProbe();
        var check = new HealthCheck { Type = HealthCheckType.Tcp, Port = 1, Interval = TimeSpan.FromMilliseconds(100), Timeout = TimeSpan.FromMilliseconds(100), UnhealthyThreshold = 2 };
        var changes = new ConcurrentQueue<(HealthState From, HealthState To, long At)>();
        var onPool = false;
        using var monitor = new HealthMonitor(check, probe);
        monitor.Changed += (from, to) =>
        {
            onPool |= Thread.CurrentThread.IsThreadPoolThread;
            changes.Enqueue((from, to, Stopwatch.GetTimestamp()));
        };
        monitor.Start();
        WaitFor(() => monitor.Checks >= 5, TimeSpan.FromSeconds(3), monitor);

        var failing = Stopwatch.GetTimestamp();
        probe.Healthy = false;
        WaitFor(() => monitor.State == HealthState.Unhealthy, TimeSpan.FromSeconds(3), monitor);
        var detection = Stopwatch.GetElapsedTime(failing, changes.Last().At);
        var checks = monitor.Checks;
        Thread.Sleep(1000);
        var rate = monitor.Checks - checks;

        output.WriteLine($"detection {detection.TotalMilliseconds:0.0} ms; {rate} checks in 1 s at a 100 ms interval");
        // Two failing checks at a fixed 100 ms rate: between 100 and 200 ms, plus scheduling.
        Assert.True(detection < TimeSpan.FromMilliseconds(400), $"detection took {detection.TotalMilliseconds:0} ms");
        Assert.InRange(rate, 8, 11);
        Assert.Equal([(HealthState.Starting, HealthState.Healthy), (HealthState.Healthy, HealthState.Unhealthy)], changes.Select(c => (c.From, c.To)).ToArray());
        Assert.Equal("scripted failure", monitor.LastError);
        // Raised on the monitor's own thread, which a starved pool cannot hold up.
        Assert.False(onPool);
    }

    [Fact]
    public void HealthMonitor_HandlerThrowsAndDisposesFromHandler_NoDeadlockAndNoLaterEvents()
    {
        var probe = new ScriptedProbe { Healthy = false };
        var check = new HealthCheck { Type = HealthCheckType.Tcp, Port = 1, Interval = TimeSpan.FromMilliseconds(20), Timeout = TimeSpan.FromMilliseconds(20), UnhealthyThreshold = 1 };
        var monitor = new HealthMonitor(check, probe);
        var events = 0;
        monitor.Changed += (_, _) =>
        {
            Interlocked.Increment(ref events);
            monitor.Dispose();
            throw new InvalidOperationException("handler bug");
        };
        monitor.Start();
        WaitFor(() => Volatile.Read(ref events) == 1, TimeSpan.FromSeconds(3), monitor);
        probe.Healthy = true;
        Thread.Sleep(200);

        Assert.Equal(1, Volatile.Read(ref events));
        monitor.Dispose();
    }

    [Fact]
    public void Dispose_UnderALockTheHandlerWaitsFor_ReturnsWithoutWaitingForTheHandler()
    {
        var check = new HealthCheck { Type = HealthCheckType.Tcp, Port = 1, Interval = TimeSpan.FromMilliseconds(20), Timeout = TimeSpan.FromMilliseconds(20) };
        var monitor = new HealthMonitor(check, new ScriptedProbe());
        var engineLock = new object();
        using var entered = new ManualResetEventSlim();
        var handled = 0;
        // The engine's pattern: the handler takes the engine's lock, and the engine disposes
        // monitors while holding it.
        monitor.Changed += (_, _) =>
        {
            entered.Set();
            lock (engineLock)
            {
                Interlocked.Increment(ref handled);
            }
        };
        TimeSpan took;
        lock (engineLock)
        {
            monitor.Start();
            Assert.True(entered.Wait(TimeSpan.FromSeconds(3)));
            var sw = Stopwatch.StartNew();
            monitor.Dispose();
            took = sw.Elapsed;
        }

        Assert.True(took < TimeSpan.FromMilliseconds(500), $"Dispose took {took}");
        WaitFor(() => Volatile.Read(ref handled) == 1, TimeSpan.FromSeconds(3), monitor);
    }

    [Fact]
    public void HealthMonitor_ProbeThrows_CountsAsAFailure()
    {
        var probe = new ScriptedProbe { Throw = true };
        var check = new HealthCheck { Type = HealthCheckType.Tcp, Port = 1, Interval = TimeSpan.FromMilliseconds(20), Timeout = TimeSpan.FromMilliseconds(20), UnhealthyThreshold = 2 };
        using var monitor = new HealthMonitor(check, probe);
        monitor.Start();

        WaitFor(() => monitor.State == HealthState.Unhealthy, TimeSpan.FromSeconds(3), monitor);
        Assert.Equal("probe crashed", monitor.LastError);
    }

    [Fact]
    public void HealthMonitor_InvalidCheck_ThrowsListingTheProblems()
    {
        var check = new HealthCheck { Type = HealthCheckType.Tcp, Port = 0, Interval = TimeSpan.FromMilliseconds(1), UnhealthyThreshold = 0 };

        var e = Assert.Throws<RelayException>(() => new HealthMonitor(check, new ScriptedProbe()));

        Assert.Equal(["health.port", "health.interval", "health.timeout", "health.unhealthyThreshold"], e.Errors.Select(x => x.Field).ToArray());
    }

    [Fact]
    public void Dispose_CheckInFlight_WaitsForItAndStopsChecking()
    {
        var probe = new ScriptedProbe { Delay = TimeSpan.FromMilliseconds(80) };
        var check = new HealthCheck { Type = HealthCheckType.Tcp, Port = 1, Interval = TimeSpan.FromMilliseconds(100), Timeout = TimeSpan.FromMilliseconds(100) };
        var monitor = new HealthMonitor(check, probe);
        monitor.Start();
        WaitFor(() => probe.Running == 1, TimeSpan.FromSeconds(3), monitor);

        monitor.Dispose();
        var after = probe.Calls;
        Thread.Sleep(300);

        Assert.Equal(0, probe.Running);
        Assert.Equal(after, probe.Calls);
    }

    private static void WaitFor(Func<bool> condition, TimeSpan timeout, HealthMonitor monitor)
    {
        var until = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        while (!condition())
        {
            if (Stopwatch.GetTimestamp() > until)
            {
                Assert.Fail($"not reached within {timeout}: state {monitor.State}, {monitor.Checks} checks, last error '{monitor.LastError}'");
            }
            Thread.Sleep(2);
        }
    }

    /// <summary>A probe whose answer the test sets.</summary>
    private sealed class ScriptedProbe : IHealthProbe
    {
        private int _running;
        private int _calls;

        public volatile bool Healthy = true;
        public volatile bool Throw;
        public TimeSpan Delay { get; init; }

        public int Running => Volatile.Read(ref _running);

        public int Calls => Volatile.Read(ref _calls);

        public string? LastError { get; private set; }

        // Synchronous on the monitor's thread, as the built-in probes are: no pool thread is
        // needed, so the timing assertions hold while other tests load the pool.
        public Task<bool> CheckAsync(TimeSpan timeout, CancellationToken ct)
        {
            Interlocked.Increment(ref _calls);
            Interlocked.Increment(ref _running);
            try
            {
                if (Delay > TimeSpan.Zero && ct.WaitHandle.WaitOne(Delay))
                {
                    return Task.FromCanceled<bool>(ct);
                }
                if (Throw)
                {
                    throw new InvalidOperationException("probe crashed");
                }
                LastError = Healthy ? null : "scripted failure";
                return Task.FromResult(Healthy);
            }
            finally
            {
                Interlocked.Decrement(ref _running);
            }
        }
    }
}
