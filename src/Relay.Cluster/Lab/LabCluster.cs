using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.RegularExpressions;
using Relay.Cluster.Etcd;
using Relay.Core.Errors;
using Relay.Linux.Namespaces;
using Relay.Linux.Processes;

namespace Relay.Cluster.Lab;

/// <summary>One simulated host of a lab.</summary>
/// <param name="Name">The host's name (also its node name): <c>LAB-N</c>.</param>
/// <param name="Namespace">Its network namespace: the host's "root" namespace.</param>
/// <param name="Underlay4">Its IPv4 underlay address (on <c>eth0</c>).</param>
/// <param name="Underlay6">Its IPv6 underlay address.</param>
/// <param name="Etcd">Its etcd member's client URL.</param>
/// <param name="EtcdPid">The member's process id (0 before it started).</param>
/// <param name="Socket">Where its relay daemon's API socket is.</param>
/// <param name="DaemonPid">Its relay daemon's process id (0: none started).</param>
public sealed record LabHost(string Name, string Namespace, string Underlay4, string Underlay6, string Etcd, int EtcdPid, string Socket, int DaemonPid = 0);

/// <summary>What a lab made, written before each step so that <c>relay lab down</c> removes exactly that, even after a failed <c>up</c>.</summary>
/// <param name="Name">The lab's name.</param>
/// <param name="Index">Its number among labs: the third octet of its IPv4 underlay.</param>
/// <param name="UnderlayNamespace">The namespace that holds the underlay bridge.</param>
/// <param name="Directory">Its directory: the record, etcd data and logs.</param>
/// <param name="Hosts">Its hosts.</param>
/// <param name="CreatedAt">When <c>relay lab up</c> ran.</param>
public sealed record LabRecord(string Name, int Index, string UnderlayNamespace, string Directory, IReadOnlyList<LabHost> Hosts, DateTimeOffset CreatedAt)
{
    /// <summary>Every member's client URL, comma-separated: the <c>--etcd</c> value for this lab.</summary>
    public string EtcdEndpoints => string.Join(',', Hosts.Select(h => h.Etcd));
}

/// <summary>How a lab is built.</summary>
public sealed record LabOptions
{
    /// <summary>The lab's name: hosts are NAME-1..NAME-N.</summary>
    public string Name { get; init; } = "lab";

    /// <summary>How many hosts.</summary>
    public int Hosts { get; init; } = 3;

    /// <summary>Where lab records, etcd data and sockets go.</summary>
    public string Root { get; init; } = LabCluster.DefaultRoot;

    /// <summary>etcd's heartbeat interval (etcd's default: 100 ms).</summary>
    public int HeartbeatMs { get; init; } = 100;

    /// <summary>etcd's election timeout (etcd's default: 1000 ms).</summary>
    public int ElectionMs { get; init; } = 1000;

    /// <summary>The relay binary to start one daemon per host with; null: no daemons (etcd only).</summary>
    public string? RelayBinary { get; init; }

    /// <summary>The daemons' node lease TTL.</summary>
    public TimeSpan LeaseTtl { get; init; } = TimeSpan.FromSeconds(3);

    /// <summary>The daemons' wait before a lost node's instances start elsewhere (<c>--reschedule-after</c>; not kept by a daemon restarted later).</summary>
    public TimeSpan RescheduleAfter { get; init; }
}

/// <summary>
/// A local lab, as kind is for Kubernetes: N simulated hosts on one machine. Each host is a network
/// namespace with an underlay address (198.18.L.N/24 and fd52:656c:6179:L::N/64: benchmarking and
/// unique-local ranges, reachable only inside the lab) on a veth to a bridge in a namespace of its
/// own, and runs one member of one etcd cluster. Nothing is created in the host's own namespace.
/// Everything made is written to the lab's record first, and <see cref="Down"/> removes exactly
/// what the record names.
/// </summary>
public static partial class LabCluster
{
    /// <summary>Where labs live by default (sockets at <c>/run/relay/lab/HOST.sock</c>).</summary>
    public const string DefaultRoot = "/run/relay/lab";

    /// <summary>The most hosts a lab may have.</summary>
    public const int MaxHosts = 16;

    [GeneratedRegex("^[a-z][a-z0-9]{0,11}$")]
    private static partial Regex LabName();

