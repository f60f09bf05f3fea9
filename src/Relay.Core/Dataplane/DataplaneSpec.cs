using System.Net;
using Relay.Core.LoadBalancing;
using Relay.Core.Model;

namespace Relay.Core.Dataplane;

/// <summary>An instance as the data plane sees it: where to send a flow.</summary>
/// <param name="Instance">The instance's name: its identity in the Maglev table.</param>
/// <param name="Address4">Its IPv4 address.</param>
/// <param name="Address6">Its IPv6 address.</param>
public sealed record DataplaneBackend(string Instance, IPAddress Address4, IPAddress Address6);

/// <summary>A service as the data plane sees it.</summary>
/// <param name="Name">Canonical service name (for comments and errors only).</param>
/// <param name="Vip4">Virtual IPv4 address.</param>
/// <param name="Vip6">Virtual IPv6 address.</param>
/// <param name="Policy">How a backend is chosen for a new flow.</param>
/// <param name="MaglevTableSize">Slots of the lookup table (Maglev and Source policies).</param>
/// <param name="Ports">Empty: every protocol to the virtual address is balanced (layer 3). Otherwise only these ports.</param>
/// <param name="Backends">Instances in the balancer, in slot order (round-robin and random pick slot i = backend i).</param>
public sealed record DataplaneService(
    string Name,
    IPAddress Vip4,
    IPAddress Vip6,
    LoadBalancingPolicy Policy,
    int MaglevTableSize,
    IReadOnlyList<PortMapping> Ports,
    IReadOnlyList<DataplaneBackend> Backends);

/// <summary>The orchestrator end of an instance's veth and the addresses the instance may send from.</summary>
/// <param name="HostInterface">Interface name in the orchestrator namespace.</param>
/// <param name="Address4">The instance's IPv4 address.</param>
/// <param name="Address6">The instance's IPv6 address.</param>
public sealed record DataplaneLink(string HostInterface, IPAddress Address4, IPAddress Address6);

/// <summary>
/// A per-client flow address (the seed's first prototype): client <see cref="Client4"/> reaches a
/// service through an abstract address of its own, translated to one backend. Each flow can be
/// re-pointed on its own, and counts the packets and bytes its client sends.
/// </summary>
/// <param name="Id">Identity of the flow (unique in the network).</param>
/// <param name="Client4">The client instance's IPv4 address.</param>
/// <param name="Client6">The client instance's IPv6 address.</param>
/// <param name="Flow4">The flow's abstract IPv4 address.</param>
/// <param name="Flow6">The flow's abstract IPv6 address.</param>
/// <param name="Backend4">The instance it is translated to (IPv4).</param>
/// <param name="Backend6">The instance it is translated to (IPv6).</param>
public sealed record DataplaneFlow(string Id, IPAddress Client4, IPAddress Client6, IPAddress Flow4, IPAddress Flow6, IPAddress Backend4, IPAddress Backend6);

/// <summary>Everything the data plane of one network must express.</summary>
public sealed record DataplaneSpec(IReadOnlyList<DataplaneService> Services, IReadOnlyList<DataplaneLink> Links, IReadOnlyList<DataplaneFlow>? Flows = null)
{
    /// <summary>Nothing: an empty table with its fixed chains.</summary>
    public static DataplaneSpec Empty { get; } = new([], []);
}
