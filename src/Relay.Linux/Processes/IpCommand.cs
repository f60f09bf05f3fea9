using System.Diagnostics;
using Relay.Core.Errors;

namespace Relay.Linux.Processes;

/// <summary>
/// Runs iproute2's <c>ip</c>. Used to create namespaces and links (allowed by design: it is not on
/// the re-point path); several changes go in one <c>ip -batch</c> process to keep the count low.
/// </summary>
public static class IpCommand
{
    /// <summary>The program (overridable for tests of the error path).</summary>
    public static string Program { get; set; } = "ip";

    /// <summary>Runs <c>ip ARGS</c>; throws a <see cref="RelayException"/> (Kernel) with ip's message on failure.</summary>
    public static string Run(IReadOnlyList<string> args, string? stdin = null) => RunProgram(Program, args, stdin);

    /// <summary>Runs another iproute2 program (<c>bridge</c>) the same way as <see cref="Run"/>.</summary>
    public static string RunProgram(string program, IReadOnlyList<string> args, string? stdin = null)
    {
        var psi = new ProcessStartInfo(program)
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            RedirectStandardInput = stdin is not null,
            UseShellExecute = false,
        };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        using var p = Process.Start(psi) ?? throw new RelayException(ErrorCode.Kernel, program == Program ? "ip" : program, $"could not start {program} (is iproute2 installed?)");
        var stderr = p.StandardError.ReadToEndAsync();
        var stdout = p.StandardOutput.ReadToEndAsync();
        if (stdin is not null)
        {
            p.StandardInput.Write(stdin);
            p.StandardInput.Close();
        }
        p.WaitForExit();
        var err = stderr.GetAwaiter().GetResult().Trim();
        if (p.ExitCode != 0)
        {
            var what = program + " " + string.Join(' ', args);
            throw new RelayException(ErrorCode.Kernel, program == Program ? "ip" : program, $"'{what}' failed (exit {p.ExitCode}): {err}");
        }
        return stdout.GetAwaiter().GetResult();
    }

    /// <summary>Runs the <paramref name="commands"/> (one per line, without the leading "ip") in one process, inside namespace <paramref name="netns"/> if given.</summary>
    public static void Batch(string? netns, IEnumerable<string> commands)
    {
        var args = new List<string>();
        if (netns is not null)
        {
            args.Add("-n");
            args.Add(netns);
        }
        args.Add("-batch");
        args.Add("-");
        Run(args, string.Join('\n', commands) + "\n");
    }
}
