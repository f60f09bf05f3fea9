using System.Diagnostics;
using Relay.Integration.Tests.Support;

namespace Relay.Integration.Tests.Daemon;

/// <summary>Through the real daemon and CLI: while a migrated instance drains, `relay instance ls` says how many TCP connections hold it.</summary>
public sealed class DrainTests
{
    private static string Desired(string network) => $"""
        networks:
          - name: {network}
        services:
          - network: {network}
            name: d.test
          - network: {network}
            name: c.test
        instances:
          - network: {network}
            service: c.test
            name: c-1
          - network: {network}
            service: d.test
            name: d-1
            command: [socat, "TCP-LISTEN:7000,fork,reuseaddr", "EXEC:cat"]
            health:
              type: tcp
              port: 7000
              interval: 100ms
          - network: {network}
            service: d.test
            name: d-2
            standby: true
            command: [socat, "TCP-LISTEN:7000,fork,reuseaddr", "EXEC:cat"]
            health:
              type: tcp
              port: 7000
              interval: 100ms
        """;

    [Fact]
    public async Task A_draining_instance_shows_its_open_connections_and_goes_when_they_close()
    {
        await using var bed = new DaemonBed();
        bed.Ok("apply", "-f", Live.Write(bed, "net.yaml", Desired(bed.Network)));
        Live.WaitUntil(() => Live.Instances(bed).All(i => i.GetProperty("health").GetString() is "healthy" or "none"), TimeSpan.FromSeconds(30), () => bed.Ok("instance", "ls"));
        var vip = Live.Vip4(bed, "d.test");

        // One TCP connection from the client, held open by socat reading our stdin.
        var psi = new ProcessStartInfo("ip", ["netns", "exec", bed.InstanceNamespace("c-1"), "socat", "-", $"TCP:{vip}:7000"])
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        using var conn = Process.Start(psi)!;
        try
        {
            await conn.StandardInput.WriteLineAsync("hello");
            await conn.StandardInput.FlushAsync();
            Assert.Equal("hello", await conn.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(10)));

            bed.Ok("migrate", "d.test", "--to", "d-2", "--drain", "60s");
            Live.WaitUntil(() => Live.Instance(bed, "d-1").TryGetProperty("openTcpFlows", out var open) && open.ValueKind == System.Text.Json.JsonValueKind.Number && open.GetInt32() == 1,
                TimeSpan.FromSeconds(10), () => bed.Ok("instance", "ls", "-o", "json"));
            var d1 = Live.Instance(bed, "d-1");
            Assert.Equal("draining", d1.GetProperty("state").GetString());
            Assert.True(d1.GetProperty("drainUntil").GetDateTimeOffset() > DateTimeOffset.UtcNow.AddSeconds(30));
            Assert.Matches(@"(?m)^d-1\s+d\.test\s+draining \(1 tcp\)\s", bed.Ok("instance", "ls"));

            // The old connection still works on d-1.
            await conn.StandardInput.WriteLineAsync("still d-1");
            await conn.StandardInput.FlushAsync();
            Assert.Equal("still d-1", await conn.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(10)));
        }
        finally
        {
            // EOF on stdin: socat closes the connection and exits.
            conn.StandardInput.Close();
            if (!conn.WaitForExit(TimeSpan.FromSeconds(10)))
            {
                conn.Kill(entireProcessTree: true);
            }
        }
        // Closed: the drain ends long before its deadline and d-1 goes.
        Live.WaitUntil(() => Live.Instances(bed).All(i => i.GetProperty("name").GetString() != "d-1"), TimeSpan.FromSeconds(10), () => bed.Ok("instance", "ls"));
    }
}
