using Relay.Core.Errors;

namespace Relay.Core.Naming;

/// <summary>
/// Names of networks and instances: one lower-case DNS label. They become parts of namespace
/// names (<c>relay-NET</c>, <c>relay-NET.INSTANCE</c>), so they may not contain dots:
/// that keeps the namespace of one network from ever looking like an instance of another.
/// </summary>
public static class ResourceName
{
    /// <summary>The longest network name: short enough that every derived name stays readable.</summary>
    public const int MaxNetworkLength = 32;

    /// <summary>The longest instance name (one DNS label).</summary>
    public const int MaxInstanceLength = DnsName.MaxLabelLength;

    /// <summary>Validates a network name, adding to <paramref name="errors"/>; returns the canonical form.</summary>
    public static string? ValidateNetwork(string? name, string field, ErrorCollector errors)
        => Validate(name, field, MaxNetworkLength, "network", errors);

    /// <summary>Validates an instance name, adding to <paramref name="errors"/>; returns the canonical form.</summary>
    public static string? ValidateInstance(string? name, string field, ErrorCollector errors)
        => Validate(name, field, MaxInstanceLength, "instance", errors);

    /// <summary>Validates a cluster node's name (one DNS label, as a host name), adding to <paramref name="errors"/>; returns the canonical form.</summary>
    public static string? ValidateNode(string? name, string field, ErrorCollector errors)
        => Validate(name, field, MaxNetworkLength, "node", errors);

    private static string? Validate(string? name, string field, int max, string what, ErrorCollector errors)
    {
        if (string.IsNullOrEmpty(name))
        {
            errors.Add(ErrorCode.Invalid, field, $"{(what == "instance" ? "an" : "a")} {what} name is required");
            return null;
        }
        if (name.Length > max)
        {
            errors.Add(ErrorCode.Invalid, field, $"{what} name '{name}' is {name.Length} characters long; at most {max} are allowed");
            return null;
        }
        if (!DnsName.IsValidLabel(name, out var reason))
        {
            errors.Add(ErrorCode.Invalid, field, $"{what} name '{name}' is invalid: {reason} (one DNS label: letters, digits, '-')");
            return null;
        }
        return name.ToLowerInvariant();
    }

    /// <summary>
    /// The default name of a new instance of <paramref name="service"/>: its first label and one past
    /// the highest number in use (hello-1, hello-2, and a migration's fresh instance hello-3; a name
    /// is not reused while its predecessor may still be draining).
    /// </summary>
    public static string NextInstance(string service, IEnumerable<string> existing)
    {
        var label = service.Split('.')[0];
        label = label.Length > 50 ? label[..50].TrimEnd('-') : label;
        var taken = existing.ToHashSet(StringComparer.Ordinal);
        var highest = 0;
        foreach (var name in taken)
        {
            if (name.Length > label.Length + 1 && name.StartsWith(label + "-", StringComparison.Ordinal)
                && int.TryParse(name.AsSpan(label.Length + 1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var k))
            {
                highest = Math.Max(highest, k);
            }
        }
        for (var n = highest + 1; ; n++)
        {
            var candidate = $"{label}-{n}";
            if (!taken.Contains(candidate))
            {
                return candidate;
            }
        }
    }
}
