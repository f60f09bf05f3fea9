using System.CommandLine;
using Relay.Cli.Client;
using Relay.Cli.Output;
using Relay.Engine;
using Relay.Engine.Api;
using Relay.Daemon.Api;
using static Relay.Cli.Commands.CliContext;

namespace Relay.Cli.Commands;

/// <summary><c>relay network|service|instance ...</c>, <c>relay status</c>, <c>relay resolve</c>, <c>relay flows</c>.</summary>
internal static class ResourceCommands
{
    public static Command Network()
    {
        var cmd = new Command("network", "Create, list and remove networks (each is an orchestrator namespace with its own table and DNS server).");
        var name = new Argument<string>("NAME") { Description = "Network name (one DNS label)." };
        var create = new Command("create", "Create a network with default pools.") { name };
        create.SetAction(Run(async (p, c, ct) =>
        {
            var n = await c.PostAsync<NetworkSummary>("v1/networks", new NetworkSpec { Name = p.GetValue(name) }, ct).ConfigureAwait(false);
            Console.WriteLine($"network {n.Name} created (namespace {n.Namespace}, gateways {n.Gateway4} and {n.Gateway6})");
            return 0;
        }));
        var output = CliContext.Output();
        var ls = new Command("ls", "List networks.") { output };
        ls.SetAction(Run(async (p, c, ct) =>
        {
            var list = await c.GetAsync<NetworkSummary[]>("v1/networks", ct).ConfigureAwait(false);
            if (p.GetValue(output) == "json")
            {
                Json(list);
                return 0;
            }
            TableWriter.Write(Console.Out, ["name", "namespace", "gateway4", "gateway6", "services", "instances", "healthy", "flows"],
                list.Select(n => (IReadOnlyList<string>)[n.Name, n.Namespace, n.Gateway4, n.Gateway6, n.Services.ToString(), n.Instances.ToString(), n.Healthy.ToString(), n.Flows.ToString()]));
            return 0;
        }));
        var rmName = new Argument<string>("NAME") { Description = "The network to remove, with everything in it." };
        var rm = new Command("rm", "Remove a network and everything Relay created for it.") { rmName };
        rm.SetAction(Run(async (p, c, ct) =>
        {
            await c.DeleteAsync<object>($"v1/networks/{Seg(p.GetValue(rmName)!)}", ct).ConfigureAwait(false);
            Console.WriteLine($"network {p.GetValue(rmName)} removed");
            return 0;
        }));
        cmd.Subcommands.Add(create);
        cmd.Subcommands.Add(ls);
        cmd.Subcommands.Add(rm);
        return cmd;
    }

