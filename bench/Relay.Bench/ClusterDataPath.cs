using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Relay.Cluster.Lab;
using Relay.Linux.Processes;

namespace Relay.Bench;

/// <summary>The VXLAN cost: the same client instance to a service whose instance is on its own host and to one whose instance is on another host.</summary>
/// <param name="LocalNewFlowUs">First packet of a new flow (ICMP echo, fresh identifier) to the same-host service, p50.</param>
/// <param name="RemoteNewFlowUs">The same to the other-host service (over the overlay), p50.</param>
/// <param name="LocalGbps">TCP throughput (iperf3), one stream, same host.</param>
/// <param name="RemoteGbps">The same across hosts.</param>
/// <param name="LocalGbps4">Four streams, same host.</param>
/// <param name="RemoteGbps4">Four streams, across hosts.</param>
/// <param name="Probes">New-flow probes per path.</param>
/// <param name="IperfSeconds">Seconds per iperf3 run (best of the rounds).</param>
internal sealed record VxlanCost(double LocalNewFlowUs, double RemoteNewFlowUs, double LocalNewFlowP90Us, double RemoteNewFlowP90Us,
    double LocalGbps, double RemoteGbps, double LocalGbps4, double RemoteGbps4, int Probes, int IperfSeconds, int IperfRounds);

/// <summary>Re-points of a service between instances on two other hosts through host 1's API, under <c>ping -f</c> and a fixed-port UDP stream from host 1.</summary>
internal sealed record CrossHostMigration(
    int Migrations,
    LatencySummary Call,
    LatencySummary SwitchMs,
    long PingSent,
    long PingLost,
    int UdpRate,
    long UdpSent,
    long UdpNeverReceived,
    long UdpAtOldAfterReturn,
    int NoSwitchSeen)
{
    /// <summary>Datagrams the sender's kernel refused (counted in never received).</summary>
    public long SendErrors { get; init; }

    /// <summary>Datagrams the receivers' sockets dropped for lack of buffer (SO_RXQ_OVFL; counted in never received).</summary>
    public long SocketDrops { get; init; }

    /// <summary>Datagrams the data plane did not deliver to an instance's socket: never received, less those the socket itself dropped (the recorder thread was not scheduled in time).</summary>
    public long UdpNotDelivered => UdpNeverReceived - SocketDrops;

    /// <summary>Of those never received: sent while a migration call was open (request to answer).</summary>
    public long LostDuringCalls { get; init; }

    /// <summary>Of those never received: sent within 200 ms after a call's answer.</summary>
    public long LostJustAfterCalls { get; init; }

    /// <summary>Runs of consecutive datagrams never received, and the longest (datagrams).</summary>
    public int LostRuns { get; init; }

    /// <summary>The longest run of consecutive datagrams never received.</summary>
    public long LongestLostRun { get; init; }

    /// <summary>The kernels' drop counters (conntrack -S, nstat) that moved during the migrations, per namespace; "none" when none did.</summary>
    public string? KernelDrops { get; init; }
}

/// <summary>One node loss: the node whose instance takes a fixed-port UDP flow loses its daemon and its underlay link.</summary>
/// <param name="SilenceMs">From the last datagram the lost node's instance got to the first the other instance got, in stream time (1,000/s).</param>
/// <param name="MemberLed">Whether the lost node's etcd member was the leader (an election comes on top).</param>
internal sealed record FailoverRun(double SilenceMs, bool MemberLed);

internal sealed record ClusterDataPathResult(VxlanCost Vxlan, CrossHostMigration Migration, double LeaseTtlSeconds, IReadOnlyList<FailoverRun> Failover);

/// <summary>
/// The cluster's data path on a lab of 3 hosts with their relay daemons, all driven through host
/// 1's API as <c>relay</c> would: what VXLAN costs against the same pair on one host, a cross-host
/// migration under load, and the fail-over after a node loss against the lease TTL.
/// </summary>
internal static class ClusterDataPath
{
    private const int UdpPort = 9999;
    private const int SourcePort = 40_404;

