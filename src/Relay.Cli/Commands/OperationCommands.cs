using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Relay.Cli.Client;
using Relay.Cli.Config;
using Relay.Cli.Output;
using Relay.Core.Model;
using Relay.Daemon;
using Relay.Daemon.Api;
using Relay.Engine;
using Relay.Engine.Api;
using static Relay.Cli.Commands.CliContext;

namespace Relay.Cli.Commands;

/// <summary><c>relay apply|migrate|exec|events|down|metrics|daemon</c>.</summary>
internal static class OperationCommands
{
    public static Command Apply()
    {
        var file = new Option<FileInfo>("--file", "-f") { Description = "The YAML file (networks, services, instances).", Required = true };
        var dryRun = new Option<bool>("--dry-run") { Description = "Show what would change; change nothing." };
        var output = CliContext.Output();
        var cmd = new Command("apply", "Make the networks in a file match it: create what is missing, change what differs, remove what the file no longer lists. Applying the same file twice changes nothing. Every error is reported with its line, and then nothing is applied.")
        {
            file, dryRun, output,
        }.WithExamples(
            "relay apply -f examples/web.yaml --dry-run");
        cmd.SetAction(Run(async (p, c, ct) =>
        {
            var path = p.GetValue(file)!;
            if (!path.Exists)
            {
                throw new CliException($"no file {path.FullName}");
            }
            var doc = DesiredStateDocument.Parse(await File.ReadAllTextAsync(path.FullName, ct).ConfigureAwait(false), path.Name);
            if (doc.Errors.Count > 0)
            {
                var all = AllErrors(doc);
                foreach (var e in all)
                {
                    await Console.Error.WriteLineAsync($"{path.Name}:{e}").ConfigureAwait(false);
                }
                throw new CliException($"{all.Count} error{(all.Count == 1 ? "" : "s")} in {path.Name}; nothing was applied");
            }
            ApplyResult result;
            try
            {
                result = await c.PostAsync<ApplyResult>($"v1/apply?dryRun={p.GetValue(dryRun).ToString().ToLowerInvariant()}", doc.State, ct).ConfigureAwait(false);
            }
            catch (CliException e) when (e.Errors.Count > 0)
            {
                // The daemon names fields (services[2].name); show where they are in the file.
                foreach (var f in e.Errors)
                {
                    var at = doc.TryGetNearestLocation(f.Field, out var line, out var column) ? $"{line}:{column}: " : "";
                    await Console.Error.WriteLineAsync($"{path.Name}:{at}{f.Field}: {f.Message}").ConfigureAwait(false);
                }
                throw new CliException($"{e.Errors.Count} error{(e.Errors.Count == 1 ? "" : "s")}; nothing was applied", e.ExitCode);
            }
            if (p.GetValue(output) == "json")
            {
                Json(result);
                return 0;
            }
            TableWriter.Write(Console.Out, ["action", "kind", "network", "name", "detail"],
                result.Steps.Select(s => (IReadOnlyList<string>)[s.Action, s.Kind, s.Network, s.Name, s.Detail]));
            Console.WriteLine(result.Changes == 0 ? "no changes" : $"{result.Changes} change{(result.Changes == 1 ? "" : "s")}{(result.DryRun ? " would be made (dry run)" : " made")}");
            return 0;
        }));
        return cmd;
    }

    /// <summary>
    /// The file's errors and, unless it could not be read at all, every error the daemon would
    /// report on what could be read (unknown services, duplicates), so one run lists them all.
    /// </summary>
    private static IReadOnlyList<YamlError> AllErrors(DesiredStateDocument doc)
    {
        if (doc.Errors.Any(e => e.Field.Length == 0))
        {
            return doc.Errors;
        }
        static bool Related(string a, string b) => a == b || a.StartsWith(b + ".", StringComparison.Ordinal) || b.StartsWith(a + ".", StringComparison.Ordinal);
        var more = SpecMapping.Validate(doc.State)
            .Where(v => !doc.Errors.Any(e => Related(e.Field, v.Field)))
            .Select(v => doc.TryGetNearestLocation(v.Field, out var line, out var column)
                ? new YamlError(line, column, v.Field, v.Message)
                : new YamlError(0, 0, v.Field, v.Message));
        return doc.Errors.Concat(more).OrderBy(e => e.Line).ThenBy(e => e.Column).ToArray();
    }