    public static Command Service()
    {
        var cmd = new Command("service", "Add, list and remove services (a name with stable virtual addresses).");
        var network = CliContext.Network();
        var name = new Argument<string>("NAME") { Description = "A DNS name, such as b.com." };
        var policy = new Option<string>("--policy") { Description = "random (default), round-robin, maglev or source.", DefaultValueFactory = _ => "random" };
        var ports = new Option<string[]>("--port", "-p") { Description = "Map a virtual port: PORT[:TARGET][/tcp|/udp] (repeatable). Without any, every protocol reaches the instances.", AllowMultipleArgumentsPerToken = false };
        var addressing = new Option<string>("--addressing") { Description = "service (default): one pair of virtual addresses; flow: each client gets its own, from DNS.", DefaultValueFactory = _ => "service" };
        var add = new Command("add", "Register a service; it gets stable virtual IPv4 and IPv6 addresses. The network 'default' is created with its first service.") { name, network, policy, ports, addressing }.WithExamples(
            "relay service add pong.demo",
            "relay service add hello.demo --port 80:7000/tcp --policy round-robin");
        add.SetAction(Run(async (p, c, ct) =>
        {
            var s = await c.PostAsync<ServiceInfo>($"v1/networks/{Seg(p.GetValue(network)!)}/services",
                new ServiceSpec { Name = p.GetValue(name), Policy = p.GetValue(policy), Ports = p.GetValue(ports) ?? [], Addressing = p.GetValue(addressing) }, ct).ConfigureAwait(false);
            Console.WriteLine($"service {s.Name} added: {s.Vip4} and {s.Vip6} ({s.Policy})");
            return 0;
        }));
        var rmName = new Argument<string>("NAME") { Description = "The service." };
        var force = new Option<bool>("--force") { Description = "Also remove its instances (cut at once)." };
        var rmNetwork = CliContext.Network();
        var rm = new Command("rm", "Remove a service (with --force, its instances too).") { rmName, rmNetwork, force };
        rm.SetAction(Run(async (p, c, ct) =>
        {
            await c.DeleteAsync<object>($"v1/networks/{Seg(p.GetValue(rmNetwork)!)}/services/{Seg(p.GetValue(rmName)!)}?force={p.GetValue(force).ToString().ToLowerInvariant()}", ct).ConfigureAwait(false);
            Console.WriteLine($"service {p.GetValue(rmName)} removed");
            return 0;
        }));
        var lsNetwork = CliContext.Network();
        var output = CliContext.Output();
        var ls = new Command("ls", "List services.") { lsNetwork, output };
        ls.SetAction(Run(async (p, c, ct) =>
        {
            var list = await c.GetAsync<ServiceInfo[]>($"v1/networks/{Seg(p.GetValue(lsNetwork)!)}/services", ct).ConfigureAwait(false);
            if (p.GetValue(output) == "json")
            {
                Json(list);
                return 0;
            }
            TableWriter.Write(Console.Out, ["name", "vip4", "vip6", "policy", "ports", "addressing", "backends"],
                list.Select(s => (IReadOnlyList<string>)[s.Name, s.Vip4.ToString(), s.Vip6.ToString(), s.Policy, s.Ports.Count == 0 ? "*" : string.Join(",", s.Ports), s.Addressing, string.Join(",", s.Backends)]));
            return 0;
        }));
        cmd.Subcommands.Add(add);
        cmd.Subcommands.Add(rm);
        cmd.Subcommands.Add(ls);
        return cmd;
    }

