using System.Text;
using System.Globalization;
using System.Diagnostics;
using System.Net;
using Relay.Core.Dataplane;
using Relay.Core.Errors;
using Relay.Core.LoadBalancing;
using Relay.Engine.Dataplane;
using Relay.Linux.Namespaces;
using Relay.Linux.Processes;
using Microsoft.Extensions.Logging;

namespace Relay.Bench;

/// <summary>
/// One row of the control-plane experiment (one N). The first ten values are the issue's keys;
/// the rest add the p99s, the other baselines and what Relay's re-point is made of.
/// </summary>
internal sealed record ControlPlaneResult(
    int N,
    double RelayInstallMs,
    double IptablesPerRuleInstallMs,
    double IptablesRestoreInstallMs,
    double NftProcessInstallMs,
    double RelayUpdateP50Us,
    double RelayUpdateP99Us,
    double IptablesUpdateP50Us,
    double NftProcessUpdateP50Us,
    double UpdateSpeedupVsIptables,
    int RelayUpdates,
    int BaselineUpdates,
    double RelayUpdateNftP50Us,
    double RelayUpdateConntrackP50Us,
    double? RelayInstallPlanMs,
    double? RelayInstallCommitMs,
    int? RelayInstallElements,
    double IptablesUpdateP99Us,
    double IptablesRestoreUpdateP50Us,
    double IptablesRestoreUpdateP99Us,
    double NftProcessUpdateP99Us,
    double? IptablesLegacyPerRuleInstallMs,
    double? IptablesLegacyRestoreInstallMs,
    double? IptablesLegacyUpdateP50Us,
    double? IptablesLegacyUpdateP99Us,
    double? IptablesLegacyRestoreUpdateP50Us,
    double? IptablesLegacyRestoreUpdateP99Us,
    double ProcessFloorUs,
    string Iptables);

/// <summary>
/// Install N services (one instance address each) and re-point one of them again and again, with
/// Relay's data plane (one libnftables context kept open, conntrack cleanup included) and, side by
/// side in the same run, each in a fresh namespace of its own, with what users would otherwise run:
/// one <c>iptables -t nat -A</c> process per service and <c>iptables -R</c> per change (the seed
/// prototype's and kube-proxy's style: a DNAT rule per virtual address in a chain jumped from
/// PREROUTING and OUTPUT), one <c>iptables-restore</c> for all rules and one per change, and one
/// <c>nft -f</c> process per change rendering Relay's very table. Where the legacy (x_tables)
/// backend works, the same iptables styles through <c>iptables-legacy</c> too.
/// </summary>
internal static class ControlPlane
{
    /// <summary>The chain the iptables baselines put their rules in (like kube-proxy's KUBE-SERVICES).</summary>
    private const string Chain = "RELAY-BENCH";

    /// <summary>How often the per-rule installs report progress.</summary>
    private const int ProgressEvery = 1000;

    /// <summary>
    /// Up to which N the legacy backend installs rule by rule. Each <c>iptables-legacy -A</c> reads
    /// and writes back the whole table, so the install grows with N squared (~50 s at 10,000 here);
    /// above this its rules are loaded by one restore (untimed) before the re-points are measured.
    /// </summary>
    private const int LegacyPerRuleMaxN = 1000;

    private sealed record Iptables(string Name, string Program, string Restore, string Save);

    private static readonly Iptables IptablesNft = new("iptables", "iptables", "iptables-restore", "iptables-save");

    private static readonly Iptables IptablesLegacy = new("iptables-legacy", "iptables-legacy", "iptables-legacy-restore", "iptables-legacy-save");

    /// <summary>The iptables styles' results for one backend.</summary>
    private sealed record IptablesResult(double PerRuleInstallMs, double RestoreInstallMs, List<double> UpdatesUs, List<double> RestoreUpdatesUs, double ProcessFloorUs);

