using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text.RegularExpressions;
using Relay.Core.Conntrack;
using Relay.Linux.Conntrack;
using Relay.Linux.Interop;
using Relay.Linux.Namespaces;
using Relay.Linux.Netlink;
using Relay.Linux.Processes;

namespace Relay.Integration.Tests.Conntrack;

/// <summary>
/// ConntrackClient against the real kernel, each test in network namespaces of its own, plus the
/// wire format (delete messages, dump parsing) checked without the kernel.
/// </summary>
public sealed class ConntrackClientTests
{
    private static readonly IPAddress Lo4 = IPAddress.Loopback;
    private static readonly IPAddress Lo6 = IPAddress.IPv6Loopback;

    // ---- kernel: List ----

    [Fact]
    public void List_UdpOverLoopback_ReportsAddressesAndPortsForBothFamilies()
    {
        using var ns = ConntrackTestNamespace.Create("ct");
        ns.SendUdp(Lo4, 41001, Lo4, 5001);
        ns.SendUdp(Lo6, 41002, Lo6, 5002);
        var client = ns.OpenClient();

        var entries = client.List();

        var v4 = Assert.Single(entries, e => e.Original.DestinationPort == 5001);
        Assert.Equal(new ConntrackTuple(Lo4, Lo4, IpProtocols.Udp, 41001, 5001), v4.Original);
        Assert.Equal(new ConntrackTuple(Lo4, Lo4, IpProtocols.Udp, 5001, 41001), v4.Reply);
        Assert.Null(v4.TcpState);
        Assert.Equal(0, v4.Zone);
        var v6 = Assert.Single(entries, e => e.Original.DestinationPort == 5002);
        Assert.Equal(new ConntrackTuple(Lo6, Lo6, IpProtocols.Udp, 41002, 5002), v6.Original);
        Assert.Equal(new ConntrackTuple(Lo6, Lo6, IpProtocols.Udp, 5002, 41002), v6.Reply);
        Assert.Equal(ConntrackCliKeys(ns), entries.Select(Key).ToHashSet());
    }

    [Fact]
    public void List_UdpAcrossVethPair_ReportsBothEndsAddresses()
    {
        using var a = ConntrackTestNamespace.Create("ct");
        using var b = ConntrackTestNamespace.Create("ct", conntrackRules: false);
        IpCommand.Run(["-n", a.Name, "link", "add", "ct0", "type", "veth", "peer", "name", "ct1", "netns", b.Name]);
        IpCommand.Batch(a.Name, ["addr add 10.77.0.1/24 dev ct0", "addr add fd00:77::1/64 dev ct0 nodad", "link set ct0 up"]);
        IpCommand.Batch(b.Name, ["addr add 10.77.0.2/24 dev ct1", "addr add fd00:77::2/64 dev ct1 nodad", "link set ct1 up"]);
        var a4 = IPAddress.Parse("10.77.0.1");
        var b4 = IPAddress.Parse("10.77.0.2");
        var a6 = IPAddress.Parse("fd00:77::1");
        var b6 = IPAddress.Parse("fd00:77::2");
        a.SendUdp(a4, 42001, b4, 5353);
        a.SendUdp(a6, 42002, b6, 5354);
        var client = a.OpenClient();

        var entries = client.List();

        var v4 = Assert.Single(entries, e => e.Original.Protocol == IpProtocols.Udp && e.Original.DestinationPort == 5353);
        Assert.Equal(new ConntrackTuple(a4, b4, IpProtocols.Udp, 42001, 5353), v4.Original);
        Assert.Equal(new ConntrackTuple(b4, a4, IpProtocols.Udp, 5353, 42001), v4.Reply);
        var v6 = Assert.Single(entries, e => e.Original.Protocol == IpProtocols.Udp && e.Original.DestinationPort == 5354);
        Assert.Equal(new ConntrackTuple(a6, b6, IpProtocols.Udp, 42002, 5354), v6.Original);
        Assert.Equal(new ConntrackTuple(b6, a6, IpProtocols.Udp, 5354, 42002), v6.Reply);
    }

