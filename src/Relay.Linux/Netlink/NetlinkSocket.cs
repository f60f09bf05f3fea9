using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using Relay.Linux.Interop;

namespace Relay.Linux.Netlink;

/// <summary>The kernel's answer to one request of a batch: 0 for success, else a positive errno.</summary>
/// <param name="Errno">0 or the errno.</param>
/// <param name="Detail">The kernel's extended-ack text, when it sent one.</param>
internal readonly record struct NetlinkAck(int Errno, string? Detail);

/// <summary>What a non-blocking receive on a multicast (notification) socket found.</summary>
internal enum NetlinkNotification
{
    /// <summary>A datagram was read.</summary>
    Datagram,

    /// <summary>Nothing is queued (EAGAIN).</summary>
    None,

    /// <summary>
    /// The kernel dropped notifications because the receive queue was full (recv returned ENOBUFS):
    /// whatever state the notifications describe is incomplete from here on.
    /// </summary>
    Overrun,

    /// <summary>A datagram was larger than the buffer and was cut: its notifications are lost.</summary>
    Truncated,
}

/// <summary>
/// A netlink socket to the kernel (AF_NETLINK, SOCK_RAW) for one protocol family.
/// <para>
/// The socket is created in the network namespace of the calling thread and stays bound to it for
/// its whole life: open it on a <see cref="Namespaces.NetnsThread"/> to talk to another namespace.
/// Once open it may be used from any thread; every request/reply exchange holds one lock, because
/// replies are matched by sequence number on a single receive queue and two interleaved exchanges
/// would steal each other's replies.
/// </para>
/// </summary>
internal sealed class NetlinkSocket : IDisposable
{
    /// <summary>Large enough for the acks of a whole batch and several dump datagrams without overrunning.</summary>
    private const int RequestedReceiveBuffer = 4 << 20;

    /// <summary>
    /// The kernel sizes dump datagrams by the reader's buffer but caps them near 32 KiB; twice that
    /// leaves headroom, and MSG_TRUNC still catches anything bigger.
    /// </summary>
    private const int DatagramBuffer = 64 * 1024;

    /// <summary>
    /// A bound on a blocking receive, so a reply that never comes (a kernel bug, a lost datagram)
    /// surfaces as EAGAIN instead of holding the lock forever.
    /// </summary>
    private const int ReceiveTimeoutSeconds = 30;

    /// <summary>EIO: for failures that have no errno of their own (a short send, missing acks).</summary>
    private const int EIO = 5;

    private readonly Lock _lock = new();
    private readonly SafeFd _fd;
    private readonly byte[] _datagram = new byte[DatagramBuffer];
    private uint _sequence;

    /// <summary>Opens a socket for netlink <paramref name="protocol"/> (NETLINK_NETFILTER, ...) in the calling thread's network namespace.</summary>
    public NetlinkSocket(int protocol)
        : this(protocol, groups: 0, RequestedReceiveBuffer)
    {
    }

