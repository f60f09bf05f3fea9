using System.CommandLine;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Relay.Cli;
using Relay.Cli.Demo;
using Relay.Core.Errors;
using Relay.Engine;

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
            root.Subcommands.Add(DemoCommand(verbose));
            root.Subcommands.Add(DownCommand());
            return await root.Parse(args).InvokeAsync().ConfigureAwait(false);
        }

        private static Command DemoCommand(Option<bool> verbose)
        {
            var network = new Option<string>("--network") { Description = "Name of the demo's network.", DefaultValueFactory = _ => "demo" };
            var migrations = new Option<int>("--migrations", "-n") { Description = "How many times b.com moves to a fresh instance.", DefaultValueFactory = _ => 20 };
            var pause = new Option<int>("--pause-ms") { Description = "Milliseconds between migrations.", DefaultValueFactory = _ => 100 };
            var cmd = new Command("demo", "Run the seed scenario on the real kernel: a.com pings b.com while b.com is migrated again and again; ends with one line of JSON. Exit code 0 only if no ping was lost.")
            {
                network, migrations, pause,
            };
            cmd.SetAction((parse, ct) => Guard(async () =>
            {
                RequireRoot();
                var n = parse.GetValue(migrations);
                if (n < 1)
                {
                    throw new RelayException(ErrorCode.Invalid, "--migrations", "at least one migration is needed");
                }
                using var logs = Logging(parse.GetValue(verbose));
                // Ctrl-C or SIGTERM stop the demo between steps, and everything it created is removed.
                using var interrupted = CancellationTokenSource.CreateLinkedTokenSource(ct);
                using var sigint = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGINT, c => Interrupt(c, interrupted));
                using var sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, c => Interrupt(c, interrupted));
                var options = new DemoOptions(parse.GetRequiredValue(network), n, TimeSpan.FromMilliseconds(Math.Max(0, parse.GetValue(pause))));
                return await new SeedDemo(options, Console.Out, logs.CreateLogger("relay")).RunAsync(interrupted.Token).ConfigureAwait(false);
            }));
            return cmd;
        }

        private static Command DownCommand()
        {
            var network = new Option<string>("--network") { Description = "The network to remove.", Required = true };
            var cmd = new Command("down", "Remove what a network created (its namespaces, links, nft table and processes), as recorded under /run/relay/networks. Nothing else is touched.")
            {
                network,
            };
            cmd.SetAction((parse, ct) => Guard(() =>
            {
                RequireRoot();
                var name = parse.GetRequiredValue(network);
                var directory = new NetworkOptions { Name = name }.RecordDirectory;
                var record = NetworkRecord.Load(directory, name)
                    ?? throw new RelayException(ErrorCode.NotFound, "--network", $"no record of a network '{name}' in {directory}; nothing was removed");
                var removed = record.RemoveLeftovers(directory);
                Console.WriteLine(removed.Count == 0 ? $"network '{name}': nothing left to remove" : $"network '{name}': removed {string.Join(", ", removed)}");
                return Task.FromResult(0);
            }));
            return cmd;
        }

        private static void Interrupt(System.Runtime.InteropServices.PosixSignalContext context, CancellationTokenSource cts)
        {
            context.Cancel = true;
            cts.Cancel();
        }

        /// <summary>User mistakes become one clear message and exit code 1, never a stack trace.</summary>
        private static async Task<int> Guard(Func<Task<int>> action)
        {
            try
            {
                return await action().ConfigureAwait(false);
            }
            catch (RelayException e)
            {
                await Console.Error.WriteLineAsync("relay: error: " + e.Message).ConfigureAwait(false);
                return e.Code == ErrorCode.Kernel ? 2 : 1;
            }
            catch (OperationCanceledException)
            {
                await Console.Error.WriteLineAsync("relay: interrupted; everything created was removed").ConfigureAwait(false);
                return 130;
            }
        }

        private static void RequireRoot()
        {
            if (Linux.Interop.Identity.EffectiveUserId() != 0)
            {
                throw new RelayException(ErrorCode.Invalid, "user", "relay needs root (it creates network namespaces and nftables tables); run it with sudo");
            }
        }

        /// <summary>Logs go to stderr, so stdout stays the command's output (tables, JSON).</summary>
        private static ILoggerFactory Logging(bool verbose) => LoggerFactory.Create(b =>
        {
            b.AddSimpleConsole(o =>
            {
                o.SingleLine = true;
                o.TimestampFormat = "HH:mm:ss.fff ";
            });
            b.Services.Configure<Microsoft.Extensions.Logging.Console.ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
            b.SetMinimumLevel(verbose ? LogLevel.Information : LogLevel.Warning);
        });
    }
}
