using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Relay.Cluster;

/// <summary>
/// Where Relay keeps its desired state in etcd: every key is under <see cref="Root"/>, the version
/// in the path (<c>v1</c>) so that a later layout can live beside this one during an upgrade. The
/// layout is the contract of README.md in this folder; nothing else writes under the root.
/// </summary>
public static class ClusterKeys
{
    /// <summary>The prefix of every key Relay writes.</summary>
    public const string Root = "/relay/v1/";

    /// <summary>Live nodes: <c>nodes/NODE</c>, attached to the node's lease (gone when it expires).</summary>
    public const string NodesPrefix = Root + "nodes/";

    /// <summary>The revision each node last applied to its kernel: <c>applied/NODE</c>, on the node's lease.</summary>
    public const string AppliedPrefix = Root + "applied/";

    /// <summary>Heartbeats: <c>alive/NODE</c>, on the node's lease, written every third of its TTL (what <see cref="NodeLiveness"/> looks for).</summary>
    public const string AlivePrefix = Root + "alive/";

    /// <summary>A node's heartbeat key.</summary>
    public static string Alive(string node) => AlivePrefix + node;

    /// <summary>A node's record.</summary>
    public static string Node(string node) => NodesPrefix + node;

    /// <summary>A node's applied revision.</summary>
    public static string Applied(string node) => AppliedPrefix + node;

    /// <summary>Everything of one network: <c>networks/NET/...</c>.</summary>
    public static string Network(string network) => $"{Root}networks/{network}/";

    /// <summary>The network's own settings (pools, DNS): <c>networks/NET/spec</c>.</summary>
    public static string NetworkSpec(string network) => Network(network) + "spec";

    /// <summary>The services of a network.</summary>
    public static string ServicesPrefix(string network) => Network(network) + "services/";

    /// <summary>One service: <c>networks/NET/services/NAME</c>.</summary>
    public static string Service(string network, string service) => ServicesPrefix(network) + service;

    /// <summary>The instances of a network.</summary>
    public static string InstancesPrefix(string network) => Network(network) + "instances/";

    /// <summary>One instance: <c>networks/NET/instances/ID</c> (its record names its node).</summary>
    public static string Instance(string network, string instance) => InstancesPrefix(network) + instance;

    /// <summary>Health verdicts of a network's instances.</summary>
    public static string HealthPrefix(string network) => Network(network) + "health/";

    /// <summary>One instance's health verdict: <c>networks/NET/health/ID</c>, <c>healthy</c> or <c>unhealthy</c> (text), on its node's lease.</summary>
    public static string Health(string network, string instance) => HealthPrefix(network) + instance;

    /// <summary>Address guards of a network: one key per address in use, so that a transaction can require its absence.</summary>
    public static string AddressesPrefix(string network) => Network(network) + "addresses/";

    /// <summary>The guard of one address: <c>networks/NET/addresses/ADDR</c>, its value the owner.</summary>
    public static string Address(string network, IPAddress address) => AddressesPrefix(network) + address;

    /// <summary>Instance-address blocks of one family claimed by nodes.</summary>
    public static string BlocksPrefix(string network, AddressFamily family) => $"{Network(network)}blocks/{Family(family)}/";

    /// <summary>One block's claim: <c>networks/NET/blocks/ipv4/INDEX</c>, its value the node.</summary>
    public static string Block(string network, AddressFamily family, int index) => BlocksPrefix(network, family) + index.ToString(CultureInfo.InvariantCulture);

    /// <summary><c>ipv4</c> or <c>ipv6</c>.</summary>
    public static string Family(AddressFamily family) => family == AddressFamily.InterNetworkV6 ? "ipv6" : "ipv4";

    /// <summary>The last path segment of <paramref name="key"/> (a node, service or instance name).</summary>
    public static string Leaf(string key) => key[(key.LastIndexOf('/') + 1)..];
}
