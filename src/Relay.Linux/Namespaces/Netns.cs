using Relay.Linux.Processes;

namespace Relay.Linux.Namespaces;

/// <summary>
/// Named network namespaces as iproute2 keeps them (a bind mount under /run/netns), so that
/// <c>ip netns exec</c>, <c>ip -n</c> and users' own tools see Relay's namespaces too.
/// Relay only ever deletes namespaces it named and recorded; never <c>ip -all netns del</c>.
/// </summary>
public static class Netns
{
    /// <summary>Where iproute2 keeps named namespaces.</summary>
    public const string RunDirectory = "/run/netns";

    /// <summary>True when a namespace of that name exists.</summary>
    public static bool Exists(string name) => File.Exists(Path.Combine(RunDirectory, name));

    /// <summary>Every named namespace on the host, sorted.</summary>
    public static IReadOnlyList<string> List()
        => Directory.Exists(RunDirectory)
            ? Directory.GetFiles(RunDirectory).Select(Path.GetFileName).OfType<string>().Order(StringComparer.Ordinal).ToArray()
            : [];

    /// <summary>Creates namespace <paramref name="name"/>; fails if it exists.</summary>
    public static void Add(string name) => IpCommand.Run(["netns", "add", name]);

    /// <summary>Deletes namespace <paramref name="name"/> if it exists.</summary>
    public static void Delete(string name)
    {
        if (Exists(name))
        {
            IpCommand.Run(["netns", "delete", name]);
        }
    }

    /// <summary>The inode identifying the namespace, as /proc/PID/ns/net links show it (<c>net:[INODE]</c>).</summary>
    public static ulong Inode(string path) => Interop.Libc.InodeOf(path);

    /// <summary>
    /// Process ids whose network namespace is <paramref name="name"/> (what <c>ip netns pids</c>
    /// prints): how an instance's processes, and any they spawned, are found and stopped.
    /// </summary>
    public static IReadOnlyList<int> Pids(string name)
    {
        var path = Path.Combine(RunDirectory, name);
        if (!File.Exists(path))
        {
            return [];
        }
        var target = $"net:[{Inode(path)}]";
        var pids = new List<int>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid))
            {
                continue;
            }
            try
            {
                if (new FileInfo(Path.Combine(dir, "ns", "net")).LinkTarget == target)
                {
                    pids.Add(pid);
                }
            }
            catch (IOException)
            {
                // The process exited while we looked.
            }
            catch (UnauthorizedAccessException)
            {
            }
        }
        return pids;
    }
}
