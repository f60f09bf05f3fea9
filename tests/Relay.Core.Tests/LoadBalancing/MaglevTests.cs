using Relay.Core.LoadBalancing;

namespace Relay.Core.Tests.LoadBalancing;

public class MaglevTests
{
    private const int Flows = 100_000;

    private static string[] Names(int n) => Enumerable.Range(0, n).Select(i => $"web-{i}").ToArray();

    /// <summary>Deterministic pseudo-random 32-bit flow hashes.</summary>
    private static uint[] FlowHashes(int seed, int count)
    {
        var random = new Random(seed);
        var hashes = new uint[count];
        for (var i = 0; i < count; i++)
        {
            hashes[i] = (uint)random.NextInt64(0, 1L << 32);
        }
        return hashes;
    }

    /// <summary>The owner NAME of each slot (the table holds positions in the backend list).</summary>
    private static string[] OwnerNames(IReadOnlyList<string> backends, int tableSize)
        => Maglev.Build(backends, tableSize).Select(i => backends[i]).ToArray();

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    [InlineData(6)]
    [InlineData(7)]
    [InlineData(8)]
    [InlineData(9)]
    public void Build_RemoveOneOfTen_RemapsAtMost13PercentOfFlows(int removed)
    {
        var m = Maglev.TableSize(10);
        var before = Names(10);
        var after = before.Where((_, i) => i != removed).ToArray();
        var ownersBefore = OwnerNames(before, m);
        var ownersAfter = OwnerNames(after, m);

        var moved = 0;
        var movedAway = 0;
        foreach (var hash in FlowHashes(seed: 20240601 + removed, Flows))
        {
            var slot = (int)(hash % (uint)m);
            if (ownersBefore[slot] != ownersAfter[slot])
            {
                moved++;
            }
            if (ownersBefore[slot] == before[removed])
            {
                movedAway++;
            }
        }

        Assert.True(moved <= Flows * 13 / 100, $"{moved} of {Flows} flows remapped ({100.0 * moved / Flows:F2}%), more than 13%");
        // Sanity: the removed instance's own flows (about a tenth) must all have moved, so the
        // measure is not vacuous.
        Assert.InRange(movedAway, Flows * 8 / 100, Flows * 12 / 100);
        Assert.True(moved >= movedAway);
    }

    [Fact]
    public void Build_RemoveOneOfTen_EveryRemovalRemapsAtMost13PercentOfSlots()
    {
        var m = Maglev.TableSize(10);
        var before = Names(10);
        var ownersBefore = OwnerNames(before, m);
        for (var removed = 0; removed < before.Length; removed++)
        {
            var after = before.Where((_, i) => i != removed).ToArray();
            var ownersAfter = OwnerNames(after, m);

            var moved = Enumerable.Range(0, m).Count(s => ownersBefore[s] != ownersAfter[s]);

            Assert.True(moved <= m * 13 / 100, $"removing {before[removed]} moved {moved} of {m} slots");
            Assert.DoesNotContain(before[removed], ownersAfter);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(7)]
    [InlineData(10)]
    public void Build_DefaultTableSize_EachInstanceOwnsFloorOrCeilSlots(int n)
    {
        AssertBalanced(Names(n), Maglev.TableSize(10));
        AssertBalanced(Names(n), Maglev.TableSize(n));
    }

    [Fact]
    public void Build_HundredInstances_EachInstanceOwnsFloorOrCeilSlots()
    {
        AssertBalanced(Names(100), Maglev.TableSize(100));
    }

    private static void AssertBalanced(string[] names, int m)
    {
        var table = Maglev.Build(names, m);

        Assert.Equal(m, table.Length);
        Assert.All(table, i => Assert.InRange(i, 0, names.Length - 1));
        var counts = new int[names.Length];
        foreach (var i in table)
        {
            counts[i]++;
        }
        var floor = m / names.Length;
        var ceil = (m + names.Length - 1) / names.Length;
        Assert.All(counts, c => Assert.InRange(c, floor, ceil));
        Assert.Equal(m, counts.Sum());
    }

    [Fact]
    public void Build_SameInput_SameTable()
    {
        var m = Maglev.TableSize(5);

        Assert.Equal(Maglev.Build(Names(5), m), Maglev.Build(Names(5), m));
    }

    [Fact]
    public void Build_KnownInput_IsStableAcrossProcesses()
    {
        // The table must survive a daemon restart: it may not depend on string.GetHashCode (randomized
        // per process). Pin the first slots of a small table so a change of hash shows up here.
        var table = Maglev.Build(["a", "b", "c"], 1009);

        Assert.Equal([0, 2, 2, 0, 1, 2, 1, 0, 2, 1, 0, 0], table.Take(12));
    }

    [Fact]
    public void Build_SameNamesDifferentOrder_SameOwnerPerSlot()
    {
        var m = Maglev.TableSize(10);
        var names = Names(10);
        var reversed = names.Reverse().ToArray();
        var shuffled = names.OrderBy(n => n.Length).ThenByDescending(n => n, StringComparer.Ordinal).ToArray();

        Assert.Equal(OwnerNames(names, m), OwnerNames(reversed, m));
        Assert.Equal(OwnerNames(names, m), OwnerNames(shuffled, m));
    }

    [Fact]
    public void Build_SameNamesDifferentOrder_SameSlotCountPerName()
    {
        var m = Maglev.TableSize(10);
        var names = Names(7);

        var a = OwnerNames(names, m).GroupBy(n => n).ToDictionary(g => g.Key, g => g.Count());
        var b = OwnerNames(names.Reverse().ToArray(), m).GroupBy(n => n).ToDictionary(g => g.Key, g => g.Count());

        Assert.Equal(names.Length, a.Count);
        Assert.All(a.Values, c => Assert.InRange(c, m / 7, m / 7 + 1));
        Assert.All(b.Values, c => Assert.InRange(c, m / 7, m / 7 + 1));
    }

    [Fact]
    public void Build_NoBackends_EmptyTable()
    {
        Assert.Empty(Maglev.Build([], 1009));
        Assert.Empty(Maglev.Build([], 4));
    }

    [Fact]
    public void Build_NullBackends_Throws()
    {
        Assert.Throws<ArgumentNullException>(() => Maglev.Build(null!, 1009));
    }

    [Theory]
    [InlineData(1000)]
    [InlineData(1)]
    [InlineData(0)]
    [InlineData(-7)]
    public void Build_NonPrimeSize_Throws(int size)
    {
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => Maglev.Build(Names(1), size));

        Assert.Equal("tableSize", ex.ParamName);
    }

