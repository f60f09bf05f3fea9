using System.Net;
using System.Text;

namespace Relay.Linux.Namespaces;

/// <summary>
/// Per-namespace configuration files in <c>/etc/netns/NAME/</c>: <c>ip netns exec</c> bind-mounts
/// each of them over its namesake in <c>/etc</c> for the command it runs. That is how every program
/// started in an instance (its command, <c>relay exec</c>, <c>ip netns exec</c> by hand) resolves
/// names through the network's DNS server, without the host's resolv.conf being touched.
/// </summary>
public static class NetnsEtc
{
    /// <summary>Where iproute2 looks.</summary>
    public const string Root = "/etc/netns";

    /// <summary>The directory of <paramref name="netns"/>.</summary>
    public static string DirectoryOf(string netns) => Path.Combine(Root, netns);

    /// <summary>Writes <c>/etc/netns/NETNS/resolv.conf</c> pointing at <paramref name="nameservers"/>.</summary>
    public static void WriteResolvConf(string netns, IEnumerable<IPAddress> nameservers, IEnumerable<string> search, string comment)
    {
        var dir = DirectoryOf(netns);
        Directory.CreateDirectory(dir);
        var sb = new StringBuilder();
        sb.Append("# ").Append(comment).Append('\n');
        foreach (var ns in nameservers)
        {
            sb.Append("nameserver ").Append(ns).Append('\n');
        }
        var domains = search.ToArray();
        if (domains.Length > 0)
        {
            sb.Append("search ").Append(string.Join(' ', domains)).Append('\n');
        }
        // The server is one hop away: a lost datagram is retried after a second, not five.
        sb.Append("options timeout:1 attempts:3\n");
        var path = Path.Combine(dir, "resolv.conf");
        File.WriteAllText(path + ".tmp", sb.ToString());
        File.Move(path + ".tmp", path, overwrite: true);
    }

    /// <summary>Removes the files Relay wrote for <paramref name="netns"/>, and the directory when nothing else is in it.</summary>
    public static void Remove(string netns)
    {
        var dir = DirectoryOf(netns);
        if (!Directory.Exists(dir))
        {
            return;
        }
        File.Delete(Path.Combine(dir, "resolv.conf"));
        if (!Directory.EnumerateFileSystemEntries(dir).Any())
        {
            Directory.Delete(dir);
        }
    }
}
