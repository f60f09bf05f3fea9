using System.Diagnostics;

namespace Relay.Integration.Tests.Support;

/// <summary>Runs real tools (ip, nft, ping, dig, socat) the way a user would.</summary>
public static class Sh
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr);

    public static Result Run(string program, params string[] args) => RunWithTimeout(TimeSpan.FromSeconds(60), program, args);

    public static Result RunWithTimeout(TimeSpan timeout, string program, params string[] args)
    {
        var psi = new ProcessStartInfo(program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeout))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{program} {string.Join(' ', args)} did not finish in {timeout}");
        }
        p.WaitForExit();
        return new Result(p.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>Runs and requires exit code 0; returns stdout.</summary>
    public static string Ok(string program, params string[] args)
    {
        var r = Run(program, args);
        Assert.True(r.ExitCode == 0, $"{program} {string.Join(' ', args)} exited {r.ExitCode}: {r.Stderr}{r.Stdout}");
        return r.Stdout;
    }

    /// <summary>Runs a command inside a namespace with ip netns exec.</summary>
    public static Result InNs(string netns, string program, params string[] args)
        => Run("ip", ["netns", "exec", netns, program, .. args]);
}
