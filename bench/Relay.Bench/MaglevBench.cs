using System.Text;
using System.Globalization;
using System.Diagnostics;
using Relay.Core.LoadBalancing;

namespace Relay.Bench;

/// <summary>Result of the Maglev experiment for one instance count.</summary>
internal sealed record MaglevResult(int N, int TableSize, double MaxLoadOverMean, double RemoveOneRemapped, double TableBuildMs);

/// <summary>Pure computation: balance of the table, flows moved when one instance goes, build time.</summary>
internal static class MaglevBench
{
    public static MaglevResult Run(int n)
    {
        var names = Enumerable.Range(0, n).Select(i => $"instance-{i}").ToArray();
        var m = Maglev.TableSize(n);
        var sw = Stopwatch.StartNew();
        const int builds = 20;
        int[] table = [];
        for (var i = 0; i < builds; i++)
        {
            table = Maglev.Build(names, m);
        }
        var buildMs = sw.Elapsed.TotalMilliseconds / builds;
        var loads = new int[n];
        foreach (var owner in table)
        {
            loads[owner]++;
        }
        var maxOverMean = loads.Max() / ((double)m / n);

        // Remove one instance: the share of 100,000 flow hashes whose instance changes.
        var without = names.Where((_, i) => i != n / 2).ToArray();
        var after = Maglev.Build(without, m);
        var rng = new Random(42);
        var moved = 0;
        const int flows = 100_000;
        for (var f = 0; f < flows; f++)
        {
            var slot = (int)((uint)rng.Next() % (uint)m);
            if (names[table[slot]] != without[after[slot]])
            {
                moved++;
            }
        }
        return new MaglevResult(n, m, Math.Round(maxOverMean, 4), Math.Round(moved / (double)flows, 4), Math.Round(buildMs, 3));
    }
    /// <summary>This experiment's section of docs/benchmarks.md.</summary>
    public static void Render(StringBuilder sb, IReadOnlyList<MaglevResult> results, Charts charts)
    {
        var inv = CultureInfo.InvariantCulture;
        sb.AppendLine("## Maglev table (pure computation)");
        sb.AppendLine();
        sb.AppendLine("| instances | table size | max load / mean | flows remapped when one instance goes | build (ms) |");
        sb.AppendLine("|---:|---:|---:|---:|---:|");
        foreach (var g in results)
        {
            sb.AppendLine(string.Create(inv, $"| {g.N} | {g.TableSize} | {g.MaxLoadOverMean:F4} | {g.RemoveOneRemapped:P2} (ideal {1.0 / g.N:P2}) | {g.TableBuildMs:F3} |"));
        }
    }
}
