using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using Relay.Cluster;
using Relay.Cluster.Lab;

namespace Relay.Bench;

internal sealed record LatencySummary(int Samples, double P50Ms, double P99Ms, double MaxMs)
{
    public static LatencySummary Of(IReadOnlyCollection<double> ms)
        => new(ms.Count, Math.Round(Stats.Median(ms), 3), Math.Round(Stats.Percentile(ms, 0.99), 3), Math.Round(ms.Max(), 3));
}

/// <summary>The cluster store on a 3-member etcd of lab hosts: the floor any convergence is measured against.</summary>
internal sealed record ClusterBenchResult(
    int Members,
    LatencySummary WriteSeenByWatcher,
    LatencySummary ServiceAdd,
    LatencySummary ServiceAddContended,
    double LeaseTtlSeconds,
    IReadOnlyList<double> NodeGoneAfterLastRenewalMs)
{
    /// <summary>Re-points through a lab daemon's API until every node applied them (null: not run).</summary>
    public ConvergenceResult? Convergence { get; init; }

    /// <summary>The data path across hosts: VXLAN cost, cross-host migration, fail-over (null: not run).</summary>
    public ClusterDataPathResult? DataPath { get; init; }
}

internal static class ClusterBench
{
    public static ClusterBenchResult Run(bool smoke, bool quick, Action<string> progress)
    {
        var samples = smoke ? 20 : quick ? 100 : 300;
        var ttl = TimeSpan.FromSeconds(smoke ? 1 : 3);
        var losses = smoke ? 1 : quick ? 2 : 3;
        var root = Path.Combine(Path.GetTempPath(), "relay-bench-labs");
        LabRecord? lab = LabCluster.UpAsync(new LabOptions { Name = "b" + Guid.NewGuid().ToString("N")[..7], Hosts = 3, Root = root }).GetAwaiter().GetResult();
        try
        {
            using var writer = LabCluster.Connect(lab, 0);
            using var reader = LabCluster.Connect(lab, 1);
            using var third = LabCluster.Connect(lab, 2);

            progress($"  etcd write -> watch event on another member, {samples} writes");
            var floor = WriteToWatch(writer, reader, samples);

            progress($"  service add by transaction, {samples} alone and {samples} from two members at once");
            var pool4 = IPNetwork.Parse("10.96.0.0/16");
            var pool6 = IPNetwork.Parse("fd00:96::/112");
            var alone = new ClusterAllocator(writer, lab.Hosts[0].Name);
            var aloneMs = new List<double>();
            for (var i = 0; i < samples; i++)
            {
                var t = Stopwatch.GetTimestamp();
                alone.AddServiceAsync("bench", $"a{i}.com", pool4, pool6).GetAwaiter().GetResult();
                aloneMs.Add(Stopwatch.GetElapsedTime(t).TotalMilliseconds);
            }
            var contended = new System.Collections.Concurrent.ConcurrentBag<double>();
            var small4 = IPNetwork.Parse("10.97.0.0/20");
            var small6 = IPNetwork.Parse("fd00:97::/116");
            var racers = new[] { writer, third }.Select((c, k) => Task.Run(async () =>
            {
                var a = new ClusterAllocator(c, lab.Hosts[k * 2].Name);
                for (var i = 0; i < samples / 2; i++)
                {
                    var t = Stopwatch.GetTimestamp();
                    await a.AddServiceAsync("race", $"r{k}-{i}.com", small4, small6).ConfigureAwait(false);
                    contended.Add(Stopwatch.GetElapsedTime(t).TotalMilliseconds);
                }
            })).ToArray();
            Task.WaitAll(racers);

            progress($"  node loss: {losses} node lease(s) of {ttl.TotalSeconds:0} s left to expire");
            var gone = new List<double>();
            for (var i = 0; i < losses; i++)
            {
                gone.Add(NodeLoss(writer, reader, ttl, i));
            }
            var result = new ClusterBenchResult(lab.Hosts.Count, floor, LatencySummary.Of(aloneMs), LatencySummary.Of(contended.ToArray()), ttl.TotalSeconds, gone);
            LabCluster.Down(lab);
            lab = null;
            progress("  convergence: relay daemons on a fresh 3-host lab");
            result = result with { Convergence = ClusterConvergence.Run(smoke ? 10 : quick ? 1000 : 10_000, smoke ? 3 : 100, progress) };
            progress("  data path across hosts: relay daemons on a fresh 3-host lab");
            return result with { DataPath = ClusterDataPath.Run(smoke, quick, progress) };
        }
        finally
        {
            if (lab is not null)
            {
                LabCluster.Down(lab);
            }
        }
    }

