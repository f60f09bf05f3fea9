using System.Net;

namespace Relay.Linux.Topology;

/// <summary>
/// The addresses on the orchestrator side of every instance link. Each host-side veth carries the
/// same gateway addresses (/32 and /128), and each instance routes everything via them: one
/// address per instance and no subnet per link (the Calico layout), so nothing is wasted and
/// nothing has to be renumbered when instances come and go.
/// </summary>
/// <param name="V4">The IPv4 gateway (the first address of the instance pool).</param>
/// <param name="V6">The IPv6 gateway (the first address of the instance pool).</param>
public sealed record Gateways(IPAddress V4, IPAddress V6);

/// <summary>How one instance is joined to the orchestrator.</summary>
/// <param name="Namespace">The instance's namespace (<c>relay-NET.INSTANCE</c>).</param>
/// <param name="HostInterface">The orchestrator end of the veth (<c>rvN</c>).</param>
/// <param name="Address4">The instance's IPv4 address (/32 on eth0).</param>
/// <param name="Address6">The instance's IPv6 address (/128 on eth0).</param>
public sealed record InstanceWiring(string Namespace, string HostInterface, IPAddress Address4, IPAddress Address6)
{
    /// <summary>The instance end of the veth, inside the instance's own namespace.</summary>
    public const string InstanceInterface = "eth0";
}
