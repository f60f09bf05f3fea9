using System.Globalization;
using System.Text;
using Relay.Engine;

namespace Relay.Daemon.Metrics;

/// <summary>
/// Prometheus text exposition (format 0.0.4) of what users watch: per service packets, bytes,
/// flows, migrations and a switch-time histogram; per instance health; DNS responses by code.
/// Counters that live in the kernel (packets, bytes, flows) are read when scraped.
/// </summary>
public sealed class RelayMetrics
{
    private static readonly double[] Buckets = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1];
    private readonly Dictionary<(string Network, string Service), Histogram> _switch = [];
    private readonly Dictionary<(string Network, string Service), long> _migrations = [];
    private readonly Lock _gate = new();

    /// <summary>Counts migrations and their times from the event stream.</summary>
    public void Observe(RelayEvent e)
    {
        if (e.Kind != EventKinds.Migration)
        {
            return;
        }
        var key = (e.Network, e.Subject);
        var seconds = (double.Parse(e.Data.GetValueOrDefault("repointUs", "0"), CultureInfo.InvariantCulture)
            + double.Parse(e.Data.GetValueOrDefault("cleanupUs", "0"), CultureInfo.InvariantCulture)) / 1e6;
        lock (_gate)
        {
            _migrations[key] = _migrations.GetValueOrDefault(key) + 1;
            if (!_switch.TryGetValue(key, out var h))
            {
                _switch[key] = h = new Histogram();
            }
            h.Observe(seconds);
        }
    }

    /// <summary>The exposition text for <paramref name="networks"/>.</summary>
    public string Render(IEnumerable<RelayNetwork> networks)
    {
        var sb = new StringBuilder();
        var list = networks.ToArray();
        Header(sb, "relay_service_packets_total", "counter", "Packets sent to the service's virtual addresses (both families).");
        var traffic = list.ToDictionary(n => n.Name, n => n.ServiceTraffic());
        foreach (var n in list)
        {
            foreach (var (service, t) in traffic[n.Name])
            {
                sb.Append(CultureInfo.InvariantCulture, $"relay_service_packets_total{{network=\"{n.Name}\",service=\"{service}\"}} {t.Packets}\n");
            }
        }
        Header(sb, "relay_service_bytes_total", "counter", "Bytes sent to the service's virtual addresses.");
        foreach (var n in list)
        {
            foreach (var (service, t) in traffic[n.Name])
            {
                sb.Append(CultureInfo.InvariantCulture, $"relay_service_bytes_total{{network=\"{n.Name}\",service=\"{service}\"}} {t.Bytes}\n");
            }
        }
        Header(sb, "relay_service_flows", "gauge", "Connection-tracking entries to the service's virtual addresses.");
        foreach (var n in list)
        {
            foreach (var (service, t) in traffic[n.Name])
            {
                sb.Append(CultureInfo.InvariantCulture, $"relay_service_flows{{network=\"{n.Name}\",service=\"{service}\"}} {t.Flows}\n");
            }
        }
        lock (_gate)
        {
            Header(sb, "relay_service_migrations_total", "counter", "Migrations of the service since the daemon started.");
            foreach (var ((network, service), count) in _migrations.OrderBy(k => k.Key))
            {
                sb.Append(CultureInfo.InvariantCulture, $"relay_service_migrations_total{{network=\"{network}\",service=\"{service}\"}} {count}\n");
            }
            Header(sb, "relay_migration_switch_seconds", "histogram", "Time from the migrate call to the stale flows being deleted (re-point plus cleanup).");
            foreach (var ((network, service), h) in _switch.OrderBy(k => k.Key))
            {
                h.Write(sb, $"network=\"{network}\",service=\"{service}\"", "relay_migration_switch_seconds");
            }
        }
        Header(sb, "relay_instance_healthy", "gauge", "1 when the instance passes its health check (or has none), 0 otherwise.");
        Header(sb, "relay_instance_in_balancer", "gauge", "1 when the instance takes new flows.");
        foreach (var n in list)
        {
            foreach (var i in n.Instances)
            {
                var labels = $"network=\"{n.Name}\",service=\"{i.Service}\",instance=\"{i.Name}\"";
                sb.Append(CultureInfo.InvariantCulture, $"relay_instance_healthy{{{labels}}} {(i.Health is HealthStates.Healthy or HealthStates.None ? 1 : 0)}\n");
                sb.Append(CultureInfo.InvariantCulture, $"relay_instance_in_balancer{{{labels}}} {(i.InBalancer ? 1 : 0)}\n");
            }
        }
        Header(sb, "relay_dns_responses_total", "counter", "DNS responses by code, and queries dropped, truncated, forwarded.");
        foreach (var n in list)
        {
            foreach (var (code, count) in n.DnsCounters)
            {
                sb.Append(CultureInfo.InvariantCulture, $"relay_dns_responses_total{{network=\"{n.Name}\",code=\"{code}\"}} {count}\n");
            }
        }
        return sb.ToString();
    }

    private static void Header(StringBuilder sb, string name, string type, string help)
        => sb.Append("# HELP ").Append(name).Append(' ').Append(help).Append("\n# TYPE ").Append(name).Append(' ').Append(type).Append('\n');

    private sealed class Histogram
    {
        private readonly long[] _counts = new long[Buckets.Length];
        private long _count;
        private double _sum;

        public void Observe(double value)
        {
            for (var i = 0; i < Buckets.Length; i++)
            {
                if (value <= Buckets[i])
                {
                    _counts[i]++;
                }
            }
            _count++;
            _sum += value;
        }

        public void Write(StringBuilder sb, string labels, string name)
        {
            for (var i = 0; i < Buckets.Length; i++)
            {
                sb.Append(CultureInfo.InvariantCulture, $"{name}_bucket{{{labels},le=\"{Buckets[i]}\"}} {_counts[i]}\n");
            }
            sb.Append(CultureInfo.InvariantCulture, $"{name}_bucket{{{labels},le=\"+Inf\"}} {_count}\n");
            sb.Append(CultureInfo.InvariantCulture, $"{name}_sum{{{labels}}} {_sum}\n");
            sb.Append(CultureInfo.InvariantCulture, $"{name}_count{{{labels}}} {_count}\n");
        }
    }
}
