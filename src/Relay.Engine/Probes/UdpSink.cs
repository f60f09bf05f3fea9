using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Sockets;

namespace Relay.Engine.Probes;

/// <summary>
/// Receives UDP datagrams on one port inside a namespace and counts them. Datagrams that start
/// with a 64-bit sequence number (as <see cref="UdpStream"/> sends) have it recorded, so a test or
/// a demo can tell exactly which datagrams reached which instance.
/// </summary>
public sealed class UdpSink : IDisposable
{
    private readonly Socket _socket;
    private readonly Thread _thread;
    private readonly ConcurrentQueue<long> _sequences = new();
    private volatile bool _stop;
    private long _count;
    private long _lastTimestamp;

    /// <summary>Starts receiving on <paramref name="port"/> in <paramref name="netns"/>.</summary>
    public UdpSink(string netns, AddressFamily family, int port)
    {
        _socket = NsSockets.Udp(netns, family, port);
        _socket.ReceiveTimeout = 100;
        _thread = new Thread(Run) { IsBackground = true, Name = "udp sink " + netns };
        _thread.Start();
    }

    /// <summary>Datagrams received.</summary>
    public long Count => Interlocked.Read(ref _count);

    /// <summary>Sequence numbers received, in arrival order.</summary>
    public IReadOnlyCollection<long> Sequences => _sequences.ToArray();

    /// <summary>Stopwatch timestamp of the latest datagram (0 before the first).</summary>
    public long LastTimestamp => Interlocked.Read(ref _lastTimestamp);

    private void Run()
    {
        var buf = new byte[2048];
        while (!_stop)
        {
            try
            {
                var n = _socket.Receive(buf);
                if (n >= 8)
                {
                    _sequences.Enqueue(BitConverter.ToInt64(buf, 0));
                }
                Interlocked.Exchange(ref _lastTimestamp, Stopwatch.GetTimestamp());
                Interlocked.Increment(ref _count);
            }
            catch (SocketException)
            {
                // Receive timeout: look at _stop again.
            }
            catch (ObjectDisposedException)
            {
                return;
            }
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _stop = true;
        _thread.Join();
        _socket.Dispose();
    }
}