    public static ControlPlaneResult Run(int n, int updates, Action<string> progress)
    {
        var started = Stopwatch.StartNew();
        var services = Enumerable.Range(0, n).Select(i => Service(i, i)).ToArray();
        var target = n / 2;
        var version = Version("iptables");

        var relay = MeasureRelay(services, target, updates, progress);
        var (nftInstallMs, nftUs) = MeasureNftProcess(services, target, updates, progress);
        var ipt = MeasureIptables(IptablesNft, n, target, updates, perRuleInstall: true, progress);
        IptablesResult? legacy = null;
        if (version.Contains("nf_tables", StringComparison.Ordinal) && OnPath("iptables-legacy") && OnPath("iptables-legacy-restore"))
        {
            try
            {
                legacy = MeasureIptables(IptablesLegacy, n, target, updates, perRuleInstall: n <= LegacyPerRuleMaxN, progress);
            }
            catch (RelayException e)
            {
                // Optional column: the legacy backend needs the x_tables modules, which some kernels lack.
                progress($"  iptables-legacy: not measured ({e.Message})");
            }
        }

        progress(string.Create(CultureInfo.InvariantCulture, $"  control plane, N = {n}: {started.Elapsed.TotalSeconds:F1} s"));
        var relayP50 = Stats.Median(relay.Us);
        var iptP50 = Stats.Median(ipt.UpdatesUs);
        return new ControlPlaneResult(
            n,
            Math.Round(relay.InstallMs, 1),
            Math.Round(ipt.PerRuleInstallMs, 1),
            Math.Round(ipt.RestoreInstallMs, 1),
            Math.Round(nftInstallMs, 1),
            relayP50,
            Stats.Percentile(relay.Us, 0.99),
            iptP50,
            Stats.Median(nftUs),
            Math.Round(iptP50 / relayP50, 1),
            relay.Us.Count,
            ipt.UpdatesUs.Count,
            Stats.Median(relay.NftUs),
            Stats.Median(relay.ConntrackUs),
            relay.Install is null ? null : Math.Round(relay.Install.PlanUs / 1000, 1),
            relay.Install is null ? null : Math.Round(relay.Install.RunUs / 1000, 1),
            relay.Install?.Added,
            Stats.Percentile(ipt.UpdatesUs, 0.99),
            Stats.Median(ipt.RestoreUpdatesUs),
            Stats.Percentile(ipt.RestoreUpdatesUs, 0.99),
            Stats.Percentile(nftUs, 0.99),
            legacy is null || double.IsNaN(legacy.PerRuleInstallMs) ? null : Math.Round(legacy.PerRuleInstallMs, 1),
            legacy is null ? null : Math.Round(legacy.RestoreInstallMs, 1),
            legacy is null ? null : Stats.Median(legacy.UpdatesUs),
            legacy is null ? null : Stats.Percentile(legacy.UpdatesUs, 0.99),
            legacy is null ? null : Stats.Median(legacy.RestoreUpdatesUs),
            legacy is null ? null : Stats.Percentile(legacy.RestoreUpdatesUs, 0.99),
            ipt.ProcessFloorUs,
            version);
    }

