using Relay.Engine.Api;

namespace Relay.Engine.State;

/// <summary>A service as the store keeps it (plain data: strings and numbers).</summary>
public sealed record StoredService(
    string Name,
    string Vip4,
    string Vip6,
    string Policy,
    int MaglevTableSize,
    IReadOnlyList<string> Ports,
    IReadOnlyList<string> Backends,
    bool FlowAddressing);

/// <summary>
/// An instance as the store keeps it, with what identifies its running command. <c>Ended</c>: its
/// command exited and its restart policy keeps it down (a daemon restart does not start it again).
/// </summary>
public sealed record StoredInstance(
    string Name,
    string Service,
    int Index,
    string Namespace,
    string HostInterface,
    string Address4,
    string Address6,
    IReadOnlyList<string>? Command,
    string State,
    string Restart,
    HealthSpec? HealthCheck,
    int? Pid,
    long? PidStart,
    DateTimeOffset? DrainUntil,
    int Restarts,
    string Health,
    bool Ended = false);

/// <summary>A flow address as the store keeps it.</summary>
public sealed record StoredFlow(string Id, string Client, string Service, string Flow4, string Flow6, string Backend);

/// <summary>Everything needed to restore a network after the daemon restarted.</summary>
public sealed record StoredNetwork(
    NetworkOptions Options,
    IReadOnlyList<StoredService> Services,
    IReadOnlyList<StoredInstance> Instances,
    IReadOnlyList<StoredFlow> Flows);

/// <summary>What one operation changed, for the store to write in one transaction.</summary>
public sealed record NetworkChange(
    string Network,
    IReadOnlyList<StoredService> Services,
    IReadOnlyList<string> RemovedServices,
    IReadOnlyList<StoredInstance> Instances,
    IReadOnlyList<string> RemovedInstances,
    IReadOnlyList<StoredFlow> Flows,
    IReadOnlyList<string> RemovedFlows)
{
    /// <summary>True when nothing changed.</summary>
    public bool IsEmpty => Services.Count + RemovedServices.Count + Instances.Count + RemovedInstances.Count + Flows.Count + RemovedFlows.Count == 0;
}

/// <summary>
/// Where a network's state is kept (the daemon's SQLite store). Called with the network's lock held,
/// after the kernel accepted a change: the kernel runs ahead of the store by at most one operation,
/// and a restart converges the kernel back to the store (so an operation interrupted by a crash
/// either completed or did not happen).
/// </summary>
public interface INetworkStore
{
    /// <summary>Writes <paramref name="change"/> atomically.</summary>
    void Save(NetworkChange change);
}
