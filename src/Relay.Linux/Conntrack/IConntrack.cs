using System.Net.Sockets;
using Relay.Core.Conntrack;

namespace Relay.Linux.Conntrack;

/// <summary>
/// The kernel's connection-tracking table of one network namespace, through ctnetlink, in process
/// (no conntrack(8) process on the migration path). The socket belongs to the namespace of the
/// thread that opened it and stays open for the life of the owner.
/// </summary>
public interface IConntrack : IDisposable
{
    /// <summary>Every entry of <paramref name="family"/> (InterNetwork, InterNetworkV6, or Unspecified for both).</summary>
    IReadOnlyList<ConntrackEntry> List(AddressFamily family = AddressFamily.Unspecified);

    /// <summary>
    /// Deletes the entries (matched by original tuple and zone) in as few round trips as possible.
    /// Entries already gone (ENOENT) are not an error. Returns how many were deleted.
    /// </summary>
    int Delete(IReadOnlyCollection<ConntrackEntry> entries);
}
