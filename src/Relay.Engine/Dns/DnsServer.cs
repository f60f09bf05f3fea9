using System.Buffers;
using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Relay.Core.Dns;
using Relay.Linux.Namespaces;
using Relay.Linux.Sockets;

namespace Relay.Engine.Dns;

/// <summary>
/// The DNS server of one network: UDP and TCP port 53 on the gateway addresses, inside the
/// orchestrator namespace. Names come from an immutable <see cref="NameTable"/> the network swaps
/// on every change, so a query never waits for the control plane and a change is visible to the
/// next query.
/// <para>
/// UDP: per address, two sockets sharing the port with SO_REUSEPORT, one thread each, reading
/// batches with recvmmsg and answering with sendmmsg; no queue besides the kernel's socket buffers.
/// Fairness is decided in the kernel: Relay's table marks the queries of a client above its fair
/// rate (<see cref="Relay.Core.Dataplane.NftNames.DnsFairRate"/> per second), and a BPF program on
/// the port steers marked queries to the second socket. A flood therefore fills its own queue,
/// while every other client's queries wait in a short one; a single busy client (a benchmark)
/// still gets both threads. Within a full batch each client gets at most its share and the rest
/// is dropped, which costs next to nothing.
/// </para>
/// <para>
/// TCP: for answers too large for UDP (and clients that prefer it); a bounded number of
/// connections, each with an idle timeout.
/// </para>
/// </summary>
public sealed partial class DnsServer : IDisposable
{
    /// <summary>Most concurrent TCP connections; more are closed at once.</summary>
    public const int MaxTcpConnections = 256;

    /// <summary>A TCP connection idle for this long is closed.</summary>
    public static readonly TimeSpan TcpIdleTimeout = TimeSpan.FromSeconds(10);

    private readonly Func<NameTable> _names;
    private readonly DnsOptions _options;
    private readonly IFlowAddressResolver? _flows;
    private readonly ILogger _log;
    private readonly List<UdpBatchSocket> _udp = [];
    private readonly List<Thread> _threads = [];
    private readonly List<Socket> _listeners = [];
    private readonly DnsForwarder? _forwarder;
    private readonly CancellationTokenSource _stop = new();
    private readonly long[] _rcodes = new long[24];
    private long _dropped;
    private long _normalQueries;
    private long _heavyQueries;
    private long _truncated;
    private long _forwarded;
    private int _tcpConnections;

    private DnsServer(Func<NameTable> names, DnsOptions options, IFlowAddressResolver? flows, DnsForwarder? forwarder, ILogger log)
    {
        _names = names;
        _options = options;
        _flows = flows;
        _forwarder = forwarder;
        _log = log;
    }

    /// <summary>Where it listens.</summary>
    public IReadOnlyList<IPEndPoint> Endpoints { get; private set; } = [];

    /// <summary>
    /// Starts listening on <paramref name="addresses"/>:<paramref name="port"/> inside <paramref name="netns"/>.
    /// The addresses need not exist yet (IP_FREEBIND): the gateway addresses appear with the first instance.
    /// </summary>
    public static DnsServer Start(
        NetnsThread netns,
        IReadOnlyList<IPAddress> addresses,
        int port,
        Func<NameTable> names,
        DnsOptions options,
        IFlowAddressResolver? flows,
        IReadOnlyList<IPEndPoint> upstreams,
        ILogger log)
    {
        options.Validate();
        var forwarder = options.Forward && upstreams.Count > 0 ? DnsForwarder.Start(netns, upstreams) : null;
        var server = new DnsServer(names, options, flows, forwarder, log);
        try
        {
            var endpoints = addresses.Select(a => new IPEndPoint(a, port)).ToArray();
            netns.Invoke(() =>
            {
                foreach (var ep in endpoints)
                {
                    // Two sockets per address: the first for every client within its fair rate, the
                    // second for the queries Relay's table marked as over it (see NftNames.DnsHeavyMark).
                    var normal = UdpBatchSocket.Bind(ep);
                    server._udp.Add(normal);
                    server._udp.Add(UdpBatchSocket.Bind(ep));
                    normal.SteerByMark(Relay.Core.Dataplane.NftNames.DnsHeavyMark);
                    server._listeners.Add(Listen(ep));
                }
            });
            server.Endpoints = endpoints;
            for (var i = 0; i < server._udp.Count; i++)
            {
                var socket = server._udp[i];
                var heavy = i % 2 == 1;
                var t = new Thread(() => server.ServeUdp(socket, heavy)) { IsBackground = true, Name = (heavy ? "dns udp heavy " : "dns udp ") + socket.Socket.LocalEndPoint };
                server._threads.Add(t);
                t.Start();
            }
            foreach (var listener in server._listeners)
            {
                _ = server.AcceptLoop(listener);
            }
            LogStarted(log, string.Join(", ", endpoints.Select(e => e.ToString())));
            return server;
        }
        catch
        {
            server.Dispose();
            throw;
        }
    }

