namespace Relay.Core.Errors;

/// <summary>
/// A user-facing failure. It carries every error found, never just the first, and it is
/// thrown before anything was changed (validation) or after the change was rolled back (kernel).
/// Callers print <see cref="Exception.Message"/>; no stack trace is ever shown for it.
/// </summary>
public sealed class RelayException : Exception
{
    /// <summary>Creates an exception listing <paramref name="errors"/> (at least one).</summary>
    public RelayException(IReadOnlyList<RelayError> errors, Exception? inner = null)
        : base(Format(errors), inner)
    {
        if (errors.Count == 0)
        {
            throw new ArgumentException("at least one error is required", nameof(errors));
        }
        Errors = errors;
    }

    /// <summary>Creates an exception for a single error.</summary>
    public RelayException(ErrorCode code, string field, string message, Exception? inner = null)
        : this([new RelayError(code, field, message)], inner)
    {
    }

    /// <summary>Every error found, in the order found.</summary>
    public IReadOnlyList<RelayError> Errors { get; }

    /// <summary>The code of the first error; most requests fail for one kind of reason.</summary>
    public ErrorCode Code => Errors[0].Code;

    private static string Format(IReadOnlyList<RelayError> errors) => errors.Count switch
    {
        0 => "no errors",
        1 => errors[0].ToString(),
        _ => $"{errors.Count} errors:" + string.Concat(errors.Select(e => "\n  - " + e)),
    };
}
