using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.RegularExpressions;
using Relay.Cli.Client;
using Relay.Cli.Config;
using Relay.Cli.Output;
using Relay.Daemon;
using Relay.Daemon.Api;
using Relay.Engine;
using Relay.Engine.Api;
using Relay.Engine.Probes;
using Relay.Linux.Processes;

namespace Relay.Cli.Demo;

/// <summary>Settings of the seed demo.</summary>
/// <param name="File">The scenario (examples/seed.yaml).</param>
/// <param name="Migrations">How many times b.com moves to a fresh instance.</param>
/// <param name="Pause">Time between migrations, for traffic to flow.</param>
internal sealed record DemoOptions(string? File, int Migrations, TimeSpan Pause);

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
internal sealed class SeedDemo(DemoOptions options, TextWriter output)
{
    private const int UdpPort = 9000;
    private const int FixedSourcePort = 40000;

    private async Task<(string Text, string Source)> ReadScenarioAsync(CancellationToken ct)
    {
        if (options.File is { } path)
        {
            if (!File.Exists(path))
            {
                throw new CliException($"--file {path}: no such file");
            }
            return (await File.ReadAllTextAsync(path, ct).ConfigureAwait(false), path);
        }
        await using var embedded = typeof(SeedDemo).Assembly.GetManifestResourceStream("seed.yaml")
            ?? throw new CliException("the built-in seed scenario is missing from this build");
        using var reader = new StreamReader(embedded);
        return (await reader.ReadToEndAsync(ct).ConfigureAwait(false), "examples/seed.yaml");
    }