    /// <summary>Responses sent, by response code (NOERROR, NXDOMAIN...), plus dropped, truncated and forwarded queries.</summary>
    public IReadOnlyDictionary<string, long> Counters()
    {
        var result = new SortedDictionary<string, long>(StringComparer.Ordinal);
        for (var i = 0; i < _rcodes.Length; i++)
        {
            var n = Interlocked.Read(ref _rcodes[i]);
            if (n > 0)
            {
                result[Enum.IsDefined(typeof(DnsResponseCode), (byte)i) ? ((DnsResponseCode)i).ToString().ToUpperInvariant() : "RCODE" + i] = n;
            }
        }
        result["DROPPED"] = Interlocked.Read(ref _dropped);
        result["TRUNCATED"] = Interlocked.Read(ref _truncated);
        result["FORWARDED"] = Interlocked.Read(ref _forwarded);
        result["UDP_FAIR"] = Interlocked.Read(ref _normalQueries);
        result["UDP_HEAVY"] = Interlocked.Read(ref _heavyQueries);
        return result;
    }

    private static Socket Listen(IPEndPoint ep)
    {
        var s = new Socket(ep.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            s.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            if (ep.AddressFamily == AddressFamily.InterNetworkV6)
            {
                s.SetRawSocketOption(41, 26, BitConverter.GetBytes(1)); // IPV6_V6ONLY
                s.SetRawSocketOption(41, 78, BitConverter.GetBytes(1)); // IPV6_FREEBIND
            }
            else
            {
                s.SetRawSocketOption(0, 15, BitConverter.GetBytes(1)); // IP_FREEBIND
            }
            s.Bind(ep);
            s.Listen(128);
            return s;
        }
        catch
        {
            s.Dispose();
            throw;
        }
    }

    private void ServeUdp(UdpBatchSocket socket, bool heavy)
    {
        // Per-thread state, reused for every batch: nothing below allocates per query once warm.
        var clients = new ClientCache();
        Span<int> clientOf = stackalloc int[socket.Capacity];
        Span<int> perClient = stackalloc int[socket.Capacity];
        Span<byte> address = stackalloc byte[16];
        while (!_stop.IsCancellationRequested)
        {
            int n;
            try
            {
                n = socket.Receive();
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            catch (Exception e) when (e is Relay.Linux.Interop.SystemCallException or SocketException)
            {
                LogUdpError(_log, e.Message);
                continue;
            }
            if (n == 0)
            {
                continue;
            }
            Interlocked.Add(ref heavy ? ref _heavyQueries : ref _normalQueries, n);
            var names = _names();
            // A full batch means the kernel had more queued than one batch holds: share it.
            var cap = n;
            var distinct = 0;
            if (n == socket.Capacity)
            {
                // Clients are told apart by address, not port: a flooder cycling through source
                // ports is still one client.
                for (var i = 0; i < n; i++)
                {
                    perClient[i] = 0;
                    clientOf[i] = i;
                    var key = AddressOf(socket.Sender(i));
                    for (var j = 0; j < i; j++)
                    {
                        if (clientOf[j] == j && AddressOf(socket.Sender(j)).SequenceEqual(key))
                        {
                            clientOf[i] = j;
                            break;
                        }
                    }
                    if (clientOf[i] == i)
                    {
                        distinct++;
                    }
                }
                cap = Math.Max(1, n / distinct);
            }
            var slot = 0;
            for (var i = 0; i < n; i++)
            {
                if (cap < n && ++perClient[clientOf[i]] > cap)
                {
                    Interlocked.Increment(ref _dropped);
                    continue;
                }
                if (socket.WasTruncated(i))
                {
                    Interlocked.Increment(ref _dropped);
                    continue;
                }
                var len = UdpBatchSocket.AddressBytes(socket.Sender(i), address);
                var client = clients.Get(address[..len]);
                DnsResult result;
                try
                {
                    result = DnsResolver.Respond(socket.Datagram(i), socket.ReplyBuffer(slot), overTcp: false, client, names, _options, _flows);
                }
                catch (Exception e)
                {
                    // The resolver is fuzz-tested not to throw; if it ever does, the query is
                    // dropped and logged, and the server goes on.
                    LogResolverFailed(_log, e);
                    Interlocked.Increment(ref _dropped);
                    continue;
                }
                switch (result.Outcome)
                {
                    case DnsOutcome.Answered:
                        Count(result);
                        socket.QueueReply(slot++, result.Length, i);
                        break;
                    case DnsOutcome.Forward when _forwarder is not null:
                        Interlocked.Increment(ref _forwarded);
                        _forwarder.Forward(socket.Datagram(i), socket, socket.Sender(i));
                        break;
                    default:
                        Interlocked.Increment(ref _dropped);
                        break;
                }
            }
            socket.Flush();
        }
    }

    // sockaddr_in: address at bytes 4-7; sockaddr_in6: at bytes 8-23.
    private static ReadOnlySpan<byte> AddressOf(ReadOnlySpan<byte> sockaddr)
        => sockaddr.Length >= 24 && sockaddr[0] == 10 ? sockaddr.Slice(8, 16) : sockaddr.Length >= 8 ? sockaddr.Slice(4, 4) : sockaddr;

    private async Task AcceptLoop(Socket listener)
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket connection;
            try
            {
                connection = await listener.AcceptAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (SocketException)
            {
                continue;
            }
            if (Interlocked.Increment(ref _tcpConnections) > MaxTcpConnections)
            {
                Interlocked.Decrement(ref _tcpConnections);
                connection.Dispose();
                continue;
            }
            _ = ServeTcp(connection);
        }
    }

