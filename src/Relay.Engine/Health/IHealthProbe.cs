using System.Net;
using Relay.Linux.Namespaces;

namespace Relay.Engine.Health;

/// <summary>
/// One kind of health check against one instance. A probe is used by one
/// <see cref="HealthMonitor"/>, one check at a time; different probes may run concurrently.
/// </summary>
public interface IHealthProbe
{
    /// <summary>
    /// Runs one check. Returns true when the instance passed, false when it failed or did not
    /// answer within <paramref name="timeout"/> (nothing the check started outlives the call).
    /// Throws <see cref="OperationCanceledException"/> only when <paramref name="ct"/> was cancelled.
    /// </summary>
    Task<bool> CheckAsync(TimeSpan timeout, CancellationToken ct);

    /// <summary>Why the latest check failed ("connection refused", "timeout", "exit code 1"...); null after a success.</summary>
    string? LastError => null;
}

/// <summary>The instance a probe checks, and where network probes start from.</summary>
/// <param name="InstanceNamespace">The instance's network namespace (exec checks run there).</param>
/// <param name="Orchestrator">
/// A thread in the network's orchestrator namespace: TCP, HTTP and ICMP checks create their sockets
/// there, so they take the path the balancer's traffic takes to the instance, and a check that
/// passes says the instance is reachable, not only alive.
/// </param>
/// <param name="Address4">The instance's own IPv4 address.</param>
public sealed record ProbeTarget(string InstanceNamespace, NetnsThread Orchestrator, IPAddress Address4);

/// <summary>Creates the probe for a check.</summary>
public static class HealthProbes
{
    /// <summary>
    /// A probe that runs <paramref name="check"/> against <paramref name="target"/>. A
    /// <see cref="HealthMonitor"/> runs it synchronously on its own thread;
    /// <see cref="IHealthProbe.CheckAsync"/> runs each check on a dedicated thread, so neither
    /// blocks nor waits for a thread-pool thread.
    /// </summary>
    /// <exception cref="Relay.Core.Errors.RelayException"><paramref name="check"/> is invalid.</exception>
    public static IHealthProbe Create(HealthCheck check, ProbeTarget target)
    {
        ArgumentNullException.ThrowIfNull(check);
        ArgumentNullException.ThrowIfNull(target);
        check.ThrowIfInvalid();
        return check.Type switch
        {
            HealthCheckType.Exec => new ExecProbe(target.InstanceNamespace, check.Command),
            HealthCheckType.Tcp => new TcpProbe(target, check.Port),
            HealthCheckType.Http => new HttpProbe(target, check.Port, check.Path),
            HealthCheckType.Icmp => new IcmpProbe(target),
            _ => throw new ArgumentOutOfRangeException(nameof(check), check.Type, "unknown check type"),
        };
    }
}
