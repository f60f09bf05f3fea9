using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Relay.Core.Conntrack;
using Relay.Linux.Conntrack;
using Relay.Linux.Interop;
using Relay.Linux.Namespaces;
using Relay.Linux.Netlink;
using Relay.Linux.Processes;
using Xunit.Abstractions;

namespace Relay.Integration.Tests.Conntrack;

/// <summary>
/// ConntrackFlowTable against the real kernel: the index seeded by a dump, fed by NEW/DESTROY
/// events, drained before every lookup, rebuilt after an overrun. Each test has namespaces of its own.
/// </summary>
public sealed class ConntrackFlowTableTests(ITestOutputHelper output)
{
    private static readonly IPAddress Lo4 = IPAddress.Loopback;
    private static readonly IPAddress Lo6 = IPAddress.IPv6Loopback;
    private static readonly IPAddress Other4 = IPAddress.Parse("127.0.0.2");

    // ---- seed ----

    [Fact]
    public void Open_FlowsCreatedBefore_AreIndexed()
    {
        using var ns = ConntrackTestNamespace.Create("ft");
        ns.SendUdpToPorts(Lo4, 41000, Lo4, 5000, 5);
        ns.SendUdp(Lo6, 41001, Lo6, 5100);
        ns.SendUdp(Lo4, 41002, Other4, 5200);
        var client = ns.OpenClient();

        var table = ns.OpenTable(client);

        Assert.Equal(7, table.Count);
        Assert.Equal(0, table.EventsSeen);
        var v4 = table.Find(Set(Lo4), _ => true);
        Assert.Equal([5000, 5001, 5002, 5003, 5004], v4.Select(e => (int)e.Original.DestinationPort).Order());
        var v6 = Assert.Single(table.Find(Set(Lo6), _ => true));
        Assert.Equal(new ConntrackTuple(Lo6, Lo6, IpProtocols.Udp, 41001, 5100), v6.Original);
        Assert.Equal(new ConntrackTuple(Lo6, Lo6, IpProtocols.Udp, 5100, 41001), v6.Reply);
        Assert.Equal(Keys(client.List()), Keys(table.Find(Set(Lo4, Lo6, Other4), _ => true)));
    }

    [Fact]
    public void Open_EmptyTable_IndexesNothing()
    {
        using var ns = ConntrackTestNamespace.Create("ft");
        var table = ns.OpenTable(ns.OpenClient());

        Assert.Equal(0, table.Count);
        Assert.Empty(table.Find(Set(Lo4, Lo6), _ => true));
        Assert.Equal(0, table.Resyncs);
    }

    // ---- events ----

    [Fact]
    public void Find_FlowCreatedJustBeforeCall_IsAlwaysReturned()
    {
        using var ns = ConntrackTestNamespace.Create("ft");
        var table = ns.OpenTable(ns.OpenClient());
        var destinations = Set(Lo4, Lo6);

        // No sleep between the packet and the lookup: the event is queued on the socket when sendto
        // returns, and only Find's own drain guarantees it is applied before the lookup.
        for (var i = 0; i < 200; i++)
        {
            var loopback = i % 2 == 0 ? Lo4 : Lo6;
            var sourcePort = 30000 + i;
            ns.SendUdp(loopback, sourcePort, loopback, 7000);

            var found = table.Find(destinations, e => e.Original.SourcePort == sourcePort);

            var entry = Assert.Single(found);
            Assert.Equal(new ConntrackTuple(loopback, loopback, IpProtocols.Udp, (ushort)sourcePort, 7000), entry.Original);
        }
        Assert.Equal(200, table.Count);
        Assert.True(table.EventsSeen >= 200, $"EventsSeen {table.EventsSeen}");
        Assert.Equal(0, table.Resyncs);
        Assert.Equal(0, table.MalformedEvents);
    }