    /// <summary>The namespace of a lab host: <c>relay.lab.HOST</c>.</summary>
    public static string HostNamespace(string host) => "relay.lab." + host;

    /// <summary>The namespace of a lab's underlay bridge: <c>relay.lab.LAB-underlay</c>.</summary>
    public static string UnderlayNamespace(string lab) => $"relay.lab.{lab}-underlay";

    /// <summary>Every lab with a record under <paramref name="root"/>, by name.</summary>
    public static IReadOnlyList<LabRecord> List(string root = DefaultRoot)
    {
        if (!System.IO.Directory.Exists(root))
        {
            return [];
        }
        var labs = new List<LabRecord>();
        foreach (var dir in System.IO.Directory.GetDirectories(root).Order(StringComparer.Ordinal))
        {
            var record = Read(Path.Combine(dir, "lab.json"));
            if (record is not null)
            {
                labs.Add(record);
            }
        }
        return labs;
    }

    /// <summary>The lab named <paramref name="name"/>, or null.</summary>
    public static LabRecord? Find(string name, string root = DefaultRoot) => Read(Path.Combine(root, name, "lab.json"));

    /// <summary>
    /// Builds a lab: validates, then creates the namespaces and links, starts the etcd members and
    /// waits until the cluster has a leader. On any failure everything made so far is removed.
    /// </summary>
    public static async Task<LabRecord> UpAsync(LabOptions options, Action<string>? progress = null, CancellationToken ct = default)
    {
        var errors = new ErrorCollector();
        if (!LabName().IsMatch(options.Name))
        {
            errors.Add(ErrorCode.Invalid, "--name", $"'{options.Name}' is not a lab name: 1-12 lower-case letters and digits, starting with a letter");
        }
        if (options.Hosts is < 1 or > MaxHosts)
        {
            errors.Add(ErrorCode.Invalid, "--hosts", $"a lab has 1 to {MaxHosts} hosts, not {options.Hosts}");
        }
        if (!File.Exists("/usr/bin/etcd"))
        {
            errors.Add(ErrorCode.NotFound, "etcd", "etcd is not installed: run 'make deps' (Debian package etcd-server)");
        }
        var existing = List(options.Root);
        if (existing.Any(l => l.Name == options.Name))
        {
            errors.Add(ErrorCode.Duplicate, "--name", $"lab {options.Name} is up already; 'relay lab down --name {options.Name}' removes it");
        }
        errors.ThrowIfAny();
        var used = existing.Select(l => l.Index).ToHashSet();
        var index = Enumerable.Range(1, 254).FirstOrDefault(i => !used.Contains(i), -1);
        if (index < 0)
        {
            throw new RelayException(ErrorCode.PoolExhausted, "lab", "254 labs are up; remove one first");
        }
        foreach (var ns in Enumerable.Range(1, options.Hosts).Select(i => HostNamespace($"{options.Name}-{i}")).Append(UnderlayNamespace(options.Name)))
        {
            if (Netns.Exists(ns))
            {
                errors.Add(ErrorCode.Duplicate, "--name", $"namespace {ns} exists and is not a lab's (no record): pick another lab name");
            }
        }
        errors.ThrowIfAny();

        var dir = Path.Combine(options.Root, options.Name);
        System.IO.Directory.CreateDirectory(dir);
        var hosts = Enumerable.Range(1, options.Hosts).Select(i =>
        {
            var name = $"{options.Name}-{i}";
            var v4 = $"198.18.{index}.{i}";
            return new LabHost(name, HostNamespace(name), v4, $"fd52:656c:6179:{index:x}::{i:x}", $"http://{v4}:2379", 0, Path.Combine(options.Root, name + ".sock"));
        }).ToList();
        var record = new LabRecord(options.Name, index, UnderlayNamespace(options.Name), dir, hosts, DateTimeOffset.UtcNow);
        Write(record);
        try
        {
            progress?.Invoke($"underlay bridge in {record.UnderlayNamespace}");
            Netns.Add(record.UnderlayNamespace);
            IpCommand.Batch(record.UnderlayNamespace, ["link set lo up", "link add rlbr0 type bridge", "link set rlbr0 up"]);
            for (var i = 0; i < hosts.Count; i++)
            {
                ct.ThrowIfCancellationRequested();
                var h = hosts[i];
                progress?.Invoke($"host {h.Name}: namespace {h.Namespace}, underlay {h.Underlay4} {h.Underlay6}");
                Netns.Add(h.Namespace);
                IpCommand.Batch(null, [$"link add rlu{i + 1} netns {record.UnderlayNamespace} type veth peer name eth0 netns {h.Namespace}"]);
                IpCommand.Batch(record.UnderlayNamespace, [$"link set rlu{i + 1} master rlbr0", $"link set rlu{i + 1} up"]);
                using (var inside = NetnsThread.Enter(h.Namespace))
                {
                    Sysctl.Write(inside, "net.ipv6.conf.all.accept_dad", "0");
                    Sysctl.Write(inside, "net.ipv6.conf.default.accept_dad", "0");
                    Sysctl.Write(inside, "net.ipv6.conf.eth0.accept_dad", "0");
                }
                IpCommand.Batch(h.Namespace,
                [
                    "link set lo up",
                    "link set eth0 up",
                    $"addr add {h.Underlay4}/24 dev eth0",
                    $"addr add {h.Underlay6}/64 dev eth0 nodad",
                ]);
            }
            var initial = string.Join(',', hosts.Select(h => $"{h.Name}=http://{h.Underlay4}:2380"));
            for (var i = 0; i < hosts.Count; i++)
            {
                var h = hosts[i];
                progress?.Invoke($"host {h.Name}: etcd member at {h.Etcd}");
                var pid = StartEtcd(record, h, initial, options);
                hosts[i] = h with { EtcdPid = pid };
                record = record with { Hosts = [.. hosts] };
                Write(record);
            }
            progress?.Invoke("waiting for the etcd cluster to elect a leader");
            await WaitForLeaderAsync(record, TimeSpan.FromSeconds(30), ct).ConfigureAwait(false);
            if (options.RelayBinary is not null)
            {
                for (var i = 0; i < hosts.Count; i++)
                {
                    var h = hosts[i];
                    progress?.Invoke($"host {h.Name}: relay daemon on {h.Socket}");
                    hosts[i] = h with { DaemonPid = StartDaemon(record, h, i, options) };
                    record = record with { Hosts = [.. hosts] };
                    Write(record);
                }
                await WaitForDaemonsAsync(record, TimeSpan.FromSeconds(30), ct).ConfigureAwait(false);
            }
            return record;
        }
        catch
        {
            Down(record);
            throw;
        }
    }

