using System.Diagnostics;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Relay.Integration.Tests.Support;

namespace Relay.Integration.Tests.Daemon;

/// <summary>
/// The API refuses whoever is not root (socket mode 0600, and SO_PEERCRED behind it), and answers
/// oversized or malformed requests, and CLI mistakes, with a 4xx and a readable message: no stack
/// trace, and nothing changed in the kernel or the daemon's state.
/// </summary>
public sealed class ApiSecurityTests
{
    private const string Setpriv = "/usr/bin/setpriv";
    private const int Nobody = 65534;
    private static readonly string[] AsNobody = [$"--reuid={Nobody}", $"--regid={Nobody}", "--clear-groups"];

    /// <summary>A network with two services, an instance running a command and one without.</summary>
    private static string Desired(string network) => $"""
        networks:
          - name: {network}
        services:
          - network: {network}
            name: a.test
          - network: {network}
            name: b.test
        instances:
          - network: {network}
            service: a.test
            name: a-1
          - network: {network}
            service: b.test
            name: b-1
            command: [sleep, infinity]
            restart: always
        """;

    private static async Task<DaemonBed> BedWithNetwork()
    {
        var bed = new DaemonBed();
        try
        {
            var file = Path.Combine(bed.Directory, "net.yaml");
            await File.WriteAllTextAsync(file, Desired(bed.Network));
            bed.Ok("apply", "-f", file);
            // b-1's command runs (it has a pid) before anything is compared.
            DaemonState.WaitUntil(() => DaemonState.Instances(bed).All(i => i.Name != "b-1" || i.Pid is not null), TimeSpan.FromSeconds(30), "b-1 has no pid");
            return bed;
        }
        catch
        {
            await bed.DisposeAsync();
            throw;
        }
    }

    [Fact]
    public async Task A_user_other_than_root_cannot_connect_to_the_socket()
    {
        await using var bed = await BedWithNetwork();
        Assert.True(File.Exists(Setpriv), "setpriv (util-linux) is needed to run the CLI as nobody");
        var mode = File.GetUnixFileMode(bed.Socket);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, mode);
        Assert.Equal("0", Sh.Ok("stat", "-c", "%u", bed.Socket).Trim());
        var before = DaemonState.Capture(bed);
        var intruder = TestNetwork.UniqueName("x");

        foreach (var args in new[] { new[] { "status" }, ["network", "create", intruder], ["network", "rm", bed.Network], ["down"] })
        {
            var r = RunAsNobody(bed, args);

            Assert.True(r.ExitCode != 0, $"relay {string.Join(' ', args)} as nobody exited 0:\n{r.Stdout}{r.Stderr}");
            Assert.StartsWith("relay: error: ", r.Stderr, StringComparison.Ordinal);
            Assert.Contains("permission denied", r.Stderr, StringComparison.Ordinal);
            Assert.Contains("root", r.Stderr, StringComparison.Ordinal);
            DaemonState.AssertNoStackTrace(r.Stdout + r.Stderr);
        }

