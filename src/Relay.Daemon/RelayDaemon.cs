using Microsoft.Extensions.Logging;
using Relay.Core.Errors;
using Relay.Daemon.Events;
using Relay.Daemon.Metrics;
using Relay.Daemon.Store;
using Relay.Engine;
using Relay.Engine.Api;

namespace Relay.Daemon;

/// <summary>
/// The daemon's core: the networks it owns, their store, their events and metrics. The API is a
/// thin layer over this. Stopping it (SIGTERM) detaches the networks: the kernel keeps forwarding,
/// and the next start restores them from the store and converges the kernel.
/// </summary>
public sealed partial class RelayDaemon : IDisposable
{
    private readonly Dictionary<string, RelayNetwork> _networks = new(StringComparer.Ordinal);
    private readonly Lock _gate = new();
    private readonly ILoggerFactory _logs;
    private readonly ILogger _log;
    private RelayStore? _store;

    /// <summary>Creates the daemon (nothing happens until <see cref="Start"/>).</summary>
    public RelayDaemon(DaemonOptions options, ILoggerFactory logs)
    {
        Options = options;
        _logs = logs;
        _log = logs.CreateLogger("relay.daemon");
        Events.Published += Metrics.Observe;
    }

    /// <summary>How it was configured.</summary>
    public DaemonOptions Options { get; }

    /// <summary>Every event of every network.</summary>
    public EventBus Events { get; } = new();

    /// <summary>Prometheus metrics.</summary>
    public RelayMetrics Metrics { get; } = new();

    /// <summary>This daemon as a cluster node; null on a single host.</summary>
    public ClusterMembership? Cluster { get; set; }

    /// <summary>The cluster's networks as this node serves them; null on a single host.</summary>
    public Cluster.ClusterNetworks? ClusterNetworks { get; set; }

    /// <summary>
    /// The nodes: the cluster's, or this host alone (a cluster of one, named by <c>--node</c> or the
    /// host name).
    /// </summary>
    public async Task<IReadOnlyList<Api.NodeInfo>> NodesAsync(CancellationToken ct = default)
    {
        var instances = Networks.Sum(n => n.Instances.Count);
        if (Cluster is { } cluster)
        {
            // This node's own instances are the ones its networks hold (until the shared state has them).
            return (await cluster.NodesAsync(ct).ConfigureAwait(false)).Select(n => n.Self ? n with { Instances = Math.Max(n.Instances, instances) } : n).ToArray();
        }
        return [new Api.NodeInfo(Options.Node ?? Environment.MachineName, null, "local", null, instances, 0, null, StartedAt, true)];
    }

    /// <summary>When it started.</summary>
    public DateTimeOffset StartedAt { get; } = DateTimeOffset.UtcNow;

    /// <summary>Networks that could not be restored at start, with why.</summary>
    public IReadOnlyDictionary<string, string> Failed => _failed;

    private readonly Dictionary<string, string> _failed = new(StringComparer.Ordinal);

    /// <summary>Opens the store and restores every network in it.</summary>
    public void Start()
    {
        _store = new RelayStore(Options.DatabasePath);
        Events.PersistTo(_store, reason => LogEventsNotSaved(_log, reason));
        foreach (var stored in _store.Load())
        {
            try
            {
                var options = stored.Options with { LogDirectory = Options.EffectiveLogDirectory, RecordDirectory = Options.RecordDirectory, Node = Options.Node };
                var network = RelayNetwork.Restore(stored with { Options = options }, _logs.CreateLogger("relay.network"), _store);
                Attach(network);
            }
            catch (Exception e) when (e is RelayException or InvalidOperationException or IOException)
            {
                _failed[stored.Options.Name] = e.Message;
                LogRestoreFailed(_log, stored.Options.Name, e.Message);
            }
        }
    }