    private static int StartDaemon(LabRecord lab, LabHost h, int index, LabOptions options)
    {
        var state = StateDirectory(lab, h);
        var etcd = string.Join(',', lab.Hosts.Skip(index).Concat(lab.Hosts.Take(index)).Select(x => x.Etcd));
        return StartDetached(h.Namespace, Path.Combine(lab.Directory, h.Name + ".daemon.log"), options.RelayBinary!,
        [
            "daemon", "--socket", h.Socket, "--state-dir", state, "--record-dir", Path.Combine(state, "records"),
            "--node", h.Name, "--etcd", etcd, "--underlay", h.Underlay4,
            "--lease-ttl", options.LeaseTtl.TotalSeconds.ToString(CultureInfo.InvariantCulture) + "s",
            "--reschedule-after", options.RescheduleAfter.TotalSeconds.ToString(CultureInfo.InvariantCulture) + "s",
        ], Path.GetFileName(options.RelayBinary!));
    }

    private static async Task WaitForDaemonsAsync(LabRecord lab, TimeSpan timeout, CancellationToken ct)
    {
        var clock = Stopwatch.StartNew();
        foreach (var h in lab.Hosts)
        {
            while (!File.Exists(h.Socket))
            {
                if (!System.IO.Directory.Exists($"/proc/{h.DaemonPid}") || IsZombie(h.DaemonPid))
                {
                    var logPath = Path.Combine(lab.Directory, h.Name + ".daemon.log");
                    // The error itself, not the end of its stack trace.
                    var tail = File.Exists(logPath)
                        ? string.Join(" | ", File.ReadLines(logPath).Where(l => !l.TrimStart().StartsWith("at ", StringComparison.Ordinal) && !l.Contains("--- End of", StringComparison.Ordinal)).TakeLast(4))
                        : "";
                    throw new RelayException(ErrorCode.Kernel, "daemon", $"the relay daemon of {h.Name} exited: {tail}");
                }
                if (clock.Elapsed > timeout)
                {
                    throw new RelayException(ErrorCode.Kernel, "daemon", $"the relay daemon of {h.Name} did not open {h.Socket} within {timeout.TotalSeconds:0}s");
                }
                await Task.Delay(50, ct).ConfigureAwait(false);
            }
        }
    }

