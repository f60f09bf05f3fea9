using System.Diagnostics;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Hosting;
using Relay.Core.Errors;
using Relay.Core.Model;
using Relay.Core.Naming;
using Relay.Engine;
using Relay.Engine.Api;

namespace Relay.Daemon.Api;

/// <summary>The HTTP API (v1). Every handler is a thin call into <see cref="RelayDaemon"/> or a network.</summary>
public static class Endpoints
{
    /// <summary>The daemon's version, reported by /v1/status.</summary>
    public static string Version => typeof(Endpoints).Assembly.GetName().Version?.ToString(3) ?? "0.0.0";

    /// <summary>Maps every route.</summary>
    public static void Map(IEndpointRouteBuilder app, RelayDaemon daemon)
    {
        var v1 = app.MapGroup("/v1");
        v1.MapGet("/status", async (CancellationToken ct) => Status(daemon, daemon.Cluster is { } c ? await c.StatusAsync(ct).ConfigureAwait(false) : null)).WithName("status");
        v1.MapGet("/nodes", (CancellationToken ct) => daemon.NodesAsync(ct));

        if (daemon.ClusterNetworks is { } cluster)
        {
            ClusterEndpoints.Map(v1, cluster);
        }
        else
        {
            MapLocal(v1, daemon);
        }
        // relay down: every network goes; with stop=true the daemon then exits too (its socket
        // is removed), so nothing of Relay's is left running.
        v1.MapPost("/down", (bool? stop, IHostApplicationLifetime lifetime) =>
        {
            var removed = daemon.ClusterNetworks is { } c ? [.. daemon.Down(), .. c.Leave()] : daemon.Down();
            if (stop == true)
            {
                _ = Task.Delay(100).ContinueWith(_ => lifetime.StopApplication(), TaskScheduler.Default);
            }
            return new DownResponse(removed, stop == true);
        });

        v1.MapGet("/events", async (HttpContext context, bool? follow, CancellationToken ct) =>
        {
            context.Response.ContentType = "application/x-ndjson";
            if (follow != true)
            {
                foreach (var e in daemon.Events.Recent())
                {
                    await WriteLine(context, e, ct).ConfigureAwait(false);
                }
                return;
            }
            await context.Response.Body.FlushAsync(ct).ConfigureAwait(false);
            try
            {
                await foreach (var e in daemon.Events.Follow(ct).ConfigureAwait(false))
                {
                    await WriteLine(context, e, ct).ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException)
            {
                // The client went away.
            }
        });
        app.MapGet("/metrics", () => Results.Text(daemon.Metrics.Render(daemon.Networks), "text/plain; version=0.0.4"));
    }

    /// <summary>The resource routes of a single host: every call goes into a <see cref="RelayNetwork"/>.</summary>
    private static void MapLocal(RouteGroupBuilder v1, RelayDaemon daemon)
    {
        v1.MapGet("/networks", () => daemon.Networks.Select(Summary).ToArray());
        v1.MapPost("/networks", (NetworkSpec spec) =>
        {
            var errors = new ErrorCollector();
            var options = SpecMapping.ToNetworkOptions(spec, "network", errors);
            errors.ThrowIfAny();
            return Results.Created($"/v1/networks/{options.Name}", Summary(daemon.CreateNetwork(options)));
        });
        v1.MapDelete("/networks/{network}", (string network) =>
        {
            daemon.RemoveNetwork(network);
            return Results.NoContent();
        });
        v1.MapGet("/networks/{network}/table", (string network) => Results.Text(daemon.Network(network).ListTable()));

        v1.MapGet("/networks/{network}/services", (string network) => daemon.Network(network).Services);
        v1.MapPost("/networks/{network}/services", (string network, ServiceSpec spec) =>
        {
            var errors = new ErrorCollector();
            var options = SpecMapping.ToServiceOptions(spec, "service", errors);
            errors.ThrowIfAny();
            var created = daemon.NetworkForNewService(network).AddService(options);
            return Results.Created($"/v1/networks/{network}/services/{created.Name}", created);
        });
        v1.MapGet("/networks/{network}/services/{service}", (string network, string service) => daemon.Network(network).GetService(service));
        v1.MapDelete("/networks/{network}/services/{service}", async (string network, string service, bool? force) =>
        {
            var net = daemon.Network(network);
            if (force == true)
            {
                // Its instances are cut at once, then it goes.
                await Task.WhenAll(net.GetService(service).Instances.Select(i => net.RemoveInstanceAsync(i, TimeSpan.Zero))).ConfigureAwait(false);
            }
            net.RemoveService(service);
            return Results.NoContent();
        });
        v1.MapPost("/networks/{network}/services/{service}/migrate", async (string network, string service, MigrateRequest request) =>
            await Migrate(daemon.Network(network), service, request).ConfigureAwait(false));

        v1.MapGet("/networks/{network}/instances", (string network) => daemon.Network(network).Instances);
        v1.MapPost("/networks/{network}/instances", (string network, InstanceSpec spec) =>
        {
            var errors = new ErrorCollector();
            var options = SpecMapping.ToInstanceOptions(spec, "instance", errors);
            if (spec.Service is null)
            {
                errors.Add(ErrorCode.Invalid, "instance.service", "the service is required");
            }
            if (spec.Node is { } node && node != (daemon.Options.Node ?? Environment.MachineName))
            {
                errors.Add(ErrorCode.Invalid, "instance.node", $"no node '{node}': this daemon is a single host; --node needs a cluster (relay daemon --etcd ...)");
            }
            errors.ThrowIfAny();
            var created = daemon.Network(network).AddInstance(spec.Service!, options);
            return Results.Created($"/v1/networks/{network}/instances/{created.Name}", created);
        });
        v1.MapGet("/networks/{network}/instances/{instance}", (string network, string instance) => daemon.Network(network).GetInstance(instance));
        v1.MapGet("/networks/{network}/instances/{instance}/logs", (string network, string instance, int? lines) =>
            new LogsResponse(instance, daemon.Network(network).Logs(instance, Math.Clamp(lines ?? 100, 1, 10_000))));
        v1.MapDelete("/networks/{network}/instances/{instance}", async (string network, string instance, string? drain, bool? wait) =>
        {
            var task = daemon.Network(network).RemoveInstanceAsync(instance, ParseDrain(drain));
            if (wait == true)
            {
                return Results.Ok(await task.ConfigureAwait(false));
            }
            return Results.Accepted();
        });

        v1.MapGet("/networks/{network}/flows", (string network, string? service) => daemon.Network(network).Flows(service));
        v1.MapPost("/networks/{network}/flows/repoint", (string network, RepointRequest request)
            => daemon.Network(network).RepointFlow(request.Client, request.Service, request.Instance));
        v1.MapGet("/resolve", (string name, string? network) => Resolve(daemon, name, network));

        v1.MapPost("/apply", async (DesiredState state, bool? dryRun) =>
            await new Applier(daemon).ApplyAsync(state, dryRun == true).ConfigureAwait(false));
    }

    private static async Task WriteLine(HttpContext context, RelayEvent e, CancellationToken ct)
    {
        await context.Response.WriteAsync(JsonSerializer.Serialize(e, ApiJson.Options) + "\n", ct).ConfigureAwait(false);
        await context.Response.Body.FlushAsync(ct).ConfigureAwait(false);
    }

    private static StatusResponse Status(RelayDaemon daemon, ClusterStatus? cluster)
        => daemon.ClusterNetworks is { } networks
            ? new(Version, daemon.StartedAt, daemon.Options.Socket, networks.Networks(), networks.Failed, cluster)
            : new(Version, daemon.StartedAt, daemon.Options.Socket, daemon.Networks.Select(Summary).ToArray(), daemon.Failed, cluster);

    private static NetworkSummary Summary(RelayNetwork n)
    {
        var instances = n.Instances;
        return new NetworkSummary(n.Name, n.OrchestratorNamespace, n.Gateways.V4.ToString(), n.Gateways.V6.ToString(),
            n.Services.Count, instances.Count, instances.Count(i => i.Health is HealthStates.Healthy or HealthStates.None), n.ServiceTraffic().Values.Sum(t => t.Flows));
    }

    internal static TimeSpan? ParseDrain(string? drain)
    {
        if (drain is null)
        {
            return null;
        }
        return Duration.TryParse(drain, out var value, out var why) ? value : throw new RelayException(ErrorCode.Invalid, "drain", why);
    }

    /// <summary>
    /// Migrate as <c>relay migrate</c> means it: without <c>to</c>, a fresh instance with the same
    /// command is started in standby and, once healthy (if it has a check), takes over.
    /// </summary>
    private static async Task<MigrateResponse> Migrate(RelayNetwork net, string service, MigrateRequest request)
    {
        var drain = ParseDrain(request.Drain);
        var svc = net.GetService(service);
        var from = request.From ?? (svc.Backends.Count == 1 ? svc.Backends[0]
            : throw new RelayException(ErrorCode.Invalid, "from", $"service '{svc.Name}' has {svc.Backends.Count} instances in the balancer ({string.Join(", ", svc.Backends)}); say which one moves with --from"));
        var to = request.To;
        var started = Stopwatch.GetTimestamp();
        if (to is null)
        {
            var old = net.GetInstance(from);
            var fresh = net.AddInstance(svc.Name, new InstanceOptions { Command = old.Command, Restart = old.Restart, Health = net.HealthSpecOf(from), Standby = true });
            to = fresh.Name;
            try
            {
                await WaitHealthy(net, to, TimeSpan.FromSeconds(30)).ConfigureAwait(false);
            }
            catch
            {
                await net.RemoveInstanceAsync(to, TimeSpan.Zero).ConfigureAwait(false);
                throw;
            }
        }
        var m = net.Migrate(svc.Name, from, to, drain);
        return new MigrateResponse(m.Service, m.From, m.To, Math.Round(m.RepointTime.TotalMicroseconds), Math.Round(m.SwitchTime.TotalMicroseconds), m.StaleFlowsDeleted);
    }

    private static async Task WaitHealthy(RelayNetwork net, string instance, TimeSpan timeout)
    {
        var until = DateTime.UtcNow + timeout;
        while (net.GetInstance(instance).Health is HealthStates.Starting or HealthStates.Unhealthy)
        {
            if (DateTime.UtcNow > until)
            {
                throw new RelayException(ErrorCode.Conflict, "to", $"the fresh instance '{instance}' did not pass its health check within {timeout.TotalSeconds:0} s; nothing was moved");
            }
            await Task.Delay(50).ConfigureAwait(false);
        }
    }

    private static ResolveResponse Resolve(RelayDaemon daemon, string name, string? network)
    {
        if (!ServiceName.TryParse(name, out var canonical, out var why))
        {
            throw new RelayException(ErrorCode.Invalid, "name", why);
        }
        foreach (var net in network is null ? daemon.Networks : [daemon.Network(network)])
        {
            var svc = net.Services.FirstOrDefault(s => s.Name == canonical.Value);
            if (svc is not null)
            {
                return new ResolveResponse(svc.Name, net.Name, svc.Vip4.ToString(), svc.Vip6.ToString(), svc.Ports.Select(p => p.ToString()).ToArray(), svc.Addressing, svc.Backends);
            }
        }
        throw new RelayException(ErrorCode.NotFound, "name", $"no service '{canonical}'" + (network is null ? " in any network" : $" in network '{network}'"));
    }
}
