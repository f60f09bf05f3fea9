namespace Relay.Bench;

/// <summary>Percentiles over samples (nearest rank).</summary>
internal static class Stats
{
    public static double Percentile(IReadOnlyCollection<double> samples, double p)
    {
        if (samples.Count == 0)
        {
            return double.NaN;
        }
        var sorted = samples.Order().ToArray();
        var rank = (int)Math.Ceiling(p * sorted.Length) - 1;
        return Math.Round(sorted[Math.Clamp(rank, 0, sorted.Length - 1)], 1);
    }

    public static double Median(IReadOnlyCollection<double> samples) => Percentile(samples, 0.5);
}
