namespace Relay.Cli.Config;

/// <summary>One problem in a YAML file, where it is and which field it concerns.</summary>
/// <param name="Line">1-based line in the file.</param>
/// <param name="Column">1-based column in the file.</param>
/// <param name="Field">A field path such as <c>services[2].ports[1]</c> (the daemon's convention); empty for the file as a whole.</param>
/// <param name="Message">A sentence a user can act on.</param>
public sealed record YamlError(int Line, int Column, string Field, string Message)
{
    /// <inheritdoc />
    public override string ToString() => Field.Length == 0 ? $"{Line}:{Column}: {Message}" : $"{Line}:{Column}: {Field}: {Message}";
}
