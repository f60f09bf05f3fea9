using Relay.Core.Errors;
using Relay.Engine.Api;
using Relay.Engine.Health;

namespace Relay.Integration.Tests.Health;

public sealed class HealthCheckSpecTests
{
    private const string Field = "instances[0].health";

    [Fact]
    public void FromSpec_Null_NoCheckNoError()
    {
        var errors = new ErrorCollector();

        Assert.Null(HealthCheck.FromSpec(null, Field, errors));
        Assert.True(errors.IsEmpty);
    }

    [Fact]
    public void FromSpec_TcpWithPortOnly_Defaults()
    {
        var errors = new ErrorCollector();

        var check = HealthCheck.FromSpec(new HealthSpec { Type = "tcp", Port = 8080 }, Field, errors);

        Assert.True(errors.IsEmpty, string.Join("; ", errors.Errors));
        Assert.Equal(new HealthCheck { Type = HealthCheckType.Tcp, Port = 8080 }, check);
        Assert.Equal(TimeSpan.FromSeconds(1), check!.Interval);
        Assert.Equal(TimeSpan.FromSeconds(1), check.Timeout);
        Assert.Equal(1, check.HealthyThreshold);
        Assert.Equal(3, check.UnhealthyThreshold);
    }

    [Fact]
    public void FromSpec_HttpWithoutPath_RootPath()
    {
        var errors = new ErrorCollector();

        var check = HealthCheck.FromSpec(new HealthSpec { Type = "HTTP", Port = 80 }, Field, errors);

        Assert.Equal(HealthCheckType.Http, check!.Type);
        Assert.Equal("/", check.Path);
    }

    [Fact]
    public void FromSpec_ShortIntervalWithoutTimeout_TimeoutIsTheInterval()
    {
        var errors = new ErrorCollector();

        var check = HealthCheck.FromSpec(new HealthSpec { Type = "icmp", Interval = "100ms", UnhealthyThreshold = 2 }, Field, errors);

        Assert.True(errors.IsEmpty, string.Join("; ", errors.Errors));
        Assert.Equal(TimeSpan.FromMilliseconds(100), check!.Interval);
        Assert.Equal(TimeSpan.FromMilliseconds(100), check.Timeout);
    }

    [Fact]
    public void FromSpec_Exec_CommandKept()
    {
        var errors = new ErrorCollector();

        var check = HealthCheck.FromSpec(new HealthSpec { Type = "exec", Command = ["pg_isready", "-q"], Interval = "5s", Timeout = "2s", HealthyThreshold = 2 }, Field, errors);

        Assert.True(errors.IsEmpty, string.Join("; ", errors.Errors));
        Assert.Equal(["pg_isready", "-q"], check!.Command);
        Assert.Equal(TimeSpan.FromSeconds(2), check.Timeout);
        // Value equality over the command: the same document gives an equal check.
        Assert.Equal(check, HealthCheck.FromSpec(new HealthSpec { Type = "exec", Command = ["pg_isready", "-q"], Interval = "5s", Timeout = "2s", HealthyThreshold = 2 }, Field, errors));
        Assert.Equal(check.GetHashCode(), (check with { Command = ["pg_isready", "-q"] }).GetHashCode());
        Assert.NotEqual(check, check with { Command = ["pg_isready"] });
    }

    [Fact]
    public void FromSpec_ManyProblems_AllReportedAtOnce()
    {
        var errors = new ErrorCollector();

        var check = HealthCheck.FromSpec(new HealthSpec
        {
            Type = "http",
            Port = 70000,
            Path = "no slash",
            Interval = "5ms",
            Timeout = "soon",
            HealthyThreshold = 0,
            UnhealthyThreshold = -1,
            Command = ["true"],
        }, Field, errors);

        Assert.Null(check);
        Assert.Equal(
            [$"{Field}.timeout", $"{Field}.port", $"{Field}.path", $"{Field}.interval", $"{Field}.healthyThreshold", $"{Field}.unhealthyThreshold", $"{Field}.command"],
            errors.Errors.Select(e => e.Field).ToArray());
        Assert.All(errors.Errors, e => Assert.Equal(ErrorCode.Invalid, e.Code));
        var thrown = Assert.Throws<RelayException>(errors.ThrowIfAny);
        Assert.StartsWith("7 errors:", thrown.Message);
    }

