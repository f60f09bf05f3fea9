using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Relay.Engine.Probes;
using Relay.Linux.Interop;

namespace Relay.Bench;

/// <summary>
/// A fixed-rate UDP sender for the migration experiment: sequence-numbered datagrams (the first
/// 8 bytes of each, little-endian, starting at 1) from ONE source port, paced by the clock and
/// handed to the kernel in sendmmsg(2) batches of a few datagrams every ~100 us, so that 50,000+
/// per second cost little CPU. A late wake-up is caught up (the rate is kept on average), and the
/// thread may run SCHED_FIFO so that a busy 2-core machine does not stall the stream itself: a gap
/// seen by the receivers is then the data path's, not the load generator's.
/// </summary>
internal sealed unsafe class FixedRateUdpSender : IDisposable
{
    private const int Capacity = 64;
    private const int PayloadSize = 64;
    private const int SockaddrInSize = 16;

    private readonly Socket _socket;
    private readonly int _rate;
    private readonly bool _realtime;
    private readonly Thread _thread;
    private readonly byte* _payloads;
    private readonly byte* _address;
    private readonly IoVec* _vecs;
    private readonly MMsgHdr* _headers;
    private readonly ChunkedLog _batches = new();
    private volatile bool _stop;
    private long _lastSent;
    private long _sendErrors;
    private long _started;

    /// <summary>Starts sending from <paramref name="sourcePort"/> in <paramref name="netns"/> to <paramref name="to"/> (IPv4), <paramref name="rate"/> datagrams per second.</summary>
    public FixedRateUdpSender(string netns, IPEndPoint to, int sourcePort, int rate, bool realtime = true)
    {
        if (to.AddressFamily != AddressFamily.InterNetwork)
        {
            throw new ArgumentException("IPv4 only", nameof(to));
        }
        _rate = rate;
        _realtime = realtime;
        _socket = NsSockets.Udp(netns, AddressFamily.InterNetwork, sourcePort);
        _socket.Blocking = true;
        _payloads = (byte*)NativeMemory.AllocZeroed(Capacity * PayloadSize);
        _address = (byte*)NativeMemory.AllocZeroed(SockaddrInSize);
        _vecs = (IoVec*)NativeMemory.AllocZeroed((nuint)(Capacity * sizeof(IoVec)));
        _headers = (MMsgHdr*)NativeMemory.AllocZeroed((nuint)(Capacity * sizeof(MMsgHdr)));
        // struct sockaddr_in: family (host order), port and address (network order).
        *(ushort*)_address = 2;
        _address[2] = (byte)(to.Port >> 8);
        _address[3] = (byte)to.Port;
        to.Address.GetAddressBytes().CopyTo(new Span<byte>(_address + 4, 4));
        for (var i = 0; i < Capacity; i++)
        {
            _vecs[i] = new IoVec { Base = _payloads + (i * PayloadSize), Length = PayloadSize };
        }
        _thread = new Thread(Run) { IsBackground = true, Name = "udp fixed-rate sender" };
        _thread.Start();
    }

    /// <summary>Datagrams per second asked for.</summary>
    public int Rate => _rate;

    /// <summary>
    /// The highest sequence number handed to the kernel, or about to be: published BEFORE the
    /// batch that holds it is sent, so whoever reads N knows every datagram above N left later.
    /// </summary>
    public long LastSent => Interlocked.Read(ref _lastSent);

    /// <summary>Datagrams the kernel refused at once (counted as sent: they carry a sequence number).</summary>
    public long SendErrors => Interlocked.Read(ref _sendErrors);

    /// <summary>True when the thread got SCHED_FIFO.</summary>
    public bool GotRealtime { get; private set; }

    /// <summary>The longest sendmmsg call (with the softirq work the kernel did on its way out), in Stopwatch ticks.</summary>
    public long MaxSendTicks { get; private set; }

    /// <summary>The longest wake-up delay past a sleep's end, in Stopwatch ticks.</summary>
    public long MaxOversleepTicks { get; private set; }

    /// <summary>Stopwatch timestamp of the first batch.</summary>
    public long Started => Interlocked.Read(ref _started);

    /// <summary>After <see cref="Stop"/>: each batch's send time (Stopwatch) and last sequence number.</summary>
    public ChunkedLog Batches => _batches;

    /// <summary>Stops the stream and waits for the thread.</summary>
    public void Stop()
    {
        _stop = true;
        _thread.Join();
    }

