using System.Text.Json;
using Relay.Cluster.Lab;
using Relay.Integration.Tests.Daemon;
using Relay.Integration.Tests.Support;
using Xunit.Abstractions;

namespace Relay.Integration.Tests.Cluster;

/// <summary><c>relay demo --hosts 3</c> as a user runs it: the seed scenario across a lab, a host lost halfway, the lab gone after.</summary>
[Collection(HostStateCollection.Name)]
public sealed class ClusterDemoTests(ITestOutputHelper output)
{
    [Fact]
    public void DemoAcrossThreeHosts_MovesWithNothingLost_FailsOverWhenAHostIsLost_AndRemovesItsLab()
    {
        var r = Sh.RunWithTimeout(TimeSpan.FromMinutes(4), DaemonBed.Binary, "demo", "--hosts", "3", "--migrations", "6", "--pause-ms", "50");
        output.WriteLine(r.Stdout);
        Assert.True(r.ExitCode == 0, $"exit {r.ExitCode}: {r.Stderr}\n{r.Stdout}");
        Assert.DoesNotContain("   at ", r.Stderr + r.Stdout);
        using var summary = JsonDocument.Parse(r.Stdout.Trim().Split('\n')[^1]);
        var s = summary.RootElement;
        Assert.Equal(3, s.GetProperty("hosts").GetInt32());
        Assert.Equal(6, s.GetProperty("migrations").GetInt32());
        Assert.Equal(0, s.GetProperty("lost").GetInt64());
        Assert.True(s.GetProperty("sent").GetInt64() > 100);
        Assert.Equal(0, s.GetProperty("udpLost").GetInt64());
        // TTL 3 s + 1 s, plus an election when the lost host's etcd member led (measured: up to 5.6 s).
        var failover = s.GetProperty("failoverMs").GetDouble();
        Assert.InRange(failover, 100, 7000);
        Assert.StartsWith("demo-", s.GetProperty("lostHost").GetString());
        Assert.Null(LabCluster.Find("demo"));
    }
}
