using System.CommandLine;
using System.Text.Json;
using Relay.Cli.Client;
using Relay.Core.Errors;
using Relay.Daemon.Api;

namespace Relay.Cli.Commands;

/// <summary>Options shared by commands, and the one way every command reports failure.</summary>
internal static class CliContext
{
    /// <summary>--socket, on every command.</summary>
    public static readonly Option<string> Socket = new("--socket")
    {
        Description = "The daemon's API socket.",
        DefaultValueFactory = _ => Environment.GetEnvironmentVariable("RELAY_SOCKET") ?? RelayClient.DefaultSocket,
        Recursive = true,
    };

    /// <summary>--network / -n.</summary>
    public static Option<string> Network() => new("--network", "-n")
    {
        Description = "The network (default: $RELAY_NETWORK, or 'default').",
        DefaultValueFactory = _ => Environment.GetEnvironmentVariable("RELAY_NETWORK") ?? "default",
    };

    /// <summary>-o / --output for read commands.</summary>
    public static Option<string> Output() => new Option<string>("--output", "-o")
    {
        Description = "Output format: table (default) or json.",
        DefaultValueFactory = _ => "table",
    }.AcceptOnlyFromAmong("table", "json");

    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<Command, string[]> ExampleTable = [];

    /// <summary>
    /// Examples that <c>--help</c> shows after the command's options (not in the listing of its
    /// parent). Every one is run as written by the tests (ExampleTests).
    /// </summary>
    public static T WithExamples<T>(this T command, params string[] examples)
        where T : Command
    {
        ExampleTable.AddOrUpdate(command, examples);
        return command;
    }

    /// <summary>The examples of <paramref name="command"/>, if any.</summary>
    public static IReadOnlyList<string> ExamplesOf(Command command)
        => ExampleTable.TryGetValue(command, out var e) ? e : [];

    /// <summary>Runs a command against the daemon; every failure becomes one message and an exit code.</summary>
    public static Func<ParseResult, CancellationToken, Task<int>> Run(Func<ParseResult, RelayClient, CancellationToken, Task<int>> action)
        => async (parse, ct) =>
        {
            using var client = new RelayClient(parse.GetValue(Socket)!);
            return await Guard(() => action(parse, client, ct)).ConfigureAwait(false);
        };

    /// <summary>
    /// A command given to run (an instance's, or in one) takes option-like words only after
    /// <c>--</c>: in <c>relay instance add b.com -o json</c> the <c>-o</c> is a mistake (an option
    /// this command does not have), not a program named "-o". Refused before anything is sent.
    /// </summary>
    public static void RequireDoubleDash(ParseResult parse, Argument<string[]> command, string usage)
    {
        var tokens = parse.Tokens;
        var dash = -1;
        for (var i = 0; i < tokens.Count; i++)
        {
            if (tokens[i].Type == System.CommandLine.Parsing.TokenType.DoubleDash)
            {
                dash = i;
                break;
            }
        }
        var before = dash < 0 ? tokens : tokens.Take(dash).ToList();
        var stray = (parse.GetResult(command)?.Tokens ?? [])
            .Where(t => t.Value.Length > 1 && t.Value[0] == '-' && before.Any(b => ReferenceEquals(b, t)))
            .Select(t => t.Value).ToArray();
        if (stray.Length > 0)
        {
            throw new CliException($"unknown option{(stray.Length == 1 ? "" : "s")} {string.Join(", ", stray.Select(s => $"'{s}'"))}; a command to run goes after --, as in: {usage}", 2);
        }
    }

    /// <summary>User mistakes and refusals become one clear message on stderr, never a stack trace.</summary>
    public static async Task<int> Guard(Func<Task<int>> action)
    {
        try
        {
            return await action().ConfigureAwait(false);
        }
        catch (CliException e)
        {
            await Console.Error.WriteLineAsync("relay: error: " + e.Message).ConfigureAwait(false);
            return e.ExitCode;
        }
        catch (RelayException e)
        {
            await Console.Error.WriteLineAsync("relay: error: " + e.Message).ConfigureAwait(false);
            return e.Code is ErrorCode.Kernel or ErrorCode.Unavailable ? 2 : 1;
        }
        catch (OperationCanceledException)
        {
            return 130;
        }
    }

    /// <summary>Writes <paramref name="value"/> as indented JSON.</summary>
    public static void Json(object value) => Console.WriteLine(JsonSerializer.Serialize(value, value.GetType(), new JsonSerializerOptions(ApiJson.Options) { WriteIndented = true }));

    /// <summary>Path segment escaping.</summary>
    public static string Seg(string s) => Uri.EscapeDataString(s);
}