    /// <summary>Relay: one transaction installs all; a re-point is one transaction plus the stale-flow lookup and delete.</summary>
    private static (double InstallMs, List<double> Us, List<double> NftUs, List<double> ConntrackUs, TransactionLog.Entry? Install) MeasureRelay(
        DataplaneService[] services, int target, int updates, Action<string> progress)
    {
        var n = services.Length;
        return InNamespace("cp", ns =>
        {
            using var thread = NetnsThread.Enter(ns);
            var us = new List<double>();
            var nftUs = new List<double>();
            var conntrackUs = new List<double>();
            var log = new TransactionLog();
            using var runtime = DataplaneRuntime.Open(thread, ns, log);
            log.Enabled = true;
            var sw = Stopwatch.StartNew();
            runtime.Apply(services);
            var installMs = sw.Elapsed.TotalMilliseconds;
            log.Enabled = false;
            var install = log.Last;
            var vips = new[] { services[target].Vip4, services[target].Vip6 };

            // One untimed re-point first: the first call of the single-service path pays the JIT,
            // which a long-running daemon pays once, not per change.
            runtime.Apply([Service(target, 4 * n)]);
            runtime.DeleteStaleStatelessFlows(vips, [Address4(target), Address6(target)]);
            var previous = 4 * n;
            for (var k = 0; k < updates; k++)
            {
                // A re-point as a migration does it: one transaction, then the stale-flow lookup and delete.
                var repointed = Service(target, n + k);
                var t0 = Stopwatch.GetTimestamp();
                runtime.Apply([repointed]);
                var t1 = Stopwatch.GetTimestamp();
                runtime.DeleteStaleStatelessFlows(vips, [Address4(previous), Address6(previous)]);
                var t2 = Stopwatch.GetTimestamp();
                us.Add(Stopwatch.GetElapsedTime(t0, t2).TotalMicroseconds);
                nftUs.Add(Stopwatch.GetElapsedTime(t0, t1).TotalMicroseconds);
                conntrackUs.Add(Stopwatch.GetElapsedTime(t1, t2).TotalMicroseconds);
                previous = n + k;
            }
            progress(string.Create(CultureInfo.InvariantCulture,
                $"  relay: {n} services installed in {installMs:F1} ms; re-point p50 {Stats.Median(us):F0} us over {updates}"));
            return (installMs, us, nftUs, conntrackUs, install);
        });
    }

    /// <summary>The same table as Relay's and the same element change, through one <c>nft -f</c> process each.</summary>
    private static (double InstallMs, List<double> Us) MeasureNftProcess(DataplaneService[] services, int target, int updates, Action<string> progress)
    {
        var n = services.Length;
        return InNamespace("nft", ns =>
        {
            var file = Path.Combine(Path.GetTempPath(), ns + ".nft");
            try
            {
                File.WriteAllText(file, NftScript.Full(DataplaneCompiler.Compile(new DataplaneSpec(services, []))).ToString());
                var sw = Stopwatch.StartNew();
                Exec(ns, "nft", "-f", file);
                var installMs = sw.Elapsed.TotalMilliseconds;
                var us = new List<double>();
                var vip = services[target].Vip4;
                for (var k = 0; k < updates; k++)
                {
                    File.WriteAllText(file, $"delete element inet relay be4 {{ {vip} . 0 }}\nadd element inet relay be4 {{ {vip} . 0 : {Address4(2 * n + k)} }}\n");
                    var t0 = Stopwatch.GetTimestamp();
                    Exec(ns, "nft", "-f", file);
                    us.Add(Stopwatch.GetElapsedTime(t0).TotalMicroseconds);
                }
                progress(string.Create(CultureInfo.InvariantCulture,
                    $"  nft -f: {n} services installed in {installMs:F1} ms; re-point p50 {Stats.Median(us):F0} us over {updates}"));
                return (installMs, us);
            }
            finally
            {
                File.Delete(file);
            }
        });
    }

