namespace Relay.Integration.Tests.Support;

/// <summary>
/// What the kernel holds, as the tools print it: host namespaces and links, and for one network
/// its orchestrator's ruleset, links, addresses and routes. Two captures compare byte for byte.
/// </summary>
public sealed record KernelState(string Namespaces, string HostLinks, string HostTables, string Ruleset, string Links, string Addresses, string Routes)
{
    /// <summary>
    /// With an orchestrator: that network's view (namespaces filtered to the network's own, so
    /// tests running in parallel do not disturb it). Without: the whole host, for tests in the
    /// <see cref="HostStateCollection"/>, which runs alone.
    /// </summary>
    public static KernelState Capture(string? orchestrator = null)
    {
        var namespaces = string.Join('\n', Relay.Linux.Namespaces.Netns.List().Where(n => orchestrator is null || n == orchestrator || n.StartsWith(orchestrator + ".", StringComparison.Ordinal)));
        var hostLinks = Sh.Ok("ip", "-o", "link", "show");
        var hostTables = Sh.Ok("nft", "list", "tables");
        if (orchestrator is null)
        {
            return new KernelState(namespaces, hostLinks, hostTables, "", "", "", "");
        }
        return new KernelState(
            namespaces,
            hostLinks,
            hostTables,
            Sh.Ok("ip", "netns", "exec", orchestrator, "nft", "list", "ruleset"),
            Sh.Ok("ip", "-n", orchestrator, "-o", "link", "show"),
            Sh.Ok("ip", "-n", orchestrator, "-o", "addr", "show"),
            Sh.Ok("ip", "-n", orchestrator, "route", "show", "table", "all"));
    }
}

/// <summary>Tests that compare the whole host's state run alone, after the parallel ones.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class HostStateCollection
{
    public const string Name = "host state";
}
