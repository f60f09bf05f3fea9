using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.RegularExpressions;
using Relay.Cli.Client;
using Relay.Cli.Output;
using Relay.Cluster.Lab;
using Relay.Daemon.Api;
using Relay.Engine;
using Relay.Engine.Api;
using Relay.Engine.Probes;
using Relay.Linux.Processes;

namespace Relay.Cli.Demo;

/// <summary>
/// The one line of JSON the cluster demo ends with: the seed demo's fields (but those of a.com's
/// own moves, which this demo does not make), plus the hosts and the fail-over's.
/// </summary>
internal sealed record ClusterDemoSummary(
    int Hosts,
    long Sent,
    long Received,
    long Lost,
    int Migrations,
    double? SwitchP50Us,
    double? SwitchP99Us,
    double? RepointP50Us,
    double? RepointP99Us,
    long UdpSent,
    long UdpReceived,
    long UdpLost,
    int SpreadFlows,
    IReadOnlyDictionary<string, long> Spread,
    string LostHost,
    double? FailoverMs,
    long FailoverPingsLost,
    double LeaseTtlSeconds);

/// <summary>
/// The seed scenario across a lab of simulated hosts (<c>relay demo --hosts 3</c>), driven through
/// host 1's API as <c>relay</c> would: a.com on host 1 pings b.com by name while b.com moves between
/// instances on hosts 2 and 3; c.com on host 3 sends UDP from a fixed port to a.com (two instances on
/// host 1, reached over VXLAN); halfway, host 2 is lost (its daemon, its etcd member and its
/// underlay link) while b.com's instance there answers the ping, and the ping fails over to a
/// second instance on host 3; the remaining moves go between the live hosts. The lab is removed at
/// the end, whatever happened.
/// </summary>
internal sealed class ClusterDemo(int hosts, int migrations, TimeSpan pause, TextWriter output)
{
    private const string LabName = "demo";
    private const int UdpPort = 9000;
    private const int FixedSourcePort = 40000;
    private static readonly TimeSpan Ttl = TimeSpan.FromSeconds(3);

