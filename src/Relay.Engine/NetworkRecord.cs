using System.Text.Json;
using System.Text.Json.Serialization;
using Relay.Linux.Namespaces;
using Relay.Linux.Processes;

namespace Relay.Engine;

/// <summary>
/// The record of what a network created on the host: its namespaces. It is rewritten after every
/// change so that after a crash <see cref="RemoveLeftovers"/> removes exactly these and nothing else.
/// </summary>
public sealed record NetworkRecord
{
    /// <summary>The network's name.</summary>
    public required string Network { get; init; }

    /// <summary>Process that owns it (to tell a live network from a leftover).</summary>
    public int OwnerPid { get; init; }

    /// <summary>The orchestrator namespace.</summary>
    public required string Orchestrator { get; init; }

    /// <summary>The node whose namespaces these are (daemon <c>--node</c>; part of their names), or null.</summary>
    public string? Node { get; init; }

    /// <summary>Instance namespaces.</summary>
    public IReadOnlyList<string> Instances { get; init; } = [];

    /// <summary>Commands running in those namespaces (a cluster node's; a restarted daemon adopts them by pid and start time).</summary>
    public IReadOnlyList<RecordedProcess> Processes { get; init; } = [];

    /// <summary>Path of the record of <paramref name="network"/> in <paramref name="directory"/>.</summary>
    public static string PathFor(string directory, string network) => Path.Combine(directory, network + ".json");

    /// <summary>Writes the record atomically (write then rename).</summary>
    public void Save(string directory)
    {
        Directory.CreateDirectory(directory);
        var path = PathFor(directory, Network);
        var tmp = path + ".tmp";
        File.WriteAllText(tmp, JsonSerializer.Serialize(this, RecordJson.Default.NetworkRecord));
        File.Move(tmp, path, overwrite: true);
    }

    /// <summary>Reads the record of <paramref name="network"/>, or null.</summary>
    public static NetworkRecord? Load(string directory, string network)
    {
        var path = PathFor(directory, network);
        return File.Exists(path) ? JsonSerializer.Deserialize(File.ReadAllText(path), RecordJson.Default.NetworkRecord) : null;
    }

    /// <summary>Every record in <paramref name="directory"/>.</summary>
    public static IReadOnlyList<NetworkRecord> LoadAll(string directory)
        => Directory.Exists(directory)
            ? Directory.GetFiles(directory, "*.json").Select(f => JsonSerializer.Deserialize(File.ReadAllText(f), RecordJson.Default.NetworkRecord)).OfType<NetworkRecord>().ToArray()
            : [];

    /// <summary>Removes what every record in <paramref name="directory"/> lists (<see cref="RemoveLeftovers"/>); returns the namespaces removed.</summary>
    public static IReadOnlyList<string> RemoveAll(string directory)
        => LoadAll(directory).SelectMany(r => r.RemoveLeftovers(directory)).ToArray();

    /// <summary>
    /// Removes what the record lists: processes in those namespaces, then the namespaces (which takes
    /// their veths and Relay's nft table with them) and their /etc/netns files, then the record. Only names that are Relay's
    /// (<c>relay-NET</c>, <c>relay-NET.*</c>, or with the record's node <c>relay-NET@NODE</c>,
    /// <c>relay-NET@NODE.*</c>) are touched, even if the file was edited by hand.
    /// Returns the namespaces removed.
    /// </summary>
    public IReadOnlyList<string> RemoveLeftovers(string directory)
    {
        var removed = new List<string>();
        var prefix = NetworkNames.Orchestrator(Network, Node);
        foreach (var ns in Instances.Append(Orchestrator).Distinct())
        {
            if (ns != prefix && !ns.StartsWith(prefix + ".", StringComparison.Ordinal))
            {
                continue;
            }
            if (Netns.Exists(ns))
            {
                NamespacedProcess.KillNamespace(ns);
                Netns.Delete(ns);
                removed.Add(ns);
            }
            NetnsEtc.Remove(ns);
        }
        File.Delete(PathFor(directory, Network));
        return removed;
    }
}

/// <summary>A command an instance runs: its pid and start time (/proc/PID/stat field 22), its identity together.</summary>
/// <param name="Instance">The instance.</param>
/// <param name="Pid">Process id.</param>
/// <param name="StartTime">Start time in clock ticks since boot.</param>
public sealed record RecordedProcess(string Instance, int Pid, long StartTime);

/// <summary>How Relay names what it creates for a network.</summary>
public static class NetworkNames
{
    /// <summary>
    /// The orchestrator namespace: <c>relay-NET</c>, or <c>relay-NET@NODE</c> for a daemon given a node
    /// name (so that the daemons of a lab's simulated hosts, which share one machine's namespace
    /// names, never collide; network and node names have neither '@' nor '.').
    /// </summary>
    public static string Orchestrator(string network, string? node = null) => node is null ? "relay-" + network : $"relay-{network}@{node}";

    /// <summary>An instance namespace: <c>relay-NET.INSTANCE</c> or <c>relay-NET@NODE.INSTANCE</c> (network names have no dots, so this never names another network's orchestrator).</summary>
    public static string Instance(string network, string instance, string? node = null) => $"{Orchestrator(network, node)}.{instance}";

    /// <summary>
    /// The host-side veth of instance number <paramref name="index"/>: <c>rv</c> + decimal index, at most
    /// 2 + 10 = 12 bytes, under the kernel's 15-byte IFNAMSIZ limit. It exists only in the orchestrator
    /// namespace, so it cannot collide with the host's interfaces or another network's.
    /// </summary>
    public static string HostInterface(int index) => Relay.Core.Dataplane.NftNames.HostInterfacePrefix + index.ToString(System.Globalization.CultureInfo.InvariantCulture);
}

[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
[JsonSerializable(typeof(NetworkRecord))]
internal sealed partial class RecordJson : JsonSerializerContext;