    [Fact]
    public void Find_SeveralDestinations_ReturnsOnlyThoseMatchingPredicate()
    {
        using var ns = ConntrackTestNamespace.Create("ft");
        var table = ns.OpenTable(ns.OpenClient());
        ns.SendUdpToPorts(Lo4, 41000, Lo4, 5000, 10);
        ns.SendUdpToPorts(Lo4, 41001, Other4, 5000, 10);
        ns.SendUdpToPorts(Lo6, 41002, Lo6, 5000, 10);

        var both = table.Find(Set(Lo4, Other4), e => e.Original.DestinationPort < 5003);
        var none = table.Find(Set(IPAddress.Parse("10.9.9.9")), _ => true);
        // More destinations asked for than indexed: the table walks its own side instead.
        var many = table.Find(Enumerable.Range(1, 50).Select(i => IPAddress.Parse($"10.0.0.{i}")).Append(Lo6).ToHashSet(), _ => true);

        Assert.Equal(6, both.Count);
        Assert.All(both, e => Assert.NotEqual(Lo6, e.Original.Destination));
        Assert.Empty(none);
        Assert.Equal(10, many.Count);
        Assert.All(many, e => Assert.Equal(Lo6, e.Original.Destination));
    }

    [Fact]
    public void Find_FlowDeletedThroughClient_IsGoneAtOnceWithoutForget()
    {
        using var ns = ConntrackTestNamespace.Create("ft");
        var client = ns.OpenClient();
        var table = ns.OpenTable(client);
        ns.SendUdpToPorts(Lo4, 41000, Lo4, 5000, 4);
        var indexed = table.Find(Set(Lo4), _ => true);
        Assert.Equal(4, indexed.Count);
        var doomed = indexed.Where(e => e.Original.DestinationPort is 5001 or 5003).ToArray();

        Assert.Equal(2, client.Delete(doomed));
        // The kernel queues the DESTROY events before the delete's ack: the drain in Find sees them.
        var left = table.Find(Set(Lo4), _ => true);

        Assert.Equal([5000, 5002], left.Select(e => (int)e.Original.DestinationPort).Order());
        Assert.Equal(2, table.Count);
    }

    [Fact]
    public void Forget_DeletedSeededFlows_RemovesThemAndIsIdempotent()
    {
        using var ns = ConntrackTestNamespace.Create("ft");
        ns.SendUdpToPorts(Lo4, 41000, Lo4, 5000, 3);
        var client = ns.OpenClient();
        var table = ns.OpenTable(client);
        var doomed = table.Find(Set(Lo4), e => e.Original.DestinationPort != 5001);
        Assert.Equal(2, client.Delete(doomed));
        // Entries created before anyone listened have no event cache when nf_conntrack_events is 2 (the
        // default): their DESTROY never comes, and only Forget takes them out.
        var lingering = table.Find(Set(Lo4), e => e.Original.DestinationPort != 5001).Count;
        output.WriteLine($"seeded entries still indexed after their delete, before Forget: {lingering} of 2 (nf_conntrack_events={ns.Exec("cat", "/proc/sys/net/netfilter/nf_conntrack_events").Trim()})");

        table.Forget(doomed);
        table.Forget(doomed);

        var left = Assert.Single(table.Find(Set(Lo4), _ => true));
        Assert.Equal(5001, left.Original.DestinationPort);
        Assert.Equal(1, table.Count);
    }

    [Fact]
    public void Forget_EntryWithSameTupleButOtherReply_KeepsIndexedEntry()
    {
        using var ns = ConntrackTestNamespace.Create("ft");
        var table = ns.OpenTable(ns.OpenClient());
        ns.SendUdp(Lo4, 41000, Lo4, 5000);
        var indexed = Assert.Single(table.Find(Set(Lo4), _ => true));
        // As a flow deleted then re-created by the client's next packet, translated to another instance.
        var elsewhere = indexed with { Reply = indexed.Reply with { Source = Other4 } };
        var otherZone = indexed with { Zone = 9 };

        table.Forget([elsewhere, otherZone]);
        Assert.Same(indexed, Assert.Single(table.Find(Set(Lo4), _ => true)));
        // A copy (say, from a dump) with the same tuples forgets it, whatever its TCP state or mark.
        table.Forget([indexed with { Mark = 77 }]);
        Assert.Empty(table.Find(Set(Lo4), _ => true));
    }

