using Relay.Core.Errors;
using Relay.Engine.Health;

namespace Relay.Integration.Tests.Health;

public sealed class RestartTests
{
    [Fact]
    public void Next_QuickCrashes_DoublesFromOneSecondAndCapsAtThirty()
    {
        var b = new RestartBackoff();

        var delays = Enumerable.Range(0, 8).Select(_ => b.Next(TimeSpan.FromMilliseconds(50)).TotalSeconds).ToArray();

        Assert.Equal([1, 2, 4, 8, 16, 30, 30, 30], delays);
        Assert.Equal(8, b.Attempts);
    }

    [Fact]
    public void Next_RunOfTenSeconds_ResetsToOneSecond()
    {
        var b = new RestartBackoff();
        b.Next(TimeSpan.Zero);
        b.Next(TimeSpan.Zero);
        b.Next(TimeSpan.Zero);

        Assert.Equal(TimeSpan.FromSeconds(1), b.Next(TimeSpan.FromSeconds(10)));
        Assert.Equal(TimeSpan.FromSeconds(2), b.Next(TimeSpan.FromSeconds(1)));
        Assert.Equal(2, b.Attempts);
    }

    [Fact]
    public void Next_RunJustUnderTenSeconds_KeepsBackingOff()
    {
        var b = new RestartBackoff();
        b.Next(TimeSpan.Zero);
        b.Next(TimeSpan.Zero);

        Assert.Equal(TimeSpan.FromSeconds(4), b.Next(TimeSpan.FromSeconds(9.999)));
    }

    [Fact]
    public void Reset_AfterBackoff_NextIsOneSecond()
    {
        var b = new RestartBackoff();
        b.Next(TimeSpan.Zero);
        b.Next(TimeSpan.Zero);

        b.Reset();

        Assert.Equal(TimeSpan.FromSeconds(1), b.Upcoming);
        Assert.Equal(TimeSpan.FromSeconds(1), b.Next(TimeSpan.Zero));
    }

    [Theory]
    [InlineData(RestartPolicy.Never, 0, false)]
    [InlineData(RestartPolicy.Never, 1, false)]
    [InlineData(RestartPolicy.Never, 137, false)]
    [InlineData(RestartPolicy.OnFailure, 0, false)]
    [InlineData(RestartPolicy.OnFailure, 1, true)]
    [InlineData(RestartPolicy.OnFailure, 137, true)] // SIGKILL
    [InlineData(RestartPolicy.OnFailure, 143, true)] // SIGTERM
    [InlineData(RestartPolicy.OnFailure, -1, true)]
    [InlineData(RestartPolicy.Always, 0, true)]
    [InlineData(RestartPolicy.Always, 2, true)]
    public void ShouldRestart_PolicyAndExitCode_AsDocumented(RestartPolicy policy, int exitCode, bool expected)
    {
        Assert.Equal(expected, RestartBackoff.ShouldRestart(policy, exitCode));
    }

    [Fact]
    public void ShouldRestart_UnknownExitCode_OnFailureRestarts()
    {
        Assert.True(RestartBackoff.ShouldRestart(RestartPolicy.OnFailure, null));
        Assert.False(RestartBackoff.ShouldRestart(RestartPolicy.Never, null));
    }

    [Theory]
    [InlineData("never", RestartPolicy.Never)]
    [InlineData("on-failure", RestartPolicy.OnFailure)]
    [InlineData("always", RestartPolicy.Always)]
    [InlineData(" Always ", RestartPolicy.Always)]
    [InlineData("ON-FAILURE", RestartPolicy.OnFailure)]
    public void Parse_KnownName_Policy(string text, RestartPolicy expected)
    {
        var errors = new ErrorCollector();

        Assert.Equal(expected, RestartPolicies.Parse(text, RestartPolicy.Never, "instance.restart", errors));
        Assert.True(errors.IsEmpty);
    }

    [Fact]
    public void Parse_Missing_FallbackWithoutError()
    {
        var errors = new ErrorCollector();

        Assert.Equal(RestartPolicy.OnFailure, RestartPolicies.Parse(null, RestartPolicy.OnFailure, "instance.restart", errors));
        Assert.True(errors.IsEmpty);
    }

    [Fact]
    public void Parse_UnknownName_ErrorAtField()
    {
        var errors = new ErrorCollector();

        RestartPolicies.Parse("sometimes", RestartPolicy.OnFailure, "instances[2].restart", errors);

        var e = Assert.Single(errors.Errors);
        Assert.Equal(ErrorCode.Invalid, e.Code);
        Assert.Equal("instances[2].restart", e.Field);
        Assert.Contains("never, on-failure, always", e.Message);
    }

    [Fact]
    public void Of_EveryPolicy_ParsesBack()
    {
        foreach (var p in Enum.GetValues<RestartPolicy>())
        {
            Assert.True(RestartPolicies.TryParse(RestartPolicies.Of(p), out var back));
            Assert.Equal(p, back);
        }
    }
}
