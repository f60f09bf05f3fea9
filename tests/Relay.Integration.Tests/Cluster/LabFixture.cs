using Relay.Cluster.Etcd;
using Relay.Cluster.Lab;

namespace Relay.Integration.Tests.Cluster;

/// <summary>
/// A real lab of three simulated hosts, each with a member of one etcd cluster (Debian's etcd),
/// under a unique lab name and a private root directory, removed with everything it made.
/// </summary>
public sealed class LabFixture : IAsyncLifetime
{
    public static readonly string Root = Path.Combine(Path.GetTempPath(), "relay-test-labs");

    public LabRecord Lab { get; private set; } = null!;

    public static string UniqueName() => "t" + Guid.NewGuid().ToString("N")[..7];

    public static Task<LabRecord> UpAsync(int hosts = 3)
        => LabCluster.UpAsync(new LabOptions { Name = UniqueName(), Hosts = hosts, Root = Root, HeartbeatMs = 50, ElectionMs = 500 });

    /// <summary>A lab of three hosts, each with its relay daemon (the built binary), nodes on leases of <paramref name="ttl"/>.</summary>
    public static Task<LabRecord> UpWithDaemonsAsync(TimeSpan ttl, TimeSpan rescheduleAfter = default)
        => LabCluster.UpAsync(new LabOptions
        {
            Name = UniqueName(), Hosts = 3, Root = Root, HeartbeatMs = 50, ElectionMs = 500, RelayBinary = Daemon.DaemonBed.Binary, LeaseTtl = ttl, RescheduleAfter = rescheduleAfter,
        });

    /// <summary>Polls <paramref name="done"/> every 100 ms; fails the test naming <paramref name="what"/> after <paramref name="timeout"/>.</summary>
    public static async Task Until(Func<bool> done, TimeSpan timeout, string what)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!done())
        {
            Assert.True(clock.Elapsed < timeout, $"not within {timeout.TotalSeconds} s: {what}");
            await Task.Delay(100);
        }
    }

    /// <summary>A connection whose preferred member is <paramref name="host"/>'s (0-based), the others after it.</summary>
    public EtcdConnection Connect(int host, TimeSpan? timeout = null) => Connect(Lab, host, timeout);

    public static EtcdConnection Connect(LabRecord lab, int host, TimeSpan? timeout = null) => LabCluster.Connect(lab, host, timeout);

    /// <summary>A connection to <paramref name="host"/>'s member alone (a node that only knows its local member).</summary>
    public static EtcdConnection ConnectOnly(LabRecord lab, int host, TimeSpan? timeout = null) => LabCluster.Connect(lab, host, timeout, onlyLocal: true);

    public async Task InitializeAsync() => Lab = await UpAsync();

    public Task DisposeAsync()
    {
        if (Lab is not null)
        {
            LabCluster.Down(Lab);
        }
        return Task.CompletedTask;
    }
}
