using System.Text.Json;
using Relay.Cluster.Lab;
using Relay.Integration.Tests.Daemon;
using Relay.Integration.Tests.Support;
using Xunit.Abstractions;
using static Relay.Integration.Tests.Cluster.ClusterDaemonTests;

namespace Relay.Integration.Tests.Cluster;

/// <summary><c>relay apply -f</c> on lab hosts: the single host's planner writing to the cluster, from any host.</summary>
[Collection(HostStateCollection.Name)]
public sealed class ClusterApplyTests(ITestOutputHelper output)
{
    private static string Desired(LabRecord lab, string bPolicy, params (string Name, int Host)[] b) => $"""
        services:
          - name: a.com
          - name: b.com
            policy: {bPolicy}
        instances:
          - service: a.com
            name: a-1
            node: {lab.Hosts[0].Name}
        {string.Concat(b.Select(x => $"""
          - service: b.com
            name: {x.Name}
            node: {lab.Hosts[x.Host].Name}

        """))}
        """;

    [Fact]
    public async Task Apply_OnAnyHost_PlacesInstancesOnTheirNodes_IsIdempotent_AppliesOnlyTheDifference_AndRefusesWhatItCannotDo_AndMigrateMovesOnlyFrom()
    {
        var lab = await LabFixture.UpWithDaemonsAsync(TimeSpan.FromSeconds(2));
        var dir = Path.Combine(lab.Directory, "apply");
        Directory.CreateDirectory(dir);
        string Write(string name, string text)
        {
            var path = Path.Combine(dir, name);
            File.WriteAllText(path, text);
            return path;
        }
        try
        {
            // From host 3, for instances on every host; the default network comes with it.
            var v1 = Write("v1.yaml", Desired(lab, "random", ("b-1", 1), ("b-2", 2)));
            Assert.Equal(["create instance a-1", "create instance b-1", "create instance b-2", "create network default", "create service a.com", "create service b.com"],
                Changed(Ok(lab, 2, "apply", "-f", v1, "-o", "json")));
            var instances = Instances(lab, 0);
            Assert.Equal(["a-1", "b-1", "b-2"], instances.Select(i => i.GetProperty("name").GetString()));
            Assert.Equal([lab.Hosts[0].Name, lab.Hosts[1].Name, lab.Hosts[2].Name], instances.Select(i => i.GetProperty("node").GetString()));
            var ping = Sh.InNs($"relay-default@{lab.Hosts[0].Name}.a-1", "ping", "-c", "2", "-i", "0.2", "-W", "2", "b.com");
            Assert.True(ping.ExitCode == 0, ping.Stdout + ping.Stderr);

            // The same file on another host: nothing to do.
            Assert.Contains("no changes", Ok(lab, 0, "apply", "-f", v1), StringComparison.Ordinal);

            // Edited: b.com's policy, b-2 goes, b-3 comes on host 1.
            var v2 = Write("v2.yaml", Desired(lab, "maglev", ("b-1", 1), ("b-3", 0)));
            Assert.Equal(["create instance b-3", "remove instance b-2", "update service b.com"], Changed(Ok(lab, 1, "apply", "-f", v2, "-o", "json")));
            using (var services = JsonDocument.Parse(Ok(lab, 2, "service", "ls", "-o", "json")))
            {
                Assert.Equal("maglev", services.RootElement.EnumerateArray().Single(s => s.GetProperty("name").GetString() == "b.com").GetProperty("policy").GetString());
            }
            await LabFixture.Until(() => Instances(lab, 2).All(i => i.GetProperty("name").GetString() != "b-2"), TimeSpan.FromSeconds(40), "b-2 drained and gone");
            Assert.Equal(lab.Hosts[0].Name, Instances(lab, 2).Single(i => i.GetProperty("name").GetString() == "b-3").GetProperty("node").GetString());

            // A file with a mistake (a node that is not there) is refused with its reason, and
            // nothing of it is applied: not the valid change of a-1 either.
            string WithCommand(string text, string seconds) => text.Replace($"name: a-1\n    node: {lab.Hosts[0].Name}", $"name: a-1\n    node: {lab.Hosts[0].Name}\n    command: [sleep, \"{seconds}\"]", StringComparison.Ordinal);
            var before = Ok(lab, 0, "instance", "ls", "-o", "json");
            var bad = Write("bad.yaml", WithCommand(Desired(lab, "round-robin", ("b-1", 1), ("b-3", 0)), "1000")
                + "  - service: b.com\n    name: b-9\n    node: nowhere\n");
            var r = Sh.Run(DaemonBed.Binary, "--socket", lab.Hosts[1].Socket, "apply", "-f", bad);
            output.WriteLine(r.Stderr);
            Assert.NotEqual(0, r.ExitCode);
            Assert.Contains("no live node 'nowhere'", r.Stderr, StringComparison.Ordinal);
            Assert.DoesNotContain("   at ", r.Stderr, StringComparison.Ordinal);
            Assert.Equal(before, Ok(lab, 0, "instance", "ls", "-o", "json"));
            using (var services = JsonDocument.Parse(Ok(lab, 2, "service", "ls", "-o", "json")))
            {
                Assert.Equal("maglev", services.RootElement.EnumerateArray().Single(s => s.GetProperty("name").GetString() == "b.com").GetProperty("policy").GetString());
            }

            // An instance changed in place, from another host: its node starts the new command in
            // the same namespace (same addresses, same flows), and stops the old one for the next.
            var a1 = $"relay-default@{lab.Hosts[0].Name}.a-1";
            var address = Instances(lab, 1).Single(i => i.GetProperty("name").GetString() == "a-1").GetProperty("address4").GetString();
            Assert.Equal(["update instance a-1"], Changed(Ok(lab, 1, "apply", "-f", Write("v3.yaml", WithCommand(Desired(lab, "maglev", ("b-1", 1), ("b-3", 0)), "1000")), "-o", "json")));
            Assert.Equal(["sleep 1000"], Commands(a1));
            // The next change also gives it a check, which its node starts (the verdict reaches every host).
            var v4 = WithCommand(Desired(lab, "maglev", ("b-1", 1), ("b-3", 0)), "2000").Replace("command: [sleep, \"2000\"]", "command: [sleep, \"2000\"]\n    health: { type: icmp, interval: 200ms }", StringComparison.Ordinal);
            Assert.Equal(["update instance a-1"], Changed(Ok(lab, 2, "apply", "-f", Write("v4.yaml", v4), "-o", "json")));
            await LabFixture.Until(() => Commands(a1).SequenceEqual(["sleep 2000"]), TimeSpan.FromSeconds(5), "only the new command runs in a-1");
            await LabFixture.Until(() => Instances(lab, 1).Single(i => i.GetProperty("name").GetString() == "a-1").GetProperty("health").GetString() == "healthy", TimeSpan.FromSeconds(10), "a-1's new check says healthy on host 2");
            Assert.Equal(address, Instances(lab, 0).Single(i => i.GetProperty("name").GetString() == "a-1").GetProperty("address4").GetString());
            ping = Sh.InNs(a1, "ping", "-c", "2", "-i", "0.2", "-W", "2", "b.com");
            Assert.True(ping.ExitCode == 0, ping.Stdout + ping.Stderr);

            // A migration with --from among two active instances moves that one only, into its
            // slot (the single host's rule): b-3 stays in the balancer.
            Ok(lab, 1, "instance", "add", "b.com", "--name", "b-4", "--standby", "--node", lab.Hosts[2].Name);
            Ok(lab, 0, "migrate", "b.com", "--from", "b-1", "--to", "b-4");
            using (var services = JsonDocument.Parse(Ok(lab, 2, "service", "ls", "-o", "json")))
            {
                var b = services.RootElement.EnumerateArray().Single(s => s.GetProperty("name").GetString() == "b.com");
                Assert.Equal(["b-4", "b-3"], b.GetProperty("backends").EnumerateArray().Select(x => x.GetString()));
            }
            // b-1 drains (gone already when it had no TCP flow); b-3 was not touched.
            var left = Instances(lab, 0);
            Assert.DoesNotContain(left, i => i.GetProperty("name").GetString() == "b-1" && i.GetProperty("state").GetString() != "draining");
            Assert.Equal("active", left.Single(i => i.GetProperty("name").GetString() == "b-3").GetProperty("state").GetString());
        }
        finally
        {
            LabCluster.Down(lab, Relay.Engine.NetworkRecord.RemoveAll);
        }
    }

    /// <summary>The command lines of the processes in a network namespace.</summary>
    private static string[] Commands(string netns)
    {
        var pids = Sh.Run("ip", "netns", "pids", netns).Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        return [.. pids.Select(p => { try { return File.ReadAllText($"/proc/{p}/cmdline").Replace('\0', ' ').Trim(); } catch (IOException) { return ""; } })
            .Where(c => c.Length > 0).Order(StringComparer.Ordinal)];
    }

    private static string[] Changed(string json)
    {
        using var doc = JsonDocument.Parse(json);
        return [.. doc.RootElement.GetProperty("steps").EnumerateArray()
            .Where(s => s.GetProperty("action").GetString() != "unchanged")
            .Select(s => $"{s.GetProperty("action").GetString()} {s.GetProperty("kind").GetString()} {s.GetProperty("name").GetString()}")
            .Order(StringComparer.Ordinal)];
    }
}
