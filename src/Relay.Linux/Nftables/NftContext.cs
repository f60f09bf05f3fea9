using System.Runtime.InteropServices;
using Relay.Linux.Interop;
using Relay.Linux.Namespaces;

namespace Relay.Linux.Nftables;

/// <summary>
/// One libnftables context, opened inside a namespace and kept for the life of its owner.
/// <para>
/// Why not an nft process per change: measured here, an <c>nft -f</c> process takes 14-18 ms to
/// re-point one element whatever the table size, almost all of it the kernel tearing down the
/// process's netlink socket at exit; through a context that stays open the same change takes
/// ~0.1 ms (docs/decisions/001-dataplane-maps-not-chains.md).
/// </para>
/// <para>
/// The context is created on the namespace's <see cref="NetnsThread"/>: nft_ctx_new opens the
/// context's netlink socket (libnftables 1.0.6; an integration test checks it), and a socket
/// belongs to the namespace of the thread that opened it. Commands then run on the caller's
/// thread under a lock: handing each one to the namespace thread and back costs two context
/// switches, which on a loaded machine (ping -f on every core) added milliseconds to a re-point.
/// </para>
/// </summary>
public sealed class NftContext : INftables
{
    private readonly NetnsThread _thread;
    private readonly object _gate = new();
    private nint _ctx;

    private NftContext(NetnsThread thread, nint ctx)
    {
        _thread = thread;
        _ctx = ctx;
    }

    /// <summary>Opens a context in <paramref name="thread"/>'s namespace.</summary>
    public static NftContext Open(NetnsThread thread)
    {
        var ctx = thread.Invoke(() =>
        {
            // nft_ctx_new opens the context's netlink socket; it must get a descriptor below 1024.
            var c = LowDescriptors.Run(() => LibNftables.CtxNew(LibNftables.NFT_CTX_DEFAULT));
            if (c == 0)
            {
                throw new InvalidOperationException("nft_ctx_new failed (is libnftables1 installed?)");
            }
            // Buffer both streams: nft must never print to our stdout/stderr.
            LibNftables.CtxBufferOutput(c);
            LibNftables.CtxBufferError(c);
            // Touch the kernel once so the netlink socket is opened here, in this namespace.
            LibNftables.RunCmdFromBuffer(c, "list tables");
            // Reading a buffer empties it; unread, this listing would prefix the next command's output.
            LibNftables.CtxGetOutputBuffer(c);
            LibNftables.CtxGetErrorBuffer(c);
            return c;
        });
        return new NftContext(thread, ctx);
    }

    /// <inheritdoc />
    public string Run(string commands) => RunHere(commands);

    /// <inheritdoc />
    public string RunJson(string commands)
    {
        lock (_gate)
        {
            var flags = LibNftables.CtxOutputGetFlags(Ctx);
            LibNftables.CtxOutputSetFlags(Ctx, flags | LibNftables.NFT_CTX_OUTPUT_JSON);
            try
            {
                return RunHere(commands);
            }
            finally
            {
                LibNftables.CtxOutputSetFlags(Ctx, flags);
            }
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        lock (_gate)
        {
            if (_ctx == 0)
            {
                return;
            }
            var c = _ctx;
            _ctx = 0;
            _thread.Invoke(() => LibNftables.CtxFree(c));
        }
    }

    private nint Ctx => _ctx != 0 ? _ctx : throw new ObjectDisposedException(nameof(NftContext));

    private string RunHere(string commands)
    {
        lock (_gate)
        {
            var ctx = Ctx;
            var rc = LibNftables.RunCmdFromBuffer(ctx, commands);
            // The buffers are reset by the next command; copy them now.
            var output = Marshal.PtrToStringUTF8(LibNftables.CtxGetOutputBuffer(ctx)) ?? "";
            var error = Marshal.PtrToStringUTF8(LibNftables.CtxGetErrorBuffer(ctx)) ?? "";
            if (rc != 0)
            {
                throw new NftException(error.Length > 0 ? error : $"nft_run_cmd_from_buffer returned {rc}", commands);
            }
            return output;
        }
    }
}
