using System.Diagnostics;
using System.Text.Json;
using Relay.Integration.Tests.Support;

namespace Relay.Integration.Tests.Daemon;

/// <summary>
/// <c>relay down</c> leaves nothing of Relay's: no namespace (so no link or nft table in it), no
/// process, no record, no socket, and the store forgets the networks. Also with <c>--network</c>,
/// <c>--keep-daemon</c>, and after the daemon was killed with SIGKILL (from the records).
/// </summary>
public sealed class DownTests
{
    /// <summary>
    /// Services with instances that run commands under restart policies and health checks, and
    /// traffic: c-1 pings ping.test all the time; web.test echoes TCP. idle-1 runs nothing.
    /// </summary>
    private static string Busy(string network) => $"""
        networks:
          - name: {network}
        services:
          - network: {network}
            name: web.test
            ports: ["80:8080/tcp"]
          - network: {network}
            name: ping.test
          - network: {network}
            name: client.test
        instances:
          - network: {network}
            service: web.test
            name: web-1
            command: [socat, "TCP-LISTEN:8080,fork,reuseaddr", "EXEC:cat"]
            restart: on-failure
            health:
              type: tcp
              port: 8080
              interval: 200ms
          - network: {network}
            service: web.test
            name: web-2
            command: [socat, "TCP-LISTEN:8080,fork,reuseaddr", "EXEC:cat"]
            restart: always
            health:
              type: tcp
              port: 8080
              interval: 200ms
          - network: {network}
            service: ping.test
            name: p-1
            command: [sleep, infinity]
            restart: always
            health:
              type: icmp
              interval: 200ms
          - network: {network}
            service: client.test
            name: c-1
            command: [ping, -i, "0.2", ping.test]
            restart: always
          - network: {network}
            service: client.test
            name: idle-1
        """;

    /// <summary>A network where no traffic goes through the service (its kernel state can be compared); q-3 has a health check.</summary>
    private static string Quiet(string network) => $"""
        networks:
          - name: {network}
        services:
          - network: {network}
            name: q.test
        instances:
          - network: {network}
            service: q.test
            name: q-1
            command: [sleep, infinity]
            restart: always
          - network: {network}
            service: q.test
            name: q-2
          - network: {network}
            service: q.test
            name: q-3
            command: [socat, "TCP-LISTEN:9000,fork,reuseaddr", "EXEC:cat"]
            health:
              type: tcp
              port: 9000
              interval: 1s
        """;

    [Fact]
    public async Task Down_removes_every_network_with_its_processes_then_stops_the_daemon_and_the_store_forgets_them()
    {
        await using var bed = new DaemonBed();
        var second = TestNetwork.UniqueName("e");
        Apply(bed, "busy.yaml", Busy(bed.Network));
        Apply(bed, "quiet.yaml", Quiet(second));
        // Traffic: c-1's pings are answered, and a TCP connection through web.test's virtual address is open.
        WaitPingAnswered(bed);
        var pids = WaitRunning(bed, bed.Network, 4).Concat(WaitRunning(bed, second, 2)).ToArray();
        using var tcp = HeldConnection.Open(bed.InstanceNamespace("c-1"), "web.test", 80);
        var daemon = Footprint.Identify(bed.DaemonPid)!;
        var footprint = Footprint.Of([bed.Network, second]);
        footprint.AssertIntact(pids);
        Assert.Contains(footprint.Processes, p => p.Pid == tcp.Pid);

        var down = bed.Relay("down");

        Assert.True(down.ExitCode == 0, down.Stdout + down.Stderr);
        Assert.Contains("removed networks: ", down.Stdout, StringComparison.Ordinal);
        Assert.Contains(bed.Network, down.Stdout, StringComparison.Ordinal);
        Assert.Contains(second, down.Stdout, StringComparison.Ordinal);
        Assert.Contains("the daemon has stopped", down.Stdout, StringComparison.Ordinal);
        // The daemon exits by itself, cleanly, and takes its socket with it.
        DaemonState.WaitUntil(() => !Footprint.IsAlive(daemon), TimeSpan.FromSeconds(30), "the daemon is still running after relay down");
        Assert.Equal(0, bed.Stop());
        Assert.False(File.Exists(bed.Socket), "relay down left the API socket");
        footprint.AssertGone();
        Assert.DoesNotContain(pids, Footprint.IsAlive);
        Assert.True(tcp.Exited(TimeSpan.FromSeconds(10)), "the TCP client in c-1's namespace survived relay down");
        Assert.Empty(Records(bed));

        // The store forgot them: a daemon started on the same state brings nothing back.
        bed.Start();
        AssertNoNetworks(bed);
        footprint.AssertGone();
    }

