namespace Relay.Engine.Health;

/// <summary>What the checks say about an instance.</summary>
public enum HealthState
{
    /// <summary>Not yet enough successes in a row: the instance has not proven itself (not healthy).</summary>
    Starting,
    /// <summary>The latest results reached the healthy threshold.</summary>
    Healthy,
    /// <summary>The latest results reached the unhealthy threshold.</summary>
    Unhealthy,
}

/// <summary>A change of <see cref="HealthState"/>.</summary>
/// <param name="From">The state before.</param>
/// <param name="To">The state after.</param>
public readonly record struct HealthTransition(HealthState From, HealthState To);

/// <summary>
/// The state machine behind <see cref="HealthMonitor"/>, without time: it counts consecutive
/// results and says when they change the state. <see cref="HealthState.Starting"/> becomes
/// <see cref="HealthState.Healthy"/> after <c>healthyThreshold</c> successes in a row and
/// <see cref="HealthState.Unhealthy"/> after <c>unhealthyThreshold</c> failures in a row;
/// Healthy and Unhealthy switch into each other the same way. Never Starting again.
/// Not thread-safe: one caller records results in order.
/// </summary>
public sealed class HealthCounter
{
    /// <summary>Starts in <see cref="HealthState.Starting"/>.</summary>
    public HealthCounter(int healthyThreshold, int unhealthyThreshold)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(healthyThreshold, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(unhealthyThreshold, 1);
        HealthyThreshold = healthyThreshold;
        UnhealthyThreshold = unhealthyThreshold;
    }

    /// <summary>Consecutive successes that make the state Healthy.</summary>
    public int HealthyThreshold { get; }

    /// <summary>Consecutive failures that make the state Unhealthy.</summary>
    public int UnhealthyThreshold { get; }

    /// <summary>The current state.</summary>
    public HealthState State { get; private set; } = HealthState.Starting;

    /// <summary>Successes since the last failure.</summary>
    public int ConsecutiveSuccesses { get; private set; }

    /// <summary>Failures since the last success.</summary>
    public int ConsecutiveFailures { get; private set; }

    /// <summary>Records one result; returns the transition it caused, or null when the state stays.</summary>
    public HealthTransition? Record(bool ok)
    {
        var old = State;
        if (ok)
        {
            ConsecutiveFailures = 0;
            // Saturate rather than overflow: an instance healthy for years keeps counting.
            ConsecutiveSuccesses = ConsecutiveSuccesses == int.MaxValue ? int.MaxValue : ConsecutiveSuccesses + 1;
            if (State != HealthState.Healthy && ConsecutiveSuccesses >= HealthyThreshold)
            {
                State = HealthState.Healthy;
            }
        }
        else
        {
            ConsecutiveSuccesses = 0;
            ConsecutiveFailures = ConsecutiveFailures == int.MaxValue ? int.MaxValue : ConsecutiveFailures + 1;
            if (State != HealthState.Unhealthy && ConsecutiveFailures >= UnhealthyThreshold)
            {
                State = HealthState.Unhealthy;
            }
        }
        return State == old ? null : new HealthTransition(old, State);
    }
}
