using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Relay.Core.Addressing;
using Relay.Core.Errors;
using Relay.Core.LoadBalancing;
using Relay.Core.Model;
using Relay.Core.Naming;
using Relay.Engine;
using Relay.Engine.Api;
using Relay.Engine.Health;
using YamlDotNet.Core;

namespace Relay.Cli.Config;

/// <summary>
/// Walks a <see cref="YamlTree"/> document into a <see cref="DesiredState"/>, recording where every
/// value is and collecting every problem (it never stops at the first).
/// </summary>
internal sealed class DesiredStateReader
{
    private static readonly string[] RootKeys = ["networks", "services", "instances"];
    private static readonly string[] NetworkKeys = ["name", "instancePool4", "instancePool6", "virtualPool4", "virtualPool6", "flowPool4", "flowPool6", "drain", "dns"];
    private static readonly string[] DnsKeys = ["enabled", "zones", "ttl", "upstreams"];
    private static readonly string[] ServiceKeys = ["network", "name", "policy", "ports", "addressing", "vip4", "vip6"];
    private static readonly string[] InstanceKeys = ["network", "service", "name", "command", "restart", "health", "standby", "node"];
    private static readonly string[] HealthKeys = ["type", "command", "port", "path", "interval", "timeout", "healthyThreshold", "unhealthyThreshold"];
    private static readonly string[] AddressingValues = [AddressingModes.Service, AddressingModes.Flow];

    /// <summary>The network of a service or instance that names none (as the daemon assumes).</summary>
    private const string DefaultNetwork = "default";

    private const string CommandExample = "[socat, TCP-LISTEN:80, -]";

    private readonly List<YamlError> _errors = [];
    private readonly HashSet<string> _fieldsWithErrors = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (int Line, int Column)> _locations = new(StringComparer.Ordinal);

    // Canonical identities for the checks across entries; a null network means the entry's
    // network name was invalid (already reported), so it takes part in no cross-check.
    private readonly List<(string Name, string Path)> _networks = [];
    private readonly List<(string? Network, string Name, string Path)> _services = [];
    private readonly List<(string? Network, string Name, string Path)> _instances = [];
    private readonly List<(string? Network, string Service, string Path, string Instance)> _references = [];

    // True when some service entry has no identity (no readable name or network): an instance
    // may refer to it, so "not in this file" would be a guess piled on the real error.
    private bool _servicesIncomplete;

    /// <summary>Where each value the reader saw starts, by field path.</summary>
    public IReadOnlyDictionary<string, (int Line, int Column)> Locations => _locations;

    /// <summary>The errors, ordered by position in the file (stable for errors at the same place).</summary>
    public IReadOnlyList<YamlError> SortedErrors() => [.. _errors.OrderBy(e => e.Line).ThenBy(e => e.Column)];

    /// <summary>1-based line and column of <paramref name="mark"/>.</summary>
    public static (int Line, int Column) Position(Mark mark)
        => ((int)Math.Clamp(mark.Line, 1, int.MaxValue), (int)Math.Clamp(mark.Column, 1, int.MaxValue));

    /// <summary>Reads the desired state of <paramref name="documents"/> (the documents of one file).</summary>
    public DesiredState Read(IReadOnlyList<YamlTreeDocument> documents)
    {
        if (documents.Count > 1)
        {
            Error(documents[1].Start, "", "a file holds one desired state; this second YAML document ('---') is not read: merge it into the first");
        }
        if (documents.Count == 0 || documents[0].Root is YamlTreeScalar { IsNull: true })
        {
            return new DesiredState();
        }
        var root = documents[0].Root;
        if (root is not YamlTreeMapping)
        {
            Error(root.Start, "", $"the file must be a mapping with the keys networks, services and instances, not {root.Kind}");
            return new DesiredState();
        }
        var top = ReadFields(root, "", RootKeys)!;
        var state = new DesiredState
        {
            Networks = ReadEntries(top, "networks", "a network", "{name: demo}", ReadNetwork, new NetworkSpec()),
            Services = ReadEntries(top, "services", "a service", "{name: a.com}", ReadService, new ServiceSpec()),
            Instances = ReadEntries(top, "instances", "an instance", "{service: a.com, name: a-1}", ReadInstance, new InstanceSpec()),
        };
        CheckAcrossEntries();
        return state;
    }