    [Fact]
    public async Task Down_of_one_network_leaves_the_others_alone_and_keep_daemon_leaves_the_daemon_running()
    {
        await using var bed = new DaemonBed();
        var second = TestNetwork.UniqueName("e");
        Apply(bed, "first.yaml", Quiet(bed.Network));
        Apply(bed, "second.yaml", Quiet(second));
        var firstPids = WaitRunning(bed, bed.Network, 2);
        var secondPids = WaitRunning(bed, second, 2);
        var first = Footprint.Of([bed.Network]);
        var other = Footprint.Of([second]);
        var otherState = SecondState(bed, second);
        // The daemon has sockets in both networks (their DNS servers, their tables' netlink).
        Assert.NotEmpty(first.HeldBySocketsOf(bed.DaemonPid));
        Assert.NotEmpty(other.HeldBySocketsOf(bed.DaemonPid));

        var one = bed.Relay("down", "--network", bed.Network);

        Assert.True(one.ExitCode == 0, one.Stdout + one.Stderr);
        Assert.Contains($"network {bed.Network} removed", one.Stdout, StringComparison.Ordinal);
        first.AssertGone();
        Assert.Empty(first.HeldBySocketsOf(bed.DaemonPid));
        other.AssertIntact(secondPids);
        Assert.Equal(otherState, SecondState(bed, second));
        Assert.Equal(new[] { second + ".json" }, Records(bed));
        Assert.Equal(new[] { second }, NetworkNames(bed));

        var keep = bed.Relay("down", "--keep-daemon");

        Assert.True(keep.ExitCode == 0, keep.Stdout + keep.Stderr);
        Assert.Contains($"removed networks: {second}", keep.Stdout, StringComparison.Ordinal);
        other.AssertGone();
        Assert.Empty(other.HeldBySocketsOf(bed.DaemonPid));
        Assert.Empty(Records(bed));
        // The daemon still serves, with nothing left in it.
        Assert.True(File.Exists(bed.Socket));
        AssertNoNetworks(bed);

        var last = bed.Relay("down");

        Assert.True(last.ExitCode == 0, last.Stdout + last.Stderr);
        Assert.Contains("no networks to remove", last.Stdout, StringComparison.Ordinal);
        Assert.Contains("the daemon has stopped", last.Stdout, StringComparison.Ordinal);
        var daemon = Footprint.Identify(bed.DaemonPid);
        DaemonState.WaitUntil(() => daemon is null || !Footprint.IsAlive(daemon), TimeSpan.FromSeconds(30), "the daemon is still running after relay down");
        Assert.Equal(0, bed.Stop());
        Assert.False(File.Exists(bed.Socket), "relay down left the API socket");
        Assert.DoesNotContain(firstPids.Concat(secondPids), p => Footprint.IsAlive(p));
    }

