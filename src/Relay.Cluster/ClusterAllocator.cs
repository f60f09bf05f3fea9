using System.Net;
using System.Net.Sockets;
using System.Numerics;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using System.Text.Json.Nodes;
using Etcdserverpb;
using Google.Protobuf;
using Relay.Cluster.Etcd;
using Relay.Core.Addressing;
using Relay.Core.Errors;
using Relay.Core.Reconcile;

namespace Relay.Cluster;

/// <summary>
/// Cluster-wide allocation by etcd transactions, never by a lock of our own.
/// <list type="bullet">
/// <item>A service's virtual addresses: one transaction creates the service and a guard key per
/// address, each required not to exist; of two CLIs on two hosts adding services at the same
/// moment, one wins and the other re-reads and takes the next free address.</item>
/// <item>Instance addresses come from blocks of the pools (64 addresses: /26 for IPv4, /122 for
/// IPv6) that a node claims by transaction, as Calico's IPAM does: a node then picks addresses
/// inside its own blocks from what it knows, and writing the instance (which has to happen anyway)
/// is the only round trip; a new block is claimed only when the node's are full.</item>
/// </list>
/// Every write carries a request id so that a write retried after a lost answer recognises its own
/// earlier success instead of reporting a duplicate.
/// </summary>
public sealed class ClusterAllocator
{
    /// <summary>Addresses per instance block (a /26 of IPv4, a /122 of IPv6).</summary>
    public const int BlockSize = 64;

    /// <summary>How often a lost race is retried before the call gives up.</summary>
    public const int MaxAttempts = 32;

    private readonly EtcdConnection _etcd;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly Dictionary<(string Network, AddressFamily Family), NodeBlocks> _blocks = [];

    /// <summary>An allocator for <paramref name="node"/> (the owner of the blocks it claims).</summary>
    public ClusterAllocator(EtcdConnection etcd, string node)
    {
        _etcd = etcd;
        Node = node;
    }

    /// <summary>The node this allocator claims blocks for.</summary>
    public string Node { get; }

    /// <summary>
    /// Creates service <paramref name="service"/> in <paramref name="network"/> with the next free
    /// virtual addresses of <paramref name="pool4"/> and <paramref name="pool6"/> (or the given ones),
    /// in one transaction. <see cref="ErrorCode.Duplicate"/> when the service, or a requested
    /// address, exists; nothing is written then.
    /// </summary>
    public async Task<(ServiceClaim Claim, long Revision)> AddServiceAsync(string network, string service, IPNetwork pool4, IPNetwork pool6,
        JsonObject? spec = null, IPAddress? virtual4 = null, IPAddress? virtual6 = null, CancellationToken ct = default)
    {
        var request = Guid.NewGuid().ToString("N");
        var serviceKey = ClusterKeys.Service(network, service);
        for (var attempt = 0; attempt < MaxAttempts; attempt++)
        {
            var (guards, _) = await _etcd.GetPrefixAsync(ClusterKeys.AddressesPrefix(network), ct).ConfigureAwait(false);
            var used = guards.Select(kv => ClusterKeys.Leaf(kv.Key.ToStringUtf8())).ToHashSet(StringComparer.Ordinal);
            // Concurrent adders start at different places of the pool so that they rarely race for
            // the same address; the order of allocation is not a promise Relay makes.
            var v4 = virtual4 ?? PickFree(pool4, used, "virtual IPv4", "services.virtual4");
            var v6 = virtual6 ?? PickFree(pool6, used, "virtual IPv6", "services.virtual6");
            var claim = new ServiceClaim(service, v4.ToString(), v6.ToString(), spec, request);
            var outcome = await CreateGuardedAsync(network, serviceKey, JsonSerializer.Serialize(claim, ClusterJson.Default.ServiceClaim), "service/" + service, v4, v6, ct).ConfigureAwait(false);
            if (outcome.Created)
            {
                return (claim, outcome.Revision);
            }
            if (outcome.Existing is not null)
            {
                var stored = ClusterJson.TryParse(outcome.Existing, ClusterJson.Default.ServiceClaim);
                return stored?.Request == request
                    ? (stored, outcome.Revision)
                    : throw new RelayException(ErrorCode.Duplicate, "services.name", $"service {service} already exists in network {network}");
            }
            if (virtual4 is not null || virtual6 is not null)
            {
                throw new RelayException(ErrorCode.Duplicate, "services.virtual", $"a requested virtual address ({virtual4}, {virtual6}) is already in use in network {network}");
            }
        }
        throw new RelayException(ErrorCode.Conflict, "services", $"could not allocate addresses for {service} after {MaxAttempts} attempts: too many concurrent changes, retry");
    }