    /// <summary>The networks, by name.</summary>
    public IReadOnlyList<RelayNetwork> Networks
    {
        get
        {
            lock (_gate)
            {
                return _networks.Values.OrderBy(n => n.Name, StringComparer.Ordinal).ToArray();
            }
        }
    }

    /// <summary>One network, or a NotFound error saying which exist.</summary>
    public RelayNetwork Network(string name)
    {
        lock (_gate)
        {
            return _networks.TryGetValue(name, out var n)
                ? n
                : throw new RelayException(ErrorCode.NotFound, "network", $"no network '{name}'" + (_networks.Count == 0 ? "; create one with 'relay network create' or 'relay apply'" : $" (networks: {string.Join(", ", _networks.Keys.Order())})"));
        }
    }

    /// <summary>
    /// The network a new service goes into. The network called "default" comes into being with
    /// its first service (as Docker's default bridge is simply there); any other must be created.
    /// </summary>
    public RelayNetwork NetworkForNewService(string name)
    {
        lock (_gate)
        {
            if (name == SpecMapping.DefaultNetwork && !_networks.ContainsKey(name))
            {
                return CreateNetwork(new NetworkOptions { Name = name });
            }
            return Network(name);
        }
    }

    /// <summary>True when a network of that name exists.</summary>
    public bool HasNetwork(string name)
    {
        lock (_gate)
        {
            return _networks.ContainsKey(name);
        }
    }

    /// <summary>Creates a network and records it.</summary>
    public RelayNetwork CreateNetwork(NetworkOptions options)
    {
        lock (_gate)
        {
            if (_networks.ContainsKey(options.Name ?? ""))
            {
                throw new RelayException(ErrorCode.Duplicate, "network.name", $"network '{options.Name}' already exists");
            }
            options = options with { LogDirectory = Options.EffectiveLogDirectory, RecordDirectory = Options.RecordDirectory, Node = Options.Node };
            var network = RelayNetwork.Create(options, _logs.CreateLogger("relay.network"), _store);
            _store!.SaveNetwork(network.Options);
            Attach(network);
            Events.Publish(new RelayEvent(DateTimeOffset.UtcNow, network.Name, EventKinds.NetworkUp, network.Name, $"network {network.Name} created", new Dictionary<string, string>()));
            return network;
        }
    }

    /// <summary>Removes a network: everything it created in the kernel, and its records.</summary>
    public void RemoveNetwork(string name)
    {
        RelayNetwork network;
        lock (_gate)
        {
            network = Network(name);
            _networks.Remove(name);
        }
        try
        {
            network.Dispose();
        }
        finally
        {
            _store!.DeleteNetwork(name);
        }
    }

    /// <summary>Removes every network.</summary>
    public IReadOnlyList<string> Down()
    {
        var names = Networks.Select(n => n.Name).ToArray();
        foreach (var name in names)
        {
            RemoveNetwork(name);
        }
        return names;
    }

    /// <summary>Stops: every network is detached, left running in the kernel.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            foreach (var n in _networks.Values)
            {
                try
                {
                    n.Detach();
                }
                catch (Exception e)
                {
                    LogDetachFailed(_log, n.Name, e.Message);
                }
            }
            _networks.Clear();
        }
        Events.Dispose();
        _store?.Dispose();
    }

    private void Attach(RelayNetwork network)
    {
        network.Events += Events.Publish;
        _networks[network.Name] = network;
    }

    [LoggerMessage(EventId = 301, Level = LogLevel.Error, Message = "network {Network} could not be restored: {Reason}")]
    private static partial void LogRestoreFailed(ILogger log, string network, string reason);

    [LoggerMessage(EventId = 302, Level = LogLevel.Warning, Message = "network {Network}: detaching failed: {Reason}")]
    private static partial void LogDetachFailed(ILogger log, string network, string reason);

    [LoggerMessage(EventId = 303, Level = LogLevel.Warning, Message = "events could not be written to the store (they stay in memory): {Reason}")]
    private static partial void LogEventsNotSaved(ILogger log, string reason);
}
