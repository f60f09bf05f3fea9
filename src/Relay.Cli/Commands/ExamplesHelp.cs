using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;

namespace Relay.Cli.Commands;

/// <summary><c>--help</c> as System.CommandLine prints it, then the command's examples.</summary>
internal sealed class ExamplesHelp(HelpAction inner) : SynchronousCommandLineAction
{
    /// <summary>Puts this action on every help option of the tree under <paramref name="root"/>.</summary>
    public static void Install(Command root)
    {
        foreach (var option in root.Options.OfType<HelpOption>())
        {
            if (option.Action is HelpAction help)
            {
                option.Action = new ExamplesHelp(help);
            }
        }
    }

    public override int Invoke(ParseResult parseResult)
    {
        var code = inner.Invoke(parseResult);
        var examples = CliContext.ExamplesOf(parseResult.CommandResult.Command);
        if (examples.Count > 0)
        {
            var output = parseResult.InvocationConfiguration.Output;
            output.WriteLine("Examples:");
            foreach (var e in examples)
            {
                output.WriteLine("  " + e);
            }
            output.WriteLine();
        }
        return code;
    }
}