    /// <summary>
    /// Creates network <paramref name="claim"/> unless one of that name exists; returns the stored
    /// settings (the existing ones when another node created it first) and whether this call made it.
    /// </summary>
    public async Task<(NetworkClaim Claim, bool Created, long Revision)> EnsureNetworkAsync(NetworkClaim claim, CancellationToken ct = default)
    {
        var key = ClusterKeys.NetworkSpec(claim.Name);
        var txn = new TxnRequest();
        txn.Compare.Add(Absent(key));
        txn.Success.Add(Put(key, JsonSerializer.Serialize(claim, ClusterJson.Default.NetworkClaim)));
        txn.Failure.Add(new RequestOp { RequestRange = new RangeRequest { Key = ByteString.CopyFromUtf8(key) } });
        var response = await _etcd.TxnAsync(txn, ct).ConfigureAwait(false);
        if (response.Succeeded)
        {
            return (claim, true, response.Header.Revision);
        }
        var stored = response.Responses[0].ResponseRange.Kvs;
        var existing = stored.Count > 0 ? ClusterJson.TryParse(stored[0].Value.ToStringUtf8(), ClusterJson.Default.NetworkClaim) : null;
        return existing is null
            ? throw new RelayException(ErrorCode.Conflict, "network", $"the record of network {claim.Name} is not one Relay wrote")
            : (existing, false, response.Header.Revision);
    }

    /// <summary>Removes a network's every key (its services, instances, blocks, guards) in one request; false when it had none.</summary>
    public async Task<bool> RemoveNetworkAsync(string network, CancellationToken ct = default)
    {
        var txn = new TxnRequest();
        txn.Success.Add(new RequestOp { RequestDeleteRange = new DeleteRangeRequest { Key = ByteString.CopyFromUtf8(ClusterKeys.Network(network)), RangeEnd = EtcdConnection.PrefixEnd(ClusterKeys.Network(network)) } });
        var response = await _etcd.TxnAsync(txn, ct).ConfigureAwait(false);
        return response.Responses[0].ResponseDeleteRange.Deleted > 0;
    }

    /// <summary>
    /// Replaces a service's spec (policy, ports) in one transaction guarded by the record as read,
    /// its virtual addresses and slots kept; returns the revision, or throws NotFound.
    /// </summary>
    public Task<long> UpdateServiceSpecAsync(string network, string service, JsonObject spec, CancellationToken ct = default)
        => RewriteAsync(ClusterKeys.Service(network, service), "service", service, network, ClusterJson.Default.ServiceClaim,
            claim => claim with { Spec = spec }, ct);

    /// <summary>
    /// Changes an instance in place (<c>relay apply</c>): its spec (command, restart policy, check)
    /// and whether it is a standby, in one guarded transaction; its node, addresses and name stay.
    /// A draining instance is leaving and is not changed.
    /// </summary>
    public Task<long> UpdateInstanceSpecAsync(string network, string id, JsonObject spec, bool standby, CancellationToken ct = default)
        => RewriteAsync(ClusterKeys.Instance(network, id), "instance", id, network, ClusterJson.Default.InstanceClaim,
            claim => claim.Mode == "draining"
                ? throw new RelayException(ErrorCode.Conflict, "instance", $"instance '{id}' is leaving")
                : claim with { Spec = spec, Mode = standby ? "standby" : null }, ct);

    /// <summary>
    /// Reads one record, changes it with <paramref name="change"/> and writes it back in a
    /// transaction guarded by the record's revision as read, again from a fresh read when another
    /// write came between; returns the revision, or throws NotFound.
    /// </summary>
    private async Task<long> RewriteAsync<T>(string key, string kind, string name, string network, JsonTypeInfo<T> type, Func<T, T> change, CancellationToken ct)
        where T : class
    {
        for (var attempt = 0; attempt < MaxAttempts; attempt++)
        {
            var kv = await _etcd.GetAsync(key, ct).ConfigureAwait(false)
                ?? throw new RelayException(ErrorCode.NotFound, kind, $"no {kind} {name} in network {network}");
            var claim = ClusterJson.TryParse(kv.Value.ToStringUtf8(), type)
                ?? throw new RelayException(ErrorCode.Invalid, kind, $"the record of {kind} {name} is not one Relay wrote");
            var txn = new TxnRequest();
            txn.Compare.Add(ModIs(kv));
            txn.Success.Add(Put(key, JsonSerializer.Serialize(change(claim), type)));
            var response = await _etcd.TxnAsync(txn, ct).ConfigureAwait(false);
            if (response.Succeeded)
            {
                return response.Header.Revision;
            }
        }
        throw new RelayException(ErrorCode.Conflict, kind, $"{kind} {name} kept changing while it was updated; retry");
    }