    public async Task<int> RunAsync(CancellationToken cancellationToken)
    {
        await using var daemon = await DemoDaemon.StartAsync(output, cancellationToken).ConfigureAwait(false);
        using var client = new RelayClient(daemon.Socket);
        var sinks = new Dictionary<string, UdpSink>(StringComparer.Ordinal);
        try
        {
            // The scenario, as a user would build it: relay apply -f examples/seed.yaml.
            var (text, source) = await ReadScenarioAsync(cancellationToken).ConfigureAwait(false);
            var doc = DesiredStateDocument.Parse(text, source);
            if (doc.Errors.Count > 0)
            {
                throw new CliException($"{source}: {string.Join("; ", doc.Errors)}");
            }
            var applied = await client.PostAsync<ApplyResult>("v1/apply", doc.State, cancellationToken).ConfigureAwait(false);
            Say($"relay apply -f {source}: {applied.Changes} changes ({string.Join(", ", applied.Steps.Where(x => x.Action != ApplyActions.Unchanged).Select(x => $"{x.Action} {x.Kind} {x.Name}"))})");
            var network = applied.Steps.First(x => x.Kind == "network").Network;
            var n = $"v1/networks/{network}";
            var services = await client.GetAsync<ServiceInfo[]>($"{n}/services", cancellationToken).ConfigureAwait(false);
            var instances = await client.GetAsync<InstanceInfo[]>($"{n}/instances", cancellationToken).ConfigureAwait(false);
            PrintTable(services, instances);
            var a = services.Single(x => x.Name == "a.com");
            var b = services.Single(x => x.Name == "b.com");
            var byName = instances.ToDictionary(i => i.Name, StringComparer.Ordinal);
            foreach (var i in instances.Where(i => i.Service == "a.com"))
            {
                sinks[i.Name] = new UdpSink(i.Namespace, AddressFamily.InterNetwork, UdpPort);
            }
            var c1 = instances.First(i => i.Service == "c.com");
            var bCurrent = instances.First(i => i.Service == "b.com").Name;

            // Spread: 300 short UDP flows (distinct source ports) from c.com to a.com.
            var spread = DemoTraffic.Spread(c1.Namespace, new IPEndPoint(a.Vip4, UdpPort), 300, sinks);
            Say($"spread: 300 UDP flows from c.com to a.com ({a.Vip4}:{UdpPort}, {a.Policy}): " +
                string.Join(", ", spread.Select(kv => $"{kv.Key} {kv.Value}")));

            // The fixed-port stream lands on one a.com instance; the OTHER one pings b.com, so that
            // moving the instance that holds the stream never stops the pinger.
            using var stream = new UdpStream(c1.Namespace, new IPEndPoint(a.Vip4, UdpPort), FixedSourcePort, TimeSpan.FromMilliseconds(1));
            await Task.Delay(200, cancellationToken).ConfigureAwait(false);
            var pinger = sinks.MinBy(kv => kv.Value.LastTimestamp).Key;
            var pingerNs = byName[pinger].Namespace;
            // By name: the instance's resolver asks Relay's DNS server, as any program would
            // (what 'relay exec a-1 -- dig b.com' runs). IPv4 floods (ping -f sends the next
            // request as soon as a reply comes back, so it measures the switch to the microsecond);
            // IPv6 pings every millisecond: a second flood would take the last free core of a
            // small machine and slow everything it measures.
            Say($"relay exec {pinger} -- dig b.com: {DemoTraffic.Dig(pingerNs, "b.com", "A", "AAAA")}");
            using var ping4 = NamespacedProcess.Start(pingerNs, ["ping", "-4", "-f", "-q", "b.com"]);
            using var ping6 = NamespacedProcess.Start(pingerNs, ["ping", "-6", "-q", "-i", "0.001", "b.com"]);
            Say($"c.com streams UDP from port {FixedSourcePort} to a.com at 1000 datagrams/s; it landed on {Holder(sinks)}");
            Say($"{pinger} (a.com) runs 'ping -4 -f b.com' and 'ping -6 -i 0.001 b.com' ({b.Vip4}, {b.Vip6})");
            await Task.Delay(300, cancellationToken).ConfigureAwait(false);

            output.WriteLine();
            output.WriteLine($"{"#",3}  {"b.com from",-10} {"to",-10} {"re-point",9} {"call",9} {"switch",9} {"stale",5}   {"UDP flow at",-12} {"UDP datagrams per a.com instance"}");
            var switches = new List<double>();
            var repoints = new List<double>();
            long late = 0;
            var moves = 0;
            var done = 0;
            for (var k = 1; k <= options.Migrations && !cancellationToken.IsCancellationRequested; k++)
            {
                // relay instance add b.com --standby; relay migrate b.com --to NEW
                var fresh = await client.PostAsync<InstanceInfo>($"{n}/instances", new InstanceSpec { Service = "b.com", Standby = true }, cancellationToken).ConfigureAwait(false);
                MigrateResponse m;
                long started;
                long first;
                using (var watcher = new IcmpEchoWatcher(fresh.Namespace))
                {
                    started = Stopwatch.GetTimestamp();
                    m = await client.PostAsync<MigrateResponse>($"{n}/services/b.com/migrate", new MigrateRequest(bCurrent, fresh.Name, "0"), cancellationToken).ConfigureAwait(false);
                    first = watcher.WaitFirst(TimeSpan.FromSeconds(2));
                }
                bCurrent = fresh.Name;
                done++;
                var switchUs = first == 0 ? double.NaN : Stopwatch.GetElapsedTime(started, first).TotalMicroseconds;
                if (first != 0)
                {
                    switches.Add(switchUs);
                }
                repoints.Add(m.RepointUs);

                // Every fifth time an a.com instance moves too: the one holding the fixed-port
                // flow (the flow is re-balanced off it), or, if the flow is on the pinger, the other.
                var note = "";
                if (k % 5 == 0)
                {
                    var holder = Holder(sinks);
                    var aNow = await client.GetAsync<ServiceInfo>($"{n}/services/a.com", cancellationToken).ConfigureAwait(false);
                    var moving = holder != pinger ? holder : aNow.Backends.First(x => x != pinger);
                    var freshA = await client.PostAsync<InstanceInfo>($"{n}/instances", new InstanceSpec { Service = "a.com", Standby = true }, cancellationToken).ConfigureAwait(false);
                    sinks[freshA.Name] = new UdpSink(freshA.Namespace, AddressFamily.InterNetwork, UdpPort);
                    await client.PostAsync<MigrateResponse>($"{n}/services/a.com/migrate", new MigrateRequest(moving, freshA.Name, "0"), cancellationToken).ConfigureAwait(false);
                    var cutoff = stream.LastSent;
                    // Let the old instance's sink read what the kernel delivered before the call returned.
                    await Task.Delay(50, cancellationToken).ConfigureAwait(false);
                    late += sinks[moving].Sequences.Count(s => s > cutoff);
                    moves += moving == holder ? 1 : 0;
                    note = $"  (a.com moved {moving} -> {freshA.Name})";
                }
                output.WriteLine($"{k,3}  {m.From,-10} {m.To,-10} {Us(m.RepointUs),9} {Us(m.SwitchUs),9} {Us(switchUs),9} {m.StaleFlowsDeleted,5}   {Holder(sinks),-12} " +
                    string.Join(" ", sinks.Select(kv => $"{kv.Key}={kv.Value.Count}")) + note);
                await Task.Delay(options.Pause, cancellationToken).ConfigureAwait(false);
            }

            ping4.Interrupt();
            ping6.Interrupt();
            await Task.WhenAll(ping4.WaitForExitAsync(), ping6.WaitForExitAsync()).WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
            var (s4, r4) = DemoTraffic.PingTotals(ping4);
            var (s6, r6) = DemoTraffic.PingTotals(ping6);
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
                DemoTraffic.Percentile(switches, 0.50), DemoTraffic.Percentile(switches, 0.99),
                DemoTraffic.Percentile(repoints, 0.50), DemoTraffic.Percentile(repoints, 0.99),
                udpSent, received, udpSent - received, late, moves, 300, spread);
            var down = await client.PostAsync<DownResponse>("v1/down", new { }, CancellationToken.None).ConfigureAwait(false);
            Say($"relay down: removed {string.Join(", ", down.Removed)}; no namespace, link, table or process of it is left");
            output.WriteLine(JsonSerializer.Serialize(summary, new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.CamelCase }));
            return summary.Lost == 0 && summary.UdpLateAtOldInstance == 0 && s4 > 0 && s6 > 0 ? 0 : 1;
        }
        catch
        {
            // Whatever happened, leave nothing behind.
            try
            {
                await client.PostAsync<DownResponse>("v1/down", new { }, CancellationToken.None).ConfigureAwait(false);
            }
            catch (CliException)
            {
            }
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

    /// <summary>The a.com instance that received the fixed-port stream last.</summary>
    private static string Holder(Dictionary<string, UdpSink> sinks) => sinks.MaxBy(kv => kv.Value.LastTimestamp).Key;

    private void PrintTable(IReadOnlyList<ServiceInfo> services, IReadOnlyList<InstanceInfo> instances)
    {
        output.WriteLine();
        TableWriter.Write(output, ["service", "virtual ipv4", "virtual ipv6", "policy", "instances"],
            services.Select(s => (IReadOnlyList<string>)[s.Name, s.Vip4.ToString(), s.Vip6.ToString(), s.Policy, string.Join(", ", s.Backends)]));
        output.WriteLine();
        TableWriter.Write(output, ["instance", "service", "namespace", "link", "ipv4", "ipv6"],
            instances.Select(i => (IReadOnlyList<string>)[i.Name, i.Service, i.Namespace, i.HostInterface, i.Address4.ToString(), i.Address6.ToString()]));
        output.WriteLine();
    }

    private void Say(string line) => output.WriteLine("relay: " + line);

    private static string Us(double us) => double.IsNaN(us) ? "-" : us.ToString("0", CultureInfo.InvariantCulture) + " us";

}
