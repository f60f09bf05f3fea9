using System.Globalization;
using System.Text;

namespace Relay.Bench;

/// <summary>One goal of the benchmark issue: what was measured against what, and whether it is met.</summary>
/// <param name="Experiment">The experiment's key in results.json.</param>
/// <param name="Goal">The goal as the issue states it.</param>
/// <param name="Status"><c>met</c>, <c>missed</c>, or <c>not measured</c> (the mode's sizes do not reach the goal's).</param>
/// <param name="Measured">The numbers that decide it, with the same run's baseline.</param>
internal sealed record GoalResult(string Experiment, string Goal, string Status, string Measured);

/// <summary>
/// Every goal, decided from the results of one run only. The experiments' own sections explain a
/// miss (by how much and what limits it); this is the summary at the top of the report and the
/// <c>goals</c> array of results.json.
/// </summary>
internal static class Goals
{
    private const int GoalN = 10_000;

    public static IReadOnlyList<GoalResult> Evaluate(BenchResults r)
    {
        var inv = CultureInfo.InvariantCulture;
        var goals = new List<GoalResult>();
        static string Status(bool met) => met ? "met" : "missed";

        var cp = r.ControlPlane.FirstOrDefault(c => c.N == GoalN);
        const string RepointGoal = "re-point one service with 10,000 installed: p50 under 1 ms, at least 20 x faster than per-rule iptables";
        const string InstallGoal = "install 10,000 services in under 1 s";
        if (cp is null)
        {
            var largest = r.ControlPlane.MaxBy(c => c.N)!;
            goals.Add(new("controlPlane", RepointGoal, "not measured",
                string.Create(inv, $"largest N in this mode {largest.N:N0}: p50 {largest.RelayUpdateP50Us:F0} us, {largest.UpdateSpeedupVsIptables:F1} x per-rule iptables")));
            goals.Add(new("controlPlane", InstallGoal, "not measured",
                string.Create(inv, $"largest N in this mode {largest.N:N0}: {largest.RelayInstallMs:F0} ms")));
        }
        else
        {
            goals.Add(new("controlPlane", RepointGoal, Status(cp.RelayUpdateP50Us < 1000 && cp.UpdateSpeedupVsIptables >= 20),
                string.Create(inv, $"p50 {cp.RelayUpdateP50Us:F0} us vs `iptables -R` {cp.IptablesUpdateP50Us:N0} us: {cp.UpdateSpeedupVsIptables:F1} x")));
            goals.Add(new("controlPlane", InstallGoal, Status(cp.RelayInstallMs < 1000),
                string.Create(inv, $"{cp.RelayInstallMs:N0} ms vs per-rule iptables {cp.IptablesPerRuleInstallMs:N0} ms, `nft -f` {cp.NftProcessInstallMs:N0} ms")));
        }

        var dp = r.DataPlane;
        const string ThroughputGoal = "throughput through the virtual address with 10,000 services at least 0.95 of direct";
        const string FlatGoal = "new-flow latency at 10,000 services at most 10% above that at 100";
        const string HalfGoal = "new-flow latency at 10,000 services at most half of per-rule iptables'";
        if (dp.N < GoalN)
        {
            foreach (var g in new[] { ThroughputGoal, FlatGoal, HalfGoal })
            {
                goals.Add(new("dataPlane", g, "not measured", string.Create(inv, $"largest N in this mode {dp.N:N0}")));
            }
        }
        else
        {
            var worst = Math.Min(dp.RelayToDirect, dp.RelayToDirect4);
            goals.Add(new("dataPlane", ThroughputGoal, double.IsNaN(worst) ? "not measured" : Status(worst >= 0.95),
                string.Create(inv, $"{dp.RelayToDirect:F3} (1 stream), {dp.RelayToDirect4:F3} (4 streams); per-rule iptables {dp.IptablesToDirect:F3} / {dp.IptablesToDirect4:F3}")));
            goals.Add(new("dataPlane", FlatGoal, Status(dp.SmallN == 100 && dp.RelayNewFlowFlatness <= 1.10),
                string.Create(inv, $"{dp.RelayNewFlowUs:F1} us vs {dp.RelayNewFlowUs100:F1} us at {dp.SmallN:N0} ({(dp.RelayNewFlowFlatness - 1) * 100:+0.0;-0.0}%)")));
            goals.Add(new("dataPlane", HalfGoal, Status(dp.RelayNewFlowVsIptables <= 0.5),
                string.Create(inv, $"{dp.RelayNewFlowUs:F1} us vs {dp.IptablesNewFlowUs:F1} us ({dp.RelayNewFlowVsIptables:F2} x)")));
        }

        var m = r.Migration;
        goals.Add(new("migration", "0 pings lost and 0 UDP datagrams lost or misdelivered over all migrations; switch p50 under 1 ms",
            Status(m.PingLost == 0 && m.UdpLost == 0 && m.SwitchP50Us < 1000),
            string.Create(inv, $"{m.Migrations} migrations: {m.PingLost} of {m.PingSent:N0} pings lost, {m.UdpLost} of {m.UdpSent:N0} datagrams lost or misdelivered, switch p50 {m.SwitchP50Us:F0} us (the prototype's way: {m.BaselineSwitchP50Us:N0} us)")));

        var d = r.Dns;
        goals.Add(new("dns", "at least 1.5 x dnsmasq's queries per second", Status(d.QpsRatio >= 1.5),
            string.Create(inv, $"{d.RelayQps:N0} vs {d.DnsmasqQps:N0} q/s: {d.QpsRatio:F2} x ({d.Relay.QueriesPerCpuSecond / d.Dnsmasq.QueriesPerCpuSecond:F2} x per CPU-second of the server)")));

        goals.Add(new("maglev", "max load / mean at most 1.05", Status(r.Maglev.All(g => g.MaxLoadOverMean <= 1.05)),
            string.Join("; ", r.Maglev.Select(g => string.Create(inv, $"N = {g.N}: {g.MaxLoadOverMean:F4}")))));
        goals.Add(new("maglev", "removing one instance remaps at most 1.3 / N", Status(r.Maglev.All(g => g.RemoveOneRemapped <= 1.3 / g.N)),
            string.Join("; ", r.Maglev.Select(g => string.Create(inv, $"N = {g.N}: {g.RemoveOneRemapped * 100:F2}% (limit {130.0 / g.N:F2}%)")))));
        if (r.Cluster is { } c)
        {
            if (c.Convergence is { } conv)
            {
                var measured = conv.Converged ?? conv.Call;
                var ratio = measured.P50Ms / c.WriteSeenByWatcher.P50Ms;
                goals.Add(new("cluster", "convergence with 10,000 services, 3 nodes: p50 under 10 ms, p99 under 50 ms, within 3 x the etcd write -> watch floor",
                    conv.Services < GoalN ? "not measured" : Status(measured.P50Ms < 10 && measured.P99Ms < 50 && ratio <= 3),
                    string.Create(inv, $"{conv.Services:N0} services: call -> last kernel p50 {measured.P50Ms:F1} ms, p99 {measured.P99Ms:F1} ms (call answered p50 {conv.Call.P50Ms:F1} ms); floor p50 {c.WriteSeenByWatcher.P50Ms:F2} ms ({ratio:F1} x)")));
            }
            if (c.DataPath is { } dp2)
            {
                var bound = (dp2.LeaseTtlSeconds + 1) * 1000;
                var worst = dp2.Failover.Count == 0 ? double.NaN : dp2.Failover.Max(f => f.SilenceMs);
                goals.Add(new("cluster", "fail-over after a node loss within the lease TTL + 1 s",
                    double.IsNaN(worst) ? "not measured" : Status(worst <= bound),
                    string.Create(inv, $"silences {string.Join(", ", dp2.Failover.Select(f => f.SilenceMs.ToString("F0", inv) + " ms" + (f.MemberLed ? " (its member led)" : "")))}; bound {bound:F0} ms")));
                var mm = dp2.Migration;
                goals.Add(new("cluster", "cross-host migration under ping -f and a fixed-port UDP stream: 0 lost, nothing at the old instance after the call returned",
                    Status(mm.PingLost == 0 && mm.UdpNotDelivered == 0 && mm.UdpAtOldAfterReturn == 0),
                    string.Create(inv, $"{mm.Migrations} migrations: {mm.PingLost} of {mm.PingSent:N0} pings lost, {mm.UdpNotDelivered} of {mm.UdpSent:N0} datagrams not delivered ({mm.SocketDrops} more delivered but dropped by the benchmark's receiving sockets), {mm.UdpAtOldAfterReturn} at the old instance after the call; switch p50 {mm.SwitchMs.P50Ms:F1} ms (one host in process: {r.Migration.SwitchP50Us / 1000:F2} ms)")));
            }
        }
        return goals;
    }

    /// <summary>The summary table at the top of docs/benchmarks.md.</summary>
    public static void Render(StringBuilder sb, IReadOnlyList<GoalResult> goals)
    {
        sb.AppendLine("## Goals");
        sb.AppendLine();
        var met = goals.Count(g => g.Status == "met");
        var missed = goals.Count(g => g.Status == "missed");
        sb.AppendLine($"{met} of {goals.Count} goals met, {missed} missed{(met + missed < goals.Count ? $", {goals.Count - met - missed} not measured in this mode" : "")}. Each experiment's section below says, for a miss, by how much and what limits it.");
        sb.AppendLine();
        sb.AppendLine("| experiment | goal | measured (baseline from the same run) | status |");
        sb.AppendLine("|---|---|---|---|");
        foreach (var g in goals)
        {
            var status = g.Status switch { "met" => "**met**", "missed" => "**MISSED**", _ => g.Status };
            sb.AppendLine($"| {g.Experiment} | {g.Goal} | {g.Measured} | {status} |");
        }
        sb.AppendLine();
    }
}
