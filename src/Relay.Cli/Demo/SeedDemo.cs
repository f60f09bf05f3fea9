using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Logging;
using Relay.Engine;
using Relay.Engine.Probes;
using Relay.Linux.Processes;

namespace Relay.Cli.Demo;

/// <summary>Settings of the seed demo.</summary>
/// <param name="Network">Network name (namespaces relay-NAME...).</param>
/// <param name="Migrations">How many times b.com moves to a fresh instance.</param>
/// <param name="Pause">Time between migrations, for traffic to flow.</param>
internal sealed record DemoOptions(string Network, int Migrations, TimeSpan Pause);

/// <summary>The one line of JSON the demo ends with.</summary>
internal sealed record DemoSummary(
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
    long UdpLateAtOldInstance,
    int UdpFlowMoves,
    int SpreadFlows,
    IReadOnlyDictionary<string, long> Spread);

/// <summary>
/// The seed's experiment on the real kernel: a.com (2 instances), b.com (1) and c.com (1); an a.com
/// instance pings b.com's virtual addresses (IPv4 and IPv6) while b.com moves to a fresh instance
/// again and again; c.com sends UDP from a fixed source port to a.com, and the flow is seen spread
/// and moved as a.com's instances change.
/// </summary>
internal sealed class SeedDemo(DemoOptions options, TextWriter output, ILogger logger)
{
    private const int UdpPort = 9000;
    private const int FixedSourcePort = 40000;

