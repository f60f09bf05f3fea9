using Microsoft.Extensions.Logging;
using Relay.Core.Errors;
using Relay.Core.Reconcile;
using Relay.Engine.Health;
using Relay.Linux.Processes;

namespace Relay.Engine.Cluster;

/// <summary>
/// The commands of this node's instances: started when an instance is wired (or adopted from the
/// previous daemon), and restarted here, on this node, when they exit, by the same
/// <see cref="InstanceSupervisor"/> as on a single host. A draining instance's command is not
/// restarted; a lost node's instances are started again elsewhere by the rescheduling, which is
/// not this. The restart count is the node's own and is not written to the store.
/// </summary>
public sealed partial class NodeNetwork : ISupervisorHost
{
    /// <summary>How often this node restarted local instance <paramref name="instance"/>'s command since it was wired.</summary>
    public int Restarts(string instance)
    {
        lock (_gate)
        {
            return _supervisor.Restarts(instance);
        }
    }

    /// <summary>Starts <paramref name="instance"/>'s command in its namespace. Under the gate.</summary>
    private InstanceProcess StartCommand(InstanceEntry instance, IReadOnlyList<string> command)
    {
        var log = LogFile(instance);
        Directory.CreateDirectory(Path.GetDirectoryName(log)!);
        return InstanceProcess.Start(InstanceNamespace(instance.Name), command, log,
            new Dictionary<string, string> { ["RELAY_INSTANCE"] = instance.Name, ["RELAY_SERVICE"] = instance.Service, ["RELAY_NODE"] = Node });
    }

    /// <summary>The instance as the state last applied has it (its mode and policy now), else as it was wired; null when it is not wired here.</summary>
    private InstanceEntry? Current(string instance)
    {
        if (!_wired.TryGetValue(instance, out var wired))
        {
            return null;
        }
        // Wired by a step the kernel then refused: as it was wired.
        return _applied?.LocalInstances.GetValueOrDefault(instance) ?? wired;
    }

    SupervisedInstance? ISupervisorHost.Current(string instance)
        => _disposed || Current(instance) is not { } entry ? null
            : new SupervisedInstance(entry.Command is { IsDefaultOrEmpty: false } c ? c : null, RestartPolicies.Parse(entry.Restart, RestartPolicy.OnFailure, "restart", new ErrorCollector()), entry.Mode == InstanceMode.Draining);

    InstanceProcess ISupervisorHost.Start(string instance, IReadOnlyList<string> command) => StartCommand(Current(instance)!, command);

    void ISupervisorHost.Exited(string instance, InstanceProcess process, int? exitCode, bool restarting, TimeSpan delay, SupervisedInstance current)
    {
        LogExited(_log, _options.Name, Node, instance, process.Pid, exitCode?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "unknown",
            restarting ? $"restarting in {delay.TotalSeconds:0.#} s" : $"not restarted (restart policy {RestartPolicies.Of(current.Restart)}{(current.Draining ? ", draining" : "")})");
        if (_applied is { } applied)
        {
            SaveRecord(applied); // the record no longer lists the pid
        }
    }

    void ISupervisorHost.Restarted(string instance, InstanceProcess process, int restarts)
    {
        LogRestarted(_log, _options.Name, Node, instance, process.Pid, restarts);
        if (_applied is { } applied)
        {
            SaveRecord(applied); // with the new pid, for the next daemon to adopt
        }
    }

    void ISupervisorHost.RestartFailed(string instance, Exception error) => LogRestartFailed(_log, _options.Name, Node, instance, error.Message);

    [LoggerMessage(EventId = 95, Level = LogLevel.Warning, Message = "network {Network} on node {Node}: instance {Instance}: command (pid {Pid}) exited with code {Code}; {Action}")]
    private static partial void LogExited(ILogger log, string network, string node, string instance, int pid, string code, string action);

    [LoggerMessage(EventId = 96, Level = LogLevel.Information, Message = "network {Network} on node {Node}: instance {Instance}: command restarted as pid {Pid} (restart {Restarts})")]
    private static partial void LogRestarted(ILogger log, string network, string node, string instance, int pid, int restarts);

    [LoggerMessage(EventId = 97, Level = LogLevel.Error, Message = "network {Network} on node {Node}: instance {Instance}: its command could not be restarted: {Error}")]
    private static partial void LogRestartFailed(ILogger log, string network, string node, string instance, string error);
}
