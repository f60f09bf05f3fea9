using Relay.Engine.Health;

namespace Relay.Integration.Tests.Health;

public sealed class HealthCounterTests
{
    [Fact]
    public void Record_FirstSuccessWithThresholdOne_StartingToHealthy()
    {
        var c = new HealthCounter(1, 3);

        Assert.Equal(new HealthTransition(HealthState.Starting, HealthState.Healthy), c.Record(true));
        Assert.Equal(HealthState.Healthy, c.State);
    }

    [Fact]
    public void Record_SuccessesBelowHealthyThreshold_StaysStarting()
    {
        var c = new HealthCounter(3, 3);

        Assert.Null(c.Record(true));
        Assert.Null(c.Record(true));
        Assert.Equal(HealthState.Starting, c.State);
        Assert.Equal(new HealthTransition(HealthState.Starting, HealthState.Healthy), c.Record(true));
    }

    [Fact]
    public void Record_FailureBetweenSuccesses_RestartsTheCount()
    {
        var c = new HealthCounter(2, 3);

        Assert.Null(c.Record(true));
        Assert.Null(c.Record(false));
        Assert.Null(c.Record(true));
        Assert.Equal(1, c.ConsecutiveSuccesses);
        Assert.Equal(new HealthTransition(HealthState.Starting, HealthState.Healthy), c.Record(true));
    }

    [Fact]
    public void Record_FailuresReachThresholdFromHealthy_UnhealthyOnce()
    {
        var c = new HealthCounter(1, 2);
        c.Record(true);

        Assert.Null(c.Record(false));
        Assert.Equal(HealthState.Healthy, c.State);
        Assert.Equal(new HealthTransition(HealthState.Healthy, HealthState.Unhealthy), c.Record(false));
        // Further failures keep counting but change nothing.
        Assert.Null(c.Record(false));
        Assert.Null(c.Record(false));
        Assert.Equal(4, c.ConsecutiveFailures);
        Assert.Equal(HealthState.Unhealthy, c.State);
    }

    [Fact]
    public void Record_FailuresFromStarting_UnhealthyWithoutEverBeingHealthy()
    {
        var c = new HealthCounter(1, 3);

        Assert.Null(c.Record(false));
        Assert.Null(c.Record(false));
        Assert.Equal(new HealthTransition(HealthState.Starting, HealthState.Unhealthy), c.Record(false));
    }

    [Fact]
    public void Record_SuccessInterruptsFailures_CountStartsOver()
    {
        var c = new HealthCounter(1, 3);
        c.Record(true);

        c.Record(false);
        c.Record(false);
        Assert.Null(c.Record(true));
        Assert.Equal(0, c.ConsecutiveFailures);
        Assert.Null(c.Record(false));
        Assert.Null(c.Record(false));
        Assert.Equal(HealthState.Healthy, c.State);
    }

    [Fact]
    public void Record_UnhealthyThenSuccesses_HealthyAfterHealthyThreshold()
    {
        var c = new HealthCounter(2, 1);
        c.Record(false);
        Assert.Equal(HealthState.Unhealthy, c.State);

        Assert.Null(c.Record(true));
        Assert.Equal(new HealthTransition(HealthState.Unhealthy, HealthState.Healthy), c.Record(true));
        Assert.Equal(new HealthTransition(HealthState.Healthy, HealthState.Unhealthy), c.Record(false));
    }

    [Theory]
    [InlineData(0, 1)]
    [InlineData(1, 0)]
    [InlineData(-1, 3)]
    public void Constructor_ThresholdBelowOne_Throws(int healthy, int unhealthy)
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new HealthCounter(healthy, unhealthy));
    }
}