    [Fact]
    public void Find_FlowInNonZeroZone_IsIndexedAndRemovedWithItsZone()
    {
        using var ns = ConntrackTestNamespace.Create("ft");
        var client = ns.OpenClient();
        var table = ns.OpenTable(client);
        ns.SendUdp(Lo4, 41000, Lo4, 5556);

        var entry = Assert.Single(table.Find(Set(Lo4), _ => true));
        Assert.Equal(7, entry.Zone);
        Assert.Equal(1, client.Delete([entry]));

        Assert.Empty(table.Find(Set(Lo4), _ => true));
    }

    [Fact]
    public void Find_TableInOneNamespace_SeesOnlyThatNamespacesFlows()
    {
        using var a = ConntrackTestNamespace.Create("ft");
        using var b = ConntrackTestNamespace.Create("ft");
        var inA = a.OpenTable(a.OpenClient());
        var inB = b.OpenTable(b.OpenClient());

        a.SendUdp(Lo4, 41000, Lo4, 5001);
        b.SendUdp(Lo4, 41000, Lo4, 5002);

        Assert.Equal(5001, Assert.Single(inA.Find(Set(Lo4), _ => true)).Original.DestinationPort);
        Assert.Equal(5002, Assert.Single(inB.Find(Set(Lo4), _ => true)).Original.DestinationPort);
    }

    // ---- overrun ----

    [Fact]
    public void Find_EventsDroppedWhileReaderPaused_ResyncsAndReturnsCompleteSet()
    {
        using var ns = ConntrackTestNamespace.Create("ft");
        var client = ns.OpenClient();
        // The kernel's minimum receive buffer: a handful of events fit.
        var table = ns.OpenTable(client, receiveBufferBytes: 4096);
        ns.SendUdpToPorts(Lo4, 41000, Lo4, 20000, 50);
        // Even these 50 may overrun a queue this small while the reader runs: count resyncs from here.
        var indexed = table.Find(Set(Lo4), _ => true);
        Assert.Equal(50, indexed.Count);
        var resyncsBefore = table.Resyncs;
        var overrunsBefore = table.Overruns;

        using (table.PauseReader())
        {
            // Deleted while events are dropped: only the resync's dump can tell the index.
            Assert.Equal(25, client.Delete(indexed.Where(e => e.Original.DestinationPort < 20025).ToArray()));
            ns.SendUdpToPorts(Lo4, 41001, Lo4, 20000, 3000);
        }
        var found = table.Find(Set(Lo4), _ => true);

        output.WriteLine($"receive buffer {table.ReceiveBufferSize} B, overruns {table.Overruns}, resyncs {table.Resyncs}, events {table.EventsSeen}");
        Assert.True(table.Overruns > overrunsBefore);
        Assert.Equal(resyncsBefore + 1, table.Resyncs);
        Assert.Equal(3025, found.Count);
        Assert.Equal(Keys(client.List()), Keys(found));
        Assert.DoesNotContain(found, e => e.Original.SourcePort == 41000 && e.Original.DestinationPort < 20025);

        // Back to events: a new flow is found without another resync.
        ns.SendUdp(Lo4, 41002, Lo4, 5000);
        Assert.Single(table.Find(Set(Lo4), e => e.Original.SourcePort == 41002));
        Assert.Equal(resyncsBefore + 1, table.Resyncs);
    }

    [Fact]
    public void Find_TinyBufferUnderLoad_StillReturnsCompleteSet()
    {
        using var ns = ConntrackTestNamespace.Create("ft");
        var client = ns.OpenClient();
        var table = ns.OpenTable(client, receiveBufferBytes: 4096);

        // The reader runs, but a few events of queue cannot absorb a burst from another thread.
        ns.SendUdpToPorts(Lo4, 41000, Lo4, 20000, 3000);
        var found = table.Find(Set(Lo4), _ => true);

        output.WriteLine($"overruns {table.Overruns}, resyncs {table.Resyncs}, events {table.EventsSeen}");
        Assert.Equal(3000, found.Count);
        Assert.Equal(Keys(client.List()), Keys(found));
    }