    private static int StartEtcd(LabRecord lab, LabHost h, string initialCluster, LabOptions options)
    {
        var data = Path.Combine(lab.Directory, h.Name + ".etcd");
        var log = Path.Combine(lab.Directory, h.Name + ".etcd.log");
        string[] args =
        [
            "--name", h.Name, "--data-dir", data,
            "--listen-peer-urls", $"http://{h.Underlay4}:2380", "--initial-advertise-peer-urls", $"http://{h.Underlay4}:2380",
            "--listen-client-urls", $"http://{h.Underlay4}:2379,http://127.0.0.1:2379", "--advertise-client-urls", h.Etcd,
            "--initial-cluster", initialCluster, "--initial-cluster-state", "new", "--initial-cluster-token", $"relay-lab-{lab.Name}-{lab.CreatedAt.ToUnixTimeMilliseconds()}",
            "--heartbeat-interval", options.HeartbeatMs.ToString(CultureInfo.InvariantCulture),
            "--election-timeout", options.ElectionMs.ToString(CultureInfo.InvariantCulture),
            // A member cut off and back (a lost host returning) must not depose a working leader
            // with its higher term: a needless election stalls every write (etcd 3.5 defaults to it).
            "--pre-vote",
            "--logger", "zap", "--log-level", "warn",
        ];
        return StartDetached(h.Namespace, log, "/usr/bin/etcd", args, "etcd");
    }

    /// <summary>
    /// Starts <paramref name="program"/> in <paramref name="netns"/> so that it outlives this command:
    /// its own session, output to a log file, and its pid (the same process after <c>ip netns exec</c>
    /// and <c>setsid</c> exec into it) returned for the record.
    /// </summary>
    private static int StartDetached(string netns, string log, string program, IReadOnlyList<string> args, string comm)
    {
        var psi = new ProcessStartInfo("/bin/sh") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add("-c");
        // nsenter, not 'ip netns exec': only the network namespace changes. 'ip netns exec' also gives
        // the process a mount namespace of its own, and the namespaces a daemon creates from there
        // (bind mounts under /run/netns) would not be usable from the host: a lab host must share the
        // machine's mounts as a real host's daemon shares its own.
        psi.ArgumentList.Add("log=$1; ns=$2; shift 2; nsenter --net=/run/netns/\"$ns\" \"$@\" >>\"$log\" 2>&1 </dev/null & echo $!");
        psi.ArgumentList.Add("sh");
        psi.ArgumentList.Add(log);
        psi.ArgumentList.Add(netns);
        psi.ArgumentList.Add("setsid");
        psi.ArgumentList.Add(program);
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        using var p = Process.Start(psi) ?? throw new RelayException(ErrorCode.Kernel, comm, $"could not start /bin/sh for {comm}");
        var output = p.StandardOutput.ReadToEnd().Trim();
        p.WaitForExit();
        if (!int.TryParse(output, out var pid))
        {
            throw new RelayException(ErrorCode.Kernel, comm, $"could not start {comm} in {netns}: {output} {p.StandardError.ReadToEnd().Trim()}");
        }
        var clock = Stopwatch.StartNew();
        while (!IsRecordedProcess(pid, comm) && System.IO.Directory.Exists($"/proc/{pid}") && !IsZombie(pid) && clock.ElapsedMilliseconds < 5000)
        {
            Thread.Sleep(5);
        }
        return pid;
    }

    private static async Task WaitForLeaderAsync(LabRecord lab, TimeSpan timeout, CancellationToken ct)
    {
        using var etcd = Connect(lab, 0, TimeSpan.FromMilliseconds(500));
        var deadline = Stopwatch.StartNew();
        string last = "no answer yet";
        while (deadline.Elapsed < timeout)
        {
            ct.ThrowIfCancellationRequested();
            foreach (var h in lab.Hosts)
            {
                if (!IsRecordedProcess(h.EtcdPid, "etcd") || IsZombie(h.EtcdPid))
                {
                    var logPath = Path.Combine(lab.Directory, h.Name + ".etcd.log");
                    var tail = File.Exists(logPath) ? string.Join(" | ", File.ReadLines(logPath).TakeLast(3)) : "";
                    throw new RelayException(ErrorCode.Kernel, "etcd", $"the etcd member of {h.Name} exited: {tail}");
                }
            }
            var status = await etcd.MemberStatusAsync(ct).ConfigureAwait(false);
            if (status.All(s => s.Status is { Leader: not 0 }))
            {
                return;
            }
            last = string.Join("; ", status.Where(s => s.Status is null || s.Status.Leader == 0).Select(s => $"{s.Endpoint}: {s.Error ?? "no leader"}"));
            await Task.Delay(100, ct).ConfigureAwait(false);
        }
        throw new RelayException(ErrorCode.Unavailable, "etcd", $"the lab's etcd cluster has no leader after {timeout.TotalSeconds:0}s: {last}");
    }

