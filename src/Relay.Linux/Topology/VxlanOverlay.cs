using System.Net;
using Relay.Core.Errors;
using Relay.Core.Overlay;
using Relay.Linux.Processes;

namespace Relay.Linux.Topology;

/// <summary>
/// Applies <see cref="VxlanPlan"/> to the kernel: the orchestrator's VXLAN device (its UDP socket
/// in the host's namespace, the device itself only in the orchestrator's) and the static FDB,
/// neighbour and route entries towards each peer node. Entries are installed in their idempotent
/// <c>replace</c> form, so a sync after a restart or a failed step converges without reading the
/// kernel first.
/// </summary>
public static class VxlanOverlay
{
    /// <summary>
    /// Creates the device in <paramref name="orchestrator"/>; its socket lives in
    /// <paramref name="hostNamespace"/> (null: the namespace this process runs in, the host's).
    /// </summary>
    public static void Create(string? hostNamespace, string orchestrator, string network, string node, IPAddress underlay, int mtu)
    {
        IpCommand.Batch(hostNamespace, [VxlanPlan.CreateDevice(orchestrator, network, node, underlay, mtu)]);
        try
        {
            IpCommand.Batch(orchestrator, VxlanPlan.ConfigureDevice(node));
        }
        catch
        {
            Remove(orchestrator);
            throw;
        }
    }

    /// <summary>True when the orchestrator has its VXLAN device.</summary>
    public static bool Exists(string orchestrator) => TopologyBuilder.LinkExists(orchestrator, VxlanPlan.DeviceName);

    /// <summary>Removes the device (and with it every FDB, neighbour and route entry through it).</summary>
    public static void Remove(string orchestrator)
    {
        if (Exists(orchestrator))
        {
            IpCommand.Batch(orchestrator, [$"link delete {VxlanPlan.DeviceName}"]);
        }
    }

    /// <summary>
    /// Goes from the peers of <paramref name="before"/> to those of <paramref name="after"/>: entries of
    /// departed peers (and blocks) are deleted, every current entry is (re)installed.
    /// </summary>
    public static void Sync(string orchestrator, IEnumerable<VxlanPeer> before, IEnumerable<VxlanPeer> after)
    {
        var (remove, install) = VxlanPlan.Diff(before, after);
        foreach (var entry in remove)
        {
            try
            {
                Run(orchestrator, entry.Tool, [entry.Delete]);
            }
            catch (RelayException)
            {
                // Already gone (the device was re-created, or a route went with its neighbour).
            }
        }
        // bridge before ip: the neighbour entry's MAC must have somewhere to go once routes use it.
        Run(orchestrator, "bridge", install.Where(e => e.Tool == "bridge").Select(e => e.Replace).ToArray());
        Run(orchestrator, "ip", install.Where(e => e.Tool == "ip").Select(e => e.Replace).ToArray());
    }

    private static void Run(string netns, string tool, IReadOnlyList<string> commands)
    {
        if (commands.Count == 0)
        {
            return;
        }
        if (tool == "ip")
        {
            IpCommand.Batch(netns, commands);
            return;
        }
        // `bridge` takes the same -n/-batch arguments as `ip`; it is a separate program of iproute2.
        IpCommand.RunProgram("bridge", ["-n", netns, "-batch", "-"], string.Join('\n', commands) + "\n");
    }
}
