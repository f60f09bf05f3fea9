using Relay.Core.Errors;

namespace Relay.Engine.Health;

/// <summary>What to do when an instance's command exits.</summary>
public enum RestartPolicy
{
    /// <summary>Leave it stopped.</summary>
    Never,
    /// <summary>Restart it when it failed: a non-zero exit code, which includes being killed by a signal.</summary>
    OnFailure,
    /// <summary>Restart it whatever the exit code.</summary>
    Always,
}

/// <summary>The names of <see cref="RestartPolicy"/> values, as users write them.</summary>
public static class RestartPolicies
{
    /// <summary><see cref="RestartPolicy.Never"/>.</summary>
    public const string Never = "never";
    /// <summary><see cref="RestartPolicy.OnFailure"/>.</summary>
    public const string OnFailure = "on-failure";
    /// <summary><see cref="RestartPolicy.Always"/>.</summary>
    public const string Always = "always";

    /// <summary>Every name, in documentation order.</summary>
    public static IReadOnlyList<string> All { get; } = [Never, OnFailure, Always];

    /// <summary>The name of <paramref name="policy"/>.</summary>
    public static string Of(RestartPolicy policy) => policy switch
    {
        RestartPolicy.Never => Never,
        RestartPolicy.OnFailure => OnFailure,
        RestartPolicy.Always => Always,
        _ => throw new ArgumentOutOfRangeException(nameof(policy)),
    };

    /// <summary>Parses a name (case-insensitive; <c>on_failure</c> and <c>onfailure</c> are accepted too).</summary>
    public static bool TryParse(string? text, out RestartPolicy policy)
    {
        switch (text?.Trim().ToLowerInvariant())
        {
            case Never: policy = RestartPolicy.Never; return true;
            case OnFailure or "on_failure" or "onfailure": policy = RestartPolicy.OnFailure; return true;
            case Always: policy = RestartPolicy.Always; return true;
            default: policy = default; return false;
        }
    }

    /// <summary>
    /// Parses <paramref name="text"/>, or returns <paramref name="fallback"/> when it is null or
    /// blank (not given). An unknown name adds an error at <paramref name="field"/> and returns
    /// <paramref name="fallback"/>, so a caller collecting errors can go on validating.
    /// </summary>
    public static RestartPolicy Parse(string? text, RestartPolicy fallback, string field, ErrorCollector errors)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            return fallback;
        }
        if (TryParse(text, out var policy))
        {
            return policy;
        }
        errors.Add(ErrorCode.Invalid, field, $"unknown restart policy '{text}'; choose one of {string.Join(", ", All)}");
        return fallback;
    }
}