        // The daemon is up and root is served: the refusals were about who asked.
        Assert.Contains(bed.Network, bed.Ok("status"), StringComparison.Ordinal);
        Assert.Equal(before, DaemonState.Capture(bed));
        Assert.False(Relay.Linux.Namespaces.Netns.Exists("relay-" + intruder));
    }

    [Fact]
    public async Task The_daemon_refuses_a_non_root_peer_even_when_the_socket_is_opened_to_everyone()
    {
        await using var bed = await BedWithNetwork();
        Assert.True(File.Exists(Setpriv), "setpriv (util-linux) is needed to connect as nobody");
        var before = DaemonState.Capture(bed);
        var intruder = TestNetwork.UniqueName("x");
        // The second lock only: anyone may now connect.
        File.SetUnixFileMode(bed.Socket, (UnixFileMode)Convert.ToInt32("666", 8));
        // Control: the same curl as root is answered, so a 403 below is the daemon's decision.
        var control = Curl(bed.Socket, "GET", "/v1/status", null, asNobody: false);
        Assert.Equal(200, control.Status);

        var attempts = new (string Method, string Path, string? Body)[]
        {
            ("GET", "/v1/status", null),
            ("GET", "/metrics", null),
            ("POST", "/v1/networks", $$"""{"name":"{{intruder}}"}"""),
            ("POST", $"/v1/networks/{bed.Network}/services", """{"name":"evil.test"}"""),
            ("POST", $"/v1/networks/{bed.Network}/instances", """{"service":"a.test","name":"evil-1","command":["sleep","300"]}"""),
            ("POST", "/v1/apply", $$"""{"networks":[{"name":"{{bed.Network}}"}]}"""),
            ("DELETE", $"/v1/networks/{bed.Network}/instances/b-1?drain=0", null),
            ("DELETE", $"/v1/networks/{bed.Network}", null),
            ("POST", "/v1/down?stop=true", "{}"),
        };
        foreach (var (method, path, body) in attempts)
        {
            var r = Curl(bed.Socket, method, path, body, asNobody: true);

            Assert.True(r.Status == 403, $"{method} {path} as nobody: {r.Status} {r.Body}");
            Assert.StartsWith("application/json", r.ContentType, StringComparison.Ordinal);
            var message = DaemonState.ErrorMessage(r.Body);
            Assert.Contains("only root", message, StringComparison.Ordinal);
            Assert.Contains($"uid is {Nobody}", message, StringComparison.Ordinal);
        }
        // The CLI, as nobody, reports the refusal in one line.
        var cli = RunAsNobody(bed, ["network", "rm", bed.Network]);
        Assert.NotEqual(0, cli.ExitCode);
        Assert.StartsWith("relay: error: only root may use the relay API", cli.Stderr, StringComparison.Ordinal);
        DaemonState.AssertNoStackTrace(cli.Stdout + cli.Stderr);

        Assert.Equal(before, DaemonState.Capture(bed));
        Assert.False(Relay.Linux.Namespaces.Netns.Exists("relay-" + intruder));
        Assert.True(File.Exists(bed.Socket), "the daemon went away");
    }

    [Fact]
    public async Task Malformed_or_oversized_requests_get_a_4xx_with_a_message_and_change_nothing()
    {
        await using var bed = await BedWithNetwork();
        var n = bed.Network;
        var before = DaemonState.Capture(bed);
        using var api = new ApiClient(bed.Socket);
        const string json = "application/json";
        // A valid document that would add a service if it were applied.
        var adding = $$"""{"networks":[{"name":"{{n}}"}],"services":[{"network":"{{n}}","name":"a.test"},{"network":"{{n}}","name":"b.test"},{"network":"{{n}}","name":"added.test"}],"instances":[{"network":"{{n}}","service":"a.test","name":"a-1"},{"network":"{{n}}","service":"b.test","name":"b-1","command":["sleep","infinity"],"restart":"always"}]}""";
        var cases = new (string Method, string Path, string? ContentType, string? Body, int[] Status, string Says)[]
        {
            // Not JSON, wrong types, unknown fields, wrong content type.
            ("POST", "/v1/networks", json, """{"name":""", [400], "not valid JSON"),
            ("POST", "/v1/networks", json, """{"name":5}""", [400], "$.name"),
            ("POST", "/v1/networks", json, """{"name":"x","colour":"red"}""", [400], "colour"),
            ("POST", "/v1/networks", "text/plain", """{"name":"x"}""", [415], "application/json"),
            ("POST", "/v1/networks", null, """{"name":"x"}""", [415], "application/json"),
            ("POST", "/v1/apply", json, "", [400], "JSON body"),
            ("POST", "/v1/apply", json, "null", [400], "JSON body"),
            ("POST", "/v1/apply", json, "[]", [400], "not valid JSON"),
            ("POST", "/v1/apply", json, """{"networks":"all"}""", [400], "not valid JSON"),
            ("POST", "/v1/apply", json, """{"networks":null}""", [400], "networks"),
            ("POST", "/v1/apply", json, $$"""{"networks":[null,{"name":"{{n}}"}],"services":[null]}""", [400], "networks[0]"),
            ("POST", $"/v1/networks/{n}/services", json, """{"name":"c.test","ports":"80"}""", [400], "not valid JSON"),
            ("POST", $"/v1/networks/{n}/services", json, """{"name":"c.test","ports":[null]}""", [400], "ports[0]"),
            ("POST", $"/v1/networks/{n}/instances", json, """{"service":"a.test","health":{"type":"tcp","port":"x"}}""", [400], "$.health.port"),
            ("POST", $"/v1/networks/{n}/instances", json, """{"service":"a.test","name":"a-9","command":["sleep",null]}""", [400], "command[1]"),
            ("POST", $"/v1/networks/{n}/instances", json, """{"service":"a.test","name":"a-9","health":{"type":"exec","command":["true",null]}}""", [400], "health.command[1]"),
            ("POST", $"/v1/networks/{n}/services/a.test/migrate", json, """{"from":5}""", [400], "not valid JSON"),
            // Invalid names and values.
            ("POST", "/v1/networks", json, """{"name":"-bad-"}""", [400], "-bad-"),
            ("POST", $"/v1/networks/{n}/services", json, """{"name":"bad name!"}""", [400], "bad name!"),
            ("POST", $"/v1/networks/{n}/services", json, """{"name":"c.test","policy":"fastest"}""", [400], "fastest"),
            ("POST", $"/v1/networks/{n}/instances", json, """{"name":"a-9"}""", [400], "service"),
            ("POST", $"/v1/networks/{n}/instances", json, """{"service":"a.test","name":"Bad_Name"}""", [400], "Bad_Name"),
            ("POST", $"/v1/networks/{n}/instances", json, """{"service":"a.test","name":"a-9","restart":"sometimes","command":["sleep","300"]}""", [400], "sometimes"),
            ("POST", $"/v1/networks/{n}/instances", json, """{"service":"a.test","name":"a-9","health":{"type":"tcp","port":70000}}""", [400], "70000"),
            ("POST", $"/v1/networks/{n}/services/a.test/migrate", json, """{"drain":"forever"}""", [400], "forever"),
            ("POST", $"/v1/networks/{n}/flows/repoint", json, "{}", [400], "required"),
            ("POST", "/v1/apply", json, $$"""{"networks":[{"name":"{{n}}"}],"services":[{"network":"{{n}}","name":"a.test","policy":"fastest"}],"instances":[{"network":"{{n}}","service":"nope.test","name":"z-1"}]}""", [400, 404], "nope.test"),
            ("POST", "/v1/apply?dryRun=maybe", json, adding, [400], "dryRun"),
            ("POST", "/v1/down?stop=perhaps", json, "{}", [400], "stop"),
            ("DELETE", $"/v1/networks/{n}/instances/b-1?drain=forever", null, null, [400], "forever"),
            ("GET", $"/v1/networks/{n}/instances/b-1/logs?lines=many", null, null, [400], "lines"),
            ("GET", "/v1/resolve?name=bad..name", null, null, [400], "bad..name"),
            // Unknown network, service, instance, endpoint; duplicates; conflicts.
            ("POST", "/v1/networks/nosuch/services", json, """{"name":"c.test"}""", [404], "nosuch"),
            ("POST", "/v1/networks/nosuch/instances", json, """{"service":"a.test"}""", [404], "nosuch"),
            ("POST", $"/v1/networks/{n}/instances", json, """{"service":"nope.test","name":"z-1"}""", [404], "nope.test"),
            ("POST", $"/v1/networks/{n}/services/nope.test/migrate", json, "{}", [404], "nope.test"),
            ("POST", $"/v1/networks/{n}/services/a.test/migrate", json, """{"to":"nope"}""", [404], "nope"),
            ("POST", $"/v1/networks/{n}/services/a.test/migrate", json, """{"from":"a-1","to":"b-1"}""", [409], "b-1"),
            ("DELETE", "/v1/networks/nosuch", null, null, [404], "nosuch"),
            ("DELETE", $"/v1/networks/{n}/services/nope.test", null, null, [404], "nope.test"),
            ("DELETE", $"/v1/networks/{n}/services/a.test", null, null, [409], "a-1"),
            ("DELETE", $"/v1/networks/{n}/instances/nope", null, null, [404], "nope"),
            ("POST", "/v1/networks", json, $$"""{"name":"{{n}}"}""", [409], "already exists"),
            ("POST", $"/v1/networks/{n}/services", json, """{"name":"a.test"}""", [409], "already exists"),
            ("POST", $"/v1/networks/{n}/instances", json, """{"service":"a.test","name":"a-1"}""", [409], "already exists"),
            ("GET", "/v1/nope", null, null, [404], "/v1/nope"),
            ("PUT", "/v1/networks", json, "{}", [405], "PUT"),
        };
        foreach (var (method, path, contentType, body, status, says) in cases)
        {
            var r = await api.SendAsync(method, path, contentType, body);

            var what = $"{method} {path} {body}: {r.Status} {r.ContentType} {r.Body}";
            Assert.True(status.Contains(r.Status), what);
            Assert.True(r.ContentType?.StartsWith("application/json", StringComparison.Ordinal) == true, what);
            var message = DaemonState.ErrorMessage(r.Body);
            Assert.True(message.Contains(says, StringComparison.Ordinal), what);
            DaemonState.AssertNoStackTrace(r.Body);
        }

        // Larger than the 4 MiB limit: a valid document (it would add added.test), padded with
        // blanks. With its length announced (sent at once, or after "100 Continue"), and chunked.
        var padded = adding[..^1] + new string(' ', (5 << 20) + 1) + "}";
        foreach (var sending in new[] { Sending.Length, Sending.LengthExpectContinue, Sending.Chunked })
        {
            var r = await api.SendAsync("POST", "/v1/apply", json, padded, sending);

            var what = $"oversized ({sending}): {r.Status} {r.ContentType} {r.Body}";
            Assert.True(r.Status == 413, what);
            Assert.True(r.ContentType?.StartsWith("application/json", StringComparison.Ordinal) == true, what);
            Assert.Contains("too large", DaemonState.ErrorMessage(r.Body), StringComparison.Ordinal);
        }
        // The same document, small enough, is accepted: the refusals above were about size and form.
        var dry = await api.SendAsync("POST", "/v1/apply?dryRun=true", json, adding);
        Assert.True(dry.Status == 200, dry.Body);
        Assert.Contains("added.test", dry.Body, StringComparison.Ordinal);

        Assert.Equal(before, DaemonState.Capture(bed));
        // The daemon logged no unexpected failure (those are logged with their stack).
        DaemonState.AssertNoStackTrace(bed.DaemonLog);
    }

    [Fact]
    public async Task Cli_mistakes_get_one_clear_message_and_change_nothing()
    {
        await using var bed = await BedWithNetwork();
        var before = DaemonState.Capture(bed);
        var missing = Path.Combine(bed.Directory, "missing.yaml");
        // A valid file whose request is larger than the API's 4 MiB limit: applied, it would create a network.
        var huge = Path.Combine(bed.Directory, "huge.yaml");
        await File.WriteAllTextAsync(huge, $"networks:\n  - name: {TestNetwork.UniqueName("x")}\n    dns:\n      zones:\n" + string.Concat(Enumerable.Range(0, 300_000).Select(i => $"        - z{i}.example\n")));
        var mistakes = new (string[] Args, string Says)[]
        {
            (["instance", "add", "nope.test", "--name", "z-1"], "nope.test"),
            (["instance", "add", "a.test", "--restart", "sometimes", "--", "sleep", "300"], "sometimes"),
            (["instance", "add", "a.test", "--health-tcp", "80", "--health-interval", "forever"], "forever"),
            // An option this command does not have is not the instance's command (that goes after --).
            (["instance", "add", "a.test", "-x", "json"], "'-x'"),
            (["instance", "add", "a.test", "--standby", "--out", "json", "--", "sleep", "300"], "'--out'"),
            (["exec", "a-1", "ping", "-c", "1", "a.test"], "'-c'"),
            (["instance", "rm", "nope"], "nope"),
            (["instance", "rm", "b-1", "--drain", "forever"], "forever"),
            (["instance", "ls", "-n", "nosuch"], "nosuch"),
            (["service", "add", "bad name!"], "bad name!"),
            (["service", "add", "c.test", "--policy", "fastest"], "fastest"),
            (["service", "add", "c.test", "--port", "abc"], "abc"),
            (["service", "add", "a.test"], "already exists"),
            (["service", "rm", "a.test"], "a-1"),
            (["service", "rm", "nope.test"], "nope.test"),
            (["network", "create", "Bad_Name"], "Bad_Name"),
            (["network", "create", bed.Network], "already exists"),
            (["network", "rm", "nosuch"], "nosuch"),
            (["migrate", "a.test", "--to", "nope"], "nope"),
            (["migrate", "a.test", "--drain", "forever"], "forever"),
            (["migrate", "nope.test"], "nope.test"),
            (["resolve", "bad..name"], "bad..name"),
            (["flows", "repoint", "a-1", "b.test", "nope"], "nope"),
            (["apply", "-f", missing], "missing.yaml"),
            (["apply", "-f", huge], "too large"),
        };
        foreach (var (args, says) in mistakes)
        {
            var r = bed.Relay(args);

            DaemonState.AssertOneClearError(r, args, says);
        }

        Assert.Equal(before, DaemonState.Capture(bed));
    }

    [Fact]
    public async Task Bad_flag_values_get_one_clear_message()
    {
        await using var bed = await BedWithNetwork();
        var before = DaemonState.Capture(bed);
        var mistakes = new (string[] Args, string Says)[]
        {
            (["instance", "add", "a.test", "--health-tcp", "abc"], "abc"),
            (["instance", "ls", "-o", "yaml"], "yaml"),
            (["instance", "logs", "b-1", "--lines", "many"], "many"),
            (["service", "ls", "--no-such-flag"], "--no-such-flag"),
        };
        foreach (var (args, says) in mistakes)
        {
            var r = bed.Relay(args);

            DaemonState.AssertOneClearError(r, args, says);
        }

        Assert.Equal(before, DaemonState.Capture(bed));
    }

    /// <summary>Runs the relay CLI as nobody (setpriv), against the bed's daemon.</summary>
    private static Sh.Result RunAsNobody(DaemonBed bed, IReadOnlyList<string> args)
    {
        var psi = bed.Psi(args);
        psi.FileName = Setpriv;
        psi.ArgumentList.Clear();
        foreach (var a in AsNobody.Append(DaemonBed.Binary).Concat(args))
        {
            psi.ArgumentList.Add(a);
        }
        psi.Environment["HOME"] = "/nonexistent";
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromSeconds(60)))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"relay {string.Join(' ', args)} as nobody did not finish");
        }
        p.WaitForExit();
        return new Sh.Result(p.ExitCode, stdout.Result, stderr.Result);
    }

    private sealed record CurlResult(int Status, string ContentType, string Body);

    /// <summary>One request with curl over the unix socket, as nobody or as root.</summary>
    private static CurlResult Curl(string socket, string method, string path, string? body, bool asNobody)
    {
        List<string> args = ["-sS", "--max-time", "30", "--unix-socket", socket, "-X", method, "-o", "-", "-w", "\n%{http_code}\n%{content_type}"];
        if (body is not null)
        {
            args.AddRange(["-H", "Content-Type: application/json", "--data-binary", body]);
        }
        args.Add("http://relay" + path);
        var r = asNobody ? Sh.Run(Setpriv, [.. AsNobody, "curl", .. args]) : Sh.Run("curl", [.. args]);
        Assert.True(r.ExitCode == 0, $"curl {method} {path}: exit {r.ExitCode}: {r.Stderr}");
        var lines = r.Stdout.Split('\n');
        return new CurlResult(int.Parse(lines[^2]), lines[^1], string.Join('\n', lines[..^2]));
    }
}