    /// <summary>
    /// The iptables styles with one backend, each in a fresh namespace: one process per rule then
    /// <c>-R</c> per change; one <c>iptables-restore</c> for all then one per change.
    /// </summary>
    private static IptablesResult MeasureIptables(Iptables ipt, int n, int target, int updates, bool perRuleInstall, Action<string> progress)
    {
        var inv = CultureInfo.InvariantCulture;
        var position = (target + 1).ToString(inv);
        var vip = Vip4(target);

        var (perRuleMs, updatesUs) = InNamespace("ipt", ns =>
        {
            var installMs = double.NaN;
            if (perRuleInstall)
            {
                var sw = Stopwatch.StartNew();
                Exec(ns, ipt.Program, "-w", "-t", "nat", "-N", Chain);
                Exec(ns, ipt.Program, "-w", "-t", "nat", "-A", "PREROUTING", "-j", Chain);
                Exec(ns, ipt.Program, "-w", "-t", "nat", "-A", "OUTPUT", "-j", Chain);
                for (var i = 0; i < n; i++)
                {
                    Exec(ns, [ipt.Program, "-w", "-t", "nat", "-A", Chain, .. Rule(Vip4(i), Address4(i))]);
                    if ((i + 1) % ProgressEvery == 0 && i + 1 < n)
                    {
                        progress(string.Create(inv, $"  {ipt.Program} -A: {i + 1}/{n} rules, {sw.Elapsed.TotalSeconds:F1} s"));
                    }
                }
                installMs = sw.Elapsed.TotalMilliseconds;
            }
            else
            {
                Restore(ns, ipt, n);
            }
            Check(ns, ipt, n, vip, Address4(target));
            var us = new List<double>();
            for (var k = 0; k < updates; k++)
            {
                string[] args = [ipt.Program, "-w", "-t", "nat", "-R", Chain, position, .. Rule(vip, Address4(2 * n + k))];
                var t0 = Stopwatch.GetTimestamp();
                Exec(ns, args);
                us.Add(Stopwatch.GetElapsedTime(t0).TotalMicroseconds);
            }
            Check(ns, ipt, n, vip, Address4(2 * n + updates - 1));
            progress(string.Create(inv,
                $"  {ipt.Program} -A per rule: {(perRuleInstall ? $"{n} in {installMs:F1} ms" : $"not timed above {LegacyPerRuleMaxN} (loaded by one restore)")}; {ipt.Program} -R p50 {Stats.Median(us):F0} us over {updates}"));
            return (installMs, us);
        });

        var (restoreMs, restoreUs, floorUs) = InNamespace("iptr", ns =>
        {
            var file = Path.Combine(Path.GetTempPath(), ns + ".rules");
            try
            {
                var installMs = Restore(ns, ipt, n);
                Check(ns, ipt, n, vip, Address4(target));
                var us = new List<double>();
                for (var k = 0; k < updates; k++)
                {
                    File.WriteAllText(file, $"*nat\n-R {Chain} {position} {string.Join(' ', Rule(vip, Address4(3 * n + k)))}\nCOMMIT\n");
                    var t0 = Stopwatch.GetTimestamp();
                    Exec(ns, ipt.Restore, "-w", "--noflush", file);
                    us.Add(Stopwatch.GetElapsedTime(t0).TotalMicroseconds);
                }
                Check(ns, ipt, n, vip, Address4(3 * n + updates - 1));

                // What any process-per-change style pays before doing anything: `ip netns exec NS true`.
                var floor = new List<double>();
                for (var k = 0; k < 20; k++)
                {
                    var t0 = Stopwatch.GetTimestamp();
                    Exec(ns, "true");
                    floor.Add(Stopwatch.GetElapsedTime(t0).TotalMicroseconds);
                }
                progress(string.Create(inv,
                    $"  {ipt.Restore}: {n} in {installMs:F1} ms; one per change p50 {Stats.Median(us):F0} us over {updates}"));
                return (installMs, us, Stats.Median(floor));
            }
            finally
            {
                File.Delete(file);
            }
        });
        return new IptablesResult(perRuleMs, restoreMs, updatesUs, restoreUs, floorUs);
    }

    /// <summary>Loads the chain and all n rules with one <c>iptables-restore --noflush</c>; returns the milliseconds it took.</summary>
    private static double Restore(string ns, Iptables ipt, int n)
    {
        var file = Path.Combine(Path.GetTempPath(), ns + ".all.rules");
        try
        {
            var all = new StringBuilder();
            all.Append("*nat\n").Append(CultureInfo.InvariantCulture, $":{Chain} - [0:0]\n");
            all.Append(CultureInfo.InvariantCulture, $"-A PREROUTING -j {Chain}\n-A OUTPUT -j {Chain}\n");
            for (var i = 0; i < n; i++)
            {
                all.Append(CultureInfo.InvariantCulture, $"-A {Chain} ").AppendJoin(' ', Rule(Vip4(i), Address4(i))).Append('\n');
            }
            all.Append("COMMIT\n");
            File.WriteAllText(file, all.ToString());
            var sw = Stopwatch.StartNew();
            Exec(ns, ipt.Restore, "-w", "--noflush", file);
            return sw.Elapsed.TotalMilliseconds;
        }
        finally
        {
            File.Delete(file);
        }
    }

