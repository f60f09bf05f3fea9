using System.Net;

namespace Relay.Core.Conntrack;

/// <summary>
/// Which conntrack entries a re-point leaves stale. kube-proxy's lesson, made exact: an entry is
/// stale when its ORIGINAL destination is one of the service's virtual addresses and its REPLY
/// source is the instance that no longer owns the flow. Nothing else is ever deleted, so other
/// services' flows, and flows that merely pass through, are left alone.
/// </summary>
public sealed class StaleFlows
{
    private readonly HashSet<IPAddress> _virtual;
    private readonly HashSet<IPAddress> _old;

    /// <summary>Entries from <paramref name="virtualAddresses"/> translated to any of <paramref name="oldInstanceAddresses"/>.</summary>
    public StaleFlows(IEnumerable<IPAddress> virtualAddresses, IEnumerable<IPAddress> oldInstanceAddresses)
    {
        _virtual = [.. virtualAddresses];
        _old = [.. oldInstanceAddresses];
    }

    /// <summary>True when the entry's flow was translated from one of the virtual addresses to an old instance.</summary>
    public bool Matches(ConntrackEntry entry)
        => _virtual.Contains(entry.Original.Destination) && _old.Contains(entry.Reply.Source);

    /// <summary>
    /// Stateless flows (everything but TCP): deleted right after the re-point so their next packet
    /// is translated afresh, to the new instance.
    /// </summary>
    public bool IsStatelessMatch(ConntrackEntry entry) => entry.Original.Protocol != IpProtocols.Tcp && Matches(entry);

    /// <summary>
    /// TCP flows still alive on an old instance: they drain until they close or the deadline.
    /// TIME_WAIT and CLOSE entries are finished connections, not work in progress.
    /// </summary>
    public bool IsDrainingTcp(ConntrackEntry entry)
        => entry.Original.Protocol == IpProtocols.Tcp && Matches(entry)
           && entry.TcpState is not (TcpConntrackState.TimeWait or TcpConntrackState.Close);

    /// <summary>Every TCP entry of the old instances, for the cut at the deadline.</summary>
    public bool IsTcpMatch(ConntrackEntry entry) => entry.Original.Protocol == IpProtocols.Tcp && Matches(entry);
}
