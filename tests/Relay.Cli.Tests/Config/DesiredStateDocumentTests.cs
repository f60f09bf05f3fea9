using Relay.Cli.Config;
using Relay.Engine.Api;

namespace Relay.Cli.Tests.Config;

public class DesiredStateDocumentTests
{
    private const string FullDocument = """
        networks:
          - name: demo
            instancePool4: 10.50.0.0/16
            instancePool6: fd00:50::/64
            virtualPool4: 10.51.0.0/16
            virtualPool6: fd00:51::/64
            flowPool4: 10.52.0.0/16
            flowPool6: fd00:52::/64
            drain: 10s
            dns: { enabled: true, zones: [relay.internal, example.test], ttl: 5s, upstreams: [1.1.1.1, "[2606:4700:4700::1111]:53"] }
        services:
          - network: demo
            name: a.com
            policy: round-robin
            ports: ["80:8080/tcp", "53/udp"]
            addressing: service
            vip4: 10.51.0.10
            vip6: fd00:51::10
          - name: b.com
            addressing: flow
        instances:
          - network: demo
            service: a.com
            name: a-1
            command: [socat, "UDP-RECV:9000", "-"]
            restart: on-failure
            health: { type: tcp, port: 8080, interval: 1s, timeout: 500ms, healthyThreshold: 1, unhealthyThreshold: 3 }
            standby: false
          - service: b.com
            name: b-1
            health:
              type: exec
              command: [test, -f, /ready]
        """;

    private static DesiredStateDocument Parse(string yaml) => DesiredStateDocument.Parse(yaml, "test.yaml");

    /// <summary>The one error for <paramref name="field"/>, checked for its position and (part of) its message.</summary>
    private static YamlError AssertError(DesiredStateDocument doc, int line, int column, string field, string messagePart)
    {
        var matches = doc.Errors.Where(e => e.Field == field).ToList();
        Assert.True(matches.Count == 1, $"expected one error for '{field}', got:\n{string.Join("\n", doc.Errors)}");
        var error = matches[0];
        Assert.Equal((line, column), (error.Line, error.Column));
        Assert.Contains(messagePart, error.Message);
        return error;
    }