    /// <summary>
    /// Removes what <paramref name="lab"/>'s record names, and nothing else: its etcd members (only
    /// processes that still are the recorded ones), the host and underlay namespaces, the lab's
    /// directory and sockets. Returns what was removed. A stopped daemon leaves its networks in the
    /// kernel (as on any host); <paramref name="removeNetworks"/> gets each daemon's record directory
    /// and removes what those records name (the engine's <c>NetworkRecord</c> knows how).
    /// </summary>
    public static IReadOnlyList<string> Down(LabRecord lab, Func<string, IEnumerable<string>>? removeNetworks = null)
    {
        var removed = new List<string>();
        // Every daemon at once: one that stopped first leaves the cluster at once, and a daemon
        // still running would start that node's instances on itself.
        var daemons = lab.Hosts.Where(h => h.DaemonPid > 0 && IsRecordedProcess(h.DaemonPid, "relay")).ToArray();
        StopProcesses(daemons.Select(h => h.DaemonPid));
        removed.AddRange(daemons.Select(h => $"relay daemon {h.Name} (pid {h.DaemonPid})"));
        foreach (var h in lab.Hosts)
        {
            var records = Path.Combine(StateDirectory(lab, h), "records");
            if (removeNetworks is not null && System.IO.Directory.Exists(records))
            {
                removed.AddRange(removeNetworks(records));
            }
        }
        foreach (var h in lab.Hosts)
        {
            if (IsRecordedProcess(h.EtcdPid, "etcd"))
            {
                StopProcess(h.EtcdPid);
                removed.Add($"etcd member {h.Name} (pid {h.EtcdPid})");
            }
        }
        foreach (var h in lab.Hosts)
        {
            // Anything else a test or the user started in a lab host dies with the host.
            foreach (var pid in Netns.Pids(h.Namespace))
            {
                StopProcess(pid);
            }
            if (Netns.Exists(h.Namespace))
            {
                Netns.Delete(h.Namespace);
                removed.Add("namespace " + h.Namespace);
            }
            if (File.Exists(h.Socket))
            {
                File.Delete(h.Socket);
            }
        }
        if (Netns.Exists(lab.UnderlayNamespace))
        {
            Netns.Delete(lab.UnderlayNamespace);
            removed.Add("namespace " + lab.UnderlayNamespace);
        }
        if (System.IO.Directory.Exists(lab.Directory))
        {
            System.IO.Directory.Delete(lab.Directory, recursive: true);
            removed.Add("directory " + lab.Directory);
        }
        return removed;
    }

    /// <summary>
    /// A connection to <paramref name="lab"/>'s etcd as seen from host <paramref name="host"/> (0-based):
    /// its own member first, then the others; connections are made inside that host's namespace.
    /// </summary>
    public static EtcdConnection Connect(LabRecord lab, int host, TimeSpan? timeout = null, bool onlyLocal = false)
    {
        var endpoints = onlyLocal ? [lab.Hosts[host].Etcd] : lab.Hosts.Skip(host).Concat(lab.Hosts.Take(host)).Select(h => h.Etcd).ToArray();
        return new EtcdConnection(endpoints, timeout, lab.Hosts[host].Namespace);
    }

    /// <summary>Kills a host's etcd member as a crash would (SIGKILL); for tests and the multi-host demo.</summary>
    public static void KillMember(LabHost host)
    {
        if (IsRecordedProcess(host.EtcdPid, "etcd"))
        {
            Signals.Send(host.EtcdPid, Signals.Kill);
        }
    }

