namespace Relay.Core.Dataplane;

/// <summary>One element of a set (<see cref="Value"/> empty) or map, in nft syntax.</summary>
public readonly record struct NftElement(string Set, string Key, string Value);

/// <summary>What one service or one link contributes to the table.</summary>
/// <param name="Chains">Balancing chains it needs (shared with others of the same policy and count).</param>
/// <param name="Elements">Its own elements; no other fragment has the same (set, key).</param>
public sealed record NftFragment(IReadOnlyDictionary<string, IReadOnlyList<string>> Chains, IReadOnlyList<NftElement> Elements)
{
    /// <summary>Nothing.</summary>
    public static NftFragment Empty { get; } = new(new Dictionary<string, IReadOnlyList<string>>(), []);
}