    private static (int Line, int Column) Location(DesiredStateDocument doc, string path)
    {
        Assert.True(doc.TryGetLocation(path, out var line, out var column), $"no location for '{path}'");
        return (line, column);
    }

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Relay.slnx")))
            {
                return dir.FullName;
            }
        }
        throw new InvalidOperationException($"no directory above {AppContext.BaseDirectory} holds Relay.slnx");
    }

    [Fact]
    public void Parse_FullDocument_ReturnsExactRecords()
    {
        var doc = Parse(FullDocument);

        Assert.Empty(doc.Errors);
        Assert.Equal("test.yaml", doc.FileName);
        var network = Assert.Single(doc.State.Networks);
        Assert.Equal(new NetworkSpec
        {
            Name = "demo",
            InstancePool4 = "10.50.0.0/16",
            InstancePool6 = "fd00:50::/64",
            VirtualPool4 = "10.51.0.0/16",
            VirtualPool6 = "fd00:51::/64",
            FlowPool4 = "10.52.0.0/16",
            FlowPool6 = "fd00:52::/64",
            Drain = "10s",
            Dns = network.Dns,
        }, network);
        Assert.NotNull(network.Dns);
        Assert.True(network.Dns.Enabled);
        Assert.Equal(["relay.internal", "example.test"], network.Dns.Zones);
        Assert.Equal("5s", network.Dns.Ttl);
        Assert.Equal(["1.1.1.1", "[2606:4700:4700::1111]:53"], network.Dns.Upstreams);

        Assert.Equal(2, doc.State.Services.Count);
        var a = doc.State.Services[0];
        Assert.Equal(new ServiceSpec
        {
            Network = "demo",
            Name = "a.com",
            Policy = "round-robin",
            Ports = a.Ports,
            Addressing = "service",
            Vip4 = "10.51.0.10",
            Vip6 = "fd00:51::10",
        }, a);
        Assert.Equal(["80:8080/tcp", "53/udp"], a.Ports);
        Assert.Equal(new ServiceSpec { Name = "b.com", Addressing = "flow" }, doc.State.Services[1]);

        Assert.Equal(2, doc.State.Instances.Count);
        var a1 = doc.State.Instances[0];
        Assert.Equal(new InstanceSpec
        {
            Network = "demo",
            Service = "a.com",
            Name = "a-1",
            Command = a1.Command,
            Restart = "on-failure",
            Health = new HealthSpec
            {
                Type = "tcp",
                Port = 8080,
                Interval = "1s",
                Timeout = "500ms",
                HealthyThreshold = 1,
                UnhealthyThreshold = 3,
            },
            Standby = false,
        }, a1);
        Assert.Equal(["socat", "UDP-RECV:9000", "-"], a1.Command);
        var b1 = doc.State.Instances[1];
        Assert.Equal(new InstanceSpec { Service = "b.com", Name = "b-1", Health = b1.Health }, b1);
        Assert.NotNull(b1.Health);
        Assert.Equal("exec", b1.Health.Type);
        Assert.Equal(["test", "-f", "/ready"], b1.Health.Command);
    }

    [Theory]
    [InlineData("")]
    [InlineData("\n\n")]
    [InlineData("# nothing yet\n")]
    [InlineData("---\n")]
    [InlineData("~\n")]
    public void Parse_EmptyFile_ReturnsEmptyState(string yaml)
    {
        var doc = Parse(yaml);

        Assert.Empty(doc.Errors);
        Assert.Empty(doc.State.Networks);
        Assert.Empty(doc.State.Services);
        Assert.Empty(doc.State.Instances);
    }

    [Fact]
    public void Parse_EmptyLists_ReturnsEmptyState()
    {
        var doc = Parse("networks: []\nservices:\ninstances: ~\n");

        Assert.Empty(doc.Errors);
        Assert.Empty(doc.State.Networks);
        Assert.Empty(doc.State.Services);
        Assert.Empty(doc.State.Instances);
    }

    [Fact]
    public void Parse_SyntaxError_ReportsOnlyThatErrorWithItsPosition()
    {
        // Line 4 also has an unknown key, but nothing after a syntax error can be trusted.
        var doc = Parse("""
            networks:
              - name: demo
               drain: 5s
            servics: []
            """);

        var error = Assert.Single(doc.Errors);
        Assert.Equal("3:4: YAML syntax error: while parsing a block collection, did not find expected '-' indicator", error.ToString());
        Assert.Empty(doc.State.Networks);
    }

    [Fact]
    public void Parse_UnclosedFlowSequence_ReportsSyntaxErrorAtTheBracket()
    {
        // YamlDotNet's scanner throws a plain InvalidOperationException here (aaubry/YamlDotNet#541).
        var doc = Parse("""
            services:
              - name: a.com
                ports: [80
            networks: []
            """);

        var error = Assert.Single(doc.Errors);
        Assert.Equal((3, 12), (error.Line, error.Column));
        Assert.Equal("", error.Field);
        Assert.Contains("unclosed bracket", error.Message);
    }

    [Fact]
    public void Parse_UnterminatedQuote_ReportsSyntaxError()
    {
        var doc = Parse("networks:\n  - name: demo\n    drain: \"5s\n");

        var error = Assert.Single(doc.Errors);
        Assert.Equal((3, 12), (error.Line, error.Column));
        Assert.StartsWith("YAML syntax error: ", error.Message);
    }

    [Fact]
    public void Parse_AliasToUnknownAnchor_ReportsSyntaxError()
    {
        var doc = Parse("networks:\n  - name: *nothing\n");

        var error = Assert.Single(doc.Errors);
        Assert.Equal((2, 11), (error.Line, error.Column));
        Assert.Contains("*nothing", error.Message);
    }

    [Theory]
    [InlineData("- networks\n", "a list")]
    [InlineData("networks\n", "a single value")]
    public void Parse_TopLevelNotAMapping_ReportsIt(string yaml, string kind)
    {
        var doc = Parse(yaml);

        var error = Assert.Single(doc.Errors);
        Assert.Equal("1:1: the file must be a mapping with the keys networks, services and instances, not " + kind, error.ToString());
    }

    [Fact]
    public void Parse_SecondDocument_ReportsIt()
    {
        var doc = Parse("networks: [{name: a}]\n---\nnetworks: [{name: b}]\n");

        var error = Assert.Single(doc.Errors);
        Assert.Equal((2, 1), (error.Line, error.Column));
        Assert.Contains("second YAML document", error.Message);
        Assert.Equal("a", Assert.Single(doc.State.Networks).Name);
    }

    [Fact]
    public void Parse_UnknownTopLevelKey_SuggestsTheClosestKey()
    {
        var doc = Parse("networks: []\nservice:\n  - name: a.com\n");

        var error = Assert.Single(doc.Errors);
        Assert.Equal("2:1: service: unknown key 'service' (did you mean 'services'?)", error.ToString());
    }

    [Fact]
    public void Parse_KebabCaseKey_SuggestsTheCamelCaseKey()
    {
        var doc = Parse("""
            networks:
              - name: demo
                instance-pool4: 10.50.0.0/16
            """);

        var error = Assert.Single(doc.Errors);
        Assert.Equal("3:5: networks[0].instance-pool4: unknown key 'instance-pool4' (did you mean 'instancePool4'?)", error.ToString());
        Assert.Null(doc.State.Networks[0].InstancePool4);
    }

    [Fact]
    public void Parse_NestedUnknownKeys_ReportsEachWithSuggestionOrKnownKeys()
    {
        var doc = Parse("""
            instances:
              - service: a.com
                name: a-1
                health: { type: tcp, port: 80, intervl: 1s, color: blue }
            services:
              - nmae: a.com
            """);

        AssertError(doc, 4, 36, "instances[0].health.intervl", "unknown key 'intervl' (did you mean 'interval'?)");
        AssertError(doc, 4, 49, "instances[0].health.color", "unknown key 'color' (known keys: type, command, port, path, interval, timeout, healthyThreshold, unhealthyThreshold)");
        AssertError(doc, 6, 5, "services[0].nmae", "unknown key 'nmae' (did you mean 'name'?)");
    }

    [Fact]
    public void Parse_DuplicateKey_ReportsTheSecondAndKeepsTheFirst()
    {
        var doc = Parse("""
            services:
              - name: a.com
                policy: maglev
                policy: source
            """);

        var error = Assert.Single(doc.Errors);
        Assert.Equal("4:5: services[0].policy: duplicate key 'policy' (first at 3:5); only the first is read", error.ToString());
        Assert.Equal("maglev", doc.State.Services[0].Policy);
        Assert.Equal((3, 13), Location(doc, "services[0].policy"));
    }

    [Fact]
    public void Parse_DuplicateTopLevelKey_ReportsIt()
    {
        var doc = Parse("networks: []\nnetworks: []\n");

        AssertError(doc, 2, 1, "networks", "duplicate key 'networks' (first at 1:1)");
    }

    [Fact]
    public void Parse_WrongNodeKinds_ReportsEach()
    {
        var doc = Parse("""
            networks: demo
            services:
              - a.com
              - name: [b.com]
                ports: "80:8080/tcp"
            instances:
              - service: b.com
                name: b-1
                health: tcp
                command: [socat, [x]]
            """);

        AssertError(doc, 1, 11, "networks", "networks must be a list (each entry starting with '- '), not a single value");
        AssertError(doc, 3, 5, "services[0]", "a service must be a mapping, such as {name: a.com}, not a single value");
        AssertError(doc, 4, 11, "services[1].name", "name must be a single value, not a list");
        AssertError(doc, 5, 12, "services[1].ports", "ports must be a list, such as [\"80:8080/tcp\", 53/udp]");
        AssertError(doc, 9, 13, "instances[0].health", "health must be a mapping, such as {type: tcp, port: 8080}, not a single value");
        AssertError(doc, 10, 22, "instances[0].command[1]", "each entry of command must be a single value, not a list");
        Assert.Equal(6, doc.Errors.Count);
        // An entry that is not a mapping still holds its index, so indices stay the file's.
        Assert.Equal(2, doc.State.Services.Count);
    }

    [Fact]
    public void Parse_CommandAsString_SaysItMustBeAList()
    {
        var doc = Parse("""
            services: [{name: a.com}]
            instances:
              - service: a.com
                name: a-1
                command: "socat TCP-LISTEN:80 -"
            """);

        var error = Assert.Single(doc.Errors);
        Assert.Equal("5:14: instances[0].command: command must be a list, such as [socat, TCP-LISTEN:80, -]", error.ToString());
    }

    [Fact]
    public void Parse_EmptyCommand_ReportsIt()
    {
        var doc = Parse("services: [{name: a.com}]\ninstances: [{service: a.com, name: a-1, command: []}]\n");

        AssertError(doc, 2, 50, "instances[0].command", "command is empty");
    }

    [Fact]
    public void Parse_WrongScalarTypes_ReportsEach()
    {
        var doc = Parse("""
            networks:
              - name: demo
                dns: { enabled: yes }
            services: [{network: demo, name: a.com}]
            instances:
              - network: demo
                service: a.com
                name: a-1
                standby: 1
                health: { type: tcp, port: "8080", healthyThreshold: 1.5, unhealthyThreshold: many }
            """);

        AssertError(doc, 3, 21, "networks[0].dns.enabled", "enabled must be true or false, not 'yes'");
        AssertError(doc, 9, 14, "instances[0].standby", "standby must be true or false, not '1'");
        AssertError(doc, 10, 32, "instances[0].health.port", "port must be a number; write 8080 without quotes");
        AssertError(doc, 10, 58, "instances[0].health.healthyThreshold", "healthyThreshold must be a whole number, not '1.5'");
        AssertError(doc, 10, 83, "instances[0].health.unhealthyThreshold", "unhealthyThreshold must be a whole number, not 'many'");
        Assert.Equal(5, doc.Errors.Count);
    }

    [Fact]
    public void Parse_MissingRequiredFields_ReportsEachAtItsEntry()
    {
        var doc = Parse("""
            networks:
              - drain: 5s
            services:
              - policy: maglev
            instances:
              - network: default
              - service: a.com
                name:
            """);

        Assert.Equal(
        [
            "2:5: networks[0].name: a network name is required",
            "4:5: services[0].name: a service name is required",
            "6:5: instances[0].service: an instance needs a service (the name of a service in this file)",
            "6:5: instances[0].name: an instance name is required",
            "8:10: instances[1].name: an instance name is required",
        ], doc.Errors.Select(e => e.ToString()));
    }

    [Fact]
    public void Parse_InvalidNames_ReportsCoreReasons()
    {
        var doc = Parse("""
            networks:
              - name: my_net
            services:
              - name: a..com
              - network: Bad.Net
                name: b.com
            instances:
              - service: -a.com
                name: a.1
            """);

        AssertError(doc, 2, 11, "networks[0].name", "network name 'my_net' is invalid");
        AssertError(doc, 4, 11, "services[0].name", "'a..com' is not a valid DNS name");
        AssertError(doc, 5, 14, "services[1].network", "network name 'Bad.Net' is invalid");
        AssertError(doc, 8, 14, "instances[0].service", "label '-a' starts or ends with '-'");
        AssertError(doc, 9, 11, "instances[0].name", "instance name 'a.1' is invalid");
        Assert.Equal(5, doc.Errors.Count);
    }

    [Fact]
    public void Parse_InvalidServiceValues_ReportsEach()
    {
        var doc = Parse("""
            services:
              - name: a.com
                policy: round_robin
                ports: ["80:8080/tcp", "70000", "53/sctp", "80/tcp"]
                addressing: flow
                vip4: fd00::1
                vip6: not-an-address
              - name: b.com
                policy: fastest
                addressing: anycast
            """);

        AssertError(doc, 3, 13, "services[0].policy", "unknown policy 'round_robin' (did you mean 'round-robin'?); choose random, round-robin, maglev or source");
        AssertError(doc, 4, 28, "services[0].ports[1]", "'70000' is not a port mapping");
        AssertError(doc, 4, 37, "services[0].ports[2]", "'53/sctp': the protocol must be tcp or udp");
        AssertError(doc, 4, 48, "services[0].ports[3]", "port 80/tcp is mapped twice");
        AssertError(doc, 5, 17, "services[0].addressing", "flow addressing is for layer-3 services");
        AssertError(doc, 6, 11, "services[0].vip4", "vip4 must be an IPv4 address; 'fd00::1' is IPv6 (use vip6)");
        AssertError(doc, 7, 11, "services[0].vip6", "'not-an-address' is not an IP address");
        AssertError(doc, 9, 13, "services[1].policy", "unknown policy 'fastest'; choose random");
        AssertError(doc, 10, 17, "services[1].addressing", "unknown addressing 'anycast'; choose service or flow");
        Assert.Equal(9, doc.Errors.Count);
    }

    [Fact]
    public void Parse_InvalidNetworkValues_ReportsEach()
    {
        var doc = Parse("""
            networks:
              - name: demo
                instancePool4: fd00::/64
                virtualPool6: 10.0.0.1/8
                flowPool4: ten
                drain: 30 seconds
                dns:
                  zones: [relay.internal, bad..zone]
                  ttl: 2d
                  upstreams: [1.1.1.1, "1.1.1.1:53", dns.google]
            """);

        AssertError(doc, 3, 20, "networks[0].instancePool4", "fd00::/64 is not an IPv4 prefix");
        AssertError(doc, 4, 19, "networks[0].virtualPool6", "'10.0.0.1/8' has host bits set");
        AssertError(doc, 5, 16, "networks[0].flowPool4", "'ten' is not a prefix");
        AssertError(doc, 6, 12, "networks[0].drain", "'30 seconds' is not a duration");
        AssertError(doc, 8, 31, "networks[0].dns.zones[1]", "it has an empty label");
        AssertError(doc, 9, 12, "networks[0].dns.ttl", "unknown unit 'd'");
        AssertError(doc, 10, 42, "networks[0].dns.upstreams[2]", "'dns.google' is not ADDRESS or ADDRESS:PORT");
        Assert.Equal(7, doc.Errors.Count);
    }

    [Fact]
    public void Parse_TtlLongerThanADay_ReportsTheDaemonsBound()
    {
        var doc = Parse("networks: [{name: demo, dns: {ttl: 25h}}]\n");

        AssertError(doc, 1, 36, "networks[0].dns.ttl", "the TTL must be between 0 and 1 day");
    }

    [Fact]
    public void Parse_InvalidInstanceValues_ReportsEach()
    {
        var doc = Parse("""
            services: [{name: a.com}]
            instances:
              - service: a.com
                name: a-1
                restart: on-failur
                health: { type: tpc, port: 80 }
              - service: a.com
                name: a-2
                health: { type: tcp, port: 70000, interval: 1x, healthyThreshold: 0, unhealthyThreshold: -1 }
            """);

        AssertError(doc, 5, 14, "instances[0].restart", "unknown restart policy 'on-failur' (did you mean 'on-failure'?); choose never, on-failure or always");
        AssertError(doc, 6, 21, "instances[0].health.type", "unknown health check type 'tpc' (did you mean 'tcp'?); choose exec, tcp, http or icmp");
        AssertError(doc, 9, 32, "instances[1].health.port", "port 70000 is out of range 1-65535");
        AssertError(doc, 9, 49, "instances[1].health.interval", "unknown unit 'x'");
        AssertError(doc, 9, 71, "instances[1].health.healthyThreshold", "at least 1");
        AssertError(doc, 9, 94, "instances[1].health.unhealthyThreshold", "at least 1");
        Assert.Equal(6, doc.Errors.Count);
    }

    [Fact]
    public void Parse_NamesTheDaemonAccepts_AreAccepted()
    {
        var doc = Parse("""
            services:
              - name: a.com
                policy: RR
                addressing: Flow
            instances:
              - service: a.com
                name: a-1
                restart: on_failure
                health: { type: TCP, port: 80 }
            """);

        Assert.Empty(doc.Errors);
        // Kept as written: the daemon canonicalizes, and its messages then quote the file.
        Assert.Equal("RR", doc.State.Services[0].Policy);
        Assert.Equal("on_failure", doc.State.Instances[0].Restart);
    }

    [Fact]
    public void Parse_HealthCheckMissingWhatItsTypeNeeds_ReportsAtTheCheck()
    {
        var doc = Parse("""
            services: [{name: a.com}]
            instances:
              - service: a.com
                name: a-1
                health: { type: exec }
              - service: a.com
                name: a-2
                health: { type: http }
              - service: a.com
                name: a-3
                health: { interval: 1s }
              - service: a.com
                name: a-4
                health: { type: icmp, port: 80 }
            """);

        AssertError(doc, 5, 13, "instances[0].health.command", "an exec check needs a command");
        AssertError(doc, 8, 13, "instances[1].health.port", "a http check needs a port");
        AssertError(doc, 11, 13, "instances[2].health.type", "a check type is required");
        AssertError(doc, 14, 33, "instances[3].health.port", "a icmp check has no port");
        Assert.Equal(4, doc.Errors.Count);
    }

    [Fact]
    public void Parse_DuplicateEntries_ReportsEachAtTheSecond()
    {
        var doc = Parse("""
            networks:
              - name: demo
              - name: DEMO
            services:
              - network: demo
                name: a.com
              - network: demo
                name: A.com.
              - name: a.com
            instances:
              - network: demo
                service: a.com
                name: a-1
              - network: demo
                service: a.com
                name: a-1
              - service: a.com
                name: a-1
            """);

        Assert.Equal(
        [
            "3:11: networks[1].name: network 'demo' is listed twice (first at line 2)",
            "8:11: services[1].name: service 'a.com' is listed twice in network 'demo' (first at line 6)",
            "16:11: instances[1].name: instance 'a-1' is listed twice in network 'demo' (first at line 13)",
        ], doc.Errors.Select(e => e.ToString()));
    }

    [Fact]
    public void Parse_InstanceOfServiceNotInFile_ReportsIt()
    {
        var doc = Parse("""
            services:
              - network: demo
                name: a.com
            instances:
              - network: demo
                service: b.com
                name: b-1
              - service: a.com
                name: a-1
            """);

        Assert.Equal(
        [
            "6:14: instances[0].service: instance b-1: service b.com is not in this file (network 'demo'); list it under services",
            "8:14: instances[1].service: instance a-1: service a.com is not in this file (network 'default'); list it under services",
        ], doc.Errors.Select(e => e.ToString()));
    }

    [Fact]
    public void Parse_ServicesUnreadable_DoesNotGuessThatInstancesReferToNothing()
    {
        var doc = Parse("""
            services:
              name: a.com
            instances:
              - service: a.com
                name: a-1
            """);

        var error = Assert.Single(doc.Errors);
        Assert.Equal("2:3: services: services must be a list (each entry starting with '- '), not a mapping", error.ToString());
    }

    [Fact]
    public void Parse_EntryOfWrongKind_ReportsItOnce()
    {
        var doc = Parse("""
            networks:
              - name: demo
                dns: { zones: [[relay.internal]], upstreams: [{address: 1.1.1.1}] }
            services:
              - name: a.com
                ports: [[80]]
            """);

        Assert.Equal(
        [
            "3:20: networks[0].dns.zones[0]: each entry of zones must be a single value, not a list",
            "3:51: networks[0].dns.upstreams[0]: each entry of upstreams must be a single value, not a mapping",
            "6:13: services[0].ports[0]: each entry of ports must be a single value, not a list",
        ], doc.Errors.Select(e => e.ToString()));
    }

    [Fact]
    public void Parse_ServiceReferenceIgnoresCaseAndTrailingDot()
    {
        var doc = Parse("services: [{name: A.Com.}]\ninstances: [{service: a.com, name: a-1}]\n");

        Assert.Empty(doc.Errors);
    }

    [Fact]
    public void Parse_SeveralErrors_ReportsAllInFileOrder()
    {
        var doc = Parse("""
            networks:
              - name: demo
                drain: soon
            services:
              - network: demo
                name: a.com
                policy: fair
                ports: [http]
            instances:
              - network: demo
                service: z.com
                name: a-1
                restart: sometimes
                colour: red
            """);

        Assert.Equal(
        [
            (3, 12, "networks[0].drain"),
            (7, 13, "services[0].policy"),
            (8, 13, "services[0].ports[0]"),
            (11, 14, "instances[0].service"),
            (13, 14, "instances[0].restart"),
            (14, 5, "instances[0].colour"),
        ], doc.Errors.Select(e => (e.Line, e.Column, e.Field)));
    }

    [Fact]
    public void TryGetLocation_NestedPaths_ReturnsWhereEachValueStarts()
    {
        var doc = Parse(FullDocument);

        Assert.Equal((2, 3), Location(doc, "networks"));
        Assert.Equal((2, 5), Location(doc, "networks[0]"));
        Assert.Equal((2, 11), Location(doc, "networks[0].name"));
        Assert.Equal((10, 10), Location(doc, "networks[0].dns"));
        Assert.Equal((10, 34), Location(doc, "networks[0].dns.zones"));
        Assert.Equal((10, 51), Location(doc, "networks[0].dns.zones[1]"));
        Assert.Equal((10, 96), Location(doc, "networks[0].dns.upstreams[1]"));
        Assert.Equal((12, 5), Location(doc, "services[0]"));
        Assert.Equal((15, 12), Location(doc, "services[0].ports"));
        Assert.Equal((15, 28), Location(doc, "services[0].ports[1]"));
        Assert.Equal((19, 11), Location(doc, "services[1].name"));
        Assert.Equal((25, 14), Location(doc, "instances[0].command"));
        Assert.Equal((25, 22), Location(doc, "instances[0].command[1]"));
        Assert.Equal((27, 13), Location(doc, "instances[0].health"));
        Assert.Equal((27, 48), Location(doc, "instances[0].health.interval"));
        Assert.Equal((27, 109), Location(doc, "instances[0].health.unhealthyThreshold"));
        Assert.Equal((33, 16), Location(doc, "instances[1].health.command"));
        Assert.Equal((33, 23), Location(doc, "instances[1].health.command[1]"));
    }

    [Fact]
    public void TryGetLocation_PathNotInFile_ReturnsFalse()
    {
        var doc = Parse(FullDocument);

        Assert.False(doc.TryGetLocation("services[1].policy", out _, out _));
        Assert.False(doc.TryGetLocation("services[5]", out _, out _));
        Assert.False(doc.TryGetLocation("services[0].ports[1].port", out _, out _));
        Assert.False(doc.TryGetLocation("", out _, out _));
    }

    [Fact]
    public void TryGetNearestLocation_DerivedOrOmittedField_ReturnsTheEnclosingValue()
    {
        var doc = Parse(FullDocument);

        Assert.True(doc.TryGetNearestLocation("services[0].ports[1].targetPort", out var line, out var column));
        Assert.Equal((15, 28), (line, column));
        Assert.True(doc.TryGetNearestLocation("services[1].vip4", out line, out column));
        Assert.Equal((19, 5), (line, column));
        Assert.True(doc.TryGetNearestLocation("instances[0].name", out line, out column));
        Assert.Equal((24, 11), (line, column));
        Assert.False(doc.TryGetNearestLocation("daemon", out _, out _));
    }

    [Fact]
    public void Parse_Alias_ReadsTheAnchoredValueAndLocatesTheAlias()
    {
        var doc = Parse("""
            services: [{name: a.com}]
            instances:
              - service: a.com
                name: a-1
                health: &check { type: tcp, port: 8080 }
              - service: a.com
                name: a-2
                health: *check
            """);

        Assert.Empty(doc.Errors);
        Assert.Equal(8080, doc.State.Instances[1].Health?.Port);
        Assert.Equal((8, 13), Location(doc, "instances[1].health"));
    }

    [Theory]
    [InlineData("\t")]
    [InlineData("[")]
    [InlineData("{a: }")]
    [InlineData("- - - -")]
    [InlineData("? [a, b]\n: c\n")]
    [InlineData("networks: [[[[]]]]\n")]
    [InlineData("services: {name: a.com}\n")]
    [InlineData("instances: [{health: {command: {a: b}}}]\n")]
    [InlineData("%YAML 1.2\n---\nnetworks: []\n")]
    [InlineData("'unterminated")]
    public void Parse_OddInput_NeverThrows(string yaml)
    {
        var doc = Parse(yaml);

        Assert.NotNull(doc.State);
        Assert.All(doc.Errors, e => Assert.True(e.Line >= 1 && e.Column >= 1, e.ToString()));
    }

    [Fact]
    public void Parse_DeepNesting_ReportsAnErrorInsteadOfOverflowing()
    {
        var doc = Parse("networks: " + new string('[', 5000) + new string(']', 5000) + "\n");

        var error = Assert.Single(doc.Errors);
        Assert.Contains("nested more than", error.Message);
    }

    [Fact]
    public void ToString_EmptyField_LeavesItOut()
    {
        Assert.Equal("1:2: a: b", new YamlError(1, 2, "a", "b").ToString());
        Assert.Equal("1:2: b", new YamlError(1, 2, "", "b").ToString());
    }

    [Theory]
    [InlineData("seed.yaml")]
    [InlineData("web.yaml")]
    public void Parse_ExampleFile_HasNoErrors(string name)
    {
        var path = Path.Combine(RepositoryRoot(), "examples", name);

        var doc = DesiredStateDocument.Parse(File.ReadAllText(path), path);

        Assert.Empty(doc.Errors);
        Assert.NotEmpty(doc.State.Instances);
    }

    [Fact]
    public void Parse_SeedExample_DescribesTheSeedScenario()
    {
        var doc = DesiredStateDocument.Parse(File.ReadAllText(Path.Combine(RepositoryRoot(), "examples", "seed.yaml")), "seed.yaml");

        Assert.Equal("demo", Assert.Single(doc.State.Networks).Name);
        Assert.Equal(["a.com", "b.com", "c.com"], doc.State.Services.Select(s => s.Name));
        Assert.Equal(["round-robin", null, null], doc.State.Services.Select(s => s.Policy));
        Assert.All(doc.State.Services, s => Assert.Null(s.Ports));
        Assert.Equal(["a-1:a.com", "a-2:a.com", "b-1:b.com", "c-1:c.com"], doc.State.Instances.Select(i => $"{i.Name}:{i.Service}"));
        Assert.All(doc.State.Instances, i => Assert.Null(i.Command));
    }

    [Fact]
    public void Parse_WebExample_DescribesThePortMappedService()
    {
        var doc = DesiredStateDocument.Parse(File.ReadAllText(Path.Combine(RepositoryRoot(), "examples", "web.yaml")), "web.yaml");

        var service = Assert.Single(doc.State.Services);
        Assert.Equal(("web", "web.relay.internal"), (service.Network, service.Name));
        Assert.Equal(["80:8080/tcp"], service.Ports);
        Assert.Equal(2, doc.State.Instances.Count);
        for (var i = 0; i < 2; i++)
        {
            var instance = doc.State.Instances[i];
            Assert.Equal($"web-{i + 1}", instance.Name);
            Assert.Equal(["socat", "TCP-LISTEN:8080,fork,reuseaddr", $"SYSTEM:echo hello from web-{i + 1}"], instance.Command);
            Assert.Equal("on-failure", instance.Restart);
            Assert.Equal(new HealthSpec { Type = "tcp", Port = 8080, Interval = "1s" }, instance.Health);
        }
    }
}
