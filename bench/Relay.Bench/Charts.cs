using ScottPlot;

namespace Relay.Bench;

/// <summary>
/// Charts for docs/benchmarks.md, written as SVG next to it (docs/benchmarks/NAME.svg) by
/// ScottPlot. A chart is a set of named series over the same kind of x (such as N services).
/// </summary>
internal sealed class Charts(string? directory)
{
    /// <summary>A named line: x and y values.</summary>
    public sealed record Series(string Name, IReadOnlyList<double> X, IReadOnlyList<double> Y);

    /// <summary>
    /// Writes a line chart and returns the Markdown that shows it (relative to docs/), or an empty
    /// string when charts are off (smoke runs).
    /// </summary>
    public string Line(string name, string title, string xLabel, string yLabel, IReadOnlyList<Series> series, bool logX = false, bool logY = false)
    {
        if (directory is null)
        {
            return "";
        }
        Directory.CreateDirectory(directory);
        var plot = new Plot();
        foreach (var s in series)
        {
            var xs = s.X.Select(x => logX ? Math.Log10(x) : x).ToArray();
            var ys = s.Y.Select(y => logY ? Math.Log10(Math.Max(y, 1e-9)) : y).ToArray();
            var line = plot.Add.Scatter(xs, ys);
            line.LegendText = s.Name;
            line.MarkerSize = 7;
        }
        if (logX)
        {
            plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { MinorTickGenerator = new ScottPlot.TickGenerators.LogMinorTickGenerator(), IntegerTicksOnly = true, LabelFormatter = y => $"{Math.Pow(10, y):N0}" };
        }
        if (logY)
        {
            plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { MinorTickGenerator = new ScottPlot.TickGenerators.LogMinorTickGenerator(), IntegerTicksOnly = true, LabelFormatter = y => Math.Pow(10, y) >= 1 ? $"{Math.Pow(10, y):N0}" : $"{Math.Pow(10, y):G3}" };
        }
        plot.Title(title);
        plot.XLabel(xLabel + (logX ? " (log)" : ""));
        plot.YLabel(yLabel + (logY ? " (log)" : ""));
        // Outside the data area, on the right: inside, it hid the points of whichever series ran there.
        plot.ShowLegend(Edge.Right);
        var path = Path.Combine(directory, name + ".svg");
        plot.SaveSvg(path, 900, 420);
        return $"![{title}](benchmarks/{name}.svg)";
    }
}