    [Fact]
    public async Task After_the_daemon_was_killed_down_removes_what_its_records_list_and_the_store_forgets_it()
    {
        await using var bed = new DaemonBed();
        var second = TestNetwork.UniqueName("e");
        Apply(bed, "busy.yaml", Busy(bed.Network));
        Apply(bed, "quiet.yaml", Quiet(second));
        WaitPingAnswered(bed);
        var pids = WaitRunning(bed, bed.Network, 4).Concat(WaitRunning(bed, second, 2)).ToArray();
        var footprint = Footprint.Of([bed.Network, second]);

        bed.Kill9();

        // The crash left everything running (commands outlive the daemon, by design).
        footprint.AssertIntact(pids);
        Assert.Equal(2, Records(bed).Count);

        var down = bed.Relay("down", "--state-dir", bed.StateDirectory, "--record-dir", bed.RecordDirectory);

        Assert.True(down.ExitCode == 0, down.Stdout + down.Stderr);
        DaemonState.AssertNoStackTrace(down.Stdout + down.Stderr);
        Assert.Contains($"{bed.Network} (from the store)", down.Stdout, StringComparison.Ordinal);
        Assert.Contains($"{second} (from the store)", down.Stdout, StringComparison.Ordinal);
        footprint.AssertGone();
        Assert.DoesNotContain(pids, Footprint.IsAlive);
        Assert.Empty(Records(bed));
        var staleSocket = File.Exists(bed.Socket);

        // The store forgot them: a daemon started on the same state restores nothing, and fails nothing.
        bed.Start();
        AssertNoNetworks(bed);
        footprint.AssertGone();
        Assert.False(staleSocket, "relay down (daemon not running) left the dead daemon's socket file " + bed.Socket);
    }

    private static void Apply(DaemonBed bed, string name, string yaml)
    {
        var path = Path.Combine(bed.Directory, name);
        File.WriteAllText(path, yaml);
        bed.Ok("apply", "-f", path);
    }

    /// <summary>c-1's pings (which it sends all the time, by name) are answered.</summary>
    private static void WaitPingAnswered(DaemonBed bed)
        => DaemonState.WaitUntil(() => bed.Ok("instance", "logs", "c-1").Contains("bytes from ping.test", StringComparison.Ordinal), TimeSpan.FromSeconds(30), "c-1 gets no answer from ping.test");

    /// <summary>
    /// Waits until every instance of <paramref name="network"/> that runs a command has a pid and every
    /// one with a health check is healthy; returns the commands' processes.
    /// </summary>
    private static IReadOnlyList<Footprint.Proc> WaitRunning(DaemonBed bed, string network, int commands)
    {
        IReadOnlyList<DaemonState.Instance> instances = [];
        DaemonState.WaitUntil(() =>
        {
            instances = DaemonState.Instances(bed, network);
            return instances.Count(i => i.Pid is not null) == commands && instances.All(i => i.Health is "none" or "healthy");
        }, TimeSpan.FromSeconds(60), $"the instances of {network} are not all running and healthy");
        var processes = instances.Where(i => i.Pid is not null).Select(i => (i.Name, Process: Footprint.Identify(i.Pid!.Value))).ToArray();
        Assert.All(processes, p => Assert.True(p.Process is not null, $"the command of {p.Name} is not running"));
        return processes.Select(p => p.Process!).ToArray();
    }

    private static string SecondState(DaemonBed bed, string network)
        => (KernelState.Capture("relay-" + network) with { HostLinks = "", HostTables = "" }) + "\n" + bed.Ok("instance", "ls", "-n", network, "-o", "json");

    private static IReadOnlyList<string> Records(DaemonBed bed)
        => Directory.Exists(bed.RecordDirectory) ? Directory.GetFiles(bed.RecordDirectory).Select(f => Path.GetFileName(f)).Order(StringComparer.Ordinal).ToArray() : [];

    private static IReadOnlyList<string> NetworkNames(DaemonBed bed)
    {
        using var doc = JsonDocument.Parse(bed.Ok("network", "ls", "-o", "json"));
        return doc.RootElement.EnumerateArray().Select(n => n.GetProperty("name").GetString()!).ToArray();
    }

