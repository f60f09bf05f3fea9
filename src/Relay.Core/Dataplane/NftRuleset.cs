namespace Relay.Core.Dataplane;

/// <summary>
/// The variable part of Relay's table as data: the balancing chains in use and the elements of
/// every set and map. The fixed part (base chains, map declarations) is <see cref="NftScript.Skeleton"/>.
/// Two rulesets compare element by element, which is how an update emits only what changed.
/// </summary>
public sealed class NftRuleset
{
    /// <summary>Creates a ruleset from its parts.</summary>
    public NftRuleset(IReadOnlyDictionary<string, IReadOnlyList<string>> chains, IReadOnlyDictionary<string, IReadOnlyDictionary<string, string>> elements)
    {
        Chains = chains;
        Elements = elements;
    }

    /// <summary>An empty ruleset: the skeleton only.</summary>
    public static NftRuleset Empty { get; } = new(
        new SortedDictionary<string, IReadOnlyList<string>>(StringComparer.Ordinal),
        new SortedDictionary<string, IReadOnlyDictionary<string, string>>(StringComparer.Ordinal));

    /// <summary>Balancing chains: name -> rules.</summary>
    public IReadOnlyDictionary<string, IReadOnlyList<string>> Chains { get; }

    /// <summary>Set or map name -> element key -> value (empty for set elements), in nft syntax.</summary>
    public IReadOnlyDictionary<string, IReadOnlyDictionary<string, string>> Elements { get; }

    /// <summary>Number of elements over all sets and maps.</summary>
    public int ElementCount => Elements.Values.Sum(e => e.Count);
}
