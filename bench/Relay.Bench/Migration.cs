using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.RegularExpressions;
using Relay.Core.Dataplane;
using Relay.Engine;
using Relay.Engine.Probes;
using Relay.Linux.Processes;

namespace Relay.Bench;

/// <summary>
/// Result of the migration experiment: Relay's migrations and, side by side in the same run and
/// network, the same kind of migration done the prototype's way (an <c>nft -f</c> process, then a
/// <c>conntrack -D</c> process). Times in us unless the name says ms.
/// </summary>
internal sealed record MigrationBenchResult
{
    /// <summary>Relay migrations under load (100 full, 20 quick, 3 smoke).</summary>
    public int Migrations { get; init; }
    public long PingSent { get; init; }
    /// <summary>Echo requests of <c>ping -f</c> without a reply, over all of Relay's migrations.</summary>
    public long PingLost { get; init; }
    public long UdpSent { get; init; }
    public double UdpRatePerSec { get; init; }
    /// <summary>Stream datagrams never received by any instance, or misdelivered: at the old instance after the call returned or after the new one had a later datagram, or at an instance not in service. Each counted once.</summary>
    public long UdpLost { get; init; }
    public long UdpNeverReceived { get; init; }
    public long UdpWrongInstance { get; init; }
    public long UdpLateAtOld { get; init; }
    public long UdpOldAfterNew { get; init; }
    /// <summary>The longest silence at the receiving side of the stream (all instances together) over Relay's migrations, by kernel receive time.</summary>
    public double MaxGapMs { get; init; }
    public string MaxGapWhere { get; init; } = "";
    public double MigrationGapP50Ms { get; init; }
    /// <summary>The sending thread's own longest pause between two batches: a silence no longer than this is not the data path's.</summary>
    public double SenderMaxGapMs { get; init; }
    public string SenderMaxGapWhere { get; init; } = "";
    /// <summary>The longest time from a datagram's batch being handed to the kernel to its receive time at an instance.</summary>
    public double UdpMaxDelayMs { get; init; }
    public double GcPauseMs { get; init; }
    public int GcCount { get; init; }
    /// <summary>From <c>MigrationResult.Started</c> to the kernel receive time of the first datagram at the new instance (p50).</summary>
    public double SwitchP50Us { get; init; }
    public double SwitchP99Us { get; init; }
    /// <summary>From <c>MigrationResult.Started</c> to the first echo request seen by an <c>IcmpEchoWatcher</c> thread at the new instance (p50), as <c>SwitchMeter</c> measures.</summary>
    public double IcmpSwitchP50Us { get; init; }
    public double IcmpSwitchP99Us { get; init; }
    /// <summary>The whole <c>Migrate</c> call (p50), as the caller sees it.</summary>
    public double CallP50Us { get; init; }
    public double CallP99Us { get; init; }
    public double RepointP50Us { get; init; }
    public double RepointP99Us { get; init; }
    public double CleanupP50Us { get; init; }
    public double CleanupP99Us { get; init; }
    /// <summary>From the end of the conntrack cleanup to the return of <c>Migrate</c> (p50): after the switch.</summary>
    public double BookkeepingP50Us { get; init; }
    public int NoSwitchSeen { get; init; }
    public long UdpSocketDrops { get; init; }
    public long BacklogDrops { get; init; }
    public bool SenderRealtime { get; init; }
    /// <summary>Migrations done the prototype's way: <c>nft -f</c> process, then <c>conntrack -D</c> process.</summary>
    public int BaselineMigrations { get; init; }
    public long BaselinePingSent { get; init; }
    public long BaselinePingLost { get; init; }
    /// <summary>As <see cref="SwitchP50Us"/>, from the start of the <c>nft -f</c> process.</summary>
    public double BaselineSwitchP50Us { get; init; }
    public double BaselineSwitchP99Us { get; init; }
    public double BaselineIcmpSwitchP50Us { get; init; }
    public long BaselineUdpSent { get; init; }
    public double BaselineUdpRatePerSec { get; init; }
    public long BaselineUdpLost { get; init; }
    public long BaselineUdpNeverReceived { get; init; }
    public long BaselineUdpLateAtOld { get; init; }
    public double BaselineMaxGapMs { get; init; }
    public string BaselineMaxGapWhere { get; init; } = "";
    public double BaselineSenderMaxGapMs { get; init; }
    public string BaselineSenderMaxGapWhere { get; init; } = "";
    public double BaselineUdpMaxDelayMs { get; init; }
    public double BaselineCallP50Us { get; init; }
    public double BaselineNftP50Us { get; init; }
    public double BaselineConntrackP50Us { get; init; }
    public int BaselineNoSwitchSeen { get; init; }
    public double BaselineGcPauseMs { get; init; }
    /// <summary>One full ctnetlink dump of the conntrack table, measured after the migrations (p50 of 5).</summary>
    public double ConntrackDumpMs { get; init; }
    public long ConntrackBuckets { get; init; }
    public double DurationSeconds { get; init; }
}

/// <summary>
/// A client instance floods a service's virtual IPv4 address with <c>ping -f</c> and, at the same
/// time, with a fixed-rate UDP stream (52,000 datagrams/s, one source port, a sequence number in
/// each) while the service is moved to a fresh instance again and again. Every backend instance
/// records which datagrams it got and when the kernel received them, so each loss, each datagram
/// that reached the old instance too late, and the longest silence are counted exactly. Then the
/// same is done the prototype's way on a second service of the same network.
/// </summary>
internal static class Migration
{
    private const int UdpPort = 9000;
    private const int SourcePort = 40000;
    private const int UdpRate = 52_000;
    private const int BaselineMigrations = 20;
    private static readonly TimeSpan Settle = TimeSpan.FromMilliseconds(30);

