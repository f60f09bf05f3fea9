// Decision 003: parse an A query and build its A response, per query, with two DNS message
// libraries and with Relay's own codec; ns/op and bytes allocated/op on this machine.
// Run: dotnet run -c Release --project bench/Relay.DnsCodecBench [-- --quick]
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Reflection;
using Relay.Core.Dns;
using Relay.Core.Model;
using ArDns = ARSoft.Tools.Net.Dns;
using MkDns = Makaretu.Dns;

var quick = args.Contains("--quick");
var roundTime = TimeSpan.FromMilliseconds(quick ? 200 : 1000);
var rounds = quick ? 3 : 7;

// A network of 1,000 services; the query asks for one of them, as dig and resolvers send it:
// RD set, and in the EDNS variant an OPT record advertising 1232 bytes.
const int Services = 1000;
var vip = (int i) => new IPAddress([10, 99, (byte)(i >> 8), (byte)i]);
var vip6 = (int i) => IPAddress.Parse($"fd00::{i:x}");
var names = NameTable.Build(Enumerable.Range(0, Services).Select(i => new DnsServiceEntry(
    $"svc{i}.relay.internal", vip(i), vip6(i), [new PortMapping(TransportProtocol.Tcp, 80, 8080)], false)));
var options = new DnsOptions();
var mkTable = Enumerable.Range(0, Services).ToDictionary(i => new MkDns.DomainName($"svc{i}.relay.internal"), vip);
var arTable = Enumerable.Range(0, Services).ToDictionary(i => ARSoft.Tools.Net.DomainName.Parse($"svc{i}.relay.internal"), vip);

var encode = typeof(ArDns.DnsMessageBase).GetMethod("Encode", BindingFlags.NonPublic | BindingFlags.Instance, Type.EmptyTypes)
    ?.CreateDelegate<Func<ArDns.DnsMessageBase, object>>();
var lengthOf = encode?.Method.ReturnType.GetProperty("Length");

Console.WriteLine($"# DNS codec benchmark: {Environment.ProcessorCount} cores, {Cpu()}, .NET {Environment.Version}, {Services} services");
Console.WriteLine();
Console.WriteLine("| codec | query | ns/op | bytes allocated/op | response bytes |");
Console.WriteLine("|---|---|---:|---:|---:|");
foreach (var edns in new[] { false, true })
{
    var query = Query(0x1234, "svc500.relay.internal", edns);
    var variant = edns ? "A, EDNS" : "A";
    var response = new byte[65535];
    var client = IPAddress.Loopback;

    Run("hand-rolled (Relay.Core.Dns)", variant, () =>
        DnsResolver.Respond(query, response, overTcp: false, client, names, options, null).Length);

    Run("Makaretu.Dns 2.0.1", variant, () =>
    {
        var msg = new MkDns.Message();
        msg.Read(query);
        var q = msg.Questions[0];
        var reply = msg.CreateResponse();
        reply.AA = true;
        if (mkTable.TryGetValue(q.Name, out var address))
        {
            reply.Answers.Add(new MkDns.ARecord { Name = q.Name, Address = address, TTL = TimeSpan.FromSeconds(5) });
        }
        else
        {
            reply.Status = MkDns.MessageStatus.NameError;
        }
        // CreateResponse drops the query's OPT; echo EDNS as Relay and ARSoft do, for the same bytes out.
        if (msg.AdditionalRecords.Count > 0)
        {
            reply.AdditionalRecords.Add(new MkDns.OPTRecord { RequestorPayloadSize = 1232 });
        }
        return reply.ToByteArray().Length;
    });

    if (encode is null || lengthOf is null)
    {
        Console.WriteLine($"| ARSoft.Tools.Net 3.6.1 | {variant} | n/a | n/a | no Encode method found |");
        continue;
    }
    Run("ARSoft.Tools.Net 3.6.1 (internal Encode via reflection)", variant, () =>
    {
        var msg = ArDns.DnsMessage.Parse(new ArraySegment<byte>(query));
        var q = msg.Questions[0];
        var reply = msg.CreateResponseInstance();
        reply.IsAuthoritiveAnswer = true;
        if (arTable.TryGetValue(q.Name, out var address))
        {
            reply.AnswerRecords.Add(new ArDns.ARecord(q.Name, 5, address));
        }
        else
        {
            reply.ReturnCode = ArDns.ReturnCode.NxDomain;
        }
        return (int)lengthOf.GetValue(encode(reply))!;
    });
}
return 0;

void Run(string codec, string variant, Func<int> op)
{
    var check = 0L;
    for (var i = 0; i < 200_000; i++)
    {
        check += op(); // warm-up: tier-1 JIT, caches
    }
    var results = new List<(double Ns, double Bytes)>();
    var length = op();
    for (var r = 0; r < rounds; r++)
    {
        GC.Collect();
        var n = 0L;
        var allocated = GC.GetAllocatedBytesForCurrentThread();
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed < roundTime)
        {
            for (var i = 0; i < 1000; i++)
            {
                check += op();
            }
            n += 1000;
        }
        sw.Stop();
        var bytes = GC.GetAllocatedBytesForCurrentThread() - allocated;
        results.Add((sw.Elapsed.TotalNanoseconds / n, (double)bytes / n));
    }
    var median = results.OrderBy(x => x.Ns).ElementAt(results.Count / 2);
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"| {codec} | {variant} | {median.Ns:F0} | {median.Bytes:F0} | {length} |"));
    GC.KeepAlive(check);
}

static byte[] Query(ushort id, string name, bool edns)
{
    var buffer = new byte[512];
    var w = new DnsWriter(buffer);
    w.WriteHeader(new DnsHeader(id, (ushort)DnsHeaderFlags.RecursionDesired, 1, 0, 0, edns ? (ushort)1 : (ushort)0));
    w.WriteQuestion(DnsWireName.FromText(name), (ushort)DnsRecordType.A, (ushort)DnsClass.IN);
    if (edns)
    {
        w.WriteOpt(1232);
    }
    return w.Written.ToArray();
}

static string Cpu()
{
    try
    {
        return File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "unknown CPU";
    }
    catch (IOException)
    {
        return "unknown CPU";
    }
}