    /// <summary>
    /// Opens a socket for netlink <paramref name="protocol"/> in the calling thread's network namespace,
    /// subscribed at bind to the multicast <paramref name="groups"/> (the nl_groups bit mask: bit n-1
    /// for group n; 0 for none), asking for <paramref name="receiveBuffer"/> bytes of receive buffer
    /// (SO_RCVBUFFORCE, else SO_RCVBUF capped by net.core.rmem_max).
    /// </summary>
    public NetlinkSocket(int protocol, uint groups, int receiveBuffer)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(receiveBuffer);
        Protocol = protocol;
        var fd = Libc.Socket(Libc.AF_NETLINK, Libc.SOCK_RAW | Libc.SOCK_CLOEXEC, protocol);
        if (fd < 0)
        {
            throw new SystemCallException($"socket(AF_NETLINK, {protocol})", Marshal.GetLastPInvokeError());
        }
        _fd = new SafeFd(fd);
        try
        {
            SetReceiveBuffer(receiveBuffer);
            // Best effort: both only improve diagnostics and ack size, and older kernels lack them.
            TrySetInt(Libc.SOL_NETLINK, Libc.NETLINK_EXT_ACK, 1);
            // Without CAP_ACK every error ack echoes the whole request; a batch of deletes whose
            // entries are gone would then need far more receive buffer than the requests did.
            TrySetInt(Libc.SOL_NETLINK, Libc.NETLINK_CAP_ACK, 1);
            SetReceiveTimeout();
            PortId = Bind(groups);
            ReceiveBufferSize = GetInt(Libc.SOL_SOCKET, Libc.SO_RCVBUF);
            // Start away from 0 so a stray message with a zero sequence never matches a request.
            _sequence = (uint)Environment.TickCount | 1;
        }
        catch
        {
            _fd.Dispose();
            throw;
        }
    }

    /// <summary>The netlink protocol this socket speaks.</summary>
    public int Protocol { get; }

    /// <summary>The port id the kernel assigned at bind; replies to this socket carry it.</summary>
    public uint PortId { get; }

    /// <summary>The receive buffer the kernel granted (as getsockopt reports it, overhead included).</summary>
    public int ReceiveBufferSize { get; }

    /// <summary>
    /// The descriptor, for waiting on it (poll). Receiving and sending go through this class: use
    /// <see cref="SafeHandle.DangerousAddRef"/> while the number is in use so a concurrent
    /// <see cref="Dispose"/> cannot close it (and the number be reused) underneath.
    /// </summary>
    public SafeFd Handle => _fd;

    /// <summary>
    /// Reads one queued datagram into <paramref name="buffer"/> without blocking: for a socket bound
    /// to multicast groups, whose datagrams are notifications (nlmsg_seq 0, nlmsg_pid 0), not replies.
    /// It takes no lock, so it must not be mixed with <see cref="Dump"/> or <see cref="Acknowledge"/>
    /// on the same socket. ENOBUFS (the kernel dropped notifications) is reported, not thrown; the
    /// kernel reports it once per overrun, and the datagrams still queued can be read after it.
    /// </summary>
    /// <param name="buffer">Where the datagram goes.</param>
    /// <param name="length">The datagram's length when <see cref="NetlinkNotification.Datagram"/> is returned; else 0.</param>
    /// <exception cref="ObjectDisposedException">The socket is closed.</exception>
    /// <exception cref="SystemCallException">recv failed with another errno.</exception>
    public unsafe NetlinkNotification ReceiveNotification(Span<byte> buffer, out int length)
    {
        length = 0;
        var added = false;
        // Throws ObjectDisposedException once closed; holds the descriptor open while recv runs.
        _fd.DangerousAddRef(ref added);
        try
        {
            nint received;
            int errno;
            fixed (byte* p = buffer)
            {
                do
                {
                    received = Libc.Recv(_fd.Fd, p, buffer.Length, Libc.MSG_TRUNC | Libc.MSG_DONTWAIT);
                    errno = received < 0 ? Marshal.GetLastPInvokeError() : 0;
                }
                while (received < 0 && errno == (int)Errno.EINTR);
            }
            if (received < 0)
            {
                return errno switch
                {
                    (int)Errno.EAGAIN => NetlinkNotification.None,
                    (int)Errno.ENOBUFS => NetlinkNotification.Overrun,
                    _ => throw new SystemCallException("recv(netlink notifications)", errno),
                };
            }
            if (received > buffer.Length)
            {
                return NetlinkNotification.Truncated;
            }
            length = (int)received;
            return NetlinkNotification.Datagram;
        }
        finally
        {
            if (added)
            {
                _fd.DangerousRelease();
            }
        }
    }

    /// <summary>
    /// Sends the single dump request in <paramref name="request"/> (its sequence number is assigned
    /// here) and hands every data message of the reply to <paramref name="onMessage"/> until NLMSG_DONE.
    /// An error reply throws <see cref="SystemCallException"/>. If <paramref name="onMessage"/> throws,
    /// the rest of the dump is still read (so the socket can serve the next request) and the exception
    /// is rethrown afterwards.
    /// </summary>
    public void Dump(Span<byte> request, string call, NetlinkMessageHandler onMessage)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_fd.IsClosed, this);
            var sequence = StampSequences(request, addAck: false, out var count);
            if (count != 1)
            {
                throw new ArgumentException($"netlink: a dump request is one message, got {count}", nameof(request));
            }
            Send(request, call);
            ExceptionDispatchInfo? handlerError = null;
            NetlinkMessageHandler guarded = (in NetlinkMessage message) =>
            {
                if (handlerError is not null)
                {
                    return;
                }
                try
                {
                    onMessage(message);
                }
                catch (Exception e)
                {
                    handlerError = ExceptionDispatchInfo.Capture(e);
                }
            };
            while (true)
            {
                var length = Receive(wait: true, call);
                if (NetlinkReplies.DispatchDump(_datagram.AsSpan(0, length), call, guarded, sequence, PortId))
                {
                    break;
                }
            }
            handlerError?.Throw();
        }
    }

    /// <summary>
    /// Sends every message in <paramref name="requests"/> with ONE send(), each given NLM_F_ACK and
    /// its own sequence number, and returns the kernel's answer to each, in order.
    /// </summary>
    public NetlinkAck[] Acknowledge(Span<byte> requests, string call)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_fd.IsClosed, this);
            var first = StampSequences(requests, addAck: true, out var count);
            var acks = new NetlinkAck[count];
            var answered = new bool[count];
            var pending = count;
            if (count == 0)
            {
                return acks;
            }
            Send(requests, call);
            // The kernel runs netlink requests to its own sockets synchronously inside sendmsg, so every
            // ack is queued by the time send() returns. Reading without blocking turns a request the
            // kernel skipped (nfnetlink answers only the first message of a batch it refuses outright)
            // into an error now rather than a timeout.
            while (pending > 0)
            {
                var length = Receive(wait: false, call);
                if (length < 0)
                {
                    var cause = acks.FirstOrDefault(a => a.Errno != 0);
                    throw new SystemCallException(
                        NetlinkReplies.WithDetail($"{call}: the kernel answered {count - pending} of {count} requests", cause.Detail),
                        cause.Errno != 0 ? cause.Errno : EIO);
                }
                var reader = new NetlinkReader(_datagram.AsSpan(0, length));
                while (reader.TryRead(out var message))
                {
                    var index = message.Sequence - first;
                    if (message.Type != Libc.NLMSG_ERROR || message.PortId != PortId || index >= (uint)count || answered[index])
                    {
                        continue;
                    }
                    var (errno, detail) = NetlinkReplies.ParseError(message);
                    acks[index] = new NetlinkAck(errno, detail);
                    answered[index] = true;
                    pending--;
                }
            }
            return acks;
        }
    }

    /// <summary>Closes the socket (waiting for an exchange in progress).</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            _fd.Dispose();
        }
    }

    /// <summary>
    /// Gives each message in <paramref name="messages"/> the next sequence number (and NLM_F_ACK when
    /// asked); returns the first number used.
    /// </summary>
    private uint StampSequences(Span<byte> messages, bool addAck, out int count)
    {
        var first = _sequence;
        count = 0;
        var offset = 0;
        while (offset < messages.Length)
        {
            var remaining = messages.Length - offset;
            var length = remaining >= Libc.NLMSG_HDRLEN ? MemoryMarshal.Read<uint>(messages[offset..]) : 0;
            if (length < Libc.NLMSG_HDRLEN || length > (uint)remaining)
            {
                throw new ArgumentException($"netlink: request bytes are not whole messages (offset {offset})", nameof(messages));
            }
            var header = messages.Slice(offset, Libc.NLMSG_HDRLEN);
            if (addAck)
            {
                var flags = (ushort)(MemoryMarshal.Read<ushort>(header[6..]) | Libc.NLM_F_ACK);
                MemoryMarshal.Write(header[6..], in flags);
            }
            var sequence = _sequence++;
            MemoryMarshal.Write(header[8..], in sequence);
            count++;
            offset += Math.Min(NetlinkWriter.Align((int)length), remaining);
        }
        return first;
    }

    private unsafe void Send(ReadOnlySpan<byte> bytes, string call)
    {
        nint sent;
        fixed (byte* p = bytes)
        {
            do
            {
                sent = Libc.Send(_fd.Fd, p, bytes.Length, 0);
            }
            while (sent < 0 && Marshal.GetLastPInvokeError() == (int)Errno.EINTR);
        }
        if (sent < 0)
        {
            throw new SystemCallException($"{call}: send(netlink)", Marshal.GetLastPInvokeError());
        }
        if (sent != bytes.Length)
        {
            // Netlink datagrams go whole or not at all; anything else means the requests were not delivered as built.
            throw new SystemCallException($"{call}: send(netlink) sent {sent} of {bytes.Length} bytes", EIO);
        }
    }

    /// <summary>One datagram into the receive buffer; -1 when <paramref name="wait"/> is false and none is queued.</summary>
    private unsafe int Receive(bool wait, string call)
    {
        nint received;
        int errno;
        fixed (byte* p = _datagram)
        {
            do
            {
                // MSG_TRUNC makes recv report the datagram's real size, so a cut-off one is detected, not parsed.
                received = Libc.Recv(_fd.Fd, p, _datagram.Length, Libc.MSG_TRUNC | (wait ? 0 : Libc.MSG_DONTWAIT));
                errno = received < 0 ? Marshal.GetLastPInvokeError() : 0;
            }
            while (received < 0 && errno == (int)Errno.EINTR);
        }
        if (received < 0)
        {
            if (errno == (int)Errno.EAGAIN && !wait)
            {
                return -1;
            }
            throw new SystemCallException(
                errno == (int)Errno.EAGAIN ? $"{call}: recv(netlink) got no reply within {ReceiveTimeoutSeconds}s" : $"{call}: recv(netlink)",
                errno);
        }
        if (received > _datagram.Length)
        {
            throw new InvalidDataException($"netlink: a {received}-byte datagram did not fit the {_datagram.Length}-byte receive buffer");
        }
        return (int)received;
    }

    private void SetReceiveBuffer(int bytes)
    {
        // SO_RCVBUFFORCE passes rmem_max but needs CAP_NET_ADMIN; without it the capped SO_RCVBUF is what we get.
        if (!TrySetInt(Libc.SOL_SOCKET, Libc.SO_RCVBUFFORCE, bytes)
            && !TrySetInt(Libc.SOL_SOCKET, Libc.SO_RCVBUF, bytes))
        {
            throw new SystemCallException("setsockopt(SO_RCVBUF)", Marshal.GetLastPInvokeError());
        }
    }

    private unsafe void SetReceiveTimeout()
    {
        // struct timeval is two longs: time_t seconds, suseconds_t microseconds.
        var timeval = stackalloc nint[2] { ReceiveTimeoutSeconds, 0 };
        if (Libc.SetSockOpt(_fd.Fd, Libc.SOL_SOCKET, Libc.SO_RCVTIMEO, timeval, 2 * sizeof(nint)) != 0)
        {
            throw new SystemCallException("setsockopt(SO_RCVTIMEO)", Marshal.GetLastPInvokeError());
        }
    }

    private unsafe uint Bind(uint groups)
    {
        // nl_pid 0: the kernel picks a unique port id, so several sockets in one process never collide.
        // nl_groups subscribes to the multicast groups in the mask (groups 1..32) from this moment on.
        var address = stackalloc byte[Libc.SizeOfSockaddrNl];
        new Span<byte>(address, Libc.SizeOfSockaddrNl).Clear();
        *(ushort*)address = Libc.AF_NETLINK;
        *(uint*)(address + 8) = groups;
        if (Libc.Bind(_fd.Fd, address, Libc.SizeOfSockaddrNl) != 0)
        {
            throw new SystemCallException("bind(AF_NETLINK)", Marshal.GetLastPInvokeError());
        }
        var length = Libc.SizeOfSockaddrNl;
        if (Libc.GetSockName(_fd.Fd, address, &length) != 0)
        {
            throw new SystemCallException("getsockname(AF_NETLINK)", Marshal.GetLastPInvokeError());
        }
        return *(uint*)(address + 4);
    }

    private unsafe bool TrySetInt(int level, int option, int value)
        => Libc.SetSockOpt(_fd.Fd, level, option, &value, sizeof(int)) == 0;

    private unsafe int GetInt(int level, int option)
    {
        int value = 0;
        var length = sizeof(int);
        if (Libc.GetSockOpt(_fd.Fd, level, option, &value, &length) != 0)
        {
            throw new SystemCallException($"getsockopt({level}, {option})", Marshal.GetLastPInvokeError());
        }
        return value;
    }
}
