using System.Net;
using System.Text.Json;
using Relay.Core.Dataplane;

namespace Relay.Engine;

/// <summary>Traffic per service, read from the kernel (per-element counters, the conntrack index).</summary>
public sealed partial class RelayNetwork
{
    /// <summary>Per service: packets and bytes sent to its virtual addresses, and its current flows.</summary>
    public IReadOnlyDictionary<string, (long Packets, long Bytes, int Flows)> ServiceTraffic()
    {
        (string Name, IPAddress Vip4, IPAddress Vip6)[] services;
        lock (_gate)
        {
            ThrowIfDisposed();
            services = _state.Services.Values.Select(s => (s.Name.Value, s.Vip4, s.Vip6)).ToArray();
        }
        var counters = new Dictionary<IPAddress, (long Packets, long Bytes)>();
        foreach (var set in new[] { NftNames.ServiceStats4, NftNames.ServiceStats6 })
        {
            using var doc = JsonDocument.Parse(_dataplane.ListSetJson(set));
            foreach (var item in doc.RootElement.GetProperty("nftables").EnumerateArray())
            {
                if (!item.TryGetProperty("set", out var s) || !s.TryGetProperty("elem", out var elems))
                {
                    continue;
                }
                foreach (var e in elems.EnumerateArray())
                {
                    if (e.TryGetProperty("elem", out var el) && el.TryGetProperty("val", out var val) && val.ValueKind == JsonValueKind.String
                        && IPAddress.TryParse(val.GetString(), out var vip) && el.TryGetProperty("counter", out var counter))
                    {
                        counters[vip] = (counter.GetProperty("packets").GetInt64(), counter.GetProperty("bytes").GetInt64());
                    }
                }
            }
        }
        var result = new SortedDictionary<string, (long, long, int)>(StringComparer.Ordinal);
        foreach (var (name, vip4, vip6) in services)
        {
            var (p4, b4) = counters.GetValueOrDefault(vip4);
            var (p6, b6) = counters.GetValueOrDefault(vip6);
            result[name] = (p4 + p6, b4 + b6, _dataplane.CountFlowsTo(new HashSet<IPAddress> { vip4, vip6 }));
        }
        return result;
    }
}