    private NetworkSpec ReadNetwork(Fields f)
    {
        var name = ReadString(f, "name");
        if (IsMissing(f, "name"))
        {
            Required(f, "name", "a network name is required");
        }
        else if (name is not null && Check(f, "name", (field, errors) => ResourceName.ValidateNetwork(name, field, errors)) is { } canonical)
        {
            _networks.Add((canonical, FieldPath.Member(f.Path, "name")));
        }
        return new NetworkSpec
        {
            Name = name,
            InstancePool4 = ReadPrefix(f, "instancePool4", AddressFamily.InterNetwork),
            InstancePool6 = ReadPrefix(f, "instancePool6", AddressFamily.InterNetworkV6),
            VirtualPool4 = ReadPrefix(f, "virtualPool4", AddressFamily.InterNetwork),
            VirtualPool6 = ReadPrefix(f, "virtualPool6", AddressFamily.InterNetworkV6),
            FlowPool4 = ReadPrefix(f, "flowPool4", AddressFamily.InterNetwork),
            FlowPool6 = ReadPrefix(f, "flowPool6", AddressFamily.InterNetworkV6),
            Drain = ReadDuration(f, "drain", out _),
            Dns = ReadMapping(f, "dns", "{zones: [relay.internal], ttl: 5s}", DnsKeys, ReadDns),
        };
    }

    private DnsSpec ReadDns(Fields f)
    {
        var zones = ReadStrings(f, "zones", "[relay.internal]");
        for (var i = 0; zones is not null && i < zones.Count; i++)
        {
            var field = FieldPath.Item(FieldPath.Member(f.Path, "zones"), i);
            if (!HasError(field) && DnsName.TryNormalize(zones[i], out var why) is null)
            {
                Error(f.Item("zones", i), field, why);
            }
        }
        var ttl = ReadDuration(f, "ttl", out var ttlValue);
        // The same bounds as the daemon's, so that a file that passes here is not refused there.
        if (ttlValue > TimeSpan.FromDays(1))
        {
            ErrorAt(f, "ttl", "the TTL must be between 0 and 1 day");
        }
        var upstreams = ReadStrings(f, "upstreams", "[1.1.1.1, \"[2606:4700:4700::1111]:53\"]");
        for (var i = 0; upstreams is not null && i < upstreams.Count; i++)
        {
            var text = upstreams[i];
            var field = FieldPath.Item(FieldPath.Member(f.Path, "upstreams"), i);
            if (!HasError(field) && !IPAddress.TryParse(text, out _) && !(IPEndPoint.TryParse(text, out var endPoint) && endPoint.Port != 0))
            {
                Error(f.Item("upstreams", i), field, $"'{text}' is not ADDRESS or ADDRESS:PORT (IPv6 with a port: [ADDRESS]:PORT)");
            }
        }
        return new DnsSpec { Enabled = ReadBool(f, "enabled"), Zones = zones, Ttl = ttl, Upstreams = upstreams };
    }

    private ServiceSpec ReadService(Fields f)
    {
        var network = ReadNetworkReference(f, out var networkKey);
        var name = ReadString(f, "name");
        var identified = false;
        if (IsMissing(f, "name"))
        {
            Required(f, "name", "a service name is required");
        }
        else if (name is not null)
        {
            if (ServiceName.TryParse(name, out var canonical, out var why))
            {
                _services.Add((networkKey, canonical.Value, FieldPath.Member(f.Path, "name")));
                identified = networkKey is not null;
            }
            else
            {
                ErrorAt(f, "name", why);
            }
        }
        _servicesIncomplete |= !identified;
        var policy = ReadChoice(f, "policy", "policy", PolicyNames.All, p => PolicyNames.TryParse(p, out _));
        var ports = ReadStrings(f, "ports", "[\"80:8080/tcp\", 53/udp]");
        var seen = new HashSet<(TransportProtocol, int)>();
        for (var i = 0; ports is not null && i < ports.Count; i++)
        {
            var field = FieldPath.Item(FieldPath.Member(f.Path, "ports"), i);
            if (HasError(field))
            {
                continue;
            }
            var errors = new ErrorCollector();
            var mapping = PortMapping.TryParse(ports[i], field, errors);
            Report(errors, f.Item("ports", i));
            if (mapping is not null && !seen.Add((mapping.Protocol, mapping.Port)))
            {
                Error(f.Item("ports", i), field, $"port {mapping.Port}/{mapping.ProtocolName} is mapped twice");
            }
        }
        var addressing = ReadChoice(f, "addressing", "addressing", AddressingValues, a => AddressingValues.Contains(a, StringComparer.OrdinalIgnoreCase));
        if (string.Equals(addressing, AddressingModes.Flow, StringComparison.OrdinalIgnoreCase) && ports is { Count: > 0 })
        {
            ErrorAt(f, "addressing", "flow addressing is for layer-3 services; a service with port mappings uses its virtual addresses");
        }
        return new ServiceSpec
        {
            Network = network,
            Name = name,
            Policy = policy,
            Ports = ports,
            Addressing = addressing,
            Vip4 = ReadAddress(f, "vip4", AddressFamily.InterNetwork),
            Vip6 = ReadAddress(f, "vip6", AddressFamily.InterNetworkV6),
        };
    }