    private void Run()
    {
        if (_realtime)
        {
            var param = 10;
            GotRealtime = Native.SchedSetScheduler(0, Native.SCHED_FIFO, &param) == 0;
        }
        var fd = (int)_socket.Handle;
        var tick = (double)Stopwatch.Frequency / _rate;
        // Wake up about every 100 us: a handful of datagrams per system call.
        var batchTicks = (long)(Stopwatch.Frequency / 10_000.0);
        var start = Stopwatch.GetTimestamp();
        Interlocked.Exchange(ref _started, start);
        long sent = 0;
        while (!_stop)
        {
            var now = Stopwatch.GetTimestamp();
            var due = (long)((now - start) / tick) + 1;
            var n = (int)Math.Min(due - sent, Capacity);
            if (n > 0)
            {
                for (var i = 0; i < n; i++)
                {
                    *(long*)(_payloads + (i * PayloadSize)) = sent + i + 1;
                    _headers[i] = new MMsgHdr
                    {
                        Header = new MsgHdr { Name = _address, NameLength = SockaddrInSize, Iov = &_vecs[i], IovLength = 1 },
                    };
                }
                Interlocked.Exchange(ref _lastSent, sent + n);
                _batches.Add((now, sent + n));
                var done = 0;
                var t0 = Stopwatch.GetTimestamp();
                while (done < n)
                {
                    var r = Native.SendMMsg(fd, _headers + done, (uint)(n - done), 0);
                    if (r > 0)
                    {
                        done += r;
                        continue;
                    }
                    if (Marshal.GetLastPInvokeError() == 4)
                    {
                        continue; // EINTR
                    }
                    // A datagram the kernel refuses (no route for a moment, ICMP error queued):
                    // it is lost at the sender, skipped, and shows up as lost at the receivers.
                    Interlocked.Increment(ref _sendErrors);
                    done++;
                }
                sent += n;
                MaxSendTicks = Math.Max(MaxSendTicks, Stopwatch.GetTimestamp() - t0);
            }
            // Sleep to the next batch; when behind, still give the CPU up briefly (the thread may be
            // real-time: it must never spin).
            var next = start + (long)((sent + Math.Max(1, batchTicks / tick)) * tick);
            var wait = Math.Max(next - Stopwatch.GetTimestamp(), Stopwatch.Frequency / 200_000);
            var s0 = Stopwatch.GetTimestamp();
            Native.SleepTicks(wait);
            MaxOversleepTicks = Math.Max(MaxOversleepTicks, Stopwatch.GetTimestamp() - s0 - wait);
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (!_stop)
        {
            Stop();
        }
        _socket.Dispose();
        NativeMemory.Free(_payloads);
        NativeMemory.Free(_address);
        NativeMemory.Free(_vecs);
        NativeMemory.Free(_headers);
    }
}

/// <summary>
/// Receives the fixed-rate stream on one port inside an instance's namespace with recvmmsg(2) and
/// records, for every datagram, its sequence number and the kernel's receive timestamp
/// (SO_TIMESTAMPNS: when the packet entered the namespace's stack, not when this thread woke up),
/// so the analysis knows which instance got which datagram and exactly when. Datagrams the socket
/// itself dropped (buffer full) are counted apart (SO_RXQ_OVFL).
/// </summary>
internal sealed unsafe class UdpArrivalRecorder : IDisposable
{
    private const int Capacity = 64;
    private const int BufferSize = 256;
    private const int ControlSize = 64;
    private const int NameSize = 16;

    private readonly Socket _socket;
    private readonly Thread _thread;
    private readonly byte* _buffers;
    private readonly byte* _controls;
    private readonly byte* _names;
    private readonly IoVec* _vecs;
    private readonly MMsgHdr* _headers;
    // Small at first (most instances get a few thousand datagrams): no large-object-heap allocation,
    // hence no full GC suspending the sender, while the stream runs.
    private long[] _seq = new long[4096];
    private long[] _ts = new long[4096];
    private int _count;
    private readonly object _grow = new();
    private volatile bool _stop;
    private bool _disposed;

