using System.Net;
using System.Net.Sockets;
using Relay.Core.Dns;
using Relay.Core.Errors;
using Relay.Core.Naming;
using Relay.Linux.Namespaces;

namespace Relay.Engine;

public sealed partial class RelayNetwork
{
    /// <summary>What the network's DNS server knows now (a snapshot, swapped on every change).</summary>
    public NameTable Names => _names;

    /// <summary>DNS responses by code, and dropped, truncated and forwarded queries.</summary>
    public IReadOnlyDictionary<string, long> DnsCounters => _dns?.Counters() ?? new Dictionary<string, long>();

    /// <summary>
    /// Rebuilds the name snapshot. Called with the lock held after every service change; the DNS
    /// server reads the field without any lock, so a query never waits for the control plane.
    /// </summary>
    private void PublishNames()
        => _names = NameTable.Build(_state.Services.Values.Select(s => new DnsServiceEntry(s.Name.Value, s.Vip4, s.Vip6, s.Ports, s.FlowAddressing)));

    private void WriteResolvConf(InstanceRecord record)
    {
        if (_dns is null)
        {
            return;
        }
        NetnsEtc.WriteResolvConf(record.Namespace, [_gateways.V4, _gateways.V6], _dnsOptions.Zones,
            $"written by relay for instance {record.Name} of network {Name}; removed with the instance");
    }

    private static DnsOptions DnsOptionsOf(DnsSettings settings) => new()
    {
        Zones = settings.Zones.Select(z => z.TrimEnd('.').ToLowerInvariant()).ToArray(),
        Ttl = settings.Ttl,
        Forward = settings.Upstreams.Count > 0,
    };

    private static IReadOnlyList<IPEndPoint> ValidateDns(DnsSettings dns, ErrorCollector errors)
    {
        for (var i = 0; i < dns.Zones.Count; i++)
        {
            if (DnsName.TryNormalize(dns.Zones[i], out var why) is null)
            {
                errors.Add(ErrorCode.Invalid, $"network.dns.zones[{i}]", why);
            }
        }
        if (dns.Ttl < TimeSpan.Zero || dns.Ttl > TimeSpan.FromDays(1))
        {
            errors.Add(ErrorCode.Invalid, "network.dns.ttl", "the TTL must be between 0 and 1 day");
        }
        var upstreams = new List<IPEndPoint>();
        for (var i = 0; i < dns.Upstreams.Count; i++)
        {
            var text = dns.Upstreams[i];
            if (IPAddress.TryParse(text, out var bare))
            {
                upstreams.Add(new IPEndPoint(bare, 53));
            }
            else if (IPEndPoint.TryParse(text, out var ep) && ep.Port != 0)
            {
                upstreams.Add(ep);
            }
            else
            {
                errors.Add(ErrorCode.Invalid, $"network.dns.upstreams[{i}]", $"'{text}' is not ADDRESS or ADDRESS:PORT (IPv6 with a port: [ADDRESS]:PORT)");
            }
        }
        return upstreams.Select(u => u.AddressFamily == AddressFamily.InterNetworkV6 && u.Address.IsIPv4MappedToIPv6 ? new IPEndPoint(u.Address.MapToIPv4(), u.Port) : u).ToArray();
    }
}
