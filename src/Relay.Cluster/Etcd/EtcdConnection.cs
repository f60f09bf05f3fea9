using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using System.Net;
using System.Net.Sockets;
using Grpc.Net.Client;
using Mvccpb;
using Relay.Core.Errors;
using Relay.Linux.Namespaces;

namespace Relay.Cluster.Etcd;

/// <summary>
/// A connection to an etcd v3 cluster: one gRPC channel per member endpoint, etcd's own generated
/// stubs (from dotnet-etcd) on top. Every call has a deadline; a member that does not answer in
/// time, or answers "unavailable", is skipped for the next one in the list (the first is the
/// preferred, usually the local member). Writes and lease calls go to the raft leader first when it
/// is one of the endpoints: a follower would only forward them there, one more hop on every write
/// (the leader is learned from the members' status and learned again when a response shows a new
/// raft term or the leader stops answering). Watches and reads stay on the preferred member. When no member answers, the call fails with
/// <see cref="ErrorCode.Unavailable"/> and the message "cluster store unavailable: ...". A write whose
/// deadline passed may still have been applied, which is why every write Relay makes is a
/// transaction whose outcome can be read back (see <see cref="ClusterAllocator"/>).
/// </summary>
public sealed class EtcdConnection : IDisposable
{
    /// <summary>The metadata that makes a watch on a member without a leader fail instead of hanging.</summary>
    public static readonly Metadata RequireLeader = new() { { "hasleader", "true" } };

    private readonly Member[] _members;
    private int _preferred;
    private int _leader = -1;
    private long _term;
    private int _refreshing;
    private bool _disposed;

    private sealed record Member(string Endpoint, GrpcChannel Channel, KV.KVClient Kv, Lease.LeaseClient Lease, Watch.WatchClient Watch, Etcdserverpb.Cluster.ClusterClient Cluster, Maintenance.MaintenanceClient Maintenance);

    private readonly NetnsThread? _namespace;

    /// <summary>
    /// Connects (lazily: no call is made here) to <paramref name="endpoints"/>, e.g. <c>http://198.18.0.1:2379</c>.
    /// With <paramref name="netns"/>, the TCP connections are made from inside that network namespace
    /// (a lab host's, whose addresses exist only there), whatever thread the calls run on.
    /// </summary>
    public EtcdConnection(IReadOnlyList<string> endpoints, TimeSpan? callTimeout = null, string? netns = null)
    {
        var errors = new ErrorCollector();
        var uris = ParseEndpoints(endpoints, "etcd", errors);
        errors.ThrowIfAny();
        CallTimeout = callTimeout ?? TimeSpan.FromSeconds(2);
        _namespace = netns is null ? null : NetnsThread.Enter(netns);
        _members = uris.Select(u =>
        {
            var channel = GrpcChannel.ForAddress(u, new GrpcChannelOptions
            {
                HttpHandler = new SocketsHttpHandler
                {
                    ConnectTimeout = TimeSpan.FromSeconds(1),
                    // A member that vanished (a lost host) must be noticed on a long-lived watch too.
                    KeepAlivePingDelay = TimeSpan.FromSeconds(2),
                    KeepAlivePingTimeout = TimeSpan.FromSeconds(2),
                    KeepAlivePingPolicy = HttpKeepAlivePingPolicy.Always,
                    EnableMultipleHttp2Connections = true,
                    // etcd is reached directly, never through an HTTP proxy of the environment.
                    UseProxy = false,
                    ConnectCallback = ConnectAsync,
                },
            });
            return new Member(u.ToString().TrimEnd('/'), channel, new KV.KVClient(channel), new Lease.LeaseClient(channel),
                new Watch.WatchClient(channel), new Etcdserverpb.Cluster.ClusterClient(channel), new Maintenance.MaintenanceClient(channel));
        }).ToArray();
        Endpoints = _members.Select(m => m.Endpoint).ToArray();
    }