    /// <summary>Starts receiving on <paramref name="port"/> (any IPv4 address) in <paramref name="netns"/>; <paramref name="label"/> names the instance.</summary>
    public UdpArrivalRecorder(string netns, int port, string label)
    {
        Label = label;
        _socket = NsSockets.Udp(netns, AddressFamily.InterNetwork, port);
        try
        {
            _socket.Blocking = true;
            // SO_RCVBUFFORCE (root): room for about half a second of a 50,000/s stream should this
            // thread fall behind (8 MiB was not enough on 2 cores shared with 3 etcd members, 3
            // daemons and ping -f: the socket dropped runs of up to 2,081 datagrams).
            _socket.SetRawSocketOption(1, 33, BitConverter.GetBytes(32 << 20));
            _socket.SetRawSocketOption(1, 35, BitConverter.GetBytes(1)); // SO_TIMESTAMPNS
            _socket.SetRawSocketOption(1, 40, BitConverter.GetBytes(1)); // SO_RXQ_OVFL
            var timeout = new byte[16];
            BitConverter.TryWriteBytes(timeout.AsSpan(8), 50_000L); // 50 ms: look at the stop flag
            _socket.SetRawSocketOption(1, 20, timeout); // SO_RCVTIMEO
        }
        catch
        {
            _socket.Dispose();
            throw;
        }
        _buffers = (byte*)NativeMemory.AllocZeroed(Capacity * BufferSize);
        _controls = (byte*)NativeMemory.AllocZeroed(Capacity * ControlSize);
        _names = (byte*)NativeMemory.AllocZeroed(Capacity * NameSize);
        _vecs = (IoVec*)NativeMemory.AllocZeroed((nuint)(Capacity * sizeof(IoVec)));
        _headers = (MMsgHdr*)NativeMemory.AllocZeroed((nuint)(Capacity * sizeof(MMsgHdr)));
        for (var i = 0; i < Capacity; i++)
        {
            _vecs[i] = new IoVec { Base = _buffers + (i * BufferSize), Length = BufferSize };
        }
        _thread = new Thread(Run) { IsBackground = true, Name = "udp recorder " + label };
        _thread.Start();
    }

    /// <summary>The instance this recorder listens in.</summary>
    public string Label { get; }

    /// <summary>Datagrams the socket dropped for lack of buffer (the kernel's count, SO_RXQ_OVFL).</summary>
    public long SocketDrops { get; private set; }

    /// <summary>Datagrams recorded so far (exact after <see cref="Stop"/>).</summary>
    public int Count => Volatile.Read(ref _count);

    /// <summary>After <see cref="Stop"/>: sequence numbers in arrival order.</summary>
    public ReadOnlySpan<long> Sequences => _seq.AsSpan(0, _count);

    /// <summary>After <see cref="Stop"/>: kernel receive timestamps (CLOCK_REALTIME, ns), same order.</summary>
    public ReadOnlySpan<long> Timestamps => _ts.AsSpan(0, _count);

    /// <summary>Stops after taking whatever is still queued on the socket.</summary>
    public void Stop()
    {
        if (_stop)
        {
            return;
        }
        _stop = true;
        _thread.Join();
    }

    private void Run()
    {
        var fd = (int)_socket.Handle;
        while (true)
        {
            var stopping = _stop;
            // Once asked to stop: one last non-blocking sweep of the queue, then out.
            var n = Receive(fd, stopping ? Native.MSG_DONTWAIT : Native.MSG_WAITFORONE);
            if (n > 0)
            {
                Record(n);
                continue;
            }
            if (stopping)
            {
                return;
            }
        }
    }

    private int Receive(int fd, int flags)
    {
        for (var i = 0; i < Capacity; i++)
        {
            _headers[i] = new MMsgHdr
            {
                Header = new MsgHdr
                {
                    Name = _names + (i * NameSize), NameLength = NameSize, Iov = &_vecs[i], IovLength = 1,
                    Control = _controls + (i * ControlSize), ControlLength = ControlSize,
                },
            };
        }
        while (true)
        {
            var n = Native.RecvMMsg(fd, _headers, Capacity, flags, null);
            if (n >= 0)
            {
                return n;
            }
            var errno = Marshal.GetLastPInvokeError();
            if (errno == 4)
            {
                continue; // EINTR
            }
            return 0; // EAGAIN: timeout, or nothing left
        }
    }

    /// <summary>While it runs: a copy of the sequence numbers recorded so far.</summary>
    public long[] Snapshot()
    {
        lock (_grow)
        {
            return _seq.AsSpan(0, Volatile.Read(ref _count)).ToArray();
        }
    }