    private async Task ServeTcp(Socket connection)
    {
        var query = ArrayPool<byte>.Shared.Rent(65535);
        var response = ArrayPool<byte>.Shared.Rent(65537);
        try
        {
            using (connection)
            {
                var client = ((IPEndPoint)connection.RemoteEndPoint!).Address;
                while (!_stop.IsCancellationRequested)
                {
                    using var idle = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
                    idle.CancelAfter(TcpIdleTimeout);
                    if (!await ReadExactly(connection, query.AsMemory(0, 2), idle.Token).ConfigureAwait(false))
                    {
                        return;
                    }
                    var length = BinaryPrimitives.ReadUInt16BigEndian(query);
                    if (length < 12 || !await ReadExactly(connection, query.AsMemory(0, length), idle.Token).ConfigureAwait(false))
                    {
                        return;
                    }
                    var result = DnsResolver.Respond(query.AsSpan(0, length), response.AsSpan(2, 65535), overTcp: true, client, _names(), _options, _flows);
                    ReadOnlyMemory<byte> answer;
                    if (result.Outcome == DnsOutcome.Answered)
                    {
                        Count(result);
                        BinaryPrimitives.WriteUInt16BigEndian(response, (ushort)result.Length);
                        answer = response.AsMemory(0, result.Length + 2);
                    }
                    else if (result.Outcome == DnsOutcome.Forward && _forwarder is not null)
                    {
                        Interlocked.Increment(ref _forwarded);
                        var relayed = await _forwarder.ForwardAsync(query.AsSpan(0, length)).ConfigureAwait(false);
                        if (relayed is null)
                        {
                            return;
                        }
                        BinaryPrimitives.WriteUInt16BigEndian(response, (ushort)relayed.Length);
                        relayed.CopyTo(response, 2);
                        answer = response.AsMemory(0, relayed.Length + 2);
                    }
                    else
                    {
                        Interlocked.Increment(ref _dropped);
                        return;
                    }
                    await connection.SendAsync(answer, SocketFlags.None, idle.Token).ConfigureAwait(false);
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
            // Idle timeout, client gone, or shutdown: the connection simply ends.
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(query);
            ArrayPool<byte>.Shared.Return(response);
            Interlocked.Decrement(ref _tcpConnections);
        }
    }

    private static async Task<bool> ReadExactly(Socket s, Memory<byte> buffer, CancellationToken ct)
    {
        var read = 0;
        while (read < buffer.Length)
        {
            var n = await s.ReceiveAsync(buffer[read..], SocketFlags.None, ct).ConfigureAwait(false);
            if (n == 0)
            {
                return false;
            }
            read += n;
        }
        return true;
    }

    private void Count(DnsResult result)
    {
        Interlocked.Increment(ref _rcodes[Math.Min((int)result.Rcode, _rcodes.Length - 1)]);
        if (result.Truncated)
        {
            Interlocked.Increment(ref _truncated);
        }
    }

    /// <summary>Stops listening; queries in progress finish or are dropped.</summary>
    public void Dispose()
    {
        _stop.Cancel();
        foreach (var l in _listeners)
        {
            l.Dispose();
        }
        foreach (var t in _threads)
        {
            t.Join();
        }
        foreach (var s in _udp)
        {
            s.Dispose();
        }
        _forwarder?.Dispose();
    }

    /// <summary>
    /// IPAddress objects for client addresses, kept so that answering a known client allocates
    /// nothing. Bounded: cleared when it grows past 4096 clients.
    /// </summary>
    private sealed class ClientCache
    {
        private readonly Dictionary<UInt128, IPAddress> _map = [];

        public IPAddress Get(ReadOnlySpan<byte> bytes)
        {
            UInt128 key = (UInt128)(uint)bytes.Length << 120;
            foreach (var b in bytes)
            {
                key = (key << 8) | b;
            }
            if (_map.TryGetValue(key, out var address))
            {
                return address;
            }
            if (_map.Count >= 4096)
            {
                _map.Clear();
            }
            address = bytes.Length == 0 ? IPAddress.None : new IPAddress(bytes);
            _map[key] = address;
            return address;
        }
    }

    [LoggerMessage(EventId = 201, Level = LogLevel.Information, Message = "dns: listening on {Endpoints} (UDP and TCP)")]
    private static partial void LogStarted(ILogger log, string endpoints);

    [LoggerMessage(EventId = 202, Level = LogLevel.Warning, Message = "dns: receive failed: {Reason}")]
    private static partial void LogUdpError(ILogger log, string reason);

    [LoggerMessage(EventId = 203, Level = LogLevel.Error, Message = "dns: the resolver failed on a query (dropped)")]
    private static partial void LogResolverFailed(ILogger log, Exception e);
}