    public async Task<int> RunAsync(CancellationToken ct)
    {
        if (LabCluster.Find(LabName) is { } earlier)
        {
            // An earlier demo that was killed: its record says what it made.
            Say($"removing the lab an earlier demo left ({string.Join(", ", LabCluster.Down(earlier, NetworkRecord.RemoveAll).Take(3))}, ...)");
        }
        var lab = await LabCluster.UpAsync(new LabOptions { Name = LabName, Hosts = hosts, RelayBinary = Environment.ProcessPath, LeaseTtl = Ttl },
            m => Say("lab: " + m), ct).ConfigureAwait(false);
        var sinks = new Dictionary<string, UdpSink>(StringComparer.Ordinal);
        try
        {
            var h = lab.Hosts.Select(x => x.Name).ToArray();
            using var api = new RelayClient(lab.Hosts[0].Socket);
            const string N = "v1/networks/default";
            await api.PostAsync<NetworkSummary>("v1/networks", new NetworkSpec { Name = "default" }, ct).ConfigureAwait(false);
            foreach (var s in new[] { "a.com", "b.com", "c.com" })
            {
                await api.PostAsync<ServiceInfo>($"{N}/services", new ServiceSpec { Name = s }, ct).ConfigureAwait(false);
            }
            async Task<InstanceInfo> Add(string service, string node, bool standby = false)
                => await api.PostAsync<InstanceInfo>($"{N}/instances", new InstanceSpec { Service = service, Node = node, Standby = standby ? true : null }, ct).ConfigureAwait(false);
            var pinger = await Add("a.com", h[0]).ConfigureAwait(false);
            var a2 = await Add("a.com", h[0]).ConfigureAwait(false);
            var current = await Add("b.com", h[1]).ConfigureAwait(false);
            var c1 = await Add("c.com", h[2]).ConfigureAwait(false);
            var services = await api.GetAsync<ServiceInfo[]>($"{N}/services", ct).ConfigureAwait(false);
            var instances = await api.GetAsync<InstanceInfo[]>($"{N}/instances", ct).ConfigureAwait(false);
            output.WriteLine();
            TableWriter.Write(output, ["service", "virtual ipv4", "virtual ipv6", "instances"],
                services.Select(s => (IReadOnlyList<string>)[s.Name, s.Vip4.ToString(), s.Vip6.ToString(), string.Join(", ", s.Backends)]));
            output.WriteLine();
            TableWriter.Write(output, ["instance", "service", "node", "namespace", "ipv4"],
                instances.Select(i => (IReadOnlyList<string>)[i.Name, i.Service, i.Node ?? "-", i.Namespace, i.Address4.ToString()]));
            output.WriteLine();
            var a = services.Single(s => s.Name == "a.com");
            foreach (var i in new[] { pinger, a2 })
            {
                sinks[i.Name] = new UdpSink(i.Namespace, AddressFamily.InterNetwork, UdpPort);
            }

            // Spread: 300 short flows from host 3 to a.com's two instances on host 1, over VXLAN.
            var spread = DemoTraffic.Spread(c1.Namespace, new IPEndPoint(a.Vip4, UdpPort), 300, sinks);
            Say($"spread: 300 UDP flows from c.com on {h[2]} to a.com ({a.Vip4}): " + string.Join(", ", spread.Select(kv => $"{kv.Key} {kv.Value}")));
            using var stream = new UdpStream(c1.Namespace, new IPEndPoint(a.Vip4, UdpPort), FixedSourcePort, TimeSpan.FromMilliseconds(1));
            Say($"{pinger.Name} on {h[0]} resolves b.com through its node's DNS server: {DemoTraffic.Dig(pinger.Namespace, "b.com", "A")}");
            Say($"c.com on {h[2]} streams UDP from port {FixedSourcePort} to a.com at 1000 datagrams/s; {pinger.Name} pings b.com by name (IPv4 and IPv6, every 5 ms)");

            var switches = new List<double>();
            var repoints = new List<double>();
            long sent = 0, received = 0;
            var done = 0;
            // b.com is on host 2 after every even move: the host lost is host 2, never host 3 (c.com's).
            var lostAt = Math.Max(2, migrations / 2 / 2 * 2);
            double? failoverMs = null;
            long failoverLost = 0;
            var lostHost = "";
            var live = h.Skip(1).ToList(); // where b.com moves: every host but the pinger's, while alive
            output.WriteLine();
            output.WriteLine($"{"#",3}  {"b.com from",-16} {"to",-16} {"call",9} {"re-point",9} {"switch",9}");
            var (ping4, ping6) = Pings(pinger.Namespace);
            try
            {
                for (var k = 1; k <= migrations && !ct.IsCancellationRequested; k++)
                {
                    // To a fresh standby instance on the next live host, then relay migrate --to.
                    var target = live[k % live.Count] == current.Node ? live[(k + 1) % live.Count] : live[k % live.Count];
                    var fresh = await Add("b.com", target, standby: true).ConfigureAwait(false);
                    MigrateResponse m;
                    long started, returned, first;
                    using (var watcher = new IcmpEchoWatcher(fresh.Namespace))
                    {
                        started = Stopwatch.GetTimestamp();
                        m = await api.PostAsync<MigrateResponse>($"{N}/services/b.com/migrate", new MigrateRequest(current.Name, fresh.Name, "0"), ct).ConfigureAwait(false);
                        returned = Stopwatch.GetTimestamp();
                        first = watcher.WaitFirst(TimeSpan.FromSeconds(2));
                    }
                    var call = Stopwatch.GetElapsedTime(started, returned).TotalMicroseconds;
                    var switchUs = first == 0 ? double.NaN : Stopwatch.GetElapsedTime(started, first).TotalMicroseconds;
                    if (first != 0)
                    {
                        switches.Add(switchUs);
                    }
                    repoints.Add(m.RepointUs);
                    done++;
                    output.WriteLine($"{k,3}  {$"{m.From}@{current.Node}",-16} {$"{m.To}@{fresh.Node}",-16} {Us(call),9} {Us(m.RepointUs),9} {Us(switchUs),9}" + (m.NotApplied is { Count: > 0 } late ? $"  not applied in time by {string.Join(", ", late)}" : ""));
                    current = fresh;
                    await Task.Delay(pause, ct).ConfigureAwait(false);

                    if (k == lostAt && current.Node == h[1])
                    {
                        // The fail-over: a second b.com instance takes flows on another host; the
                        // host of the one that answers the ping is lost.
                        var (s4, r4, s6, r6) = await Stop(ping4, ping6).ConfigureAwait(false);
                        (sent, received) = (sent + s4 + s6, received + r4 + r6);
                        lostHost = current.Node!;
                        // A fresh ping first, so that its flow is on the current instance; then the
                        // spare joins the balancer (flows that exist stay where they are).
                        (ping4, ping6) = Pings(pinger.Namespace);
                        await Task.Delay(300, ct).ConfigureAwait(false);
                        var spare = await Add("b.com", live.First(n => n != lostHost)).ConfigureAwait(false);
                        await Task.Delay(300, ct).ConfigureAwait(false);
                        var index = Array.IndexOf(h, lostHost);
                        Say($"losing {lostHost}: its relay daemon (SIGKILL), its etcd member (SIGKILL) and its underlay link; b.com's {spare.Name} on {spare.Node} takes over (lease TTL {Ttl.TotalSeconds:0} s)");
                        using (var watcher = new IcmpEchoWatcher(spare.Namespace))
                        {
                            var cut = Stopwatch.GetTimestamp();
                            LabCluster.KillDaemon(lab.Hosts[index]);
                            LabCluster.KillMember(lab.Hosts[index]);
                            LabCluster.SetLinkUp(lab, lab.Hosts[index], up: false);
                            var at = watcher.WaitFirst(Ttl * 4);
                            failoverMs = at == 0 ? null : Math.Round(Stopwatch.GetElapsedTime(cut, at).TotalMilliseconds, 1);
                        }
                        await Task.Delay(300, ct).ConfigureAwait(false);
                        var (f4, g4, f6, g6) = await Stop(ping4, ping6).ConfigureAwait(false);
                        failoverLost = (f4 + f6) - (g4 + g6);
                        Say(failoverMs is { } ms
                            ? $"fail-over: the ping reached {spare.Name} on {spare.Node} {ms:0} ms after the loss ({failoverLost} echoes unanswered meanwhile)"
                            : $"fail-over: no echo reached {spare.Name} within {(Ttl * 4).TotalSeconds:0} s");
                        live.Remove(lostHost);
                        live.Add(h[0]);
                        current = spare;
                        (ping4, ping6) = Pings(pinger.Namespace);
                        await Task.Delay(300, ct).ConfigureAwait(false);
                    }
                }
            }
            finally
            {
                var (s4, r4, s6, r6) = await Stop(ping4, ping6).ConfigureAwait(false);
                (sent, received) = (sent + s4 + s6, received + r4 + r6);
            }
            var udpSent = stream.LastSent;
            stream.Dispose();
            await Task.Delay(100, CancellationToken.None).ConfigureAwait(false);
            var got = sinks.Values.SelectMany(s => s.Sequences).Where(s => s >= 1 && s <= udpSent).Distinct().LongCount();
            output.WriteLine();
            Say($"ping b.com (IPv4 and IPv6) while it moved: {sent} sent, {received} received (the fail-over's own ping is counted apart)");
            Say($"UDP from c.com's fixed port to a.com: {udpSent} sent, {got} received");
            var summary = new ClusterDemoSummary(hosts, sent, received, sent - received, done,
                DemoTraffic.Percentile(switches, 0.50), DemoTraffic.Percentile(switches, 0.99), DemoTraffic.Percentile(repoints, 0.50), DemoTraffic.Percentile(repoints, 0.99),
                udpSent, got, udpSent - got, 300, spread, lostHost, failoverMs, failoverLost, Ttl.TotalSeconds);
            var removed = LabCluster.Down(lab, NetworkRecord.RemoveAll);
            Say($"relay lab down: removed {removed.Count} objects; nothing of the lab is left");
            output.WriteLine(JsonSerializer.Serialize(summary, new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.CamelCase }));
            return summary.Lost == 0 && summary.UdpLost == 0 && sent > 0 && failoverMs is not null ? 0 : 1;
        }
        catch
        {
            LabCluster.Down(lab, NetworkRecord.RemoveAll);
            throw;
        }
        finally
        {
            foreach (var s in sinks.Values)
            {
                s.Dispose();
            }
        }
    }

    private static (NamespacedProcess V4, NamespacedProcess V6) Pings(string netns)
        => (NamespacedProcess.Start(netns, ["ping", "-4", "-n", "-q", "-i", "0.005", "b.com"]),
            NamespacedProcess.Start(netns, ["ping", "-6", "-n", "-q", "-i", "0.005", "b.com"]));

    private static async Task<(long Sent4, long Received4, long Sent6, long Received6)> Stop(NamespacedProcess v4, NamespacedProcess v6)
    {
        v4.Interrupt();
        v6.Interrupt();
        await Task.WhenAll(v4.WaitForExitAsync(), v6.WaitForExitAsync()).WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        var (s4, r4) = DemoTraffic.PingTotals(v4);
        var (s6, r6) = DemoTraffic.PingTotals(v6);
        v4.Dispose();
        v6.Dispose();
        return (s4, r4, s6, r6);
    }

    private void Say(string line) => output.WriteLine("relay: " + line);

    private static string Us(double us) => double.IsNaN(us) ? "-" : us >= 10_000 ? (us / 1000).ToString("0", CultureInfo.InvariantCulture) + " ms" : us.ToString("0", CultureInfo.InvariantCulture) + " us";
}
