namespace Relay.Cli.Config;

/// <summary>Field paths in the daemon's convention: <c>services[2].ports[1]</c>, <c>instances[0].health.interval</c>.</summary>
internal static class FieldPath
{
    /// <summary>The path of <paramref name="key"/> inside the mapping at <paramref name="path"/>.</summary>
    public static string Member(string path, string key) => path.Length == 0 ? key : $"{path}.{key}";

    /// <summary>The path of entry <paramref name="index"/> of the list at <paramref name="path"/>.</summary>
    public static string Item(string path, int index) => $"{path}[{index}]";

    /// <summary>The enclosing path: <c>services[2].ports[1]</c> → <c>services[2].ports</c> → <c>services[2]</c> → <c>services</c> → empty.</summary>
    public static string Parent(string path)
    {
        var cut = Math.Max(path.LastIndexOf('.'), path.LastIndexOf('['));
        return cut <= 0 ? "" : path[..cut];
    }
}