    [Theory]
    [InlineData(3, 3)]
    [InlineData(3, 2)]
    [InlineData(5, 5)]
    public void Build_SizeNotLargerThanBackendCount_Throws(int backends, int size)
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => Maglev.Build(Names(backends), size));
    }

    [Fact]
    public void Build_SmallestValidSize_FillsEverySlotOncePerBackend()
    {
        var table = Maglev.Build(Names(4), 5);

        Assert.Equal(5, table.Length);
        Assert.Equal(4, table.Distinct().Count());
    }

    [Theory]
    [InlineData(0, 1009)]
    [InlineData(1, 1009)]
    [InlineData(10, 1009)]
    [InlineData(11, 1103)]
    [InlineData(100, 10007)]
    public void TableSize_Instances_IsSmallestPrimeAbove100PerInstance(int instances, int expected)
    {
        Assert.Equal(expected, Maglev.TableSize(instances));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(5)]
    [InlineData(10)]
    [InlineData(11)]
    [InlineData(37)]
    [InlineData(250)]
    [InlineData(1000)]
    public void TableSize_Instances_IsPrimeAndAbove100TimesMaxOf10(int instances)
    {
        var size = Maglev.TableSize(instances);
        var floor = 100 * Math.Max(instances, 10);

        Assert.True(Maglev.IsPrime(size));
        Assert.True(size > floor);
        // Smallest such prime: nothing between the floor and it is prime.
        Assert.DoesNotContain(Enumerable.Range(floor + 1, size - floor - 1), Maglev.IsPrime);
    }

    [Theory]
    [InlineData(1009, 1, 1009)]
    [InlineData(1009, 10, 1009)]
    [InlineData(1103, 3, 1103)]
    [InlineData(10007, 100, 10007)]
    public void GrowTableSize_CurrentStillLargeEnough_KeepsCurrent(int current, int instances, int expected)
    {
        Assert.Equal(expected, Maglev.GrowTableSize(current, instances));
    }

    [Theory]
    [InlineData(1009, 11, 1103)]
    [InlineData(1103, 12, 1201)]
    [InlineData(1009, 100, 10007)]
    public void GrowTableSize_InstancesOutgrowTable_Grows(int current, int instances, int expected)
    {
        Assert.Equal(expected, Maglev.GrowTableSize(current, instances));
    }

    [Theory]
    [InlineData(0, 3)]
    [InlineData(1000, 3)]
    [InlineData(2000, 3)]
    public void GrowTableSize_CurrentNotAPrimeTableSize_UsesTableSize(int current, int instances)
    {
        Assert.Equal(1009, Maglev.GrowTableSize(current, instances));
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(5)]
    [InlineData(7)]
    [InlineData(11)]
    [InlineData(97)]
    [InlineData(1009)]
    [InlineData(7919)]
    [InlineData(2147483647)]
    public void IsPrime_Prime_True(int n)
    {
        Assert.True(Maglev.IsPrime(n));
    }

    [Theory]
    [InlineData(int.MinValue)]
    [InlineData(-7)]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(4)]
    [InlineData(9)]
    [InlineData(15)]
    [InlineData(25)]
    [InlineData(1001)]
    [InlineData(1018081)]
    [InlineData(2147483646)]
    public void IsPrime_NotPrime_False(int n)
    {
        Assert.False(Maglev.IsPrime(n));
    }
}