    /// <summary>Removes a service and its address guards in one transaction; returns the revision, 0 when it did not exist.</summary>
    public async Task<long> RemoveServiceAsync(string network, string service, CancellationToken ct = default)
    {
        var serviceKey = ClusterKeys.Service(network, service);
        var kv = await _etcd.GetAsync(serviceKey, ct).ConfigureAwait(false);
        if (kv is null)
        {
            return 0;
        }
        var claim = ClusterJson.TryParse(kv.Value.ToStringUtf8(), ClusterJson.Default.ServiceClaim);
        var txn = new TxnRequest();
        txn.Compare.Add(ModIs(kv));
        txn.Success.Add(Delete(serviceKey));
        if (claim is not null)
        {
            txn.Success.Add(Delete(ClusterKeys.AddressesPrefix(network) + claim.Virtual4));
            txn.Success.Add(Delete(ClusterKeys.AddressesPrefix(network) + claim.Virtual6));
        }
        var response = await _etcd.TxnAsync(txn, ct).ConfigureAwait(false);
        if (!response.Succeeded)
        {
            throw new RelayException(ErrorCode.Conflict, "services.name", $"service {service} changed while it was being removed; retry");
        }
        return response.Header.Revision;
    }

    /// <summary>
    /// Re-points <paramref name="service"/> to <paramref name="target"/>, make before break, in ONE
    /// transaction that holds only if none of the records it read changed since: the target becomes
    /// active and takes the slot of the instance it replaces (<c>from</c> when named, else the first
    /// active one; a new slot when none), and the instances it replaces (<c>from</c>, else every
    /// other active instance of the service) start draining. Every node applies the result
    /// from its watch; the revision returned is the one to wait for.
    /// </summary>
    public async Task<long> RepointAsync(string network, string service, string target, CancellationToken ct = default)
        => (await RepointAsync(network, service, target, null, ct).ConfigureAwait(false)).Revision;

    /// <summary>
    /// As <see cref="RepointAsync(string, string, string, CancellationToken)"/>; the instances that
    /// leave get <paramref name="drainUntil"/> (their node removes them then at the latest) and are
    /// returned.
    /// </summary>
    public async Task<(long Revision, IReadOnlyList<string> Draining)> RepointAsync(string network, string service, string target, DateTimeOffset? drainUntil, CancellationToken ct = default, string? from = null)
    {
        var serviceKv = await _etcd.GetAsync(ClusterKeys.Service(network, service), ct).ConfigureAwait(false)
            ?? throw new RelayException(ErrorCode.NotFound, "service", $"no service {service} in network {network}");
        var (kvs, _) = await _etcd.GetPrefixAsync(ClusterKeys.InstancesPrefix(network), ct).ConfigureAwait(false);
        var txn = Repoint(network, service, target, from, drainUntil, (serviceKv.Value.ToStringUtf8(), ModIs(serviceKv)),
            kvs.Select(kv => (kv.Key.ToStringUtf8(), kv.Value.ToStringUtf8(), ModIs(kv))), out var draining);
        var response = await _etcd.TxnAsync(txn, ct).ConfigureAwait(false);
        return response.Succeeded
            ? (response.Header.Revision, draining)
            : throw new RelayException(ErrorCode.Conflict, "service", $"service {service} or one of its instances changed during the migration; retry");
    }

    /// <summary>
    /// As <see cref="RepointAsync(string, string, string, DateTimeOffset?, CancellationToken, string)"/>, from
    /// records the caller already holds (its watch's view: the service's value and its instances'
    /// keys and values), guarded by those values: one round trip instead of three. When a record
    /// changed meanwhile (the view was behind) it reads them from the store and tries once more.
    /// </summary>
    public async Task<(long Revision, IReadOnlyList<string> Draining)> RepointAsync(string network, string service, string target, DateTimeOffset? drainUntil,
        string serviceValue, IEnumerable<(string Key, string Value)> instances, CancellationToken ct = default, string? from = null)
    {
        var txn = Repoint(network, service, target, from, drainUntil, (serviceValue, ValueIs(ClusterKeys.Service(network, service), serviceValue)),
            instances.Select(i => (i.Key, i.Value, ValueIs(i.Key, i.Value))), out var draining);
        var response = await _etcd.TxnAsync(txn, ct).ConfigureAwait(false);
        return response.Succeeded
            ? (response.Header.Revision, draining)
            : await RepointAsync(network, service, target, drainUntil, ct, from).ConfigureAwait(false);
    }

