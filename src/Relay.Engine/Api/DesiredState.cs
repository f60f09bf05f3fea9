namespace Relay.Engine.Api;

/// <summary>
/// What <c>relay apply -f FILE</c> asks for: the whole desired state of the networks it names.
/// Applying it creates what is missing, changes what differs and removes, inside those networks,
/// the services and instances the file no longer lists. Applying the same document twice changes
/// nothing. Plain data (strings, numbers, lists): the YAML file, the JSON API body and this type
/// have the same shape.
/// </summary>
public sealed record DesiredState
{
    /// <summary>Networks (created when missing; their pools cannot change once created).</summary>
    public IReadOnlyList<NetworkSpec> Networks { get; init; } = [];

    /// <summary>Services, each in a network.</summary>
    public IReadOnlyList<ServiceSpec> Services { get; init; } = [];

    /// <summary>Instances, each of a service.</summary>
    public IReadOnlyList<InstanceSpec> Instances { get; init; } = [];
}

/// <summary>A network in a desired state. Null fields take the defaults of <see cref="NetworkOptions"/>.</summary>
public sealed record NetworkSpec
{
    /// <summary>Network name (one DNS label).</summary>
    public string? Name { get; init; }

    /// <summary>Instance IPv4 pool.</summary>
    public string? InstancePool4 { get; init; }

    /// <summary>Instance IPv6 pool.</summary>
    public string? InstancePool6 { get; init; }

    /// <summary>Virtual IPv4 pool.</summary>
    public string? VirtualPool4 { get; init; }

    /// <summary>Virtual IPv6 pool.</summary>
    public string? VirtualPool6 { get; init; }

    /// <summary>Flow IPv4 pool.</summary>
    public string? FlowPool4 { get; init; }

    /// <summary>Flow IPv6 pool.</summary>
    public string? FlowPool6 { get; init; }

    /// <summary>Drain timeout as a duration ("30s", "500ms", "0").</summary>
    public string? Drain { get; init; }

    /// <summary>DNS settings.</summary>
    public DnsSpec? Dns { get; init; }
}

/// <summary>DNS settings of a network.</summary>
public sealed record DnsSpec
{
    /// <summary>False turns the server off.</summary>
    public bool? Enabled { get; init; }

    /// <summary>Owned zones.</summary>
    public IReadOnlyList<string>? Zones { get; init; }

    /// <summary>TTL as a duration ("5s").</summary>
    public string? Ttl { get; init; }

    /// <summary>Upstream resolvers (ADDRESS or ADDRESS:PORT).</summary>
    public IReadOnlyList<string>? Upstreams { get; init; }
}

/// <summary>A service in a desired state.</summary>
public sealed record ServiceSpec
{
    /// <summary>Network name (default "default").</summary>
    public string? Network { get; init; }

    /// <summary>DNS name.</summary>
    public string? Name { get; init; }

    /// <summary>random | round-robin | maglev | source.</summary>
    public string? Policy { get; init; }

    /// <summary>Port mappings as "PORT[:TARGET][/tcp|/udp]".</summary>
    public IReadOnlyList<string>? Ports { get; init; }

    /// <summary>service | flow.</summary>
    public string? Addressing { get; init; }

    /// <summary>A fixed virtual IPv4 address.</summary>
    public string? Vip4 { get; init; }

    /// <summary>A fixed virtual IPv6 address.</summary>
    public string? Vip6 { get; init; }
}

/// <summary>An instance in a desired state.</summary>
public sealed record InstanceSpec
{
    /// <summary>Network name (default "default").</summary>
    public string? Network { get; init; }

    /// <summary>Its service.</summary>
    public string? Service { get; init; }

    /// <summary>Its name (required in files: that is what makes apply idempotent).</summary>
    public string? Name { get; init; }

    /// <summary>Command and arguments.</summary>
    public IReadOnlyList<string>? Command { get; init; }

    /// <summary>never | on-failure | always (default on-failure when there is a command).</summary>
    public string? Restart { get; init; }

    /// <summary>Health check.</summary>
    public HealthSpec? Health { get; init; }

    /// <summary>True: up but not in the balancer (a migration target).</summary>
    public bool? Standby { get; init; }

    /// <summary>The node it runs on, in a cluster (default: the node of the daemon that is asked).</summary>
    public string? Node { get; init; }
}

/// <summary>A health check in a desired state.</summary>
public sealed record HealthSpec
{
    /// <summary>exec | tcp | http | icmp.</summary>
    public string? Type { get; init; }

    /// <summary>exec: the command, run inside the instance.</summary>
    public IReadOnlyList<string>? Command { get; init; }

    /// <summary>tcp, http: the port on the instance.</summary>
    public int? Port { get; init; }

    /// <summary>http: the path (default "/").</summary>
    public string? Path { get; init; }

    /// <summary>Time between checks ("1s").</summary>
    public string? Interval { get; init; }

    /// <summary>Time a check may take ("1s").</summary>
    public string? Timeout { get; init; }

    /// <summary>Consecutive successes to become healthy (default 1).</summary>
    public int? HealthyThreshold { get; init; }

    /// <summary>Consecutive failures to become unhealthy (default 3).</summary>
    public int? UnhealthyThreshold { get; init; }
}