    private static void AssertNoNetworks(DaemonBed bed)
    {
        Assert.Empty(NetworkNames(bed));
        using var status = JsonDocument.Parse(bed.Ok("status", "-o", "json"));
        Assert.Equal(0, status.RootElement.GetProperty("networks").GetArrayLength());
        Assert.Empty(status.RootElement.GetProperty("failed").EnumerateObject());
    }
}

/// <summary>
/// Everything of some networks in the kernel: their namespaces (by name and inode) and every
/// process in them. Gone means: no such name in <c>ip netns list</c>, /run/netns or /etc/netns; none
/// of those processes alive (a zombie counts as gone: PID 1 of this sandbox does not reap); no live
/// process in, or holding a handle to, those namespaces (which would keep them, their links and
/// their nft tables alive without a name); no mount of them.
/// </summary>
internal sealed class Footprint
{
    /// <summary>A process, identified by pid and start time (pids are reused).</summary>
    public sealed record Proc(int Pid, long StartTime, string Command);

    private Footprint(IReadOnlyList<string> namespaces, IReadOnlySet<ulong> inodes, IReadOnlyList<Proc> processes)
    {
        Namespaces = namespaces;
        Inodes = inodes;
        Processes = processes;
    }

    public IReadOnlyList<string> Namespaces { get; }

    public IReadOnlySet<ulong> Inodes { get; }

    public IReadOnlyList<Proc> Processes { get; }

    public static Footprint Of(IReadOnlyList<string> networks)
    {
        var namespaces = OursIn(NetnsList(), networks);
        Assert.NotEmpty(namespaces);
        var inodes = namespaces.Select(n => Relay.Linux.Namespaces.Netns.Inode(Path.Combine("/run/netns", n))).ToHashSet();
        // The scan that must come up empty later sees them now (the instances' commands, the daemon's threads).
        Assert.NotEmpty(LiveTasksIn(inodes));
        return new Footprint(namespaces, inodes, LiveProcessesIn(inodes));
    }

    /// <summary>The process <paramref name="pid"/> now, or null if there is none (or only a zombie).</summary>
    public static Proc? Identify(int pid)
    {
        var stat = Stat(pid);
        if (stat is null || stat.Value.State == 'Z')
        {
            return null;
        }
        string command;
        try
        {
            command = File.ReadAllText($"/proc/{pid}/cmdline").Replace('\0', ' ').Trim();
        }
        catch (IOException)
        {
            return null;
        }
        return new Proc(pid, stat.Value.StartTime, command);
    }

    /// <summary>True while the very process <paramref name="p"/> runs (not a zombie, not a newer process with its pid).</summary>
    public static bool IsAlive(Proc p) => Stat(p.Pid) is { } s && s.StartTime == p.StartTime && s.State != 'Z';

    /// <summary>Everything is there, and the given processes run.</summary>
    public void AssertIntact(IEnumerable<Proc> processes)
    {
        var names = NetnsList();
        Assert.All(Namespaces, n => Assert.Contains(n, names));
        Assert.All(processes, p => Assert.True(IsAlive(p), $"process {p.Pid} ({p.Command}) is gone"));
    }

    public void AssertGone()
    {
        Assert.Empty(Namespaces.Intersect(NetnsList()));
        Assert.All(Namespaces, n =>
        {
            Assert.False(File.Exists(Path.Combine("/run/netns", n)), $"/run/netns/{n} is left");
            Assert.False(Directory.Exists(Path.Combine("/etc/netns", n)), $"/etc/netns/{n} is left");
        });
        var survivors = Processes.Where(IsAlive).Select(p => $"{p.Pid} ({p.Command})").ToArray();
        Assert.True(survivors.Length == 0, "processes survived: " + string.Join(", ", survivors));
        // An inode is only ours while no other namespace (another test's) was given it since.
        var inodes = Inodes.Except(NamedInodes()).ToHashSet();
        var inside = LiveTasksIn(inodes);
        Assert.True(inside.Count == 0, "processes (or threads of one) still run in the removed namespaces: " + string.Join(", ", inside));
        var holders = Holders(inodes);
        Assert.True(holders.Count == 0, "namespaces are still held open: " + string.Join(", ", holders));
        // A mount whose mountpoint was unlinked from another mount namespace is detached here by
        // the kernel a moment later (seen once under the parallel tests): allow it 2 s to go.
        string[] Mounts() => File.ReadAllLines("/proc/self/mountinfo").Where(l => inodes.Any(i => l.Contains($"net:[{i}]", StringComparison.Ordinal))).ToArray();
        var mounts = Mounts();
        for (var waited = 0; mounts.Length > 0 && waited < 20; waited++)
        {
            Thread.Sleep(100);
            mounts = Mounts();
        }
        Assert.True(mounts.Length == 0, "namespaces are still mounted: " + string.Join("; ", mounts));
    }

