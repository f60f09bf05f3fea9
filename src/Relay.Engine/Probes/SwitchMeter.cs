using System.Diagnostics;

namespace Relay.Engine.Probes;

/// <summary>A migration and how long its switch took, as a pinging client sees it.</summary>
/// <param name="Migration">What the migration reported.</param>
/// <param name="SwitchUs">From the migrate call to the first echo request reaching the new instance (the kernel answers it at once); null when none came in time.</param>
public sealed record MeasuredSwitch(MigrationResult Migration, double? SwitchUs);

/// <summary>Migrates a service while watching the new instance for the first ping to arrive.</summary>
public static class SwitchMeter
{
    /// <summary>
    /// Starts watching <paramref name="to"/>'s namespace for echo requests, migrates
    /// <paramref name="service"/> from <paramref name="from"/> to it, and waits up to
    /// <paramref name="timeout"/> for the first request.
    /// </summary>
    public static MeasuredSwitch Migrate(RelayNetwork network, string service, string from, string to, TimeSpan timeout, TimeSpan? drain = null)
    {
        using var watcher = new IcmpEchoWatcher(network.GetInstance(to).Namespace);
        var m = network.Migrate(service, from, to, drain);
        var first = watcher.WaitFirst(timeout);
        return new MeasuredSwitch(m, first == 0 ? null : Stopwatch.GetElapsedTime(m.Started, first).TotalMicroseconds);
    }
}
