namespace Relay.Engine;

/// <summary>Something that happened in a network, as the event stream and logs report it.</summary>
/// <param name="Time">When.</param>
/// <param name="Network">Which network.</param>
/// <param name="Kind">What kind: <c>service.added</c>, <c>instance.health</c>, <c>migration</c>... (see <see cref="EventKinds"/>).</param>
/// <param name="Subject">The service or instance concerned.</param>
/// <param name="Message">A sentence for people.</param>
/// <param name="Data">Details for programs (timings in microseconds, states...).</param>
public sealed record RelayEvent(DateTimeOffset Time, string Network, string Kind, string Subject, string Message, IReadOnlyDictionary<string, string> Data);

/// <summary>The kinds of <see cref="RelayEvent"/>.</summary>
public static class EventKinds
{
    /// <summary>A network was created or restored.</summary>
    public const string NetworkUp = "network.up";
    /// <summary>A network was removed.</summary>
    public const string NetworkDown = "network.down";
    /// <summary>A service was added.</summary>
    public const string ServiceAdded = "service.added";
    /// <summary>A service was changed (policy, ports).</summary>
    public const string ServiceChanged = "service.changed";
    /// <summary>A service was removed.</summary>
    public const string ServiceRemoved = "service.removed";
    /// <summary>An instance was added.</summary>
    public const string InstanceAdded = "instance.added";
    /// <summary>An instance left the balancer and drains.</summary>
    public const string InstanceDraining = "instance.draining";
    /// <summary>An instance was removed.</summary>
    public const string InstanceRemoved = "instance.removed";
    /// <summary>An instance's health changed.</summary>
    public const string InstanceHealth = "instance.health";
    /// <summary>An instance's command exited.</summary>
    public const string InstanceExited = "instance.exited";
    /// <summary>An instance's command was (re)started.</summary>
    public const string InstanceStarted = "instance.started";
    /// <summary>A service moved from one instance to another (data: repointUs, cleanupUs, stale).</summary>
    public const string Migration = "migration";
    /// <summary>One flow address moved.</summary>
    public const string FlowRepointed = "flow.repointed";
}
