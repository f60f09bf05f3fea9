using Microsoft.Extensions.Logging;
using Relay.Core.Errors;
using Relay.Linux.Processes;

namespace Relay.Engine.Health;

/// <summary>What a supervisor needs to know of an instance when its command exits or is due to start again.</summary>
/// <param name="Command">Its command (null or empty: none).</param>
/// <param name="Restart">Its restart policy.</param>
/// <param name="Draining">True while it drains: its command is not started again.</param>
internal readonly record struct SupervisedInstance(IReadOnlyList<string>? Command, RestartPolicy Restart, bool Draining);

/// <summary>
/// The network that owns the supervised instances: its records, how a command starts, and what it
/// does with the supervisor's observations. Every member but <see cref="HealthChanged"/> is called
/// with the network's gate held.
/// </summary>
internal interface ISupervisorHost
{
    /// <summary>The instance as the network holds it now; null when it is gone (or not wired here): nothing to do.</summary>
    SupervisedInstance? Current(string instance);

    /// <summary>Starts the instance's command in its namespace (throws when it cannot).</summary>
    InstanceProcess Start(string instance, IReadOnlyList<string> command);

    /// <summary>Its command exited; <paramref name="restarting"/> says whether it starts again after <paramref name="delay"/>.</summary>
    void Exited(string instance, InstanceProcess process, int? exitCode, bool restarting, TimeSpan delay, SupervisedInstance current);

    /// <summary>Its command started again (<paramref name="restarts"/>: how often since it was supervised here).</summary>
    void Restarted(string instance, InstanceProcess process, int restarts);

    /// <summary>Its command could not be started again.</summary>
    void RestartFailed(string instance, Exception error);

    /// <summary>Its check changed its verdict. Called outside the network's gate, on the monitor's thread.</summary>
    void HealthChanged(string instance, HealthMonitor monitor, HealthState state);
}

/// <summary>
/// The instances' commands and health checks of one network on one node, for a single host and a
/// cluster's node alike: it runs them, restarts a command that exits as the instance's policy says
/// (1 s back-off doubling to 30 s, reset after 10 s of running; never while draining), and reports
/// what it observes to its <see cref="ISupervisorHost"/>, which decides what changes. It takes the
/// host's gate, never a lock of its own, so the host calls it under that gate and it calls the
/// host back under it.
/// </summary>
internal sealed class InstanceSupervisor(object gate, ISupervisorHost host, ILogger? log = null)
{
    private readonly Dictionary<string, InstanceProcess> _processes = new(StringComparer.Ordinal);
    private readonly Dictionary<string, RestartBackoff> _backoffs = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _restarts = new(StringComparer.Ordinal);
    private readonly Dictionary<string, HealthMonitor> _monitors = new(StringComparer.Ordinal);
    private bool _stopped;

    /// <summary>The commands running, by instance.</summary>
    public IReadOnlyDictionary<string, InstanceProcess> Processes => _processes;

    /// <summary>The checks running, by instance.</summary>
    public IReadOnlyDictionary<string, HealthMonitor> Monitors => _monitors;

    /// <summary>How often <paramref name="instance"/>'s command was started again since it was supervised here.</summary>
    public int Restarts(string instance) => _restarts.GetValueOrDefault(instance);

    /// <summary>Takes <paramref name="process"/> as <paramref name="instance"/>'s command and acts when it exits.</summary>
    public void Supervise(string instance, InstanceProcess process)
    {
        _processes[instance] = process;
        var started = DateTime.UtcNow;
        _ = process.Exited.ContinueWith(t => OnExited(instance, process, t.Result, DateTime.UtcNow - started), TaskScheduler.Default);
    }

    /// <summary>Stops supervising <paramref name="instance"/>'s command (no restart follows) and hands it over, to be stopped by the caller.</summary>
    public InstanceProcess? Release(string instance) => _processes.Remove(instance, out var process) ? process : null;

    /// <summary>Forgets everything of an instance that leaves: its back-off, its count, its check (its command is <see cref="Release"/>d by the caller).</summary>
    public HealthMonitor? Forget(string instance)
    {
        _backoffs.Remove(instance);
        _restarts.Remove(instance);
        return StopHealth(instance);
    }

    /// <summary>Starts <paramref name="check"/> for <paramref name="instance"/> (replacing a running one).</summary>
    public void StartHealth(string instance, HealthCheck check, ProbeTarget target)
    {
        StopHealth(instance);
        var monitor = new HealthMonitor(check, HealthProbes.Create(check, target), log);
        monitor.Changed += (_, state) => OnHealth(instance, monitor, state);
        _monitors[instance] = monitor;
        monitor.Start();
    }

    /// <summary>Stops <paramref name="instance"/>'s check; returns it (disposed) when there was one.</summary>
    public HealthMonitor? StopHealth(string instance)
    {
        if (!_monitors.Remove(instance, out var monitor))
        {
            return null;
        }
        monitor.Dispose();
        return monitor;
    }

    /// <summary>True while <paramref name="monitor"/> is <paramref name="instance"/>'s running check (a verdict of one stopped since is stale).</summary>
    public bool IsCurrent(string instance, HealthMonitor monitor) => !_stopped && _monitors.TryGetValue(instance, out var m) && m == monitor;

    /// <summary>Stops every check and every restart to come; returns the commands, for the caller to stop or leave running.</summary>
    public IReadOnlyList<InstanceProcess> Stop()
    {
        _stopped = true;
        foreach (var monitor in _monitors.Values)
        {
            monitor.Dispose();
        }
        _monitors.Clear();
        var processes = _processes.Values.ToArray();
        _processes.Clear();
        return processes;
    }

    private void OnExited(string instance, InstanceProcess process, int? exitCode, TimeSpan ran)
    {
        TimeSpan delay;
        lock (gate)
        {
            // A process stopped on purpose (released, replaced, the network stopping) is no longer
            // the instance's current one: nothing to do.
            if (_stopped || !_processes.TryGetValue(instance, out var current) || current != process || host.Current(instance) is not { } spec)
            {
                return;
            }
            _processes.Remove(instance);
            process.Dispose();
            // An adopted command's exit code is unknown (it is not our child): counted as a failure.
            var restart = !spec.Draining && RestartBackoff.ShouldRestart(spec.Restart, exitCode);
            if (!_backoffs.TryGetValue(instance, out var backoff))
            {
                _backoffs[instance] = backoff = new RestartBackoff();
            }
            delay = restart ? backoff.Next(ran) : TimeSpan.Zero;
            host.Exited(instance, process, exitCode, restart, delay, spec);
            if (!restart)
            {
                return;
            }
        }
        _ = Task.Delay(delay).ContinueWith(_ => Restart(instance), TaskScheduler.Default);
    }

    private void Restart(string instance)
    {
        lock (gate)
        {
            if (_stopped || _processes.ContainsKey(instance) || host.Current(instance) is not { Draining: false, Command: { Count: > 0 } command })
            {
                return;
            }
            InstanceProcess process;
            try
            {
                process = host.Start(instance, command);
            }
            catch (Exception e) when (e is RelayException or IOException or InvalidOperationException or System.ComponentModel.Win32Exception)
            {
                host.RestartFailed(instance, e);
                return;
            }
            Supervise(instance, process);
            var restarts = _restarts[instance] = _restarts.GetValueOrDefault(instance) + 1;
            host.Restarted(instance, process, restarts);
        }
    }

    private void OnHealth(string instance, HealthMonitor monitor, HealthState state)
    {
        lock (gate)
        {
            if (!IsCurrent(instance, monitor))
            {
                return;
            }
        }
        host.HealthChanged(instance, monitor, state);
    }
}
