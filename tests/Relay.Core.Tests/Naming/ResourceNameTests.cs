using Relay.Core.Errors;
using Relay.Core.Naming;

namespace Relay.Core.Tests.Naming;

public class ResourceNameTests
{
    [Theory]
    [InlineData("prod", "prod")]
    [InlineData("Prod-1", "prod-1")]
    [InlineData("1net", "1net")]
    public void ValidateNetwork_Valid_ReturnsLowerCaseWithoutErrors(string input, string expected)
    {
        var errors = new ErrorCollector();

        Assert.Equal(expected, ResourceName.ValidateNetwork(input, "network", errors));
        Assert.True(errors.IsEmpty);
    }

    [Fact]
    public void ValidateNetwork_32Characters_Accepted()
    {
        var errors = new ErrorCollector();

        Assert.Equal(new string('n', 32), ResourceName.ValidateNetwork(new string('n', 32), "network", errors));
        Assert.True(errors.IsEmpty);
    }

    [Fact]
    public void ValidateNetwork_33Characters_RejectedMentioningLimit()
    {
        var errors = new ErrorCollector();

        Assert.Null(ResourceName.ValidateNetwork(new string('n', 33), "network", errors));
        var error = Assert.Single(errors.Errors);
        Assert.Equal(ErrorCode.Invalid, error.Code);
        Assert.Equal("network", error.Field);
        Assert.Contains("33 characters", error.Message);
        Assert.Contains("at most 32", error.Message);
    }

    [Theory]
    [InlineData(null, "a network name is required")]
    [InlineData("", "a network name is required")]
    [InlineData("a.b", "contains '.'")]
    [InlineData("-net", "'-'")]
    [InlineData("net-", "'-'")]
    [InlineData("my_net", "'_'")]
    public void ValidateNetwork_Invalid_AddsErrorAndReturnsNull(string? input, string messageMentions)
    {
        var errors = new ErrorCollector();

        Assert.Null(ResourceName.ValidateNetwork(input, "networks[1]", errors));
        var error = Assert.Single(errors.Errors);
        Assert.Equal(ErrorCode.Invalid, error.Code);
        Assert.Equal("networks[1]", error.Field);
        Assert.Contains(messageMentions, error.Message);
    }

    [Fact]
    public void ValidateInstance_63Characters_Accepted()
    {
        var errors = new ErrorCollector();

        Assert.Equal(new string('i', 63), ResourceName.ValidateInstance(new string('I', 63), "instance", errors));
        Assert.True(errors.IsEmpty);
    }

    [Fact]
    public void ValidateInstance_64Characters_Rejected()
    {
        var errors = new ErrorCollector();

        Assert.Null(ResourceName.ValidateInstance(new string('i', 64), "instance", errors));
        Assert.Contains("at most 63", Assert.Single(errors.Errors).Message);
    }

    [Theory]
    [InlineData(null, "instance name is required")]
    [InlineData("web.1", "contains '.'")]
    [InlineData("-web", "'-'")]
    public void ValidateInstance_Invalid_AddsErrorMentioningInstance(string? input, string messageMentions)
    {
        var errors = new ErrorCollector();

        Assert.Null(ResourceName.ValidateInstance(input, "instances[0]", errors));
        var error = Assert.Single(errors.Errors);
        Assert.Contains(messageMentions, error.Message);
        Assert.Contains("instance", error.Message);
    }

    [Fact]
    public void ValidateInstance_Null_MessageUsesArticleAn()
    {
        var errors = new ErrorCollector();

        ResourceName.ValidateInstance(null, "instance", errors);

        Assert.Equal("an instance name is required", Assert.Single(errors.Errors).Message);
    }

    [Fact]
    public void ValidateInstance_SeveralInvalid_CollectsAll()
    {
        var errors = new ErrorCollector();

        ResourceName.ValidateInstance("a.b", "i0", errors);
        ResourceName.ValidateInstance("ok", "i1", errors);
        ResourceName.ValidateInstance("", "i2", errors);

        Assert.Equal(["i0", "i2"], errors.Errors.Select(e => e.Field));
    }
}
