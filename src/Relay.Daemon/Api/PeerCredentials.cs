using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http;

namespace Relay.Daemon.Api;

/// <summary>
/// Only root may use the API. The socket file is mode 0600 and owned by root, so nobody else can
/// connect at all; this check (SO_PEERCRED) is the second lock, for a socket whose mode was changed
/// by hand. TCP, when configured, is the administrator's explicit choice and is not checked.
/// </summary>
public sealed partial class PeerCredentials(RequestDelegate next)
{
    /// <summary>Rejects unix-socket peers that are not uid 0.</summary>
    public Task InvokeAsync(HttpContext context)
    {
        var socket = context.Features.Get<IConnectionSocketFeature>()?.Socket;
        if (socket is { AddressFamily: AddressFamily.Unix } && PeerUid(socket) is { } uid && uid != 0)
        {
            context.Response.StatusCode = StatusCodes.Status403Forbidden;
            context.Response.ContentType = "application/json";
            return context.Response.WriteAsync($$"""{"error":"only root may use the relay API (your uid is {{uid}})"}""");
        }
        return next(context);
    }

    private static unsafe uint? PeerUid(Socket socket)
    {
        const int SOL_SOCKET = 1;
        const int SO_PEERCRED = 17;
        var cred = stackalloc int[3]; // struct ucred { pid_t pid; uid_t uid; gid_t gid; }
        var len = sizeof(int) * 3;
        return GetSockOpt((int)socket.Handle, SOL_SOCKET, SO_PEERCRED, cred, &len) == 0 ? (uint)cred[1] : null;
    }

    [LibraryImport("libc", EntryPoint = "getsockopt", SetLastError = true)]
    private static unsafe partial int GetSockOpt(int fd, int level, int name, void* value, int* length);
}