    public async Task<int> RunAsync(CancellationToken cancellationToken)
    {
        var record = NetworkRecord.Load(new NetworkOptions { Name = options.Network }.RecordDirectory, options.Network);
        if (record is not null && !Directory.Exists($"/proc/{record.OwnerPid}"))
        {
            var removed = record.RemoveLeftovers(new NetworkOptions { Name = options.Network }.RecordDirectory);
            Say($"removed what an earlier, interrupted run left behind: {string.Join(", ", removed.DefaultIfEmpty("(nothing)"))}");
        }

        using var net = RelayNetwork.Create(new NetworkOptions { Name = options.Network, DrainTimeout = TimeSpan.FromSeconds(5) }, logger);
        Say($"network '{net.Name}': orchestrator namespace {net.OrchestratorNamespace}, gateways {net.Gateways.V4} and {net.Gateways.V6}");
        var a = net.AddService(new ServiceOptions { Name = "a.com", Policy = "round-robin" });
        var b = net.AddService(new ServiceOptions { Name = "b.com" });
        net.AddService(new ServiceOptions { Name = "c.com" });
        var sinks = new Dictionary<string, UdpSink>(StringComparer.Ordinal);
        try
        {
            var a1 = net.AddInstance("a.com");
            var a2 = net.AddInstance("a.com");
            foreach (var i in new[] { a1, a2 })
            {
                sinks[i.Name] = new UdpSink(i.Namespace, AddressFamily.InterNetwork, UdpPort);
            }
            var bCurrent = net.AddInstance("b.com").Name;
            var c1 = net.AddInstance("c.com");
            PrintTable(net);

            // Spread: 300 short UDP flows (distinct source ports) from c.com to a.com.
            var spread = SendSpread(c1.Namespace, new IPEndPoint(a.Vip4, UdpPort), 300, sinks);
            Say($"spread: 300 UDP flows from c.com to a.com ({a.Vip4}:{UdpPort}, round-robin): " +
                string.Join(", ", spread.Select(kv => $"{kv.Key} {kv.Value}")));

            // The fixed-port stream lands on one a.com instance; the OTHER one pings b.com, so that
            // moving the instance that holds the stream never stops the pinger.
            using var stream = new UdpStream(c1.Namespace, new IPEndPoint(a.Vip4, UdpPort), FixedSourcePort, TimeSpan.FromMilliseconds(1));
            await Task.Delay(200, cancellationToken).ConfigureAwait(false);
            var pinger = sinks.MinBy(kv => kv.Value.LastTimestamp).Key;
            // IPv4 floods (ping -f sends the next request as soon as a reply comes back, so it
            // measures the switch to the microsecond); IPv6 pings every millisecond: a second
            // flood would take the last free core of a small machine and slow everything it measures.
            // By name: the instance's resolver asks Relay's DNS server (its resolv.conf points at the
            // gateway), as any program would.
            var resolved = Resolve(net, pinger, "b.com");
            Say($"inside {pinger}: dig b.com -> {resolved}");
            using var ping4 = net.Exec(pinger, ["ping", "-4", "-f", "-q", "b.com"]);
            using var ping6 = net.Exec(pinger, ["ping", "-6", "-q", "-i", "0.001", "b.com"]);
            Say($"c.com streams UDP from port {FixedSourcePort} to a.com at 1000 datagrams/s; it landed on {Holder(sinks)}");
            Say($"{pinger} (a.com) runs 'ping -4 -f b.com' and 'ping -6 -i 0.001 b.com' ({b.Vip4}, {b.Vip6})");
            await Task.Delay(300, cancellationToken).ConfigureAwait(false);

            output.WriteLine();
            output.WriteLine($"{"#",3}  {"b.com from",-10} {"to",-10} {"re-point",9} {"cleanup",9} {"switch",9} {"stale",5}   {"UDP flow at",-12} {"UDP datagrams per a.com instance"}");
            var switches = new List<double>();
            var repoints = new List<double>();
            long late = 0;
            var moves = 0;
            var done = 0;
            for (var n = 1; n <= options.Migrations && !cancellationToken.IsCancellationRequested; n++)
            {
                var fresh = net.AddInstance("b.com", new InstanceOptions { Standby = true });
                var measured = SwitchMeter.Migrate(net, "b.com", bCurrent, fresh.Name, TimeSpan.FromSeconds(2));
                var m = measured.Migration;
                bCurrent = fresh.Name;
                done++;
                var switchUs = measured.SwitchUs ?? double.NaN;
                if (measured.SwitchUs is { } us)
                {
                    switches.Add(us);
                }
                repoints.Add(m.RepointTime.TotalMicroseconds);

                // Every fifth time an a.com instance moves too: the one holding the fixed-port
                // flow (the flow follows it), or, if the flow is on the pinger, the other one
                // (the flow stays where it is).
                var note = "";
                if (n % 5 == 0)
                {
                    var holder = Holder(sinks);
                    var moving = holder != pinger ? holder : net.GetService("a.com").Backends.First(x => x != pinger);
                    var freshA = net.AddInstance("a.com", new InstanceOptions { Standby = true });
                    sinks[freshA.Name] = new UdpSink(freshA.Namespace, AddressFamily.InterNetwork, UdpPort);
                    net.Migrate("a.com", moving, freshA.Name);
                    var cutoff = stream.LastSent;
                    // Let the old instance's sink read what the kernel delivered before the call returned.
                    await Task.Delay(50, cancellationToken).ConfigureAwait(false);
                    late += sinks[moving].Sequences.Count(s => s > cutoff);
                    moves += moving == holder ? 1 : 0;
                    note = $"  (a.com moved {moving} -> {freshA.Name})";
                }
                var at = Holder(sinks);
                output.WriteLine($"{n,3}  {m.From,-10} {m.To,-10} {Us(m.RepointTime.TotalMicroseconds),9} {Us(Stopwatch.GetElapsedTime(m.Repointed, m.Cleaned).TotalMicroseconds),9} {Us(switchUs),9} {m.StaleFlowsDeleted,5}   {at,-12} " +
                    string.Join(" ", sinks.Select(kv => $"{kv.Key}={kv.Value.Count}")) + note);
                await Task.Delay(options.Pause, cancellationToken).ConfigureAwait(false);
            }

            ping4.Interrupt();
            ping6.Interrupt();
            await Task.WhenAll(ping4.WaitForExitAsync(), ping6.WaitForExitAsync()).WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
            var (s4, r4) = PingTotals(ping4);
            var (s6, r6) = PingTotals(ping6);
            var udpSent = stream.LastSent;
            stream.Dispose();
            await Task.Delay(100, CancellationToken.None).ConfigureAwait(false);
            // Sequence 0 is the spread burst's payload; the stream numbers from 1.
            var received = sinks.Values.SelectMany(s => s.Sequences).Where(s => s >= 1 && s <= udpSent).Distinct().LongCount();

            output.WriteLine();
            Say($"ping IPv4: {s4} sent, {r4} received; IPv6: {s6} sent, {r6} received");
            Say($"UDP from the fixed port: {udpSent} sent, {received} received, {late} reached an old instance after its migration returned");
            var summary = new DemoSummary(
                s4 + s6, r4 + r6, (s4 + s6) - (r4 + r6), done,
                Percentile(switches, 0.50), Percentile(switches, 0.99),
                Percentile(repoints, 0.50), Percentile(repoints, 0.99),
                udpSent, received, udpSent - received, late, moves, 300, spread);
            net.Dispose();
            Say($"network '{options.Network}' removed: no namespace, link, table or process of it is left");
            output.WriteLine(JsonSerializer.Serialize(summary, new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.CamelCase }));
            return summary.Lost == 0 && summary.UdpLateAtOldInstance == 0 && s4 > 0 && s6 > 0 ? 0 : 1;
        }
        finally
        {
            foreach (var s in sinks.Values)
            {
                s.Dispose();
            }
        }
    }

