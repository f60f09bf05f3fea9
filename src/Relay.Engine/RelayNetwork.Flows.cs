using System.Net;
using System.Text.Json;
using Relay.Core.Dataplane;
using Relay.Core.Dns;
using Relay.Core.Errors;
using Relay.Core.LoadBalancing;
using Relay.Core.Naming;

namespace Relay.Engine;

/// <summary>
/// Per-client flow addresses (the seed's first prototype, made right): for a service with
/// <c>Addressing = flow</c>, each client instance that asks DNS for the name gets abstract
/// addresses of its own, translated to one instance chosen by the service's policy. A migration
/// re-points all of a service's flows in its one transaction; one flow can be re-pointed alone.
/// </summary>
public sealed partial class RelayNetwork
{
    private int _roundRobin;

    /// <summary>
    /// Called by the DNS server when <paramref name="client"/> asks for a flow-addressed service:
    /// the client's flow addresses, allocated and installed on first use. False (the server answers
    /// SERVFAIL) when the asker is not an instance, or the service has no instance to send it to.
    /// </summary>
    public bool TryGetFlowAddresses(IPAddress client, DnsServiceEntry service, out IPAddress? v4, out IPAddress? v6)
    {
        v4 = v6 = null;
        lock (_gate)
        {
            if (_disposed || !_instanceByAddress.TryGetValue(client, out var clientName)
                || !ServiceName.TryParse(service.Name, out var name, out _) || !_state.Services.TryGetValue(name, out var svc)
                || EffectiveBackends(svc).Count == 0)
            {
                return false;
            }
            if (!_state.Flows.TryGetValue((clientName, name), out var flow))
            {
                try
                {
                    var f4 = _flows4.PeekOne("flow4");
                    var f6 = _flows6.PeekOne("flow6");
                    flow = new FlowRecord(FlowId(clientName, name), clientName, name, f4, f6, PickBackend(_state, svc, clientName));
                    var step = Begin();
                    step.Put(flow);
                    Commit(step);
                    _flows4.Claim(f4);
                    _flows6.Claim(f6);
                    Persist();
                    LogFlowAllocated(_log, Name, clientName, name.Value, f4, f6, flow.Backend);
                }
                catch (RelayException e)
                {
                    LogFlowFailed(_log, Name, clientName, name.Value, e.Message);
                    return false;
                }
            }
            v4 = flow.Flow4;
            v6 = flow.Flow6;
            return true;
        }
    }

    /// <summary>Every flow address, with the packets and bytes its client sent through it.</summary>
    public IReadOnlyList<FlowInfo> Flows(string? service = null)
    {
        FlowRecord[] flows;
        lock (_gate)
        {
            ThrowIfDisposed();
            ServiceName? filter = service is null ? null : FindService(service, "service").Name;
            flows = _state.Flows.Values.Where(f => filter is null || f.Service == filter).OrderBy(f => f.Client, StringComparer.Ordinal).ThenBy(f => f.Service).ToArray();
        }
        var counters = FlowCounters();
        return flows.Select(f =>
        {
            var (p4, b4) = counters.GetValueOrDefault(f.Flow4);
            var (p6, b6) = counters.GetValueOrDefault(f.Flow6);
            return new FlowInfo(f.Client, f.Service.Value, f.Flow4, f.Flow6, f.Backend, p4 + p6, b4 + b6);
        }).ToArray();
    }

