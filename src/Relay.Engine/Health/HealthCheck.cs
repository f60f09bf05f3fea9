using Relay.Core.Errors;
using Relay.Core.Model;
using Relay.Engine.Api;

namespace Relay.Engine.Health;

/// <summary>How an instance's health is checked.</summary>
public enum HealthCheckType
{
    /// <summary>A command run inside the instance's namespace; healthy when it exits 0.</summary>
    Exec,
    /// <summary>A TCP connection from the orchestrator to a port of the instance.</summary>
    Tcp,
    /// <summary>An HTTP/1.0 GET from the orchestrator; healthy on a 2xx or 3xx status.</summary>
    Http,
    /// <summary>An ICMP echo request from the orchestrator to the instance's IPv4 address.</summary>
    Icmp,
}

/// <summary>
/// A validated health check: what to probe, how often, and how many results in a row change the
/// instance's state. Build one with <see cref="FromSpec"/> (user input) or directly (then
/// <see cref="Validate"/> it; <see cref="HealthMonitor"/> refuses an invalid one).
/// </summary>
public sealed record HealthCheck
{
    /// <summary>The shortest interval accepted: shorter ones would turn checks into load.</summary>
    public static readonly TimeSpan MinInterval = TimeSpan.FromMilliseconds(10);

    /// <summary>The interval when none is given.</summary>
    public static readonly TimeSpan DefaultInterval = TimeSpan.FromSeconds(1);

    /// <summary>The timeout when none is given (capped at the interval).</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(1);

    /// <summary>What kind of check.</summary>
    public required HealthCheckType Type { get; init; }

    /// <summary>Exec: the command and its arguments, run inside the instance.</summary>
    public IReadOnlyList<string> Command { get; init; } = [];

    /// <summary>Tcp, Http: the port on the instance's IPv4 address.</summary>
    public int Port { get; init; }

    /// <summary>Http: the request path.</summary>
    public string Path { get; init; } = "/";

    /// <summary>Time between the starts of two checks.</summary>
    public TimeSpan Interval { get; init; } = DefaultInterval;

    /// <summary>Time one check may take before it counts as failed (at most <see cref="Interval"/>).</summary>
    public TimeSpan Timeout { get; init; } = DefaultTimeout;

    /// <summary>Consecutive successes that make the instance healthy.</summary>
    public int HealthyThreshold { get; init; } = 1;

    /// <summary>Consecutive failures that make the instance unhealthy.</summary>
    public int UnhealthyThreshold { get; init; } = 3;

    /// <summary>The names accepted for <see cref="Type"/>, in documentation order.</summary>
    public static IReadOnlyList<string> TypeNames { get; } = ["exec", "tcp", "http", "icmp"];

    /// <summary>The name of <paramref name="type"/> as users write it.</summary>
    public static string NameOf(HealthCheckType type) => type switch
    {
        HealthCheckType.Exec => "exec",
        HealthCheckType.Tcp => "tcp",
        HealthCheckType.Http => "http",
        HealthCheckType.Icmp => "icmp",
        _ => throw new ArgumentOutOfRangeException(nameof(type)),
    };

    /// <summary>Parses a type name (case-insensitive).</summary>
    public static bool TryParseType(string? text, out HealthCheckType type)
    {
        switch (text?.Trim().ToLowerInvariant())
        {
            case "exec": type = HealthCheckType.Exec; return true;
            case "tcp": type = HealthCheckType.Tcp; return true;
            case "http": type = HealthCheckType.Http; return true;
            case "icmp": type = HealthCheckType.Icmp; return true;
            default: type = default; return false;
        }
    }

    /// <summary>
    /// Turns a user's health spec into a check, adding every problem found to
    /// <paramref name="errors"/> with a field path under <paramref name="field"/> (such as
    /// <c>instances[0].health.interval</c>). Returns null when <paramref name="spec"/> is null (no
    /// check) or when it has errors. Without a timeout the timeout is 1s, or the interval when that
    /// is shorter, so <c>interval: 100ms</c> alone is valid.
    /// </summary>
    public static HealthCheck? FromSpec(HealthSpec? spec, string field, ErrorCollector errors)
    {
        if (spec is null)
        {
            return null;
        }
        var before = errors.Errors.Count;
        HealthCheckType type = default;
        var typeKnown = false;
        if (string.IsNullOrWhiteSpace(spec.Type))
        {
            errors.Add(ErrorCode.Invalid, field + ".type", $"a check type is required ({string.Join(", ", TypeNames)})");
        }
        else if (!(typeKnown = TryParseType(spec.Type, out type)))
        {
            errors.Add(ErrorCode.Invalid, field + ".type", $"unknown check type '{spec.Type}'; choose one of {string.Join(", ", TypeNames)}");
        }

        // A duration that does not parse is reported once; the checks that compare durations
        // then skip it rather than piling a second, confusing error on the same field.
        var interval = ParseDuration(spec.Interval, DefaultInterval, field + ".interval", errors, out var intervalOk);
        var timeout = ParseDuration(spec.Timeout, interval < DefaultTimeout ? interval : DefaultTimeout, field + ".timeout", errors, out var timeoutOk);

        var check = new HealthCheck
        {
            Type = type,
            Command = spec.Command ?? [],
            Port = spec.Port ?? 0,
            Path = spec.Path ?? "/",
            Interval = interval,
            Timeout = timeout,
            HealthyThreshold = spec.HealthyThreshold ?? 1,
            UnhealthyThreshold = spec.UnhealthyThreshold ?? 3,
        };
        check.ValidateFields(field, errors, typeKnown, intervalOk, timeoutOk);

        // Fields that belong to another type are most likely a mistake (a tcp check with a
        // command would silently ignore the command), so they are errors too.
        if (typeKnown)
        {
            if (type != HealthCheckType.Exec && spec.Command is not null)
            {
                errors.Add(ErrorCode.Invalid, field + ".command", $"a {NameOf(type)} check has no command (only exec checks do)");
            }
            if (type is not (HealthCheckType.Tcp or HealthCheckType.Http) && spec.Port is not null)
            {
                errors.Add(ErrorCode.Invalid, field + ".port", $"a {NameOf(type)} check has no port (only tcp and http checks do)");
            }
            if (type != HealthCheckType.Http && spec.Path is not null)
            {
                errors.Add(ErrorCode.Invalid, field + ".path", $"a {NameOf(type)} check has no path (only http checks do)");
            }
        }
        return errors.Errors.Count == before ? check : null;
    }

