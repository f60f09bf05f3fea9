namespace Relay.Linux.Nftables;

/// <summary>Runs nft command text as one kernel transaction in one network namespace.</summary>
public interface INftables : IDisposable
{
    /// <summary>
    /// Runs <paramref name="commands"/> (nft syntax, several lines) as ONE transaction and returns
    /// what nft printed (listings). Throws <see cref="NftException"/> when nft or the kernel refused;
    /// then nothing was changed.
    /// </summary>
    string Run(string commands);

    /// <summary>Runs <paramref name="commands"/> (listings) with nft's JSON output.</summary>
    string RunJson(string commands);
}

/// <summary>nft or the kernel refused a transaction; the table is as it was before.</summary>
public sealed class NftException : Exception
{
    /// <summary>Creates the exception.</summary>
    public NftException(string error, string commands)
        : base($"nftables refused the transaction: {FirstLines(error, 12)}")
    {
        Error = error;
        Commands = commands;
    }

    /// <summary>nft's error text (with the offending line and a caret).</summary>
    public string Error { get; }

    /// <summary>The transaction text that was refused.</summary>
    public string Commands { get; }

    private static string FirstLines(string s, int n)
    {
        var lines = s.Trim().Split('\n');
        return lines.Length <= n ? s.Trim() : string.Join('\n', lines.Take(n)) + $"\n... ({lines.Length - n} more lines)";
    }
}