    private static TxnRequest Repoint(string network, string service, string target, string? from, DateTimeOffset? drainUntil,
        (string Value, Compare Guard) serviceRecord, IEnumerable<(string Key, string Value, Compare Guard)> instanceRecords, out IReadOnlyList<string> draining)
    {
        var claim = ClusterJson.TryParse(serviceRecord.Value, ClusterJson.Default.ServiceClaim)
            ?? throw new RelayException(ErrorCode.Invalid, "service", $"the record of service {service} is not one Relay wrote");
        var instances = instanceRecords.Select(x => (x.Guard, Claim: ClusterJson.TryParse(x.Value, ClusterJson.Default.InstanceClaim)))
            .Where(x => x.Claim?.Service == service).ToArray();
        var to = instances.FirstOrDefault(x => x.Claim!.Id == target);
        if (to.Claim is null)
        {
            throw new RelayException(ErrorCode.NotFound, "to", $"no instance {target} of service {service} in network {network}");
        }
        // The instance that leaves (every other active one when none is named) drains; the target
        // takes its slot by the single host's rule (BalancerSlots), the others' slots go.
        var active = instances.Where(x => x.Claim!.Id != target && x.Claim.Mode is null or "active" && (from is null || x.Claim.Id == from)).ToArray();
        if (from is not null && active.Length == 0)
        {
            throw new RelayException(ErrorCode.Conflict, "from", $"instance {from} of service {service} is not in the balancer");
        }
        var slots = (claim.Slots?.AsEnumerable() ?? instances.Where(x => x.Claim!.Mode is null or "active").Select(x => x.Claim!.Id).Order(StringComparer.Ordinal)).ToList();
        var leaving = active.Select(a => a.Claim!.Id).OrderBy(id => slots.IndexOf(id) is var i && i >= 0 ? i : int.MaxValue).ToArray();
        if (leaving.Length > 0)
        {
            slots = [.. BalancerSlots.Repoint(slots, leaving[0], target)];
        }
        else if (!slots.Contains(target, StringComparer.Ordinal))
        {
            slots.Add(target);
        }
        slots.RemoveAll(s => s != target && leaving.Contains(s, StringComparer.Ordinal));

        var txn = new TxnRequest();
        txn.Compare.Add(serviceRecord.Guard);
        txn.Success.Add(Put(ClusterKeys.Service(network, service), JsonSerializer.Serialize(claim with { Slots = slots }, ClusterJson.Default.ServiceClaim)));
        txn.Compare.Add(to.Guard);
        txn.Success.Add(Put(ClusterKeys.Instance(network, target), JsonSerializer.Serialize(to.Claim with { Mode = null }, ClusterJson.Default.InstanceClaim)));
        foreach (var (guard, old) in active)
        {
            txn.Compare.Add(guard);
            txn.Success.Add(Put(ClusterKeys.Instance(network, old!.Id), JsonSerializer.Serialize(old with { Mode = "draining", DrainUntil = drainUntil }, ClusterJson.Default.InstanceClaim)));
        }
        draining = active.Select(a => a.Claim!.Id).ToArray();
        return txn;
    }

    /// <summary>
    /// Takes an instance out of every balancer to drain until <paramref name="until"/> (its node removes
    /// it when its TCP flows are done, or then); false when it did not exist.
    /// </summary>
    public async Task<(bool Found, long Revision)> DrainInstanceAsync(string network, string id, DateTimeOffset until, CancellationToken ct = default)
    {
        var kv = await _etcd.GetAsync(ClusterKeys.Instance(network, id), ct).ConfigureAwait(false);
        if (kv is null || ClusterJson.TryParse(kv.Value.ToStringUtf8(), ClusterJson.Default.InstanceClaim) is not { } claim)
        {
            return (false, 0);
        }
        var txn = new TxnRequest();
        txn.Compare.Add(ModIs(kv));
        txn.Success.Add(Put(ClusterKeys.Instance(network, id), JsonSerializer.Serialize(claim with { Mode = "draining", DrainUntil = until }, ClusterJson.Default.InstanceClaim)));
        var response = await _etcd.TxnAsync(txn, ct).ConfigureAwait(false);
        return response.Succeeded
            ? (true, response.Header.Revision)
            : throw new RelayException(ErrorCode.Conflict, "instance", $"instance {id} changed while it was being drained; retry");
    }

