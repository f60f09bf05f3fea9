using System.Collections.Immutable;
using System.Net;
using Relay.Core.LoadBalancing;
using Relay.Core.Model;
using Relay.Core.Naming;

namespace Relay.Engine;

/// <summary>Where an instance is in its life.</summary>
public enum InstanceState
{
    /// <summary>Up, not in the balancer (a migration target).</summary>
    Standby,
    /// <summary>In the balancer: receives new flows.</summary>
    Active,
    /// <summary>Out of the balancer; its TCP flows finish, then it stops.</summary>
    Draining,
}

/// <summary>A service as users see it.</summary>
/// <param name="Name">Canonical name.</param>
/// <param name="Vip4">Virtual IPv4 address.</param>
/// <param name="Vip6">Virtual IPv6 address.</param>
/// <param name="Policy">Balancing policy name.</param>
/// <param name="Ports">Port mappings (empty: layer 3).</param>
/// <param name="Backends">Instances in the balancer, in slot order.</param>
/// <param name="Instances">All its instances, whatever their state.</param>
/// <param name="Addressing"><c>service</c> or <c>flow</c>.</param>
public sealed record ServiceInfo(string Name, IPAddress Vip4, IPAddress Vip6, string Policy, IReadOnlyList<PortMapping> Ports, IReadOnlyList<string> Backends, IReadOnlyList<string> Instances, string Addressing);

/// <summary>A per-client flow address and what it carried.</summary>
/// <param name="Client">The client instance.</param>
/// <param name="Service">The service it reaches.</param>
/// <param name="Flow4">Its IPv4 flow address.</param>
/// <param name="Flow6">Its IPv6 flow address.</param>
/// <param name="Instance">The instance it is translated to now.</param>
/// <param name="Packets">Packets the client sent to it (both families).</param>
/// <param name="Bytes">Bytes the client sent to it.</param>
public sealed record FlowInfo(string Client, string Service, IPAddress Flow4, IPAddress Flow6, string Instance, long Packets, long Bytes);

/// <summary>An instance as users see it.</summary>
/// <param name="Name">Its name.</param>
/// <param name="Service">Its service.</param>
/// <param name="Namespace">Its network namespace (<c>ip netns exec NAMESPACE ...</c>).</param>
/// <param name="HostInterface">The orchestrator end of its veth.</param>
/// <param name="Address4">Its IPv4 address.</param>
/// <param name="Address6">Its IPv6 address.</param>
/// <param name="State">Standby, active or draining.</param>
/// <param name="Command">The command it runs, if any.</param>
/// <param name="Pid">The command's process id while it runs.</param>
public sealed record InstanceInfo(string Name, string Service, string Namespace, string HostInterface, IPAddress Address4, IPAddress Address6, InstanceState State, IReadOnlyList<string>? Command, int? Pid)
{
    /// <summary>none, starting, healthy or unhealthy.</summary>
    public string Health { get; init; } = HealthStates.None;

    /// <summary>The node it runs on (null on a single host).</summary>
    public string? Node { get; init; }

    /// <summary>Placed on its node by the user (<c>--node</c>): it stays there when that node is lost.</summary>
    public bool Pinned { get; init; }

    /// <summary>Restart policy of its command.</summary>
    public string Restart { get; init; } = "on-failure";

    /// <summary>How many times its command was restarted.</summary>
    public int Restarts { get; init; }

    /// <summary>True when it takes new flows now (active, and healthy or the service has no healthy instance).</summary>
    public bool InBalancer { get; init; }

    /// <summary>While draining: when its open TCP connections are cut at the latest.</summary>
    public DateTimeOffset? DrainUntil { get; init; }

    /// <summary>
    /// While draining: the TCP connections still open on it at the drain's last look at the kernel's
    /// conntrack table (it looks every 100 ms); null before the first look and when not draining.
    /// </summary>
    public int? OpenTcpFlows { get; init; }
}