    public static ClusterDataPathResult Run(bool smoke, bool quick, Action<string> progress)
    {
        var inv = CultureInfo.InvariantCulture;
        var ttl = TimeSpan.FromSeconds(3);
        var relay = ClusterConvergence.RelayBinary();
        var lab = LabCluster.UpAsync(new LabOptions { Name = "d" + Guid.NewGuid().ToString("N")[..7], Hosts = 3, Root = Path.Combine(Path.GetTempPath(), "relay-bench-labs"), RelayBinary = relay, LeaseTtl = ttl })
            .GetAwaiter().GetResult();
        try
        {
            var h = lab.Hosts.Select(x => x.Name).ToArray();
            using var api = ClusterConvergence.Client(lab.Hosts[0].Socket);
            Post(api, "v1/networks", new { name = "default" });
            foreach (var s in new[] { "a.com", "near.com", "far.com", "b.com", "f.com" })
            {
                Post(api, "v1/networks/default/services", new { name = s });
            }
            var client = Post(api, "v1/networks/default/instances", new { service = "a.com", node = h[0] }).GetProperty("namespace").GetString()!;
            Post(api, "v1/networks/default/instances", new { service = "near.com", node = h[0], command = new[] { "iperf3", "-s" } });
            Post(api, "v1/networks/default/instances", new { service = "far.com", node = h[1], command = new[] { "iperf3", "-s" } });
            var vxlan = Vxlan(api, client, smoke, quick, progress);
            progress(string.Create(inv, $"  VXLAN: new flow same host {vxlan.LocalNewFlowUs:F1} us, across hosts {vxlan.RemoteNewFlowUs:F1} us; TCP 1 stream {vxlan.LocalGbps:F1} vs {vxlan.RemoteGbps:F1} Gbps, 4 streams {vxlan.LocalGbps4:F1} vs {vxlan.RemoteGbps4:F1} Gbps"));

            // The kernels' own drop counters around the migrations: where a lost datagram died, if in a kernel.
            var spaces = h.Select(x => $"relay-default@{x}").Concat(lab.Hosts.Select(x => x.Namespace)).ToArray();
            var dropsBefore = DropCounters(spaces);
            var migration = Migrate(api, client, h, smoke ? 3 : quick ? 20 : 100, smoke ? 5_000 : 50_000, progress);
            var drops = DropCounters(spaces).Select(kv => (kv.Key, Value: kv.Value - dropsBefore.GetValueOrDefault(kv.Key))).Where(x => x.Value != 0).OrderBy(x => x.Key, StringComparer.Ordinal)
                .Select(x => string.Create(inv, $"{x.Key} +{x.Value}")).ToArray();
            migration = migration with { KernelDrops = drops.Length == 0 ? "none" : string.Join(", ", drops) };
            progress("  kernel drop counters that moved during the migrations: " + migration.KernelDrops);
            progress(string.Create(inv, $"  cross-host migration: {migration.Migrations} re-points, call p50 {migration.Call.P50Ms:F1} ms, switch p50 {migration.SwitchMs.P50Ms:F1} ms; ping -f lost {migration.PingLost} of {migration.PingSent}, UDP never received {migration.UdpNeverReceived} ({migration.LostRuns} runs, longest {migration.LongestLostRun}; {migration.LostDuringCalls} sent while a call was open, {migration.LostJustAfterCalls} within 200 ms after one; sender refused {migration.SendErrors}, receiver sockets dropped {migration.SocketDrops}), at the old instance after the call {migration.UdpAtOldAfterReturn}"));

            var runs = new List<FailoverRun>();
            lab = Failover(lab, api, client, h, ttl, relay, smoke || quick ? 1 : 3, runs, progress);
            return new ClusterDataPathResult(vxlan, migration, ttl.TotalSeconds, runs);
        }
        catch
        {
            ClusterBench.KeepLogs(lab);
            throw;
        }
        finally
        {
            LabCluster.Down(lab, Relay.Engine.NetworkRecord.RemoveAll);
        }
    }

