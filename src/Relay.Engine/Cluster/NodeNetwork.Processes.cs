using Microsoft.Extensions.Logging;
using Relay.Core.Errors;
using Relay.Core.Reconcile;
using Relay.Engine.Health;
using Relay.Linux.Processes;

namespace Relay.Engine.Cluster;

/// <summary>
/// The commands of this node's instances: started when an instance is wired (or adopted from the
/// previous daemon), and restarted here, on this node, when they exit, as the instance's restart
/// policy says, with the same back-off as on a single host (1 s doubling to 30 s, reset after 10 s
/// of running). A draining instance's command is not restarted; a lost node's instances are
/// started again elsewhere by the rescheduling, which is not this.
/// </summary>
public sealed partial class NodeNetwork
{
    private readonly Dictionary<string, RestartBackoff> _backoffs = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _restarts = new(StringComparer.Ordinal);

    /// <summary>How often this node restarted local instance <paramref name="instance"/>'s command since it was wired.</summary>
    public int Restarts(string instance)
    {
        lock (_gate)
        {
            return _restarts.GetValueOrDefault(instance);
        }
    }

    /// <summary>Starts <paramref name="instance"/>'s command in its namespace and supervises it. Under the gate.</summary>
    private void StartProcess(InstanceEntry instance, IReadOnlyList<string> command)
    {
        var log = LogFile(instance);
        Directory.CreateDirectory(Path.GetDirectoryName(log)!);
        var process = InstanceProcess.Start(InstanceNamespace(instance.Name), command, log,
            new Dictionary<string, string> { ["RELAY_INSTANCE"] = instance.Name, ["RELAY_SERVICE"] = instance.Service, ["RELAY_NODE"] = Node });
        Supervise(instance.Name, process);
    }

    /// <summary>Takes <paramref name="process"/> as <paramref name="instance"/>'s command and acts when it exits. Under the gate.</summary>
    private void Supervise(string instance, InstanceProcess process)
    {
        _processes[instance] = process;
        var started = DateTime.UtcNow;
        _ = process.Exited.ContinueWith(t => OnExited(instance, process, t.Result, DateTime.UtcNow - started), TaskScheduler.Default);
    }

    /// <summary>Forgets the supervision of an instance that leaves this node (its process is stopped by the caller).</summary>
    private void ForgetProcess(string instance)
    {
        _backoffs.Remove(instance);
        _restarts.Remove(instance);
    }

    private void OnExited(string instance, InstanceProcess process, int? exitCode, TimeSpan ran)
    {
        TimeSpan delay;
        lock (_gate)
        {
            // A process Relay stopped itself (unwired, removed, the daemon stopping) is no longer
            // the instance's current one: nothing to do.
            if (_disposed || !_processes.TryGetValue(instance, out var current) || current != process || Current(instance) is not { } entry)
            {
                return;
            }
            _processes.Remove(instance);
            process.Dispose();
            var policy = RestartPolicies.Parse(entry.Restart, RestartPolicy.OnFailure, "restart", new ErrorCollector());
            // An adopted command's exit code is unknown (it is not our child): counted as a failure.
            var restart = entry.Mode != InstanceMode.Draining && RestartBackoff.ShouldRestart(policy, exitCode);
            if (!_backoffs.TryGetValue(instance, out var backoff))
            {
                _backoffs[instance] = backoff = new RestartBackoff();
            }
            delay = restart ? backoff.Next(ran) : TimeSpan.Zero;
            LogExited(_log, _options.Name, Node, instance, process.Pid, exitCode?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "unknown",
                restart ? $"restarting in {delay.TotalSeconds:0.#} s" : $"not restarted (restart policy {RestartPolicies.Of(policy)}{(entry.Mode == InstanceMode.Draining ? ", draining" : "")})");
            if (_applied is { } applied)
            {
                SaveRecord(applied); // the record no longer lists the pid
            }
            if (!restart)
            {
                return;
            }
        }
        _ = Task.Delay(delay).ContinueWith(_ => Restart(instance), TaskScheduler.Default);
    }

    private void Restart(string instance)
    {
        lock (_gate)
        {
            if (_disposed || _processes.ContainsKey(instance) || Current(instance) is not { } entry || entry.Mode == InstanceMode.Draining
                || entry.Command is not { IsDefaultOrEmpty: false } command || !_wired.ContainsKey(instance))
            {
                return;
            }
            try
            {
                StartProcess(entry, command);
            }
            catch (Exception e) when (e is RelayException or IOException or InvalidOperationException or System.ComponentModel.Win32Exception)
            {
                LogRestartFailed(_log, _options.Name, Node, instance, e.Message);
                return;
            }
            var restarts = _restarts[instance] = _restarts.GetValueOrDefault(instance) + 1;
            LogRestarted(_log, _options.Name, Node, instance, _processes[instance].Pid, restarts);
            if (_applied is { } applied)
            {
                SaveRecord(applied); // with the new pid, for the next daemon to adopt
            }
        }
    }

    /// <summary>The instance as the state last applied has it (its mode and policy now), else as it was wired.</summary>
    private InstanceEntry? Current(string instance)
    {
        if (_applied is { } applied)
        {
            foreach (var i in applied.Local)
            {
                if (i.Name == instance)
                {
                    return i;
                }
            }
        }
        // Wired by a step the kernel then refused: as it was wired.
        return _wired.GetValueOrDefault(instance);
    }

    [LoggerMessage(EventId = 95, Level = LogLevel.Warning, Message = "network {Network} on node {Node}: instance {Instance}: command (pid {Pid}) exited with code {Code}; {Action}")]
    private static partial void LogExited(ILogger log, string network, string node, string instance, int pid, string code, string action);

    [LoggerMessage(EventId = 96, Level = LogLevel.Information, Message = "network {Network} on node {Node}: instance {Instance}: command restarted as pid {Pid} (restart {Restarts})")]
    private static partial void LogRestarted(ILogger log, string network, string node, string instance, int pid, int restarts);

    [LoggerMessage(EventId = 97, Level = LogLevel.Error, Message = "network {Network} on node {Node}: instance {Instance}: its command could not be restarted: {Error}")]
    private static partial void LogRestartFailed(ILogger log, string network, string node, string instance, string error);
}
