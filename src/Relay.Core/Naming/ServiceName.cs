using Relay.Core.Errors;

namespace Relay.Core.Naming;

/// <summary>
/// The name of a service: a DNS name (RFC 1123), compared case-insensitively and kept in
/// canonical form (lower case, no trailing dot). <c>B.Com.</c> and <c>b.com</c> are the same service.
/// </summary>
public readonly record struct ServiceName : IComparable<ServiceName>
{
    private ServiceName(string value) => Value = value;

    /// <summary>The canonical form.</summary>
    public string Value { get; }

    /// <summary>Parses a name or throws a <see cref="RelayException"/> saying why it is invalid.</summary>
    public static ServiceName Parse(string? name, string field = "service")
        => TryParse(name, out var result, out var reason) ? result : throw new RelayException(ErrorCode.Invalid, field, reason);

    /// <summary>Parses a name; on failure <paramref name="reason"/> says why.</summary>
    public static bool TryParse(string? name, out ServiceName result, out string reason)
    {
        var canonical = DnsName.TryNormalize(name, out reason);
        result = canonical is null ? default : new ServiceName(canonical);
        return canonical is not null;
    }

    /// <inheritdoc />
    public int CompareTo(ServiceName other) => string.CompareOrdinal(Value, other.Value);

    /// <inheritdoc />
    public override string ToString() => Value ?? "";
}