/// <summary>How a body is sent: Content-Length (and all of it at once, or after "100 Continue"), or chunked.</summary>
internal enum Sending
{
    Length,
    LengthExpectContinue,
    Chunked,
}

/// <summary>HttpClient over the daemon's unix socket, with full control of what is sent.</summary>
internal sealed class ApiClient : IDisposable
{
    private readonly HttpClient _http;

    public ApiClient(string socket)
    {
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, ct) =>
            {
                var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await s.ConnectAsync(new UnixDomainSocketEndPoint(socket), ct);
                    return new NetworkStream(s, ownsSocket: true);
                }
                catch
                {
                    s.Dispose();
                    throw;
                }
            },
        };
        _http = new HttpClient(handler) { BaseAddress = new Uri("http://relay/"), Timeout = TimeSpan.FromSeconds(60) };
    }

    public sealed record Response(int Status, string? ContentType, string Body);

    public async Task<Response> SendAsync(string method, string path, string? contentType, string? body, Sending sending = Sending.Length)
    {
        using var request = new HttpRequestMessage(new HttpMethod(method), path.TrimStart('/'));
        if (body is not null)
        {
            var content = new ByteArrayContent(Encoding.UTF8.GetBytes(body));
            content.Headers.ContentType = contentType is null ? null : MediaTypeHeaderValue.Parse(contentType);
            request.Content = content;
            request.Headers.TransferEncodingChunked = sending == Sending.Chunked;
            request.Headers.ExpectContinue = sending == Sending.LengthExpectContinue;
        }
        using var response = await _http.SendAsync(request);
        return new Response((int)response.StatusCode, response.Content.Headers.ContentType?.ToString(), await response.Content.ReadAsStringAsync());
    }

    public void Dispose() => _http.Dispose();
}