    /// <summary>
    /// The namespaces (of this footprint) that sockets of process <paramref name="pid"/> were created
    /// in: such a socket keeps its namespace, with its links and nft table, alive after the name is
    /// gone. Each socket is duplicated with pidfd_getfd and asked with SIOCGSKNS.
    /// </summary>
    public IReadOnlyList<string> HeldBySocketsOf(int pid)
    {
        var found = new List<string>();
        var pidfd = (int)Native.syscall(Native.SysPidfdOpen, pid, 0, 0);
        Assert.True(pidfd >= 0, $"pidfd_open({pid}) failed");
        try
        {
            foreach (var fd in Directory.GetFiles($"/proc/{pid}/fd"))
            {
                if (Link(fd) is not { } target || !target.StartsWith("socket:", StringComparison.Ordinal) || !int.TryParse(Path.GetFileName(fd), out var number))
                {
                    continue;
                }
                var copy = (int)Native.syscall(Native.SysPidfdGetfd, pidfd, number, 0);
                if (copy < 0)
                {
                    continue; // closed meanwhile
                }
                try
                {
                    var ns = Native.ioctl(copy, Native.Siocgskns, 0);
                    if (ns < 0)
                    {
                        continue; // not a network socket (a unix socket has one too; netlink too)
                    }
                    try
                    {
                        if (Link($"/proc/self/fd/{ns}") is { } netns && Inodes.Any(i => netns == $"net:[{i}]"))
                        {
                            found.Add($"{target} (fd {number}) in {netns}");
                        }
                    }
                    finally
                    {
                        Native.close(ns);
                    }
                }
                finally
                {
                    Native.close(copy);
                }
            }
        }
        finally
        {
            Native.close(pidfd);
        }
        return found;
    }

    private static IReadOnlyList<string> OursIn(IEnumerable<string> names, IReadOnlyList<string> networks)
        => names.Where(n => networks.Any(net => n == "relay-" + net || n.StartsWith("relay-" + net + ".", StringComparison.Ordinal))).Order(StringComparer.Ordinal).ToArray();

