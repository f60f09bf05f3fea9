using System.Collections.Immutable;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using Mvccpb;
using Relay.Cluster.Etcd;

namespace Relay.Cluster;

/// <summary>One step of the desired state as a node sees it: every key under the watched prefix at <see cref="Revision"/>.</summary>
/// <param name="Revision">The etcd revision the state is at.</param>
/// <param name="State">Every key under the prefix and its value.</param>
/// <param name="Resync">True when the state was read whole (first read, or after the watch's start revision was compacted).</param>
/// <param name="Changed">The keys this step changed (all of them after a resync).</param>
public sealed record WatchStep(long Revision, ImmutableSortedDictionary<string, string> State, bool Resync, IReadOnlyList<string> Changed);

/// <summary>
/// The desired state under a prefix, kept current from etcd: a read at one revision, then a watch
/// from the next one (with <c>hasleader</c>, so that a member cut off from the quorum ends the watch
/// instead of keeping it silently open). A broken stream resumes from the last revision seen, on
/// another member if needed; a start revision that was compacted meanwhile means the state is read
/// again whole and the watch restarts from that read. The consumer gets every step in order and
/// never two at once.
/// </summary>
public sealed class ClusterWatch
{
    private readonly EtcdConnection _etcd;
    private readonly string _prefix;
    private long _revision;

    /// <summary>A watch of every key under <paramref name="prefix"/> (by default Relay's whole root).</summary>
    public ClusterWatch(EtcdConnection etcd, string prefix = ClusterKeys.Root)
    {
        _etcd = etcd;
        _prefix = prefix;
    }

    /// <summary>The revision of the last step delivered.</summary>
    public long Revision => Interlocked.Read(ref _revision);

    /// <summary>True while a watch stream is open and has a leader behind it.</summary>
    public bool Connected { get; private set; }

    /// <summary>How many times the state was read whole (1 for the first read).</summary>
    public int Resyncs { get; private set; }

    /// <summary>The last error of the stream, null while it is healthy.</summary>
    public string? LastError { get; private set; }

    /// <summary>
    /// Delivers steps to <paramref name="apply"/> until <paramref name="ct"/> is cancelled. Errors of
    /// <paramref name="apply"/> end the watch; errors of etcd do not (the last state stays in force
    /// and the watch retries).
    /// </summary>
    public async Task RunAsync(Func<WatchStep, Task> apply, CancellationToken ct)
    {
        var state = ImmutableSortedDictionary.Create<string, string>(StringComparer.Ordinal);
        var needRead = true;
        var backoff = TimeSpan.FromMilliseconds(50);
        while (!ct.IsCancellationRequested)
        {
            string? endpoint = null;
            try
            {
                if (needRead)
                {
                    var (kvs, revision) = await _etcd.GetPrefixAsync(_prefix, ct).ConfigureAwait(false);
                    state = kvs.ToImmutableSortedDictionary(kv => kv.Key.ToStringUtf8(), kv => kv.Value.ToStringUtf8(), StringComparer.Ordinal);
                    Interlocked.Exchange(ref _revision, revision);
                    needRead = false;
                    Resyncs++;
                    await apply(new WatchStep(revision, state, true, [.. state.Keys])).ConfigureAwait(false);
                }
                var (call, opened) = _etcd.OpenWatch(ct);
                using var disposeCall = call;
                endpoint = opened;
                await call.RequestStream.WriteAsync(new WatchRequest
                {
                    CreateRequest = new WatchCreateRequest
                    {
                        Key = ByteString.CopyFromUtf8(_prefix),
                        RangeEnd = EtcdConnection.PrefixEnd(_prefix),
                        StartRevision = Revision + 1,
                        ProgressNotify = true,
                    },
                }, ct).ConfigureAwait(false);
                while (await call.ResponseStream.MoveNext(ct).ConfigureAwait(false))
                {
                    var response = call.ResponseStream.Current;
                    if (response.CompactRevision > 0)
                    {
                        // What happened between our revision and the compaction is gone: read again.
                        needRead = true;
                        LastError = $"watch start revision {Revision + 1} was compacted (at {response.CompactRevision}); state read again";
                        break;
                    }
                    if (response.Canceled)
                    {
                        throw new RpcException(new Status(StatusCode.Unavailable, string.IsNullOrEmpty(response.CancelReason) ? "watch cancelled by etcd" : response.CancelReason));
                    }
                    Connected = true;
                    LastError = null;
                    backoff = TimeSpan.FromMilliseconds(50);
                    if (response.Events.Count == 0)
                    {
                        if (!response.Created)
                        {
                            // A progress notification: everything up to its revision was delivered.
                            Interlocked.Exchange(ref _revision, Math.Max(response.Header.Revision, Revision));
                        }
                        continue;
                    }
                    var builder = state.ToBuilder();
                    var changed = new List<string>(response.Events.Count);
                    foreach (var e in response.Events)
                    {
                        var key = e.Kv.Key.ToStringUtf8();
                        changed.Add(key);
                        if (e.Type == Event.Types.EventType.Delete)
                        {
                            builder.Remove(key);
                        }
                        else
                        {
                            builder[key] = e.Kv.Value.ToStringUtf8();
                        }
                    }
                    state = builder.ToImmutable();
                    var at = response.Events[^1].Kv.ModRevision;
                    Interlocked.Exchange(ref _revision, Math.Max(at, Revision));
                    await apply(new WatchStep(Revision, state, false, changed)).ConfigureAwait(false);
                }
                if (!needRead && !ct.IsCancellationRequested)
                {
                    throw new RpcException(new Status(StatusCode.Unavailable, "watch stream ended"));
                }
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                break;
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.Cancelled && ct.IsCancellationRequested)
            {
                break;
            }
            catch (Exception e) when (e is RpcException or Relay.Core.Errors.RelayException or IOException or HttpRequestException)
            {
                Connected = false;
                LastError = e is RpcException r ? r.Status.Detail : e.Message;
                if (endpoint is not null)
                {
                    _etcd.SkipPreferred(endpoint);
                }
                try
                {
                    await Task.Delay(backoff, ct).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
                backoff = TimeSpan.FromMilliseconds(Math.Min(1000, backoff.TotalMilliseconds * 2));
            }
        }
        Connected = false;
    }
}
