using System.Text;
using System.Globalization;
using System.Diagnostics;
using System.Net;
using Relay.Core.Dataplane;
using Relay.Core.LoadBalancing;
using Relay.Engine.Dataplane;
using Relay.Linux.Namespaces;
using Relay.Linux.Processes;

namespace Relay.Bench;

/// <summary>One row of the control-plane experiment.</summary>
internal sealed record ControlPlaneResult(
    int N,
    double RelayInstallMs,
    double RelayUpdateP50Us,
    double RelayUpdateP99Us,
    double NftProcessInstallMs,
    double NftProcessUpdateP50Us);

/// <summary>
/// Install N services (one instance address each) and re-point one of them again and again,
/// with Relay's data plane (one libnftables context kept open, conntrack cleanup included) and,
/// side by side in the same run, with one <c>nft -f</c> process per change rendering the very same
/// table and elements.
/// </summary>
internal static class ControlPlane
{
    public static ControlPlaneResult Run(int n, int updates, Action<string> progress)
    {
        var ns = $"relay-bench-cp-{Guid.NewGuid().ToString("N")[..6]}";
        Netns.Add(ns);
        try
        {
            using var thread = NetnsThread.Enter(ns);
            var services = Enumerable.Range(0, n).Select(i => Service(i, i)).ToArray();

            double relayInstallMs;
            var updatesUs = new List<double>();
            using (var runtime = DataplaneRuntime.Open(thread, ns))
            {
                var sw = Stopwatch.StartNew();
                runtime.Apply(services);
                relayInstallMs = sw.Elapsed.TotalMilliseconds;
                progress($"  relay: {n} services installed in {relayInstallMs:F1} ms");
                var target = services[n / 2];
                for (var k = 0; k < updates; k++)
                {
                    // A re-point as a migration does it: one transaction, then the stale-flow lookup and delete.
                    var repointed = Service(n / 2, n + k);
                    var t0 = Stopwatch.GetTimestamp();
                    runtime.Apply([repointed]);
                    runtime.DeleteStaleStatelessFlows([target.Vip4, target.Vip6], [Address4(n + k - 1), Address6(n + k - 1)]);
                    updatesUs.Add(Stopwatch.GetElapsedTime(t0).TotalMicroseconds);
                }
            }

            // Baseline: the same table through one nft process per change.
            var file = Path.Combine(Path.GetTempPath(), ns + ".nft");
            try
            {
                File.WriteAllText(file, NftScript.Full(DataplaneCompiler.Compile(new DataplaneSpec(services, []))).ToString());
                var sw = Stopwatch.StartNew();
                Nft(ns, "-f", file);
                var nftInstallMs = sw.Elapsed.TotalMilliseconds;
                var nftUpdatesUs = new List<double>();
                var vip = services[n / 2].Vip4;
                for (var k = 0; k < Math.Min(updates, 50); k++)
                {
                    File.WriteAllText(file, $"delete element inet relay be4 {{ {vip} . 0 }}\nadd element inet relay be4 {{ {vip} . 0 : {Address4(2 * n + k)} }}\n");
                    var t0 = Stopwatch.GetTimestamp();
                    Nft(ns, "-f", file);
                    nftUpdatesUs.Add(Stopwatch.GetElapsedTime(t0).TotalMicroseconds);
                }
                return new ControlPlaneResult(n, Math.Round(relayInstallMs, 1), Stats.Median(updatesUs), Stats.Percentile(updatesUs, 0.99),
                    Math.Round(nftInstallMs, 1), Stats.Median(nftUpdatesUs));
            }
            finally
            {
                File.Delete(file);
            }
        }
        finally
        {
            Netns.Delete(ns);
        }
    }

    private static void Nft(string ns, params string[] args)
    {
        // Includes the cost of `ip netns exec` entering the namespace: measured separately it is
        // ~1 ms here, small next to what the nft process itself costs.
        IpCommand.Run(["netns", "exec", ns, "nft", .. args]);
    }

    private static DataplaneService Service(int i, int backend) => new(
        $"s{i}.bench",
        IPAddress.Parse($"10.{96 + i / 65536}.{i / 256 % 256}.{i % 256}"),
        IPAddress.Parse($"fd52:656c:6179:2::{i:x}"),
        LoadBalancingPolicy.Random,
        Maglev.TableSize(1),
        [],
        [new DataplaneBackend($"i{backend}", Address4(backend), Address6(backend))]);

    private static IPAddress Address4(int i) => IPAddress.Parse($"10.{128 + i / 65536}.{i / 256 % 256}.{i % 256}");

    private static IPAddress Address6(int i) => IPAddress.Parse($"fd52:656c:6179:1::{i:x}");
    /// <summary>This experiment's section of docs/benchmarks.md.</summary>
    public static void Render(StringBuilder sb, IReadOnlyList<ControlPlaneResult> results, Charts charts)
    {
        var inv = CultureInfo.InvariantCulture;
        sb.AppendLine("## Control plane: install N services, re-point one");
        sb.AppendLine();
        sb.AppendLine("Relay: one libnftables context kept open in the orchestrator namespace; a re-point is one transaction plus the stale-flow lookup and delete. Baseline in the same run: the same table and element change through one `nft -f` process each (`ip netns exec NS nft -f FILE`).");
        sb.AppendLine();
        sb.AppendLine("| N | Relay install (ms) | Relay re-point p50 (us) | Relay re-point p99 (us) | `nft -f` install (ms) | `nft -f` re-point p50 (us) | speed-up (re-point) |");
        sb.AppendLine("|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var c in results)
        {
            sb.AppendLine(string.Create(inv, $"| {c.N:N0} | {c.RelayInstallMs:F1} | {c.RelayUpdateP50Us:F0} | {c.RelayUpdateP99Us:F0} | {c.NftProcessInstallMs:F1} | {c.NftProcessUpdateP50Us:F0} | {c.NftProcessUpdateP50Us / c.RelayUpdateP50Us:F0}x |"));
        }
        sb.AppendLine();
    }
}