    public static Command Migrate()
    {
        var service = new Argument<string>("SERVICE") { Description = "The service to move." };
        var from = new Option<string?>("--from") { Description = "The instance that leaves (default: the only one in the balancer)." };
        var to = new Option<string?>("--to") { Description = "The instance that takes over (default: a fresh one, same command, started and checked first)." };
        var drain = new Option<string?>("--drain") { Description = "How long TCP flows may finish on the old instance (default 30s; 0 cuts them)." };
        var network = CliContext.Network();
        var output = CliContext.Output();
        var cmd = new Command("migrate", "Move a service to another instance, make before break: one transaction re-points it, stale ICMP/UDP flows follow at once, TCP flows drain.")
        {
            service, from, to, drain, network, output,
        }.WithExamples(
            "relay migrate pong.demo --to pong-next --drain 5s",
            "relay migrate hello.demo");
        cmd.SetAction(Run(async (p, c, ct) =>
        {
            var call = c.PostAsync<MigrateResponse>($"v1/networks/{Seg(p.GetValue(network)!)}/services/{Seg(p.GetValue(service)!)}/migrate",
                new MigrateRequest(p.GetValue(from), p.GetValue(to), p.GetValue(drain)), ct);
            // Progress only when the answer takes a while (a fresh instance is started and checked
            // first): a mistake is answered at once and then stands alone on the terminal.
            if (p.GetValue(to) is null && await Task.WhenAny(call, Task.Delay(TimeSpan.FromMilliseconds(300), ct)).ConfigureAwait(false) != call)
            {
                await Console.Error.WriteLineAsync($"starting a fresh instance of {p.GetValue(service)} and waiting for it to be ready ...").ConfigureAwait(false);
            }
            var r = await call.ConfigureAwait(false);
            if (p.GetValue(output) == "json")
            {
                Json(r);
                return 0;
            }
            if (r.Revision is { } revision)
            {
                Console.WriteLine($"{r.Service}: {r.From} -> {r.To} (revision {revision}: written in {r.RepointUs / 1000:0.0} ms, applied by "
                    + (r.NotApplied is { Count: > 0 } behind ? $"the live nodes but {string.Join(", ", behind)} (not within the wait)" : "every live node") + $" in {r.SwitchUs / 1000:0.0} ms"
                    + (r.ConvergedUs is { } converged ? $", the last kernel held it after {converged / 1000:0.0} ms" : "") + $"); {r.From} drains, then stops");
                return r.NotApplied is { Count: > 0 } ? 2 : 0;
            }
            Console.WriteLine($"{r.Service}: {r.From} -> {r.To} (re-point {r.RepointUs:0} us, switch {r.SwitchUs:0} us, {r.StaleFlowsDeleted} stale flow{(r.StaleFlowsDeleted == 1 ? "" : "s")} moved); {r.From} drains, then stops");
            return 0;
        }));
        return cmd;
    }

    public static Command Exec()
    {
        var instance = new Argument<string>("INSTANCE") { Description = "The instance." };
        var command = new Argument<string[]>("COMMAND") { Description = "The command (after --).", Arity = ArgumentArity.OneOrMore };
        var network = CliContext.Network();
        var cmd = new Command("exec", "Run a command inside an instance (its network namespace, its resolver: service names resolve), attached to the terminal.")
        {
            instance, command, network,
        }.WithExamples(
            "relay exec hello-1 -- ping -c 3 pong.demo",
            "relay exec pong-1 -- socat - TCP:hello.demo:80");
        cmd.SetAction(Run(async (p, c, ct) =>
        {
            CliContext.RequireDoubleDash(p, command, "relay exec INSTANCE -- COMMAND [ARGS...]");
            var i = await c.GetAsync<InstanceInfo>($"v1/networks/{Seg(p.GetValue(network)!)}/instances/{Seg(p.GetValue(instance)!)}", ct).ConfigureAwait(false);
            // The terminal stays ours: the command inherits stdin, stdout and stderr.
            var psi = new ProcessStartInfo("ip") { UseShellExecute = false };
            foreach (var a in new[] { "netns", "exec", i.Namespace }.Concat(p.GetValue(command)!))
            {
                psi.ArgumentList.Add(a);
            }
            using var process = Process.Start(psi) ?? throw new CliException("could not start ip");
            await process.WaitForExitAsync(ct).ConfigureAwait(false);
            return process.ExitCode;
        }));
        return cmd;
    }

    public static Command Events()
    {
        var follow = new Option<bool>("--follow", "-f") { Description = "Keep printing new events." };
        var output = CliContext.Output();
        var cmd = new Command("events", "Show what happened (the last 1,000 events, kept across daemon restarts): services and instances added, health changes, migrations with their timings.") { follow, output };
        cmd.SetAction(Run(async (p, c, ct) =>
        {
            await foreach (var line in c.LinesAsync($"v1/events?follow={p.GetValue(follow).ToString().ToLowerInvariant()}", ct).ConfigureAwait(false))
            {
                if (p.GetValue(output) == "json")
                {
                    Console.WriteLine(line);
                    continue;
                }
                var e = JsonSerializer.Deserialize<RelayEvent>(line, ApiJson.Options)!;
                Console.WriteLine($"{e.Time.ToLocalTime():HH:mm:ss.fff}  {e.Network,-10} {e.Kind,-18} {e.Message}");
            }
            return 0;
        }));
        return cmd;
    }