    private InstanceSpec ReadInstance(Fields f)
    {
        var network = ReadNetworkReference(f, out var networkKey);
        var service = ReadString(f, "service");
        string? serviceKey = null;
        if (IsMissing(f, "service"))
        {
            Required(f, "service", "an instance needs a service (the name of a service in this file)");
        }
        else if (service is not null)
        {
            if (ServiceName.TryParse(service, out var canonical, out var why))
            {
                serviceKey = canonical.Value;
            }
            else
            {
                ErrorAt(f, "service", why);
            }
        }
        var name = ReadString(f, "name");
        if (IsMissing(f, "name"))
        {
            // Required in files: a generated name would make every apply create new instances.
            Required(f, "name", "an instance name is required");
        }
        else if (name is not null && Check(f, "name", (field, errors) => ResourceName.ValidateInstance(name, field, errors)) is { } canonical)
        {
            _instances.Add((networkKey, canonical, FieldPath.Member(f.Path, "name")));
        }
        if (serviceKey is not null)
        {
            _references.Add((networkKey, serviceKey, FieldPath.Member(f.Path, "service"), string.IsNullOrEmpty(name) ? f.Path : name));
        }
        return new InstanceSpec
        {
            Network = network,
            Service = service,
            Name = name,
            Command = ReadCommand(f, "command"),
            Restart = ReadChoice(f, "restart", "restart policy", RestartPolicies.All, r => RestartPolicies.TryParse(r, out _)),
            Health = ReadMapping(f, "health", "{type: tcp, port: 8080}", HealthKeys, ReadHealth),
            Standby = ReadBool(f, "standby"),
            Node = ReadString(f, "node"),
        };
    }

    private HealthSpec ReadHealth(Fields f)
    {
        var spec = new HealthSpec
        {
            Type = ReadChoice(f, "type", "health check type", HealthCheck.TypeNames, t => HealthCheck.TryParseType(t, out _)),
            Command = ReadCommand(f, "command"),
            Port = ReadInt(f, "port"),
            Path = ReadString(f, "path"),
            Interval = ReadDuration(f, "interval", out _),
            Timeout = ReadDuration(f, "timeout", out _),
            HealthyThreshold = ReadInt(f, "healthyThreshold"),
            UnhealthyThreshold = ReadInt(f, "unhealthyThreshold"),
        };
        // The daemon's own rules (the fields each type needs, ranges, interval against timeout),
        // so that the file and the daemon never disagree. A field already reported here (such as
        // a port that is not a number) is not reported a second time.
        var errors = new ErrorCollector();
        HealthCheck.FromSpec(spec, f.Path, errors);
        foreach (var error in errors.Errors)
        {
            if (!HasError(error.Field))
            {
                Error(error.Field, error.Message);
            }
        }
        return spec;
    }

    /// <summary>The optional <c>network</c> of a service or instance; <paramref name="key"/> is its canonical form (default when absent, null when invalid).</summary>
    private string? ReadNetworkReference(Fields f, out string? key)
    {
        var network = ReadString(f, "network");
        key = IsMissing(f, "network") ? DefaultNetwork
            : network is null ? null
            : Check(f, "network", (field, errors) => ResourceName.ValidateNetwork(network, field, errors));
        return network;
    }

    private List<string>? ReadCommand(Fields f, string key)
    {
        var command = ReadStrings(f, key, CommandExample);
        if (command is { Count: 0 })
        {
            ErrorAt(f, key, $"{key} is empty; list the program and its arguments, such as {CommandExample}");
        }
        else if (command is not null && string.IsNullOrWhiteSpace(command[0]) && !HasError(FieldPath.Item(FieldPath.Member(f.Path, key), 0)))
        {
            Error(f.Item(key, 0), FieldPath.Item(FieldPath.Member(f.Path, key), 0), "the program to run is empty");
        }
        return command;
    }

