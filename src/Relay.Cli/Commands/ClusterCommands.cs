using System.CommandLine;
using System.Globalization;
using Relay.Cli.Output;
using Relay.Cluster.Lab;
using Relay.Daemon.Api;
using Relay.Engine;
using static Relay.Cli.Commands.CliContext;

namespace Relay.Cli.Commands;

/// <summary><c>relay node ls</c> and <c>relay lab up|ls|down</c>.</summary>
internal static class ClusterCommands
{
    public static Command Node()
    {
        var output = CliContext.Output();
        var ls = new Command("ls", "The nodes of the cluster: name, underlay address, state (ready; suspect: no heartbeat seen for a lease TTL, its instances out of this node's balancers; lost: its lease expired), lease age, instances, applied revision. On a single host, the host alone.") { output };
        ls.SetAction(Run(async (p, c, ct) =>
        {
            var nodes = await c.GetAsync<NodeInfo[]>("v1/nodes", ct).ConfigureAwait(false);
            if (p.GetValue(output) == "json")
            {
                Json(nodes);
                return 0;
            }
            WriteNodes(nodes);
            return 0;
        }));
        return new Command("node", "The hosts of a cluster.") { ls };
    }

    /// <summary>The node table (also part of <c>relay status</c> in a cluster).</summary>
    public static void WriteNodes(IEnumerable<NodeInfo> nodes)
        => TableWriter.Write(Console.Out, ["node", "underlay", "state", "lease age", "instances", "applied", "lag"],
            nodes.Select(n => (IReadOnlyList<string>)[n.Self ? n.Name + " *" : n.Name, n.Underlay ?? "-", n.State,
                n.LeaseAgeSeconds is { } a ? a.ToString("0.0s", CultureInfo.InvariantCulture) : "-",
                n.Instances.ToString(CultureInfo.InvariantCulture), n.AppliedRevision == 0 ? "-" : n.AppliedRevision.ToString(CultureInfo.InvariantCulture),
                n.Lag?.ToString(CultureInfo.InvariantCulture) ?? "-"]));

    /// <summary>The cluster part of <c>relay status</c>.</summary>
    public static void WriteCluster(ClusterStatus cluster)
    {
        Console.WriteLine();
        Console.WriteLine($"cluster: node {cluster.Node}, etcd {string.Join(",", cluster.Etcd)}, watch {(cluster.WatchConnected ? "connected" : "DISCONNECTED")} at revision {cluster.WatchRevision}");
        if (cluster.LastError is not null)
        {
            Console.WriteLine($"  last error: {cluster.LastError}");
        }
        TableWriter.Write(Console.Out, ["etcd member", "client url", "state", "leader", "revision"],
            cluster.Members.Select(m => (IReadOnlyList<string>)[m.Name, m.ClientUrl, m.State, m.Leader ? "yes" : "", m.Revision?.ToString(CultureInfo.InvariantCulture) ?? "-"]));
        Console.WriteLine();
        WriteNodes(cluster.Nodes);
    }

    public static Command Lab()
    {
        var name = new Option<string>("--name") { Description = "The lab's name; its hosts are NAME-1..NAME-N.", DefaultValueFactory = _ => "lab" };
        var hosts = new Option<int>("--hosts") { Description = "How many simulated hosts.", DefaultValueFactory = _ => 3 };
        var ttl = new Option<string>("--lease-ttl") { Description = "The daemons' node lease TTL.", DefaultValueFactory = _ => "3s" };
        var output = CliContext.Output();
        var up = new Command("up", "Build a local lab: N simulated hosts on this machine (a network namespace each, on an underlay bridge of their own), one etcd member per host forming one cluster, one relay daemon per host with its API at /run/relay/lab/HOST.sock. Nothing is created in the host's own namespace.")
        {
            name, hosts, ttl, output,
        };
        up.SetAction((p, ct) => Guard(async () =>
        {
            OperationCommands.RequireRoot();
            if (!Relay.Core.Model.Duration.TryParse(p.GetValue(ttl), out var leaseTtl, out var reason))
            {
                throw new Relay.Core.Errors.RelayException(Relay.Core.Errors.ErrorCode.Invalid, "--lease-ttl", reason);
            }
            var json = p.GetValue(output) == "json";
            var lab = await LabCluster.UpAsync(new LabOptions
            {
                Name = p.GetValue(name)!,
                Hosts = p.GetValue(hosts),
                RelayBinary = Environment.ProcessPath,
                LeaseTtl = leaseTtl,
            }, json ? null : m => Console.Error.WriteLine("lab: " + m), ct).ConfigureAwait(false);
            if (json)
            {
                Json(lab);
                return 0;
            }
            WriteLab(lab);
            Console.WriteLine();
            Console.WriteLine($"drive a host with: relay --socket {lab.Hosts[0].Socket} node ls");
            Console.WriteLine($"remove it with:    relay lab down --name {lab.Name}");
            return 0;
        }));

        var ls = new Command("ls", "The labs on this machine: hosts, underlay addresses, etcd endpoints and API sockets.") { output };
        ls.SetAction((p, ct) => Guard(() =>
        {
            var labs = LabCluster.List();
            if (p.GetValue(output) == "json")
            {
                Json(labs);
                return Task.FromResult(0);
            }
            if (labs.Count == 0)
            {
                Console.WriteLine("no labs; 'relay lab up' builds one");
            }
            foreach (var lab in labs)
            {
                WriteLab(lab);
            }
            return Task.FromResult(0);
        }));

        var downName = new Option<string>("--name") { Description = "The lab to remove.", DefaultValueFactory = _ => "lab" };
        var down = new Command("down", "Remove a lab: exactly what its record names (daemons and their networks, etcd members, namespaces, files), nothing else.") { downName };
        down.SetAction((p, ct) => Guard(() =>
        {
            OperationCommands.RequireRoot();
            var lab = LabCluster.Find(p.GetValue(downName)!) ?? throw new Relay.Core.Errors.RelayException(Relay.Core.Errors.ErrorCode.NotFound, "--name", $"no lab named {p.GetValue(downName)}; 'relay lab ls' lists them");
            var removed = LabCluster.Down(lab, NetworkRecord.RemoveAll);
            Console.WriteLine($"lab {lab.Name} removed: {removed.Count} objects ({string.Join(", ", removed)})");
            return Task.FromResult(0);
        }));
        return new Command("lab", "A local lab of simulated hosts forming one Relay cluster, as kind is for Kubernetes.") { up, ls, down };
    }

    private static void WriteLab(LabRecord lab)
    {
        Console.WriteLine($"lab {lab.Name}: {lab.Hosts.Count} hosts, underlay bridge in {lab.UnderlayNamespace}, etcd {lab.EtcdEndpoints}");
        TableWriter.Write(Console.Out, ["host", "namespace", "underlay", "etcd", "socket"],
            lab.Hosts.Select(h => (IReadOnlyList<string>)[h.Name, h.Namespace, $"{h.Underlay4} {h.Underlay6}", h.Etcd, h.DaemonPid > 0 ? h.Socket : "(no daemon)"]));
    }
}
