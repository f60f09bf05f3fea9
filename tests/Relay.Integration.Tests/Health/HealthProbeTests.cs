using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Relay.Engine.Health;
using Relay.Integration.Tests.Support;
using Relay.Linux.Namespaces;
using Xunit.Abstractions;

namespace Relay.Integration.Tests.Health;

/// <summary>Probes against real instances: from the orchestrator's namespace to an instance's address, or inside the instance.</summary>
public sealed class HealthProbeTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMilliseconds(500);

    [Fact]
    public async Task TcpProbe_Listening_Succeeds()
    {
        using var bed = new HealthBed();
        bed.Listen(7001, "echo");
        var probe = HealthProbes.Create(new HealthCheck { Type = HealthCheckType.Tcp, Port = 7001 }, bed.Target());

        Assert.True(await probe.CheckAsync(Timeout, CancellationToken.None), probe.LastError);
        Assert.Null(probe.LastError);
    }

    [Fact]
    public async Task TcpProbe_NothingListening_FailsFastWithConnectionRefused()
    {
        using var bed = new HealthBed();
        var probe = HealthProbes.Create(new HealthCheck { Type = HealthCheckType.Tcp, Port = 7001 }, bed.Target());

        var sw = Stopwatch.StartNew();
        var ok = await probe.CheckAsync(TimeSpan.FromSeconds(1), CancellationToken.None);
        sw.Stop();

        output.WriteLine($"refused after {sw.Elapsed.TotalMilliseconds:0.0} ms");
        Assert.False(ok);
        Assert.Equal("connection refused", probe.LastError);
        // A refusal is an answer: it must not wait for the timeout.
        Assert.True(sw.Elapsed < TimeSpan.FromMilliseconds(500), $"took {sw.Elapsed}");
    }

    [Fact]
    public async Task HttpProbe_StatusByServer_200PassesAnd500FailsAndNothingIsRefused()
    {
        using var bed = new HealthBed();
        bed.ListenHttp(7002, "200 OK");
        bed.ListenHttp(7003, "500 Internal Server Error");
        bed.ListenHttp(7005, "302 Found");
        var ok200 = HealthProbe(7002);
        var fail500 = HealthProbe(7003);
        var none = HealthProbe(7004);
        var redirect = HealthProbe(7005);

        Assert.True(await ok200.CheckAsync(Timeout, CancellationToken.None), ok200.LastError);
        Assert.True(await redirect.CheckAsync(Timeout, CancellationToken.None), redirect.LastError);
        Assert.False(await fail500.CheckAsync(Timeout, CancellationToken.None));
        Assert.Equal("status 500", fail500.LastError);
        Assert.False(await none.CheckAsync(Timeout, CancellationToken.None));
        Assert.Equal("connection refused", none.LastError);

        IHealthProbe HealthProbe(int port) => HealthProbes.Create(new HealthCheck { Type = HealthCheckType.Http, Port = port, Path = "/healthz" }, bed.Target());
    }

    [Fact]
    public async Task HttpProbe_Request_GetWithPathHostAndUserAgent()
    {
        using var bed = new HealthBed();
        using var listener = ListenerIn(bed.Instance.Namespace, 7010);
        var probe = HealthProbes.Create(new HealthCheck { Type = HealthCheckType.Http, Port = 7010, Path = "/ready?full=1" }, bed.Target());

        var check = probe.CheckAsync(TimeSpan.FromSeconds(2), CancellationToken.None);
        using (var server = await listener.AcceptAsync().WaitAsync(TimeSpan.FromSeconds(2)))
        {
            var request = await ReadRequestAsync(server);
            Assert.Equal($"GET /ready?full=1 HTTP/1.0\r\nHost: {bed.Instance.Address4}:7010\r\nUser-Agent: relay-health\r\n\r\n", request);
            // The connection comes from the orchestrator (its gateway address), not from an instance.
            Assert.Equal(bed.Network.Gateways.V4, ((IPEndPoint)server.RemoteEndPoint!).Address);
            await server.SendAsync(Encoding.ASCII.GetBytes("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"));
        }
        Assert.True(await check, probe.LastError);
    }

    [Fact]
    public async Task HttpProbe_ServerNeverAnswers_FailsAtTheTimeout()
    {
        using var bed = new HealthBed();
        using var listener = ListenerIn(bed.Instance.Namespace, 7011);
        var probe = HealthProbes.Create(new HealthCheck { Type = HealthCheckType.Http, Port = 7011 }, bed.Target());

        var sw = Stopwatch.StartNew();
        var ok = await probe.CheckAsync(TimeSpan.FromMilliseconds(300), CancellationToken.None);
        sw.Stop();

        Assert.False(ok);
        Assert.Equal("timeout (300ms)", probe.LastError);
        Assert.InRange(sw.Elapsed.TotalMilliseconds, 250, 1000);
    }

    [Fact]
    public async Task IcmpProbe_LinkUpThenDown_SucceedsThenFailsWithinTheTimeout()
    {
        using var bed = new HealthBed();
        var probe = HealthProbes.Create(new HealthCheck { Type = HealthCheckType.Icmp }, bed.Target());
        Assert.True(await probe.CheckAsync(Timeout, CancellationToken.None), probe.LastError);
        Assert.True(await probe.CheckAsync(Timeout, CancellationToken.None), probe.LastError);

        Sh.Ok("ip", "-n", bed.Instance.Namespace, "link", "set", "eth0", "down");
        var sw = Stopwatch.StartNew();
        var ok = await probe.CheckAsync(TimeSpan.FromMilliseconds(300), CancellationToken.None);
        sw.Stop();

        output.WriteLine($"down: {probe.LastError} after {sw.Elapsed.TotalMilliseconds:0.0} ms");
        Assert.False(ok);
        Assert.True(sw.Elapsed < TimeSpan.FromMilliseconds(800), $"took {sw.Elapsed}");
    }

    [Fact]
    public async Task IcmpProbe_ConcurrentProbesToTwoInstances_EachGetsOnlyItsOwnReplies()
    {
        using var bed = new HealthBed(instances: 2);
        var (up, down) = (bed.Instances[0], bed.Instances[1]);
        var upProbes = Enumerable.Range(0, 16).Select(_ => HealthProbes.Create(new HealthCheck { Type = HealthCheckType.Icmp }, bed.Target(up))).ToArray();
        var downProbes = Enumerable.Range(0, 16).Select(_ => HealthProbes.Create(new HealthCheck { Type = HealthCheckType.Icmp }, bed.Target(down))).ToArray();
        // Reachable first, so a failure below can only come from the link going down.
        Assert.All(await Task.WhenAll(downProbes.Select(p => p.CheckAsync(Timeout, CancellationToken.None))), Assert.True);

        Sh.Ok("ip", "-n", down.Namespace, "link", "set", "eth0", "down");
        for (var round = 0; round < 3; round++)
        {
            var ups = upProbes.Select(p => p.CheckAsync(Timeout, CancellationToken.None)).ToArray();
            var downs = downProbes.Select(p => p.CheckAsync(TimeSpan.FromMilliseconds(200), CancellationToken.None)).ToArray();
            Assert.All(await Task.WhenAll(ups), Assert.True);
            Assert.All(await Task.WhenAll(downs), Assert.False);
        }
    }

    [Fact]
    public async Task ExecProbe_TrueAndFalse_ExitCodeDecides()
    {
        using var bed = new HealthBed();
        var yes = HealthProbes.Create(new HealthCheck { Type = HealthCheckType.Exec, Command = ["true"] }, bed.Target());
        var no = HealthProbes.Create(new HealthCheck { Type = HealthCheckType.Exec, Command = ["false"] }, bed.Target());
        var says = HealthProbes.Create(new HealthCheck { Type = HealthCheckType.Exec, Command = ["sh", "-c", "echo not ready >&2; exit 3"] }, bed.Target());

        Assert.True(await yes.CheckAsync(TimeSpan.FromSeconds(5), CancellationToken.None), yes.LastError);
        Assert.False(await no.CheckAsync(TimeSpan.FromSeconds(5), CancellationToken.None));
        Assert.Equal("exit code 1", no.LastError);
        Assert.False(await says.CheckAsync(TimeSpan.FromSeconds(5), CancellationToken.None));
        Assert.Equal("exit code 3: not ready", says.LastError);
    }

    [Fact]
    public async Task ExecProbe_MissingProgram_FailsWithTheReason()
    {
        using var bed = new HealthBed();
        var probe = HealthProbes.Create(new HealthCheck { Type = HealthCheckType.Exec, Command = ["/nonexistent/check"] }, bed.Target());

        Assert.False(await probe.CheckAsync(TimeSpan.FromSeconds(5), CancellationToken.None));

        output.WriteLine(probe.LastError);
        // ip's own exit code and words for it vary between iproute2 versions.
        Assert.Matches(@"^exit code \d+: ", probe.LastError);
        Assert.Contains("/nonexistent/check", probe.LastError);
    }

    [Fact]
    public async Task ExecProbe_RunsInsideTheInstance_SeesItsAddress()
    {
        using var bed = new HealthBed();
        var probe = HealthProbes.Create(new HealthCheck
        {
            Type = HealthCheckType.Exec,
            Command = ["sh", "-c", $"ip -o -4 addr show dev eth0 | grep -qF ' {bed.Instance.Address4}/'"],
        }, bed.Target());

        Assert.True(await probe.CheckAsync(TimeSpan.FromSeconds(5), CancellationToken.None), probe.LastError);
    }

    [Fact]
    public async Task ExecProbe_SleepBeyondTimeout_FailsAtTheTimeoutAndLeavesNoProcess()
    {
        using var bed = new HealthBed();
        // A shell with a child: the whole tree must go, not only the process started.
        var probe = HealthProbes.Create(new HealthCheck { Type = HealthCheckType.Exec, Command = ["sh", "-c", "sleep 5; true"] }, bed.Target());

        var sw = Stopwatch.StartNew();
        var ok = await probe.CheckAsync(TimeSpan.FromMilliseconds(300), CancellationToken.None);
        sw.Stop();

        output.WriteLine($"exec timeout returned after {sw.Elapsed.TotalMilliseconds:0.0} ms");
        Assert.False(ok);
        Assert.Equal("timeout (300ms)", probe.LastError);
        Assert.InRange(sw.Elapsed.TotalMilliseconds, 250, 1500);
        Assert.Empty(Netns.Pids(bed.Instance.Namespace));
    }

    [Fact]
    public async Task ExecProbe_Cancelled_ThrowsAndLeavesNoProcess()
    {
        using var bed = new HealthBed();
        var probe = HealthProbes.Create(new HealthCheck { Type = HealthCheckType.Exec, Command = ["sleep", "5"] }, bed.Target());
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => probe.CheckAsync(TimeSpan.FromSeconds(3), cts.Token));
        Assert.Empty(Netns.Pids(bed.Instance.Namespace));
    }

    private static Socket ListenerIn(string netns, int port)
    {
        using var thread = NetnsThread.Enter(netns);
        return thread.Invoke(() =>
        {
            var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            s.Bind(new IPEndPoint(IPAddress.Any, port));
            s.Listen();
            return s;
        });
    }

    private static async Task<string> ReadRequestAsync(Socket s)
    {
        var buf = new byte[4096];
        var filled = 0;
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        while (!Encoding.ASCII.GetString(buf, 0, filled).Contains("\r\n\r\n", StringComparison.Ordinal))
        {
            var n = await s.ReceiveAsync(buf.AsMemory(filled), SocketFlags.None, cts.Token);
            Assert.True(n > 0, "the probe closed before the end of its request");
            filled += n;
        }
        return Encoding.ASCII.GetString(buf, 0, filled);
    }
}
