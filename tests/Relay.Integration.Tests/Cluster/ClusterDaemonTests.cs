using System.Diagnostics;
using System.Text.Json;
using Relay.Cluster.Lab;
using Relay.Integration.Tests.Daemon;
using Relay.Integration.Tests.Support;
using Relay.Linux.Namespaces;
using Xunit.Abstractions;

namespace Relay.Integration.Tests.Cluster;

/// <summary>
/// Real relay daemons on three lab hosts, joined as nodes through the lab's etcd cluster, driven
/// with the built relay binary as a user would (<c>--socket</c> picks the host).
/// </summary>
// Lab processes (etcd, daemons) start through `ip netns exec` while other tests add and delete
// namespaces: run them apart from the parallel tests.
[Collection(HostStateCollection.Name)]
public sealed class ClusterDaemonTests(ITestOutputHelper output)
{
    [Fact]
    public async Task LabDaemons_ShareOneNetwork_PingByNameAcrossHosts_MigrateAcrossHostsWithNothingLost_AndSeeANodeGo()
    {
        var lab = await LabFixture.UpWithDaemonsAsync(TimeSpan.FromSeconds(2));
        string[] orchestrators = [.. lab.Hosts.Select(h => $"relay-default@{h.Name}")];
        try
        {
            var nodes = Nodes(lab, 0);
            Assert.Equal(lab.Hosts.Select(h => h.Name), nodes.Select(n => n.GetProperty("name").GetString()));
            Assert.All(nodes, n => Assert.Equal("ready", n.GetProperty("state").GetString()));
            Assert.True(nodes[0].GetProperty("self").GetBoolean());
            Assert.Equal(lab.Hosts[1].Underlay4, nodes[1].GetProperty("underlay").GetString());

            using (var status = JsonDocument.Parse(Ok(lab, 1, "status", "-o", "json")))
            {
                var cluster = status.RootElement.GetProperty("cluster");
                Assert.Equal(lab.Hosts[1].Name, cluster.GetProperty("node").GetString());
                Assert.True(cluster.GetProperty("watchConnected").GetBoolean());
                var members = cluster.GetProperty("members").EnumerateArray().ToList();
                Assert.Equal(3, members.Count);
                Assert.Single(members, m => m.GetProperty("leader").GetBoolean());
            }

            // One network across the hosts: a service added on one host is every host's; instances
            // run where --node says, their namespaces carry the node's name.
            Ok(lab, 0, "service", "add", "a.com");
            Ok(lab, 1, "service", "add", "b.com");
            Ok(lab, 0, "instance", "add", "a.com");
            Ok(lab, 0, "instance", "add", "b.com", "--node", lab.Hosts[1].Name);
            Ok(lab, 1, "instance", "add", "b.com", "--node", lab.Hosts[2].Name, "--standby");
            var instances = Instances(lab, 2);
            Assert.Equal(["a-1", "b-1", "b-2"], instances.Select(i => i.GetProperty("name").GetString()));
            Assert.Equal([lab.Hosts[0].Name, lab.Hosts[1].Name, lab.Hosts[2].Name], instances.Select(i => i.GetProperty("node").GetString()));
            Assert.All(orchestrators, o => Assert.True(Netns.Exists(o), o));
            var a = instances[0].GetProperty("namespace").GetString()!;
            Assert.Equal($"relay-default@{lab.Hosts[0].Name}.a-1", a);
            Assert.True(Netns.Exists(a));
            Assert.Equal([1, 1, 1], Nodes(lab, 0).Select(n => n.GetProperty("instances").GetInt32()));

            // By name from host 1 to the instance on host 2, IPv4 and IPv6, through the node's DNS.
            using (var service = JsonDocument.Parse(Ok(lab, 2, "service", "ls", "-o", "json")))
            {
                var vip = service.RootElement.EnumerateArray().Single(x => x.GetProperty("name").GetString() == "b.com").GetProperty("vip4").GetString();
                Assert.Equal(vip, Sh.InNs(a, "dig", "+short", "b.com", "A").Stdout.Trim());
            }
            Assert.Equal(0, Sh.InNs(a, "ping", "-c", "2", "-i", "0.2", "-W", "2", "b.com").ExitCode);
            Assert.Equal(0, Sh.InNs(a, "ping", "-6", "-c", "2", "-i", "0.2", "-W", "2", "b.com").ExitCode);

            // relay migrate on a third host moves the running ping to host 3's instance: the call
            // returns when every node applied it; nothing is lost; the old instance drains and goes.
            using (var ping = Process.Start(new ProcessStartInfo("ip", ["netns", "exec", a, "ping", "-i", "0.01", "-c", "300", "-W", "1", "b.com"]) { RedirectStandardOutput = true })!)
            {
                Thread.Sleep(800);
                using var migrated = JsonDocument.Parse(Ok(lab, 2, "migrate", "b.com", "--to", "b-2", "-o", "json"));
                Assert.False(migrated.RootElement.TryGetProperty("notApplied", out _), migrated.RootElement.ToString());
                Assert.Equal("b-1", migrated.RootElement.GetProperty("from").GetString());
                var revision = migrated.RootElement.GetProperty("revision").GetInt64();
                Assert.All(Nodes(lab, 1), n => Assert.True(n.GetProperty("appliedRevision").GetInt64() >= revision, n.ToString()));
                using (var svc = JsonDocument.Parse(Ok(lab, 0, "service", "ls", "-o", "json")))
                {
                    var b = svc.RootElement.EnumerateArray().Single(x => x.GetProperty("name").GetString() == "b.com");
                    Assert.Equal(["b-2"], b.GetProperty("backends").EnumerateArray().Select(x => x.GetString()));
                }
                // No TCP flow holds b-1: its node removes it at the next look.
                var drain = Stopwatch.StartNew();
                while (Instances(lab, 0).Any(i => i.GetProperty("name").GetString() == "b-1"))
                {
                    Assert.True(drain.Elapsed < TimeSpan.FromSeconds(5), "b-1 still there 5 s after the migration, with no TCP flow to drain");
                    await Task.Delay(50);
                }
                var oldNamespace = $"relay-default@{lab.Hosts[1].Name}.b-1";
                while (Netns.Exists(oldNamespace))
                {
                    Assert.True(drain.Elapsed < TimeSpan.FromSeconds(8), oldNamespace + " still there");
                    await Task.Delay(50);
                }
                var printed = ping.StandardOutput.ReadToEnd();
                ping.WaitForExit();
                Assert.Contains("300 packets transmitted, 300 received", printed);
            }

            // A mistake is an error with the cause, and changes nothing.
            var bad = Sh.Run(DaemonBed.Binary, "--socket", lab.Hosts[0].Socket, "instance", "add", "b.com", "--node", "nowhere");
            Assert.Equal(1, bad.ExitCode);
            Assert.Contains("no live node 'nowhere'", bad.Stderr);
            Assert.Equal(2, Instances(lab, 1).Count);

            // 3,000 UDP flows from host 1 spread over s.com's instances on the three hosts: a third
            // each (+/- 5 points), local and remote ones alike.
            Ok(lab, 0, "service", "add", "s.com");
            foreach (var host in lab.Hosts)
            {
                Ok(lab, 0, "instance", "add", "s.com", "--node", host.Name);
            }
            var spread = Instances(lab, 0).Where(i => i.GetProperty("service").GetString() == "s.com").ToArray();
            Assert.Equal(lab.Hosts.Select(h => h.Name), spread.Select(i => i.GetProperty("node").GetString()));
            var sinks = spread.Select(i => new Relay.Engine.Probes.UdpSink(i.GetProperty("namespace").GetString()!, System.Net.Sockets.AddressFamily.InterNetwork, 9000)).ToArray();
            try
            {
                var vip4 = JsonDocument.Parse(Ok(lab, 0, "service", "ls", "-o", "json")).RootElement.EnumerateArray()
                    .Single(x => x.GetProperty("name").GetString() == "s.com").GetProperty("vip4").GetString()!;
                var senders = Relay.Engine.Probes.NsSockets.ManyUdp(a, System.Net.Sockets.AddressFamily.InterNetwork, 3000);
                try
                {
                    var to = new System.Net.IPEndPoint(System.Net.IPAddress.Parse(vip4), 9000);
                    for (var i = 0; i < senders.Length; i++)
                    {
                        senders[i].SendTo(new byte[8], to);
                        if (i % 100 == 99)
                        {
                            await Task.Delay(2); // paced: the test is about where flows go, not buffer sizes
                        }
                    }
                    var received = Stopwatch.StartNew();
                    while (sinks.Sum(k => k.Count) < 3000 && received.Elapsed < TimeSpan.FromSeconds(10))
                    {
                        await Task.Delay(50);
                    }
                }
                finally
                {
                    Array.ForEach(senders, x => x.Dispose());
                }
                var counts = sinks.Select(k => k.Count).ToArray();
                Assert.True(counts.Sum() == 3000, $"received {string.Join(" + ", counts)} of 3000");
                Assert.All(counts, c => Assert.True(Math.Abs(c / 3000.0 - 1 / 3.0) <= 0.05, $"shares over the three hosts: {string.Join(", ", counts)}"));
            }
            finally
            {
                Array.ForEach(sinks, x => x.Dispose());
            }

            // Quorum lost (two of the three members stop answering): a ping across hosts goes on
            // with the last known state, a change is a clear error that changes nothing, and
            // changes work again once the quorum is back.
            using (var ping = Process.Start(new ProcessStartInfo("ip", ["netns", "exec", a, "ping", "-4", "-D", "-i", "0.01", "-c", "600", "-W", "1", "b.com"]) { RedirectStandardOutput = true })!)
            {
                await Task.Delay(300);
                LabCluster.PauseMember(lab.Hosts[1], pause: true);
                LabCluster.PauseMember(lab.Hosts[2], pause: true);
                Sh.Result refused;
                var paused = DateTimeOffset.UtcNow;
                var refusing = Stopwatch.StartNew();
                try
                {
                    refused = Sh.Run(DaemonBed.Binary, "--socket", lab.Hosts[0].Socket, "service", "add", "q.com");
                }
                finally
                {
                    LabCluster.PauseMember(lab.Hosts[1], pause: false);
                    LabCluster.PauseMember(lab.Hosts[2], pause: false);
                }
                var resumed = DateTimeOffset.UtcNow;
                output.WriteLine($"without quorum: exit {refused.ExitCode} after {refusing.ElapsedMilliseconds} ms: {refused.Stderr.Trim()}");
                Assert.Equal(2, refused.ExitCode);
                Assert.Contains("cluster store unavailable", refused.Stderr);
                Assert.DoesNotContain("   at ", refused.Stderr);
                var printed = await ping.StandardOutput.ReadToEndAsync();
                await ping.WaitForExitAsync();
                // Forwarding goes on while the store is away: replies all through the outage.
                var replies = System.Text.RegularExpressions.Regex.Matches(printed, @"^\[(\d+\.\d+)\] \d+ bytes from", System.Text.RegularExpressions.RegexOptions.Multiline)
                    .Select(m => DateTimeOffset.FromUnixTimeMilliseconds((long)(double.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) * 1000)))
                    .Where(t => t >= paused && t <= resumed).ToList();
                var longest = replies.Zip(replies.Skip(1), (x, y) => y - x).DefaultIfEmpty(TimeSpan.MaxValue).Max();
                var summary = printed.Split('\n').FirstOrDefault(l => l.Contains("packets transmitted", StringComparison.Ordinal));
                output.WriteLine($"ping through the outage ({(resumed - paused).TotalMilliseconds:F0} ms): {replies.Count} replies, longest gap {longest.TotalMilliseconds:F0} ms; whole ping: {summary}");
                Assert.True(replies.Count > 0 && longest < TimeSpan.FromMilliseconds(500), $"forwarding stopped while the store was away: {replies.Count} replies, longest gap {longest}; {summary}");
            }
            var back = Stopwatch.StartNew();
            while (Sh.Run(DaemonBed.Binary, "--socket", lab.Hosts[0].Socket, "service", "ls", "-o", "json").Stdout.Contains("q.com", StringComparison.Ordinal) is false
                && Sh.Run(DaemonBed.Binary, "--socket", lab.Hosts[0].Socket, "service", "add", "q.com").ExitCode != 0)
            {
                Assert.True(back.Elapsed < TimeSpan.FromSeconds(15), "changes still fail 15 s after the quorum came back");
                await Task.Delay(200);
            }
            Assert.All(Nodes(lab, 0), n => Assert.Equal("ready", n.GetProperty("state").GetString()));

            // A node whose daemon dies is seen to go by the others once its lease expires: the TTL,
            // etcd's 500 ms expiry sweep, the watch, and the poll that saw it (a CLI call). A leader
            // elected meanwhile (the quorum just came back) renews every lease for a full TTL, so
            // that comes on top when the leader changed.
            var termBefore = await RaftTerm(lab);
            LabCluster.KillDaemon(lab.Hosts[2]);
            var clock = Stopwatch.StartNew();
            var poll = TimeSpan.Zero;
            while (true)
            {
                var asked = clock.Elapsed;
                var lost = Nodes(lab, 0)[2].GetProperty("state").GetString() == "lost";
                poll = clock.Elapsed - asked;
                if (lost)
                {
                    break;
                }
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(8), "node 3 still ready 8 s after its daemon was killed (lease TTL 2 s)");
                await Task.Delay(100);
            }
            var seen = clock.Elapsed;
            var elected = await RaftTerm(lab) != termBefore;
            var bound = TimeSpan.FromSeconds(2) + TimeSpan.FromSeconds(1) + poll + (elected ? TimeSpan.FromSeconds(2 + 1) : TimeSpan.Zero);
            output.WriteLine($"node 3 seen lost after {seen.TotalMilliseconds:F0} ms (its last poll took {poll.TotalMilliseconds:F0} ms; {(elected ? "an election came between" : "no election")}; bound {bound.TotalMilliseconds:F0} ms)");
            Assert.InRange(seen, TimeSpan.Zero, bound);
        }
        finally
        {
            LabCluster.Down(lab, Relay.Engine.NetworkRecord.RemoveAll);
        }
        Assert.All(orchestrators, o => Assert.False(Netns.Exists(o), o + " left behind"));
        Assert.DoesNotContain(Netns.List(), n => n.Contains(lab.Name, StringComparison.Ordinal));
    }

    [Fact]
    public void Daemon_WithBadClusterOptions_ListsEveryErrorAndStartsNothing()
    {
        var socket = Path.Combine(Path.GetTempPath(), LabFixture.UniqueName() + ".sock");
        var r = Sh.Run(DaemonBed.Binary, "daemon", "--socket", socket, "--etcd", "etcd.example:2379", "--underlay", "not-an-address", "--lease-ttl", "0s");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("--etcd[0]", r.Stderr);
        Assert.Contains("--node", r.Stderr);
        Assert.Contains("--underlay", r.Stderr);
        Assert.Contains("--lease-ttl", r.Stderr);
        Assert.DoesNotContain("   at ", r.Stderr);
        Assert.False(File.Exists(socket));
    }

    [Fact]
    public void Daemon_WithAConfigFile_ReportsItsMistakesWithLines_AndItsValuesAreCheckedAsFlagsAre()
    {
        var name = LabFixture.UniqueName();
        var socket = Path.Combine(Path.GetTempPath(), name + ".sock");
        var file = Path.Combine(Path.GetTempPath(), name + ".yaml");
        try
        {
            // The file's shape: every mistake, with its line, and nothing starts.
            File.WriteAllText(file, $"socket: {socket}\nnod: host1\netcd: [http://198.18.0.1:2379, [x]]\n");
            var r = Sh.Run(DaemonBed.Binary, "daemon", "--config", file);
            Assert.Equal(1, r.ExitCode);
            Assert.Contains($"{name}.yaml:2:1: nod: unknown setting (did you mean 'node'?)", r.Stderr);
            Assert.Contains($"{name}.yaml:3:", r.Stderr);
            Assert.Contains("2 errors", r.Stderr);
            Assert.DoesNotContain("   at ", r.Stderr);

            // Its values go through the daemon's own checks; a flag wins over the file.
            File.WriteAllText(file, $"socket: {socket}\netcd: etcd.example:2379\nunderlay: not-an-address\nleaseTtl: 0s\n");
            r = Sh.Run(DaemonBed.Binary, "daemon", "--config", file, "--lease-ttl", "3s");
            Assert.Equal(1, r.ExitCode);
            Assert.Contains("--etcd[0]", r.Stderr);
            Assert.Contains("--node", r.Stderr);
            Assert.Contains("--underlay", r.Stderr);
            Assert.DoesNotContain("lease", r.Stderr, StringComparison.OrdinalIgnoreCase);
            Assert.False(File.Exists(socket));

            r = Sh.Run(DaemonBed.Binary, "daemon", "--config", file + ".missing");
            Assert.Equal(1, r.ExitCode);
            Assert.Contains("no file", r.Stderr);
        }
        finally
        {
            File.Delete(file);
        }
    }

    internal static List<JsonElement> Instances(LabRecord lab, int host)
    {
        using var doc = JsonDocument.Parse(Ok(lab, host, "instance", "ls", "-o", "json"));
        return doc.RootElement.EnumerateArray().Select(e => e.Clone()).OrderBy(e => e.GetProperty("name").GetString(), StringComparer.Ordinal).ToList();
    }

    /// <summary>The etcd cluster's raft term: it changes with every election.</summary>
    private static async Task<ulong> RaftTerm(LabRecord lab)
    {
        using var etcd = LabCluster.Connect(lab, 0, TimeSpan.FromSeconds(2));
        var status = await etcd.MemberStatusAsync();
        return status.Select(x => x.Status?.RaftTerm ?? 0).Max();
    }

    internal static List<JsonElement> Nodes(LabRecord lab, int host)
    {
        using var doc = JsonDocument.Parse(Ok(lab, host, "node", "ls", "-o", "json"));
        return doc.RootElement.EnumerateArray().Select(e => e.Clone()).ToList();
    }

    internal static string Ok(LabRecord lab, int host, params string[] args)
    {
        var r = Sh.Run(DaemonBed.Binary, ["--socket", lab.Hosts[host].Socket, .. args]);
        Assert.True(r.ExitCode == 0, $"relay {string.Join(' ', args)} on {lab.Hosts[host].Name} exited {r.ExitCode}: {r.Stderr}{r.Stdout}");
        return r.Stdout;
    }
}
