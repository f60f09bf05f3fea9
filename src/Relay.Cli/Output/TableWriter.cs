namespace Relay.Cli.Output;

/// <summary>
/// Plain aligned columns, kubectl style: header in capitals, two spaces between columns, no box
/// drawing, so the output stays easy to read and to grep. (Written here rather than with
/// Spectre.Console: a column aligner is twenty lines, and Spectre's tables draw borders.)
/// </summary>
public static class TableWriter
{
    /// <summary>Writes <paramref name="rows"/> under <paramref name="headers"/>.</summary>
    public static void Write(TextWriter output, IReadOnlyList<string> headers, IEnumerable<IReadOnlyList<string>> rows)
    {
        var all = rows.ToList();
        var widths = headers.Select((h, i) => Math.Max(h.Length, all.Count == 0 ? 0 : all.Max(r => i < r.Count ? r[i].Length : 0))).ToArray();
        void Line(IReadOnlyList<string> cells)
        {
            var parts = cells.Select((c, i) => i == cells.Count - 1 ? c : c.PadRight(widths[i]));
            output.WriteLine(string.Join("  ", parts).TrimEnd());
        }
        Line(headers.Select(h => h.ToUpperInvariant()).ToArray());
        foreach (var r in all)
        {
            Line(r);
        }
    }
}
