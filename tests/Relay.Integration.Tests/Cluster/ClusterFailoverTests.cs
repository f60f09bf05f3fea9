using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using Relay.Cluster.Lab;
using Relay.Integration.Tests.Daemon;
using Relay.Integration.Tests.Support;
using Relay.Linux.Namespaces;
using Xunit.Abstractions;
using static Relay.Integration.Tests.Cluster.ClusterDaemonTests;

namespace Relay.Integration.Tests.Cluster;

/// <summary>
/// What a node's daemon and a whole node going away do to traffic, on three lab hosts with real
/// daemons: a daemon killed and restarted takes its kernel over as it is; a lost node's instances
/// leave every balancer once its lease expires; a node that comes back converges.
/// </summary>
[Collection(HostStateCollection.Name)]
public sealed partial class ClusterFailoverTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Ttl = TimeSpan.FromSeconds(2);

    [Fact]
    public async Task Kill9OfADaemon_ChangesNothingInTheKernel_NodeLoss_FailsOverWithinTheLease_AndTheNodeReturnConverges()
    {
        var lab = await LabFixture.UpWithDaemonsAsync(Ttl);
        var h = lab.Hosts.Select(x => x.Name).ToArray();
        var orchestrator = $"relay-default@{h[0]}";
        var a = $"{orchestrator}.a-1";
        try
        {
            Ok(lab, 0, "service", "add", "a.com");
            Ok(lab, 0, "service", "add", "b.com");
            Ok(lab, 0, "instance", "add", "a.com");
            Ok(lab, 0, "instance", "add", "b.com", "--node", h[1]);
            Ok(lab, 0, "instance", "add", "b.com", "--node", h[2], "--", "sleep", "3600");
            // Not pinned (added on their own hosts, without --node), default restart policy: these
            // start again on a live node when theirs is lost.
            Ok(lab, 0, "service", "add", "c.com");
            Ok(lab, 1, "instance", "add", "c.com", "--", "sleep", "3600");
            Ok(lab, 2, "instance", "add", "c.com", "--", "sleep", "3600");
            Assert.Equal(0, Sh.InNs(a, "ping", "-c", "1", "-W", "2", "b.com").ExitCode);

            // 1. kill -9 of host 1's daemon under a ping through its kernel: nothing lost, and the
            // restarted daemon takes the kernel over without writing it (the same nft handles, the
            // same namespaces and links), nor the sleep of b-2 on host 3 when that daemon restarts.
            var before = Kernel(orchestrator, a);
            using (var ping = Process.Start(new ProcessStartInfo("ip", ["netns", "exec", a, "ping", "-i", "0.01", "-c", "300", "-W", "1", "b.com"]) { RedirectStandardOutput = true })!)
            {
                await Task.Delay(500);
                LabCluster.KillDaemon(lab.Hosts[0]);
                await Task.Delay(300);
                lab = await LabCluster.RestartDaemonAsync(lab, 0, DaemonBed.Binary, Ttl);
                var printed = await ping.StandardOutput.ReadToEndAsync();
                await ping.WaitForExitAsync();
                Assert.Contains("300 packets transmitted, 300 received", printed);
            }
            await LabFixture.Until(() => Ready(lab, 1, h[0]), TimeSpan.FromSeconds(10), "host 1 back as a ready node that applied the state");
            Assert.Equal(before, Kernel(orchestrator, a));
            var sleep = Pid(lab, 2, "b-2");
            Assert.NotNull(sleep);
            LabCluster.KillDaemon(lab.Hosts[2]);
            lab = await LabCluster.RestartDaemonAsync(lab, 2, DaemonBed.Binary, Ttl);
            await LabFixture.Until(() => Ready(lab, 0, h[2]), TimeSpan.FromSeconds(10), "host 3 back");
            Assert.Equal(sleep, Pid(lab, 2, "b-2"));

            // 2. Node loss (its daemon and its underlay link): a ping whose flow is on the lost
            // node's instance resumes on the other one within the lease TTL + 1 s.
            var vip = JsonDocument.Parse(Ok(lab, 0, "service", "ls", "-o", "json")).RootElement.EnumerateArray()
                .Single(x => x.GetProperty("name").GetString() == "b.com").GetProperty("vip4").GetString()!;
            // -n: no reverse lookup of a reply's (or an ICMP error's) source inside ping's send
            // loop. Without it, 2 of ~10 runs saw ping stop sending after the cut (its last reply
            // printed, then nothing for seconds, and no ICMP flow in conntrack): a resolver wait
            // in ping, not forwarding (suspected, see the issue note).
            using var failover = Process.Start(new ProcessStartInfo("ip", ["netns", "exec", a, "ping", "-4", "-n", "-D", "-i", "0.01", "-c", "6000", "-W", "1", "b.com"]) { RedirectStandardOutput = true })!;
            var lines = failover.StandardOutput.ReadToEndAsync();
            await Task.Delay(500);
            var backend = Backend(orchestrator, vip, failover.Id);
            var victim = Instances(lab, 0).Single(i => i.GetProperty("address4").GetString() == backend);
            var victimName = victim.GetProperty("name").GetString()!;
            var lost = Array.IndexOf(h, victim.GetProperty("node").GetString());
            output.WriteLine($"the ping's flow is on {victimName} at {backend}, on {h[lost]}: that node goes");
            var moving = Instances(lab, 0).Single(i => i.GetProperty("service").GetString() == "c.com" && i.GetProperty("node").GetString() == h[lost]).GetProperty("name").GetString()!;
            // The hard case on purpose: the lost node's etcd member leads, so an election comes on
            // top, and the new leader renews every lease for a full TTL (etcd's expiry alone took
            // 4.2 s with TTL 2 s then). The peers' heartbeat detector must hold the bound all the same.
            using (var etcd = LabCluster.Connect(lab, 0, TimeSpan.FromSeconds(2)))
            {
                await etcd.MoveLeaderAsync(lab.Hosts[lost].Etcd);
                var status = await etcd.MemberStatusAsync();
                var member = status.Single(x => x.Endpoint == lab.Hosts[lost].Etcd).Status!;
                Assert.Equal(member.Header.MemberId, member.Leader);
            }
            var bound = Ttl + TimeSpan.FromSeconds(1);
            var cut = DateTimeOffset.UtcNow;
            LabCluster.KillDaemon(lab.Hosts[lost]);
            LabCluster.SetLinkUp(lab, lab.Hosts[lost], up: false);
            // The ping runs until it is stopped (on a loaded machine the steps above take seconds; a
            // ping of fixed length could end before the cut): a bound's worth after the cut, then
            // SIGINT, and it prints what it got.
            await Task.Delay(bound + TimeSpan.FromSeconds(1));
            // Read while the ping still runs: a stopped ping's flow is not the ping's any more.
            var after = TryBackend(orchestrator, vip, failover.Id);
            Relay.Linux.Processes.Signals.Send(failover.Id, 2);
            await failover.WaitForExitAsync();
            if (after is null)
            {
                // Seen twice in ~10 runs: no ICMP flow at all in the orchestrator while the ping
                // runs. What ping printed is the evidence for the issue note.
                var printed = await lines;
                Assert.Fail($"no ICMP flow of the running ping {failover.Id} to {vip} for 2 s, {bound + TimeSpan.FromSeconds(1)} after the cut; ping's last lines: "
                    + string.Join(" | ", printed.Split('\n').TakeLast(12)) + " | conntrack: " + Sh.InNs(orchestrator, "conntrack", "-L").Stdout);
            }
            var gap = LongestSilence(await lines, cut);
            output.WriteLine($"longest silence after the cut: {gap.TotalMilliseconds:F0} ms (lease TTL {Ttl.TotalSeconds} s; its etcd member was the leader; bound {bound.TotalMilliseconds} ms)");
            // The requirement's bound. No lower bound: in full-suite runs the ping at times never
            // went silent although conntrack showed its flow on the lost node's instance (not
            // explained yet; see the issue note).
            Assert.InRange(gap, TimeSpan.Zero, bound);
            // Suspected by its peers' detector, or lost already (its lease expired).
            Assert.Contains(Nodes(lab, 0)[lost].GetProperty("state").GetString(), new[] { "suspect", "lost" });
            await LabFixture.Until(() => Nodes(lab, 0)[lost].GetProperty("state").GetString() == "lost", TimeSpan.FromSeconds(5), $"{h[lost]} lost once its lease expired");
            var other = Instances(lab, 0).Single(i => i.GetProperty("service").GetString() == "b.com" && i.GetProperty("name").GetString() != victimName);
            Assert.Equal(other.GetProperty("address4").GetString(), after);

            // The lost node's c.com instance starts again on the live node with the fewest instances
            // (host 1: a-1 only), with a new address from that node's block and its command running;
            // the pinned b.com instance stays where it was.
            await LabFixture.Until(() => Instances(lab, 0).Single(i => i.GetProperty("name").GetString() == moving) is var m
                && m.GetProperty("node").GetString() == h[0] && Pid(lab, 0, moving) is not null, TimeSpan.FromSeconds(5), $"{moving} of lost {h[lost]} started again on {h[0]}");
            var moved = Instances(lab, 0).Single(i => i.GetProperty("name").GetString() == moving);
            Assert.True(moved.GetProperty("inBalancer").GetBoolean(), moved.ToString());
            Assert.True(Netns.Exists($"{orchestrator}.{moving}"));
            Assert.Equal(h[lost], Instances(lab, 0).Single(i => i.GetProperty("name").GetString() == victimName).GetProperty("node").GetString());
            using (var cvip = JsonDocument.Parse(Ok(lab, 0, "service", "ls", "-o", "json")))
            {
                var c = cvip.RootElement.EnumerateArray().Single(x => x.GetProperty("name").GetString() == "c.com");
                Assert.Contains(moving, c.GetProperty("backends").EnumerateArray().Select(x => x.GetString()));
            }
            Assert.Equal(0, Sh.InNs(a, "ping", "-c", "1", "-W", "2", moved.GetProperty("address4").GetString()!).ExitCode);

            // 3. While it is away its instance is removed; when it returns it removes that
            // namespace, keeps its orchestrator, and is a ready node again.
            Ok(lab, 0, "instance", "rm", victimName, "--drain", "0s");
            var victimNamespace = $"relay-default@{h[lost]}.{victimName}";
            Assert.True(Netns.Exists(victimNamespace), "the lost node's kernel is nobody else's to change");
            LabCluster.SetLinkUp(lab, lab.Hosts[lost], up: true);
            lab = await LabCluster.RestartDaemonAsync(lab, lost, DaemonBed.Binary, Ttl);
            await LabFixture.Until(() => Ready(lab, 0, h[lost]), TimeSpan.FromSeconds(15), $"{h[lost]} back as a ready node");
            Assert.False(Netns.Exists(victimNamespace), victimNamespace + " is still there after its node returned");
            Assert.False(Netns.Exists($"relay-default@{h[lost]}.{moving}"), moving + " started again elsewhere, yet its old namespace is still on the returned node");
            Assert.Equal(h[0], Instances(lab, lost).Single(i => i.GetProperty("name").GetString() == moving).GetProperty("node").GetString());
            Assert.True(Netns.Exists($"relay-default@{h[lost]}"));
            Assert.Equal(0, Sh.InNs(a, "ping", "-c", "2", "-i", "0.2", "-W", "2", "b.com").ExitCode);
        }
        catch
        {
            // The daemons' logs go with the lab: keep them for whoever reads the failure.
            var keep = Path.Combine(Path.GetTempPath(), "relay-failover-logs", lab.Name);
            Directory.CreateDirectory(keep);
            foreach (var log in Directory.GetFiles(lab.Directory, "*.daemon.log"))
            {
                File.Copy(log, Path.Combine(keep, Path.GetFileName(log)), overwrite: true);
            }
            output.WriteLine("daemon logs kept in " + keep);
            throw;
        }
        finally
        {
            LabCluster.Down(lab, Relay.Engine.NetworkRecord.RemoveAll);
        }
        Assert.DoesNotContain(Netns.List(), n => n.Contains(lab.Name, StringComparison.Ordinal));
    }

    /// <summary>What a rewrite would change: the table with its handles, the namespaces' inodes, the links' indexes.</summary>
    private static string Kernel(string orchestrator, string instance)
    {
        // Every chain, rule, set and map with its handle (a rewrite renumbers them); counters and the
        // elements that traffic adds to dynamic sets move on their own.
        var listing = Sh.InNs(orchestrator, "nft", "-a", "list", "table", "inet", "relay").Stdout;
        var table = string.Join('\n', listing.Split('\n').Where(l => l.Contains("# handle", StringComparison.Ordinal)).Select(l => Counters().Replace(l, "counter")));
        var links = Sh.Run("ip", "-n", orchestrator, "-o", "link", "show").Stdout;
        var inodes = Sh.Run("stat", "-c", "%n %i", $"/run/netns/{orchestrator}", $"/run/netns/{instance}").Stdout;
        Assert.Contains("chain", table);
        return table + links + inodes;
    }

    /// <summary>
    /// The instance address the ICMP flow to <paramref name="vip"/> is translated to, from the
    /// orchestrator's conntrack table; looked for up to 2 s (a ping that has just started may not
    /// have sent yet: `ip netns exec`, then its DNS query).
    /// </summary>
    private static string Backend(string orchestrator, string vip, int pingPid)
        => TryBackend(orchestrator, vip, pingPid) ?? throw new Xunit.Sdk.XunitException(
            $"no ICMP flow of ping {pingPid} to {vip} for 2 s; every ICMP flow of {orchestrator}: {Sh.InNs(orchestrator, "conntrack", "-L", "-p", "icmp").Stdout}");

    private static string? TryBackend(string orchestrator, string vip, int pingPid)
    {
        // ping's ICMP id is its pid (16 bits): the flow of this ping, not of an earlier one.
        var id = (pingPid & 0xffff).ToString(CultureInfo.InvariantCulture);
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var entries = Sh.InNs(orchestrator, "conntrack", "-L", "-p", "icmp", "-d", vip);
            var m = ReplySource().Matches(entries.Stdout).FirstOrDefault(x => x.Groups[1].Value == id);
            if (m is not null)
            {
                return m.Groups[2].Value;
            }
            if (clock.Elapsed > TimeSpan.FromSeconds(2))
            {
                return null;
            }
            Thread.Sleep(50);
        }
    }

    private static TimeSpan LongestSilence(string pingOutput, DateTimeOffset cut)
    {
        var replies = PingReply().Matches(pingOutput)
            .Select(m => DateTimeOffset.FromUnixTimeMilliseconds((long)(double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) * 1000)))
            .ToList();
        var last = cut;
        var longest = TimeSpan.Zero;
        foreach (var t in replies.Where(t => t > cut.AddMilliseconds(-100)))
        {
            longest = t - last > longest ? t - last : longest;
            last = t;
        }
        Assert.True(replies.Count > 0 && replies[^1] > cut, "no reply after the node was cut");
        return longest;
    }

    private static bool Ready(LabRecord lab, int from, string node)
    {
        var nodes = Nodes(lab, from);
        var n = nodes.SingleOrDefault(x => x.GetProperty("name").GetString() == node);
        return n.ValueKind == JsonValueKind.Object && n.GetProperty("state").GetString() == "ready" && n.GetProperty("appliedRevision").GetInt64() > 0;
    }

    private static int? Pid(LabRecord lab, int host, string instance)
    {
        var i = Instances(lab, host).Single(x => x.GetProperty("name").GetString() == instance);
        return i.TryGetProperty("pid", out var pid) && pid.ValueKind == JsonValueKind.Number ? pid.GetInt32() : null;
    }
    [GeneratedRegex(@"counter packets \d+ bytes \d+")]
    private static partial Regex Counters();

    [GeneratedRegex(@"src=\S+\s+dst=\S+\s+type=8 code=0 id=(\d+)\s+src=(\S+)")]
    private static partial Regex ReplySource();

    [GeneratedRegex(@"^\[(\d+\.\d+)\] \d+ bytes from", RegexOptions.Multiline)]
    private static partial Regex PingReply();
}