    [Fact]
    public void List_Ping_ReportsIcmpEntriesWithIdTypeAndCode()
    {
        using var ns = ConntrackTestNamespace.Create("ct");
        ns.Exec("ping", "-c1", "-W2", "127.0.0.1");
        ns.Exec("ping", "-6", "-c1", "-W2", "::1");
        var client = ns.OpenClient();

        var entries = client.List();

        var icmp = Assert.Single(entries, e => e.Original.Protocol == IpProtocols.Icmp);
        Assert.Equal(Lo4, icmp.Original.Source);
        Assert.Equal(Lo4, icmp.Original.Destination);
        Assert.Equal(8, icmp.Original.IcmpType); // echo request
        Assert.Equal(0, icmp.Original.IcmpCode);
        Assert.Equal(0, icmp.Reply.IcmpType); // echo reply
        Assert.Equal(icmp.Original.IcmpId, icmp.Reply.IcmpId);
        var icmp6 = Assert.Single(entries, e => e.Original.Protocol == IpProtocols.Icmpv6);
        Assert.Equal(Lo6, icmp6.Original.Source);
        Assert.Equal(128, icmp6.Original.IcmpType); // echo request
        Assert.Equal(129, icmp6.Reply.IcmpType); // echo reply
        // The ids are ping's own; conntrack(8) reads the same table and must agree.
        Assert.Equal(ConntrackCliKeys(ns), entries.Select(Key).ToHashSet());
    }

    [Fact]
    public void List_EstablishedTcpConnection_ReportsEstablishedState()
    {
        using var ns = ConntrackTestNamespace.Create("ct");
        ns.OpenTcpConnection(Lo4, 43001, 8080);
        ns.OpenTcpConnection(Lo6, 43002, 8081);
        var client = ns.OpenClient();

        var entries = client.List();

        var v4 = Assert.Single(entries, e => e.Original.Protocol == IpProtocols.Tcp && e.Original.DestinationPort == 8080);
        Assert.Equal(new ConntrackTuple(Lo4, Lo4, IpProtocols.Tcp, 43001, 8080), v4.Original);
        Assert.Equal(TcpConntrackState.Established, v4.TcpState);
        var v6 = Assert.Single(entries, e => e.Original.Protocol == IpProtocols.Tcp && e.Original.DestinationPort == 8081);
        Assert.Equal(new ConntrackTuple(Lo6, Lo6, IpProtocols.Tcp, 43002, 8081), v6.Original);
        Assert.Equal(TcpConntrackState.Established, v6.TcpState);
    }

    [Fact]
    public void List_FamilyGiven_ReturnsOnlyThatFamily()
    {
        using var ns = ConntrackTestNamespace.Create("ct");
        ns.SendUdp(Lo4, 41001, Lo4, 5001);
        ns.SendUdp(Lo6, 41002, Lo6, 5002);
        var client = ns.OpenClient();

        var v4 = client.List(AddressFamily.InterNetwork);
        var v6 = client.List(AddressFamily.InterNetworkV6);

        Assert.Equal(5001, Assert.Single(v4).Original.DestinationPort);
        Assert.Equal(5002, Assert.Single(v6).Original.DestinationPort);
        Assert.Equal(2, client.List().Count);
    }

    [Fact]
    public void List_ZoneAndMarkSet_ReportsThem()
    {
        using var ns = ConntrackTestNamespace.Create("ct");
        ns.SendUdp(Lo4, 41003, Lo4, 5556);
        var client = ns.OpenClient();

        var entry = Assert.Single(client.List(), e => e.Original.DestinationPort == 5556);

        Assert.Equal(7, entry.Zone);
        Assert.Equal(42u, entry.Mark);
    }

    [Fact]
    public void List_ClientOpenedInOneNamespace_SeesOnlyThatNamespace()
    {
        using var a = ConntrackTestNamespace.Create("ct");
        using var b = ConntrackTestNamespace.Create("ct");
        a.SendUdp(Lo4, 41001, Lo4, 5001);
        b.SendUdp(Lo4, 41001, Lo4, 5002);

        var inA = a.OpenClient().List();
        var inB = b.OpenClient().List();

        Assert.Equal(5001, Assert.Single(inA).Original.DestinationPort);
        Assert.Equal(5002, Assert.Single(inB).Original.DestinationPort);
    }

