using System.Text.RegularExpressions;
using Relay.Core.Dataplane;

namespace Relay.Core.Tests.Dataplane;

/// <summary>
/// A tiny model of what the kernel does with a transaction's text: it applies the commands in order
/// to a copy of a ruleset and fails as nft would (deleting what does not exist, adding a key twice,
/// jumping to a chain that does not exist, deleting a chain still referenced).
/// </summary>
internal static partial class NftApply
{
    private const string Table = "inet relay";

    [GeneratedRegex(@"^(add|delete) element inet relay (\S+) \{ (.*) \}$")]
    private static partial Regex ElementCommand();

    [GeneratedRegex(@"^add rule inet relay (\S+) (.+)$")]
    private static partial Regex RuleCommand();

    public static NftRuleset Apply(NftRuleset current, NftTransaction tx)
    {
        var chains = current.Chains.ToDictionary(c => c.Key, c => c.Value.ToList(), StringComparer.Ordinal);
        var elements = current.Elements.ToDictionary(
            e => e.Key, e => new Dictionary<string, string>(e.Value, StringComparer.Ordinal), StringComparer.Ordinal);
        var inSkeleton = false;
        foreach (var line in tx.ToString().Split('\n'))
        {
            if (inSkeleton)
            {
                inSkeleton = line != "}";
                continue;
            }
            if (line.Length == 0)
            {
                continue;
            }
            if (line == $"table {Table} {{")
            {
                inSkeleton = true;
                continue;
            }
            if (line == $"add table {Table}")
            {
                continue;
            }
            if (line == $"delete table {Table}")
            {
                chains.Clear();
                elements.Clear();
                continue;
            }
            if (line.StartsWith($"add chain {Table} ", StringComparison.Ordinal))
            {
                var chain = line[$"add chain {Table} ".Length..];
                Assert.False(chains.ContainsKey(chain), $"chain {chain} added twice");
                chains[chain] = [];
                continue;
            }
            if (line.StartsWith($"flush chain {Table} ", StringComparison.Ordinal))
            {
                var chain = line[$"flush chain {Table} ".Length..];
                Assert.True(chains.ContainsKey(chain), $"flush of missing chain {chain}");
                chains[chain].Clear();
                continue;
            }
            if (line.StartsWith($"delete chain {Table} ", StringComparison.Ordinal))
            {
                var chain = line[$"delete chain {Table} ".Length..];
                Assert.True(chains.Remove(chain), $"delete of missing chain {chain}");
                var users = elements.SelectMany(e => e.Value).Where(e => e.Value == "goto " + chain).Select(e => e.Key).ToList();
                Assert.True(users.Count == 0, $"chain {chain} deleted while {string.Join(", ", users)} still jump to it");
                continue;
            }
            var rule = RuleCommand().Match(line);
            if (rule.Success)
            {
                Assert.True(chains.ContainsKey(rule.Groups[1].Value), $"rule added to missing chain: {line}");
                chains[rule.Groups[1].Value].Add(rule.Groups[2].Value);
                continue;
            }
            var element = ElementCommand().Match(line);
            Assert.True(element.Success, $"unexpected command: {line}");
            var set = element.Groups[2].Value;
            var map = elements.TryGetValue(set, out var m) ? m : elements[set] = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var item in element.Groups[3].Value.Split(", "))
            {
                if (element.Groups[1].Value == "delete")
                {
                    Assert.True(map.Remove(item), $"delete of missing element {set} {{ {item} }}");
                    continue;
                }
                var colon = item.IndexOf(" : ", StringComparison.Ordinal);
                var (key, value) = colon < 0 ? (item, "") : (item[..colon], item[(colon + 3)..]);
                Assert.False(map.ContainsKey(key), $"element {set} {{ {key} }} added while present");
                if (value.StartsWith("goto ", StringComparison.Ordinal))
                {
                    Assert.True(chains.ContainsKey(value[5..]), $"element {set} {{ {item} }} jumps to a missing chain");
                }
                map[key] = value;
            }
        }
        return new NftRuleset(
            chains.ToDictionary(c => c.Key, c => (IReadOnlyList<string>)c.Value, StringComparer.Ordinal),
            elements.ToDictionary(e => e.Key, e => (IReadOnlyDictionary<string, string>)e.Value, StringComparer.Ordinal));
    }

    /// <summary>Asserts two rulesets hold the same chains and the same elements (empty and missing sets are alike).</summary>
    public static void AssertSame(NftRuleset expected, NftRuleset actual)
    {
        Assert.Equal(expected.Chains.Keys.Order(StringComparer.Ordinal), actual.Chains.Keys.Order(StringComparer.Ordinal));
        foreach (var (chain, rules) in expected.Chains)
        {
            Assert.Equal(rules, actual.Chains[chain]);
        }
        var sets = expected.Elements.Keys.Union(actual.Elements.Keys).Order(StringComparer.Ordinal);
        foreach (var set in sets)
        {
            var e = expected.Elements.GetValueOrDefault(set) ?? new Dictionary<string, string>();
            var a = actual.Elements.GetValueOrDefault(set) ?? new Dictionary<string, string>();
            var same = e.Count == a.Count && e.All(x => a.TryGetValue(x.Key, out var v) && v == x.Value);
            if (!same)
            {
                // Slow path only to produce a readable failure message.
                Assert.Equal(e.OrderBy(x => x.Key, StringComparer.Ordinal), a.OrderBy(x => x.Key, StringComparer.Ordinal));
            }
        }
    }
}