    /// <summary>
    /// Catches the data plane's own trace of a transaction (event 102: planned in, committed in,
    /// elements added) while <see cref="Enabled"/>, to split Relay's install into the C# side and the
    /// libnftables-and-kernel side.
    /// </summary>
    private sealed class TransactionLog : ILogger
    {
        public sealed record Entry(double PlanUs, double RunUs, int Added);

        public bool Enabled { get; set; }

        public Entry? Last { get; private set; }

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => Enabled;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!Enabled || eventId.Id != 102 || state is not IReadOnlyList<KeyValuePair<string, object?>> values)
            {
                return;
            }
            double? Get(string key) => values.FirstOrDefault(v => v.Key == key).Value is IConvertible c ? c.ToDouble(CultureInfo.InvariantCulture) : null;
            if (Get("PlanUs") is { } plan && Get("RunUs") is { } run && Get("Added") is { } added)
            {
                Last = new Entry(plan, run, (int)added);
            }
        }
    }

    /// <summary>The rule for one service: its virtual address to its one instance address (what Relay maps too).</summary>
    private static string[] Rule(IPAddress vip, IPAddress backend) => ["-d", $"{vip}/32", "-j", "DNAT", "--to-destination", backend.ToString()];

    /// <summary>Checks (untimed) that the chain holds n rules and the target rule points where the last change said.</summary>
    private static void Check(string ns, Iptables ipt, int n, IPAddress vip, IPAddress expected)
    {
        var rules = Exec(ns, ipt.Save, "-t", "nat").Split('\n').Where(l => l.StartsWith($"-A {Chain} ", StringComparison.Ordinal)).ToArray();
        var want = $"-A {Chain} -d {vip}/32 -j DNAT --to-destination {expected}";
        if (rules.Length != n || !rules.Contains(want, StringComparer.Ordinal))
        {
            throw new InvalidOperationException($"{ipt.Name} baseline in {ns}: expected {n} rules including '{want}', found {rules.Length}");
        }
    }

    /// <summary>Runs <paramref name="body"/> in a fresh namespace relay-bench-TAG-XXXXXX, deleted afterwards even on failure.</summary>
    private static T InNamespace<T>(string tag, Func<string, T> body)
    {
        var ns = $"relay-bench-{tag}-{Guid.NewGuid().ToString("N")[..6]}";
        Netns.Add(ns);
        try
        {
            return body(ns);
        }
        finally
        {
            Netns.Delete(ns);
        }
    }

    /// <summary>
    /// Runs one process in namespace <paramref name="ns"/> through <c>ip netns exec</c>, as a
    /// script would; its cost (the <c>ProcessFloorUs</c> column) is part of every baseline change.
    /// </summary>
    private static string Exec(string ns, params string[] args) => IpCommand.Run(["netns", "exec", ns, .. args]);

    private static bool OnPath(string program)
        => (Environment.GetEnvironmentVariable("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin").Split(':')
            .Any(d => d.Length > 0 && File.Exists(Path.Combine(d, program)));

    private static string Version(string program)
    {
        try
        {
            using var p = Process.Start(new ProcessStartInfo(program, "-V") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false })!;
            var s = p.StandardOutput.ReadToEnd().Trim();
            p.WaitForExit();
            return s;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return "not installed";
        }
    }

    private static DataplaneService Service(int i, int backend) => new(
        $"s{i}.bench",
        Vip4(i),
        IPAddress.Parse($"fd52:656c:6179:2::{i:x}"),
        LoadBalancingPolicy.Random,
        Maglev.TableSize(1),
        [],
        [new DataplaneBackend($"i{backend}", Address4(backend), Address6(backend))]);

    private static IPAddress Vip4(int i) => IPAddress.Parse($"10.{96 + i / 65536}.{i / 256 % 256}.{i % 256}");

    private static IPAddress Address4(int i) => IPAddress.Parse($"10.{128 + i / 65536}.{i / 256 % 256}.{i % 256}");

    private static IPAddress Address6(int i) => IPAddress.Parse($"fd52:656c:6179:1::{i:x}");

    /// <summary>This experiment's section of docs/benchmarks.md.</summary>
    public static void Render(StringBuilder sb, IReadOnlyList<ControlPlaneResult> results, Charts charts)
    {
        var inv = CultureInfo.InvariantCulture;
        sb.AppendLine("## Control plane: install N services, re-point one");
        sb.AppendLine();
        if (results.Count == 0)
        {
            sb.AppendLine("Not run.");
            sb.AppendLine();
            return;
        }
        var first = results[0];
        var legacy = results.Any(r => r.IptablesLegacyUpdateP50Us is not null);
        sb.AppendLine("Each style installs N services (one virtual address mapped to one instance address each) into a fresh namespace of its own, then re-points ONE service (the middle one) again and again with N installed. Every baseline change is a process started the way a script or kube-proxy would, through `ip netns exec NS ...`; its start-up is part of the cost.");
        sb.AppendLine();
        sb.AppendLine("- **Relay**: one libnftables context kept open in process; install is one transaction; a re-point is one transaction plus the stale-flow lookup and delete (the conntrack cleanup a migration does). Relay maps IPv4 and IPv6 for every service; the iptables baselines map IPv4 only.");
        sb.AppendLine(string.Create(inv, $"- **iptables, per rule**: `iptables -t nat -A {Chain} -d VIP/32 -j DNAT --to-destination ADDR`, one process per service, in a chain jumped from PREROUTING and OUTPUT (the seed prototype's and kube-proxy's iptables style); a re-point is one `iptables -t nat -R {Chain} POS ...` process."));
        sb.AppendLine("- **iptables-restore**: the same rules loaded by one `iptables-restore --noflush FILE` process; a re-point is one more `iptables-restore --noflush` with the `-R` line.");
        sb.AppendLine("- **`nft -f`**: Relay's very table rendered to a file and loaded by one `nft -f` process; a re-point is one `nft -f` deleting and adding the map element.");
        var backend = first.Iptables.Contains("nf_tables", StringComparison.Ordinal)
            ? "`iptables` here is iptables-nft, the nf_tables backend (what `iptables` means on current distributions): each process reads what it needs of the table over netlink and commits one nf_tables transaction."
            : "`iptables` here is the legacy x_tables backend.";
        var legacyNote = legacy
            ? " The legacy x_tables backend (`iptables-legacy`: every change reads the whole table as one blob and writes it back through setsockopt) also works in a namespace on this kernel, so its rows are measured too."
            : "";
        sb.AppendLine($"- `{first.Iptables}`: {backend}{legacyNote}");
        sb.AppendLine(string.Create(inv, $"- Repetitions: {first.RelayUpdates} re-points for Relay (after one untimed warm-up, as a running daemon is warm), {first.BaselineUpdates} for each baseline. Starting one `ip netns exec NS true` costs {first.ProcessFloorUs:F0} us (p50) here: the floor of any process-per-change style."));
        sb.AppendLine();

        foreach (var c in results)
        {
            sb.AppendLine(string.Create(inv, $"### N = {c.N:N0} services"));
            sb.AppendLine();
            sb.AppendLine("| style | install N (ms) | re-point one: p50 (us) | p99 (us) | p50 / Relay's |");
            sb.AppendLine("|---|---:|---:|---:|---:|");
            Row("Relay (in process, conntrack cleanup included)", c.RelayInstallMs, c.RelayUpdateP50Us, c.RelayUpdateP99Us);
            Row("`iptables -A` per rule, `iptables -R` per change", c.IptablesPerRuleInstallMs, c.IptablesUpdateP50Us, c.IptablesUpdateP99Us);
            Row("one `iptables-restore`, one per change", c.IptablesRestoreInstallMs, c.IptablesRestoreUpdateP50Us, c.IptablesRestoreUpdateP99Us);
            Row("one `nft -f` process, one per change", c.NftProcessInstallMs, c.NftProcessUpdateP50Us, c.NftProcessUpdateP99Us);
            if (c.IptablesLegacyUpdateP50Us is not null)
            {
                Row("legacy: `iptables-legacy -A` per rule, `-R` per change", c.IptablesLegacyPerRuleInstallMs, c.IptablesLegacyUpdateP50Us, c.IptablesLegacyUpdateP99Us);
                Row("legacy: one `iptables-legacy-restore`, one per change", c.IptablesLegacyRestoreInstallMs, c.IptablesLegacyRestoreUpdateP50Us, c.IptablesLegacyRestoreUpdateP99Us);
            }
            sb.AppendLine();
            if (c.IptablesLegacyUpdateP50Us is not null && c.IptablesLegacyPerRuleInstallMs is null)
            {
                sb.AppendLine(string.Create(inv, $"¹ Not timed above N = {LegacyPerRuleMaxN:N0}: every `iptables-legacy -A` reads the whole table and writes it back, so a rule-by-rule install grows with N squared and would add about a minute to every run at 10,000; the rules were loaded by one restore before the re-points were measured."));
                sb.AppendLine();
            }
            sb.AppendLine(string.Create(inv, $"Re-point speed-up vs per-rule iptables (`updateSpeedupVsIptables`): **{c.UpdateSpeedupVsIptables:F1} x**; vs one `nft -f` per change: {c.NftProcessUpdateP50Us / c.RelayUpdateP50Us:F1} x. Relay's re-point p50 splits into {c.RelayUpdateNftP50Us:F0} us for the libnftables transaction and {c.RelayUpdateConntrackP50Us:F0} us for the conntrack cleanup (an index lookup: no flows exist here, so nothing is deleted)."));
            sb.AppendLine();

            void Row(string style, double? installMs, double? p50, double? p99)
                => sb.AppendLine(string.Create(inv, $"| {style} | {(installMs is { } ms ? ms.ToString("N1", inv) : "not timed ¹")} | {p50:N0} | {p99:N0} | {p50 / c.RelayUpdateP50Us:N1} x |"));
        }

        var series = new List<(string Name, Func<ControlPlaneResult, double?> Install, Func<ControlPlaneResult, double?> Update)>
        {
            ("Relay", r => r.RelayInstallMs, r => r.RelayUpdateP50Us),
            ("iptables per rule", r => r.IptablesPerRuleInstallMs, r => r.IptablesUpdateP50Us),
            ("iptables-restore", r => r.IptablesRestoreInstallMs, r => r.IptablesRestoreUpdateP50Us),
            ("nft -f process", r => r.NftProcessInstallMs, r => r.NftProcessUpdateP50Us),
        };
        if (legacy)
        {
            series.Add(("iptables-legacy per rule", r => r.IptablesLegacyPerRuleInstallMs, r => r.IptablesLegacyUpdateP50Us));
            series.Add(("iptables-legacy-restore", r => r.IptablesLegacyRestoreInstallMs, r => r.IptablesLegacyRestoreUpdateP50Us));
        }
        Charts.Series Curve(string name, Func<ControlPlaneResult, double?> y)
        {
            var points = results.Where(r => y(r) is > 0).ToArray();
            return new Charts.Series(name, points.Select(r => (double)r.N).ToArray(), points.Select(r => y(r)!.Value).ToArray());
        }
        var updateChart = charts.Line("control-plane-repoint", "Re-point one service: p50 vs N", "services installed (N)", "p50 per re-point (us)",
            series.Select(s => Curve(s.Name, s.Update)).ToArray(), logX: true, logY: true);
        var installChart = charts.Line("control-plane-install", "Install N services", "services (N)", "install time (ms)",
            series.Select(s => Curve(s.Name, s.Install)).ToArray(), logX: true, logY: true);
        foreach (var chart in new[] { updateChart, installChart }.Where(c => c.Length > 0))
        {
            sb.AppendLine(chart);
            sb.AppendLine();
        }

        Goals(sb, results);
    }

    private static void Goals(StringBuilder sb, IReadOnlyList<ControlPlaneResult> results)
    {
        var inv = CultureInfo.InvariantCulture;
        sb.AppendLine("**Goals** (at N = 10,000):");
        sb.AppendLine();
        var at = results.FirstOrDefault(r => r.N == 10_000);
        if (at is null)
        {
            var largest = results.MaxBy(r => r.N)!;
            sb.AppendLine(string.Create(inv, $"- Not measured at 10,000 services in this mode (largest N here: {largest.N:N0}); the full run (`make bench`) decides. For orientation at N = {largest.N:N0}: re-point p50 {largest.RelayUpdateP50Us:F0} us, {largest.UpdateSpeedupVsIptables:F1} x faster than per-rule iptables; install {largest.RelayInstallMs:F1} ms."));
            sb.AppendLine();
            return;
        }

        var fastEnough = at.RelayUpdateP50Us < 1000;
        var ratioMet = at.UpdateSpeedupVsIptables >= 20;
        var line = string.Create(inv, $"- Single re-point with 10,000 services, p50 under 1 ms and at least 20 x faster than per-rule iptables: **{(fastEnough && ratioMet ? "met" : "missed")}**. p50 {at.RelayUpdateP50Us:F0} us");
        line += fastEnough
            ? string.Create(inv, $" ({1000 - at.RelayUpdateP50Us:F0} us under the limit)")
            : string.Create(inv, $" ({at.RelayUpdateP50Us - 1000:F0} us, {at.RelayUpdateP50Us / 1000:F2} x, over the limit; {at.RelayUpdateNftP50Us:F0} us of it is the libnftables transaction, {at.RelayUpdateConntrackP50Us:F0} us the conntrack cleanup)");
        line += string.Create(inv, $"; {at.UpdateSpeedupVsIptables:F1} x faster than `iptables -R` ({at.IptablesUpdateP50Us:F0} us)");
        line += ratioMet
            ? "."
            : string.Create(inv, $", short of 20 x by {20 - at.UpdateSpeedupVsIptables:F1} x: per-rule iptables would need a p50 of {20 * at.RelayUpdateP50Us:F0} us for Relay to meet it at its own speed, or Relay a p50 of {at.IptablesUpdateP50Us / 20:F0} us.");
        sb.AppendLine(line);

        var installMet = at.RelayInstallMs < 1000;
        var install = installMet
            ? string.Create(inv, $"{at.RelayInstallMs:F1} ms, {1000 - at.RelayInstallMs:F0} ms under the limit; per-rule iptables took {at.IptablesPerRuleInstallMs:N0} ms ({at.IptablesPerRuleInstallMs / at.RelayInstallMs:F0} x longer).")
            : string.Create(inv, $"{at.RelayInstallMs:F1} ms, {at.RelayInstallMs - 1000:F0} ms ({at.RelayInstallMs / 1000:F2} x) over the limit.");
        sb.AppendLine($"- Install 10,000 services under 1 s: **{(installMet ? "met" : "missed")}**: {install}");
        if (at.RelayInstallPlanMs is { } plan && at.RelayInstallCommitMs is { } commit)
        {
            sb.AppendLine(string.Create(inv, $"  Relay's install is one transaction of {at.RelayInstallElements:N0} map and set elements (IPv4 and IPv6): {plan:F0} ms planning it and rendering its text in C# (`DataplaneImage.Plan`, `NftScript`), {commit:F0} ms in libnftables (parsing that text) and the kernel. One `nft -f` process loads the very same table in {at.NftProcessInstallMs:F0} ms: the bulk loaders pay the parse and the kernel once, like Relay, so they are in the same range; one `iptables-restore` ({at.IptablesRestoreInstallMs:F0} ms) loads only the 10,000 IPv4 rules. Per-rule iptables pays a process and a kernel commit per service."));
        }
        sb.AppendLine();
    }
}