    private static VxlanCost Vxlan(HttpClient api, string client, bool smoke, bool quick, Action<string> progress)
    {
        var probes = smoke ? 20 : quick ? 200 : 1000;
        var (seconds, rounds) = smoke ? (1, 1) : quick ? (2, 1) : (5, 3);
        var near = Vip(api, "near.com");
        var far = Vip(api, "far.com");
        progress($"  VXLAN cost: {probes} new-flow probes per path, iperf3 {rounds} x {seconds} s with 1 and 4 streams, same host and across hosts");
        using var local = new DataPlane.Pinger(client, near);
        using var remote = new DataPlane.Pinger(client, far);
        local.Established(3);
        remote.Established(3);
        var l = new List<double>();
        var r = new List<double>();
        for (var i = 0; i < probes; i++)
        {
            // Interleaved, so that both paths see the same machine.
            if (local.NewFlow() is { } a)
            {
                l.Add(a);
            }
            if (remote.NewFlow() is { } b)
            {
                r.Add(b);
            }
        }
        double Best(IPAddress to, int streams) => Enumerable.Range(0, rounds).Max(_ => Math.Round(DataPlane.Iperf(client, to, seconds, streams), 2));
        var gbps = new[] { (near, 1), (far, 1), (near, 4), (far, 4) }.Select(x => Best(x.Item1, x.Item2)).ToArray();
        return new VxlanCost(Math.Round(Stats.Median(l), 1), Math.Round(Stats.Median(r), 1), Math.Round(Stats.Percentile(l, 0.9), 1), Math.Round(Stats.Percentile(r, 0.9), 1),
            gbps[0], gbps[1], gbps[2], gbps[3], probes, seconds, rounds);
    }

    /// <summary>
    /// b.com moves between a fresh standby instance on host 2 and one on host 3, <paramref name="count"/>
    /// times, through host 1's API (<c>relay migrate --to</c>'s request), while host 1's client floods
    /// its virtual address with <c>ping -f</c> and sends it <paramref name="rate"/> datagrams/s from one
    /// source port. Every b.com instance records the datagrams (sequence numbers) it gets. The switch
    /// is counted in stream time: the first datagram the new instance got, less the last one sent before
    /// the call, over the rate.
    /// </summary>
    private static readonly string[] DropNames =
    [
        "insert_failed", "drop", "early_drop", "invalid", "error",
        "IpInDiscards", "IpOutDiscards", "IpOutNoRoutes", "IpExtInNoRoutes", "IpInAddrErrors", "IpInHdrErrors",
        "Ip6InDiscards", "Ip6OutDiscards", "Ip6OutNoRoutes", "Ip6InNoRoutes", "Ip6InAddrErrors",
        "UdpInErrors", "UdpRcvbufErrors", "UdpSndbufErrors", "UdpNoPorts", "IcmpOutDestUnreachs", "TcpExtTCPBacklogDrop",
    ];

