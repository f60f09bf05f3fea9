using System.Net;
using Relay.Core.Dataplane;
using Relay.Core.LoadBalancing;
using Relay.Core.Model;

namespace Relay.Core.Tests.Dataplane;

/// <summary>Builders for data plane specs with predictable addresses.</summary>
internal static class Specs
{
    /// <summary>Virtual addresses of service <paramref name="i"/>: 10.99.x.y and fd99::i (i &lt; 65534).</summary>
    public static (IPAddress V4, IPAddress V6) Vip(int i)
    {
        var n = i + 1;
        return (IPAddress.Parse($"10.99.{n / 256}.{n % 256}"), IPAddress.Parse($"fd99::{n:x}"));
    }

    /// <summary>Instance <paramref name="i"/>: inst-i at 10.88.x.y and fd88::i.</summary>
    public static DataplaneBackend Backend(int i)
    {
        var n = i + 2;
        return new DataplaneBackend($"inst-{i}", IPAddress.Parse($"10.88.{n / 256}.{n % 256}"), IPAddress.Parse($"fd88::{n:x}"));
    }

    public static DataplaneService Service(
        int i,
        IEnumerable<int> backends,
        LoadBalancingPolicy policy = LoadBalancingPolicy.RoundRobin,
        IReadOnlyList<PortMapping>? ports = null,
        int? tableSize = null)
    {
        var (v4, v6) = Vip(i);
        var list = backends.Select(Backend).ToArray();
        return new DataplaneService($"svc-{i}.example", v4, v6, policy, tableSize ?? Maglev.TableSize(list.Length), ports ?? [], list);
    }

    public static DataplaneSpec Spec(params DataplaneService[] services) => new(services, []);
}