    public static MigrationBenchResult Run(int migrations, Action<string> progress)
    {
        var wall = Stopwatch.StartNew();
        using var net = RelayNetwork.Create(new NetworkOptions { Name = "bench" + Guid.NewGuid().ToString("N")[..6] });
        net.AddServices(
        [
            new ServiceOptions { Name = "client.bench" },
            new ServiceOptions { Name = "target.bench" },
            new ServiceOptions { Name = "proto.bench" },
        ]);
        var client = net.AddInstance("client.bench");
        var relay = RunPhase(net, client, "target.bench", migrations, relayWay: true, progress);
        progress($"  relay: {relay.Summary()}");
        var baseline = RunPhase(net, client, "proto.bench", Math.Min(migrations, BaselineMigrations), relayWay: false, progress);
        progress($"  prototype way: {baseline.Summary()}");
        // What one full conntrack dump costs here (Relay's drain does one after each migration,
        // `conntrack -D` one per call): the kernel walks every bucket of the host-wide table.
        var dumps = new List<double>();
        for (var i = 0; i < 5; i++)
        {
            var t0 = Stopwatch.GetTimestamp();
            net.ListFlows();
            dumps.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
        }
        var buckets = long.TryParse(ReadOrEmpty("/proc/sys/net/netfilter/nf_conntrack_buckets"), NumberStyles.None, CultureInfo.InvariantCulture, out var nb) ? nb : -1;
        return new MigrationBenchResult
        {
            Migrations = migrations,
            PingSent = relay.PingSent,
            PingLost = relay.PingLost,
            UdpSent = relay.UdpSent,
            UdpRatePerSec = relay.UdpRate,
            UdpLost = relay.UdpLost,
            UdpNeverReceived = relay.NeverReceived,
            UdpWrongInstance = relay.WrongInstance,
            UdpLateAtOld = relay.LateAtOld,
            UdpOldAfterNew = relay.OldAfterNew,
            MaxGapMs = relay.MaxGapMs,
            MaxGapWhere = relay.MaxGapWhere,
            MigrationGapP50Ms = relay.MigrationGapP50Ms,
            SenderMaxGapMs = relay.SenderMaxGapMs,
            SenderMaxGapWhere = relay.SenderMaxGapWhere,
            UdpMaxDelayMs = relay.MaxDelayMs,
            GcPauseMs = relay.GcPauseMs,
            GcCount = relay.GcCount,
            SwitchP50Us = Stats.Median(relay.UdpSwitchUs),
            SwitchP99Us = Stats.Percentile(relay.UdpSwitchUs, 0.99),
            IcmpSwitchP50Us = Stats.Median(relay.IcmpSwitchUs),
            IcmpSwitchP99Us = Stats.Percentile(relay.IcmpSwitchUs, 0.99),
            CallP50Us = Stats.Median(relay.CallUs),
            CallP99Us = Stats.Percentile(relay.CallUs, 0.99),
            RepointP50Us = Stats.Median(relay.FirstStepUs),
            RepointP99Us = Stats.Percentile(relay.FirstStepUs, 0.99),
            CleanupP50Us = Stats.Median(relay.SecondStepUs),
            CleanupP99Us = Stats.Percentile(relay.SecondStepUs, 0.99),
            BookkeepingP50Us = Stats.Median(relay.AfterUs),
            NoSwitchSeen = relay.NoSwitchSeen,
            UdpSocketDrops = relay.SocketDrops,
            BacklogDrops = relay.BacklogDrops,
            SenderRealtime = relay.SenderRealtime,
            BaselineMigrations = baseline.Migrations,
            BaselinePingSent = baseline.PingSent,
            BaselinePingLost = baseline.PingLost,
            BaselineSwitchP50Us = Stats.Median(baseline.UdpSwitchUs),
            BaselineSwitchP99Us = Stats.Percentile(baseline.UdpSwitchUs, 0.99),
            BaselineIcmpSwitchP50Us = Stats.Median(baseline.IcmpSwitchUs),
            BaselineUdpSent = baseline.UdpSent,
            BaselineUdpRatePerSec = baseline.UdpRate,
            BaselineUdpLost = baseline.UdpLost,
            BaselineUdpNeverReceived = baseline.NeverReceived,
            BaselineUdpLateAtOld = baseline.LateAtOld,
            BaselineMaxGapMs = baseline.MaxGapMs,
            BaselineMaxGapWhere = baseline.MaxGapWhere,
            BaselineSenderMaxGapMs = baseline.SenderMaxGapMs,
            BaselineSenderMaxGapWhere = baseline.SenderMaxGapWhere,
            BaselineUdpMaxDelayMs = baseline.MaxDelayMs,
            BaselineCallP50Us = Stats.Median(baseline.CallUs),
            BaselineNftP50Us = Stats.Median(baseline.FirstStepUs),
            BaselineConntrackP50Us = Stats.Median(baseline.SecondStepUs),
            BaselineNoSwitchSeen = baseline.NoSwitchSeen,
            BaselineGcPauseMs = baseline.GcPauseMs,
            ConntrackDumpMs = Math.Round(Stats.Median(dumps), 2),
            ConntrackBuckets = buckets,
            DurationSeconds = Math.Round(wall.Elapsed.TotalSeconds, 1),
        };
    }

