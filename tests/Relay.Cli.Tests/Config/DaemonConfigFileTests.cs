using Relay.Cli.Config;

namespace Relay.Cli.Tests.Config;

public class DaemonConfigFileTests
{
    [Fact]
    public void ReadsEverySetting_EndpointsAsAListOrOneCommaSeparatedValue()
    {
        var (config, errors) = DaemonConfigFile.Parse("""
            node: host1
            etcd: [http://10.0.0.1:2379, http://10.0.0.2:2379]
            underlay: 10.0.0.1
            leaseTtl: 5s
            rescheduleAfter: 1m
            socket: /run/relay/api.sock
            stateDir: /var/lib/relay
            recordDir: /run/relay/records
            """);
        Assert.Empty(errors);
        Assert.Equal("host1", config.Node);
        Assert.Equal(["http://10.0.0.1:2379", "http://10.0.0.2:2379"], config.Etcd);
        Assert.Equal("10.0.0.1", config.Underlay);
        Assert.Equal("5s", config.LeaseTtl);
        Assert.Equal("1m", config.RescheduleAfter);
        Assert.Equal("/run/relay/api.sock", config.Socket);
        Assert.Equal("/var/lib/relay", config.StateDir);
        Assert.Equal("/run/relay/records", config.RecordDir);

        var (comma, none) = DaemonConfigFile.Parse("etcd: http://a:2379, http://b:2379\n");
        Assert.Empty(none);
        Assert.Equal(["http://a:2379", "http://b:2379"], comma.Etcd);
        Assert.Null(comma.Node);
    }

    [Fact]
    public void AnEmptyFile_SetsNothing()
    {
        var (config, errors) = DaemonConfigFile.Parse("");
        Assert.Empty(errors);
        Assert.Equal(new DaemonConfigFile(), config);
    }

    [Fact]
    public void EveryProblem_IsReportedAtOnce_WithItsLine()
    {
        var (_, errors) = DaemonConfigFile.Parse("""
            nodes: host1
            etcd: [http://10.0.0.1:2379, {a: b}]
            underlay: [10.0.0.1]
            leaseTtl:
            node: a
            node: b
            """);
        Assert.Collection(errors,
            e => Assert.Equal("1:1: nodes: unknown setting (did you mean 'node'?); the settings are node, etcd, underlay, leaseTtl, rescheduleAfter, socket, stateDir, recordDir", e.ToString()),
            e => Assert.Equal("2:30: etcd[1]: must be an endpoint such as http://10.0.0.1:2379", e.ToString()),
            e => Assert.Equal("3:11: underlay: must be a single value, not a list", e.ToString()),
            e => Assert.StartsWith("4:10: leaseTtl: is empty", e.ToString()),
            e => Assert.Equal("6:1: node: given twice; keep one", e.ToString()));
    }

    [Fact]
    public void ASyntaxError_OrNotAMapping_IsOneClearError()
    {
        var (_, syntax) = DaemonConfigFile.Parse("node: [host1\n");
        Assert.StartsWith("YAML syntax error", Assert.Single(syntax).Message);
        var (_, list) = DaemonConfigFile.Parse("- node\n");
        Assert.Contains("must be a mapping", Assert.Single(list).Message);
    }
}
