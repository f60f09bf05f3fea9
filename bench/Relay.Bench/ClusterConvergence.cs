using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.Json.Serialization;
using Relay.Cluster;
using Relay.Cluster.Etcd;
using Relay.Cluster.Lab;

namespace Relay.Bench;

/// <summary>
/// Convergence across hosts: a re-point through a lab daemon's API (<c>POST .../migrate</c>, what
/// <c>relay migrate</c> sends) until the answer, which comes once every live node has recorded that
/// its kernel holds the re-point: the "API call -> last node's kernel applied".
/// </summary>
/// <param name="Services">Services installed in the network while re-pointing.</param>
/// <param name="Call">API call to answer (every node applied), client side.</param>
/// <param name="Written">Within it, until the etcd transaction committed (daemon side).</param>
/// <param name="Applied">Within it, until every node had recorded the revision (daemon side).</param>
/// <param name="NotAppliedInTime">Re-points some node had not applied when the call stopped waiting.</param>
internal sealed record ConvergenceResult(int Services, LatencySummary Call, LatencySummary Written, LatencySummary Applied, int NotAppliedInTime)
{
    /// <summary>From the API call (client's clock) to the last node's kernel holding the re-point (that node's record of when; one clock in a lab).</summary>
    public LatencySummary? Converged { get; init; }
}

