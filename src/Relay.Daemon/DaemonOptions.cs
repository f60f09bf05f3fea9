namespace Relay.Daemon;

/// <summary>Where the daemon keeps things and listens. Defaults suit a systemd service.</summary>
public sealed record DaemonOptions
{
    /// <summary>The API's unix socket (mode 0600, owner root).</summary>
    public string Socket { get; init; } = "/run/relay/relay.sock";

    /// <summary>The store (SQLite, WAL) and other state.</summary>
    public string StateDirectory { get; init; } = "/var/lib/relay";

    /// <summary>Instance command logs.</summary>
    public string? LogDirectory { get; init; }

    /// <summary>Records of created namespaces (for <c>relay down</c> after a crash).</summary>
    public string RecordDirectory { get; init; } = "/run/relay/networks";

    /// <summary>Largest request body accepted.</summary>
    public long MaxRequestBytes { get; init; } = 4 << 20;

    /// <summary>This node's name in a cluster (<c>--node</c>); null on a single host.</summary>
    public string? Node { get; init; }

    /// <summary>The cluster's etcd endpoints (<c>--etcd</c>); empty: single host, embedded store.</summary>
    public IReadOnlyList<string> Etcd { get; init; } = [];

    /// <summary>The address other nodes reach this one at (<c>--underlay</c>).</summary>
    public string? Underlay { get; init; }

    /// <summary>The node lease's time to live (<c>--lease-ttl</c>).</summary>
    public TimeSpan LeaseTtl { get; init; } = TimeSpan.FromSeconds(3);

    /// <summary>
    /// How long a lost node's instances wait before they start again on a live node
    /// (<c>--reschedule-after</c>): 0, the default, moves them as soon as the lease expired (as
    /// Swarm does); longer rides out a node that comes back soon (Kubernetes waits 5 minutes).
    /// They leave the balancers at once either way.
    /// </summary>
    public TimeSpan RescheduleAfter { get; init; }

    /// <summary>True when the daemon is a node of a cluster.</summary>
    public bool Clustered => Etcd.Count > 0;

    /// <summary>The store's path.</summary>
    public string DatabasePath => Path.Combine(StateDirectory, "relay.db");

    /// <summary>The directory for instance logs.</summary>
    public string EffectiveLogDirectory => LogDirectory ?? Path.Combine(StateDirectory, "logs");
}