    /// <summary>
    /// Re-points the one flow of <paramref name="client"/> to <paramref name="service"/> at instance
    /// <paramref name="instance"/> (of that service, in the balancer): one transaction, then the
    /// flow's stale ICMP/UDP conntrack entries go; every other flow stays where it is.
    /// </summary>
    public FlowInfo RepointFlow(string client, string service, string instance)
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            var errors = new ErrorCollector();
            var svc = FindService(service, "service");
            var target = FindInstance(instance, "instance", errors);
            errors.ThrowIfAny();
            if (!_state.Flows.TryGetValue((client, svc.Name), out var flow))
            {
                throw new RelayException(ErrorCode.NotFound, "flow", $"instance '{client}' has no flow address for '{svc.Name}' (it gets one when it asks DNS for the name)");
            }
            if (target!.Service != svc.Name || target.State != InstanceState.Active)
            {
                throw new RelayException(ErrorCode.Conflict, "instance", $"instance '{target.Name}' is not an active instance of '{svc.Name}'");
            }
            if (flow.Backend == target.Name)
            {
                return FlowInfoOf(flow);
            }
            var old = _state.Instances[flow.Backend];
            var moved = flow with { Backend = target.Name };
            var step = Begin();
            step.Put(moved);
            Commit(step);
            Persist();
            LogFlowRepointed(_log, Name, client, svc.Name.Value, old.Name, target.Name);
            Emit(EventKinds.FlowRepointed, svc.Name.Value, $"flow {client} -> {svc.Name} moved {old.Name} -> {target.Name}", ("client", client), ("from", old.Name), ("to", target.Name));
            return FlowInfoOf(moved);
        }
    }

    private FlowInfo FlowInfoOf(FlowRecord f) => new(f.Client, f.Service.Value, f.Flow4, f.Flow6, f.Backend, 0, 0);

    /// <summary>The instance a new flow of <paramref name="client"/> goes to, by the service's policy.</summary>
    private string PickBackend(LocalState state, ServiceRecord svc, string client)
    {
        var backends = LocalPlan.EffectiveBackends(state, svc).Select(b => b.Name).ToArray();
        switch (svc.Policy)
        {
            case LoadBalancingPolicy.RoundRobin:
                return backends[(int)((uint)Interlocked.Increment(ref _roundRobin) % (uint)backends.Length)];
            case LoadBalancingPolicy.Maglev or LoadBalancingPolicy.Source:
                // The client's name hashed into the service's Maglev table: the same client keeps
                // its instance while instances come and go, as far as Maglev allows.
                var table = Maglev.Build(backends, svc.MaglevTableSize);
                return backends[table[(int)(StableHash(client) % (uint)table.Length)]];
            default:
                return backends[Random.Shared.Next(backends.Length)];
        }
    }

    private static uint StableHash(string s)
    {
        var h = 2166136261u;
        foreach (var c in s)
        {
            h = (h ^ c) * 16777619u;
        }
        return h;
    }

    private FlowRecord[] FlowsTo(ServiceName service, string backend)
        => _state.Flows.Values.Where(f => f.Service == service && f.Backend == backend).ToArray();

    /// <summary>Per flow address: packets and bytes, from the kernel's per-element counters.</summary>
    private Dictionary<IPAddress, (long Packets, long Bytes)> FlowCounters()
    {
        var result = new Dictionary<IPAddress, (long, long)>();
        foreach (var set in new[] { NftNames.FlowStats4, NftNames.FlowStats6 })
        {
            using var doc = JsonDocument.Parse(_dataplane.ListSetJson(set));
            foreach (var item in doc.RootElement.GetProperty("nftables").EnumerateArray())
            {
                if (!item.TryGetProperty("set", out var s) || !s.TryGetProperty("elem", out var elems))
                {
                    continue;
                }
                foreach (var e in elems.EnumerateArray())
                {
                    // {"elem": {"val": {"concat": [client, flow]}, "counter": {"packets": P, "bytes": B}}}
                    if (e.TryGetProperty("elem", out var el) && el.TryGetProperty("val", out var val)
                        && val.TryGetProperty("concat", out var concat) && concat.GetArrayLength() == 2
                        && IPAddress.TryParse(concat[1].GetString(), out var flow) && el.TryGetProperty("counter", out var counter))
                    {
                        result[flow] = (counter.GetProperty("packets").GetInt64(), counter.GetProperty("bytes").GetInt64());
                    }
                }
            }
        }
        return result;
    }
}