    /// <summary>
    /// One of <paramref name="choices"/>, as written; <paramref name="accepts"/> is the daemon's own
    /// parser, so that what it accepts (other cases, aliases) is accepted here too.
    /// </summary>
    private string? ReadChoice(Fields f, string key, string what, IReadOnlyList<string> choices, Func<string, bool> accepts)
    {
        var value = ReadString(f, key);
        if (value is not null && !accepts(value))
        {
            ErrorAt(f, key, $"unknown {what} '{value}'{KeySuggestions.DidYouMean(value, choices)}; choose {Choices(choices)}");
        }
        return value;
    }

    private string? ReadDuration(Fields f, string key, out TimeSpan value)
    {
        value = TimeSpan.Zero;
        var text = ReadString(f, key);
        if (text is not null && !Duration.TryParse(text, out value, out var reason))
        {
            ErrorAt(f, key, reason);
        }
        return text;
    }

    private string? ReadPrefix(Fields f, string key, AddressFamily family)
    {
        var text = ReadString(f, key);
        if (text is null)
        {
            return null;
        }
        if (!IpMath.TryParsePrefix(text, out var prefix, out var reason))
        {
            ErrorAt(f, key, reason);
        }
        else if (prefix.BaseAddress.AddressFamily != family)
        {
            ErrorAt(f, key, $"{text} is not an {FamilyName(family)} prefix");
        }
        return text;
    }

    private string? ReadAddress(Fields f, string key, AddressFamily family)
    {
        var text = ReadString(f, key);
        if (text is null)
        {
            return null;
        }
        if (!IPAddress.TryParse(text, out var address))
        {
            ErrorAt(f, key, $"'{text}' is not an IP address");
        }
        else if (address.AddressFamily != family)
        {
            var other = family == AddressFamily.InterNetwork ? "vip6" : "vip4";
            ErrorAt(f, key, $"{key} must be an {FamilyName(family)} address; '{text}' is {FamilyName(address.AddressFamily)} (use {other})");
        }
        return text;
    }

    private static string FamilyName(AddressFamily family) => family == AddressFamily.InterNetwork ? "IPv4" : "IPv6";

    private static string Choices(IReadOnlyList<string> choices)
        => string.Join(", ", choices.Take(choices.Count - 1)) + " or " + choices[^1];

    // ---- Checks across entries -----------------------------------------------------------