    public static Command Metrics()
    {
        var cmd = new Command("metrics", "Print the daemon's metrics (Prometheus text format, as GET /metrics serves them).");
        cmd.SetAction(Run(async (p, c, ct) =>
        {
            Console.Write(await c.GetTextAsync("metrics", ct).ConfigureAwait(false));
            return 0;
        }));
        return cmd;
    }

    public static Command Down()
    {
        var network = new Option<string?>("--network", "-n") { Description = "Only this network (default: all)." };
        var state = StateDir();
        var records = RecordDir();
        var keep = new Option<bool>("--keep-daemon") { Description = "Remove every network but leave the daemon running." };
        var cmd = new Command("down", "Remove everything Relay created: every network (namespaces, links, tables, instance processes, DNS servers), then stop the daemon. With --network, only that network goes and the daemon stays. With the daemon stopped, removes what its records list (after a crash) and forgets those networks in its store.")
        {
            network, keep, state, records,
        };
        cmd.SetAction((p, ct) => Guard(async () =>
        {
            var socket = p.GetValue(Socket)!;
            var only = p.GetValue(network);
            if (File.Exists(socket))
            {
                using var client = new RelayClient(socket);
                try
                {
                    if (only is not null)
                    {
                        await client.DeleteAsync<object>($"v1/networks/{Seg(only)}", ct).ConfigureAwait(false);
                        Console.WriteLine($"network {only} removed");
                    }
                    else
                    {
                        var r = await client.PostAsync<DownResponse>($"v1/down?stop={(!p.GetValue(keep)).ToString().ToLowerInvariant()}", new { }, ct).ConfigureAwait(false);
                        Console.WriteLine(r.Removed.Count == 0 ? "no networks to remove" : $"removed networks: {string.Join(", ", r.Removed)}");
                        if (r.Stopping)
                        {
                            await WaitGone(socket, ct).ConfigureAwait(false);
                            Console.WriteLine("the daemon has stopped");
                        }
                    }
                    return 0;
                }
                catch (CliException e) when (e.Message.StartsWith("cannot reach", StringComparison.Ordinal) || e.Message.Contains("not running", StringComparison.Ordinal))
                {
                    // A socket file without a daemon: fall through to the records.
                }
            }
            RequireRoot();
            var removed = new List<string>();
            if (only is null && File.Exists(socket))
            {
                // Left by a daemon that died (nothing answered on it above).
                File.Delete(socket);
                removed.Add(socket);
            }
            foreach (var directory in new[] { p.GetValue(records)!, new NetworkOptions { Name = "x" }.RecordDirectory }.Distinct())
            {
                foreach (var record in NetworkRecord.LoadAll(directory).Where(r => only is null || r.Network == only))
                {
                    removed.AddRange(record.RemoveLeftovers(directory));
                }
            }
            // The store must forget them too, or the next daemon start would bring them back.
            var database = new DaemonOptions { StateDirectory = p.GetValue(state)! }.DatabasePath;
            if (File.Exists(database))
            {
                using var store = new Relay.Daemon.Store.RelayStore(database);
                foreach (var stored in store.Load().Where(n => only is null || n.Options.Name == only))
                {
                    store.DeleteNetwork(stored.Options.Name);
                    removed.Add($"{stored.Options.Name} (from the store)");
                }
            }
            Console.WriteLine(removed.Count == 0 ? "the daemon is not running and no records of networks are left: nothing to remove" : $"removed {string.Join(", ", removed)}");
            return 0;
        }));
        return cmd;
    }