    private static LatencySummary WriteToWatch(Relay.Cluster.Etcd.EtcdConnection writer, Relay.Cluster.Etcd.EtcdConnection reader, int samples)
    {
        var prefix = ClusterKeys.Root + "bench/" + Guid.NewGuid().ToString("N")[..8] + "/";
        var watch = new ClusterWatch(reader, prefix);
        var seen = new System.Collections.Concurrent.ConcurrentDictionary<string, long>();
        using var cts = new CancellationTokenSource();
        var ready = new TaskCompletionSource();
        var run = watch.RunAsync(step =>
        {
            var now = Stopwatch.GetTimestamp();
            foreach (var key in step.Changed)
            {
                if (step.State.TryGetValue(key, out var v))
                {
                    seen.TryAdd(v, now);
                }
            }
            ready.TrySetResult();
            return Task.CompletedTask;
        }, cts.Token);
        ready.Task.Wait(TimeSpan.FromSeconds(10));
        // The first write also waits for the watch stream to be open.
        writer.PutAsync(prefix + "k", "warm").GetAwaiter().GetResult();
        SpinUntil(() => seen.ContainsKey("warm"));
        var ms = new List<double>();
        for (var i = 0; i < samples; i++)
        {
            var value = i.ToString(CultureInfo.InvariantCulture);
            var t = Stopwatch.GetTimestamp();
            writer.PutAsync(prefix + "k", value).GetAwaiter().GetResult();
            SpinUntil(() => seen.ContainsKey(value));
            ms.Add(Stopwatch.GetElapsedTime(t, seen[value]).TotalMilliseconds);
        }
        cts.Cancel();
        run.GetAwaiter().GetResult();
        return LatencySummary.Of(ms);
    }

    private static double NodeLoss(Relay.Cluster.Etcd.EtcdConnection own, Relay.Cluster.Etcd.EtcdConnection observer, TimeSpan ttl, int run)
    {
        var node = $"bench-loss-{run}-{Guid.NewGuid().ToString("N")[..6]}";
        var lease = NodeLease.JoinAsync(own, node, "198.18.0.9", Relay.Core.Overlay.VxlanPlan.Mac(node), ttl).GetAwaiter().GetResult();
        Thread.Sleep(ttl * 1.5); // a few renewals first
        lease.AbandonAsync().GetAwaiter().GetResult();
        var sinceRenewal = lease.SinceRenewal;
        var t = Stopwatch.GetTimestamp();
        var deadline = Stopwatch.StartNew();
        while (observer.GetAsync(ClusterKeys.Node(node)).GetAwaiter().GetResult() is not null && deadline.Elapsed < ttl * 4)
        {
            Thread.Sleep(10);
        }
        return Math.Round((sinceRenewal + Stopwatch.GetElapsedTime(t)).TotalMilliseconds, 1);
    }