    [Fact]
    public void List_ConcurrentCallersOnOneClient_AllSeeTheWholeTable()
    {
        using var ns = ConntrackTestNamespace.Create("ct");
        ns.SendUdpToPorts(Lo4, 41000, Lo4, 20000, 300);
        var client = ns.OpenClient();

        var counts = new int[16];
        Parallel.For(0, counts.Length, new ParallelOptions { MaxDegreeOfParallelism = 8 }, i => counts[i] = client.List().Count);

        Assert.All(counts, c => Assert.Equal(300, c));
    }

    [Fact]
    public void List_EmptyTable_ReturnsEmpty()
    {
        using var ns = ConntrackTestNamespace.Create("ct");
        var client = ns.OpenClient();

        Assert.Empty(client.List());
    }

    [Fact]
    public void List_AfterDispose_ThrowsObjectDisposed()
    {
        using var ns = ConntrackTestNamespace.Create("ct");
        var client = ns.OpenClient();
        client.Dispose();

        Assert.Throws<ObjectDisposedException>(() => client.List());
    }

    // ---- kernel: Delete ----

    [Fact]
    public void Delete_SomeOfSeveralEntries_RemovesExactlyThoseAndLeavesOthers()
    {
        using var ns = ConntrackTestNamespace.Create("ct");
        for (var i = 1; i <= 5; i++)
        {
            ns.SendUdp(Lo4, 41000 + i, Lo4, 6000 + i);
        }
        ns.SendUdp(Lo6, 41010, Lo6, 6010);
        ns.OpenTcpConnection(Lo4, 43001, 8080);
        ns.Exec("ping", "-c1", "-W2", "127.0.0.1");
        ns.Exec("ping", "-6", "-c1", "-W2", "::1");
        var client = ns.OpenClient();
        var before = client.List();
        var doomed = before.Where(e =>
            e.Original.DestinationPort is 6001 or 6003 or 6010 or 8080
            || e.Original.Protocol is IpProtocols.Icmp or IpProtocols.Icmpv6).ToArray();
        Assert.Equal(6, doomed.Length);

        var deleted = client.Delete(doomed);

        Assert.Equal(6, deleted);
        var after = client.List();
        Assert.Equal(before.Except(doomed).Select(Key).ToHashSet(), after.Select(Key).ToHashSet());
        Assert.Equal(after.Select(Key).ToHashSet(), ConntrackCliKeys(ns));
    }

    [Fact]
    public void Delete_AlreadyDeletedEntry_ReturnsZeroAndDoesNotThrow()
    {
        using var ns = ConntrackTestNamespace.Create("ct");
        ns.SendUdp(Lo4, 41001, Lo4, 5001);
        var client = ns.OpenClient();
        var entry = Assert.Single(client.List());
        Assert.Equal(1, client.Delete([entry]));

        var again = client.Delete([entry]);

        Assert.Equal(0, again);
        Assert.Empty(client.List());
    }

    [Fact]
    public void Delete_SameEntryTwiceInOneCall_CountsItOnce()
    {
        using var ns = ConntrackTestNamespace.Create("ct");
        ns.SendUdp(Lo4, 41001, Lo4, 5001);
        var client = ns.OpenClient();
        var entry = Assert.Single(client.List());

        Assert.Equal(1, client.Delete([entry, entry]));
    }

    [Fact]
    public void Delete_TwoThousandEntries_DeletesAllInOneCall()
    {
        using var ns = ConntrackTestNamespace.Create("ct");
        ns.SendUdpToPorts(Lo4, 41000, Lo4, 20000, 2000);
        ns.SendUdp(Lo4, 41999, Lo4, 5001);
        var client = ns.OpenClient();
        var all = client.List();
        var doomed = all.Where(e => e.Original.DestinationPort is >= 20000 and < 22000).ToArray();
        Assert.Equal(2000, doomed.Length);

        var deleted = client.Delete(doomed);

        Assert.Equal(2000, deleted);
        var left = Assert.Single(client.List());
        Assert.Equal(5001, left.Original.DestinationPort);
        Assert.Equal(0, client.Delete(doomed));
    }