    /// <summary>One migration's times (Stopwatch ticks) and the stream's sequence numbers around it.</summary>
    private sealed record Step(long SeqBefore, long Called, long Started, long Returned, long SeqAfter)
    {
        /// <summary>When the fresh instance's creation began and ended.</summary>
        public long AddStarted { get; init; }

        public long AddEnded { get; init; }

        /// <summary>When the old instance was gone (drain done, namespace deleted).</summary>
        public long OldRemoved { get; set; }
    }

    /// <summary>What one phase (Relay's way or the prototype's) measured.</summary>
    private sealed class Phase
    {
        public int Migrations;
        public long PingSent = -1;
        public long PingLost = -1;
        public long UdpSent;
        public double UdpRate;
        public long UdpLost;
        public long NeverReceived;
        public long WrongInstance;
        public long LateAtOld;
        public long OldAfterNew;
        public double MaxGapMs = double.NaN;
        public string MaxGapWhere = "";
        public double MigrationGapP50Ms = double.NaN;
        public double SenderMaxGapMs = double.NaN;
        public double MaxDelayMs = double.NaN;
        public double GcPauseMs;
        public int GcCount;
        public string SenderMaxGapWhere = "";
        public long SocketDrops;
        public long BacklogDrops;
        public bool SenderRealtime;
        public int NoSwitchSeen;
        public List<double> IcmpSwitchUs = [];
        public List<double> UdpSwitchUs = [];
        public List<double> CallUs = [];

        /// <summary>Relay: from the conntrack cleanup's end to the call's return (records, events, drain start).</summary>
        public List<double> AfterUs = [];

        /// <summary>Relay: the re-point transaction; prototype: the <c>nft -f</c> process.</summary>
        public List<double> FirstStepUs = [];

        /// <summary>Relay: the conntrack cleanup; prototype: the <c>conntrack -D</c> process.</summary>
        public List<double> SecondStepUs = [];

        public string Summary() => string.Create(CultureInfo.InvariantCulture,
            $"{Migrations} migrations, {PingLost}/{PingSent} pings lost, UDP {UdpSent:N0} sent at {UdpRate:N0}/s, {UdpLost} lost or misdelivered ({NeverReceived} never received, {LateAtOld} late at old, {OldAfterNew} at old after new), max gap {MaxGapMs:F2} ms (sender {SenderMaxGapMs:F2} ms, max one-way delay {MaxDelayMs:F2} ms, GC pauses {GcPauseMs:F1} ms in {GcCount}; gap at {MaxGapWhere}; sender pause at {SenderMaxGapWhere}), switch p50 {Stats.Median(UdpSwitchUs):F0} us udp / {Stats.Median(IcmpSwitchUs):F0} us icmp, call p50 {Stats.Median(CallUs):F0} us");
    }

