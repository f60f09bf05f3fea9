using System.Runtime.InteropServices;

namespace Relay.Linux.Interop;

/// <summary>Who the process runs as.</summary>
public static partial class Identity
{
    /// <summary>The effective user id (0 for root).</summary>
    public static uint EffectiveUserId() => GetEuid();

    [LibraryImport("libc", EntryPoint = "geteuid")]
    private static partial uint GetEuid();
}