    [Fact]
    public void Delete_EntryInNonZeroZone_MatchesOnlyWithItsZone()
    {
        using var ns = ConntrackTestNamespace.Create("ct");
        ns.SendUdp(Lo4, 41003, Lo4, 5556);
        var client = ns.OpenClient();
        var entry = Assert.Single(client.List());
        Assert.Equal(7, entry.Zone);

        var wrongZone = client.Delete([entry with { Zone = 0 }]);
        var stillThere = client.List();
        var rightZone = client.Delete([entry]);

        Assert.Equal(0, wrongZone);
        Assert.Single(stillThere);
        Assert.Equal(1, rightZone);
        Assert.Empty(client.List());
    }

    [Fact]
    public void Delete_EntryWithoutTuple_ThrowsBeforeSendingAnything()
    {
        using var ns = ConntrackTestNamespace.Create("ct");
        ns.SendUdp(Lo4, 41001, Lo4, 5001);
        ns.SendUdp(Lo4, 41002, Lo4, 5002);
        var client = ns.OpenClient();
        var good = client.List().First(e => e.Original.DestinationPort == 5001);
        var broken = new ConntrackEntry(null!, good.Reply);
        var mixed = good with { Original = good.Original with { Destination = Lo6 } };

        Assert.Throws<ArgumentException>(() => client.Delete([good, broken]));
        Assert.Throws<ArgumentException>(() => client.Delete([good, mixed]));

        // Neither call deleted anything, and in particular nothing was flushed.
        Assert.Equal(2, client.List().Count);
    }

    [Fact]
    public void Delete_EmptyCollection_ReturnsZero()
    {
        using var ns = ConntrackTestNamespace.Create("ct");
        ns.SendUdp(Lo4, 41001, Lo4, 5001);
        var client = ns.OpenClient();

        Assert.Equal(0, client.Delete([]));
        Assert.Single(client.List());
    }

    // ---- wire format, no kernel ----

    [Fact]
    public void WriteDelete_Ipv4UdpEntry_ContainsOriginalTupleAndNoFlush()
    {
        var entry = new ConntrackEntry(
            new ConntrackTuple(IPAddress.Parse("10.1.2.3"), IPAddress.Parse("10.9.8.7"), IpProtocols.Udp, 1234, 53),
            new ConntrackTuple(IPAddress.Parse("10.9.8.7"), IPAddress.Parse("10.1.2.3"), IpProtocols.Udp, 53, 1234));
        var writer = new NetlinkWriter();

        ConntrackClient.WriteDelete(writer, entry);

        var message = SingleMessage(writer.WrittenSpan, out var type, out var flags, out var family);
        Assert.Equal((1 << 8) | 2, type); // NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_DELETE
        Assert.Equal(Libc.NLM_F_REQUEST | Libc.NLM_F_ACK, flags);
        Assert.Equal(2, family); // AF_INET
        var tuple = DecodeDelete(message, out var zone);
        Assert.Equal(entry.Original, tuple);
        Assert.Null(zone);
        Assert.Equal(0, writer.Length % 4);
    }

    [Fact]
    public void WriteDelete_Ipv6TcpEntryInZone_ContainsOriginalTupleAndZone()
    {
        var entry = new ConntrackEntry(
            new ConntrackTuple(IPAddress.Parse("fd00::1"), IPAddress.Parse("fd00::2"), IpProtocols.Tcp, 40000, 443),
            new ConntrackTuple(IPAddress.Parse("fd00::2"), IPAddress.Parse("fd00::1"), IpProtocols.Tcp, 443, 40000),
            TcpConntrackState.Established,
            Zone: 300);
        var writer = new NetlinkWriter();

        ConntrackClient.WriteDelete(writer, entry);

        var message = SingleMessage(writer.WrittenSpan, out _, out _, out var family);
        Assert.Equal(10, family); // AF_INET6
        Assert.Equal(entry.Original, DecodeDelete(message, out var zone));
        Assert.Equal((ushort)300, zone);
    }

    [Fact]
    public void WriteDelete_IcmpEntry_ContainsIdTypeAndCode()
    {
        var entry = new ConntrackEntry(
            new ConntrackTuple(Lo4, Lo4, IpProtocols.Icmp, IcmpId: 0xBEEF, IcmpType: 8),
            new ConntrackTuple(Lo4, Lo4, IpProtocols.Icmp, IcmpId: 0xBEEF));
        var writer = new NetlinkWriter();

        ConntrackClient.WriteDelete(writer, entry);

        Assert.Equal(entry.Original, DecodeDelete(SingleMessage(writer.WrittenSpan, out _, out _, out _), out _));
    }

