using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Relay.Bench;

var quickOption = new Option<bool>("--quick") { Description = "A reduced run of every experiment (smaller N, fewer repetitions)." };
var smokeOption = new Option<bool>("--smoke") { Description = "The smallest run, for `make test`: checks the program works, measures nothing meaningful." };
var jsonOption = new Option<string>("--json") { Description = "Where to write the results.", DefaultValueFactory = _ => "bench/results.json" };
var reportOption = new Option<string?>("--report") { Description = "Where to write the Markdown report (default docs/benchmarks.md; none in smoke mode)." };
var root = new RootCommand("Relay's benchmarks. Each experiment sets up its own namespaces, measures, and cleans up.")
{
    quickOption, smokeOption, jsonOption, reportOption,
};
root.SetAction(parse =>
{
    if (Relay.Linux.Interop.Identity.EffectiveUserId() != 0)
    {
        Console.Error.WriteLine("relay-bench: needs root (network namespaces, nftables)");
        return 1;
    }
    var quick = parse.GetValue(quickOption);
    var smoke = parse.GetValue(smokeOption);
    var mode = smoke ? "smoke" : quick ? "quick" : "full";
    var report = parse.GetValue(reportOption) ?? (smoke ? null : "docs/benchmarks.md");
    void Progress(string s) => Console.Error.WriteLine(s);
    var started = DateTime.UtcNow;
    var wall = Stopwatch.StartNew();

    Progress($"relay-bench ({mode}): control plane");
    int[] sizes = smoke ? [100] : quick ? [1000] : [100, 1000, 10000];
    var controlPlane = sizes.Select(n => ControlPlane.Run(n, smoke ? 10 : quick ? 50 : 200, Progress)).ToArray();

    Progress("relay-bench: migration under ping -f");
    var migration = Migration.Run(smoke ? 3 : quick ? 20 : 100, Progress);

    Progress("relay-bench: dns");
    var dns = DnsBench.Run(smoke ? 100 : 10_000, smoke ? 1 : quick ? 5 : 20, Progress);

    Progress("relay-bench: maglev");
    var maglev = new[] { 10, 100 }.Select(MaglevBench.Run).ToArray();

    var results = new BenchResults(mode, started, Machine.Describe(), controlPlane, migration, dns, maglev, Math.Round(wall.Elapsed.TotalSeconds, 1));
    var json = parse.GetRequiredValue(jsonOption);
    Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(json))!);
    File.WriteAllText(json, JsonSerializer.Serialize(results, BenchJson.Options) + "\n");
    Progress($"relay-bench: wrote {json}");
    if (report is not null)
    {
        File.WriteAllText(report, Report.Render(results, Environment.GetCommandLineArgs()));
        Progress($"relay-bench: wrote {report}");
    }
    return 0;
});
return root.Parse(args).Invoke();

namespace Relay.Bench
{
    internal sealed record MachineInfo(int Cores, string Kernel, string Cpu, string Nftables, string Dotnet);

    internal sealed record BenchResults(
        string Mode,
        DateTime StartedUtc,
        MachineInfo Machine,
        IReadOnlyList<ControlPlaneResult> ControlPlane,
        MigrationBenchResult Migration,
        DnsBenchResult Dns,
        IReadOnlyList<MaglevResult> Maglev,
        double DurationSeconds);

    internal static class BenchJson
    {
        public static JsonSerializerOptions Options { get; } = new()
        {
            WriteIndented = true,
            PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
            NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        };
    }

    internal static class Machine
    {
        public static MachineInfo Describe()
        {
            var cpu = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "unknown";
            return new MachineInfo(Environment.ProcessorCount, File.ReadAllText("/proc/sys/kernel/osrelease").Trim(), cpu,
                RunVersion("nft", "--version"), Environment.Version.ToString());
        }

        private static string RunVersion(string program, string arg)
        {
            try
            {
                using var p = Process.Start(new ProcessStartInfo(program, arg) { RedirectStandardOutput = true, UseShellExecute = false })!;
                var s = p.StandardOutput.ReadToEnd().Trim();
                p.WaitForExit();
                return s;
            }
            catch (System.ComponentModel.Win32Exception)
            {
                return "not installed";
            }
        }
    }

