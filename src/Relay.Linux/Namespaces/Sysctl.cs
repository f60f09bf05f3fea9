namespace Relay.Linux.Namespaces;

/// <summary>
/// Network sysctls of one namespace. /proc/sys/net shows the namespace of the thread that opens
/// the file, so writes go through that namespace's <see cref="NetnsThread"/>.
/// </summary>
public static class Sysctl
{
    /// <summary>Writes <paramref name="value"/> to <c>/proc/sys/KEY</c> (KEY with dots or slashes) inside <paramref name="netns"/>.</summary>
    public static void Write(NetnsThread netns, string key, string value)
        => netns.Invoke(() => File.WriteAllText(PathOf(key), value));

    /// <summary>Reads <c>/proc/sys/KEY</c> inside <paramref name="netns"/>.</summary>
    public static string Read(NetnsThread netns, string key)
        => netns.Invoke(() => File.ReadAllText(PathOf(key)).Trim());

    private static string PathOf(string key) => "/proc/sys/" + key.Replace('.', '/');
}
