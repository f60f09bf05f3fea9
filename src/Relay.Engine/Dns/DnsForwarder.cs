using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Relay.Linux.Namespaces;
using Relay.Linux.Sockets;

namespace Relay.Engine.Dns;

/// <summary>
/// Relays queries for names outside the network's zones to upstream resolvers (when configured),
/// over UDP from the orchestrator namespace. Each relayed query gets a fresh ID; the table of
/// queries in flight is bounded (<see cref="MaxPending"/>) and entries expire after
/// <see cref="Timeout"/>, so a dead upstream costs memory for two seconds, never more.
/// </summary>
internal sealed class DnsForwarder : IDisposable
{
    public const int MaxPending = 1024;
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(2);

    private readonly Socket _socket;
    private readonly IReadOnlyList<IPEndPoint> _upstreams;
    private readonly Dictionary<ushort, Pending> _pending = [];
    private readonly Thread _thread;
    private volatile bool _stop;
    private int _next;

    private DnsForwarder(Socket socket, IReadOnlyList<IPEndPoint> upstreams)
    {
        _socket = socket;
        _upstreams = upstreams;
        _thread = new Thread(Run) { IsBackground = true, Name = "dns forwarder" };
        _thread.Start();
    }

    /// <summary>Queries relayed, answers relayed back, queries dropped (table full or expired).</summary>
    public long Relayed, Answered, Dropped;

    /// <summary>Opens the relay socket in <paramref name="netns"/>.</summary>
    public static DnsForwarder Start(NetnsThread netns, IReadOnlyList<IPEndPoint> upstreams)
    {
        var socket = netns.Invoke(() =>
        {
            // Dual-stack so IPv4 and IPv6 upstreams share one socket.
            var s = new Socket(AddressFamily.InterNetworkV6, SocketType.Dgram, ProtocolType.Udp) { DualMode = true };
            s.Bind(new IPEndPoint(IPAddress.IPv6Any, 0));
            s.ReceiveTimeout = 250;
            return s;
        });
        return new DnsForwarder(socket, upstreams);
    }

    /// <summary>Relays a UDP query; the answer goes back through <paramref name="replyVia"/> to <paramref name="client"/> (raw sockaddr).</summary>
    public void Forward(ReadOnlySpan<byte> query, UdpBatchSocket replyVia, ReadOnlySpan<byte> client)
        => Send(query, new Pending(0, replyVia, client.ToArray(), null, DateTime.UtcNow + Timeout));

    /// <summary>Relays a query and returns the upstream's answer (ID restored), or null on timeout.</summary>
    public Task<byte[]?> ForwardAsync(ReadOnlySpan<byte> query)
    {
        var tcs = new TaskCompletionSource<byte[]?>(TaskCreationOptions.RunContinuationsAsynchronously);
        if (!Send(query, new Pending(0, null, null, tcs, DateTime.UtcNow + Timeout)))
        {
            tcs.TrySetResult(null);
        }
        return tcs.Task;
    }

    private bool Send(ReadOnlySpan<byte> query, Pending pending)
    {
        if (query.Length < 12 || _upstreams.Count == 0)
        {
            return false;
        }
        var copy = query.ToArray();
        ushort id;
        IPEndPoint upstream;
        lock (_pending)
        {
            Expire();
            if (_pending.Count >= MaxPending)
            {
                Interlocked.Increment(ref Dropped);
                return false;
            }
            do
            {
                id = (ushort)Random.Shared.Next(ushort.MaxValue + 1);
            }
            while (_pending.ContainsKey(id));
            _pending[id] = pending with { OriginalId = BinaryPrimitives.ReadUInt16BigEndian(copy) };
            upstream = _upstreams[_next++ % _upstreams.Count];
        }
        BinaryPrimitives.WriteUInt16BigEndian(copy, id);
        try
        {
            _socket.SendTo(copy, upstream.AddressFamily == AddressFamily.InterNetwork ? new IPEndPoint(upstream.Address.MapToIPv6(), upstream.Port) : upstream);
            Interlocked.Increment(ref Relayed);
            return true;
        }
        catch (SocketException)
        {
            lock (_pending)
            {
                _pending.Remove(id);
            }
            Interlocked.Increment(ref Dropped);
            return false;
        }
    }

    private void Run()
    {
        var buf = new byte[65535];
        EndPoint from = new IPEndPoint(IPAddress.IPv6Any, 0);
        while (!_stop)
        {
            int n;
            try
            {
                n = _socket.ReceiveFrom(buf, ref from);
            }
            catch (SocketException)
            {
                lock (_pending)
                {
                    Expire();
                }
                continue;
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            if (n < 12 || !IsUpstream((IPEndPoint)from))
            {
                continue;
            }
            Pending? pending;
            lock (_pending)
            {
                if (!_pending.Remove(BinaryPrimitives.ReadUInt16BigEndian(buf), out var p))
                {
                    continue;
                }
                pending = p;
            }
            BinaryPrimitives.WriteUInt16BigEndian(buf, pending.OriginalId);
            Interlocked.Increment(ref Answered);
            if (pending.Completion is { } tcs)
            {
                tcs.TrySetResult(buf.AsSpan(0, n).ToArray());
            }
            else
            {
                pending.ReplyVia!.SendTo(buf.AsSpan(0, n), pending.Client);
            }
        }
    }

    private bool IsUpstream(IPEndPoint from)
    {
        var address = from.Address.IsIPv4MappedToIPv6 ? from.Address.MapToIPv4() : from.Address;
        foreach (var u in _upstreams)
        {
            if (u.Port == from.Port && u.Address.Equals(address))
            {
                return true;
            }
        }
        return false;
    }

    private void Expire()
    {
        var now = DateTime.UtcNow;
        List<ushort>? expired = null;
        foreach (var (id, p) in _pending)
        {
            if (p.Deadline < now)
            {
                (expired ??= []).Add(id);
            }
        }
        foreach (var id in expired ?? [])
        {
            if (_pending.Remove(id, out var p))
            {
                p.Completion?.TrySetResult(null);
                Interlocked.Increment(ref Dropped);
            }
        }
    }

    public void Dispose()
    {
        _stop = true;
        _socket.Dispose();
        _thread.Join();
        lock (_pending)
        {
            foreach (var p in _pending.Values)
            {
                p.Completion?.TrySetResult(null);
            }
            _pending.Clear();
        }
    }

    private sealed record Pending(ushort OriginalId, UdpBatchSocket? ReplyVia, byte[]? Client, TaskCompletionSource<byte[]?>? Completion, DateTime Deadline);
}
