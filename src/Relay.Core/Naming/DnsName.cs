using Relay.Core.Errors;

namespace Relay.Core.Naming;

/// <summary>
/// Validation of host names as RFC 1123 defines them: labels of 1-63 letters, digits and
/// hyphens that neither start nor end with a hyphen, at most 253 characters in all.
/// Names are case-insensitive; the canonical form is lower case without a trailing dot.
/// </summary>
public static class DnsName
{
    /// <summary>The longest name in presentation form, without the trailing dot (RFC 1035 255 octets on the wire).</summary>
    public const int MaxLength = 253;

    /// <summary>The longest label (RFC 1035).</summary>
    public const int MaxLabelLength = 63;

    /// <summary>Returns the canonical form of <paramref name="name"/>, or null and a reason.</summary>
    public static string? TryNormalize(string? name, out string reason)
    {
        reason = "";
        if (string.IsNullOrEmpty(name))
        {
            reason = "a name is required";
            return null;
        }
        var s = name.EndsWith('.') ? name[..^1] : name;
        if (s.Length == 0)
        {
            reason = "the root name '.' is not a service name";
            return null;
        }
        if (s.Length > MaxLength)
        {
            reason = $"'{Shorten(name)}' is {s.Length} characters long; at most {MaxLength} are allowed";
            return null;
        }
        foreach (var label in s.Split('.'))
        {
            if (!IsValidLabel(label, out var why))
            {
                reason = $"'{Shorten(name)}' is not a valid DNS name: {why}";
                return null;
            }
        }
        return s.ToLowerInvariant();
    }

    /// <summary>True when <paramref name="label"/> is one valid RFC 1123 label.</summary>
    public static bool IsValidLabel(string label, out string reason)
    {
        reason = "";
        if (label.Length == 0)
        {
            reason = "it has an empty label (two dots in a row, or a leading dot)";
            return false;
        }
        if (label.Length > MaxLabelLength)
        {
            reason = $"label '{Shorten(label)}' is {label.Length} characters long; at most {MaxLabelLength} are allowed";
            return false;
        }
        if (label[0] == '-' || label[^1] == '-')
        {
            reason = $"label '{label}' starts or ends with '-'";
            return false;
        }
        foreach (var c in label)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c == '-'))
            {
                reason = $"label '{label}' contains '{c}'; only letters, digits and '-' are allowed";
                return false;
            }
        }
        return true;
    }

    private static string Shorten(string s) => s.Length <= 40 ? s : s[..37] + "...";
}
