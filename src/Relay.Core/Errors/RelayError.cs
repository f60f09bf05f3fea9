namespace Relay.Core.Errors;

/// <summary>Stable, machine-readable codes for user-facing errors (printed by the CLI, returned by the API).</summary>
public enum ErrorCode
{
    /// <summary>A value does not have the required form (name, address, port...).</summary>
    Invalid,
    /// <summary>Something with the same identity already exists.</summary>
    Duplicate,
    /// <summary>A referenced object does not exist.</summary>
    NotFound,
    /// <summary>An address pool has no free address left.</summary>
    PoolExhausted,
    /// <summary>A requested address is outside the pool it must come from.</summary>
    NotInPool,
    /// <summary>The operation does not make sense in the current state (wrong service, wrong phase).</summary>
    Conflict,
    /// <summary>The kernel refused or failed an operation; the previous state was kept.</summary>
    Kernel,
    /// <summary>The cluster store (etcd) did not answer, or has no quorum; retry when it is back.</summary>
    Unavailable,
}

/// <summary>One problem with a request, with the field it concerns.</summary>
/// <param name="Code">What kind of problem.</param>
/// <param name="Field">Where: a field path such as <c>services[2].name</c>, or an object name.</param>
/// <param name="Message">A sentence a user can act on.</param>
public sealed record RelayError(ErrorCode Code, string Field, string Message)
{
    /// <inheritdoc />
    public override string ToString() => Field.Length == 0 ? Message : $"{Field}: {Message}";
}
