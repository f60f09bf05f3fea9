using System.Diagnostics;
using Relay.Engine;
using Relay.Engine.Health;
using Relay.Integration.Tests.Support;
using Relay.Linux.Processes;

namespace Relay.Integration.Tests.Health;

/// <summary>
/// A test network with one service and its instances for health probes: the probes run from the
/// network's orchestrator to the instances, as the engine runs them. Listeners started here are
/// socat processes inside an instance; Dispose kills them and removes the network even when the
/// test failed.
/// </summary>
internal sealed class HealthBed : IDisposable
{
    public const string Service = "hc.test";

    private readonly TestNetwork _network;
    private readonly List<NamespacedProcess> _processes = [];

    public HealthBed(int instances = 1)
    {
        _network = new TestNetwork();
        try
        {
            Network.AddService(new ServiceOptions { Name = Service });
            Instances = Enumerable.Range(0, instances).Select(_ => Network.AddInstance(Service)).ToArray();
        }
        catch
        {
            _network.Dispose();
            throw;
        }
    }

    public RelayNetwork Network => _network.Network;

    public IReadOnlyList<InstanceInfo> Instances { get; }

    public InstanceInfo Instance => Instances[0];

    public ProbeTarget Target(InstanceInfo? instance = null)
    {
        var i = instance ?? Instance;
        return new ProbeTarget(i.Namespace, Network.OrchestratorThread, i.Address4);
    }

    /// <summary>socat on <paramref name="port"/> in the instance, answering each connection with <paramref name="system"/>'s output; returns once it listens.</summary>
    public NamespacedProcess Listen(int port, string system, InstanceInfo? instance = null)
    {
        var ns = (instance ?? Instance).Namespace;
        var p = NamespacedProcess.Start(ns, ["socat", $"TCP-LISTEN:{port},fork,reuseaddr", "SYSTEM:" + system]);
        lock (_processes)
        {
            _processes.Add(p);
        }
        WaitListening(ns, port, p);
        return p;
    }

    /// <summary>
    /// An HTTP listener answering every request with <paramref name="status"/> (socat unescapes
    /// once: \\r reaches printf as \r). The answer waits for the request line: a child that
    /// exits before socat hands it the request makes socat fail on EPIPE and drop the answer.
    /// </summary>
    public NamespacedProcess ListenHttp(int port, string status, InstanceInfo? instance = null)
        => Listen(port, $"read line; printf \\\"HTTP/1.0 {status}\\\\r\\\\n\\\\r\\\\nbody\\\"", instance);

    private static void WaitListening(string ns, int port, NamespacedProcess p)
    {
        var until = Stopwatch.GetTimestamp() + 5 * Stopwatch.Frequency;
        while (Sh.Run("ip", "netns", "exec", ns, "ss", "-Hltn", $"sport = :{port}").Stdout.Trim().Length == 0)
        {
            if (p.HasExited || Stopwatch.GetTimestamp() > until)
            {
                Assert.Fail($"socat on port {port} in {ns} does not listen: {string.Join(" | ", p.RecentOutput())}");
            }
            Thread.Sleep(10);
        }
    }

    /// <summary>Kills every process in the instance (socat and its per-connection children).</summary>
    public static void KillAll(InstanceInfo instance)
    {
        NamespacedProcess.KillNamespace(instance.Namespace);
        var until = Stopwatch.GetTimestamp() + 5 * Stopwatch.Frequency;
        while (Relay.Linux.Namespaces.Netns.Pids(instance.Namespace).Count > 0 && Stopwatch.GetTimestamp() < until)
        {
            Thread.Sleep(5);
        }
    }

    public void Dispose()
    {
        try
        {
            foreach (var i in Instances)
            {
                if (Relay.Linux.Namespaces.Netns.Exists(i.Namespace))
                {
                    NamespacedProcess.KillNamespace(i.Namespace);
                }
            }
            lock (_processes)
            {
                foreach (var p in _processes)
                {
                    p.WaitForExitAsync().Wait(TimeSpan.FromSeconds(5));
                    p.Dispose();
                }
            }
        }
        finally
        {
            _network.Dispose();
        }
    }
}
