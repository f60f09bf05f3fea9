using System.Diagnostics;
using System.Net.Sockets;

namespace Relay.Engine.Probes;

/// <summary>
/// Watches echo requests arriving in one namespace (raw ICMP and ICMPv6 sockets get a copy of
/// each) and records when the first one came after a mark: the moment the instance started
/// answering a client's ping, since the kernel replies as soon as the request arrives.
/// </summary>
public sealed class IcmpEchoWatcher : IDisposable
{
    private readonly Socket[] _sockets;
    private readonly Thread[] _threads;
    private volatile bool _stop;
    private long _first;
    private long _count;

    /// <summary>Starts watching in <paramref name="netns"/>.</summary>
    public IcmpEchoWatcher(string netns)
    {
        _sockets =
        [
            NsSockets.Raw(netns, AddressFamily.InterNetwork, ProtocolType.Icmp),
            NsSockets.Raw(netns, AddressFamily.InterNetworkV6, ProtocolType.IcmpV6),
        ];
        _threads = _sockets.Select((s, i) => new Thread(() => Run(s, i == 0)) { IsBackground = true, Name = "icmp watch " + netns }).ToArray();
        foreach (var t in _threads)
        {
            t.Start();
        }
    }

    /// <summary>Stopwatch timestamp of the first echo request seen, or 0.</summary>
    public long FirstRequest => Interlocked.Read(ref _first);

    /// <summary>Echo requests seen.</summary>
    public long Count => Interlocked.Read(ref _count);

    /// <summary>Waits until an echo request arrived (or the timeout) and returns its timestamp, or 0.</summary>
    public long WaitFirst(TimeSpan timeout)
    {
        var until = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        while (FirstRequest == 0 && Stopwatch.GetTimestamp() < until)
        {
            Thread.Sleep(1);
        }
        return FirstRequest;
    }

    private void Run(Socket socket, bool v4)
    {
        socket.ReceiveTimeout = 100;
        var buf = new byte[2048];
        while (!_stop)
        {
            try
            {
                var n = socket.Receive(buf);
                var now = Stopwatch.GetTimestamp();
                // A raw IPv4 socket gets the IP header too; a raw IPv6 socket only the ICMPv6 message.
                var offset = v4 ? (buf[0] & 0x0f) * 4 : 0;
                if (n <= offset)
                {
                    continue;
                }
                var isRequest = v4 ? buf[offset] == 8 : buf[offset] == 128;
                if (isRequest)
                {
                    Interlocked.CompareExchange(ref _first, now, 0);
                    Interlocked.Increment(ref _count);
                }
            }
            catch (SocketException)
            {
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
        foreach (var t in _threads)
        {
            t.Join();
        }
        foreach (var s in _sockets)
        {
            s.Dispose();
        }
    }
}
