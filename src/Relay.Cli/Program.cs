using System.CommandLine;
using Relay.Cli;
using Relay.Cli.Demo;
using Relay.Core.Errors;

return await RelayCli.RunAsync(args);

namespace Relay.Cli
{
    /// <summary>The relay command line.</summary>
    internal static class RelayCli
    {
        public static async Task<int> RunAsync(string[] args)
        {
            var verbose = new Option<bool>("--verbose", "-v") { Description = "Log every change (to stderr)." };
            var root = new RootCommand("Relay: service-centric networking for Linux. Services have names and stable virtual addresses; the kernel balances and moves flows between their instances.")
            {
                verbose,
            };
            root.Options.Add(Commands.CliContext.Socket);
            root.Subcommands.Add(Commands.OperationCommands.Daemon(verbose));
            root.Subcommands.Add(Commands.OperationCommands.Apply());
            root.Subcommands.Add(Commands.ResourceCommands.Network());
            root.Subcommands.Add(Commands.ResourceCommands.Service());
            root.Subcommands.Add(Commands.ResourceCommands.Instance());
            root.Subcommands.Add(Commands.OperationCommands.Migrate());
            root.Subcommands.Add(Commands.OperationCommands.Exec());
            root.Subcommands.Add(Commands.ResourceCommands.Resolve());
            root.Subcommands.Add(Commands.ResourceCommands.Flows());
            root.Subcommands.Add(Commands.OperationCommands.Events());
            root.Subcommands.Add(Commands.ResourceCommands.Status());
            root.Subcommands.Add(Commands.OperationCommands.Metrics());
            root.Subcommands.Add(Commands.OperationCommands.Down());
            root.Subcommands.Add(Commands.ClusterCommands.Node());
            root.Subcommands.Add(Commands.ClusterCommands.Lab());
            root.Subcommands.Add(DemoCommand());
            root.Subcommands.Add(Commands.Completion.Command(root));
            Commands.ExamplesHelp.Install(root);
            var parse = root.Parse(args);
            if (parse.Errors.Count > 0 && !HelpRequested(parse))
            {
                // Mistakes on the command line: one line each, as every other error, and a hint.
                var messages = parse.Errors.Select(e => Plain(e.Message)).ToList();
                if (messages.Count > 1)
                {
                    messages.Remove("Required command was not provided.");
                }
                foreach (var message in messages)
                {
                    await Console.Error.WriteLineAsync("relay: error: " + message).ConfigureAwait(false);
                }
                var names = new List<string>();
                for (var c = parse.CommandResult; c is not null && c.Command != root; c = c.Parent as System.CommandLine.Parsing.CommandResult)
                {
                    names.Insert(0, c.Command.Name);
                }
                await Console.Error.WriteLineAsync($"see 'relay {string.Join(' ', names.Append("--help"))}'").ConfigureAwait(false);
                return 1;
            }
            return await parse.InvokeAsync().ConfigureAwait(false);
        }

        private static Command DemoCommand()
        {
            var file = new Option<string?>("--file", "-f") { Description = "The desired state the demo starts from; it needs services a.com, b.com and c.com. Default: the built-in copy of examples/seed.yaml." };
            var migrations = new Option<int>("--migrations", "-n") { Description = "How many times b.com moves to a fresh instance.", DefaultValueFactory = _ => 20 };
            var pause = new Option<int>("--pause-ms") { Description = "Milliseconds between migrations.", DefaultValueFactory = _ => 100 };
            var hosts = new Option<int>("--hosts") { Description = "Run the scenario across a lab of this many simulated hosts (at least 3; 'relay lab'), losing one halfway; 1 (the default) is the single-host demo.", DefaultValueFactory = _ => 1 };
            var cmd = new Command("demo", "Run the seed scenario on the real kernel through a relay daemon of its own: a.com pings b.com by name while b.com is migrated again and again; ends with one line of JSON. Exit code 0 only if no ping was lost. With --hosts 3, the same across a lab of simulated hosts, one of them lost halfway.")
            {
                file, migrations, pause, hosts,
            };

            cmd.SetAction((parse, ct) => Commands.CliContext.Guard(async () =>
            {
                Commands.OperationCommands.RequireRoot();
                var n = parse.GetValue(migrations);
                if (n < 1)
                {
                    throw new RelayException(ErrorCode.Invalid, "--migrations", "at least one migration is needed");
                }
                // Ctrl-C or SIGTERM stop the demo between steps, and everything it created is removed.
                using var interrupted = CancellationTokenSource.CreateLinkedTokenSource(ct);
                using var sigint = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGINT, c => Interrupt(c, interrupted));
                using var sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, c => Interrupt(c, interrupted));
                var pauseTime = TimeSpan.FromMilliseconds(Math.Max(0, parse.GetValue(pause)));
                if (parse.GetValue(hosts) is var count and not 1)
                {
                    var errors = new ErrorCollector();
                    if (count < 3)
                    {
                        errors.Add(ErrorCode.Invalid, "--hosts", $"the cluster demo needs at least 3 hosts, not {count} (leave --hosts out for the single-host demo)");
                    }
                    if (count > 9)
                    {
                        errors.Add(ErrorCode.Invalid, "--hosts", "at most 9 hosts in the demo's lab");
                    }
                    if (parse.GetValue(file) is not null)
                    {
                        errors.Add(ErrorCode.Invalid, "--file", "the cluster demo builds its own scenario; --file is for the single-host demo");
                    }
                    if (n < 2)
                    {
                        errors.Add(ErrorCode.Invalid, "--migrations", "the cluster demo loses a host halfway: at least 2 migrations");
                    }
                    errors.ThrowIfAny();
                    return await new Demo.ClusterDemo(count, n, pauseTime, Console.Out).RunAsync(interrupted.Token).ConfigureAwait(false);
                }
                var options = new DemoOptions(parse.GetValue(file), n, pauseTime);
                return await new SeedDemo(options, Console.Out).RunAsync(interrupted.Token).ConfigureAwait(false);
            }));
            return cmd;
        }

        private static bool HelpRequested(ParseResult parse)
            => parse.Action is System.CommandLine.Invocation.SynchronousCommandLineAction and not null && parse.Tokens.Any(t => t.Value is "--help" or "-h" or "-?");

        /// <summary>System.CommandLine names .NET types in its messages; users know numbers and text.</summary>
        private static string Plain(string message)
        {
            var m = System.Text.RegularExpressions.Regex.Match(message, @"^Cannot parse argument '(.*)' for option '(.*)' as expected type '(.*)'\.$");
            if (m.Success)
            {
                var expected = m.Groups[3].Value.Contains("Int32", StringComparison.Ordinal) ? " (a whole number is expected)" : "";
                return $"'{m.Groups[1].Value}' is not a valid value for {m.Groups[2].Value}{expected}";
            }
            return message.Replace(":\n\t", ": ", StringComparison.Ordinal).Replace("\n\t", ", ", StringComparison.Ordinal).Trim();
        }

        private static void Interrupt(System.Runtime.InteropServices.PosixSignalContext context, CancellationTokenSource cts)
        {
            context.Cancel = true;
            cts.Cancel();
        }
    }
}
