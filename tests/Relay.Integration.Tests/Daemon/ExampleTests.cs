using System.Diagnostics;
using System.Text.RegularExpressions;
using Relay.Integration.Tests.Support;
using Xunit.Abstractions;

namespace Relay.Integration.Tests.Daemon;

/// <summary>
/// Every example a user is shown runs as written: the README's command blocks and the examples in
/// <c>--help</c>. They run through <c>sh -c</c> in a directory holding <c>./relay</c> (the built
/// binary) and a copy of examples/, against a daemon of the test's own. Only what ties them to
/// one machine changes: the default network is the test's (RELAY_NETWORK), the network the
/// example files name gets a unique name, the socket path is the test's, and <c>sudo</c> is
/// dropped (tests run as root).
/// </summary>
public sealed partial class ExampleTests(ITestOutputHelper output)
{
    /// <summary>The commands whose --help has examples, in the order their examples build on each other.</summary>
    private static readonly string[] HelpExampleOrder = ["service add", "instance add", "exec", "resolve", "migrate", "apply"];

    [Fact]
    public async Task Every_README_command_runs_as_written()
    {
        await using var bed = new DaemonBed();
        var (dir, rename) = Workspace(bed);
        var lines = ReadmeCommands().ToArray();
        Assert.True(lines.Length >= 15, $"the README's command blocks were not found ({lines.Length} lines)");
        var labUp = false;
        try
        {
            foreach (var line in lines)
            {
                if (line.Contains("relay daemon", StringComparison.Ordinal))
                {
                    continue; // the test's daemon is already running
                }
                if (!File.Exists(bed.Socket))
                {
                    bed.Start(); // after the walkthrough's `relay down`, as the user would start it again
                    bed.Ok("network", "create", bed.Network);
                }
                labUp |= line.Contains("relay lab up", StringComparison.Ordinal);
                Run(bed, dir, rename(line));
                labUp &= !line.Contains("relay lab down", StringComparison.Ordinal);
            }
        }
        finally
        {
            if (labUp)
            {
                // The walkthrough stopped between its `lab up` and `lab down`: remove the lab it made, by its record.
                Sh.Run(DaemonBed.Binary, "lab", "down");
            }
        }
    }

    [Fact]
    public async Task Every_help_example_runs_as_written_and_every_command_has_help()
    {
        await using var bed = new DaemonBed();
        var (dir, rename) = Workspace(bed);
        var examples = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        var commands = 0;
        var pending = new Queue<string>([""]);
        while (pending.TryDequeue(out var path))
        {
            var help = bed.Ok([.. path.Split(' ', StringSplitOptions.RemoveEmptyEntries), "--help"]);
            commands++;
            Assert.Contains("Usage:", help, StringComparison.Ordinal);
            foreach (var sub in Subcommands(help))
            {
                pending.Enqueue((path + " " + sub).Trim());
            }
            var found = Examples(help).ToList();
            if (found.Count > 0)
            {
                examples[path] = found;
            }
        }
        output.WriteLine($"{commands} commands have --help; examples in: {string.Join(", ", examples.Keys)}");
        Assert.True(commands >= 25, $"only {commands} commands found");
        Assert.Equal(HelpExampleOrder.Order(StringComparer.Ordinal), examples.Keys.Order(StringComparer.Ordinal));

        foreach (var command in HelpExampleOrder)
        {
            foreach (var example in examples[command])
            {
                Run(bed, dir, rename(example));
            }
        }
    }

