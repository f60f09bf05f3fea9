using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Relay.Core.Conntrack;
using Relay.Linux.Conntrack;
using Relay.Linux.Namespaces;
using Relay.Linux.Processes;

namespace Relay.Integration.Tests.Conntrack;

/// <summary>
/// A namespace of its own for a conntrack test (<c>relaytest-KIND-RANDOM</c>), with loopback up and
/// rules that make the kernel track connections, a thread inside it, and everything the test opened
/// there; Dispose closes those and deletes the namespace, whatever failed.
/// </summary>
internal sealed class ConntrackTestNamespace : IDisposable
{
    private readonly List<IDisposable> _owned = [];

    private ConntrackTestNamespace(string name, NetnsThread thread)
    {
        Name = name;
        Thread = thread;
    }

    public string Name { get; }

    public NetnsThread Thread { get; }

    public static ConntrackTestNamespace Create(string kind, bool conntrackRules = true)
    {
        var name = $"relaytest-{kind}-" + RandomNumberGenerator.GetHexString(8, lowercase: true);
        IpCommand.Run(["netns", "add", name]);
        try
        {
            IpCommand.Run(["-n", name, "link", "set", "lo", "up"]);
            if (conntrackRules)
            {
                IpCommand.Run(["netns", "exec", name, "nft", "-f", "-"], ConntrackFixtures.ConntrackRules);
            }
            return new ConntrackTestNamespace(name, NetnsThread.Enter(name));
        }
        catch
        {
            IpCommand.Run(["netns", "del", name]);
            throw;
        }
    }

    public ConntrackClient OpenClient() => Own(Thread.Invoke(ConntrackClient.Open));

    /// <summary>Opens the table on the namespace's thread; owned, so disposed before the client.</summary>
    public ConntrackFlowTable OpenTable(IConntrack client, int? receiveBufferBytes = null)
        => Own(Thread.Invoke(() => receiveBufferBytes is { } bytes ? ConntrackFlowTable.Open(client, bytes) : ConntrackFlowTable.Open(client)));

    public string Exec(params string[] args) => IpCommand.Run(["netns", "exec", Name, .. args]);

    /// <summary>One datagram from <paramref name="source"/>:<paramref name="sourcePort"/>: one UNREPLIED conntrack entry.</summary>
    public void SendUdp(IPAddress source, int sourcePort, IPAddress destination, int destinationPort)
        => SendUdpToPorts(source, sourcePort, destination, destinationPort, 1);

    /// <summary>One datagram to each of <paramref name="count"/> consecutive ports: that many entries.</summary>
    public void SendUdpToPorts(IPAddress source, int sourcePort, IPAddress destination, int firstPort, int count) => Thread.Invoke(() =>
    {
        using var socket = new Socket(source.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        socket.Bind(new IPEndPoint(source, sourcePort));
        for (var port = firstPort; port < firstPort + count; port++)
        {
            socket.SendTo([1], new IPEndPoint(destination, port));
        }
    });

    /// <summary>A TCP connection over loopback kept open until Dispose; accepted, so its handshake is complete.</summary>
    public void OpenTcpConnection(IPAddress loopback, int clientPort, int serverPort)
    {
        var sockets = Thread.Invoke(() =>
        {
            var listener = new Socket(loopback.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            listener.Bind(new IPEndPoint(loopback, serverPort));
            listener.Listen();
            var client = new Socket(loopback.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            client.Bind(new IPEndPoint(loopback, clientPort));
            client.Connect(new IPEndPoint(loopback, serverPort));
            var server = listener.Accept();
            return new[] { listener, client, server };
        });
        foreach (var s in sockets)
        {
            Own(s);
        }
    }

    public void Dispose()
    {
        try
        {
            for (var i = _owned.Count - 1; i >= 0; i--)
            {
                try
                {
                    _owned[i].Dispose();
                }
                catch (ObjectDisposedException)
                {
                }
            }
            Thread.Dispose();
        }
        finally
        {
            // Whatever failed above, the namespace must not outlive the test.
            IpCommand.Run(["netns", "del", Name]);
        }
    }

    private T Own<T>(T disposable)
        where T : IDisposable
    {
        _owned.Add(disposable);
        return disposable;
    }
}