    // ---- parsing ----

    [Fact]
    public void ApplyDatagram_SeveralEventsBatched_AppliesEveryOne()
    {
        using var ns = ConntrackTestNamespace.Create("ft");
        var table = ns.OpenTable(ns.OpenClient());
        var news = Convert.FromHexString(ConntrackFixtures.CapturedDumpHex);

        table.ApplyDatagram(news);

        Assert.Equal(3, table.Count);
        Assert.Equal(3, table.EventsSeen);
        var udp = Assert.Single(table.Find(Set(Lo4), e => e.Original.Protocol == IpProtocols.Udp));
        Assert.Equal(7, udp.Zone);
        Assert.Single(table.Find(Set(Lo6), e => e.TcpState == TcpConntrackState.Established));

        // The same messages as DESTROY events (IPCTNL_MSG_CT_DELETE) take them out again.
        table.ApplyDatagram(WithMessageType(news, CtNetlink.MessageType(CtNetlink.IPCTNL_MSG_CT_DELETE)));

        Assert.Equal(0, table.Count);
        Assert.Equal(6, table.EventsSeen);
        Assert.Equal(0, table.MalformedEvents);
    }

    [Fact]
    public void ApplyDatagram_MalformedEvents_CountsThemAndKeepsIndexCorrect()
    {
        using var ns = ConntrackTestNamespace.Create("ft");
        ns.SendUdp(Lo4, 41000, Lo4, 5000);
        var table = ns.OpenTable(ns.OpenClient());
        // A delete request has no reply tuple: as an event it cannot be parsed.
        var entry = Assert.Single(table.Find(Set(Lo4), _ => true));
        var writer = new NetlinkWriter();
        ConntrackClient.WriteDelete(writer, entry);

        table.ApplyDatagram(writer.WrittenSpan);

        Assert.Equal(1, table.MalformedEvents);
        Assert.Equal(1, table.Count);
        Assert.Equal(0, table.Resyncs);

        // Broken framing loses the rest of the datagram: counted, and the next Find resyncs.
        table.ApplyDatagram([0xff, 0xff, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        var found = table.Find(Set(Lo4), _ => true);

        Assert.Equal(2, table.MalformedEvents);
        Assert.Equal(1, table.Resyncs);
        Assert.Equal(entry, Assert.Single(found));
    }

    // ---- lifetime ----

    [Fact]
    public async Task Dispose_WhileEventsFlow_ReturnsPromptlyAndStopsReader()
    {
        using var ns = ConntrackTestNamespace.Create("ft");
        var table = ns.OpenTable(ns.OpenClient());
        Assert.True(table.IsReaderRunning);
        using var stop = new CancellationTokenSource();
        var traffic = ns.Thread.InvokeAsync(() =>
        {
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
            socket.Bind(new IPEndPoint(Lo4, 0));
            var port = 20000;
            while (!stop.IsCancellationRequested)
            {
                socket.SendTo([1], new IPEndPoint(Lo4, port));
                port = port == 60000 ? 20000 : port + 1;
            }
            return port;
        });
        SpinWait.SpinUntil(() => table.EventsSeen > 100, TimeSpan.FromSeconds(10));

        var timer = Stopwatch.StartNew();
        // WaitAsync throws TimeoutException if Dispose hangs.
        await Task.Run(table.Dispose).WaitAsync(TimeSpan.FromSeconds(10));
        timer.Stop();
        stop.Cancel();
        await traffic.WaitAsync(TimeSpan.FromSeconds(10));

        output.WriteLine($"Dispose took {timer.Elapsed.TotalMilliseconds:F3} ms after {table.EventsSeen} events");
        Assert.False(table.IsReaderRunning);
        Assert.Null(table.ReaderFault);
        Assert.Throws<ObjectDisposedException>(() => table.Find(Set(Lo4), _ => true));
        table.Dispose();
    }

    [Fact]
    public async Task Dispose_IdleTable_ReturnsPromptly()
    {
        using var ns = ConntrackTestNamespace.Create("ft");
        var table = ns.OpenTable(ns.OpenClient());

        await Task.Run(table.Dispose).WaitAsync(TimeSpan.FromSeconds(10));

        Assert.False(table.IsReaderRunning);
    }

    // ---- latency (printed, not asserted) ----

    [Fact]
    public void Find_TenThousandFlowsIndexed_ReportsLatency()
    {
        using var ns = ConntrackTestNamespace.Create("ft");
        var client = ns.OpenClient();
        var table = ns.OpenTable(client);
        ns.SendUdpToPorts(Lo4, 41000, Lo4, 5000, 10);

        var small = Measure(table, Set(Lo4), _ => true, expected: 10);
        output.WriteLine($"10 entries indexed, Find returning 10: {small}");

        ns.SendUdpToPorts(Lo4, 41001, Other4, 20000, 10000);
        // Count does not read queued events; Find does.
        Assert.Equal(10000, table.Find(Set(Other4), _ => true).Count);
        Assert.Equal(10010, table.Count);
        var tenOfMany = Measure(table, Set(Lo4), _ => true, expected: 10);
        var oneOfTenThousand = Measure(table, Set(Other4), e => e.Original.DestinationPort == 25000, expected: 1);
        var allTenThousand = Measure(table, Set(Other4), _ => true, expected: 10000);
        output.WriteLine($"10,010 entries indexed, Find returning the 10 of one destination: {tenOfMany}");
        output.WriteLine($"10,010 entries indexed, Find filtering 10,000 of one destination down to 1: {oneOfTenThousand}");
        output.WriteLine($"10,010 entries indexed, Find returning all 10,000 of one destination: {allTenThousand}");

        var dump = Stopwatch.StartNew();
        var listed = client.List();
        dump.Stop();
        output.WriteLine($"for comparison, one dump (List) of the same {listed.Count} entries: {dump.Elapsed.TotalMilliseconds:F2} ms");
    }

    // ---- helpers ----

    private static string Measure(ConntrackFlowTable table, IReadOnlySet<IPAddress> destinations, Func<ConntrackEntry, bool> predicate, int expected)
    {
        for (var i = 0; i < 200; i++)
        {
            Assert.Equal(expected, table.Find(destinations, predicate).Count);
        }
        const int Runs = 2000;
        var samples = new double[Runs];
        for (var i = 0; i < Runs; i++)
        {
            var start = Stopwatch.GetTimestamp();
            table.Find(destinations, predicate);
            samples[i] = Stopwatch.GetElapsedTime(start).TotalMicroseconds;
        }
        Array.Sort(samples);
        return $"median {samples[Runs / 2]:F1} us, p99 {samples[Runs * 99 / 100]:F1} us, max {samples[^1]:F1} us ({Runs} calls)";
    }

    private static HashSet<IPAddress> Set(params IPAddress[] addresses) => [.. addresses];

    private static HashSet<(ConntrackTuple, ushort)> Keys(IEnumerable<ConntrackEntry> entries)
        => entries.Select(e => (e.Original, e.Zone)).ToHashSet();

    /// <summary>A copy of <paramref name="datagram"/> with every message's nlmsg_type set to <paramref name="type"/>, control messages aside.</summary>
    private static byte[] WithMessageType(byte[] datagram, ushort type)
    {
        var copy = (byte[])datagram.Clone();
        var offset = 0;
        while (offset + Libc.NLMSG_HDRLEN <= copy.Length)
        {
            var length = MemoryMarshal.Read<uint>(copy.AsSpan(offset));
            if (MemoryMarshal.Read<ushort>(copy.AsSpan(offset + 4)) >= 0x10)
            {
                MemoryMarshal.Write(copy.AsSpan(offset + 4), in type);
            }
            offset += NetlinkWriter.Align((int)length);
        }
        return copy;
    }
}