/// <summary>What the daemon holds for a bed's network, and checks on what it answers.</summary>
internal static class DaemonState
{
    /// <summary>One instance as <c>relay instance ls -o json</c> prints it.</summary>
    public sealed record Instance(string Name, string Namespace, int? Pid, string Health);

    /// <summary>
    /// The network's kernel state (its namespaces, ruleset, links, addresses, routes; not the host's
    /// links and tables, which parallel tests change) and what the CLI lists.
    /// </summary>
    public static string Capture(DaemonBed bed)
    {
        var kernel = KernelState.Capture(bed.Orchestrator) with { HostLinks = "", HostTables = "" };
        return string.Join("\n----\n", kernel.ToString(), bed.Ok("network", "ls", "-o", "json"), bed.Ok("service", "ls", "-o", "json"), bed.Ok("instance", "ls", "-o", "json"));
    }

    public static IReadOnlyList<Instance> Instances(DaemonBed bed, string? network = null)
    {
        using var doc = JsonDocument.Parse(network is null ? bed.Ok("instance", "ls", "-o", "json") : bed.Ok("instance", "ls", "-o", "json", "-n", network));
        return doc.RootElement.EnumerateArray().Select(i => new Instance(
            i.GetProperty("name").GetString()!,
            i.GetProperty("namespace").GetString()!,
            i.TryGetProperty("pid", out var pid) && pid.ValueKind == JsonValueKind.Number ? pid.GetInt32() : null,
            i.GetProperty("health").GetString()!)).ToArray();
    }