    internal static class Report
    {
        public static string Render(BenchResults r, string[] commandLine)
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
            sb.AppendLine("## Control plane: install N services, re-point one");
            sb.AppendLine();
            sb.AppendLine("Relay: one libnftables context kept open in the orchestrator namespace; a re-point is one transaction plus the stale-flow lookup and delete. Baseline in the same run: the same table and element change through one `nft -f` process each (`ip netns exec NS nft -f FILE`).");
            sb.AppendLine();
            sb.AppendLine("| N | Relay install (ms) | Relay re-point p50 (us) | Relay re-point p99 (us) | `nft -f` install (ms) | `nft -f` re-point p50 (us) | speed-up (re-point) |");
            sb.AppendLine("|---:|---:|---:|---:|---:|---:|---:|");
            foreach (var c in r.ControlPlane)
            {
                sb.AppendLine(string.Create(inv, $"| {c.N:N0} | {c.RelayInstallMs:F1} | {c.RelayUpdateP50Us:F0} | {c.RelayUpdateP99Us:F0} | {c.NftProcessInstallMs:F1} | {c.NftProcessUpdateP50Us:F0} | {c.NftProcessUpdateP50Us / c.RelayUpdateP50Us:F0}x |"));
            }
            sb.AppendLine();
            sb.AppendLine("## Migration under `ping -f`");
            sb.AppendLine();
            var m = r.Migration;
            sb.AppendLine("A client instance floods the service's virtual IPv4 address with `ping -f` while the service is migrated to a fresh instance (created in standby, then one re-point transaction, then the stale ICMP/UDP conntrack entries deleted). Switch = from the migrate call to the first echo request reaching the new instance, seen by a raw socket there.");
            sb.AppendLine();
            sb.AppendLine("| migrations | pings sent | pings lost | switch p50 (us) | switch p99 (us) | re-point p50 (us) | re-point p99 (us) | switches not seen |");
            sb.AppendLine("|---:|---:|---:|---:|---:|---:|---:|---:|");
            sb.AppendLine(string.Create(inv, $"| {m.Migrations} | {m.PingSent:N0} | {m.PingLost} | {m.SwitchP50Us:F0} | {m.SwitchP99Us:F0} | {m.RepointP50Us:F0} | {m.RepointP99Us:F0} | {m.NoSwitchSeen} |"));
            sb.AppendLine();
            var d = r.Dns;
            sb.AppendLine("## DNS: queries per second");
            sb.AppendLine();
            sb.AppendLine(string.Create(inv, $"dnsperf (default: 100 queries in flight) from a client instance for {d.Seconds} s over {d.Names:N0} service names, against Relay's server and against dnsmasq serving the same names (hosts file, cache off) in the same orchestrator namespace, port 5353. p99 from a shorter `dnsperf -v` run. Goal: Relay at least 1.5 x dnsmasq."));
            sb.AppendLine();
            sb.AppendLine("| server | queries/s | mean latency (ms) | p99 latency (ms) | lost | queries per CPU-second | command |");
            sb.AppendLine("|---|---:|---:|---:|---:|---:|---|");
            sb.AppendLine(string.Create(inv, $"| Relay | {d.Relay.Qps:N0} | {d.Relay.AvgLatencyMs:F3} | {d.Relay.P99Ms:F3} | {d.Relay.Lost} | {d.Relay.QueriesPerCpuSecond:N0} | `{d.Relay.Command}` |"));
            sb.AppendLine(string.Create(inv, $"| dnsmasq | {d.Dnsmasq.Qps:N0} | {d.Dnsmasq.AvgLatencyMs:F3} | {d.Dnsmasq.P99Ms:F3} | {d.Dnsmasq.Lost} | {d.Dnsmasq.QueriesPerCpuSecond:N0} | `{d.Dnsmasq.Command}` |"));
            sb.AppendLine();
            sb.AppendLine(string.Create(inv, $"Relay / dnsmasq: **{d.QpsRatio:F2} x** queries per second ({(d.QpsRatio >= 1.5 ? "goal met" : "goal missed")}), {d.Relay.QueriesPerCpuSecond / d.Dnsmasq.QueriesPerCpuSecond:F2} x queries per CPU-second of the server."));
            sb.AppendLine();
            sb.AppendLine("On 2 cores dnsperf itself takes one: when Relay's mean latency is well under dnsmasq's but its rate is not proportionally higher, the load generator, not the server, is the limit; queries per CPU-second compares the servers' own cost.");
            sb.AppendLine();
            sb.AppendLine("## Maglev table (pure computation)");
            sb.AppendLine();
            sb.AppendLine("| instances | table size | max load / mean | flows remapped when one instance goes | build (ms) |");
            sb.AppendLine("|---:|---:|---:|---:|---:|");
            foreach (var g in r.Maglev)
            {
                sb.AppendLine(string.Create(inv, $"| {g.N} | {g.TableSize} | {g.MaxLoadOverMean:F4} | {g.RemoveOneRemapped:P2} (ideal {1.0 / g.N:P2}) | {g.TableBuildMs:F3} |"));
            }
            return sb.ToString();
        }
    }
}