    private async ValueTask<Stream> ConnectAsync(SocketsHttpConnectionContext context, CancellationToken ct)
    {
        var address = IPAddress.Parse(context.DnsEndPoint.Host.Trim('[', ']'));
        Func<Socket> create = () => new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        // A socket belongs to the namespace of the thread that created it.
        var socket = _namespace is null ? create() : await _namespace.InvokeAsync(create).ConfigureAwait(false);
        try
        {
            await socket.ConnectAsync(new IPEndPoint(address, context.DnsEndPoint.Port), ct).ConfigureAwait(false);
            return new NetworkStream(socket, ownsSocket: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>The member endpoints, preferred first.</summary>
    public IReadOnlyList<string> Endpoints { get; }

    /// <summary>How long one call may take on one member before the next is tried.</summary>
    public TimeSpan CallTimeout { get; }

    /// <summary>
    /// Checks <c>--etcd</c> style endpoints: absolute http(s) URLs with a host and a port. Errors go to
    /// <paramref name="errors"/> under <paramref name="field"/>.
    /// </summary>
    public static IReadOnlyList<Uri> ParseEndpoints(IReadOnlyList<string> endpoints, string field, ErrorCollector errors)
    {
        var result = new List<Uri>();
        if (endpoints.Count == 0)
        {
            errors.Add(ErrorCode.Invalid, field, "at least one etcd endpoint is required, e.g. http://127.0.0.1:2379");
        }
        for (var i = 0; i < endpoints.Count; i++)
        {
            var text = endpoints[i].Trim();
            if (!Uri.TryCreate(text, UriKind.Absolute, out var uri) || uri.Scheme != "http" || uri.IsDefaultPort || uri.AbsolutePath != "/" || !IPAddress.TryParse(uri.Host.Trim('[', ']'), out _))
            {
                errors.Add(ErrorCode.Invalid, $"{field}[{i}]", $"'{text}' is not an etcd endpoint: expected http://ADDRESS:PORT (e.g. http://127.0.0.1:2379; TLS and host names are not supported yet)");
                continue;
            }
            result.Add(uri);
        }
        return result;
    }

    /// <summary>The key range of every key that starts with <paramref name="prefix"/> (etcd's prefix end).</summary>
    public static ByteString PrefixEnd(string prefix)
    {
        var bytes = System.Text.Encoding.UTF8.GetBytes(prefix);
        for (var i = bytes.Length - 1; i >= 0; i--)
        {
            if (bytes[i] < 0xff)
            {
                bytes[i]++;
                return ByteString.CopyFrom(bytes, 0, i + 1);
            }
        }
        return ByteString.CopyFrom(0);
    }

    /// <summary>Reads one key; null when it does not exist.</summary>
    public async Task<KeyValue?> GetAsync(string key, CancellationToken ct = default)
    {
        var response = await CallAsync((m, o) => m.Kv.RangeAsync(new RangeRequest { Key = ByteString.CopyFromUtf8(key) }, o).ResponseAsync, ct).ConfigureAwait(false);
        return response.Kvs.Count == 0 ? null : response.Kvs[0];
    }

    /// <summary>Reads every key under <paramref name="prefix"/>, at one revision (returned with them).</summary>
    public async Task<(IReadOnlyList<KeyValue> Kvs, long Revision)> GetPrefixAsync(string prefix, CancellationToken ct = default)
    {
        var request = new RangeRequest { Key = ByteString.CopyFromUtf8(prefix), RangeEnd = PrefixEnd(prefix) };
        var response = await CallAsync((m, o) => m.Kv.RangeAsync(request, o).ResponseAsync, ct).ConfigureAwait(false);
        return (response.Kvs, response.Header.Revision);
    }

    /// <summary>
    /// Writes one key (optionally attached to a lease); returns the revision of the write.
    /// <paramref name="perMember"/> bounds the wait on each member (default: the call timeout).
    /// </summary>
    public async Task<long> PutAsync(string key, string value, long lease = 0, CancellationToken ct = default, TimeSpan? perMember = null)
    {
        var request = new PutRequest { Key = ByteString.CopyFromUtf8(key), Value = ByteString.CopyFromUtf8(value), Lease = lease };
        var response = await CallAsync((m, o) => m.Kv.PutAsync(request, o).ResponseAsync, ct, perMember, toLeader: true).ConfigureAwait(false);
        Observe(response.Header);
        return response.Header.Revision;
    }

    /// <summary>Runs one transaction: all of its compares hold, and its success operations are applied, or none are.</summary>
    public async Task<TxnResponse> TxnAsync(TxnRequest request, CancellationToken ct = default)
    {
        var response = await CallAsync((m, o) => m.Kv.TxnAsync(request, o).ResponseAsync, ct, toLeader: true).ConfigureAwait(false);
        Observe(response.Header);
        return response;
    }

    /// <summary>Grants a lease of <paramref name="ttl"/> (whole seconds, at least 1).</summary>
    public async Task<long> GrantLeaseAsync(TimeSpan ttl, CancellationToken ct = default)
    {
        var seconds = Math.Max(1, (long)Math.Ceiling(ttl.TotalSeconds));
        var response = await CallAsync((m, o) => m.Lease.LeaseGrantAsync(new LeaseGrantRequest { TTL = seconds }, o).ResponseAsync, ct, toLeader: true).ConfigureAwait(false);
        if (!string.IsNullOrEmpty(response.Error))
        {
            throw Unavailable(response.Error, null);
        }
        return response.ID;
    }

    /// <summary>
    /// Renews a lease once; returns the remaining TTL in seconds (0 or less: the lease is gone).
    /// <paramref name="perMember"/> bounds the wait on each member (default: the call timeout):
    /// a renewal must not wait on a member cut off from the others for longer than its lease has.
    /// </summary>
    public async Task<long> KeepAliveOnceAsync(long lease, CancellationToken ct = default, TimeSpan? perMember = null)
    {
        return await CallAsync(async (m, o) =>
        {
            using var call = m.Lease.LeaseKeepAlive(o);
            await call.RequestStream.WriteAsync(new LeaseKeepAliveRequest { ID = lease }).ConfigureAwait(false);
            await call.RequestStream.CompleteAsync().ConfigureAwait(false);
            if (!await call.ResponseStream.MoveNext(o.CancellationToken).ConfigureAwait(false))
            {
                throw new RpcException(new Status(StatusCode.Unavailable, "keepalive stream closed"));
            }
            return call.ResponseStream.Current.TTL;
        }, ct, perMember, toLeader: true).ConfigureAwait(false);
    }

    /// <summary>Revokes a lease: its keys go at once.</summary>
    public Task<LeaseRevokeResponse> RevokeLeaseAsync(long lease, CancellationToken ct = default)
        => CallAsync((m, o) => m.Lease.LeaseRevokeAsync(new LeaseRevokeRequest { ID = lease }, o).ResponseAsync, ct, toLeader: true);

    /// <summary>A lease's granted TTL and what is left of it, in seconds (left is -1 when the lease is gone).</summary>
    public async Task<(long Granted, long Left)> LeaseTimeToLiveAsync(long lease, CancellationToken ct = default)
    {
        var response = await CallAsync((m, o) => m.Lease.LeaseTimeToLiveAsync(new LeaseTimeToLiveRequest { ID = lease }, o).ResponseAsync, ct).ConfigureAwait(false);
        return (response.GrantedTTL, response.TTL);
    }

    /// <summary>The cluster's members.</summary>
    public async Task<IReadOnlyList<Etcdserverpb.Member>> MembersAsync(CancellationToken ct = default)
        => (await CallAsync((m, o) => m.Cluster.MemberListAsync(new MemberListRequest(), o).ResponseAsync, ct).ConfigureAwait(false)).Members;

    /// <summary>The status of each member that answers (leader, revision, raft index); members that do not are absent.</summary>
    public async Task<IReadOnlyList<(string Endpoint, StatusResponse? Status, string? Error)>> MemberStatusAsync(CancellationToken ct = default)
    {
        var tasks = _members.Select(async m =>
        {
            try
            {
                var status = await m.Maintenance.StatusAsync(new StatusRequest(), Options(ct)).ResponseAsync.ConfigureAwait(false);
                return (m.Endpoint, (StatusResponse?)status, (string?)null);
            }
            catch (RpcException e)
            {
                return (m.Endpoint, null, e.Status.Detail);
            }
        });
        return await Task.WhenAll(tasks).ConfigureAwait(false);
    }

    /// <summary>
    /// Makes the member at <paramref name="endpoint"/> the raft leader (etcd's move-leader, asked of
    /// the current leader); nothing when it leads already. For the lab and tests: a node loss whose
    /// member led is the hard case of a fail-over (an election, and every lease renewed in full).
    /// </summary>
    public async Task MoveLeaderAsync(string endpoint, CancellationToken ct = default)
    {
        var statuses = await MemberStatusAsync(ct).ConfigureAwait(false);
        var target = statuses.FirstOrDefault(s => s.Endpoint == endpoint).Status
            ?? throw new RelayException(ErrorCode.Unavailable, "etcd", $"member {endpoint} does not answer");
        var leaderId = target.Leader;
        if (target.Header.MemberId == leaderId)
        {
            return;
        }
        var leader = _members.FirstOrDefault(m => statuses.Any(s => s.Endpoint == m.Endpoint && s.Status?.Header.MemberId == leaderId))
            ?? throw new RelayException(ErrorCode.Unavailable, "etcd", "the raft leader is not one of the endpoints");
        await leader.Maintenance.MoveLeaderAsync(new MoveLeaderRequest { TargetID = target.Header.MemberId }, Options(ct, TimeSpan.FromSeconds(5))).ResponseAsync.ConfigureAwait(false);
        RefreshLeader();
    }

    /// <summary>
    /// Opens a watch stream on the preferred member that answers, with <see cref="RequireLeader"/>.
    /// The caller writes the create request and reads responses; see <see cref="ClusterWatch"/>.
    /// </summary>
    internal (AsyncDuplexStreamingCall<WatchRequest, WatchResponse> Call, string Endpoint) OpenWatch(CancellationToken ct)
    {
        var m = _members[Volatile.Read(ref _preferred) % _members.Length];
        return (m.Watch.Watch(new CallOptions(RequireLeader, cancellationToken: ct)), m.Endpoint);
    }

    /// <summary>Moves the preference to the next member (after a watch on the current one failed).</summary>
    internal void SkipPreferred(string endpoint)
    {
        var index = Array.FindIndex(_members, m => m.Endpoint == endpoint);
        if (index >= 0)
        {
            Interlocked.CompareExchange(ref _preferred, (index + 1) % _members.Length, index);
        }
    }

    private CallOptions Options(CancellationToken ct, TimeSpan? timeout = null) => new(RequireLeader, DateTime.UtcNow + (timeout ?? CallTimeout), ct);

    /// <summary>The member index writes go to first (-1: not known; they go to the preferred member).</summary>
    internal int LeaderIndex => Volatile.Read(ref _leader);

    /// <summary>A write's answer: a raft term not seen before means the leader may have changed.</summary>
    private void Observe(ResponseHeader? header)
    {
        if (header is null || _members.Length < 2)
        {
            return;
        }
        var term = (long)header.RaftTerm;
        if (Interlocked.Exchange(ref _term, term) != term || Volatile.Read(ref _leader) < 0)
        {
            RefreshLeader();
        }
    }

    /// <summary>Learns, in the background, which endpoint is the raft leader (one such refresh at a time).</summary>
    private void RefreshLeader()
    {
        if (_members.Length < 2 || Interlocked.Exchange(ref _refreshing, 1) == 1)
        {
            return;
        }
        _ = Task.Run(async () =>
        {
            try
            {
                var statuses = await MemberStatusAsync().ConfigureAwait(false);
                var leaderId = statuses.Select(s => s.Status?.Leader ?? 0).FirstOrDefault(id => id != 0);
                var index = leaderId == 0 ? -1 : Array.FindIndex(_members, m => statuses.Any(s => s.Endpoint == m.Endpoint && s.Status?.Header.MemberId == leaderId));
                Volatile.Write(ref _leader, index);
            }
            catch (Exception e) when (e is RpcException or ObjectDisposedException or InvalidOperationException)
            {
                Volatile.Write(ref _leader, -1);
            }
            finally
            {
                Volatile.Write(ref _refreshing, 0);
            }
        });
    }

    private async Task<T> CallAsync<T>(Func<Member, CallOptions, Task<T>> call, CancellationToken ct, TimeSpan? timeout = null, bool toLeader = false)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        RpcException? last = null;
        var failures = new List<string>(_members.Length);
        var leader = toLeader ? Volatile.Read(ref _leader) : -1;
        var start = leader >= 0 ? leader : Volatile.Read(ref _preferred);
        for (var k = 0; k < _members.Length; k++)
        {
            var index = (start + k) % _members.Length;
            var member = _members[index];
            try
            {
                var result = await call(member, Options(ct, timeout)).ConfigureAwait(false);
                if (k > 0 && leader >= 0)
                {
                    // The leader did not answer: whoever leads now is learned again.
                    Interlocked.CompareExchange(ref _leader, -1, leader);
                    RefreshLeader();
                }
                else if (k > 0)
                {
                    Volatile.Write(ref _preferred, index);
                }
                return result;
            }
            catch (RpcException e) when (IsMemberFailure(e) && !ct.IsCancellationRequested)
            {
                last = e;
                failures.Add($"{member.Endpoint}: {Describe(e, timeout ?? CallTimeout)}");
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.Cancelled && ct.IsCancellationRequested)
            {
                throw new OperationCanceledException(ct);
            }
        }
        throw failures.Count == 0
            ? Unavailable("no member answered", last)
            : Unavailable("no member answered (" + string.Join("; ", failures) + ")", last, withEndpoints: false);
    }

    /// <summary>What a member's failure was, in words: gRPC leaves the detail empty for a deadline.</summary>
    private static string Describe(RpcException e, TimeSpan timeout) => e.StatusCode switch
    {
        _ when e.Status.Detail.Contains("no leader", StringComparison.OrdinalIgnoreCase) => "it has no leader (no quorum behind it)",
        StatusCode.DeadlineExceeded => $"no answer within {timeout.TotalSeconds:0.##} s",
        _ when !string.IsNullOrWhiteSpace(e.Status.Detail) => e.Status.Detail,
        _ => e.StatusCode.ToString(),
    };

    /// <summary>
    /// Failures of one member, or of the quorum behind it, after which another member may succeed:
    /// not a refused request (those are answers and are returned as they are). A call cancelled
    /// that the caller did not cancel is one whose connection died under it (seen when a member
    /// is killed mid-call: Grpc.Net.Client reports the reset stream as Cancelled).
    /// </summary>
    private static bool IsMemberFailure(RpcException e) => e.StatusCode is StatusCode.Unavailable or StatusCode.DeadlineExceeded or StatusCode.Internal or StatusCode.Unknown or StatusCode.Cancelled
        || e.Status.Detail.Contains("no leader", StringComparison.OrdinalIgnoreCase);

    /// <summary>The error of a store that cannot be reached; the endpoints are named unless <paramref name="detail"/> names each already.</summary>
    private RelayException Unavailable(string detail, Exception? inner, bool withEndpoints = true)
        => new(ErrorCode.Unavailable, "cluster", $"cluster store unavailable: {detail}" + (withEndpoints ? $" (etcd {string.Join(",", Endpoints)})" : ""), inner);

    /// <summary>The error a cluster operation reports when etcd does not answer (also for watches).</summary>
    internal RelayException UnavailableError(string detail, Exception? inner = null) => Unavailable(detail, inner);

    /// <inheritdoc />
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        foreach (var m in _members)
        {
            m.Channel.Dispose();
        }
        _namespace?.Dispose();
    }
}
