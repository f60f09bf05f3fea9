using System.Collections.Immutable;

namespace Relay.Core.Reconcile;

/// <summary>
/// The order of a balancer's members across a migration, for a single host and a cluster alike:
/// the instance that comes in takes the leaving one's slot, so that with round-robin and random
/// (and Maglev's table, whose entries follow the slots) exactly the leaving instance's flows move
/// and every other flow stays where it is.
/// </summary>
public static class BalancerSlots
{
    /// <summary>
    /// <paramref name="slots"/> after <paramref name="to"/> replaces <paramref name="from"/>: in
    /// its slot; when <paramref name="to"/> already holds one, it keeps it and
    /// <paramref name="from"/>'s goes; when <paramref name="from"/> holds none, <paramref name="to"/>
    /// comes last.
    /// </summary>
    public static ImmutableArray<string> Repoint(IEnumerable<string> slots, string from, string to)
    {
        var list = slots.ToList();
        var at = list.IndexOf(from);
        if (list.Contains(to))
        {
            list.Remove(from);
        }
        else if (at >= 0)
        {
            list[at] = to;
        }
        else
        {
            list.Add(to);
        }
        return [.. list];
    }
}
