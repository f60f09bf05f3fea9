using System.Net;
using System.Net.Sockets;
using Relay.Core.Model;
using Relay.Linux.Namespaces;

namespace Relay.Engine.Health;

/// <summary>
/// Sockets for network probes: created in the orchestrator's namespace, then used non-blocking
/// with <see cref="Socket.Poll(int, SelectMode)"/>, so every wait is bounded by the check's
/// deadline and none needs the thread pool.
/// </summary>
internal static class ProbeSockets
{
    // Waits are cut into slices this long so a cancelled check (a disposed monitor) ends soon.
    private const int SliceMs = 50;

    /// <summary>The reason reported when the deadline passes.</summary>
    public static string TimeoutReason(Deadline deadline) => $"timeout ({Duration.Format(deadline.Budget)})";

    /// <summary>
    /// Creates a socket on <paramref name="orchestrator"/>'s thread (so it belongs to that
    /// namespace) and waits for it until <paramref name="deadline"/>. The wait is on an event the
    /// namespace thread sets itself, not on a task continuation, so it needs no pool thread. A
    /// socket created after the caller gave up is disposed by the namespace thread.
    /// </summary>
    /// <returns>The socket, or null when the deadline passed first.</returns>
    public static Socket? Create(NetnsThread orchestrator, Func<Socket> create, Deadline deadline, CancellationToken ct)
    {
        var slot = new CreationSlot();
        var queued = orchestrator.InvokeAsync(() =>
        {
            slot.Complete(create);
            return 0;
        });
        if (queued.IsFaulted)
        {
            // The namespace thread is gone (the network is being torn down).
            queued.GetAwaiter().GetResult();
        }
        while (!slot.Done.Wait(deadline.SliceMilliseconds(SliceMs), CancellationToken.None))
        {
            if (ct.IsCancellationRequested || deadline.Passed)
            {
                if (slot.Abandon() is { } late)
                {
                    return late;
                }
                ct.ThrowIfCancellationRequested();
                return null;
            }
        }
        return slot.Result();
    }

    /// <summary>
    /// A TCP connection from the orchestrator to <paramref name="address"/>:<paramref name="port"/>,
    /// or the reason there is none ("connection refused", "timeout (1s)"...).
    /// </summary>
    public static Socket? ConnectTcp(NetnsThread orchestrator, IPAddress address, int port, Deadline deadline, CancellationToken ct, out string? error)
    {
        var socket = Create(orchestrator, () =>
        {
            var s = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true, Blocking = false };
            // Close with a reset: a check every 100 ms per instance would otherwise leave thousands
            // of TIME_WAIT sockets in the orchestrator for nothing (HAProxy does the same).
            s.LingerState = new LingerOption(true, 0);
            return s;
        }, deadline, ct);
        if (socket is null)
        {
            error = TimeoutReason(deadline);
            return null;
        }
        try
        {
            try
            {
                socket.Connect(new IPEndPoint(address, port));
            }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.WouldBlock or SocketError.InProgress)
            {
                // In progress: its outcome is polled below.
            }
            if (!WaitFor(socket, SelectMode.SelectWrite, deadline, ct))
            {
                error = TimeoutReason(deadline);
                socket.Dispose();
                return null;
            }
            // Writable means decided, not connected: SO_ERROR says which (.NET maps it to SocketError).
            var result = (SocketError)(int)socket.GetSocketOption(SocketOptionLevel.Socket, SocketOptionName.Error)!;
            if (result != SocketError.Success)
            {
                error = Describe(result);
                socket.Dispose();
                return null;
            }
            error = null;
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Waits until <paramref name="socket"/> is ready for <paramref name="mode"/>; false when the deadline passed first.</summary>
    public static bool WaitFor(Socket socket, SelectMode mode, Deadline deadline, CancellationToken ct)
    {
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            var slice = deadline.SliceMilliseconds(SliceMs);
            if (slice <= 0)
            {
                return false;
            }
            if (socket.Poll(slice * 1000, mode))
            {
                return true;
            }
        }
    }

    /// <summary>A short, lower-case reason for a socket error, as <see cref="IHealthProbe.LastError"/> reports it.</summary>
    public static string Describe(SocketError error) => error switch
    {
        SocketError.ConnectionRefused => "connection refused",
        SocketError.ConnectionReset => "connection reset",
        SocketError.ConnectionAborted => "connection aborted",
        SocketError.HostUnreachable => "host unreachable",
        SocketError.NetworkUnreachable => "network unreachable",
        SocketError.NetworkDown => "network down",
        SocketError.TimedOut => "timeout",
        SocketError.AccessDenied => "permission denied",
        _ => new SocketException((int)error).Message.ToLowerInvariant(),
    };

    /// <summary>Hands a socket from the namespace thread to a caller that may have given up waiting.</summary>
    private sealed class CreationSlot
    {
        private readonly object _gate = new();
        private Socket? _socket;
        private Exception? _error;
        private bool _abandoned;

        public ManualResetEventSlim Done { get; } = new();

        public void Complete(Func<Socket> create)
        {
            Socket? socket = null;
            Exception? error = null;
            try
            {
                socket = create();
            }
            catch (Exception e)
            {
                error = e;
            }
            lock (_gate)
            {
                if (_abandoned)
                {
                    socket?.Dispose();
                    return;
                }
                (_socket, _error) = (socket, error);
            }
            Done.Set();
        }

        /// <summary>Gives up; returns the socket when it was created in the meantime after all.</summary>
        public Socket? Abandon()
        {
            lock (_gate)
            {
                if (Done.IsSet)
                {
                    return Result();
                }
                _abandoned = true;
                return null;
            }
        }

        public Socket Result()
        {
            if (_error is not null)
            {
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(_error);
            }
            return _socket!;
        }
    }
}