    private static void SpinUntil(Func<bool> condition)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > TimeSpan.FromSeconds(10))
            {
                throw new TimeoutException("the watch did not deliver a write within 10 s");
            }
            Thread.SpinWait(20);
        }
    }

    public static void Render(StringBuilder sb, ClusterBenchResult r, MigrationBenchResult singleHost)
    {
        var inv = CultureInfo.InvariantCulture;
        sb.AppendLine("## Cluster store (etcd, 3 members on lab hosts)");
        sb.AppendLine();
        sb.AppendLine(string.Create(inv, $"A lab of {r.Members} simulated hosts on this machine, one etcd member each (Debian's etcd 3.4, heartbeat 100 ms, election 1 s), driven through Relay's own client (`Relay.Cluster`). The floor any cross-host convergence is measured against: an etcd write on one member followed by its watch event on another."));
        sb.AppendLine();
        sb.AppendLine("| operation | samples | p50 (ms) | p99 (ms) | max (ms) |");
        sb.AppendLine("|---|---:|---:|---:|---:|");
        void Row(string name, LatencySummary s) => sb.AppendLine(string.Create(inv, $"| {name} | {s.Samples} | {s.P50Ms:F2} | {s.P99Ms:F2} | {s.MaxMs:F2} |"));
        Row("etcd write -> watch event on another member (the floor)", r.WriteSeenByWatcher);
        Row("service add: one transaction (service + two address guards), alone", r.ServiceAdd);
        Row("service add: two members adding at once in one pool (lost races retried)", r.ServiceAddContended);
        sb.AppendLine();
        if (r.Convergence is { } c)
        {
            sb.AppendLine(string.Create(inv, $"Convergence: a fresh lab of 3 hosts, each with its relay daemon (`relay daemon --node --etcd --underlay`), {c.Services} services in the network. Each sample adds a standby instance of b.com on host 2 or 3 and waits until every node has applied it and the instance the previous re-point left is gone (not timed: a re-point is measured alone, not queued behind a node still creating or removing a namespace), then re-points b.com to it through host 1's API (`POST /v1/networks/default/services/b.com/migrate`, what `relay migrate --to` sends): one etcd transaction, then the daemon waits until every live node has recorded that its kernel (nft transaction and conntrack cleanup) holds it. Sixty re-points (or a fifth as many as are timed, if more) come first, untimed: the daemons are fresh processes and the JIT is still compiling their paths (after only 4, each daemon still compiled ~300 methods/s and p50 was 16-27 ms; after 60, 8-9 ms). Convergence is from the API call to the moment the last node's kernel held the re-point, by that node's own record of when (`applied/NODE`; one clock on one machine); the answer comes later by the time those records take to reach host 1. Goal: p50 under 10 ms, p99 under 50 ms, within 3 x the floor."));
            sb.AppendLine();
            sb.AppendLine("| re-point across hosts | samples | p50 (ms) | p99 (ms) | max (ms) |");
            sb.AppendLine("|---|---:|---:|---:|---:|");
            if (c.Converged is { } conv)
            {
                Row("API call -> the last node's kernel holds it (convergence)", conv);
            }
            Row("API call -> answer, i.e. every node's record of it seen by host 1 (client side)", c.Call);
            Row("  of which: etcd transaction committed (daemon side)", c.Written);
            Row("  of which: every node recorded the revision (daemon side)", c.Applied);
            sb.AppendLine();
            var ratio = r.WriteSeenByWatcher.P50Ms > 0 ? (c.Converged ?? c.Call).P50Ms / r.WriteSeenByWatcher.P50Ms : double.NaN;
            sb.AppendLine(string.Create(inv, $"Ratio to the floor (p50): {ratio:F1} x. Re-points some node had not applied within the call's 5 s wait: {c.NotAppliedInTime}."));
            sb.AppendLine();
        }
        sb.AppendLine(string.Create(inv, $"Node loss: a node that stops renewing its lease (TTL {r.LeaseTtlSeconds:0} s) is gone from the store {string.Join(", ", r.NodeGoneAfterLastRenewalMs.Select(m => (m / 1000).ToString("0.00", inv) + " s"))} after its last renewal (etcd checks expiry every 500 ms; goal for fail-over: within TTL + 1 s = {r.LeaseTtlSeconds + 1:0} s, against Kubernetes' 50 s to call a node NotReady)."));
        sb.AppendLine();
        if (r.DataPath is { } d)
        {
            ClusterDataPath.Render(sb, d, singleHost);
        }
    }

    /// <summary>Copies a failed experiment's lab logs (daemons, etcd members) out of the lab, which goes: to /tmp/relay-bench-failed/LAB, named on stderr.</summary>
    internal static void KeepLogs(Relay.Cluster.Lab.LabRecord lab)
    {
        try
        {
            var keep = Path.Combine(Path.GetTempPath(), "relay-bench-failed", lab.Name);
            Directory.CreateDirectory(keep);
            foreach (var log in Directory.EnumerateFiles(lab.Directory, "*.log"))
            {
                File.Copy(log, Path.Combine(keep, Path.GetFileName(log)), overwrite: true);
            }
            Console.Error.WriteLine($"relay-bench: the lab's logs are kept in {keep}");
        }
        catch (IOException e)
        {
            Console.Error.WriteLine($"relay-bench: could not keep the lab's logs: {e.Message}");
        }
    }
}