    [Fact]
    public void WriteDelete_EntryWithoutOriginalTuple_ThrowsAndWritesNothing()
    {
        var writer = new NetlinkWriter();

        Assert.Throws<ArgumentException>(() => ConntrackClient.WriteDelete(writer, new ConntrackEntry(null!, null!)));
        Assert.Equal(0, writer.Length);
    }

    [Fact]
    public void ParseDump_CapturedKernelDump_ReturnsEveryEntry()
    {
        var entries = ConntrackClient.ParseDump(Convert.FromHexString(ConntrackFixtures.CapturedDumpHex));

        Assert.Equal(3, entries.Count);
        var icmp = entries[0];
        Assert.Equal(new ConntrackTuple(Lo4, Lo4, IpProtocols.Icmp, IcmpId: 8092, IcmpType: 8), icmp.Original);
        Assert.Equal(new ConntrackTuple(Lo4, Lo4, IpProtocols.Icmp, IcmpId: 8092, IcmpType: 0), icmp.Reply);
        Assert.Null(icmp.TcpState);
        var tcp = entries[1];
        Assert.Equal(new ConntrackTuple(Lo6, Lo6, IpProtocols.Tcp, 40002, 8080), tcp.Original);
        Assert.Equal(new ConntrackTuple(Lo6, Lo6, IpProtocols.Tcp, 8080, 40002), tcp.Reply);
        Assert.Equal(TcpConntrackState.Established, tcp.TcpState);
        var udp = entries[2];
        Assert.Equal(new ConntrackTuple(Lo4, Lo4, IpProtocols.Udp, 40001, 5556), udp.Original);
        Assert.Equal((ushort)7, udp.Zone);
        Assert.Equal(42u, udp.Mark);
    }

    [Fact]
    public void ParseDump_ErrorReply_ThrowsTypedSystemCallException()
    {
        var buffer = new byte[36];
        WriteHeader(buffer, 36, Libc.NLMSG_ERROR, 0, 1);
        var status = -(int)Errno.EPERM;
        MemoryMarshal.Write(buffer.AsSpan(16), in status);
        WriteHeader(buffer.AsSpan(20), 16, (ushort)((1 << 8) | 1), Libc.NLM_F_REQUEST | Libc.NLM_F_DUMP, 1);

        var e = Assert.Throws<SystemCallException>(() => ConntrackClient.ParseDump(buffer));

        Assert.Equal(Errno.EPERM, e.Errno);
    }

    [Fact]
    public void ParseDump_DoneWithNegativeStatus_ThrowsTypedSystemCallException()
    {
        var buffer = new byte[20];
        WriteHeader(buffer, 20, Libc.NLMSG_DONE, Libc.NLM_F_MULTI, 1);
        var status = -(int)Errno.ENOMEM;
        MemoryMarshal.Write(buffer.AsSpan(16), in status);

        var e = Assert.Throws<SystemCallException>(() => ConntrackClient.ParseDump(buffer));

        Assert.Equal(Errno.ENOMEM, e.Errno);
    }

    [Fact]
    public void ParseDump_EveryTruncation_ReturnsPartOrThrowsInvalidData()
    {
        var full = Convert.FromHexString(ConntrackFixtures.CapturedDumpHex);
        for (var length = 0; length < full.Length; length++)
        {
            var prefix = full.AsSpan(0, length).ToArray();
            var outcome = Record.Exception(() => ConntrackClient.ParseDump(prefix));
            Assert.True(outcome is null or InvalidDataException, $"length {length}: {outcome}");
        }
    }

    [Fact]
    public void ParseDump_RandomlyCorruptedOrGarbageBytes_ThrowsOnlyCleanExceptions()
    {
        var original = Convert.FromHexString(ConntrackFixtures.CapturedDumpHex);
        // Fixed seed: a failure is reproducible; the iteration number is in the message.
        var random = new Random(20240611);
        for (var i = 0; i < 20000; i++)
        {
            byte[] bytes;
            switch (i % 3)
            {
                case 0:
                    bytes = (byte[])original.Clone();
                    for (var flips = random.Next(1, 6); flips > 0; flips--)
                    {
                        bytes[random.Next(bytes.Length)] = (byte)random.Next(256);
                    }
                    break;
                case 1:
                    bytes = original.AsSpan(0, random.Next(original.Length)).ToArray();
                    if (bytes.Length > 0)
                    {
                        bytes[random.Next(bytes.Length)] ^= (byte)(1 << random.Next(8));
                    }
                    break;
                default:
                    bytes = new byte[random.Next(0, 256)];
                    random.NextBytes(bytes);
                    break;
            }

            var outcome = Record.Exception(() => ConntrackClient.ParseDump(bytes));

            Assert.True(outcome is null or InvalidDataException or SystemCallException, $"iteration {i}: {outcome}");
        }
    }

