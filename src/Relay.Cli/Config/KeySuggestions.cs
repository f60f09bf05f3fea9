namespace Relay.Cli.Config;

/// <summary>"Did you mean ...?" for misspelt keys and values.</summary>
internal static class KeySuggestions
{
    /// <summary>Beyond this many edits a suggestion is more likely to confuse than to help.</summary>
    public const int MaxDistance = 2;

    /// <summary>The candidate closest to <paramref name="text"/> (ignoring case), if it is at most <see cref="MaxDistance"/> edits away.</summary>
    public static string? Closest(string text, IEnumerable<string> candidates)
    {
        string? best = null;
        var bestDistance = MaxDistance + 1;
        var lower = text.ToLowerInvariant();
        foreach (var candidate in candidates)
        {
            var distance = Distance(lower, candidate.ToLowerInvariant());
            if (distance < bestDistance)
            {
                (best, bestDistance) = (candidate, distance);
            }
        }
        return best;
    }

    /// <summary>" (did you mean 'x'?)" or nothing.</summary>
    public static string DidYouMean(string text, IEnumerable<string> candidates)
        => Closest(text, candidates) is { } match ? $" (did you mean '{match}'?)" : "";

    /// <summary>Levenshtein distance with adjacent transpositions counted as one edit (optimal string alignment).</summary>
    public static int Distance(string a, string b)
    {
        if (Math.Abs(a.Length - b.Length) > MaxDistance + 1)
        {
            return Math.Abs(a.Length - b.Length);
        }
        var d = new int[a.Length + 1, b.Length + 1];
        for (var i = 0; i <= a.Length; i++)
        {
            d[i, 0] = i;
        }
        for (var j = 0; j <= b.Length; j++)
        {
            d[0, j] = j;
        }
        for (var i = 1; i <= a.Length; i++)
        {
            for (var j = 1; j <= b.Length; j++)
            {
                var cost = a[i - 1] == b[j - 1] ? 0 : 1;
                d[i, j] = Math.Min(Math.Min(d[i - 1, j] + 1, d[i, j - 1] + 1), d[i - 1, j - 1] + cost);
                if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                {
                    d[i, j] = Math.Min(d[i, j], d[i - 2, j - 2] + 1);
                }
            }
        }
        return d[a.Length, b.Length];
    }
}
