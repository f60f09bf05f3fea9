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