    /// <summary>
    /// Writes instance <paramref name="id"/>'s health verdict on <paramref name="lease"/> (its node's):
    /// <c>healthy</c> or <c>unhealthy</c>; null removes it (not passed yet, or the check stopped).
    /// </summary>
    public async Task<long> SetHealthAsync(string network, string id, bool? healthy, long lease, CancellationToken ct = default)
    {
        var txn = new TxnRequest();
        txn.Success.Add(healthy is { } h ? Put(ClusterKeys.Health(network, id), h ? "healthy" : "unhealthy", lease) : Delete(ClusterKeys.Health(network, id)));
        return (await _etcd.TxnAsync(txn, ct).ConfigureAwait(false)).Header.Revision;
    }

    /// <summary>Removes an instance, its address guards and its health verdict in one transaction; returns the revision, 0 when it did not exist.</summary>
    public async Task<long> RemoveInstanceAsync(string network, string id, CancellationToken ct = default)
    {
        var kv = await _etcd.GetAsync(ClusterKeys.Instance(network, id), ct).ConfigureAwait(false);
        if (kv is null)
        {
            return 0;
        }
        var claim = ClusterJson.TryParse(kv.Value.ToStringUtf8(), ClusterJson.Default.InstanceClaim);
        var txn = new TxnRequest();
        txn.Compare.Add(ModIs(kv));
        txn.Success.Add(Delete(ClusterKeys.Instance(network, id)));
        txn.Success.Add(Delete(ClusterKeys.Health(network, id)));
        if (claim is not null)
        {
            txn.Success.Add(Delete(ClusterKeys.AddressesPrefix(network) + claim.Address4));
            txn.Success.Add(Delete(ClusterKeys.AddressesPrefix(network) + claim.Address6));
        }
        var response = await _etcd.TxnAsync(txn, ct).ConfigureAwait(false);
        return response.Succeeded
            ? response.Header.Revision
            : throw new RelayException(ErrorCode.Conflict, "instance", $"instance {id} changed while it was being removed; retry");
    }

    /// <summary>
    /// Starts instance <paramref name="id"/> of lost node <paramref name="lostNode"/> again on this
    /// node: new addresses from this node's blocks, and the record, its guards and the old guards'
    /// removal in one transaction that holds only while the record is as read and the lost node
    /// holds no lease. Not moved (false) when either changed: another node moved it first, the user
    /// changed it, or the node came back.
    /// </summary>
    public async Task<(bool Moved, long Revision)> RescheduleAsync(string network, string id, string lostNode, IPNetwork pool4, IPNetwork pool6,
        IReadOnlyCollection<IPAddress> reserved, CancellationToken ct = default)
    {
        var instanceKey = ClusterKeys.Instance(network, id);
        var kv = await _etcd.GetAsync(instanceKey, ct).ConfigureAwait(false);
        if (kv is null || ClusterJson.TryParse(kv.Value.ToStringUtf8(), ClusterJson.Default.InstanceClaim) is not { } claim || claim.Node != lostNode)
        {
            return (false, 0);
        }
        return await WithAddressesAsync<(bool, long)>(network, pool4, pool6, reserved, async (a4, a6) =>
        {
            var moved = claim with { Node = Node, Address4 = a4.ToString(), Address6 = a6.ToString(), Request = Guid.NewGuid().ToString("N") };
            var txn = new TxnRequest();
            txn.Compare.Add(ModIs(kv));
            txn.Compare.Add(Absent(ClusterKeys.Node(lostNode)));
            txn.Compare.Add(Absent(ClusterKeys.Address(network, a4)));
            txn.Compare.Add(Absent(ClusterKeys.Address(network, a6)));
            txn.Success.Add(Put(instanceKey, JsonSerializer.Serialize(moved, ClusterJson.Default.InstanceClaim)));
            txn.Success.Add(Put(ClusterKeys.Address(network, a4), "instance/" + id));
            txn.Success.Add(Put(ClusterKeys.Address(network, a6), "instance/" + id));
            txn.Success.Add(Delete(ClusterKeys.AddressesPrefix(network) + claim.Address4));
            txn.Success.Add(Delete(ClusterKeys.AddressesPrefix(network) + claim.Address6));
            txn.Failure.Add(new RequestOp { RequestRange = new RangeRequest { Key = ByteString.CopyFromUtf8(instanceKey) } });
            txn.Failure.Add(new RequestOp { RequestRange = new RangeRequest { Key = ByteString.CopyFromUtf8(ClusterKeys.Node(lostNode)) } });
            var response = await _etcd.TxnAsync(txn, ct).ConfigureAwait(false);
            if (response.Succeeded)
            {
                return (Value: (true, response.Header.Revision), Used: true);
            }
            var now = response.Responses[0].ResponseRange.Kvs;
            return now.Count == 0 || now[0].ModRevision != kv.ModRevision || response.Responses[1].ResponseRange.Kvs.Count > 0
                ? (Value: (false, response.Header.Revision), Used: false)
                : null; // an address was taken
        }, $"could not allocate addresses to start instance {id} again after {MaxAttempts} attempts", ct).ConfigureAwait(false);
    }