    private void Record(int n)
    {
        if (_count + n > _seq.Length)
        {
            lock (_grow)
            {
                Array.Resize(ref _seq, Math.Max(_seq.Length * 2, _count + n));
                Array.Resize(ref _ts, _seq.Length);
            }
        }
        for (var i = 0; i < n; i++)
        {
            ref var h = ref _headers[i];
            if (h.Length < 8)
            {
                continue;
            }
            long ts = 0;
            // Walk the control messages: struct cmsghdr { size_t len; int level; int type; } + data, 8-aligned.
            var c = (byte*)h.Header.Control;
            var end = c + h.Header.ControlLength;
            while (c + 16 <= end)
            {
                var len = (long)*(nuint*)c;
                if (len < 16)
                {
                    break;
                }
                var level = *(int*)(c + 8);
                var type = *(int*)(c + 12);
                if (level == 1 && type == 35 && len >= 32)
                {
                    ts = (*(long*)(c + 16) * 1_000_000_000L) + *(long*)(c + 24);
                }
                else if (level == 1 && type == 40 && len >= 20)
                {
                    SocketDrops = *(uint*)(c + 16);
                }
                c += (len + 7) & ~7L;
            }
            _seq[_count] = *(long*)(_buffers + (i * BufferSize));
            _ts[_count] = ts;
            Volatile.Write(ref _count, _count + 1);
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        Stop();
        _socket.Dispose();
        NativeMemory.Free(_buffers);
        NativeMemory.Free(_controls);
        NativeMemory.Free(_names);
        NativeMemory.Free(_vecs);
        NativeMemory.Free(_headers);
    }
}

/// <summary>
/// An append-only log of (timestamp, value) pairs in 4,096-pair chunks: one writer, read after it
/// stopped. Chunks stay off the large-object heap, so growing it never triggers a full GC.
/// </summary>
internal sealed class ChunkedLog
{
    private const int ChunkSize = 4096;
    private readonly List<(long, long)[]> _chunks = [];
    private int _count;

    /// <summary>Pairs appended.</summary>
    public int Count => _count;

    /// <summary>Pair <paramref name="i"/>.</summary>
    public (long Timestamp, long Value) this[int i] => _chunks[i / ChunkSize][i % ChunkSize];

    /// <summary>Appends a pair.</summary>
    public void Add((long Timestamp, long Value) item)
    {
        if (_count % ChunkSize == 0)
        {
            _chunks.Add(new (long, long)[ChunkSize]);
        }
        _chunks[^1][_count % ChunkSize] = item;
        _count++;
    }
}

internal static unsafe partial class Native
{
    public const int SCHED_FIFO = 1;
    public const int MSG_DONTWAIT = 0x40;
    public const int MSG_WAITFORONE = 0x10000;
    private const int CLOCK_REALTIME = 0;

    [LibraryImport("libc", EntryPoint = "sendmmsg", SetLastError = true)]
    public static partial int SendMMsg(int fd, MMsgHdr* msgvec, uint vlen, int flags);

    [LibraryImport("libc", EntryPoint = "recvmmsg", SetLastError = true)]
    public static partial int RecvMMsg(int fd, MMsgHdr* msgvec, uint vlen, int flags, void* timeout);

    [LibraryImport("libc", EntryPoint = "recvmsg", SetLastError = true)]
    public static partial nint RecvMsg(int fd, MsgHdr* msg, int flags);

    [LibraryImport("libc", EntryPoint = "sched_setscheduler", SetLastError = true)]
    public static partial int SchedSetScheduler(int pid, int policy, int* param);

    [LibraryImport("libc", EntryPoint = "nanosleep", SetLastError = true)]
    private static partial int NanoSleep(long* request, long* remaining);

    [LibraryImport("libc", EntryPoint = "clock_gettime", SetLastError = true)]
    private static partial int ClockGetTime(int clock, long* timespec);

    /// <summary>Sleeps <paramref name="ticks"/> Stopwatch ticks (hrtimer resolution, unlike Thread.Sleep).</summary>
    public static void SleepTicks(long ticks)
    {
        var ns = (long)(ticks * (1_000_000_000.0 / Stopwatch.Frequency));
        var req = stackalloc long[2] { ns / 1_000_000_000L, ns % 1_000_000_000L };
        NanoSleep(req, null);
    }

    /// <summary>CLOCK_REALTIME in ns (the clock of SO_TIMESTAMPNS).</summary>
    public static long RealtimeNs()
    {
        var ts = stackalloc long[2];
        ClockGetTime(CLOCK_REALTIME, ts);
        return (ts[0] * 1_000_000_000L) + ts[1];
    }

    /// <summary>
    /// CLOCK_REALTIME minus the Stopwatch clock, in ns: subtract it from a kernel receive timestamp
    /// to put it on the Stopwatch's time line. The tightest of a few bracketed readings.
    /// </summary>
    public static long RealtimeMinusStopwatchNs()
    {
        var best = long.MaxValue;
        long offset = 0;
        for (var i = 0; i < 9; i++)
        {
            var a = Stopwatch.GetTimestamp();
            var r = RealtimeNs();
            var b = Stopwatch.GetTimestamp();
            if (b - a < best)
            {
                best = b - a;
                offset = r - TicksToNs((a + b) / 2);
            }
        }
        return offset;
    }

    /// <summary>Stopwatch ticks to ns.</summary>
    public static long TicksToNs(long ticks) => Stopwatch.Frequency == 1_000_000_000 ? ticks : (long)(ticks * (1_000_000_000.0 / Stopwatch.Frequency));
}
