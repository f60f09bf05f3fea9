using System.Globalization;

namespace Relay.Core.Model;

/// <summary>
/// Durations as users write them: <c>500ms</c>, <c>30s</c>, <c>2m</c>, <c>1h</c>, combinations such as
/// <c>1m30s</c>, and a bare <c>0</c>. Formatting picks the shortest exact form.
/// </summary>
public static class Duration
{
    /// <summary>Parses <paramref name="text"/>; on failure <paramref name="reason"/> says what is accepted.</summary>
    public static bool TryParse(string? text, out TimeSpan value, out string reason)
    {
        value = TimeSpan.Zero;
        reason = "";
        var s = text?.Trim() ?? "";
        if (s == "0")
        {
            return true;
        }
        if (s.Length == 0)
        {
            reason = "a duration is required (such as 500ms, 30s, 2m)";
            return false;
        }
        var total = 0.0;
        var i = 0;
        while (i < s.Length)
        {
            var start = i;
            while (i < s.Length && (char.IsAsciiDigit(s[i]) || s[i] == '.'))
            {
                i++;
            }
            var unitStart = i;
            while (i < s.Length && char.IsAsciiLetter(s[i]))
            {
                i++;
            }
            if (unitStart == start || unitStart == i
                || !double.TryParse(s.AsSpan(start, unitStart - start), NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var number))
            {
                reason = $"'{text}' is not a duration (expected such as 500ms, 30s, 1m30s, or 0)";
                return false;
            }
            var milliseconds = s[unitStart..i] switch
            {
                "ms" => 1.0,
                "s" => 1000.0,
                "m" => 60_000.0,
                "h" => 3_600_000.0,
                _ => double.NaN,
            };
            if (double.IsNaN(milliseconds))
            {
                reason = $"'{text}': unknown unit '{s[unitStart..i]}' (use ms, s, m or h)";
                return false;
            }
            total += number * milliseconds;
        }
        if (total > TimeSpan.FromDays(365).TotalMilliseconds)
        {
            reason = $"'{text}' is longer than a year";
            return false;
        }
        value = TimeSpan.FromMilliseconds(total);
        return true;
    }

    /// <summary>The shortest exact form: <c>0</c>, <c>250ms</c>, <c>30s</c>, <c>2m</c>, <c>1h</c>.</summary>
    public static string Format(TimeSpan value)
    {
        if (value == TimeSpan.Zero)
        {
            return "0";
        }
        var ms = (long)value.TotalMilliseconds;
        return ms % 3_600_000 == 0 ? $"{ms / 3_600_000}h"
            : ms % 60_000 == 0 ? $"{ms / 60_000}m"
            : ms % 1000 == 0 ? $"{ms / 1000}s"
            : $"{ms}ms";
    }
}