    /// <summary>
    /// Tries <paramref name="attempt"/> with an IPv4 and an IPv6 address from this node's blocks
    /// (claiming a block only when they are full), under the allocator's gate. The attempt returns
    /// its result, and whether the addresses are now in use; or null when an address was taken, which
    /// means what this node knew of its blocks was stale (another daemon of the same node name, or a
    /// record written by hand): they are read again and the next pair is tried.
    /// </summary>
    private async Task<T> WithAddressesAsync<T>(string network, IPNetwork pool4, IPNetwork pool6, IReadOnlyCollection<IPAddress> reserved,
        Func<IPAddress, IPAddress, Task<(T Value, bool Used)?>> attempt, string exhausted, CancellationToken ct)
    {
        await _gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            for (var i = 0; i < MaxAttempts; i++)
            {
                var blocks4 = await BlocksAsync(network, pool4, reserved, ct).ConfigureAwait(false);
                var blocks6 = await BlocksAsync(network, pool6, reserved, ct).ConfigureAwait(false);
                var a4 = await blocks4.NextAsync(this, ct).ConfigureAwait(false);
                var a6 = await blocks6.NextAsync(this, ct).ConfigureAwait(false);
                if (await attempt(a4, a6).ConfigureAwait(false) is { } done)
                {
                    if (done.Used)
                    {
                        blocks4.MarkUsed(a4);
                        blocks6.MarkUsed(a6);
                    }
                    return done.Value;
                }
                _blocks.Remove((network, AddressFamily.InterNetwork));
                _blocks.Remove((network, AddressFamily.InterNetworkV6));
            }
            throw new RelayException(ErrorCode.Conflict, "instances", exhausted);
        }
        finally
        {
            _gate.Release();
        }
    }

    private static Compare ValueIs(string key, string value)
        => new() { Key = ByteString.CopyFromUtf8(key), Target = Compare.Types.CompareTarget.Value, Result = Compare.Types.CompareResult.Equal, Value = ByteString.CopyFromUtf8(value) };

    private static Compare ModIs(Mvccpb.KeyValue kv)
        => new() { Key = kv.Key, Target = Compare.Types.CompareTarget.Mod, Result = Compare.Types.CompareResult.Equal, ModRevision = kv.ModRevision };

    /// <summary>
    /// Creates instance <paramref name="id"/> of <paramref name="service"/> on this node with an IPv4
    /// and an IPv6 address from this node's blocks (claiming a new block by transaction only when its
    /// blocks are full), in one transaction with the instance's record.
    /// </summary>
    public async Task<(InstanceClaim Claim, long Revision)> AddInstanceAsync(string network, string id, string service, IPNetwork pool4, IPNetwork pool6,
        IReadOnlyCollection<IPAddress> reserved, JsonObject? spec = null, string? mode = null, CancellationToken ct = default, bool pinned = false)
    {
        var request = Guid.NewGuid().ToString("N");
        var instanceKey = ClusterKeys.Instance(network, id);
        return await WithAddressesAsync<(InstanceClaim, long)>(network, pool4, pool6, reserved, async (a4, a6) =>
        {
            var claim = new InstanceClaim(id, service, Node, a4.ToString(), a6.ToString(), spec, request) { Mode = mode, Pinned = pinned ? true : null };
            var outcome = await CreateGuardedAsync(network, instanceKey, JsonSerializer.Serialize(claim, ClusterJson.Default.InstanceClaim), "instance/" + id, a4, a6, ct).ConfigureAwait(false);
            if (outcome.Created)
            {
                return (Value: (claim, outcome.Revision), Used: true);
            }
            if (outcome.Existing is null)
            {
                return null; // an address was taken
            }
            var stored = ClusterJson.TryParse(outcome.Existing, ClusterJson.Default.InstanceClaim);
            return stored?.Request == request
                ? (Value: (stored, outcome.Revision), Used: false)
                : throw new RelayException(ErrorCode.Duplicate, "instances.id", $"instance {id} already exists in network {network}");
        }, $"could not allocate addresses for instance {id} after {MaxAttempts} attempts; retry", ct).ConfigureAwait(false);
    }

    /// <summary>The blocks of <paramref name="network"/>'s <paramref name="pool"/> this node holds (read once, then kept).</summary>
    private async Task<NodeBlocks> BlocksAsync(string network, IPNetwork pool, IReadOnlyCollection<IPAddress> reserved, CancellationToken ct)
    {
        var family = pool.BaseAddress.AddressFamily;
        if (_blocks.TryGetValue((network, family), out var known))
        {
            return known;
        }
        var blocks = new NodeBlocks(network, pool, reserved);
        await blocks.LoadAsync(this, ct).ConfigureAwait(false);
        _blocks[(network, family)] = blocks;
        return blocks;
    }

    /// <summary>What <see cref="CreateGuardedAsync"/> found: created (at Revision), or the key's stored value (at Revision), or neither (an address was taken).</summary>
    private readonly record struct Outcome(bool Created, long Revision, string? Existing);

    /// <summary>
    /// One transaction: <paramref name="key"/> with <paramref name="json"/>, and the guards of
    /// <paramref name="a4"/> and <paramref name="a6"/> owned by <paramref name="owner"/>, each required
    /// not to exist. When it fails, the key's stored value comes back in the same round trip.
    /// </summary>
    private async Task<Outcome> CreateGuardedAsync(string network, string key, string json, string owner, IPAddress a4, IPAddress a6, CancellationToken ct)
    {
        var txn = new TxnRequest();
        txn.Compare.Add(Absent(key));
        txn.Compare.Add(Absent(ClusterKeys.Address(network, a4)));
        txn.Compare.Add(Absent(ClusterKeys.Address(network, a6)));
        txn.Success.Add(Put(key, json));
        txn.Success.Add(Put(ClusterKeys.Address(network, a4), owner));
        txn.Success.Add(Put(ClusterKeys.Address(network, a6), owner));
        txn.Failure.Add(new RequestOp { RequestRange = new RangeRequest { Key = ByteString.CopyFromUtf8(key) } });
        var response = await _etcd.TxnAsync(txn, ct).ConfigureAwait(false);
        if (response.Succeeded)
        {
            return new Outcome(true, response.Header.Revision, null);
        }
        var existing = response.Responses[0].ResponseRange.Kvs;
        return existing.Count > 0 ? new Outcome(false, existing[0].ModRevision, existing[0].Value.ToStringUtf8()) : new Outcome(false, 0, null);
    }

    private static IPAddress PickFree(IPNetwork prefix, IReadOnlySet<string> used, string name, string field)
    {
        var size = IpMath.Size(prefix);
        var start = (UInt128)Random.Shared.NextInt64() % size;
        var baseValue = IpMath.ToInteger(prefix.BaseAddress);
        var family = prefix.BaseAddress.AddressFamily;
        var limit = UInt128.Min(size, (UInt128)used.Count + 3);
        // At most used + 2 (network, broadcast) candidates are taken, so that many + 1 steps find one.
        for (UInt128 step = 0; step < size && step <= limit; step++)
        {
            var offset = (start + step) % size;
            if (size > 2 && (offset == 0 || (family == AddressFamily.InterNetwork && offset == size - 1)))
            {
                continue;
            }
            var address = IpMath.FromInteger(baseValue + offset, family);
            if (!used.Contains(address.ToString()))
            {
                return address;
            }
        }
        throw new RelayException(ErrorCode.PoolExhausted, field, $"the {name} pool {prefix} has no free address left ({used.Count} in use)");
    }

    internal static Compare Absent(string key) => new()
    {
        Key = ByteString.CopyFromUtf8(key),
        Target = Compare.Types.CompareTarget.Create,
        Result = Compare.Types.CompareResult.Equal,
        CreateRevision = 0,
    };

    internal static RequestOp Put(string key, string value, long lease = 0)
        => new() { RequestPut = new PutRequest { Key = ByteString.CopyFromUtf8(key), Value = ByteString.CopyFromUtf8(value), Lease = lease } };

    internal static RequestOp Delete(string key)
        => new() { RequestDeleteRange = new DeleteRangeRequest { Key = ByteString.CopyFromUtf8(key) } };

    /// <summary>Block <paramref name="index"/> of <paramref name="pool"/>: <see cref="BlockSize"/> addresses from the pool's start.</summary>
    public static IPNetwork BlockPrefix(IPNetwork pool, int index)
    {
        var family = pool.BaseAddress.AddressFamily;
        var baseValue = IpMath.ToInteger(pool.BaseAddress) + (UInt128)index * BlockSize;
        var bits = family == AddressFamily.InterNetwork ? 32 : 128;
        return new IPNetwork(IpMath.FromInteger(baseValue, family), bits - BitOperations.Log2(BlockSize));
    }

    /// <summary>The blocks of one pool held by this node, and which of their addresses are in use.</summary>
    private sealed class NodeBlocks(string network, IPNetwork pool, IReadOnlyCollection<IPAddress> reserved)
    {
        private readonly List<int> _owned = [];
        private readonly HashSet<IPAddress> _used = [];
        private readonly AddressFamily _family = pool.BaseAddress.AddressFamily;

        public int BlockCount => (int)UInt128.Min(IpMath.Size(pool) / BlockSize, int.MaxValue);

        public async Task LoadAsync(ClusterAllocator owner, CancellationToken ct)
        {
            var (claims, _) = await owner._etcd.GetPrefixAsync(ClusterKeys.BlocksPrefix(network, _family), ct).ConfigureAwait(false);
            foreach (var kv in claims)
            {
                if (kv.Value.ToStringUtf8() == owner.Node && int.TryParse(ClusterKeys.Leaf(kv.Key.ToStringUtf8()), out var index))
                {
                    _owned.Add(index);
                }
            }
            _owned.Sort();
            var (guards, _) = await owner._etcd.GetPrefixAsync(ClusterKeys.AddressesPrefix(network), ct).ConfigureAwait(false);
            foreach (var kv in guards)
            {
                if (IPAddress.TryParse(ClusterKeys.Leaf(kv.Key.ToStringUtf8()), out var a) && a.AddressFamily == _family && _owned.Any(b => Block(b).Contains(a)))
                {
                    _used.Add(a);
                }
            }
        }

        public IPNetwork Block(int index) => BlockPrefix(pool, index);

        public void MarkUsed(IPAddress a) => _used.Add(a);

        public async Task<IPAddress> NextAsync(ClusterAllocator owner, CancellationToken ct)
        {
            foreach (var index in _owned)
            {
                var free = FirstFree(index);
                if (free is not null)
                {
                    return free;
                }
            }
            var claimed = await ClaimAsync(owner, ct).ConfigureAwait(false);
            return FirstFree(claimed) ?? throw new RelayException(ErrorCode.PoolExhausted, "instances", $"block {Block(claimed)} has no usable address");
        }

        private IPAddress? FirstFree(int index)
        {
            var block = Block(index);
            var poolSize = IpMath.Size(pool);
            var poolBase = IpMath.ToInteger(pool.BaseAddress);
            var blockBase = IpMath.ToInteger(block.BaseAddress);
            for (var i = 0; i < BlockSize; i++)
            {
                var value = blockBase + (UInt128)i;
                var offset = value - poolBase;
                // The pool's network and broadcast addresses are never hosts (see AddressPool).
                if (poolSize > 2 && (offset == 0 || (_family == AddressFamily.InterNetwork && offset == poolSize - 1)))
                {
                    continue;
                }
                var a = IpMath.FromInteger(value, _family);
                if (!_used.Contains(a) && !reserved.Contains(a))
                {
                    return a;
                }
            }
            return null;
        }

        private async Task<int> ClaimAsync(ClusterAllocator owner, CancellationToken ct)
        {
            for (var attempt = 0; attempt < MaxAttempts; attempt++)
            {
                var (claims, _) = await owner._etcd.GetPrefixAsync(ClusterKeys.BlocksPrefix(network, _family), ct).ConfigureAwait(false);
                var taken = claims.Select(kv => int.TryParse(ClusterKeys.Leaf(kv.Key.ToStringUtf8()), out var i) ? i : -1).ToHashSet();
                // A claim of ours this node did not know of: an earlier claim whose answer was lost.
                var mine = claims.Where(kv => kv.Value.ToStringUtf8() == owner.Node)
                    .Select(kv => int.TryParse(ClusterKeys.Leaf(kv.Key.ToStringUtf8()), out var i) ? i : -1)
                    .FirstOrDefault(i => i >= 0 && !_owned.Contains(i), -1);
                if (mine >= 0)
                {
                    _owned.Add(mine);
                    _owned.Sort();
                    return mine;
                }
                var index = Enumerable.Range(0, BlockCount).FirstOrDefault(i => !taken.Contains(i), -1);
                if (index < 0)
                {
                    throw new RelayException(ErrorCode.PoolExhausted, "instances", $"every block of the instance pool {pool} is claimed by a node ({taken.Count} blocks of {BlockSize})");
                }
                var txn = new TxnRequest();
                txn.Compare.Add(Absent(ClusterKeys.Block(network, _family, index)));
                txn.Success.Add(Put(ClusterKeys.Block(network, _family, index), owner.Node));
                var response = await owner._etcd.TxnAsync(txn, ct).ConfigureAwait(false);
                if (response.Succeeded)
                {
                    _owned.Add(index);
                    _owned.Sort();
                    return index;
                }
            }
            throw new RelayException(ErrorCode.Conflict, "instances", $"could not claim an address block of {pool} after {MaxAttempts} attempts; retry");
        }
    }
}