    [Fact]
    public void NetlinkWriter_NestedAttributes_AreAlignedFlaggedAndSized()
    {
        var writer = new NetlinkWriter(8);
        var message = writer.BeginMessage(0x0101, Libc.NLM_F_REQUEST, 42);
        writer.WriteNfGenMsg(2);
        var nest = writer.BeginNested(1);
        writer.WriteU8(1, 0xAA);
        writer.WriteU16BigEndian(2, 0x1234);
        writer.EndNested(nest);
        writer.EndMessage(message);

        var bytes = writer.WrittenSpan.ToArray();
        Assert.Equal(16 + 4 + 4 + 8 + 8, bytes.Length);
        Assert.Equal((uint)bytes.Length, MemoryMarshal.Read<uint>(bytes));
        Assert.Equal(42u, MemoryMarshal.Read<uint>(bytes.AsSpan(8)));
        Assert.Equal((ushort)20, MemoryMarshal.Read<ushort>(bytes.AsSpan(20))); // nest length includes padded children
        Assert.Equal((ushort)(1 | Libc.NLA_F_NESTED), MemoryMarshal.Read<ushort>(bytes.AsSpan(22)));
        Assert.Equal((ushort)5, MemoryMarshal.Read<ushort>(bytes.AsSpan(24))); // u8 attribute: unpadded length
        Assert.Equal(new byte[] { 0xAA, 0, 0, 0 }, bytes.AsSpan(28, 4).ToArray());
        Assert.Equal(new byte[] { 0x12, 0x34 }, bytes.AsSpan(36, 2).ToArray()); // big-endian
    }

    // ---- helpers ----

    /// <summary>A comparable identity for an entry: protocol, original addresses and ports (or ICMP id).</summary>
    /// <summary>What conntrack(8) lists in this namespace, as <see cref="Key(ConntrackEntry)"/> strings.</summary>
    private static HashSet<string> ConntrackCliKeys(ConntrackTestNamespace ns)
    {
        var keys = new HashSet<string>();
        foreach (var line in ns.Exec("conntrack", "-L").Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var m = Regex.Match(line, @"^(\S+)\s+\d+\s+.*?src=(\S+) dst=(\S+) (?:sport=(\d+) dport=(\d+)|type=\d+ code=\d+ id=(\d+))");
            Assert.True(m.Success, $"unparsed conntrack line: {line}");
            var rest = m.Groups[6].Success ? $"id={m.Groups[6].Value}" : $"{m.Groups[4].Value}>{m.Groups[5].Value}";
            keys.Add(Key(m.Groups[1].Value, m.Groups[2].Value, m.Groups[3].Value, rest));
        }
        return keys;
    }

    private static string Key(ConntrackEntry e) => Key(IpProtocols.Name(e.Original.Protocol), e.Original.Source.ToString(), e.Original.Destination.ToString(),
        e.Original.Protocol is IpProtocols.Icmp or IpProtocols.Icmpv6 ? $"id={e.Original.IcmpId}" : $"{e.Original.SourcePort}>{e.Original.DestinationPort}");

    private static string Key(string protocol, string source, string destination, string rest) => $"{protocol} {source} {destination} {rest}";

    private static void WriteHeader(Span<byte> span, uint length, ushort type, ushort flags, uint sequence)
    {
        MemoryMarshal.Write(span, in length);
        MemoryMarshal.Write(span[4..], in type);
        MemoryMarshal.Write(span[6..], in flags);
        MemoryMarshal.Write(span[8..], in sequence);
    }

