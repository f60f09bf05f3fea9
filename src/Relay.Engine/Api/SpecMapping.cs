using System.Net;
using System.Net.Sockets;
using Relay.Core.Addressing;
using Relay.Core.Errors;
using Relay.Core.LoadBalancing;
using Relay.Core.Model;
using Relay.Core.Naming;
using Relay.Engine.Health;

namespace Relay.Engine.Api;

/// <summary>
/// Validation of a <see cref="DesiredState"/> (every problem, with the document's field path such as
/// <c>services[2].ports[0]</c>), and its translation into the engine's options. The CLI runs it to
/// point at file lines before sending; the daemon runs it again, as the authority.
/// </summary>
public static class SpecMapping
{
    /// <summary>The network of a service or instance that names none.</summary>
    public const string DefaultNetwork = "default";

    /// <summary>Every problem of <paramref name="state"/>, none when it can be applied.</summary>
    public static IReadOnlyList<RelayError> Validate(DesiredState state)
    {
        var errors = new ErrorCollector();
        // JSON may say null where a list or an entry belongs; that is a mistake to report, not a crash.
        if (NullList(state.Networks, "networks", errors) | NullList(state.Services, "services", errors) | NullList(state.Instances, "instances", errors))
        {
            return errors.Errors;
        }
        var networks = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < state.Networks.Count; i++)
        {
            var at = $"networks[{i}]";
            var n = state.Networks[i];
            if (NullEntry(n, at, errors))
            {
                continue;
            }
            var name = ResourceName.ValidateNetwork(n.Name, at + ".name", errors);
            if (name is not null && !networks.Add(name))
            {
                errors.Add(ErrorCode.Duplicate, at + ".name", $"network '{name}' is listed twice");
            }
            ToNetworkOptions(n, at, errors);
        }
        var services = new HashSet<(string, ServiceName)>();
        for (var i = 0; i < state.Services.Count; i++)
        {
            var at = $"services[{i}]";
            var s = state.Services[i];
            if (NullEntry(s, at, errors))
            {
                continue;
            }
            var network = ResourceName.ValidateNetwork(s.Network ?? DefaultNetwork, at + ".network", errors);
            if (!ServiceName.TryParse(s.Name, out var name, out var why))
            {
                errors.Add(ErrorCode.Invalid, at + ".name", why);
            }
            else if (network is not null && !services.Add((network, name)))
            {
                errors.Add(ErrorCode.Duplicate, at + ".name", $"service '{name}' is listed twice in network '{network}'");
            }
            ToServiceOptions(s, at, errors);
        }
        var instances = new HashSet<(string, string)>();
        for (var i = 0; i < state.Instances.Count; i++)
        {
            var at = $"instances[{i}]";
            var x = state.Instances[i];
            if (NullEntry(x, at, errors))
            {
                continue;
            }
            var network = ResourceName.ValidateNetwork(x.Network ?? DefaultNetwork, at + ".network", errors);
            var name = ResourceName.ValidateInstance(x.Name, at + ".name", errors);
            if (network is not null && name is not null && !instances.Add((network, name)))
            {
                errors.Add(ErrorCode.Duplicate, at + ".name", $"instance '{name}' is listed twice in network '{network}'");
            }
            if (!ServiceName.TryParse(x.Service, out var service, out var why))
            {
                errors.Add(ErrorCode.Invalid, at + ".service", why);
            }
            else if (network is not null && !services.Contains((network, service)))
            {
                errors.Add(ErrorCode.NotFound, at + ".service", $"service '{service}' of network '{network}' is not in this document (apply describes whole networks)");
            }
            ToInstanceOptions(x, at, errors);
        }
        return errors.Errors;
    }

    /// <summary>The network options a spec asks for (defaults for what it leaves out).</summary>
    public static NetworkOptions ToNetworkOptions(NetworkSpec n, string at, ErrorCollector errors)
    {
        var defaults = new NetworkOptions { Name = n.Name ?? "" };
        CheckPrefix(n.InstancePool4, at + ".instancePool4", AddressFamily.InterNetwork, errors);
        CheckPrefix(n.InstancePool6, at + ".instancePool6", AddressFamily.InterNetworkV6, errors);
        CheckPrefix(n.VirtualPool4, at + ".virtualPool4", AddressFamily.InterNetwork, errors);
        CheckPrefix(n.VirtualPool6, at + ".virtualPool6", AddressFamily.InterNetworkV6, errors);
        CheckPrefix(n.FlowPool4, at + ".flowPool4", AddressFamily.InterNetwork, errors);
        CheckPrefix(n.FlowPool6, at + ".flowPool6", AddressFamily.InterNetworkV6, errors);
        var drain = ParseDuration(n.Drain, at + ".drain", defaults.DrainTimeout, errors);
        var dns = defaults.Dns;
        if (n.Dns is { } d)
        {
            for (var z = 0; z < (d.Zones?.Count ?? 0); z++)
            {
                if (DnsName.TryNormalize(d.Zones![z], out var why) is null)
                {
                    errors.Add(ErrorCode.Invalid, $"{at}.dns.zones[{z}]", why);
                }
            }
            for (var u = 0; u < (d.Upstreams?.Count ?? 0); u++)
            {
                var text = d.Upstreams![u];
                if (!IPAddress.TryParse(text, out _) && !(IPEndPoint.TryParse(text, out var ep) && ep.Port != 0))
                {
                    errors.Add(ErrorCode.Invalid, $"{at}.dns.upstreams[{u}]", $"'{text}' is not ADDRESS or ADDRESS:PORT");
                }
            }
            dns = dns with
            {
                Enabled = d.Enabled ?? dns.Enabled,
                Zones = d.Zones ?? dns.Zones,
                Ttl = ParseDuration(d.Ttl, at + ".dns.ttl", dns.Ttl, errors),
                Upstreams = d.Upstreams ?? dns.Upstreams,
            };
        }
        return defaults with
        {
            InstancePool4 = n.InstancePool4 ?? defaults.InstancePool4,
            InstancePool6 = n.InstancePool6 ?? defaults.InstancePool6,
            VirtualPool4 = n.VirtualPool4 ?? defaults.VirtualPool4,
            VirtualPool6 = n.VirtualPool6 ?? defaults.VirtualPool6,
            FlowPool4 = n.FlowPool4 ?? defaults.FlowPool4,
            FlowPool6 = n.FlowPool6 ?? defaults.FlowPool6,
            DrainTimeout = drain,
            Dns = dns,
        };
    }

    /// <summary>The service options a spec asks for.</summary>
    public static ServiceOptions ToServiceOptions(ServiceSpec s, string at, ErrorCollector errors)
    {
        if (s.Policy is not null && !PolicyNames.TryParse(s.Policy, out _))
        {
            errors.Add(ErrorCode.Invalid, at + ".policy", $"unknown policy '{s.Policy}'; choose one of {string.Join(", ", PolicyNames.All)}");
        }
        var ports = new List<PortMapping>();
        for (var p = 0; p < (s.Ports?.Count ?? 0); p++)
        {
            if (s.Ports![p] is null)
            {
                errors.Add(ErrorCode.Invalid, $"{at}.ports[{p}]", "a port mapping is required here, not null");
            }
            else if (PortMapping.TryParse(s.Ports[p], $"{at}.ports[{p}]", errors) is { } mapping)
            {
                ports.Add(mapping);
            }
        }
        if (s.Addressing is not null && s.Addressing is not (AddressingModes.Service or AddressingModes.Flow))
        {
            errors.Add(ErrorCode.Invalid, at + ".addressing", $"unknown addressing '{s.Addressing}'; choose {AddressingModes.Service} or {AddressingModes.Flow}");
        }
        CheckAddress(s.Vip4, at + ".vip4", AddressFamily.InterNetwork, errors);
        CheckAddress(s.Vip6, at + ".vip6", AddressFamily.InterNetworkV6, errors);
        return new ServiceOptions
        {
            Name = s.Name ?? "",
            Policy = s.Policy ?? PolicyNames.Random,
            Ports = ports,
            Addressing = s.Addressing ?? AddressingModes.Service,
            Vip4 = s.Vip4,
            Vip6 = s.Vip6,
        };
    }

    /// <summary>The instance options a spec asks for.</summary>
    public static InstanceOptions ToInstanceOptions(InstanceSpec x, string at, ErrorCollector errors)
    {
        if (x.Command is { Count: 0 } || x.Command is { } c && string.IsNullOrWhiteSpace(c[0]))
        {
            errors.Add(ErrorCode.Invalid, at + ".command", "the command is empty");
        }
        NullArguments(x.Command, at + ".command", errors);
        NullArguments(x.Health?.Command, at + ".health.command", errors);
        RestartPolicies.Parse(x.Restart, RestartPolicy.OnFailure, at + ".restart", errors);
        HealthCheck.FromSpec(x.Health, at + ".health", errors);
        return new InstanceOptions { Name = x.Name, Command = x.Command, Restart = x.Restart, Health = x.Health, Standby = x.Standby ?? false };
    }

    private static bool NullList<T>(IReadOnlyList<T>? list, string field, ErrorCollector errors)
    {
        if (list is null)
        {
            errors.Add(ErrorCode.Invalid, field, "must be a list (it is null)");
            return true;
        }
        return false;
    }

    private static bool NullEntry(object? entry, string field, ErrorCollector errors)
    {
        if (entry is null)
        {
            errors.Add(ErrorCode.Invalid, field, "an entry is required here, not null");
            return true;
        }
        return false;
    }

    private static void NullArguments(IReadOnlyList<string>? command, string field, ErrorCollector errors)
    {
        for (var a = 0; a < (command?.Count ?? 0); a++)
        {
            if (command![a] is null)
            {
                errors.Add(ErrorCode.Invalid, $"{field}[{a}]", "an argument is required here, not null");
            }
        }
    }

    private static TimeSpan ParseDuration(string? text, string field, TimeSpan fallback, ErrorCollector errors)
    {
        if (text is null)
        {
            return fallback;
        }
        if (Duration.TryParse(text, out var value, out var why))
        {
            return value;
        }
        errors.Add(ErrorCode.Invalid, field, why);
        return fallback;
    }

    private static void CheckPrefix(string? text, string field, AddressFamily family, ErrorCollector errors)
    {
        if (text is null)
        {
            return;
        }
        if (!IpMath.TryParsePrefix(text, out var prefix, out var why))
        {
            errors.Add(ErrorCode.Invalid, field, why);
        }
        else if (prefix.BaseAddress.AddressFamily != family)
        {
            errors.Add(ErrorCode.Invalid, field, $"{text} is not an {(family == AddressFamily.InterNetwork ? "IPv4" : "IPv6")} prefix");
        }
    }

    private static void CheckAddress(string? text, string field, AddressFamily family, ErrorCollector errors)
    {
        if (text is null)
        {
            return;
        }
        if (!IPAddress.TryParse(text, out var address))
        {
            errors.Add(ErrorCode.Invalid, field, $"'{text}' is not an IP address");
        }
        else if (address.AddressFamily != family)
        {
            errors.Add(ErrorCode.Invalid, field, $"{text} is not an {(family == AddressFamily.InterNetwork ? "IPv4" : "IPv6")} address");
        }
    }
}
