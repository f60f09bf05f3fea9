using System.Text.RegularExpressions;

namespace Relay.Engine.Dataplane;

/// <summary>
/// Compares two listings of Relay's table (<c>nft list table inet relay</c>) for the same content:
/// element order (the kernel's hash order), counter values and the dynamic DNS rate sets (runtime
/// state, not configuration) do not count.
/// </summary>
public static partial class TableListing
{
    /// <summary>True when <paramref name="a"/> and <paramref name="b"/> list the same chains, rules and elements.</summary>
    public static bool Same(string a, string b) => Normalize(a).SequenceEqual(Normalize(b), StringComparer.Ordinal);

    /// <summary>The listing as a sorted list of normalized items.</summary>
    public static IReadOnlyList<string> Normalize(string listing)
    {
        var items = new List<string>();
        var skipping = false;
        foreach (var raw in listing.Split('\n'))
        {
            var line = Counters().Replace(raw.Trim(), "counter");
            if (line.StartsWith("set dnsrate", StringComparison.Ordinal))
            {
                skipping = true;
                items.Add(line);
                continue;
            }
            if (skipping)
            {
                skipping = line != "}";
                continue;
            }
            if (line.StartsWith("elements = {", StringComparison.Ordinal))
            {
                line = line["elements = {".Length..];
            }
            line = line.TrimEnd(',').TrimEnd('}').Trim().TrimEnd(',');
            foreach (var item in line.Split(", "))
            {
                if (item.Length > 0)
                {
                    items.Add(item.Trim());
                }
            }
        }
        items.Sort(StringComparer.Ordinal);
        return items;
    }

    [GeneratedRegex(@"counter packets \d+ bytes \d+")]
    private static partial Regex Counters();
}