    /// <summary>Where a host's daemon keeps its store; its records of namespaces are in <c>records/</c> below.</summary>
    public static string StateDirectory(LabRecord lab, LabHost host) => Path.Combine(lab.Directory, host.Name + ".state");

    /// <summary>Kills a host's relay daemon as a crash would (SIGKILL).</summary>
    public static void KillDaemon(LabHost host)
    {
        if (host.DaemonPid > 0 && IsRecordedProcess(host.DaemonPid, "relay"))
        {
            Signals.Send(host.DaemonPid, Signals.Kill);
        }
    }

    /// <summary>
    /// Starts host <paramref name="index"/>'s relay daemon again (after <see cref="KillDaemon"/>), with
    /// the lab's settings, and returns once its API socket is open; the record is updated with its pid.
    /// </summary>
    public static async Task<LabRecord> RestartDaemonAsync(LabRecord lab, int index, string relayBinary, TimeSpan leaseTtl, CancellationToken ct = default)
    {
        var host = lab.Hosts[index];
        File.Delete(host.Socket); // the killed daemon's, the lab's own path
        var options = new LabOptions { Name = lab.Name, Hosts = lab.Hosts.Count, RelayBinary = relayBinary, LeaseTtl = leaseTtl };
        var hosts = lab.Hosts.ToArray();
        hosts[index] = host with { DaemonPid = StartDaemon(lab, host, index, options) };
        var record = lab with { Hosts = hosts };
        Write(record);
        await WaitForDaemonsAsync(record with { Hosts = [hosts[index]] }, TimeSpan.FromSeconds(30), ct).ConfigureAwait(false);
        return record;
    }

    /// <summary>Stops (SIGSTOP) or resumes (SIGCONT) a member: a member that cannot answer, as on a partitioned host.</summary>
    public static void PauseMember(LabHost host, bool pause)
    {
        if (IsRecordedProcess(host.EtcdPid, "etcd"))
        {
            Signals.Send(host.EtcdPid, pause ? 19 : 18); // SIGSTOP, SIGCONT
        }
    }

    /// <summary>Cuts (or restores) a host's underlay link: the host is alone, as after a network partition.</summary>
    public static void SetLinkUp(LabRecord lab, LabHost host, bool up)
    {
        var i = lab.Hosts.ToList().IndexOf(host) + 1;
        IpCommand.Batch(lab.UnderlayNamespace, [$"link set rlu{i} {(up ? "up" : "down")}"]);
    }

    private static bool IsRecordedProcess(int pid, string comm)
    {
        if (pid <= 0)
        {
            return false;
        }
        try
        {
            return File.ReadAllText($"/proc/{pid}/comm").Trim() == comm;
        }
        catch (IOException)
        {
            return false;
        }
    }

    /// <summary>SIGTERM to all of <paramref name="pids"/> at once, up to 3 s for them to exit, then SIGKILL.</summary>
    private static void StopProcesses(IEnumerable<int> pids)
    {
        var all = pids.ToArray();
        foreach (var pid in all)
        {
            Signals.Send(pid, Signals.Terminate);
        }
        var waited = Stopwatch.StartNew();
        while (all.Any(Running) && waited.ElapsedMilliseconds < 3000)
        {
            Thread.Sleep(20);
        }
        foreach (var pid in all.Where(Running))
        {
            Signals.Send(pid, Signals.Kill);
        }
    }

    private static bool Running(int pid) => System.IO.Directory.Exists($"/proc/{pid}") && !IsZombie(pid);

    private static void StopProcess(int pid) => StopProcesses([pid]);

    private static bool IsZombie(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[(stat.LastIndexOf(')') + 2)..].StartsWith('Z');
        }
        catch (IOException)
        {
            return true;
        }
    }

    private static void Write(LabRecord record)
    {
        var path = Path.Combine(record.Directory, "lab.json");
        var tmp = path + ".tmp";
        File.WriteAllText(tmp, JsonSerializer.Serialize(record, LabJson.Default.LabRecord));
        File.Move(tmp, path, overwrite: true);
    }

    private static LabRecord? Read(string path)
    {
        if (!File.Exists(path))
        {
            return null;
        }
        try
        {
            return JsonSerializer.Deserialize(File.ReadAllText(path), LabJson.Default.LabRecord);
        }
        catch (JsonException)
        {
            return null;
        }
    }
}

[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
[JsonSerializable(typeof(LabRecord))]
internal sealed partial class LabJson : JsonSerializerContext;