    private void CheckAcrossEntries()
    {
        var networks = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (name, path) in _networks)
        {
            if (!networks.TryAdd(name, path))
            {
                Error(path, $"network '{name}' is listed twice (first at line {LineOf(networks[name])})");
            }
        }
        var services = new Dictionary<(string, string), string>();
        foreach (var (network, name, path) in _services)
        {
            if (network is not null && !services.TryAdd((network, name), path))
            {
                Error(path, $"service '{name}' is listed twice in network '{network}' (first at line {LineOf(services[(network, name)])})");
            }
        }
        var instances = new Dictionary<(string, string), string>();
        foreach (var (network, name, path) in _instances)
        {
            if (network is not null && !instances.TryAdd((network, name), path))
            {
                Error(path, $"instance '{name}' is listed twice in network '{network}' (first at line {LineOf(instances[(network, name)])})");
            }
        }
        foreach (var (network, service, path, instance) in _servicesIncomplete ? [] : _references)
        {
            // Apply replaces the services of the networks it names, so an instance of a service
            // the file does not list would lose its service in the same apply.
            if (network is not null && !services.ContainsKey((network, service)))
            {
                Error(path, $"instance {instance}: service {service} is not in this file (network '{network}'); list it under services");
            }
        }
    }

    private int LineOf(string path) => _locations.TryGetValue(path, out var at) ? at.Line : 0;

    // ---- Structure -------------------------------------------------------------------------

    /// <summary>The keys of one mapping that the reader knows, with the mapping's path and start.</summary>
    private sealed class Fields(string path, Mark start)
    {
        public string Path { get; } = path;

        public Mark Start { get; } = start;

        public Dictionary<string, YamlTreeNode> Values { get; } = new(StringComparer.Ordinal);

        /// <summary>Where entry <paramref name="index"/> of the list at <paramref name="key"/> starts.</summary>
        public Mark Item(string key, int index) => ((YamlTreeSequence)Values[key]).Items[index].Start;
    }

    /// <summary>
    /// The known keys of <paramref name="node"/> (a mapping), reporting unknown and duplicate keys;
    /// null (and an error) when <paramref name="node"/> is not a mapping.
    /// </summary>
    private Fields? ReadFields(YamlTreeNode node, string path, IReadOnlyList<string> known)
    {
        if (node is not YamlTreeMapping mapping)
        {
            return null;
        }
        var fields = new Fields(path, mapping.Start);
        var first = new Dictionary<string, Mark>(StringComparer.Ordinal);
        foreach (var (keyNode, value) in mapping.Entries)
        {
            if (keyNode is not YamlTreeScalar { IsNull: false } key)
            {
                Error(keyNode.Start, path, $"a key must be a name, not {keyNode.Kind}");
                continue;
            }
            var keyPath = FieldPath.Member(path, key.Value);
            if (first.TryGetValue(key.Value, out var firstAt))
            {
                var (line, column) = Position(firstAt);
                Error(key.Start, keyPath, $"duplicate key '{key.Value}' (first at {line}:{column}); only the first is read");
                continue;
            }
            first[key.Value] = key.Start;
            if (!known.Contains(key.Value, StringComparer.Ordinal))
            {
                var hint = KeySuggestions.Closest(key.Value, known) is { } match
                    ? $"did you mean '{match}'?"
                    : $"known keys: {string.Join(", ", known)}";
                Error(key.Start, keyPath, $"unknown key '{key.Value}' ({hint})");
                continue;
            }
            fields.Values[key.Value] = value;
            Locate(keyPath, value.Start);
        }
        return fields;
    }

    /// <summary>The optional mapping at <paramref name="key"/>, read by <paramref name="read"/>.</summary>
    private T? ReadMapping<T>(Fields f, string key, string example, IReadOnlyList<string> known, Func<Fields, T> read) where T : class
    {
        if (!f.Values.TryGetValue(key, out var node) || node is YamlTreeScalar { IsNull: true })
        {
            return null;
        }
        var fields = ReadFields(node, FieldPath.Member(f.Path, key), known);
        if (fields is null)
        {
            ErrorAt(f, key, $"{key} must be a mapping, such as {example}, not {node.Kind}");
            return null;
        }
        return read(fields);
    }

    /// <summary>
    /// The list of mappings at <paramref name="key"/>. An entry that is not a mapping becomes
    /// <paramref name="empty"/>, so that indices stay those of the file.
    /// </summary>
    private List<T> ReadEntries<T>(Fields f, string key, string what, string example, Func<Fields, T> read, T empty)
    {
        var entries = new List<T>();
        if (!f.Values.TryGetValue(key, out var node) || node is YamlTreeScalar { IsNull: true })
        {
            return entries;
        }
        var path = FieldPath.Member(f.Path, key);
        if (node is not YamlTreeSequence sequence)
        {
            ErrorAt(f, key, $"{key} must be a list (each entry starting with '- '), not {node.Kind}");
            _servicesIncomplete |= key == "services";
            return entries;
        }
        for (var i = 0; i < sequence.Items.Count; i++)
        {
            var item = sequence.Items[i];
            var itemPath = FieldPath.Item(path, i);
            Locate(itemPath, item.Start);
            var fields = ReadFields(item, itemPath, KnownKeys(key));
            if (fields is null)
            {
                Error(item.Start, itemPath, $"{what} must be a mapping, such as {example}, not {item.Kind}");
                _servicesIncomplete |= key == "services";
                entries.Add(empty);
                continue;
            }
            entries.Add(read(fields));
        }
        return entries;
    }

    private static string[] KnownKeys(string topKey) => topKey switch
    {
        "networks" => NetworkKeys,
        "services" => ServiceKeys,
        _ => InstanceKeys,
    };

    /// <summary>The list of single values at <paramref name="key"/>, as written.</summary>
    private List<string>? ReadStrings(Fields f, string key, string example)
    {
        if (!f.Values.TryGetValue(key, out var node) || node is YamlTreeScalar { IsNull: true })
        {
            return null;
        }
        if (node is not YamlTreeSequence sequence)
        {
            ErrorAt(f, key, $"{key} must be a list, such as {example}");
            return null;
        }
        var path = FieldPath.Member(f.Path, key);
        var values = new List<string>();
        for (var i = 0; i < sequence.Items.Count; i++)
        {
            var item = sequence.Items[i];
            var itemPath = FieldPath.Item(path, i);
            Locate(itemPath, item.Start);
            if (item is YamlTreeScalar scalar)
            {
                values.Add(scalar.Value);
            }
            else
            {
                Error(item.Start, itemPath, $"each entry of {key} must be a single value, not {item.Kind}");
                values.Add("");
            }
        }
        return values;
    }

    /// <summary>The single value at <paramref name="key"/>, as written; null when absent, empty or not a single value.</summary>
    private string? ReadString(Fields f, string key)
    {
        if (!f.Values.TryGetValue(key, out var node))
        {
            return null;
        }
        switch (node)
        {
            case YamlTreeScalar { IsNull: true }:
                return null;
            case YamlTreeScalar scalar:
                return scalar.Value;
            default:
                // Reported once, however many times the key is read.
                if (!HasError(FieldPath.Member(f.Path, key)))
                {
                    ErrorAt(f, key, $"{key} must be a single value, not {node.Kind}");
                }
                return null;
        }
    }

    private int? ReadInt(Fields f, string key)
    {
        if (!f.Values.TryGetValue(key, out var node) || node is YamlTreeScalar { IsNull: true })
        {
            return null;
        }
        if (node is YamlTreeScalar scalar)
        {
            var isNumber = int.TryParse(scalar.Value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value);
            if (isNumber && scalar.IsPlain)
            {
                return value;
            }
            // A quoted number is a string in YAML (and in the JSON the daemon takes): say so plainly.
            ErrorAt(f, key, isNumber
                ? $"{key} must be a number; write {scalar.Value} without quotes"
                : $"{key} must be a whole number, not '{scalar.Value}'");
            return null;
        }
        ErrorAt(f, key, $"{key} must be a whole number, not {node.Kind}");
        return null;
    }

    private bool? ReadBool(Fields f, string key)
    {
        if (!f.Values.TryGetValue(key, out var node) || node is YamlTreeScalar { IsNull: true })
        {
            return null;
        }
        if (node is YamlTreeScalar { IsPlain: true } scalar)
        {
            if (string.Equals(scalar.Value, "true", StringComparison.OrdinalIgnoreCase))
            {
                return true;
            }
            if (string.Equals(scalar.Value, "false", StringComparison.OrdinalIgnoreCase))
            {
                return false;
            }
        }
        // yes/no/on/off were booleans in YAML 1.1 only; accepting them would surprise as often as help.
        ErrorAt(f, key, node is YamlTreeScalar s ? $"{key} must be true or false, not '{s.Value}'" : $"{key} must be true or false, not {node.Kind}");
        return null;
    }

    /// <summary>True when <paramref name="key"/> is absent or empty (so a required field is missing).</summary>
    private static bool IsMissing(Fields f, string key)
        => !f.Values.TryGetValue(key, out var node) || node is YamlTreeScalar { IsNull: true };

    /// <summary>Reports a missing field: at its empty value when there is one, else at its mapping.</summary>
    private void Required(Fields f, string key, string message)
        => Error(f.Values.TryGetValue(key, out var node) ? node.Start : f.Start, FieldPath.Member(f.Path, key), message);

    /// <summary>Runs a Core validator on the value at <paramref name="key"/>, reporting its errors there.</summary>
    private T? Check<T>(Fields f, string key, Func<string, ErrorCollector, T?> validate)
    {
        var errors = new ErrorCollector();
        var result = validate(FieldPath.Member(f.Path, key), errors);
        Report(errors, f.Values[key].Start);
        return result;
    }

    private void Report(ErrorCollector errors, Mark at)
    {
        foreach (var error in errors.Errors)
        {
            Error(at, error.Field, error.Message);
        }
    }

    private void ErrorAt(Fields f, string key, string message) => Error(f.Values[key].Start, FieldPath.Member(f.Path, key), message);

    /// <summary>Reports an error at <paramref name="path"/>, or at its nearest enclosing value when the file does not have it.</summary>
    private void Error(string path, string message)
    {
        var p = path;
        while (p.Length > 0 && !_locations.ContainsKey(p))
        {
            p = FieldPath.Parent(p);
        }
        var (line, column) = p.Length > 0 ? _locations[p] : (1, 1);
        Add(new YamlError(line, column, path, message));
    }

    private void Error(Mark at, string field, string message)
    {
        var (line, column) = Position(at);
        Add(new YamlError(line, column, field, message));
    }

    private void Add(YamlError error)
    {
        _errors.Add(error);
        _fieldsWithErrors.Add(error.Field);
    }

    /// <summary>True when <paramref name="field"/> already has an error: a second one about the same value would only repeat it.</summary>
    private bool HasError(string field) => _fieldsWithErrors.Contains(field);

    private void Locate(string path, Mark at) => _locations[path] = Position(at);
}
