using System.Runtime.InteropServices;

namespace Relay.Linux.Interop;

/// <summary>
/// libnftables (Debian package libnftables1), the library behind the nft command. It parses nft
/// syntax and commits it as ONE netlink batch, i.e. one kernel transaction.
/// </summary>
internal static partial class LibNftables
{
    // The versioned name: the unversioned libnftables.so exists only with the -dev package.
    private const string Lib = "libnftables.so.1";

    public const uint NFT_CTX_DEFAULT = 0;
    public const uint NFT_CTX_OUTPUT_HANDLE = 1 << 3;
    public const uint NFT_CTX_OUTPUT_JSON = 1 << 4;

    [LibraryImport(Lib, EntryPoint = "nft_ctx_new")]
    public static partial nint CtxNew(uint flags);

    [LibraryImport(Lib, EntryPoint = "nft_ctx_free")]
    public static partial void CtxFree(nint ctx);

    [LibraryImport(Lib, EntryPoint = "nft_ctx_buffer_output")]
    public static partial int CtxBufferOutput(nint ctx);

    [LibraryImport(Lib, EntryPoint = "nft_ctx_get_output_buffer")]
    public static partial nint CtxGetOutputBuffer(nint ctx);

    [LibraryImport(Lib, EntryPoint = "nft_ctx_buffer_error")]
    public static partial int CtxBufferError(nint ctx);

    [LibraryImport(Lib, EntryPoint = "nft_ctx_get_error_buffer")]
    public static partial nint CtxGetErrorBuffer(nint ctx);

    [LibraryImport(Lib, EntryPoint = "nft_ctx_output_get_flags")]
    public static partial uint CtxOutputGetFlags(nint ctx);

    [LibraryImport(Lib, EntryPoint = "nft_ctx_output_set_flags")]
    public static partial void CtxOutputSetFlags(nint ctx, uint flags);

    [LibraryImport(Lib, EntryPoint = "nft_run_cmd_from_buffer", StringMarshalling = StringMarshalling.Utf8)]
    public static partial int RunCmdFromBuffer(nint ctx, string buffer);
}