    private static Dictionary<string, long> SendSpread(string netns, IPEndPoint to, int flows, Dictionary<string, UdpSink> sinks)
    {
        var before = sinks.ToDictionary(kv => kv.Key, kv => kv.Value.Count);
        var sockets = NsSockets.ManyUdp(netns, to.AddressFamily, flows);
        try
        {
            foreach (var s in sockets)
            {
                s.SendTo(new byte[8], to);
            }
        }
        finally
        {
            foreach (var s in sockets)
            {
                s.Dispose();
            }
        }
        var until = Stopwatch.GetTimestamp() + Stopwatch.Frequency * 2;
        while (sinks.Sum(kv => kv.Value.Count - before[kv.Key]) < flows && Stopwatch.GetTimestamp() < until)
        {
            Thread.Sleep(10);
        }
        return sinks.ToDictionary(kv => kv.Key, kv => kv.Value.Count - before[kv.Key]);
    }

    /// <summary>What <c>dig +short NAME</c> prints inside <paramref name="instance"/> (A and AAAA).</summary>
    private static string Resolve(RelayNetwork net, string instance, string name)
    {
        var lines = new List<string>();
        foreach (var type in new[] { "A", "AAAA" })
        {
            using var dig = net.Exec(instance, ["dig", "+short", "+time=2", type, name]);
            dig.WaitForExitAsync().Wait(TimeSpan.FromSeconds(5));
            lines.AddRange(dig.RecentOutput());
        }
        return string.Join(", ", lines);
    }

    /// <summary>The a.com instance that received the fixed-port stream last.</summary>
    private static string Holder(Dictionary<string, UdpSink> sinks) => sinks.MaxBy(kv => kv.Value.LastTimestamp).Key;

    private static (long Sent, long Received) PingTotals(NamespacedProcess ping)
    {
        var text = string.Join('\n', ping.RecentOutput());
        var m = Regex.Match(text, @"(\d+) packets transmitted, (\d+) received");
        return m.Success ? (long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), long.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture)) : (0, 0);
    }

    private void PrintTable(RelayNetwork net)
    {
        output.WriteLine();
        output.WriteLine($"{"SERVICE",-8} {"VIRTUAL IPv4",-14} {"VIRTUAL IPv6",-26} {"POLICY",-12} INSTANCES");
        foreach (var s in net.Services)
        {
            output.WriteLine($"{s.Name,-8} {s.Vip4,-14} {s.Vip6,-26} {s.Policy,-12} {string.Join(", ", s.Backends)}");
        }
        output.WriteLine();
        output.WriteLine($"{"INSTANCE",-10} {"SERVICE",-8} {"NAMESPACE",-24} {"LINK",-6} {"IPv4",-12} IPv6");
        foreach (var i in net.Instances)
        {
            output.WriteLine($"{i.Name,-10} {i.Service,-8} {i.Namespace,-24} {i.HostInterface,-6} {i.Address4,-12} {i.Address6}");
        }
        output.WriteLine();
    }

    private void Say(string line) => output.WriteLine("relay: " + line);

    private static string Us(double us) => double.IsNaN(us) ? "-" : us.ToString("0", CultureInfo.InvariantCulture) + " us";

    private static double? Percentile(List<double> values, double p)
    {
        if (values.Count == 0)
        {
            return null;
        }
        var sorted = values.Order().ToArray();
        var rank = (int)Math.Ceiling(p * sorted.Length) - 1;
        return Math.Round(sorted[Math.Clamp(rank, 0, sorted.Length - 1)], 1);
    }
}