    /// <summary>Adds every problem of this check to <paramref name="errors"/>, with field paths under <paramref name="field"/>.</summary>
    public void Validate(string field, ErrorCollector errors) => ValidateFields(field, errors, Enum.IsDefined(Type), true, true);

    /// <summary>Throws a <see cref="RelayException"/> listing every problem of this check, if any.</summary>
    public void ThrowIfInvalid(string field = "health")
    {
        var errors = new ErrorCollector();
        Validate(field, errors);
        errors.ThrowIfAny();
    }

    /// <inheritdoc />
    public bool Equals(HealthCheck? other)
        => other is not null
            && Type == other.Type
            && Command.SequenceEqual(other.Command)
            && Port == other.Port
            && Path == other.Path
            && Interval == other.Interval
            && Timeout == other.Timeout
            && HealthyThreshold == other.HealthyThreshold
            && UnhealthyThreshold == other.UnhealthyThreshold;

    /// <inheritdoc />
    public override int GetHashCode()
    {
        // Value equality over the command too: applying the same document twice must find the
        // same check, not a different list instance.
        var hash = new HashCode();
        hash.Add(Type);
        foreach (var a in Command)
        {
            hash.Add(a);
        }
        hash.Add(Port);
        hash.Add(Path);
        hash.Add(Interval);
        hash.Add(Timeout);
        hash.Add(HealthyThreshold);
        hash.Add(UnhealthyThreshold);
        return hash.ToHashCode();
    }

    /// <summary>A short description for logs: <c>tcp :8080 every 1s</c>.</summary>
    public override string ToString()
    {
        var what = Type switch
        {
            HealthCheckType.Exec => "exec " + string.Join(' ', Command),
            HealthCheckType.Tcp => $"tcp :{Port}",
            HealthCheckType.Http => $"http :{Port}{Path}",
            _ => NameOf(Type),
        };
        return $"{what} every {Duration.Format(Interval)} (timeout {Duration.Format(Timeout)}, healthy {HealthyThreshold}, unhealthy {UnhealthyThreshold})";
    }

    private void ValidateFields(string field, ErrorCollector errors, bool typeKnown, bool intervalOk, bool timeoutOk)
    {
        if (typeKnown && Type == HealthCheckType.Exec)
        {
            if (Command.Count == 0 || string.IsNullOrWhiteSpace(Command[0]))
            {
                errors.Add(ErrorCode.Invalid, field + ".command", "an exec check needs a command (such as [\"pg_isready\"])");
            }
        }
        var usesPort = Type is HealthCheckType.Tcp or HealthCheckType.Http;
        if (typeKnown && usesPort && Port == 0)
        {
            errors.Add(ErrorCode.Invalid, field + ".port", $"a {NameOf(Type)} check needs a port");
        }
        else if ((usesPort || !typeKnown) && Port is < 0 or > 65535)
        {
            errors.Add(ErrorCode.Invalid, field + ".port", $"port {Port} is out of range 1-65535");
        }
        if (typeKnown && Type == HealthCheckType.Http)
        {
            // The path goes verbatim into the request line: a space or a line break would end it.
            if (Path.Length == 0 || Path[0] != '/' || Path.Any(c => c <= ' ' || c >= 0x7f))
            {
                errors.Add(ErrorCode.Invalid, field + ".path", $"'{Path}' is not a request path (it must start with '/' and hold no spaces or control characters; percent-encode the rest)");
            }
        }
        if (intervalOk && Interval < MinInterval)
        {
            errors.Add(ErrorCode.Invalid, field + ".interval", $"the interval must be at least {Duration.Format(MinInterval)}");
        }
        if (timeoutOk && Timeout <= TimeSpan.Zero)
        {
            errors.Add(ErrorCode.Invalid, field + ".timeout", "the timeout must be longer than 0");
        }
        else if (timeoutOk && intervalOk && Timeout > Interval)
        {
            errors.Add(ErrorCode.Invalid, field + ".timeout", $"the timeout ({Duration.Format(Timeout)}) cannot be longer than the interval ({Duration.Format(Interval)}): checks would overlap");
        }
        if (HealthyThreshold < 1)
        {
            errors.Add(ErrorCode.Invalid, field + ".healthyThreshold", $"the healthy threshold must be at least 1 (got {HealthyThreshold})");
        }
        if (UnhealthyThreshold < 1)
        {
            errors.Add(ErrorCode.Invalid, field + ".unhealthyThreshold", $"the unhealthy threshold must be at least 1 (got {UnhealthyThreshold})");
        }
    }

    private static TimeSpan ParseDuration(string? text, TimeSpan fallback, string field, ErrorCollector errors, out bool ok)
    {
        ok = true;
        if (text is null)
        {
            return fallback;
        }
        if (!Duration.TryParse(text, out var value, out var reason))
        {
            errors.Add(ErrorCode.Invalid, field, reason);
            ok = false;
            return fallback;
        }
        return value;
    }
}
