namespace Relay.Core.Errors;

/// <summary>
/// Collects every problem of a request before anything is applied, then throws them
/// all at once (the YARP ConfigValidator pattern).
/// </summary>
public sealed class ErrorCollector
{
    private readonly List<RelayError> _errors = [];

    /// <summary>True when no error has been added.</summary>
    public bool IsEmpty => _errors.Count == 0;

    /// <summary>The errors so far.</summary>
    public IReadOnlyList<RelayError> Errors => _errors;

    /// <summary>Adds one error.</summary>
    public void Add(ErrorCode code, string field, string message) => _errors.Add(new RelayError(code, field, message));

    /// <summary>Adds errors found elsewhere.</summary>
    public void AddRange(IEnumerable<RelayError> errors) => _errors.AddRange(errors);

    /// <summary>Throws a <see cref="RelayException"/> listing every error, if there is any.</summary>
    public void ThrowIfAny()
    {
        if (_errors.Count > 0)
        {
            throw new RelayException(_errors.ToArray());
        }
    }
}
