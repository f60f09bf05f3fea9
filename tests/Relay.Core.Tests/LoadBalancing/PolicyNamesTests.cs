using Relay.Core.LoadBalancing;

namespace Relay.Core.Tests.LoadBalancing;

public class PolicyNamesTests
{
    [Theory]
    [InlineData("random", LoadBalancingPolicy.Random)]
    [InlineData("round-robin", LoadBalancingPolicy.RoundRobin)]
    [InlineData("RoundRobin", LoadBalancingPolicy.RoundRobin)]
    [InlineData("rr", LoadBalancingPolicy.RoundRobin)]
    [InlineData("MAGLEV", LoadBalancingPolicy.Maglev)]
    [InlineData("source", LoadBalancingPolicy.Source)]
    public void TryParse_KnownName_ReturnsPolicy(string name, LoadBalancingPolicy expected)
    {
        Assert.True(PolicyNames.TryParse(name, out var policy));
        Assert.Equal(expected, policy);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("least-conn")]
    [InlineData("round robin")]
    public void TryParse_UnknownName_False(string? name)
    {
        Assert.False(PolicyNames.TryParse(name, out _));
    }

    [Fact]
    public void Of_EveryPolicy_RoundTripsThroughTryParse()
    {
        foreach (var policy in Enum.GetValues<LoadBalancingPolicy>())
        {
            Assert.True(PolicyNames.TryParse(PolicyNames.Of(policy), out var parsed));
            Assert.Equal(policy, parsed);
        }
        Assert.Equal(["random", "round-robin", "maglev", "source"], PolicyNames.All);
    }

    [Fact]
    public void Of_UndefinedPolicy_Throws()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => PolicyNames.Of((LoadBalancingPolicy)42));
    }

    [Theory]
    [InlineData(LoadBalancingPolicy.Random, false)]
    [InlineData(LoadBalancingPolicy.RoundRobin, false)]
    [InlineData(LoadBalancingPolicy.Maglev, true)]
    [InlineData(LoadBalancingPolicy.Source, true)]
    public void UsesLookupTable_Policy_TrueOnlyForHashPolicies(LoadBalancingPolicy policy, bool expected)
    {
        Assert.Equal(expected, PolicyNames.UsesLookupTable(policy));
    }
}
