using System.Net;
using System.Net.Sockets;
using Relay.Linux.Namespaces;

namespace Relay.Engine.Probes;

/// <summary>
/// Sockets inside a network namespace. A socket belongs to the namespace of the thread that
/// creates it, so each is created on a short-lived <see cref="NetnsThread"/>; afterwards it can be
/// used from any thread.
/// </summary>
public static class NsSockets
{
    /// <summary>A UDP socket in <paramref name="netns"/>, bound to <paramref name="bindPort"/> (0: any) on <paramref name="bindAddress"/> (default: any).</summary>
    public static Socket Udp(string netns, AddressFamily family, int bindPort = 0, IPAddress? bindAddress = null)
        => Many(netns, 1, () => BoundUdp(family, bindPort, bindAddress))[0];

    /// <summary><paramref name="count"/> UDP sockets on distinct ephemeral ports: one flow each.</summary>
    public static Socket[] ManyUdp(string netns, AddressFamily family, int count)
        => Many(netns, count, () => BoundUdp(family, 0, null));

    /// <summary>A TCP connection from <paramref name="netns"/> to <paramref name="to"/> (5 s receive timeout).</summary>
    public static Socket TcpConnect(string netns, IPEndPoint to)
    {
        var s = Many(netns, 1, () => new Socket(to.AddressFamily, SocketType.Stream, ProtocolType.Tcp))[0];
        try
        {
            s.Connect(to);
            s.ReceiveTimeout = 5000;
            return s;
        }
        catch
        {
            s.Dispose();
            throw;
        }
    }

    /// <summary>A raw socket of <paramref name="protocol"/> in <paramref name="netns"/>: it sees a copy of every such packet the namespace receives.</summary>
    public static Socket Raw(string netns, AddressFamily family, ProtocolType protocol)
        => Many(netns, 1, () => new Socket(family, SocketType.Raw, protocol))[0];

    private static Socket[] Many(string netns, int count, Func<Socket> create)
    {
        using var thread = NetnsThread.Enter(netns);
        return thread.Invoke(() =>
        {
            var sockets = new Socket[count];
            try
            {
                for (var i = 0; i < count; i++)
                {
                    sockets[i] = create();
                }
                return sockets;
            }
            catch
            {
                foreach (var s in sockets)
                {
                    s?.Dispose();
                }
                throw;
            }
        });
    }

    private static Socket BoundUdp(AddressFamily family, int port, IPAddress? address)
    {
        var s = new Socket(family, SocketType.Dgram, ProtocolType.Udp);
        s.Bind(new IPEndPoint(address ?? (family == AddressFamily.InterNetwork ? IPAddress.Any : IPAddress.IPv6Any), port));
        return s;
    }
}
