using YamlDotNet.Core;
using YamlDotNet.Core.Events;

namespace Relay.Cli.Config;

// YamlDotNet's representation model (YamlStream) throws on the first duplicate key, which would
// hide every other problem of the file. This tree is built from the same parser's events, keeps
// every mapping entry (duplicates included) and the start mark of every node.

/// <summary>A node of a YAML document with where it starts in the text.</summary>
internal abstract class YamlTreeNode(Mark start)
{
    /// <summary>Where the node starts (1-based line and column).</summary>
    public Mark Start { get; } = start;

    /// <summary>The same node as seen from an alias at <paramref name="start"/>.</summary>
    public abstract YamlTreeNode At(Mark start);

    /// <summary>What the node is, for messages ("a list", "a mapping", "a value").</summary>
    public abstract string Kind { get; }
}

/// <summary>A scalar: the text as written, without its quotes.</summary>
internal sealed class YamlTreeScalar(Mark start, string value, ScalarStyle style) : YamlTreeNode(start)
{
    public string Value { get; } = value;

    /// <summary>True when the scalar was written without quotes (so it may be a number, a bool or null).</summary>
    public bool IsPlain { get; } = style is ScalarStyle.Plain or ScalarStyle.Any;

    /// <summary>YAML's null: nothing, <c>~</c> or <c>null</c> without quotes.</summary>
    public bool IsNull => IsPlain && Value is "" or "~" or "null" or "Null" or "NULL";

    public override string Kind => IsNull ? "empty" : "a single value";

    public override YamlTreeNode At(Mark start) => new YamlTreeScalar(start, Value, IsPlain ? ScalarStyle.Plain : ScalarStyle.DoubleQuoted);
}

/// <summary>A sequence.</summary>
internal sealed class YamlTreeSequence(Mark start, IReadOnlyList<YamlTreeNode> items) : YamlTreeNode(start)
{
    public IReadOnlyList<YamlTreeNode> Items { get; } = items;

    public override string Kind => "a list";

    public override YamlTreeNode At(Mark start) => new YamlTreeSequence(start, Items);
}

/// <summary>A mapping, with its entries in file order, duplicate keys included.</summary>
internal sealed class YamlTreeMapping(Mark start, IReadOnlyList<KeyValuePair<YamlTreeNode, YamlTreeNode>> entries) : YamlTreeNode(start)
{
    public IReadOnlyList<KeyValuePair<YamlTreeNode, YamlTreeNode>> Entries { get; } = entries;

    public override string Kind => "a mapping";

    public override YamlTreeNode At(Mark start) => new YamlTreeMapping(start, Entries);
}

/// <summary>One document of a stream: where it starts and its root node.</summary>
internal sealed record YamlTreeDocument(Mark Start, YamlTreeNode Root);

/// <summary>Builds <see cref="YamlTreeNode"/> trees from YamlDotNet's parser events.</summary>
internal static class YamlTree
{
    // Deeper nesting than any desired state needs; the limit keeps a hostile file from
    // overflowing the stack (which no catch could handle).
    private const int MaxDepth = 128;

    /// <summary>Every document of <paramref name="text"/>; throws a <see cref="YamlException"/> on a syntax error.</summary>
    public static IReadOnlyList<YamlTreeDocument> Load(string text)
    {
        var parser = new TrackingParser(new Parser(new StringReader(text)));
        try
        {
            return Load(parser);
        }
        catch (Exception e) when (e is not YamlException and not OutOfMemoryException)
        {
            // YamlDotNet's scanner throws plain exceptions on some malformed input (an unclosed
            // flow sequence followed by more lines: aaubry/YamlDotNet#541); the end of the last
            // event read is the best position there is, and usually right after the culprit.
            throw new YamlException(parser.LastEnd, parser.LastEnd, "the YAML cannot be read past this point (an unclosed bracket, brace or quote?)", e);
        }
    }

    private static IReadOnlyList<YamlTreeDocument> Load(IParser parser)
    {
        var documents = new List<YamlTreeDocument>();
        parser.Consume<StreamStart>();
        while (parser.TryConsume<DocumentStart>(out var start))
        {
            // Anchors are local to a document; an anchor only becomes visible once its node is
            // complete, so an alias can never make the tree cyclic.
            var anchors = new Dictionary<string, YamlTreeNode>(StringComparer.Ordinal);
            var root = Read(parser, anchors, 0);
            parser.Consume<DocumentEnd>();
            documents.Add(new YamlTreeDocument(start.Start, root));
        }
        parser.Consume<StreamEnd>();
        return documents;
    }

    private static YamlTreeNode Read(IParser parser, Dictionary<string, YamlTreeNode> anchors, int depth)
    {
        if (depth > MaxDepth)
        {
            var at = parser.Current?.Start ?? Mark.Empty;
            throw new YamlException(at, at, $"the document is nested more than {MaxDepth} levels deep");
        }
        if (parser.TryConsume<AnchorAlias>(out var alias))
        {
            return anchors.TryGetValue(alias.Value.Value, out var target)
                ? target.At(alias.Start)
                : throw new YamlException(alias.Start, alias.End, $"alias *{alias.Value.Value} refers to no anchor defined before it");
        }
        YamlTreeNode node;
        AnchorName anchor;
        if (parser.TryConsume<Scalar>(out var scalar))
        {
            node = new YamlTreeScalar(scalar.Start, scalar.Value, scalar.Style);
            anchor = scalar.Anchor;
        }
        else if (parser.TryConsume<SequenceStart>(out var sequenceStart))
        {
            var items = new List<YamlTreeNode>();
            while (!parser.TryConsume<SequenceEnd>(out _))
            {
                items.Add(Read(parser, anchors, depth + 1));
            }
            node = new YamlTreeSequence(sequenceStart.Start, items);
            anchor = sequenceStart.Anchor;
        }
        else if (parser.TryConsume<MappingStart>(out var mappingStart))
        {
            var entries = new List<KeyValuePair<YamlTreeNode, YamlTreeNode>>();
            while (!parser.TryConsume<MappingEnd>(out _))
            {
                var key = Read(parser, anchors, depth + 1);
                var value = Read(parser, anchors, depth + 1);
                entries.Add(new(key, value));
            }
            node = new YamlTreeMapping(mappingStart.Start, entries);
            anchor = mappingStart.Anchor;
        }
        else
        {
            var current = parser.Current;
            var at = current?.Start ?? Mark.Empty;
            throw new YamlException(at, current?.End ?? at, $"unexpected {current?.GetType().Name ?? "end of input"}");
        }
        if (!anchor.IsEmpty)
        {
            anchors[anchor.Value] = node;
        }
        return node;
    }

    /// <summary>A parser that remembers where the last event it read ended.</summary>
    private sealed class TrackingParser(IParser inner) : IParser
    {
        public Mark LastEnd { get; private set; } = Mark.Empty;

        public ParsingEvent? Current => inner.Current;

        public bool MoveNext()
        {
            var moved = inner.MoveNext();
            if (inner.Current is { } current)
            {
                LastEnd = current.End;
            }
            return moved;
        }
    }
}
