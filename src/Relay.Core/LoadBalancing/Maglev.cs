namespace Relay.Core.LoadBalancing;

/// <summary>
/// Maglev consistent hashing (Eisenbud et al., NSDI 2016, section 3.4): every backend walks its own
/// permutation of the table's slots and claims the next free slot in turn, so each backend owns
/// floor(M/N) or ceil(M/N) slots and removing one backend moves little more than its own share.
/// </summary>
public static class Maglev
{
    /// <summary>The smallest table, sized for 10 instances: a service keeps its table size as it shrinks.</summary>
    public const int MinimumInstancesSizedFor = 10;

    /// <summary>Slots per instance the table must exceed (the paper's M much larger than N).</summary>
    public const int SlotsPerInstance = 100;

    /// <summary>
    /// The table size for <paramref name="instances"/> backends: the smallest prime above
    /// 100 x max(instances, 10). 1009 for up to ten instances.
    /// </summary>
    public static int TableSize(int instances)
    {
        var n = Math.Max(instances, MinimumInstancesSizedFor);
        var candidate = checked(SlotsPerInstance * n + 1);
        while (!IsPrime(candidate))
        {
            candidate++;
        }
        return candidate;
    }

    /// <summary>
    /// The table size a service should use now: its current size while that still exceeds 100 x N
    /// (so removing instances never reshuffles the table), else the size for N.
    /// </summary>
    public static int GrowTableSize(int current, int instances)
        => current > SlotsPerInstance * instances && IsPrime(current) ? current : TableSize(instances);

    /// <summary>
    /// Builds the lookup table: entry[slot] is an index into <paramref name="backends"/>.
    /// Backends are identified by name, so the same names give the same table whatever their order.
    /// </summary>
    /// <param name="backends">Distinct backend names; empty gives an empty table.</param>
    /// <param name="tableSize">A prime larger than the number of backends.</param>
    public static int[] Build(IReadOnlyList<string> backends, int tableSize)
    {
        ArgumentNullException.ThrowIfNull(backends);
        if (backends.Count == 0)
        {
            return [];
        }
        if (tableSize <= backends.Count || !IsPrime(tableSize))
        {
            throw new ArgumentOutOfRangeException(nameof(tableSize), tableSize, "the table size must be a prime larger than the number of backends");
        }
        // Backends take turns claiming slots, and the first to reach a contested slot wins: walk
        // them in name order so that the table depends on the set of names, not on list order.
        var order = Enumerable.Range(0, backends.Count).OrderBy(i => backends[i], StringComparer.Ordinal).ToArray();
        var m = (ulong)tableSize;
        var n = backends.Count;
        var offset = new ulong[n];
        var skip = new ulong[n];
        for (var i = 0; i < n; i++)
        {
            // Two independent hashes per backend, as in the paper: the offset picks where the
            // permutation starts, the skip (never 0, coprime with the prime M) its stride.
            offset[i] = Fnv1a64(backends[order[i]], 0xcbf29ce484222325UL) % m;
            skip[i] = (Fnv1a64(backends[order[i]], 0x84222325cbf29ce4UL) % (m - 1)) + 1;
        }
        var next = new ulong[n];
        var entry = new int[tableSize];
        Array.Fill(entry, -1);
        var filled = 0;
        while (true)
        {
            for (var i = 0; i < n; i++)
            {
                var c = (offset[i] + next[i] * skip[i]) % m;
                while (entry[c] >= 0)
                {
                    next[i]++;
                    c = (offset[i] + next[i] * skip[i]) % m;
                }
                entry[c] = order[i];
                next[i]++;
                if (++filled == tableSize)
                {
                    return entry;
                }
            }
        }
    }

    /// <summary>True when <paramref name="n"/> is prime (trial division; table sizes are small).</summary>
    public static bool IsPrime(int n)
    {
        if (n < 2)
        {
            return false;
        }
        if (n % 2 == 0)
        {
            return n == 2;
        }
        for (var d = 3; (long)d * d <= n; d += 2)
        {
            if (n % d == 0)
            {
                return false;
            }
        }
        return true;
    }

    // FNV-1a: tiny, stable across runs and platforms (string.GetHashCode is randomized per process,
    // and the table must be the same after a daemon restart).
    private static ulong Fnv1a64(string s, ulong basis)
    {
        var h = basis;
        foreach (var ch in s)
        {
            h ^= (byte)ch;
            h *= 0x100000001b3UL;
            h ^= (byte)(ch >> 8);
            h *= 0x100000001b3UL;
        }
        // Final avalanche (from MurmurHash3's fmix64) so names that differ only at the end still
        // spread over the whole table.
        h ^= h >> 33;
        h *= 0xff51afd7ed558ccdUL;
        h ^= h >> 33;
        h *= 0xc4ceb9fe1a85ec53UL;
        h ^= h >> 33;
        return h;
    }
}