    private static Phase RunPhase(RelayNetwork net, InstanceInfo client, string service, int count, bool relayWay, Action<string> progress)
    {
        var phase = new Phase { Migrations = count };
        var vip = net.GetService(service).Vip4;
        var all = new List<UdpArrivalRecorder>();
        var recorders = new List<UdpArrivalRecorder>();
        var steps = new List<Step>();
        NamespacedProcess? ping = null;
        FixedRateUdpSender? sender = null;
        var file = Path.Combine(Path.GetTempPath(), $"relay-bench-{net.Name}-{service}.nft");
        // No blocking full GC while the stream runs: a GC suspends the sender thread too.
        var latencyMode = System.Runtime.GCSettings.LatencyMode;
        try
        {
            // Start from a compacted heap: the earlier experiments' garbage is not collected while
            // the stream runs.
            GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
            GC.WaitForPendingFinalizers();
            System.Runtime.GCSettings.LatencyMode = System.Runtime.GCLatencyMode.LowLatency;
            var current = net.AddInstance(service);
            var currentRecorder = new UdpArrivalRecorder(current.Namespace, UdpPort, current.Name);
            all.Add(currentRecorder);
            ping = net.Exec(client.Name, ["ping", "-f", "-q", vip.ToString()]);
            sender = new FixedRateUdpSender(client.Namespace, new IPEndPoint(vip, UdpPort), SourcePort, UdpRate);
            Thread.Sleep(300);

            // One migration is done first and not counted: the first call of each code path pays
            // for JIT compilation. Done the prototype's way, it also leaves the instance Relay still
            // believes in service behind, so every counted migration removes its old instance.
            MigrateOnce(measured: false);
            recorders.Add(currentRecorder);
            var offsetNs = Native.RealtimeMinusStopwatchNs();
            var gc0 = GC.GetTotalPauseDuration();
            var gcCount0 = GC.CollectionCount(0);
            var backlog0 = SoftnetDrops();
            var windowStart = Stopwatch.GetTimestamp();
            var seqBegin = sender.LastSent;
            for (var i = 1; i <= count; i++)
            {
                MigrateOnce(measured: true);
                if (i % 10 == 0)
                {
                    progress($"  {(relayWay ? "relay" : "prototype way")}: {i}/{count} migrations, so far p50 {Stats.Median(phase.CallUs):F0} us per call, echo switch {Stats.Median(phase.IcmpSwitchUs):F0} us");
                }
            }
            Thread.Sleep(100);
            var windowEnd = Stopwatch.GetTimestamp();
            var seqEnd = sender.LastSent;
            sender.Stop();
            // Let the last datagrams arrive, then stop ping while every instance still answers.
            Thread.Sleep(50);
            ping.Interrupt();
            ping.WaitForExitAsync().Wait(TimeSpan.FromSeconds(5));
            var match = Regex.Match(string.Join('\n', ping.RecentOutput()), @"(\d+) packets transmitted, (\d+) received");
            if (match.Success)
            {
                phase.PingSent = long.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture);
                phase.PingLost = phase.PingSent - long.Parse(match.Groups[2].Value, CultureInfo.InvariantCulture);
            }
            foreach (var r in all)
            {
                r.Stop();
            }
            phase.BacklogDrops = SoftnetDrops() - backlog0;
            phase.GcPauseMs = Math.Round((GC.GetTotalPauseDuration() - gc0).TotalMilliseconds, 1);
            phase.GcCount = GC.CollectionCount(0) - gcCount0;
            phase.SenderRealtime = sender.GotRealtime;
            // The realtime clock may be slewed a little meanwhile: use the mean offset.
            offsetNs = (offsetNs + Native.RealtimeMinusStopwatchNs()) / 2;
            Analyze(phase, recorders, steps, sender, seqBegin, seqEnd, windowStart, windowEnd, offsetNs);
            return phase;

            void MigrateOnce(bool measured)
            {
                var addStarted = Stopwatch.GetTimestamp();
                var fresh = net.AddInstance(service, new InstanceOptions { Standby = true });
                var addEnded = Stopwatch.GetTimestamp();
                var freshRecorder = new UdpArrivalRecorder(fresh.Namespace, UdpPort, fresh.Name);
                all.Add(freshRecorder);
                long seqBefore, called, started, returned, seqAfter;
                double first, second, after = double.NaN;
                Task? drained;
                using (var watcher = new IcmpEchoWatcher(fresh.Namespace))
                {
                    seqBefore = sender.LastSent;
                    called = Stopwatch.GetTimestamp();
                    if (relayWay)
                    {
                        var m = net.Migrate(service, current.Name, fresh.Name);
                        returned = Stopwatch.GetTimestamp();
                        seqAfter = sender.LastSent;
                        started = m.Started;
                        drained = m.Drained;
                        first = m.RepointTime.TotalMicroseconds;
                        second = Stopwatch.GetElapsedTime(m.Repointed, m.Cleaned).TotalMicroseconds;
                        after = Stopwatch.GetElapsedTime(m.Cleaned, returned).TotalMicroseconds;
                    }
                    else
                    {
                        // The prototype's way: rewrite the rule (here the service's one element) with
                        // an nft process, then flush the service's conntrack entries with another.
                        started = called;
                        File.WriteAllText(file, $"delete element {NftNames.QualifiedTable} {NftNames.Backends4} {{ {vip} . 0 }}\nadd element {NftNames.QualifiedTable} {NftNames.Backends4} {{ {vip} . 0 : {fresh.Address4} }}\n");
                        RunProcess(["ip", "netns", "exec", net.OrchestratorNamespace, "nft", "-f", file], 0);
                        var ruled = Stopwatch.GetTimestamp();
                        // Exit 1 when no entry matched: not an error here.
                        RunProcess(["ip", "netns", "exec", net.OrchestratorNamespace, "conntrack", "-D", "-d", vip.ToString()], 0, 1);
                        returned = Stopwatch.GetTimestamp();
                        seqAfter = sender.LastSent;
                        first = Stopwatch.GetElapsedTime(started, ruled).TotalMicroseconds;
                        second = Stopwatch.GetElapsedTime(ruled, returned).TotalMicroseconds;
                        // The element was changed behind Relay's back: to Relay the fresh instances
                        // are standby ones, which it removes as it removes Relay's old instances;
                        // the one it still believes in service (before the warm-up) stays.
                        drained = measured ? net.RemoveInstanceAsync(current.Name, TimeSpan.Zero) : null;
                    }
                    var echo = watcher.WaitFirst(TimeSpan.FromSeconds(2));
                    if (measured)
                    {
                        steps.Add(new Step(seqBefore, called, started, returned, seqAfter) { AddStarted = addStarted, AddEnded = addEnded });
                        phase.CallUs.Add(Stopwatch.GetElapsedTime(called, returned).TotalMicroseconds);
                        phase.FirstStepUs.Add(first);
                        phase.SecondStepUs.Add(second);
                        if (!double.IsNaN(after))
                        {
                            phase.AfterUs.Add(after);
                        }
                        if (echo == 0)
                        {
                            phase.NoSwitchSeen++;
                        }
                        else
                        {
                            phase.IcmpSwitchUs.Add(Stopwatch.GetElapsedTime(started, echo).TotalMicroseconds);
                        }
                    }
                }
                // The old instance is gone before the next migration starts, as after Relay's own
                // drain (no TCP flows: it stops at once). Then nothing can reach it any more: its
                // recorder takes what is queued and closes (its socket would keep the namespace alive).
                if (drained is not null && drained.Wait(TimeSpan.FromSeconds(10)))
                {
                    currentRecorder.Dispose();
                }
                if (measured)
                {
                    steps[^1].OldRemoved = Stopwatch.GetTimestamp();
                }
                if (measured)
                {
                    recorders.Add(freshRecorder);
                }
                current = fresh;
                currentRecorder = freshRecorder;
                Thread.Sleep(Settle);
            }
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
            foreach (var r in all)
            {
                r.Dispose();
            }
            File.Delete(file);
            System.Runtime.GCSettings.LatencyMode = latencyMode;
        }
    }

    /// <summary>
    /// Counts, for the stream's datagrams sent between the window's start and end:
    /// never received by any instance; received by an instance they must not reach (sent after the
    /// call returned, or before the call began, yet at another instance than the one in service);
    /// received by the old instance after the call returned (kernel receive time); received by the
    /// old instance although the new one already had an earlier one. Each datagram counts once.
    /// </summary>
    private static void Analyze(Phase phase, List<UdpArrivalRecorder> recorders, List<Step> steps, FixedRateUdpSender sender,
        long seqBegin, long seqEnd, long windowStart, long windowEnd, long offsetNs)
    {
        var n = (int)(seqEnd - seqBegin);
        var at = new int[n];
        Array.Fill(at, -1);
        var bad = new bool[n];
        var arrivals = new List<long>(n);
        long ToTicks(long realtimeNs) => (long)((realtimeNs - offsetNs) * (Stopwatch.Frequency / 1_000_000_000.0));
        for (var k = 0; k < recorders.Count; k++)
        {
            var seqs = recorders[k].Sequences;
            var times = recorders[k].Timestamps;
            phase.SocketDrops += recorders[k].SocketDrops;
            for (var j = 0; j < seqs.Length; j++)
            {
                var t = ToTicks(times[j]);
                if (t >= windowStart && t <= windowEnd)
                {
                    arrivals.Add(t);
                }
                var idx = seqs[j] - seqBegin - 1;
                if (idx >= 0 && idx < n)
                {
                    at[idx] = at[idx] == -1 ? k : -2; // -2: reached two instances (never expected)
                }
            }
        }
        void Expect(long fromSeq, long toSeq, int a, int b)
        {
            for (var s = Math.Max(fromSeq, seqBegin) + 1; s <= Math.Min(toSeq, seqEnd); s++)
            {
                var idx = (int)(s - seqBegin - 1);
                if (at[idx] == -1)
                {
                    phase.NeverReceived++;
                    bad[idx] = true;
                }
                else if (at[idx] != a && at[idx] != b)
                {
                    phase.WrongInstance++;
                    bad[idx] = true;
                }
            }
        }
        // Instance k is in service from migration k's return to migration k+1's call; during a
        // call a datagram may reach the old or the new instance.
        for (var k = 0; k <= steps.Count; k++)
        {
            var from = k == 0 ? seqBegin : steps[k - 1].SeqAfter;
            var to = k == steps.Count ? seqEnd : steps[k].SeqBefore;
            Expect(from, to, k, k);
            if (k < steps.Count)
            {
                Expect(steps[k].SeqBefore, steps[k].SeqAfter, k, k + 1);
            }
        }
        for (var i = 1; i <= steps.Count; i++)
        {
            var step = steps[i - 1];
            var old = recorders[i - 1];
            var fresh = recorders[i];
            var firstAtNew = long.MaxValue;
            var firstAtNewTime = long.MaxValue;
            for (var j = 0; j < fresh.Count; j++)
            {
                firstAtNew = Math.Min(firstAtNew, fresh.Sequences[j]);
                firstAtNewTime = Math.Min(firstAtNewTime, ToTicks(fresh.Timestamps[j]));
            }
            if (firstAtNewTime != long.MaxValue)
            {
                phase.UdpSwitchUs.Add(Stopwatch.GetElapsedTime(step.Started, firstAtNewTime).TotalMicroseconds);
            }
            else
            {
                phase.NoSwitchSeen++;
            }
            for (var j = 0; j < old.Count; j++)
            {
                var idx = old.Sequences[j] - seqBegin - 1;
                if (idx < 0 || idx >= n)
                {
                    continue;
                }
                if (ToTicks(old.Timestamps[j]) > step.Returned)
                {
                    phase.LateAtOld++;
                    bad[idx] = true;
                }
                else if (old.Sequences[j] > firstAtNew)
                {
                    phase.OldAfterNew++;
                    bad[idx] = true;
                }
            }
        }
        phase.UdpLost = bad.Count(b => b);
        // Losses are rare and the totals do not say where they were: name every run of lost
        // datagrams (the first ten) with the migration it followed, for whoever profiles it next.
        if (phase.NeverReceived > 0)
        {
            var runs = 0;
            for (var idx = 0; idx < n && runs < 10; idx++)
            {
                if (at[idx] != -1)
                {
                    continue;
                }
                var start = idx;
                while (idx < n && at[idx] == -1)
                {
                    idx++;
                }
                var seq0 = seqBegin + 1 + start;
                var step = steps.FindLastIndex(st => st.SeqBefore < seq0);
                var before = start > 0 ? at[start - 1] : -9;
                var after = idx < n ? at[idx] : -9;
                runs++;
                Console.Error.WriteLine($"  never received: seq {seq0}..{seqBegin + idx} ({idx - start}), after migration {step + 1} (seqBefore {(step >= 0 ? steps[step].SeqBefore : 0)}, seqAfter {(step >= 0 ? steps[step].SeqAfter : 0)}), received before by #{before}, after by #{after}");
            }
        }
        phase.UdpSent = n;
        phase.UdpRate = n / Stopwatch.GetElapsedTime(windowStart, windowEnd).TotalSeconds;

        // The longest silence at the receiving side, over all instances together.
        arrivals.Sort();
        long maxGap = 0, gapAt = windowStart;
        for (var j = 1; j < arrivals.Count; j++)
        {
            if (arrivals[j] - arrivals[j - 1] > maxGap)
            {
                maxGap = arrivals[j] - arrivals[j - 1];
                gapAt = arrivals[j - 1];
            }
        }
        phase.MaxGapMs = Math.Round(maxGap * 1000.0 / Stopwatch.Frequency, 3);
        phase.MaxGapWhere = Where(gapAt, steps);
        // The longest silence around each migration (from its call to the next one's), as a distribution.
        var perMigration = new List<double>();
        var cursor = 0;
        for (var i = 0; i < steps.Count; i++)
        {
            var until = i + 1 < steps.Count ? steps[i + 1].Called : windowEnd;
            while (cursor < arrivals.Count && arrivals[cursor] < steps[i].Called)
            {
                cursor++;
            }
            long worst = 0;
            for (var j = Math.Max(cursor, 1); j < arrivals.Count && arrivals[j] <= until; j++)
            {
                worst = Math.Max(worst, arrivals[j] - arrivals[j - 1]);
            }
            perMigration.Add(worst * 1000.0 / Stopwatch.Frequency);
        }
        phase.MigrationGapP50Ms = Stats.Median(perMigration);
        // The sender's own longest pause between two batches: a receiving gap no longer than this
        // may be the load generator's, not the data path's.
        long senderGap = 0, senderGapAt = windowStart;
        var batches = sender.Batches;
        for (var j = 1; j < batches.Count; j++)
        {
            if (batches[j].Timestamp >= windowStart && batches[j].Timestamp <= windowEnd && batches[j].Timestamp - batches[j - 1].Timestamp > senderGap)
            {
                senderGap = batches[j].Timestamp - batches[j - 1].Timestamp;
                senderGapAt = batches[j - 1].Timestamp;
            }
        }
        phase.SenderMaxGapMs = Math.Round(senderGap * 1000.0 / Stopwatch.Frequency, 3);
        phase.SenderMaxGapWhere = Where(senderGapAt, steps);
        // One-way delay of each datagram (kernel receive time minus the moment its batch was handed
        // to the kernel): the data path's own delay, free of the sender's pauses.
        long maxDelay = 0;
        var sendTime = new long[n];
        var b = 0;
        for (var idx = 0; idx < n; idx++)
        {
            var seq = seqBegin + 1 + idx;
            while (b < batches.Count && batches[b].Value < seq)
            {
                b++;
            }
            sendTime[idx] = b < batches.Count ? batches[b].Timestamp : long.MaxValue;
        }
        foreach (var r in recorders)
        {
            for (var j = 0; j < r.Count; j++)
            {
                var idx = r.Sequences[j] - seqBegin - 1;
                if (idx >= 0 && idx < n && sendTime[idx] != long.MaxValue)
                {
                    maxDelay = Math.Max(maxDelay, ToTicks(r.Timestamps[j]) - sendTime[idx]);
                }
            }
        }
        phase.MaxDelayMs = Math.Round(maxDelay * 1000.0 / Stopwatch.Frequency, 3);
    }

    /// <summary>Where <paramref name="t"/> falls in the sequence of migrations, in words.</summary>
    private static string Where(long t, List<Step> steps)
    {
        for (var i = steps.Count - 1; i >= 0; i--)
        {
            var st = steps[i];
            if (t < st.AddStarted)
            {
                continue;
            }
            var us = Stopwatch.GetElapsedTime(st.Called, t).TotalMicroseconds;
            var call = Stopwatch.GetElapsedTime(st.Called, st.Returned).TotalMicroseconds;
            var what = t < st.AddEnded ? "while its fresh instance was being created (`AddInstance`: namespace, veth, addresses)"
                : t < st.Called ? "just before its call"
                : t < st.Returned ? "during its call"
                : st.OldRemoved == 0 || t < st.OldRemoved ? "after its call returned, while the old instance was drained and removed"
                : "after the old instance was removed";
            return string.Create(CultureInfo.InvariantCulture, $"migration {i + 1}, {what}, {us:F0} us from the start of the call (which took {call:F0} us)");
        }
        return "before the first counted migration";
    }

    private static readonly string RecordDirectory = new NetworkOptions { Name = "default" }.RecordDirectory;

    /// <summary>The file system type of the mount holding <paramref name="path"/> (longest mount point that is a prefix).</summary>
    private static string FileSystemOf(string path)
    {
        var best = "";
        var type = "unknown";
        foreach (var line in ReadOrEmpty("/proc/mounts").Split('\n'))
        {
            var cols = line.Split(' ');
            if (cols.Length > 2 && (path == cols[1] || path.StartsWith(cols[1].TrimEnd('/') + "/", StringComparison.Ordinal)) && cols[1].Length >= best.Length)
            {
                best = cols[1];
                type = cols[2];
            }
        }
        return type;
    }

    private static string ReadOrEmpty(string path)
    {
        try
        {
            return File.ReadAllText(path).Trim();
        }
        catch (IOException)
        {
            return "";
        }
    }

    /// <summary>Packets the kernel dropped at its per-CPU input backlog (netdev_max_backlog), all CPUs.</summary>
    private static long SoftnetDrops()
    {
        long sum = 0;
        foreach (var line in File.ReadLines("/proc/net/softnet_stat"))
        {
            var cols = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (cols.Length > 1)
            {
                sum += long.Parse(cols[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            }
        }
        return sum;
    }

    private static void RunProcess(IReadOnlyList<string> command, params int[] okExitCodes)
    {
        var psi = new ProcessStartInfo(command[0]) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in command.Skip(1))
        {
            psi.ArgumentList.Add(a);
        }
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (!okExitCodes.Contains(p.ExitCode))
        {
            throw new InvalidOperationException($"'{string.Join(' ', command)}' failed (exit {p.ExitCode}): {err.Result.Trim()}");
        }
    }

    /// <summary>This experiment's section of docs/benchmarks.md.</summary>
    public static void Render(StringBuilder sb, MigrationBenchResult results, Charts charts)
    {
        _ = charts;
        var inv = CultureInfo.InvariantCulture;
        var m = results;
        sb.AppendLine("## Migration under `ping -f` and a 50,000/s UDP stream");
        sb.AppendLine();
        sb.AppendLine(string.Create(inv, $"A client instance floods the service's virtual IPv4 address with `ping -f` and, at the same time, with a fixed-rate UDP stream ({UdpRate:N0} datagrams/s of 64 bytes from ONE source port, so one conntrack entry; a sequence number in each; paced by the clock in `sendmmsg` batches every ~0.1 ms{(m.SenderRealtime ? " by a SCHED_FIFO thread" : "")}) while the service is moved to a fresh instance, again and again. Every backend instance receives the stream on a socket that records each datagram's sequence number and the kernel's receive time (`SO_TIMESTAMPNS`), so the counts are exact: *lost* = never reached any instance; *misdelivered* = reached the old instance after the migrate call returned, or after the new instance already had a later datagram, or reached an instance not in service. *Max gap* = the longest silence at the receiving side of the stream (all instances together) over all migrations: `ping -f` slows itself down when a reply is missing, the fixed-rate stream does not."));
        sb.AppendLine();
        sb.AppendLine("Relay's way: `RelayNetwork.Migrate` (the fresh instance created in standby; one re-point nft transaction through the libnftables context kept open; then exactly the stale ICMP/UDP conntrack entries deleted over ctnetlink; the old instance stops once drained). The prototype's way, on a second service of the same network: `ip netns exec ORCH nft -f FILE` replacing the service's element, then `ip netns exec ORCH conntrack -D -d VIP`, each a process; the old instance is removed afterwards as well. *Switch* (the goal's) = from the start of the change (for Relay: `MigrationResult.Started`, inside the call) to the kernel's receive time of the stream's first datagram at the new instance; the time to the first echo request, as a raw-socket watcher thread sees it (`IcmpEchoWatcher`, what `SwitchMeter` reports), is shown too and adds that thread's wake-up.");
        sb.AppendLine();
        sb.AppendLine("| | Relay | prototype's way (`nft -f` + `conntrack -D` processes) |");
        sb.AppendLine("|---|---:|---:|");
        void Row(string what, string relay, string proto) => sb.AppendLine($"| {what} | {relay} | {proto} |");
        Row("migrations", m.Migrations.ToString(inv), m.BaselineMigrations.ToString(inv));
        Row("pings lost / sent", string.Create(inv, $"**{m.PingLost}** / {m.PingSent:N0}"), string.Create(inv, $"**{m.BaselinePingLost}** / {m.BaselinePingSent:N0}"));
        Row("UDP datagrams sent (rate)", string.Create(inv, $"{m.UdpSent:N0} ({m.UdpRatePerSec:N0}/s)"), string.Create(inv, $"{m.BaselineUdpSent:N0} ({m.BaselineUdpRatePerSec:N0}/s)"));
        Row("UDP lost or misdelivered", string.Create(inv, $"**{m.UdpLost}**"), string.Create(inv, $"**{m.BaselineUdpLost}**"));
        Row("&nbsp;&nbsp;of which never received", m.UdpNeverReceived.ToString(inv), m.BaselineUdpNeverReceived.ToString(inv));
        Row("&nbsp;&nbsp;of which at the old instance after the call returned", m.UdpLateAtOld.ToString(inv), m.BaselineUdpLateAtOld.ToString(inv));
        Row("switch p50 / p99 (us): first datagram of the stream at the new instance, kernel time", string.Create(inv, $"**{m.SwitchP50Us:F0}** / {m.SwitchP99Us:F0}"), string.Create(inv, $"**{m.BaselineSwitchP50Us:F0}** / {m.BaselineSwitchP99Us:F0}"));
        Row("switch p50 / p99 (us): first echo request at the new instance, raw-socket watcher", string.Create(inv, $"{m.IcmpSwitchP50Us:F0} / {m.IcmpSwitchP99Us:F0}"), string.Create(inv, $"{m.BaselineIcmpSwitchP50Us:F0} / -"));
        Row("the change itself, p50 (us)", string.Create(inv, $"{m.CallP50Us:F0}: whole `Migrate` call (re-point transaction {m.RepointP50Us:F0}, conntrack cleanup {m.CleanupP50Us:F0}, after the switch: records, events, drain start {m.BookkeepingP50Us:F0})"), string.Create(inv, $"{m.BaselineCallP50Us:F0}: `nft -f` {m.BaselineNftP50Us:F0} + `conntrack -D` {m.BaselineConntrackP50Us:F0}"));
        Row("max gap at the receivers (ms)", string.Create(inv, $"**{m.MaxGapMs:F2}**"), string.Create(inv, $"**{m.BaselineMaxGapMs:F2}**"));
        Row("sender's own longest pause (ms)", string.Create(inv, $"{m.SenderMaxGapMs:F2}"), string.Create(inv, $"{m.BaselineSenderMaxGapMs:F2}"));
        Row("longest one-way delay of a datagram (ms)", string.Create(inv, $"{m.UdpMaxDelayMs:F2}"), string.Create(inv, $"{m.BaselineUdpMaxDelayMs:F2}"));
        Row("switches not seen (no echo request within 2 s, or no datagram at all)", m.NoSwitchSeen.ToString(inv), m.BaselineNoSwitchSeen.ToString(inv));
        sb.AppendLine();
        sb.AppendLine(string.Create(inv, $"- Switch p50: Relay **{m.BaselineSwitchP50Us / m.SwitchP50Us:F0} x** faster than the prototype's way, whose two processes cost {m.BaselineNftP50Us / 1000:F1} + {m.BaselineConntrackP50Us / 1000:F1} ms."));
        sb.AppendLine(string.Create(inv, $"- Relay's longest silence of the stream: {m.MaxGapWhere}; the longest silence per migration has p50 {m.MigrationGapP50Ms:F2} ms (the stream's own spacing: {1000.0 / UdpRate:F3} ms, in batches every ~0.1 ms). The sender's longest pause: {m.SenderMaxGapWhere}. The prototype's way: longest silence at {m.BaselineMaxGapWhere}; the sender's longest pause at {m.BaselineSenderMaxGapWhere}."));
        if (m.SenderMaxGapMs >= 0.8 * m.MaxGapMs && m.UdpMaxDelayMs < 0.5 * m.MaxGapMs)
        {
            sb.AppendLine(string.Create(inv, $"- The longest silence is the sender's, not the data path's: the sending thread itself paused {m.SenderMaxGapMs:F2} ms, while no datagram took more than {m.UdpMaxDelayMs:F2} ms from `sendmmsg` to the receiving namespace. On 2 cores even a SCHED_FIFO thread waits when the CPU it wakes on is in a long non-preemptible kernel path of another thread. Profiling these pauses while writing this benchmark (`perf sched timehist`, `perf record -g`) found one that comes with every migration: a full conntrack dump, in which the kernel's `ctnetlink_dump_table` walks all {m.ConntrackBuckets:N0} buckets of the host-wide table (`nf_conntrack_buckets`) under per-bucket spinlocks however few entries there are, {m.ConntrackDumpMs:F1} ms per dump in this run. Relay's drain does one right after each migration (`RelayNetwork.StartDrain` -> `DataplaneRuntime.FlowsTo` -> `ConntrackClient.List`, the check for stateless stragglers); the prototype's `conntrack -D` does one per call. It does not delay the switch (it comes after the call returned), but on a small machine it holds a CPU that long after every migration, whoever else wanted it.{(m.SenderMaxGapMs > 2 * m.ConntrackDumpMs + 1 ? " A pause much longer than one dump is other work on the machine (anything running alongside, or several such kernel paths in a row)." : "")}"));
        }
        else if (m.MaxGapMs > 1)
        {
            sb.AppendLine(string.Create(inv, $"- The longest silence is longer than the sender's own longest pause ({m.SenderMaxGapMs:F2} ms): datagrams were held or lost on the data path (longest one-way delay {m.UdpMaxDelayMs:F2} ms)."));
        }
        if (m.BookkeepingP50Us > 300)
        {
            var fs = FileSystemOf(RecordDirectory);
            sb.AppendLine(string.Create(inv, $"- `Migrate` returns {m.BookkeepingP50Us:F0} us (p50) after its conntrack cleanup, i.e. after the switch: mostly `RelayNetwork.Persist` -> `NetworkRecord.Save`, a write and a `rename(2)` over the previous record in {RecordDirectory} ({fs} here{(fs == "ext4" ? ", where replacing a file by rename starts its writeback: up to several ms per rename under `strace -T` while writing this benchmark" : "")}). It delays the return, not the switch."));
        }
        sb.AppendLine(string.Create(inv, $"- Kernel counters during Relay's migrations: {m.UdpSocketDrops} datagrams dropped by a receiving socket's full buffer, {m.BacklogDrops} packets dropped at a CPU's input backlog (host-wide). The bench process's GC paused it {m.GcPauseMs:F1} ms in {m.GcCount} collections during Relay's migrations, {m.BaselineGcPauseMs:F1} ms during the prototype's. Experiment time {m.DurationSeconds:F1} s."));
        sb.AppendLine();
        var met = m.PingLost == 0 && m.UdpLost == 0 && m.SwitchP50Us < 1000;
        sb.AppendLine($"Goal \"0 pings lost and 0 UDP datagrams lost or misdelivered over all migrations; switch p50 under 1 ms\": **{(met ? "met" : "missed")}**.");
        if (!met)
        {
            sb.AppendLine();
            foreach (var reason in Misses(m))
            {
                sb.AppendLine("- " + reason);
            }
        }
        sb.AppendLine();
    }

    private static IEnumerable<string> Misses(MigrationBenchResult m)
    {
        var inv = CultureInfo.InvariantCulture;
        if (m.PingLost > 0)
        {
            yield return string.Create(inv, $"{m.PingLost} pings lost over {m.Migrations} migrations (goal 0).");
        }
        if (m.UdpLost > 0)
        {
            yield return string.Create(inv, $"{m.UdpLost} UDP datagrams lost or misdelivered (goal 0): {m.UdpNeverReceived} never received, {m.UdpLateAtOld} reached the old instance after the call returned, {m.UdpOldAfterNew} reached the old instance after the new one had a later one, {m.UdpWrongInstance} reached an instance not in service; {m.UdpSocketDrops} receiving-socket drops and {m.BacklogDrops} input-backlog drops (host-wide) in the same time.");
        }
        if (!(m.SwitchP50Us < 1000))
        {
            yield return string.Create(inv, $"Switch p50 {m.SwitchP50Us:F0} us: {m.SwitchP50Us - 1000:F0} us over the 1 ms goal. Of it, the re-point transaction took {m.RepointP50Us:F0} us (p50: libnftables' `nft_run_cmd_from_buffer` and the kernel's `nf_tables_commit`) and the conntrack cleanup {m.CleanupP50Us:F0} us (ctnetlink deletes of the entries found in the event-fed index); the rest is the next datagram's way to the new instance, and waiting for a CPU on this 2-core machine busy with `ping -f` and the stream.");
        }
    }
}
