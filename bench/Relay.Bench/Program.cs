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
var convergenceOption = new Option<int?>("--convergence") { Description = "Run only the cluster convergence experiment with this many services (20 re-points) and print its result as JSON; writes no report." };
var dataPathOption = new Option<bool>("--cluster-data-path") { Description = "Run only the cluster data-path experiment (VXLAN cost, cross-host migration, fail-over; reduced with --quick or --smoke) and print its result as JSON; writes no report." };
var renderOption = new Option<string?>("--render") { Description = "Measure nothing: write the report (and its charts) from this results file of an earlier run." };
var root = new RootCommand("Relay's benchmarks. Each experiment sets up its own namespaces, measures, and cleans up.")
{
    quickOption, smokeOption, jsonOption, reportOption, renderOption, convergenceOption, dataPathOption,
};
root.SetAction(parse =>
{
    if (parse.GetValue(renderOption) is { } earlier)
    {
        var saved = JsonSerializer.Deserialize<BenchResults>(File.ReadAllText(earlier), BenchJson.Options)
            ?? throw new InvalidDataException($"{earlier}: no results");
        var to = parse.GetValue(reportOption) ?? "docs/benchmarks.md";
        var dir = Path.GetDirectoryName(Path.GetFullPath(to))!;
        File.WriteAllText(to, Report.Render(saved, Environment.GetCommandLineArgs(), new Charts(Path.Combine(dir, "benchmarks"))));
        Console.Error.WriteLine($"relay-bench: wrote {to} from {earlier}");
        return 0;
    }
    if (Relay.Linux.Interop.Identity.EffectiveUserId() != 0)
    {
        Console.Error.WriteLine("relay-bench: needs root (network namespaces, nftables)");
        return 1;
    }
    if (parse.GetValue(convergenceOption) is { } n)
    {
        var only = ClusterConvergence.Run(n, 20, s => Console.Error.WriteLine(s));
        Console.WriteLine(JsonSerializer.Serialize(only, BenchJson.Options));
        return 0;
    }
    var quick = parse.GetValue(quickOption);
    var smoke = parse.GetValue(smokeOption);
    if (parse.GetValue(dataPathOption))
    {
        var path = ClusterDataPath.Run(smoke, quick, s => Console.Error.WriteLine(s));
        Console.WriteLine(JsonSerializer.Serialize(path, BenchJson.Options));
        return 0;
    }
    var mode = smoke ? "smoke" : quick ? "quick" : "full";
    var report = parse.GetValue(reportOption) ?? (smoke ? null : "docs/benchmarks.md");
    void Progress(string s) => Console.Error.WriteLine(s);
    var started = DateTime.UtcNow;
    var wall = Stopwatch.StartNew();

    Progress($"relay-bench ({mode}): control plane");
    int[] sizes = smoke ? [100] : quick ? [1000] : [100, 1000, 10000];
    var controlPlane = sizes.Select(n => ControlPlane.Run(n, smoke ? 10 : quick ? 50 : 200, Progress)).ToArray();

    Progress("relay-bench: data plane");
    var dataPlane = DataPlane.Run(smoke, quick, Progress);

    Progress("relay-bench: migration under ping -f");
    var migration = Migration.Run(smoke ? 3 : quick ? 20 : 100, Progress);

    Progress("relay-bench: dns");
    var dns = DnsBench.Run(smoke ? 100 : 10_000, smoke ? 1 : quick ? 5 : 20, Progress);

    Progress("relay-bench: maglev");
    var maglev = new[] { 10, 100 }.Select(MaglevBench.Run).ToArray();

    Progress("relay-bench: cluster store");
    var cluster = ClusterBench.Run(smoke, quick, Progress);

    var results = new BenchResults(mode, started, Machine.Describe(), controlPlane, dataPlane, migration, dns, maglev, cluster, Math.Round(wall.Elapsed.TotalSeconds, 1));
    var json = parse.GetRequiredValue(jsonOption);
    Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(json))!);
    File.WriteAllText(json, JsonSerializer.Serialize(results, BenchJson.Options) + "\n");
    using (JsonDocument.Parse(File.ReadAllText(json)))
    {
        // Written by the serializer; read back so a smoke run proves the file is valid JSON.
    }
    Progress($"relay-bench: wrote {json}");
    if (report is not null)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(report))!);
        File.WriteAllText(report, Report.Render(results, Environment.GetCommandLineArgs(), new Charts(Path.Combine(Path.GetDirectoryName(Path.GetFullPath(report))!, "benchmarks"))));
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
        DataPlaneResult DataPlane,
        MigrationBenchResult Migration,
        DnsBenchResult Dns,
        IReadOnlyList<MaglevResult> Maglev,
        ClusterBenchResult? Cluster,
        double DurationSeconds)
    {
        /// <summary>Every goal of the issue, met or missed in this run (also the report's first table).</summary>
        public IReadOnlyList<GoalResult> Goals => Relay.Bench.Goals.Evaluate(this);
    }

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
}
