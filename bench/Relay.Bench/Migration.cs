using System.Text;
using System.Globalization;
using System.Text.RegularExpressions;
using Relay.Engine;
using Relay.Engine.Probes;

namespace Relay.Bench;

/// <summary>Result of the migration experiment.</summary>
internal sealed record MigrationBenchResult(int Migrations, long PingSent, long PingLost, double SwitchP50Us, double SwitchP99Us, double RepointP50Us, double RepointP99Us, int NoSwitchSeen);

/// <summary>
/// A client floods a service's virtual address with <c>ping -f</c> while the service is replaced
/// by a fresh instance, again and again: packets lost, and the switch time of each migration.
/// </summary>
internal static class Migration
{
    public static MigrationBenchResult Run(int migrations, Action<string> progress)
    {
        using var net = RelayNetwork.Create(new NetworkOptions { Name = "bench" + Guid.NewGuid().ToString("N")[..6] });
        net.AddService(new ServiceOptions { Name = "client.bench" });
        var svc = net.AddService(new ServiceOptions { Name = "target.bench" });
        var client = net.AddInstance("client.bench");
        var current = net.AddInstance("target.bench").Name;
        using var ping = net.Exec(client.Name, ["ping", "-f", "-q", svc.Vip4.ToString()]);
        Thread.Sleep(300);
        var switches = new List<double>();
        var repoints = new List<double>();
        var missing = 0;
        for (var i = 1; i <= migrations; i++)
        {
            var fresh = net.AddInstance("target.bench", new InstanceOptions { Standby = true });
            var m = SwitchMeter.Migrate(net, "target.bench", current, fresh.Name, TimeSpan.FromSeconds(2));
            current = fresh.Name;
            repoints.Add(m.Migration.RepointTime.TotalMicroseconds);
            if (m.SwitchUs is { } us)
            {
                switches.Add(us);
            }
            else
            {
                missing++;
            }
            if (i % 10 == 0)
            {
                progress($"  {i}/{migrations} migrations, switch p50 so far {Stats.Median(switches):F0} us");
            }
            Thread.Sleep(20);
        }
        ping.Interrupt();
        ping.WaitForExitAsync().Wait(TimeSpan.FromSeconds(5));
        var text = string.Join('\n', ping.RecentOutput());
        var match = Regex.Match(text, @"(\d+) packets transmitted, (\d+) received");
        var sent = match.Success ? long.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture) : -1;
        var received = match.Success ? long.Parse(match.Groups[2].Value, CultureInfo.InvariantCulture) : -1;
        return new MigrationBenchResult(migrations, sent, sent - received, Stats.Median(switches), Stats.Percentile(switches, 0.99),
            Stats.Median(repoints), Stats.Percentile(repoints, 0.99), missing);
    }
    /// <summary>This experiment's section of docs/benchmarks.md.</summary>
    public static void Render(StringBuilder sb, MigrationBenchResult results, Charts charts)
    {
        var inv = CultureInfo.InvariantCulture;
        sb.AppendLine("## Migration under `ping -f`");
        sb.AppendLine();
        var m = results;
        sb.AppendLine("A client instance floods the service's virtual IPv4 address with `ping -f` while the service is migrated to a fresh instance (created in standby, then one re-point transaction, then the stale ICMP/UDP conntrack entries deleted). Switch = from the migrate call to the first echo request reaching the new instance, seen by a raw socket there.");
        sb.AppendLine();
        sb.AppendLine("| migrations | pings sent | pings lost | switch p50 (us) | switch p99 (us) | re-point p50 (us) | re-point p99 (us) | switches not seen |");
        sb.AppendLine("|---:|---:|---:|---:|---:|---:|---:|---:|");
        sb.AppendLine(string.Create(inv, $"| {m.Migrations} | {m.PingSent:N0} | {m.PingLost} | {m.SwitchP50Us:F0} | {m.SwitchP99Us:F0} | {m.RepointP50Us:F0} | {m.RepointP99Us:F0} | {m.NoSwitchSeen} |"));
        sb.AppendLine();
    }
}