    private static byte[] SingleMessage(ReadOnlySpan<byte> bytes, out ushort type, out ushort flags, out byte family)
    {
        var reader = new NetlinkReader(bytes);
        Assert.True(reader.TryRead(out var message));
        type = message.Type;
        flags = message.Flags;
        family = message.Payload[0];
        var payload = message.Payload.ToArray();
        Assert.False(reader.TryRead(out _));
        return payload;
    }

    /// <summary>Decodes a delete request's payload; fails the test unless CTA_TUPLE_ORIG is present and first.</summary>
    private static ConntrackTuple DecodeDelete(byte[] payload, out ushort? zone)
    {
        zone = null;
        ConntrackTuple? tuple = null;
        var attributes = new NetlinkAttributeReader(payload.AsSpan(4));
        var first = true;
        while (attributes.TryRead(out var attribute))
        {
            if (first)
            {
                Assert.Equal(CtNetlink.CTA_TUPLE_ORIG, attribute.Type);
                Assert.True(attribute.IsNested);
                first = false;
            }
            if (attribute.Type == CtNetlink.CTA_TUPLE_ORIG)
            {
                tuple = DecodeTuple(attribute.GetNested());
            }
            else if (attribute.Type == CtNetlink.CTA_ZONE)
            {
                zone = attribute.GetU16BigEndian();
            }
            else
            {
                Assert.Fail($"unexpected attribute {attribute.Type} in a delete");
            }
        }
        return Assert.IsType<ConntrackTuple>(tuple);
    }

    private static ConntrackTuple DecodeTuple(NetlinkAttributeReader attributes)
    {
        IPAddress? source = null, destination = null;
        byte protocol = 0, icmpType = 0, icmpCode = 0;
        ushort sourcePort = 0, destinationPort = 0, icmpId = 0;
        var sawIcmpFields = 0;
        while (attributes.TryRead(out var attribute))
        {
            var inner = attribute.GetNested();
            while (inner.TryRead(out var a))
            {
                switch (attribute.Type, a.Type)
                {
                    case (CtNetlink.CTA_TUPLE_IP, CtNetlink.CTA_IP_V4_SRC or CtNetlink.CTA_IP_V6_SRC):
                        source = new IPAddress(a.Payload);
                        break;
                    case (CtNetlink.CTA_TUPLE_IP, CtNetlink.CTA_IP_V4_DST or CtNetlink.CTA_IP_V6_DST):
                        destination = new IPAddress(a.Payload);
                        break;
                    case (CtNetlink.CTA_TUPLE_PROTO, CtNetlink.CTA_PROTO_NUM):
                        protocol = a.GetU8();
                        break;
                    case (CtNetlink.CTA_TUPLE_PROTO, CtNetlink.CTA_PROTO_SRC_PORT):
                        sourcePort = a.GetU16BigEndian();
                        break;
                    case (CtNetlink.CTA_TUPLE_PROTO, CtNetlink.CTA_PROTO_DST_PORT):
                        destinationPort = a.GetU16BigEndian();
                        break;
                    case (CtNetlink.CTA_TUPLE_PROTO, CtNetlink.CTA_PROTO_ICMP_ID or CtNetlink.CTA_PROTO_ICMPV6_ID):
                        icmpId = a.GetU16BigEndian();
                        sawIcmpFields++;
                        break;
                    case (CtNetlink.CTA_TUPLE_PROTO, CtNetlink.CTA_PROTO_ICMP_TYPE or CtNetlink.CTA_PROTO_ICMPV6_TYPE):
                        icmpType = a.GetU8();
                        sawIcmpFields++;
                        break;
                    case (CtNetlink.CTA_TUPLE_PROTO, CtNetlink.CTA_PROTO_ICMP_CODE or CtNetlink.CTA_PROTO_ICMPV6_CODE):
                        icmpCode = a.GetU8();
                        sawIcmpFields++;
                        break;
                    default:
                        Assert.Fail($"unexpected attribute {attribute.Type}/{a.Type} in a tuple");
                        break;
                }
            }
        }
        if (protocol is IpProtocols.Icmp or IpProtocols.Icmpv6)
        {
            // The kernel rejects an ICMP tuple missing any of the three.
            Assert.Equal(3, sawIcmpFields);
        }
        Assert.NotNull(source);
        Assert.NotNull(destination);
        return new ConntrackTuple(source, destination, protocol, sourcePort, destinationPort, icmpId, icmpType, icmpCode);
    }
}