    public static Command Daemon(Option<bool> verbose)
    {
        var state = StateDir();
        var records = RecordDir();
        // Only a unix socket: its access control is the kernel's (mode 0600 and the peer's uid,
        // checked with SO_PEERCRED). A TCP listener would hand root's network to anyone who can connect.
        var node = new Option<string?>("--node") { Description = "This host's node name in a cluster (part of its namespaces' names: keep it)." };
        var etcd = new Option<string?>("--etcd") { Description = "Join a cluster: its etcd endpoints, comma-separated (http://ADDRESS:PORT, the local member first). Without it: a single host." };
        var underlay = new Option<string?>("--underlay") { Description = "The address other nodes reach this one at (VXLAN's outer address)." };
        var ttl = new Option<string>("--lease-ttl") { Description = "The node lease's TTL: how soon the cluster notices this node is gone.", DefaultValueFactory = _ => "3s" };
        var reschedule = new Option<string>("--reschedule-after") { Description = "How long a lost node's instances wait before they start again on a live node (they leave the balancers at once).", DefaultValueFactory = _ => "0s" };
        var config = new Option<FileInfo?>("--config") { Description = "A YAML file with the daemon's settings (node, etcd, underlay, leaseTtl, rescheduleAfter, socket, stateDir, recordDir); a flag given on the command line wins over it." };
        var cmd = new Command("daemon", "Run the relay daemon in the foreground: the API on a unix socket (root only), the store, health checks, supervision. SIGTERM stops it and leaves the networks running; the next start adopts them. With --etcd it joins a cluster as node --node; --config reads those settings from a YAML file.")
        {
            state, records, node, etcd, underlay, ttl, reschedule, config,
        };

        cmd.SetAction((p, ct) => Guard(async () =>
        {
            RequireRoot();
            var file = new DaemonConfigFile();
            if (p.GetValue(config) is { } path)
            {
                if (!path.Exists)
                {
                    throw new CliException($"no file {path.FullName} (--config)");
                }
                var (read, problems) = DaemonConfigFile.Parse(await File.ReadAllTextAsync(path.FullName, ct).ConfigureAwait(false));
                if (problems.Count > 0)
                {
                    foreach (var e in problems)
                    {
                        await Console.Error.WriteLineAsync($"{path.Name}:{e}").ConfigureAwait(false);
                    }
                    throw new CliException($"{problems.Count} error{(problems.Count == 1 ? "" : "s")} in {path.Name}; the daemon did not start");
                }
                file = read;
            }
            // A flag given on the command line wins; then the file; then the flag's default.
            T Pick<T>(Option<T> option, T? fromFile) => p.GetResult(option) is { Implicit: false } || fromFile is null ? p.GetValue(option)! : fromFile;
            var leaseText = Pick(ttl, file.LeaseTtl);
            var rescheduleText = Pick(reschedule, file.RescheduleAfter);
            var errors = new Relay.Core.Errors.ErrorCollector();
            if (!Relay.Core.Model.Duration.TryParse(leaseText, out var leaseTtl, out var reason))
            {
                errors.Add(Relay.Core.Errors.ErrorCode.Invalid, file.LeaseTtl == leaseText ? "leaseTtl" : "--lease-ttl", reason);
            }
            if (!Relay.Core.Model.Duration.TryParse(rescheduleText, out var rescheduleAfter, out var why))
            {
                errors.Add(Relay.Core.Errors.ErrorCode.Invalid, file.RescheduleAfter == rescheduleText ? "rescheduleAfter" : "--reschedule-after", why);
            }
            errors.ThrowIfAny();
            var options = new DaemonOptions
            {
                Socket = Pick(Socket, file.Socket),
                StateDirectory = Pick(state, file.StateDir),
                RecordDirectory = Pick(records, file.RecordDir),
                Node = p.GetResult(node) is { Implicit: false } ? p.GetValue(node) : file.Node,
                Etcd = p.GetResult(etcd) is { Implicit: false }
                    ? (p.GetValue(etcd) ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                    : [.. file.Etcd ?? []],
                Underlay = p.GetResult(underlay) is { Implicit: false } ? p.GetValue(underlay) : file.Underlay,
                LeaseTtl = leaseTtl,
                RescheduleAfter = rescheduleAfter,
            };
            return await DaemonHost.RunAsync(options, p.GetValue(verbose) ? LogLevel.Debug : LogLevel.Information, ct).ConfigureAwait(false);
        }));
        return cmd;
    }

    /// <summary>Waits until the daemon has exited (its socket file is gone), at most 30 s.</summary>
    private static async Task WaitGone(string socket, CancellationToken ct)
    {
        var until = Stopwatch.StartNew();
        while (File.Exists(socket) && until.Elapsed < TimeSpan.FromSeconds(30))
        {
            await Task.Delay(50, ct).ConfigureAwait(false);
        }
    }

    private static Option<string> StateDir() => new("--state-dir")
    {
        Description = "The daemon's state directory (its store and instance logs).",
        DefaultValueFactory = _ => new DaemonOptions().StateDirectory,
    };

    private static Option<string> RecordDir() => new("--record-dir")
    {
        Description = "Where records of created namespaces are kept (what 'relay down' removes after a crash).",
        DefaultValueFactory = _ => new DaemonOptions().RecordDirectory,
    };

    public static void RequireRoot()
    {
        if (Relay.Linux.Interop.Identity.EffectiveUserId() != 0)
        {
            throw new CliException("relay needs root (it creates network namespaces and nftables tables); run it with sudo");
        }
    }
}
