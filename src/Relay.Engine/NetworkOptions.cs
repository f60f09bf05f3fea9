using Relay.Core.Model;

namespace Relay.Engine;

/// <summary>How to create a Relay network. Every range is configurable; the defaults suit one host.</summary>
public sealed record NetworkOptions
{
    /// <summary>The network's name: one DNS label, at most 32 characters. Namespaces are <c>relay-NAME</c> and <c>relay-NAME.INSTANCE</c>.</summary>
    public required string Name { get; init; }

    /// <summary>Instance IPv4 addresses (a /32 each). The first address is the gateway.</summary>
    public string InstancePool4 { get; init; } = "10.88.0.0/16";

    /// <summary>Instance IPv6 addresses (a /128 each). The first address is the gateway.</summary>
    public string InstancePool6 { get; init; } = "fd52:656c:6179:1::/64";

    /// <summary>Virtual (service) IPv4 addresses.</summary>
    public string VirtualPool4 { get; init; } = "10.89.0.0/16";

    /// <summary>Virtual (service) IPv6 addresses.</summary>
    public string VirtualPool6 { get; init; } = "fd52:656c:6179:2::/64";

    /// <summary>Per-client flow addresses, IPv4 (services with <c>Addressing = flow</c>).</summary>
    public string FlowPool4 { get; init; } = "10.90.0.0/16";

    /// <summary>Per-client flow addresses, IPv6.</summary>
    public string FlowPool6 { get; init; } = "fd52:656c:6179:3::/64";

    /// <summary>The network's DNS server.</summary>
    public DnsSettings Dns { get; init; } = new();

    /// <summary>How long TCP flows may drain on an instance that leaves the balancer (0 = cut them at once).</summary>
    public TimeSpan DrainTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How long an instance's process gets between SIGTERM and SIGKILL.</summary>
    public TimeSpan StopGrace { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>Where instance commands' output goes (<c>DIR/NETWORK/INSTANCE.log</c>).</summary>
    public string LogDirectory { get; init; } = "/run/relay/logs";

    /// <summary>Where the record of what Relay created is kept, so that it (and only it) can be removed after a crash.</summary>
    public string RecordDirectory { get; init; } = "/run/relay/networks";

    /// <summary>The node (daemon <c>--node</c>) whose namespaces these are: part of their names; null on a plain single host.</summary>
    public string? Node { get; init; }
}

/// <summary>The DNS server a network runs in its orchestrator namespace, on the gateway addresses.</summary>
public sealed record DnsSettings
{
    /// <summary>Run it (default). Without it instances get no resolv.conf from Relay.</summary>
    public bool Enabled { get; init; } = true;

    /// <summary>Zones the network owns: unknown names under them get NXDOMAIN (with SOA). Service names may live anywhere.</summary>
    public IReadOnlyList<string> Zones { get; init; } = ["relay.internal"];

    /// <summary>TTL of every answer.</summary>
    public TimeSpan Ttl { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Resolvers (ADDRESS or ADDRESS:PORT, [v6]:PORT) that names outside the owned zones are forwarded
    /// to. Empty (default): such names are REFUSED, since the network may well be offline.
    /// </summary>
    public IReadOnlyList<string> Upstreams { get; init; } = [];
}

/// <summary>How clients address a service.</summary>
public static class AddressingModes
{
    /// <summary>Every client uses the service's virtual addresses (default).</summary>
    public const string Service = "service";

    /// <summary>Each client gets flow addresses of its own for the service, from the flow pools, when it asks DNS.</summary>
    public const string Flow = "flow";
}

/// <summary>How to register a service.</summary>
public sealed record ServiceOptions
{
    /// <summary>A DNS name (RFC 1123), case-insensitive.</summary>
    public required string Name { get; init; }

    /// <summary>random (default), round-robin, maglev or source.</summary>
    public string Policy { get; init; } = "random";

    /// <summary>Empty: every protocol to the virtual address reaches an instance. Otherwise only these ports.</summary>
    public IReadOnlyList<PortMapping> Ports { get; init; } = [];

    /// <summary><c>service</c> (default) or <c>flow</c>: per-client flow addresses handed out by DNS (layer-3 services only).</summary>
    public string Addressing { get; init; } = AddressingModes.Service;

    /// <summary>A specific virtual IPv4 address from the pool (default: the next free one).</summary>
    public string? Vip4 { get; init; }

    /// <summary>A specific virtual IPv6 address from the pool (default: the next free one).</summary>
    public string? Vip6 { get; init; }
}

/// <summary>How to add an instance.</summary>
public sealed record InstanceOptions
{
    /// <summary>The instance's name (one DNS label, unique in the network); default SERVICE-N.</summary>
    public string? Name { get; init; }

    /// <summary>A command to run inside the instance's namespace, stopped with the instance.</summary>
    public IReadOnlyList<string>? Command { get; init; }

    /// <summary>
    /// When true the instance is up but not in the balancer: the target of a make-before-break
    /// migration. When false (default) it receives new flows at once.
    /// </summary>
    public bool Standby { get; init; }

    /// <summary>never, on-failure (default) or always: what happens when the command exits.</summary>
    public string? Restart { get; init; }

    /// <summary>A health check (exec, tcp, http or icmp); without one the instance counts as healthy.</summary>
    public Relay.Engine.Api.HealthSpec? Health { get; init; }
}
