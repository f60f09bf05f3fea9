using Relay.Core.Naming;

namespace Relay.Core.Tests.Naming;

public class DnsNameTests
{
    [Theory]
    [InlineData("a")]
    [InlineData("0")]
    [InlineData("9lives")]
    [InlineData("a-b-c")]
    [InlineData("A1")]
    public void IsValidLabel_Valid_ReturnsTrue(string label)
    {
        Assert.True(DnsName.IsValidLabel(label, out var reason));
        Assert.Equal("", reason);
    }

    [Theory]
    [InlineData("", "empty label")]
    [InlineData("-a", "starts or ends with '-'")]
    [InlineData("a-", "starts or ends with '-'")]
    [InlineData("-", "starts or ends with '-'")]
    [InlineData("a.b", "contains '.'")]
    [InlineData("a*", "contains '*'")]
    public void IsValidLabel_Invalid_ReturnsFalseWithReason(string label, string reasonMentions)
    {
        Assert.False(DnsName.IsValidLabel(label, out var reason));
        Assert.Contains(reasonMentions, reason);
    }

    [Fact]
    public void TryNormalize_LongName_ReasonShortensName()
    {
        var name = string.Join('.', Enumerable.Repeat(new string('x', 60), 5));

        Assert.Null(DnsName.TryNormalize(name, out var reason));
        Assert.Contains("...", reason);
        Assert.DoesNotContain(name, reason);
        Assert.Contains($"{name.Length} characters", reason);
    }

    [Fact]
    public void TryNormalize_UpperCase_LowerCased()
    {
        Assert.Equal("web.example", DnsName.TryNormalize("WEB.Example.", out _));
    }
}
