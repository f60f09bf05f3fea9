using System.Net.Sockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Relay.Core.Errors;
using Relay.Daemon.Api;

namespace Relay.Daemon;

/// <summary>
/// <c>relay daemon</c>: runs in the foreground, logs to stdout (journald takes it), tells systemd when
/// it is ready (Type=notify), serves the API on a unix socket, and on SIGTERM stops cleanly, leaving
/// every network running in the kernel for the next start to adopt.
/// </summary>
public static class DaemonHost
{
    /// <summary>Runs until SIGTERM/SIGINT or <paramref name="cancellationToken"/>; returns the exit code.</summary>
    public static async Task<int> RunAsync(DaemonOptions options, LogLevel level, CancellationToken cancellationToken = default)
    {
        var errors = new ErrorCollector();
        ClusterMembership.Validate(options, errors);
        errors.ThrowIfAny();
        PrepareSocket(options.Socket);
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ApplicationName = "relay" });
        builder.Host.UseSystemd();
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "yyyy-MM-dd HH:mm:ss.fff ";
        });
        builder.Logging.SetMinimumLevel(level);
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        builder.Logging.AddFilter("Microsoft.Hosting.Lifetime", LogLevel.Warning);
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.ListenUnixSocket(options.Socket);
            k.Limits.MaxRequestBodySize = options.MaxRequestBytes;
            k.AddServerHeader = false;
        });
        builder.Services.Configure<JsonOptions>(o => ApiJson.Configure(o.SerializerOptions));
        // A body or query that does not bind (bad JSON, wrong type, wrong content type) throws, so
        // that ErrorHandling answers with what was wrong instead of a bare 400 or 415.
        builder.Services.Configure<Microsoft.AspNetCore.Routing.RouteHandlerOptions>(o => o.ThrowOnBadRequest = true);
        builder.Services.AddOpenApi("v1");
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(10));

        await using var app = builder.Build();
        var logs = app.Services.GetRequiredService<ILoggerFactory>();
        using var daemon = new RelayDaemon(options, logs);
        daemon.Start();
        await using var membership = options.Clustered
            ? await ClusterMembership.JoinAsync(options, logs.CreateLogger("relay.cluster"), cancellationToken).ConfigureAwait(false)
            : null;
        daemon.Cluster = membership;
        await using var networks = membership is null ? null
            : await Cluster.ClusterNetworks.StartAsync(options, membership, logs, cancellationToken).ConfigureAwait(false);
        daemon.ClusterNetworks = networks;
        app.UseMiddleware<PeerCredentials>();
        app.UseMiddleware<ErrorHandling>();
        Endpoints.Map(app, daemon);
        app.MapOpenApi("/openapi/{documentName}.json");

        await app.StartAsync(cancellationToken).ConfigureAwait(false);
        // Root only: nobody else may even connect (the API can create namespaces and run commands).
        File.SetUnixFileMode(options.Socket, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        logs.CreateLogger("relay.daemon").LogInformation("relay daemon ready on {Socket}: {Networks} networks restored", options.Socket, daemon.Networks.Count);
        try
        {
            await app.WaitForShutdownAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            File.Delete(options.Socket);
        }
        return 0;
    }

    /// <summary>
    /// Makes the socket's directory (root only) and removes a stale socket file; refuses when another
    /// daemon answers on it.
    /// </summary>
    private static void PrepareSocket(string path)
    {
        var dir = Path.GetDirectoryName(path)!;
        if (!Directory.Exists(dir))
        {
            Directory.CreateDirectory(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
        if (!File.Exists(path))
        {
            return;
        }
        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            probe.Connect(new UnixDomainSocketEndPoint(path));
            throw new RelayException(ErrorCode.Conflict, "socket", $"another relay daemon is running on {path}");
        }
        catch (SocketException)
        {
            File.Delete(path); // left by a daemon that died
        }
    }
}
