using Relay.Engine.Api;
using YamlDotNet.Core;

namespace Relay.Cli.Config;

/// <summary>
/// A desired state read from a YAML file (<c>relay apply -f FILE</c>), with every problem found
/// in it and where each value is in the file. The daemon validates again and answers with field
/// paths such as <c>services[2].name</c>; <see cref="TryGetLocation"/> maps them back to the file.
/// </summary>
public sealed class DesiredStateDocument
{
    private readonly IReadOnlyDictionary<string, (int Line, int Column)> _locations;

    private DesiredStateDocument(string fileName, DesiredState state, IReadOnlyList<YamlError> errors, IReadOnlyDictionary<string, (int Line, int Column)> locations)
    {
        FileName = fileName;
        State = state;
        Errors = errors;
        _locations = locations;
    }

    /// <summary>The name the file was read under, for messages (<c>FILE:LINE:COLUMN: ...</c>).</summary>
    public string FileName { get; }

    /// <summary>
    /// The values as written (names not canonicalized, defaults not filled in). Only meaningful
    /// when <see cref="Errors"/> is empty; otherwise it holds what could be read, and every list
    /// keeps the file's indices (an unreadable entry becomes an empty record).
    /// </summary>
    public DesiredState State { get; }

    /// <summary>Every problem found, ordered by position in the file; empty when the document is valid.</summary>
    public IReadOnlyList<YamlError> Errors { get; }

    /// <summary>
    /// Where the value at <paramref name="fieldPath"/> (<c>services[2].name</c>, <c>instances[0].health</c>,
    /// <c>networks</c>) starts in the file. False when the file has no such value.
    /// </summary>
    public bool TryGetLocation(string fieldPath, out int line, out int column)
    {
        if (_locations.TryGetValue(fieldPath, out var at))
        {
            (line, column) = at;
            return true;
        }
        (line, column) = (0, 0);
        return false;
    }

    /// <summary>
    /// Like <see cref="TryGetLocation"/>, but when the file has no value at <paramref name="fieldPath"/>
    /// (a field the daemon derived, such as <c>services[2].ports[1].port</c>, or one left out, such as
    /// <c>services[2].vip4</c>) falls back to its nearest enclosing value. False only when none is in the file.
    /// </summary>
    public bool TryGetNearestLocation(string fieldPath, out int line, out int column)
    {
        for (var path = fieldPath; path.Length > 0; path = FieldPath.Parent(path))
        {
            if (TryGetLocation(path, out line, out column))
            {
                return true;
            }
        }
        (line, column) = (0, 0);
        return false;
    }

    /// <summary>
    /// Reads <paramref name="yaml"/>. Never throws for bad input: a syntax error is the only error
    /// reported (nothing after it can be trusted); otherwise every problem is reported at once.
    /// </summary>
    /// <param name="yaml">The file's text.</param>
    /// <param name="fileName">The file's name, kept for messages.</param>
    public static DesiredStateDocument Parse(string yaml, string fileName)
    {
        ArgumentNullException.ThrowIfNull(yaml);
        ArgumentNullException.ThrowIfNull(fileName);
        IReadOnlyList<YamlTreeDocument> documents;
        try
        {
            documents = YamlTree.Load(yaml);
        }
        catch (YamlException e)
        {
            var (line, column) = DesiredStateReader.Position(e.Start);
            return new DesiredStateDocument(fileName, new DesiredState(), [new YamlError(line, column, "", SyntaxMessage(e))],
                new Dictionary<string, (int, int)>());
        }
        var reader = new DesiredStateReader();
        var state = reader.Read(documents);
        return new DesiredStateDocument(fileName, state, reader.SortedErrors(), reader.Locations);
    }

    private static string SyntaxMessage(YamlException e)
    {
        var message = e.Message.Trim();
        if (message.Length > 0 && char.IsUpper(message[0]) && (message.Length == 1 || !char.IsUpper(message[1])))
        {
            message = char.ToLowerInvariant(message[0]) + message[1..];
        }
        return "YAML syntax error: " + message.TrimEnd('.');
    }
}