/// <summary>What a migration did and how long each step took.</summary>
/// <param name="Service">The service.</param>
/// <param name="From">The instance that left the balancer.</param>
/// <param name="To">The instance that took its place.</param>
/// <param name="Started">Stopwatch timestamp when the call started (after validation).</param>
/// <param name="Repointed">Stopwatch timestamp when the re-point transaction was committed.</param>
/// <param name="Cleaned">Stopwatch timestamp when the stale conntrack entries were gone: the call's end.</param>
/// <param name="StaleFlowsDeleted">ICMP/UDP conntrack entries deleted so their next packet goes to the new instance.</param>
/// <param name="Drained">Completes when the old instance has stopped.</param>
public sealed record MigrationResult(string Service, string From, string To, long Started, long Repointed, long Cleaned, int StaleFlowsDeleted, Task<DrainResult> Drained)
{
    /// <summary>Time of the re-point transaction.</summary>
    public TimeSpan RepointTime => System.Diagnostics.Stopwatch.GetElapsedTime(Started, Repointed);

    /// <summary>Time of the whole call: re-point plus conntrack cleanup.</summary>
    public TimeSpan SwitchTime => System.Diagnostics.Stopwatch.GetElapsedTime(Started, Cleaned);
}

/// <summary>How an instance left.</summary>
/// <param name="Instance">The instance.</param>
/// <param name="TcpFlowsAtStart">TCP connections open at the drain's first look at the kernel's table, right after it left the balancer (one closed before that look is not counted).</param>
/// <param name="TcpFlowsCut">TCP connections still open at the deadline, cut.</param>
/// <param name="Duration">From leaving the balancer to stopped.</param>
public sealed record DrainResult(string Instance, int TcpFlowsAtStart, int TcpFlowsCut, TimeSpan Duration);

internal sealed record ServiceRecord(
    ServiceName Name,
    IPAddress Vip4,
    IPAddress Vip6,
    LoadBalancingPolicy Policy,
    int MaglevTableSize,
    ImmutableArray<PortMapping> Ports,
    ImmutableList<string> Backends,
    bool FlowAddressing = false);

internal sealed record FlowRecord(string Id, string Client, ServiceName Service, IPAddress Flow4, IPAddress Flow6, string Backend);

internal sealed record InstanceRecord(
    string Name,
    ServiceName Service,
    int Index,
    string Namespace,
    string HostInterface,
    IPAddress Address4,
    IPAddress Address6,
    ImmutableArray<string>? Command,
    InstanceState State)
{
    /// <summary>never | on-failure | always.</summary>
    public string Restart { get; init; } = "on-failure";

    /// <summary>The health check as asked for (null: none).</summary>
    public Relay.Engine.Api.HealthSpec? HealthSpec { get; init; }

    /// <summary>Health as last seen: healthy, unhealthy, starting (checked but not yet healthy), or none.</summary>
    public string Health { get; init; } = HealthStates.None;

    /// <summary>The command's pid and start time while it runs.</summary>
    public int? Pid { get; init; }

    /// <summary>Start time of <see cref="Pid"/> (clock ticks since boot).</summary>
    public long? PidStart { get; init; }

    /// <summary>When a draining instance is cut and stopped at the latest.</summary>
    public DateTimeOffset? DrainUntil { get; init; }

    /// <summary>How many times its command was restarted.</summary>
    public int Restarts { get; init; }

    /// <summary>Its command exited and its restart policy keeps it down (a daemon restart leaves it so).</summary>
    public bool Ended { get; init; }
}

/// <summary>Health states as reported.</summary>
public static class HealthStates
{
    /// <summary>No health check configured.</summary>
    public const string None = "none";
    /// <summary>Checked, not healthy yet.</summary>
    public const string Starting = "starting";
    /// <summary>Passing its check.</summary>
    public const string Healthy = "healthy";
    /// <summary>Failing its check: out of the balancer.</summary>
    public const string Unhealthy = "unhealthy";
}