    private void Run(DaemonBed bed, string dir, string line)
    {
        output.WriteLine("$ " + line);
        var psi = bed.Psi([]);
        if (line.Contains("/run/relay/lab/", StringComparison.Ordinal))
        {
            // A lab host's daemon is a cluster of its own: its networks are the lab's, not this test's.
            psi.Environment.Remove("RELAY_NETWORK");
        }
        psi.FileName = "/bin/sh";
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add(line);
        psi.WorkingDirectory = dir;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromSeconds(90)))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail($"'{line}' did not finish in 90 s");
        }
        p.WaitForExit();
        output.WriteLine(stdout.Result + stderr.Result);
        Assert.True(p.ExitCode == 0, $"'{line}' exited {p.ExitCode}:\n{stderr.Result}{stdout.Result}");
        Assert.DoesNotContain("   at ", stderr.Result, StringComparison.Ordinal);
    }

    /// <summary>
    /// A directory with ./relay and examples/ (the network the files name renamed to a unique
    /// one), and the rewrite that points a command line at this test's network and socket.
    /// </summary>
    private static (string Directory, Func<string, string> Rename) Workspace(DaemonBed bed)
    {
        var dir = Path.Combine(bed.Directory, "checkout");
        Directory.CreateDirectory(Path.Combine(dir, "examples"));
        File.CreateSymbolicLink(Path.Combine(dir, "relay"), DaemonBed.Binary);
        var renames = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var file in Directory.GetFiles(Path.Combine(DaemonBed.RepositoryRoot, "examples"), "*.yaml"))
        {
            var text = File.ReadAllText(file);
            foreach (Match m in NetworkName().Matches(text))
            {
                renames.TryAdd(m.Groups[1].Value, TestNetwork.UniqueName("x"));
            }
            foreach (var (from, to) in renames)
            {
                text = Regex.Replace(text, $@"^(\s*-?\s*(?:name|network):\s*){Regex.Escape(from)}\s*$", $"${{1}}{to}", RegexOptions.Multiline);
            }
            File.WriteAllText(Path.Combine(dir, "examples", Path.GetFileName(file)), text);
        }
        bed.Ok("network", "create", bed.Network);
        return (dir, line =>
        {
            line = line.StartsWith("sudo ", StringComparison.Ordinal) ? line[5..] : line;
            line = line.Replace("/run/relay/relay.sock", bed.Socket, StringComparison.Ordinal);
            foreach (var (from, to) in renames)
            {
                line = Regex.Replace(line, $@"(-n|--network) {Regex.Escape(from)}\b", $"$1 {to}");
            }
            return line;
        });
    }

    /// <summary>Command lines of the README's sh blocks, but `make` (what runs the tests themselves).</summary>
    private static IEnumerable<string> ReadmeCommands()
    {
        var inBlock = false;
        foreach (var line in File.ReadLines(Path.Combine(DaemonBed.RepositoryRoot, "README.md")))
        {
            if (line.StartsWith("```", StringComparison.Ordinal))
            {
                inBlock = !inBlock && line.Trim() == "```sh";
                continue;
            }
            var text = line.Trim();
            if (inBlock && text.Length > 0 && !text.StartsWith('#') && !text.StartsWith("sudo make", StringComparison.Ordinal))
            {
                yield return text;
            }
        }
    }

    private static IEnumerable<string> Subcommands(string help)
    {
        var at = help.IndexOf("\nCommands:\n", StringComparison.Ordinal);
        if (at < 0)
        {
            yield break;
        }
        foreach (var line in help[(at + 11)..].Split('\n'))
        {
            var m = CommandLine().Match(line);
            if (!m.Success)
            {
                yield break;
            }
            yield return m.Groups[1].Value;
        }
    }

    private static IEnumerable<string> Examples(string help)
    {
        var at = help.IndexOf("Examples:\n", StringComparison.Ordinal);
        if (at < 0)
        {
            yield break;
        }
        foreach (var line in help[(at + 10)..].Split('\n'))
        {
            var text = line.Trim();
            if (!text.StartsWith("relay ", StringComparison.Ordinal))
            {
                yield break;
            }
            yield return "./" + text;
        }
    }

    [GeneratedRegex(@"^\s*-?\s*network:\s*([a-z0-9-]+)\s*$", RegexOptions.Multiline)]
    private static partial Regex NetworkName();

    [GeneratedRegex(@"^  ([a-z][a-z-]*)\b")]
    private static partial Regex CommandLine();
}