    public static Command Instance()
    {
        var cmd = new Command("instance", "Add, list and remove instances (each in its own network namespace).");
        var network = CliContext.Network();
        var service = new Argument<string>("SERVICE") { Description = "The service it serves." };
        var name = new Option<string?>("--name") { Description = "Its name (default: the service's first label and a number, as pong-1)." };
        var restart = new Option<string?>("--restart") { Description = "never, on-failure (default) or always." };
        var standby = new Option<bool>("--standby") { Description = "Up but not in the balancer (a migration target)." };
        var node = new Option<string?>("--node") { Description = "In a cluster (relay daemon --etcd): the node it runs on, e.g. --node host-2 (default: the node of the daemon asked)." };
        var healthTcp = new Option<int?>("--health-tcp") { Description = "Health check: TCP connect to this port." };
        var healthHttp = new Option<string?>("--health-http") { Description = "Health check: HTTP GET PORT[/PATH], 2xx/3xx is healthy." };
        var healthIcmp = new Option<bool>("--health-icmp") { Description = "Health check: ping." };
        var healthExec = new Option<string?>("--health-exec") { Description = "Health check: a command run in the instance (split on spaces); exit 0 is healthy." };
        var interval = new Option<string?>("--health-interval") { Description = "Time between checks (default 1s)." };
        var timeout = new Option<string?>("--health-timeout") { Description = "Time a check may take (default 1s)." };
        var threshold = new Option<int?>("--health-threshold") { Description = "Failures in a row to become unhealthy (default 3)." };
        var command = new Argument<string[]>("COMMAND") { Description = "The command to run in the instance (after --).", Arity = ArgumentArity.ZeroOrMore };
        var addOutput = CliContext.Output();
        var add = new Command("add", "Add an instance: namespace, veth, addresses, command, then its place in the balancer. The command sees RELAY_NETWORK, RELAY_SERVICE and RELAY_INSTANCE.")
        {
            service, network, name, restart, standby, node, healthTcp, healthHttp, healthIcmp, healthExec, interval, timeout, threshold, addOutput, command,
        }.WithExamples(
            "relay instance add pong.demo",
            "relay instance add hello.demo --health-tcp 7000 -- socat TCP-LISTEN:7000,fork,reuseaddr 'SYSTEM:echo hello from $RELAY_INSTANCE'",
            "relay instance add pong.demo --standby --name pong-next");
        add.SetAction(Run(async (p, c, ct) =>
        {
            HealthSpec? health = null;
            if (p.GetValue(healthTcp) is { } tcp)
            {
                health = new HealthSpec { Type = "tcp", Port = tcp };
            }
            else if (p.GetValue(healthHttp) is { } http)
            {
                var slash = http.IndexOf('/');
                health = new HealthSpec { Type = "http", Port = int.TryParse(slash < 0 ? http : http[..slash], out var port) ? port : -1, Path = slash < 0 ? "/" : http[slash..] };
            }
            else if (p.GetValue(healthIcmp))
            {
                health = new HealthSpec { Type = "icmp" };
            }
            else if (p.GetValue(healthExec) is { } exec)
            {
                health = new HealthSpec { Type = "exec", Command = exec.Split(' ', StringSplitOptions.RemoveEmptyEntries) };
            }
            if (health is not null)
            {
                health = health with { Interval = p.GetValue(interval), Timeout = p.GetValue(timeout), UnhealthyThreshold = p.GetValue(threshold) };
            }
            CliContext.RequireDoubleDash(p, command, "relay instance add SERVICE [OPTIONS] -- COMMAND [ARGS...]");
            var args = p.GetValue(command) ?? [];
            var i = await c.PostAsync<InstanceInfo>($"v1/networks/{Seg(p.GetValue(network)!)}/instances", new InstanceSpec
            {
                Service = p.GetValue(service),
                Name = p.GetValue(name),
                Command = args.Length == 0 ? null : args,
                Restart = p.GetValue(restart),
                Standby = p.GetValue(standby),
                Health = health,
                Node = p.GetValue(node),
            }, ct).ConfigureAwait(false);
            if (p.GetValue(addOutput) == "json")
            {
                Json(i);
                return 0;
            }
            Console.WriteLine($"instance {i.Name} of {i.Service} added{(i.Node is null ? "" : " on " + i.Node)}: {i.Address4} and {i.Address6} (namespace {i.Namespace}){(i.State == InstanceState.Standby ? ", standby" : "")}");
            return 0;
        }));
        var rmName = new Argument<string>("NAME") { Description = "The instance." };
        var rmNetwork = CliContext.Network();
        var drain = new Option<string?>("--drain") { Description = "How long its TCP flows may finish (default: the network's, 30s); 0 cuts them." };
        var wait = new Option<bool>("--wait") { Description = "Wait until it is gone." };
        var rm = new Command("rm", "Remove an instance: it leaves the balancer at once, its TCP flows drain, then it stops.") { rmName, rmNetwork, drain, wait };
        rm.SetAction(Run(async (p, c, ct) =>
        {
            var query = $"?wait={p.GetValue(wait).ToString().ToLowerInvariant()}" + (p.GetValue(drain) is { } d ? $"&drain={Uri.EscapeDataString(d)}" : "");
            var result = await c.DeleteAsync<DrainResult>($"v1/networks/{Seg(p.GetValue(rmNetwork)!)}/instances/{Seg(p.GetValue(rmName)!)}{query}", ct).ConfigureAwait(false);
            Console.WriteLine(result is null
                ? $"instance {p.GetValue(rmName)} is leaving (its TCP flows drain)"
                : $"instance {result.Instance} removed after {result.Duration.TotalSeconds:0.###} s ({result.TcpFlowsAtStart} TCP flows at start, {result.TcpFlowsCut} cut)");
            return 0;
        }));
        var lsNetwork = CliContext.Network();
        var output = CliContext.Output();
        var ls = new Command("ls", "List instances.") { lsNetwork, output };
        ls.SetAction(Run(async (p, c, ct) =>
        {
            var list = await c.GetAsync<InstanceInfo[]>($"v1/networks/{Seg(p.GetValue(lsNetwork)!)}/instances", ct).ConfigureAwait(false);
            if (p.GetValue(output) == "json")
            {
                Json(list);
                return 0;
            }
            if (list.Any(i => i.Node is not null))
            {
                TableWriter.Write(Console.Out, ["name", "service", "node", "state", "balancer", "ipv4", "ipv6", "command"],
                    list.Select(i => (IReadOnlyList<string>)[i.Name, i.Service, i.Node ?? "-", StateText(i), i.InBalancer ? "yes" : "no", i.Address4.ToString(), i.Address6.ToString(),
                        i.Command is null ? "-" : string.Join(' ', i.Command)]));
                return 0;
            }
            TableWriter.Write(Console.Out, ["name", "service", "state", "health", "balancer", "ipv4", "ipv6", "pid", "restarts", "command"],
                list.Select(i => (IReadOnlyList<string>)[i.Name, i.Service, StateText(i), i.Health, i.InBalancer ? "yes" : "no", i.Address4.ToString(), i.Address6.ToString(),
                    i.Pid?.ToString() ?? "-", i.Restarts.ToString(), i.Command is null ? "-" : string.Join(' ', i.Command)]));
            return 0;
        }));
        var logName = new Argument<string>("NAME") { Description = "The instance." };
        var logNetwork = CliContext.Network();
        var lines = new Option<int>("--lines") { Description = "How many lines.", DefaultValueFactory = _ => 100 };
        var logs = new Command("logs", "Show the output of an instance's command.") { logName, logNetwork, lines };
        logs.SetAction(Run(async (p, c, ct) =>
        {
            var l = await c.GetAsync<LogsResponse>($"v1/networks/{Seg(p.GetValue(logNetwork)!)}/instances/{Seg(p.GetValue(logName)!)}/logs?lines={p.GetValue(lines)}", ct).ConfigureAwait(false);
            foreach (var line in l.Lines)
            {
                Console.WriteLine(line);
            }
            return 0;
        }));
        cmd.Subcommands.Add(add);
        cmd.Subcommands.Add(rm);
        cmd.Subcommands.Add(ls);
        cmd.Subcommands.Add(logs);
        return cmd;
    }