    /// <summary>Drop counters of each namespace: conntrack's (summed over CPUs) and the IP/UDP/ICMP MIB's (nstat), as NS:NAME.</summary>
    private static Dictionary<string, long> DropCounters(IEnumerable<string> namespaces)
    {
        var result = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var ns in namespaces)
        {
            foreach (var (tool, args) in new[] { ("conntrack", new[] { "-S" }), ("nstat", new[] { "-asz" }) })
            {
                var psi = new ProcessStartInfo("ip") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
                foreach (var a in new[] { "netns", "exec", ns, tool }.Concat(args))
                {
                    psi.ArgumentList.Add(a);
                }
                using var p = Process.Start(psi)!;
                var text = p.StandardOutput.ReadToEnd();
                p.StandardError.ReadToEnd();
                p.WaitForExit();
                // conntrack -S: "cpu=0 found=0 invalid=3 ... drop=0 ..."; nstat: "NAME VALUE RATE".
                foreach (Match m in Regex.Matches(text, @"(\w+)=(\d+)|^(\w+)\s+(\d+)", RegexOptions.Multiline))
                {
                    var name = m.Groups[1].Success ? m.Groups[1].Value : m.Groups[3].Value;
                    var value = long.Parse(m.Groups[1].Success ? m.Groups[2].Value : m.Groups[4].Value, CultureInfo.InvariantCulture);
                    if (DropNames.Contains(name))
                    {
                        var key = $"{ns}:{name}";
                        result[key] = result.GetValueOrDefault(key) + value;
                    }
                }
            }
        }
        return result;
    }

    private static CrossHostMigration Migrate(HttpClient api, string client, string[] h, int count, int rate, Action<string> progress)
    {
        var vip = Vip(api, "b.com");
        var recorders = new List<UdpArrivalRecorder>();
        NamespacedProcess? ping = null;
        FixedRateUdpSender? sender = null;
        try
        {
            var current = Post(api, "v1/networks/default/instances", new { service = "b.com", node = h[1] });
            var currentRecorder = new UdpArrivalRecorder(current.GetProperty("namespace").GetString()!, UdpPort, current.GetProperty("name").GetString()!);
            recorders.Add(currentRecorder);
            ping = NamespacedProcess.Start(client, ["ping", "-f", "-q", vip.ToString()]);
            sender = new FixedRateUdpSender(client, new IPEndPoint(vip, UdpPort), SourcePort, rate);
            Thread.Sleep(500);
            progress($"  cross-host migration: {count} re-points of b.com between hosts 2 and 3 under ping -f and {rate:N0} UDP datagrams/s");
            var call = new List<double>();
            var switches = new List<double>();
            var atOldLate = 0L;
            var noSwitch = 0;
            var windows = new List<(long Before, long Returned)>();
            var seqBegin = sender.LastSent;
            for (var i = 0; i < count; i++)
            {
                var fresh = Post(api, "v1/networks/default/instances", new { service = "b.com", node = h[1 + (i + 1) % 2], standby = true });
                var freshRecorder = new UdpArrivalRecorder(fresh.GetProperty("namespace").GetString()!, UdpPort, fresh.GetProperty("name").GetString()!);
                recorders.Add(freshRecorder);
                var before = sender.LastSent;
                var t = Stopwatch.GetTimestamp();
                Post(api, "v1/networks/default/services/b.com/migrate", new { to = fresh.GetProperty("name").GetString() });
                call.Add(Stopwatch.GetElapsedTime(t).TotalMilliseconds);
                var returned = sender.LastSent;
                windows.Add((before, returned));
                // The old instance drains (no TCP flows: at once) and goes; what it got is final then.
                Thread.Sleep(150);
                currentRecorder.Stop();
                atOldLate += Count(currentRecorder.Sequences, s => s > returned);
                var first = FirstAtOrAfter(freshRecorder, before);
                if (first is { } f)
                {
                    switches.Add((f - before) * 1000.0 / rate);
                }
                else
                {
                    noSwitch++;
                }
                currentRecorder = freshRecorder;
                if ((i + 1) % 10 == 0)
                {
                    progress(string.Create(CultureInfo.InvariantCulture, $"    {i + 1}/{count}: call p50 {Stats.Median(call):F1} ms, switch p50 {(switches.Count > 0 ? Stats.Median(switches) : double.NaN):F1} ms"));
                }
            }
            Thread.Sleep(100);
            var seqEnd = sender.LastSent;
            sender.Stop();
            Thread.Sleep(50);
            ping.Interrupt();
            ping.WaitForExitAsync().Wait(TimeSpan.FromSeconds(5));
            var m = Regex.Match(string.Join('\n', ping.RecentOutput()), @"(\d+) packets transmitted, (\d+) received");
            long sent = 0, lost = -1;
            if (m.Success)
            {
                sent = long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
                lost = sent - long.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture);
            }
            foreach (var r in recorders)
            {
                r.Stop();
            }
            var got = new HashSet<long>();
            foreach (var r in recorders)
            {
                foreach (var s in r.Sequences)
                {
                    got.Add(s);
                }
            }
            // Where the losses fall: while a call was open, just after one, or elsewhere; and in what runs.
            var never = 0L;
            long during = 0, after = 0, run = 0, longest = 0;
            var runs = 0;
            var justAfter = rate / 5;
            for (var s = seqBegin + 1; s <= seqEnd; s++)
            {
                if (got.Contains(s))
                {
                    run = 0;
                    continue;
                }
                never++;
                runs += run == 0 ? 1 : 0;
                longest = Math.Max(longest, ++run);
                if (windows.Any(w => s > w.Before && s <= w.Returned))
                {
                    during++;
                }
                else if (windows.Any(w => s > w.Returned && s <= w.Returned + justAfter))
                {
                    after++;
                }
            }
            return new CrossHostMigration(count, LatencySummary.Of(call), LatencySummary.Of(switches.Count > 0 ? switches : [double.NaN]), sent, lost, rate, seqEnd - seqBegin, never, atOldLate, noSwitch)
            {
                SendErrors = sender.SendErrors,
                SocketDrops = recorders.Sum(r => r.SocketDrops),
                LostDuringCalls = during,
                LostJustAfterCalls = after,
                LostRuns = runs,
                LongestLostRun = longest,
            };
        }
        finally
        {
            sender?.Dispose();
            if (ping is not null)
            {
                if (!ping.HasExited)
                {
                    ping.StopAsync(TimeSpan.FromSeconds(1)).Wait(TimeSpan.FromSeconds(3));
                }
                ping.Dispose();
            }
            foreach (var r in recorders)
            {
                r.Dispose();
            }
        }
    }

    /// <summary>
    /// f.com has an instance on host 2 and one on host 3; host 1's client sends it 1,000 datagrams/s
    /// from one source port. The node whose instance gets them loses its daemon (SIGKILL) and its
    /// underlay link (its etcd member with it) at once; the silence is the stream time between the
    /// last datagram that instance got and the first the other got. The node then comes back and is
    /// waited for before the next run.
    /// </summary>
    private static LabRecord Failover(LabRecord lab, HttpClient api, string client, string[] h, TimeSpan ttl, string relay, int count, List<FailoverRun> runs, Action<string> progress)
    {
        const int Rate = 1000;
        var vip = Vip(api, "f.com");
        var on = new Dictionary<int, UdpArrivalRecorder>();
        foreach (var host in new[] { 1, 2 })
        {
            var i = Post(api, "v1/networks/default/instances", new { service = "f.com", node = h[host] });
            on[host] = new UdpArrivalRecorder(i.GetProperty("namespace").GetString()!, UdpPort, i.GetProperty("name").GetString()!);
        }
        using var sender = new FixedRateUdpSender(client, new IPEndPoint(vip, UdpPort), SourcePort + 1, Rate, realtime: false);
        try
        {
            progress($"  fail-over: {count} node loss(es) under a 1,000/s UDP flow (lease TTL {ttl.TotalSeconds:0} s)");
            for (var run = 0; run < count; run++)
            {
                // The node whose instance takes the flow now: the one whose count grows.
                var counts = on.ToDictionary(kv => kv.Key, kv => kv.Value.Count);
                Thread.Sleep(1000);
                var victim = on.MaxBy(kv => kv.Value.Count - counts[kv.Key]).Key;
                var survivor = victim == 1 ? 2 : 1;
                var survivorBefore = on[survivor].Count;
                // Both cases on purpose, the hard one first: the lost node's etcd member leads (an
                // election, and every lease renewed for a full TTL by the new leader), or host 1's does.
                bool led;
                using (var etcd = LabCluster.Connect(lab, 0, TimeSpan.FromSeconds(2)))
                {
                    etcd.MoveLeaderAsync(lab.Hosts[run % 2 == 0 ? victim : 0].Etcd).GetAwaiter().GetResult();
                    var status = etcd.MemberStatusAsync().GetAwaiter().GetResult();
                    var member = status.Single(x => x.Endpoint == lab.Hosts[victim].Etcd).Status!;
                    led = member.Header.MemberId == member.Leader;
                }
                var cutSeq = sender.LastSent;
                LabCluster.KillDaemon(lab.Hosts[victim]);
                LabCluster.SetLinkUp(lab, lab.Hosts[victim], up: false);
                var deadline = Stopwatch.StartNew();
                while (on[survivor].Count == survivorBefore && deadline.Elapsed < ttl * 4)
                {
                    Thread.Sleep(20);
                }
                Thread.Sleep(200);
                var lastAtVictim = Max(on[victim].Snapshot(), cutSeq + Rate * 60L);
                var firstAtSurvivor = Min(on[survivor].Snapshot(), cutSeq - Rate);
                var silence = firstAtSurvivor is { } f && lastAtVictim is { } l ? (f - l) * 1000.0 / Rate : double.NaN;
                runs.Add(new FailoverRun(Math.Round(silence, 0), led));
                progress(string.Create(CultureInfo.InvariantCulture, $"    loss {run + 1}/{count}: {h[victim]} (its etcd member {(led ? "led" : "did not lead")}): {silence:F0} ms without a datagram"));

                // Back: the link, then the daemon; the next run waits until the node is ready again.
                LabCluster.SetLinkUp(lab, lab.Hosts[victim], up: true);
                lab = LabCluster.RestartDaemonAsync(lab, victim, relay, ttl).GetAwaiter().GetResult();
                WaitReady(api, h[victim]);
            }
            return lab;
        }
        finally
        {
            sender.Stop();
            foreach (var r in on.Values)
            {
                r.Dispose();
            }
        }
    }

    private static void WaitReady(HttpClient api, string node)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(30))
        {
            using var doc = JsonDocument.Parse(api.GetStringAsync("v1/nodes").GetAwaiter().GetResult());
            if (doc.RootElement.EnumerateArray().Any(n => n.GetProperty("name").GetString() == node && n.GetProperty("state").GetString() == "ready"))
            {
                return;
            }
            Thread.Sleep(100);
        }
        throw new TimeoutException($"node {node} was not ready again within 30 s");
    }

    private static long? FirstAtOrAfter(UdpArrivalRecorder r, long after)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(2))
        {
            if (Min(r.Snapshot(), after) is { } s)
            {
                return s;
            }
            Thread.Sleep(5);
        }
        return null;
    }

    private static long? Min(long[] seqs, long above)
    {
        long? best = null;
        foreach (var s in seqs)
        {
            if (s > above && (best is null || s < best))
            {
                best = s;
            }
        }
        return best;
    }

    private static long? Max(long[] seqs, long below)
    {
        long? best = null;
        foreach (var s in seqs)
        {
            if (s < below && (best is null || s > best))
            {
                best = s;
            }
        }
        return best;
    }

    private static long Count(ReadOnlySpan<long> seqs, Func<long, bool> match)
    {
        var n = 0L;
        foreach (var s in seqs)
        {
            n += match(s) ? 1 : 0;
        }
        return n;
    }

    private static IPAddress Vip(HttpClient api, string service)
    {
        using var doc = JsonDocument.Parse(api.GetStringAsync($"v1/networks/default/services/{service}").GetAwaiter().GetResult());
        return IPAddress.Parse(doc.RootElement.GetProperty("vip4").GetString()!);
    }

    private static JsonElement Post(HttpClient api, string path, object body) => ClusterConvergence.Post(api, path, body);

    public static void Render(StringBuilder sb, ClusterDataPathResult r, MigrationBenchResult single)
    {
        var inv = CultureInfo.InvariantCulture;
        var v = r.Vxlan;
        sb.AppendLine("### Across hosts: the VXLAN cost, a migration under load, a node loss");
        sb.AppendLine();
        sb.AppendLine("A fresh lab of 3 hosts with their relay daemons, driven through host 1's API as `relay` would. The client is an instance on host 1; `near.com` has its instance (running `iperf3 -s`) on host 1, `far.com` on host 2, reached over VXLAN (MTU 1450 on the instance's veth).");
        sb.AppendLine();
        sb.AppendLine("| path | new flow p50 (us) | new flow p90 (us) | TCP 1 stream (Gbit/s) | TCP 4 streams (Gbit/s) |");
        sb.AppendLine("|---|---:|---:|---:|---:|");
        sb.AppendLine(string.Create(inv, $"| same host (the baseline) | {v.LocalNewFlowUs:F1} | {v.LocalNewFlowP90Us:F1} | {v.LocalGbps:F2} | {v.LocalGbps4:F2} |"));
        sb.AppendLine(string.Create(inv, $"| across hosts (VXLAN) | {v.RemoteNewFlowUs:F1} | {v.RemoteNewFlowP90Us:F1} | {v.RemoteGbps:F2} | {v.RemoteGbps4:F2} |"));
        sb.AppendLine(string.Create(inv, $"| ratio across / same | {v.RemoteNewFlowUs / v.LocalNewFlowUs:F2} x | {v.RemoteNewFlowP90Us / v.LocalNewFlowP90Us:F2} x | {v.RemoteGbps / v.LocalGbps:F2} x | {v.RemoteGbps4 / v.LocalGbps4:F2} x |"));
        sb.AppendLine();
        sb.AppendLine(string.Create(inv, $"New flow: one ICMP echo with a fresh identifier, {v.Probes} per path, interleaved (kernel receive timestamp). Throughput: iperf3, best of {v.IperfRounds} x {v.IperfSeconds} s. All hosts share this machine's 2 cores, so \"across hosts\" is the encapsulation's CPU cost, not a wire."));
        sb.AppendLine();
        var m = r.Migration;
        sb.AppendLine(string.Create(inv, $"Cross-host migration: b.com moved {m.Migrations} times between a fresh standby instance on host 2 and one on host 3 (`POST .../services/b.com/migrate`, which returns when every live node applied it), while host 1's client runs `ping -f` and sends {m.UdpRate:N0} UDP datagrams/s from one source port to its virtual address. Switch: the first datagram at the new instance less the last one sent before the call, in stream time. Side by side, the single-host migration of this run (in process, the Migration section)."));
        sb.AppendLine();
        sb.AppendLine("| migration | call p50 (ms) | call p99 (ms) | switch p50 (ms) | switch p99 (ms) | ping -f lost | UDP never received | UDP at the old instance after the call |");
        sb.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|");
        sb.AppendLine(string.Create(inv, $"| across hosts, through the API | {m.Call.P50Ms:F2} | {m.Call.P99Ms:F2} | {m.SwitchMs.P50Ms:F2} | {m.SwitchMs.P99Ms:F2} | {m.PingLost} of {m.PingSent} | {m.UdpNeverReceived} of {m.UdpSent} ({m.SocketDrops} of them dropped by the receiving socket: delivered, not read in time) | {m.UdpAtOldAfterReturn} |"));
        sb.AppendLine(string.Create(inv, $"| one host, in process (floor) | {single.CallP50Us / 1000:F2} | - | {single.SwitchP50Us / 1000:F2} | {single.SwitchP99Us / 1000:F2} | {single.PingLost} of {single.PingSent} | {single.UdpNeverReceived} of {single.UdpSent} | {single.UdpLateAtOld} |"));
        sb.AppendLine();
        if (m.KernelDrops is { } kd)
        {
            sb.AppendLine(string.Create(inv, $"The kernels' drop counters (`conntrack -S`, `nstat`) in the orchestrators and the lab hosts' namespaces that moved during the migrations: {kd}. Of the datagrams never received, {m.LostDuringCalls} were sent while a call was open and {m.LostJustAfterCalls} within 200 ms after one, in {m.LostRuns} run(s), the longest {m.LongestLostRun}."));
            sb.AppendLine();
        }
        if (m.NoSwitchSeen > 0)
        {
            sb.AppendLine(string.Create(inv, $"In {m.NoSwitchSeen} migrations no datagram reached the new instance within 2 s."));
            sb.AppendLine();
        }
        sb.AppendLine(string.Create(inv, $"Node loss (lease TTL {r.LeaseTtlSeconds:0} s): f.com has an instance on host 2 and one on host 3; host 1's client sends it 1,000 datagrams/s from one port. The node whose instance takes them loses its daemon (SIGKILL) and its underlay link at once; the silence is the stream time from the last datagram that instance got to the first the other one got. Before each loss the raft leadership is moved (etcd's move-leader): odd runs to the lost node's member (the hard case: an election, then the new leader renews every lease for a full TTL), even runs to host 1's. The other nodes drop the lost one from their balancers when its heartbeat (every TTL/3) stayed away for a TTL, before etcd's expiry. Goal: within TTL + 1 s = {r.LeaseTtlSeconds + 1:0} s (Kubernetes needs 50 s to call a node NotReady, Swarm's gossip about 5 s)."));
        sb.AppendLine();
        sb.AppendLine("| run | silence (ms) | lost node's etcd member led |");
        sb.AppendLine("|---:|---:|---|");
        for (var i = 0; i < r.Failover.Count; i++)
        {
            sb.AppendLine(string.Create(inv, $"| {i + 1} | {r.Failover[i].SilenceMs:F0} | {(r.Failover[i].MemberLed ? "yes (an election comes on top)" : "no")} |"));
        }
        sb.AppendLine();
    }
}