    private static IReadOnlyList<string> NetnsList()
        => Sh.Ok("ip", "netns", "list").Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split(' ')[0]).ToArray();

    private static HashSet<ulong> NamedInodes()
    {
        var inodes = new HashSet<ulong>();
        foreach (var path in Directory.GetFiles("/run/netns"))
        {
            try
            {
                inodes.Add(Relay.Linux.Namespaces.Netns.Inode(path));
            }
            catch (Exception e) when (e is IOException or InvalidOperationException or UnauthorizedAccessException)
            {
                // Removed meanwhile (another test).
            }
        }
        return inodes;
    }

    private static IReadOnlyList<Proc> LiveProcessesIn(IReadOnlySet<ulong> inodes)
    {
        var found = new List<Proc>();
        foreach (var pid in Pids())
        {
            if (Link($"/proc/{pid}/ns/net") is { } ns && inodes.Any(i => ns == $"net:[{i}]") && Identify(pid) is { } p)
            {
                found.Add(p);
            }
        }
        return found;
    }

    /// <summary>Threads too: a daemon thread left in a namespace would keep it alive.</summary>
    private static IReadOnlyList<string> LiveTasksIn(IReadOnlySet<ulong> inodes)
    {
        var found = new List<string>();
        foreach (var pid in Pids())
        {
            IEnumerable<string> tasks;
            try
            {
                tasks = Directory.GetDirectories($"/proc/{pid}/task");
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                continue;
            }
            foreach (var task in tasks)
            {
                if (Link(Path.Combine(task, "ns", "net")) is { } ns && inodes.Any(i => ns == $"net:[{i}]") && Identify(pid) is { } p)
                {
                    found.Add($"{p.Pid}/{Path.GetFileName(task)} ({p.Command})");
                }
            }
        }
        return found;
    }

    private static IReadOnlyList<string> Holders(IReadOnlySet<ulong> inodes)
    {
        var found = new List<string>();
        if (inodes.Count == 0)
        {
            return found;
        }
        foreach (var pid in Pids())
        {
            IEnumerable<string> fds;
            try
            {
                fds = Directory.GetFiles($"/proc/{pid}/fd");
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                continue;
            }
            foreach (var fd in fds)
            {
                if (Link(fd) is { } target && inodes.Any(i => target == $"net:[{i}]") && Identify(pid) is { } p)
                {
                    found.Add($"{p.Pid} ({p.Command}) fd {Path.GetFileName(fd)}");
                }
            }
        }
        return found;
    }

    private static IEnumerable<int> Pids()
        => Directory.GetDirectories("/proc").Select(Path.GetFileName).Select(n => int.TryParse(n, out var pid) ? pid : 0).Where(p => p > 0);

    private static string? Link(string path)
    {
        try
        {
            return new FileInfo(path).LinkTarget;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static (char State, long StartTime)? Stat(int pid)
    {
        string text;
        try
        {
            text = File.ReadAllText($"/proc/{pid}/stat");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
        // pid (comm) state ppid ... : after the last ')', field 3 (state) is first and field 22 (starttime) is the 20th.
        var fields = text[(text.LastIndexOf(')') + 2)..].Split(' ');
        return (fields[0][0], long.Parse(fields[19], System.Globalization.CultureInfo.InvariantCulture));
    }
}

/// <summary>A TCP connection held open from inside a namespace (socat, stdin kept open), checked to echo.</summary>
internal sealed class HeldConnection : IDisposable
{
    private readonly Process _process;

    private HeldConnection(Process process) => _process = process;

    public int Pid => _process.Id;

    public static HeldConnection Open(string netns, string host, int port)
    {
        var psi = new ProcessStartInfo("ip")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in new[] { "netns", "exec", netns, "socat", "-t", "600", "-", $"TCP:{host}:{port}" })
        {
            psi.ArgumentList.Add(a);
        }
        var connection = new HeldConnection(Process.Start(psi)!);
        try
        {
            connection._process.StandardInput.WriteLine("hello through " + host);
            connection._process.StandardInput.Flush();
            var echo = connection._process.StandardOutput.ReadLineAsync();
            Assert.True(echo.Wait(TimeSpan.FromSeconds(20)), $"no echo from {host}:{port}: {(connection._process.HasExited ? connection._process.StandardError.ReadToEnd() : "")}");
            Assert.Equal("hello through " + host, echo.Result);
            return connection;
        }
        catch
        {
            connection.Dispose();
            throw;
        }
    }

    public bool Exited(TimeSpan timeout) => _process.WaitForExit(timeout);

    public void Dispose()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                _process.WaitForExit(5000);
            }
        }
        catch (InvalidOperationException)
        {
        }
        _process.Dispose();
    }
}

internal static class Native
{
    public const long SysPidfdOpen = 434;
    public const long SysPidfdGetfd = 438;
    public const ulong Siocgskns = 0x894C;

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
    public static extern long syscall(long number, long a, long b, long c);

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
    public static extern int ioctl(int fd, ulong request, long argument);

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
    public static extern int close(int fd);
}
