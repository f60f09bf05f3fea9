using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Relay.Core.Errors;
using Relay.Core.Naming;
using Relay.Daemon.Cluster;
using Relay.Engine;
using Relay.Engine.Api;

namespace Relay.Daemon.Api;

/// <summary>
/// The resource routes of a cluster node: the same paths and bodies as on one host, so the CLI,
/// scripts and <c>--socket</c> work unchanged; each write is one etcd transaction and returns once
/// every live node applied it.
/// </summary>
public static class ClusterEndpoints
{
    /// <summary>Maps the resource routes onto <paramref name="cluster"/>.</summary>
    public static void Map(RouteGroupBuilder v1, ClusterNetworks cluster)
    {
        v1.MapGet("/networks", () => cluster.Networks());
        v1.MapPost("/networks", async (NetworkSpec spec, CancellationToken ct) =>
        {
            var errors = new ErrorCollector();
            var options = SpecMapping.ToNetworkOptions(spec, "network", errors);
            errors.ThrowIfAny();
            var created = await cluster.CreateNetworkAsync(options, ct).ConfigureAwait(false);
            return Results.Created($"/v1/networks/{created.Name}", created);
        });
        v1.MapDelete("/networks/{network}", async (string network, CancellationToken ct) =>
        {
            await cluster.RemoveNetworkAsync(network, ct).ConfigureAwait(false);
            return Results.NoContent();
        });

        v1.MapGet("/networks/{network}/services", (string network) => cluster.Services(network));
        v1.MapPost("/networks/{network}/services", async (string network, ServiceSpec spec, CancellationToken ct) =>
        {
            var created = await cluster.AddServiceAsync(network, spec, ct).ConfigureAwait(false);
            return Results.Created($"/v1/networks/{network}/services/{created.Name}", created);
        });
        v1.MapGet("/networks/{network}/services/{service}", (string network, string service) => cluster.Service(network, service));
        v1.MapDelete("/networks/{network}/services/{service}", async (string network, string service, bool? force, CancellationToken ct) =>
        {
            await cluster.RemoveServiceAsync(network, service, force == true, ct).ConfigureAwait(false);
            return Results.NoContent();
        });
        v1.MapPost("/networks/{network}/services/{service}/migrate", (string network, string service, MigrateRequest request, CancellationToken ct)
            => cluster.MigrateAsync(network, service, request, Endpoints.ParseDrain(request.Drain), ct));

        v1.MapGet("/networks/{network}/instances", (string network) => cluster.Instances(network));
        v1.MapPost("/networks/{network}/instances", async (string network, InstanceSpec spec, CancellationToken ct) =>
        {
            var created = await cluster.AddInstanceAsync(network, spec, ct).ConfigureAwait(false);
            return Results.Created($"/v1/networks/{network}/instances/{created.Name}", created);
        });
        v1.MapGet("/networks/{network}/instances/{instance}", (string network, string instance) => cluster.Instance(network, instance));
        v1.MapDelete("/networks/{network}/instances/{instance}", async (string network, string instance, string? drain, CancellationToken ct) =>
        {
            await cluster.RemoveInstanceAsync(network, instance, Endpoints.ParseDrain(drain), ct).ConfigureAwait(false);
            return Results.Accepted();
        });
        v1.MapGet("/resolve", (string name, string? network) =>
        {
            if (!ServiceName.TryParse(name, out var canonical, out var why))
            {
                throw new RelayException(ErrorCode.Invalid, "name", why);
            }
            return cluster.Resolve(canonical.Value, network)
                ?? throw new RelayException(ErrorCode.NotFound, "name", $"no service '{canonical}'" + (network is null ? " in any network" : $" in network '{network}'"));
        });

        v1.MapPost("/apply", async (DesiredState state, bool? dryRun, CancellationToken ct) =>
            await new Applier(cluster).ApplyAsync(state, dryRun == true, ct).ConfigureAwait(false));

        // What a cluster does not carry yet says so, instead of answering from an empty single-host view.
        foreach (var (method, pattern) in new[]
        {
            ("GET", "/networks/{network}/table"), ("GET", "/networks/{network}/instances/{instance}/logs"), ("GET", "/networks/{network}/flows"),
            ("POST", "/networks/{network}/flows/repoint"),
        })
        {
            v1.MapMethods(pattern, [method], () =>
            {
                throw new RelayException(ErrorCode.Invalid, "cluster", $"{method} {pattern} is not available on a cluster node yet (it works on a single host)");
            });
        }
    }
}