    /// <summary>The "error" of an API error body (which must be JSON with a non-empty message).</summary>
    public static string ErrorMessage(string body)
    {
        using var doc = JsonDocument.Parse(body);
        var message = doc.RootElement.GetProperty("error").GetString();
        Assert.False(string.IsNullOrWhiteSpace(message), body);
        return message!;
    }

    public static void AssertNoStackTrace(string text)
    {
        Assert.DoesNotContain("   at ", text, StringComparison.Ordinal);
        Assert.DoesNotContain("Exception", text, StringComparison.Ordinal);
        Assert.DoesNotMatch(@"\.cs:line \d", text);
    }

    /// <summary>A failed CLI call: non-zero exit, one "relay: error:" line naming the culprit, no stack trace.</summary>
    public static void AssertOneClearError(Sh.Result r, IReadOnlyList<string> args, string culprit, bool quietStdout = true)
    {
        var what = $"relay {string.Join(' ', args)} exited {r.ExitCode}:\nstdout: {r.Stdout}\nstderr: {r.Stderr}";
        Assert.True(r.ExitCode != 0, what);
        var errors = r.Stderr.Split('\n').Where(l => l.StartsWith("relay: error: ", StringComparison.Ordinal)).ToArray();
        Assert.True(errors.Length == 1, what);
        Assert.True(errors[0].Contains(culprit, StringComparison.Ordinal), what);
        Assert.True(!quietStdout || r.Stdout.Length == 0, what);
        AssertNoStackTrace(r.Stdout + r.Stderr);
    }

    /// <summary>Polls <paramref name="condition"/> until it holds, or fails after <paramref name="timeout"/>.</summary>
    public static void WaitUntil(Func<bool> condition, TimeSpan timeout, string failure)
    {
        var until = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(until.Elapsed < timeout, $"{failure} (after {timeout.TotalSeconds:0} s)");
            Thread.Sleep(100);
        }
    }
}