    public static Command Status()
    {
        var output = CliContext.Output();
        var cmd = new Command("status", "The daemon and its networks at a glance.") { output };
        cmd.SetAction(Run(async (p, c, ct) =>
        {
            var s = await c.GetAsync<StatusResponse>("v1/status", ct).ConfigureAwait(false);
            if (p.GetValue(output) == "json")
            {
                Json(s);
                return 0;
            }
            Console.WriteLine($"relay daemon {s.Version}, up since {s.StartedAt:yyyy-MM-dd HH:mm:ss} UTC, API on {s.Socket}");
            Console.WriteLine();
            TableWriter.Write(Console.Out, ["network", "services", "instances", "healthy", "flows", "dns"],
                s.Networks.Select(n => (IReadOnlyList<string>)[n.Name, n.Services.ToString(), n.Instances.ToString(), n.Healthy.ToString(), n.Flows.ToString(), $"{n.Gateway4}, {n.Gateway6}"]));
            foreach (var (name, why) in s.Failed)
            {
                Console.WriteLine($"network {name} could not be restored: {why}");
            }
            if (s.Cluster is { } cluster)
            {
                ClusterCommands.WriteCluster(cluster);
            }
            return 0;
        }));
        return cmd;
    }

    public static Command Resolve()
    {
        var name = new Argument<string>("NAME") { Description = "A service name." };
        var network = new Option<string?>("--network", "-n") { Description = "Only this network (default: any)." };
        var output = CliContext.Output();
        var cmd = new Command("resolve", "Show what DNS answers for a service name.") { name, network, output }.WithExamples(
            "relay resolve hello.demo");
        cmd.SetAction(Run(async (p, c, ct) =>
        {
            var r = await c.GetAsync<ResolveResponse>($"v1/resolve?name={Uri.EscapeDataString(p.GetValue(name)!)}" + (p.GetValue(network) is { } n ? $"&network={Uri.EscapeDataString(n)}" : ""), ct).ConfigureAwait(false);
            if (p.GetValue(output) == "json")
            {
                Json(r);
                return 0;
            }
            Console.WriteLine($"{r.Name} (network {r.Network}): A {r.Vip4}, AAAA {r.Vip6}" + (r.Ports.Count > 0 ? $", ports {string.Join(' ', r.Ports)}" : "")
                + (r.Addressing == "flow" ? " (flow addressing: each client gets its own addresses)" : "") + $"; instances: {string.Join(", ", r.Instances.DefaultIfEmpty("none"))}");
            return 0;
        }));
        return cmd;
    }