    [Theory]
    [InlineData(null, "a check type is required")]
    [InlineData("", "a check type is required")]
    [InlineData("grpc", "unknown check type 'grpc'; choose one of exec, tcp, http, icmp")]
    public void FromSpec_BadType_TypeError(string? type, string message)
    {
        var errors = new ErrorCollector();

        Assert.Null(HealthCheck.FromSpec(new HealthSpec { Type = type }, Field, errors));

        var e = Assert.Single(errors.Errors);
        Assert.Equal($"{Field}.type", e.Field);
        Assert.StartsWith(message, e.Message);
    }

    [Fact]
    public void FromSpec_ExecWithoutCommand_CommandError()
    {
        var errors = new ErrorCollector();

        Assert.Null(HealthCheck.FromSpec(new HealthSpec { Type = "exec" }, Field, errors));

        Assert.Equal($"{Field}.command", Assert.Single(errors.Errors).Field);
    }

    [Theory]
    [InlineData("tcp")]
    [InlineData("http")]
    public void FromSpec_NetworkCheckWithoutPort_PortError(string type)
    {
        var errors = new ErrorCollector();

        Assert.Null(HealthCheck.FromSpec(new HealthSpec { Type = type }, Field, errors));

        var e = Assert.Single(errors.Errors);
        Assert.Equal($"{Field}.port", e.Field);
        Assert.Equal($"a {type} check needs a port", e.Message);
    }

    [Fact]
    public void FromSpec_TimeoutLongerThanInterval_TimeoutError()
    {
        var errors = new ErrorCollector();

        Assert.Null(HealthCheck.FromSpec(new HealthSpec { Type = "icmp", Interval = "1s", Timeout = "2s" }, Field, errors));

        var e = Assert.Single(errors.Errors);
        Assert.Equal($"{Field}.timeout", e.Field);
        Assert.Contains("cannot be longer than the interval", e.Message);
    }

    [Fact]
    public void FromSpec_TimeoutZero_TimeoutError()
    {
        var errors = new ErrorCollector();

        Assert.Null(HealthCheck.FromSpec(new HealthSpec { Type = "icmp", Timeout = "0" }, Field, errors));

        Assert.Equal($"{Field}.timeout", Assert.Single(errors.Errors).Field);
    }

    [Fact]
    public void FromSpec_BadIntervalWithTimeout_OnlyTheIntervalIsReported()
    {
        var errors = new ErrorCollector();

        Assert.Null(HealthCheck.FromSpec(new HealthSpec { Type = "icmp", Interval = "1 fortnight", Timeout = "5s" }, Field, errors));

        Assert.Equal($"{Field}.interval", Assert.Single(errors.Errors).Field);
    }

    [Fact]
    public void FromSpec_IntervalAtTheMinimum_Accepted()
    {
        var errors = new ErrorCollector();

        var check = HealthCheck.FromSpec(new HealthSpec { Type = "icmp", Interval = "10ms" }, Field, errors);

        Assert.True(errors.IsEmpty, string.Join("; ", errors.Errors));
        Assert.Equal(TimeSpan.FromMilliseconds(10), check!.Timeout);
    }

    [Fact]
    public void FromSpec_FieldsOfAnotherType_Errors()
    {
        var errors = new ErrorCollector();

        Assert.Null(HealthCheck.FromSpec(new HealthSpec { Type = "icmp", Port = 80, Path = "/", Command = ["true"] }, Field, errors));

        Assert.Equal([$"{Field}.command", $"{Field}.port", $"{Field}.path"], errors.Errors.Select(e => e.Field).ToArray());
    }

    [Fact]
    public void ToString_Http_Readable()
    {
        var check = new HealthCheck { Type = HealthCheckType.Http, Port = 8080, Path = "/healthz", Interval = TimeSpan.FromMilliseconds(500), Timeout = TimeSpan.FromMilliseconds(200) };

        Assert.Equal("http :8080/healthz every 500ms (timeout 200ms, healthy 1, unhealthy 3)", check.ToString());
    }
}
