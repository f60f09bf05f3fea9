using YamlDotNet.Core;

namespace Relay.Cli.Config;

/// <summary>
/// The daemon's settings as a file (<c>relay daemon --config FILE</c>), for the cluster flags a
/// systemd unit would otherwise repeat on its command line:
/// <code>
/// node: host1
/// etcd: [http://10.0.0.1:2379, http://10.0.0.2:2379, http://10.0.0.3:2379]
/// underlay: 10.0.0.1
/// leaseTtl: 3s
/// </code>
/// A flag given on the command line wins over the file. Only the shape is checked here (known keys,
/// values of the right kind), every problem at once with its line; what the values mean (a valid
/// address, a duration in range, a node name) is checked by the daemon's own validation, the same
/// for flags and file.
/// </summary>
public sealed record DaemonConfigFile
{
    /// <summary>The keys a file may have, with the flag each stands for.</summary>
    public static readonly IReadOnlyDictionary<string, string> Keys = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["node"] = "--node",
        ["etcd"] = "--etcd",
        ["underlay"] = "--underlay",
        ["leaseTtl"] = "--lease-ttl",
        ["rescheduleAfter"] = "--reschedule-after",
        ["socket"] = "--socket",
        ["stateDir"] = "--state-dir",
        ["recordDir"] = "--record-dir",
    };

    /// <summary>This host's node name (<c>--node</c>).</summary>
    public string? Node { get; init; }

    /// <summary>The endpoints (a list, or one comma-separated value).</summary>
    public IReadOnlyList<string>? Etcd { get; init; }

    /// <summary>The address other nodes reach this one at (<c>--underlay</c>).</summary>
    public string? Underlay { get; init; }

    /// <summary>The node lease's TTL as written (<c>--lease-ttl</c>).</summary>
    public string? LeaseTtl { get; init; }

    /// <summary>The wait before a lost node's instances start elsewhere, as written (<c>--reschedule-after</c>).</summary>
    public string? RescheduleAfter { get; init; }

    /// <summary>The API socket (<c>--socket</c>).</summary>
    public string? Socket { get; init; }

    /// <summary>The state directory (<c>--state-dir</c>).</summary>
    public string? StateDir { get; init; }

    /// <summary>The record directory (<c>--record-dir</c>).</summary>
    public string? RecordDir { get; init; }

    /// <summary>Reads <paramref name="yaml"/>; never throws for bad input: the problems come back, ordered by line.</summary>
    public static (DaemonConfigFile Config, IReadOnlyList<YamlError> Errors) Parse(string yaml)
    {
        var errors = new List<YamlError>();
        IReadOnlyList<YamlTreeDocument> documents;
        try
        {
            documents = YamlTree.Load(yaml);
        }
        catch (YamlException e)
        {
            var (line, column) = DesiredStateReader.Position(e.Start);
            return (new DaemonConfigFile(), [new YamlError(line, column, "", "YAML syntax error: " + e.Message.Trim().TrimEnd('.'))]);
        }
        void Error(Mark at, string field, string message)
        {
            var (line, column) = DesiredStateReader.Position(at);
            errors.Add(new YamlError(line, column, field, message));
        }
        if (documents.Count > 1)
        {
            Error(documents[1].Start, "", "a daemon's settings are one YAML document; this second one ('---') is not read");
        }
        if (documents.Count == 0 || documents[0].Root is YamlTreeScalar { IsNull: true })
        {
            return (new DaemonConfigFile(), errors);
        }
        if (documents[0].Root is not YamlTreeMapping root)
        {
            Error(documents[0].Root.Start, "", $"the file must be a mapping with the keys {string.Join(", ", Keys.Keys)}, not {documents[0].Root.Kind}");
            return (new DaemonConfigFile(), errors);
        }
        var values = new Dictionary<string, YamlTreeNode>(StringComparer.Ordinal);
        foreach (var (keyNode, value) in root.Entries)
        {
            if (keyNode is not YamlTreeScalar { IsNull: false } key)
            {
                Error(keyNode.Start, "", $"a key must be a single value, not {keyNode.Kind}");
                continue;
            }
            if (!Keys.ContainsKey(key.Value))
            {
                Error(key.Start, key.Value, $"unknown setting{KeySuggestions.DidYouMean(key.Value, Keys.Keys)}; the settings are {string.Join(", ", Keys.Keys)}");
                continue;
            }
            if (!values.TryAdd(key.Value, value))
            {
                Error(key.Start, key.Value, "given twice; keep one");
            }
        }
        string? Scalar(string key)
        {
            if (!values.TryGetValue(key, out var node))
            {
                return null;
            }
            if (node is YamlTreeScalar { IsNull: false } s && s.Value.Trim().Length > 0)
            {
                return s.Value.Trim();
            }
            Error(node.Start, key, node is YamlTreeScalar ? "is empty: give a value or leave the key out" : $"must be a single value, not {node.Kind}");
            return null;
        }
        IReadOnlyList<string>? Endpoints()
        {
            if (!values.TryGetValue("etcd", out var node))
            {
                return null;
            }
            if (node is YamlTreeSequence list)
            {
                var items = new List<string>();
                for (var i = 0; i < list.Items.Count; i++)
                {
                    if (list.Items[i] is YamlTreeScalar { IsNull: false } s && s.Value.Trim().Length > 0)
                    {
                        items.Add(s.Value.Trim());
                    }
                    else
                    {
                        Error(list.Items[i].Start, FieldPath.Item("etcd", i), "must be an endpoint such as http://10.0.0.1:2379");
                    }
                }
                return items;
            }
            return Scalar("etcd")?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        }
        var config = new DaemonConfigFile
        {
            Node = Scalar("node"),
            Etcd = Endpoints(),
            Underlay = Scalar("underlay"),
            LeaseTtl = Scalar("leaseTtl"),
            RescheduleAfter = Scalar("rescheduleAfter"),
            Socket = Scalar("socket"),
            StateDir = Scalar("stateDir"),
            RecordDir = Scalar("recordDir"),
        };
        return (config, [.. errors.OrderBy(e => e.Line).ThenBy(e => e.Column)]);
    }
}