    public static Command Flows()
    {
        var service = new Argument<string?>("SERVICE") { Description = "Only this service.", Arity = ArgumentArity.ZeroOrOne };
        var network = CliContext.Network();
        var output = CliContext.Output();
        var cmd = new Command("flows", "List per-client flow addresses: client, service, addresses, current instance, packets, bytes.") { service, network, output };
        cmd.SetAction(Run(async (p, c, ct) =>
        {
            var list = await c.GetAsync<FlowInfo[]>($"v1/networks/{Seg(p.GetValue(network)!)}/flows" + (p.GetValue(service) is { } s ? $"?service={Uri.EscapeDataString(s)}" : ""), ct).ConfigureAwait(false);
            if (p.GetValue(output) == "json")
            {
                Json(list);
                return 0;
            }
            TableWriter.Write(Console.Out, ["client", "service", "flow4", "flow6", "instance", "packets", "bytes"],
                list.Select(f => (IReadOnlyList<string>)[f.Client, f.Service, f.Flow4.ToString(), f.Flow6.ToString(), f.Instance, f.Packets.ToString(), f.Bytes.ToString()]));
            return 0;
        }));
        var client = new Argument<string>("CLIENT") { Description = "The client instance." };
        var rservice = new Argument<string>("SERVICE") { Description = "The service." };
        var instance = new Argument<string>("INSTANCE") { Description = "The instance the flow goes to from now on." };
        var rnetwork = CliContext.Network();
        var repoint = new Command("repoint", "Move one client's flow to another instance of the service (only that flow moves).") { client, rservice, instance, rnetwork };
        repoint.SetAction(Run(async (p, c, ct) =>
        {
            var f = await c.PostAsync<FlowInfo>($"v1/networks/{Seg(p.GetValue(rnetwork)!)}/flows/repoint", new RepointRequest(p.GetValue(client)!, p.GetValue(rservice)!, p.GetValue(instance)!), ct).ConfigureAwait(false);
            Console.WriteLine($"flow {f.Client} -> {f.Service} ({f.Flow4}, {f.Flow6}) now goes to {f.Instance}");
            return 0;
        }));
        cmd.Subcommands.Add(repoint);
        return cmd;
    }

    /// <summary>The state column: a draining instance also says how many TCP connections it still holds.</summary>
    private static string StateText(InstanceInfo i)
    {
        var state = i.State.ToString().ToLowerInvariant();
        return i.OpenTcpFlows is { } open ? $"{state} ({open} tcp)" : state;
    }
}
