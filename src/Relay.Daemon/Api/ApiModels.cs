using Relay.Engine;

namespace Relay.Daemon.Api;

/// <summary>An error as the API returns it (any 4xx/5xx).</summary>
/// <param name="Error">One sentence, or a list of every problem.</param>
/// <param name="Errors">Each problem with its code and field.</param>
public sealed record ApiError(string Error, IReadOnlyList<ApiFieldError>? Errors = null);

/// <summary>One problem of a request.</summary>
public sealed record ApiFieldError(string Code, string Field, string Message);

/// <summary>The daemon's state at a glance.</summary>
public sealed record StatusResponse(string Version, DateTimeOffset StartedAt, string Socket, IReadOnlyList<NetworkSummary> Networks, IReadOnlyDictionary<string, string> Failed, ClusterStatus? Cluster = null);

/// <summary>A node of the cluster, as <c>relay node ls</c> shows it.</summary>
/// <param name="Name">The node's name.</param>
/// <param name="Underlay">The address other nodes reach it at (null on a single host).</param>
/// <param name="State"><c>ready</c> (its lease is alive), <c>lost</c> (its lease expired while this daemon watched) or <c>local</c> (single host).</param>
/// <param name="LeaseAgeSeconds">Seconds since it last renewed its lease.</param>
/// <param name="Instances">Instances on it, from the cluster's state.</param>
/// <param name="AppliedRevision">The etcd revision its kernel reflects (0: none recorded yet).</param>
/// <param name="Lag">Revisions behind the state this daemon has seen.</param>
/// <param name="Since">When it started, or when it was lost.</param>
/// <param name="Self">True for the node of the daemon that answers.</param>
public sealed record NodeInfo(string Name, string? Underlay, string State, double? LeaseAgeSeconds, int Instances, long AppliedRevision, long? Lag, DateTimeOffset Since, bool Self)
{
    /// <summary>When its kernel took <see cref="AppliedRevision"/>, by its own clock (null: not recorded).</summary>
    public DateTimeOffset? AppliedAt { get; init; }
}

/// <summary>One etcd member.</summary>
public sealed record EtcdMemberInfo(string Name, string ClientUrl, bool Leader, string State, long? Revision);

/// <summary>The cluster at a glance: etcd, this node's watch, every node.</summary>
public sealed record ClusterStatus(string Node, IReadOnlyList<string> Etcd, IReadOnlyList<EtcdMemberInfo> Members, bool WatchConnected, long WatchRevision, string? LastError, IReadOnlyList<NodeInfo> Nodes);

/// <summary>A network at a glance.</summary>
public sealed record NetworkSummary(string Name, string Namespace, string Gateway4, string Gateway6, int Services, int Instances, int Healthy, int Flows);

/// <summary>POST .../services/{name}/migrate.</summary>
/// <param name="From">The instance that leaves (default: the only active one).</param>
/// <param name="To">The instance that takes over (default: a fresh one with the same command).</param>
/// <param name="Drain">How long TCP flows may drain ("30s"; "0" cuts them).</param>
public sealed record MigrateRequest(string? From = null, string? To = null, string? Drain = null);

/// <summary>What a migration did.</summary>
public sealed record MigrateResponse(string Service, string From, string To, double RepointUs, double SwitchUs, int StaleFlowsDeleted)
{
    /// <summary>In a cluster: the etcd revision of the re-point.</summary>
    public long? Revision { get; init; }

    /// <summary>In a cluster: live nodes that had not applied the re-point when the call gave up waiting (null: all had).</summary>
    public IReadOnlyList<string>? NotApplied { get; init; }

    /// <summary>
    /// In a cluster: from the call to the moment the last live node's kernel held the re-point, by
    /// the nodes' own records of when they applied it (meaningful as far as the hosts' clocks agree;
    /// one clock in a lab). <see cref="SwitchUs"/> adds the time their records took to reach this node.
    /// </summary>
    public double? ConvergedUs { get; init; }

    /// <summary>In a cluster: when the last live node's kernel held the re-point, by that node's clock.</summary>
    public DateTimeOffset? AppliedAt { get; init; }
}

/// <summary>POST .../flows/repoint.</summary>
public sealed record RepointRequest(string Client, string Service, string Instance);

/// <summary>A name as DNS would answer it.</summary>
public sealed record ResolveResponse(string Name, string Network, string Vip4, string Vip6, IReadOnlyList<string> Ports, string Addressing, IReadOnlyList<string> Instances);

/// <summary>GET .../instances/{name}/logs.</summary>
public sealed record LogsResponse(string Instance, IReadOnlyList<string> Lines);

/// <summary>POST /v1/down.</summary>
public sealed record DownResponse(IReadOnlyList<string> Removed, bool Stopping = false);
