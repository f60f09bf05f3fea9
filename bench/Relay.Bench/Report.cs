using System.Globalization;
using System.Text;

namespace Relay.Bench;

internal static class Report
{
    public static string Render(BenchResults r, string[] commandLine, Charts charts)
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine("# Benchmarks");
        sb.AppendLine();
        sb.AppendLine("Written by the benchmark program (`bench/Relay.Bench`); do not edit by hand. Re-run with:");
        sb.AppendLine();
        sb.AppendLine("```sh");
        sb.AppendLine(r.Mode == "quick" ? "sudo make bench QUICK=1" : "sudo make bench");
        sb.AppendLine("```");
        sb.AppendLine();
        sb.AppendLine(string.Create(inv, $"Run {r.StartedUtc:yyyy-MM-dd HH:mm} UTC ({r.Mode} mode, {r.DurationSeconds} s) on {r.Machine.Cores} cores ({r.Machine.Cpu}), kernel {r.Machine.Kernel}, {r.Machine.Nftables}, .NET {r.Machine.Dotnet}. Machine-readable results: `bench/results.json`."));
        sb.AppendLine();
        sb.AppendLine("Absolute numbers drift on shared machines; compare within one run.");
        sb.AppendLine();
        Goals.Render(sb, r.Goals);
        ControlPlane.Render(sb, r.ControlPlane, charts);
        DataPlane.Render(sb, r.DataPlane, charts);
        Migration.Render(sb, r.Migration, charts);
        DnsBench.Render(sb, r.Dns, charts);
        MaglevBench.Render(sb, r.Maglev, charts);
        if (r.Cluster is not null)
        {
            ClusterBench.Render(sb, r.Cluster, r.Migration);
        }
        return sb.ToString();
    }
}
