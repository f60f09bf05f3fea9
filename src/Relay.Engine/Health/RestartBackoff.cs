namespace Relay.Engine.Health;

/// <summary>
/// The delays between restarts of one instance's command: 1s, 2s, 4s... capped at 30s, back to
/// 1s once a run lasted at least 10s (it had started properly, so the next failure is a new
/// problem rather than the same crash loop). Not thread-safe: one per instance, used by whoever
/// supervises its process.
/// </summary>
public sealed class RestartBackoff
{
    /// <summary>The first delay.</summary>
    public static readonly TimeSpan Initial = TimeSpan.FromSeconds(1);

    /// <summary>The longest delay.</summary>
    public static readonly TimeSpan Max = TimeSpan.FromSeconds(30);

    /// <summary>A run at least this long resets the delay to <see cref="Initial"/>.</summary>
    public static readonly TimeSpan ResetAfter = TimeSpan.FromSeconds(10);

    /// <summary>The delay the next restart will wait, unless the run that ends first lasted <see cref="ResetAfter"/>.</summary>
    public TimeSpan Upcoming { get; private set; } = Initial;

    /// <summary>Restarts since the last reset.</summary>
    public int Attempts { get; private set; }

    /// <summary>
    /// The delay before restarting a process that exited after running for <paramref name="ranFor"/>;
    /// each call counts one restart and doubles the following delay.
    /// </summary>
    public TimeSpan Next(TimeSpan ranFor)
    {
        if (ranFor >= ResetAfter)
        {
            Reset();
        }
        var delay = Upcoming;
        Upcoming = delay >= Max / 2 ? Max : delay * 2;
        Attempts++;
        return delay;
    }

    /// <summary>Back to <see cref="Initial"/> (for example after the instance was restarted by hand).</summary>
    public void Reset()
    {
        Upcoming = Initial;
        Attempts = 0;
    }

    /// <summary>
    /// Whether <paramref name="policy"/> restarts a command that exited with <paramref name="exitCode"/>.
    /// A command killed by signal N has exit code 128+N (as .NET's <c>Process.ExitCode</c> and
    /// shells report it: 137 for SIGKILL, 143 for SIGTERM), which is a failure for
    /// <see cref="RestartPolicy.OnFailure"/>. Null is an exit whose code is unknown (a process
    /// Relay did not start itself, found gone): a process that vanished is taken as failed. A stop
    /// Relay asked for is not an exit to restart after; the supervisor must not ask.
    /// </summary>
    public static bool ShouldRestart(RestartPolicy policy, int? exitCode) => policy switch
    {
        RestartPolicy.Never => false,
        RestartPolicy.OnFailure => exitCode != 0,
        RestartPolicy.Always => true,
        _ => throw new ArgumentOutOfRangeException(nameof(policy)),
    };
}
