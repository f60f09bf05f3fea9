using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.RegularExpressions;
using Relay.Engine.Probes;
using Relay.Linux.Processes;

namespace Relay.Cli.Demo;

/// <summary>The traffic and the figures both demos use: the one host's and the lab's.</summary>
internal static partial class DemoTraffic
{
    /// <summary>One short UDP flow per fresh source port from <paramref name="netns"/> to <paramref name="to"/>; how many each sink got.</summary>
    public static Dictionary<string, long> Spread(string netns, IPEndPoint to, int flows, Dictionary<string, UdpSink> sinks)
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

    /// <summary>What <c>dig +short</c> prints inside the namespace for each of <paramref name="types"/>.</summary>
    public static string Dig(string netns, string name, params string[] types)
    {
        var lines = new List<string>();
        foreach (var type in types)
        {
            using var dig = NamespacedProcess.Start(netns, ["dig", "+short", "+time=2", type, name]);
            dig.WaitForExitAsync().Wait(TimeSpan.FromSeconds(5));
            lines.AddRange(dig.RecentOutput());
        }
        return string.Join(", ", lines);
    }

    /// <summary>A finished ping's summary line: sent and received (0, 0 when it printed none).</summary>
    public static (long Sent, long Received) PingTotals(NamespacedProcess ping)
    {
        var m = Summary().Match(string.Join('\n', ping.RecentOutput()));
        return m.Success ? (long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), long.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture)) : (0, 0);
    }

    /// <summary>The <paramref name="p"/> quantile (nearest rank), rounded to 0.1; null without values.</summary>
    public static double? Percentile(List<double> values, double p)
    {
        if (values.Count == 0)
        {
            return null;
        }
        var sorted = values.Order().ToArray();
        var rank = (int)Math.Ceiling(p * sorted.Length) - 1;
        return Math.Round(sorted[Math.Clamp(rank, 0, sorted.Length - 1)], 1);
    }

    [GeneratedRegex(@"(\d+) packets transmitted, (\d+) received")]
    private static partial Regex Summary();
}
