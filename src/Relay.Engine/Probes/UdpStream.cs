using System.Diagnostics;
using System.Net;

namespace Relay.Engine.Probes;

/// <summary>
/// Sends sequence-numbered UDP datagrams from ONE fixed source port at a steady rate: one flow,
/// the case where a stale conntrack entry would black-hole traffic for as long as it keeps
/// refreshing (kube-proxy's decade-old UDP bug).
/// </summary>
public sealed class UdpStream : IDisposable
{
    private readonly System.Net.Sockets.Socket _socket;
    private readonly IPEndPoint _to;
    private readonly Thread _thread;
    private readonly long _step;
    private volatile bool _stop;
    private long _sequence;

    /// <summary>Starts sending from <paramref name="sourcePort"/> in <paramref name="netns"/> to <paramref name="to"/>, one datagram per <paramref name="interval"/>.</summary>
    public UdpStream(string netns, IPEndPoint to, int sourcePort, TimeSpan interval)
    {
        _socket = NsSockets.Udp(netns, to.AddressFamily, sourcePort);
        _to = to;
        _step = Math.Max(1, (long)(interval.TotalSeconds * Stopwatch.Frequency));
        _thread = new Thread(Run) { IsBackground = true, Name = "udp stream " + netns };
        _thread.Start();
    }

    private long _sendErrors;

    /// <summary>Datagrams the kernel refused to send (their sequence numbers are skipped).</summary>
    public long SendErrors => Interlocked.Read(ref _sendErrors);

    /// <summary>The latest send error, if any (for example <c>HostUnreachable</c>).</summary>
    public string? LastSendError { get; private set; }

    /// <summary>The sequence number of the latest datagram handed to the kernel, or about to be (the first is 1).</summary>
    public long LastSent => Interlocked.Read(ref _sequence);

    private void Run()
    {
        var buf = new byte[64];
        var next = Stopwatch.GetTimestamp();
        var millisecond = Stopwatch.Frequency / 1000;
        while (!_stop)
        {
            var seq = _sequence + 1;
            BitConverter.TryWriteBytes(buf, seq);
            // Published before the send: whoever reads LastSent = N knows that datagram N+1 had
            // not been handed to the kernel yet, so it left after that moment.
            Interlocked.Exchange(ref _sequence, seq);
            try
            {
                _socket.SendTo(buf, _to);
            }
            catch (System.Net.Sockets.SocketException e)
            {
                // A transient error (no route while the service has no instance): keep the rate,
                // and count it, so that a datagram never sent is not taken for one the network lost.
                Interlocked.Increment(ref _sendErrors);
                LastSendError = e.SocketErrorCode.ToString();
            }
            next += _step;
            // Sleep while far from the next send, spin the last millisecond: a steady rate without
            // burning a core for slow streams.
            while (!_stop && Stopwatch.GetTimestamp() < next)
            {
                if (next - Stopwatch.GetTimestamp() > 2 * millisecond)
                {
                    Thread.Sleep(1);
                }
                else
                {
                    Thread.SpinWait(20);
                }
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