internal static class ClusterConvergence
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull };

    public static ConvergenceResult Run(int services, int repoints, Action<string> progress)
    {
        var root = Path.Combine(Path.GetTempPath(), "relay-bench-labs");
        var lab = LabCluster.UpAsync(new LabOptions { Name = "c" + Guid.NewGuid().ToString("N")[..7], Hosts = 3, Root = root, RelayBinary = RelayBinary() }).GetAwaiter().GetResult();
        try
        {
            using var api = Client(lab.Hosts[0].Socket);
            Post(api, "v1/networks", new { name = "default" });
            progress(string.Create(CultureInfo.InvariantCulture, $"  installing {services} services in the cluster's network (bulk transactions; every node applies each)"));
            using (var etcd = LabCluster.Connect(lab, 0))
            {
                // Every node has the installed state before the first re-point (its last transaction's
                // revision: the nodes' own records of it come later and are not states to apply).
                WaitApplied(etcd, Install(etcd, services - 1));
            }
            Post(api, "v1/networks/default/services", new { name = "b.com" });
            Post(api, "v1/networks/default/instances", new { service = "b.com", node = lab.Hosts[1].Name });
            // The daemons are fresh processes: their first re-points run code the JIT has not
            // compiled yet, or not optimised. Measured after 4 untimed re-points: each daemon still
            // compiled ~300 methods/s (0.1-1.3 s of JIT per second, with 3 of them and 3 etcd
            // members on 2 cores), and convergence p50 was 16-27 ms; after 60, 8-9 ms. What is
            // timed is a long-running daemon's steady state; the first re-points of a fresh one are
            // slower (a daemon compiled ahead of time would start warm: issue 10).
            var warmup = repoints < 10 ? 3 : Math.Max(60, repoints / 5);
            progress($"  {repoints} re-points of b.com between hosts 2 and 3 through host 1's API (after {warmup} untimed ones)");
            var call = new List<double>();
            var written = new List<double>();
            var applied = new List<double>();
            var converged = new List<double>();
            var late = 0;
            using var store = LabCluster.Connect(lab, 0);
            string? leaving = null;
            for (var i = -warmup; i < repoints; i++)
            {
                var added = Post(api, "v1/networks/default/instances", new { service = "b.com", node = lab.Hosts[1 + (i + 1) % 2].Name, standby = true });
                var target = added.GetProperty("name").GetString()!;
                // A re-point is measured alone: the standby is wired on every node, and the instance
                // the last re-point left is gone (its node's namespace removed), before the call.
                // Otherwise the re-point waits behind that work on a node (namespace and veth
                // through ip processes, tens of ms on this machine; issue 10 moves it in process).
                var key = store.GetAsync(ClusterKeys.Instance("default", target)).GetAwaiter().GetResult();
                WaitApplied(store, key?.ModRevision ?? 0);
                var gone = Stopwatch.StartNew();
                while (leaving is not null && Relay.Linux.Namespaces.Netns.Exists(leaving) && gone.Elapsed < TimeSpan.FromSeconds(10))
                {
                    Thread.Sleep(10);
                }
                leaving = CurrentNamespace(api);
                var t = Stopwatch.GetTimestamp();
                var at = DateTimeOffset.UtcNow;
                var r = Post(api, "v1/networks/default/services/b.com/migrate", new { to = target });
                if (i < 0)
                {
                    continue;
                }
                if (r.TryGetProperty("appliedAt", out var last) && last.ValueKind == JsonValueKind.String)
                {
                    converged.Add((last.GetDateTimeOffset() - at).TotalMilliseconds);
                }
                call.Add(Stopwatch.GetElapsedTime(t).TotalMilliseconds);
                written.Add(r.GetProperty("repointUs").GetDouble() / 1000);
                applied.Add(r.GetProperty("switchUs").GetDouble() / 1000);
                late += r.TryGetProperty("notApplied", out _) ? 1 : 0;
            }
            return new ConvergenceResult(services, LatencySummary.Of(call), LatencySummary.Of(written), LatencySummary.Of(applied), late) { Converged = converged.Count == 0 ? null : LatencySummary.Of(converged) };
        }
        catch
        {
            ClusterBench.KeepLogs(lab);
            throw;
        }
        finally
        {
            LabCluster.Down(lab, Relay.Engine.NetworkRecord.RemoveAll);
        }
    }

    /// <summary>Services written straight into the store, 42 per transaction (service + two guards each, within etcd's 128 operations).</summary>
    private static long Install(EtcdConnection etcd, int count)
    {
        long revision = 0;
        var camel = new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull };
        const int PerTxn = 42;
        for (var start = 0; start < count; start += PerTxn)
        {
            var txn = new Etcdserverpb.TxnRequest();
            for (var i = start; i < Math.Min(count, start + PerTxn); i++)
            {
                // 10.89.0.0/16 and fd52:656c:6179:2::/64 are the default network's virtual pools; from
                // .100.0 up, clear of the few addresses the API hands out at random below.
                var v4 = $"10.89.{100 + i / 250}.{1 + i % 250}";
                var v6 = $"fd52:656c:6179:2::b:{i:x}";
                var claim = new ServiceClaim($"s{i}.bench", v4, v6, null, "bench");
                Put(txn, ClusterKeys.Service("default", claim.Name), JsonSerializer.Serialize(claim, camel));
                Put(txn, ClusterKeys.AddressesPrefix("default") + v4, "service/" + claim.Name);
                Put(txn, ClusterKeys.AddressesPrefix("default") + v6, "service/" + claim.Name);
            }
            revision = etcd.TxnAsync(txn).GetAwaiter().GetResult().Header.Revision;
        }
        return revision;
    }

    private static void Put(Etcdserverpb.TxnRequest txn, string key, string value)
        => txn.Success.Add(new Etcdserverpb.RequestOp { RequestPut = new Etcdserverpb.PutRequest { Key = Google.Protobuf.ByteString.CopyFromUtf8(key), Value = Google.Protobuf.ByteString.CopyFromUtf8(value) } });

    /// <summary>The namespace of b.com's instance in the balancer now (the one the next re-point leaves).</summary>
    private static string? CurrentNamespace(HttpClient api)
    {
        using var response = api.GetAsync("v1/networks/default/instances").GetAwaiter().GetResult();
        using var doc = JsonDocument.Parse(response.Content.ReadAsStringAsync().GetAwaiter().GetResult());
        var list = doc.RootElement.ValueKind == JsonValueKind.Array ? doc.RootElement : doc.RootElement.GetProperty("instances");
        return list.EnumerateArray()
            .Where(x => x.GetProperty("service").GetString() == "b.com" && x.TryGetProperty("inBalancer", out var b) && b.GetBoolean())
            .Select(x => x.GetProperty("namespace").GetString()).FirstOrDefault();
    }

    private static void WaitApplied(EtcdConnection etcd, long revision)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromMinutes(5))
        {
            var (applied, _) = etcd.GetPrefixAsync(ClusterKeys.AppliedPrefix).GetAwaiter().GetResult();
            if (applied.Count >= 3 && applied.All(kv => AppliedRecord.Parse(kv.Value.ToStringUtf8()).Revision >= revision))
            {
                return;
            }
            Thread.Sleep(50);
        }
        throw new TimeoutException($"the lab's nodes did not apply revision {revision} within 5 minutes");
    }

    internal static JsonElement Post(HttpClient api, string path, object body)
    {
        using var response = api.PostAsJsonAsync(path, body, Json).GetAwaiter().GetResult();
        var text = response.Content.ReadAsStringAsync().GetAwaiter().GetResult();
        if (!response.IsSuccessStatusCode)
        {
            throw new InvalidOperationException($"POST {path}: {(int)response.StatusCode} {text}");
        }
        using var doc = JsonDocument.Parse(text);
        return doc.RootElement.Clone();
    }

    internal static HttpClient Client(string socket)
        => new(new SocketsHttpHandler
        {
            ConnectCallback = async (_, ct) =>
            {
                var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                await s.ConnectAsync(new UnixDomainSocketEndPoint(socket), ct).ConfigureAwait(false);
                return new NetworkStream(s, ownsSocket: true);
            },
        })
        { BaseAddress = new Uri("http://relay/"), Timeout = TimeSpan.FromSeconds(60) };

    /// <summary>The relay binary built next to this benchmark (same configuration).</summary>
    internal static string RelayBinary()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Relay.slnx")))
        {
            dir = dir.Parent;
        }
        var configuration = new DirectoryInfo(AppContext.BaseDirectory).Parent?.Name ?? "Release";
        var path = dir is null ? null : Path.Combine(dir.FullName, "src", "Relay.Cli", "bin", configuration, "net10.0", "relay");
        return path is not null && File.Exists(path) ? path : throw new FileNotFoundException("the relay binary is not built (make build)", path);
    }
}
