using Relay.Core.Errors;
using Relay.Core.Naming;

namespace Relay.Core.Tests.Naming;

public class ServiceNameTests
{
    private static string Label(int length, char c = 'a') => new(c, length);

    /// <summary>A name of exactly <paramref name="length"/> characters made of labels of at most 63.</summary>
    private static string NameOfLength(int length)
    {
        var labels = new List<string>();
        var remaining = length;
        while (remaining > 0)
        {
            // Each label but the first costs one more character for its dot.
            var room = labels.Count == 0 ? remaining : remaining - 1;
            var n = Math.Min(63, room);
            labels.Add(Label(n, (char)('a' + labels.Count)));
            remaining -= labels.Count == 1 ? n : n + 1;
        }
        var name = string.Join('.', labels);
        Assert.Equal(length, name.Length);
        return name;
    }

    [Theory]
    [InlineData("a", "a")]
    [InlineData("web", "web")]
    [InlineData("api.example.com", "api.example.com")]
    [InlineData("a-b.c-d", "a-b.c-d")]
    [InlineData("3com.net", "3com.net")]
    [InlineData("123.456", "123.456")]
    [InlineData("x1-2y.z", "x1-2y.z")]
    public void TryParse_ValidName_ReturnsCanonical(string input, string expected)
    {
        Assert.True(ServiceName.TryParse(input, out var name, out var reason), reason);
        Assert.Equal(expected, name.Value);
        Assert.Equal("", reason);
    }

    [Fact]
    public void TryParse_MixedCaseWithTrailingDot_EqualsLowerCaseWithout()
    {
        var a = ServiceName.Parse("B.Com.");
        var b = ServiceName.Parse("b.com");

        Assert.Equal(b, a);
        Assert.True(a == b);
        Assert.Equal(a.GetHashCode(), b.GetHashCode());
        Assert.Equal("b.com", a.Value);
        Assert.Equal("b.com", a.ToString());
        Assert.Equal(0, a.CompareTo(b));
    }

    [Fact]
    public void TryParse_TrailingDot_IsStripped()
    {
        Assert.True(ServiceName.TryParse("web.local.", out var name, out _));
        Assert.Equal("web.local", name.Value);
    }

    [Fact]
    public void TryParse_DifferentNames_AreNotEqual()
    {
        Assert.NotEqual(ServiceName.Parse("a.com"), ServiceName.Parse("b.com"));
        Assert.True(ServiceName.Parse("a.com").CompareTo(ServiceName.Parse("b.com")) < 0);
    }

    [Theory]
    [InlineData(null, "required")]
    [InlineData("", "required")]
    [InlineData(".", "root")]
    [InlineData("..", "empty label")]
    [InlineData("a..b", "empty label")]
    [InlineData(".a", "empty label")]
    [InlineData("a.com..", "empty label")]
    [InlineData("-a.com", "'-'")]
    [InlineData("a-.com", "'-'")]
    [InlineData("a.-com", "'-'")]
    [InlineData("a_b.com", "'_'")]
    [InlineData("a b.com", "' '")]
    [InlineData("a.com/x", "'/'")]
    [InlineData("café.com", "'é'")]
    public void TryParse_InvalidName_FailsWithReason(string? input, string reasonMentions)
    {
        Assert.False(ServiceName.TryParse(input, out var name, out var reason));
        Assert.Contains(reasonMentions, reason);
        Assert.Equal(default, name);
    }

    [Fact]
    public void TryParse_Label63_Accepted()
    {
        var input = Label(63) + ".com";

        Assert.True(ServiceName.TryParse(input, out var name, out var reason), reason);
        Assert.Equal(input, name.Value);
    }

    [Fact]
    public void TryParse_Label64_RejectedMentioningLabelLength()
    {
        Assert.False(ServiceName.TryParse(Label(64) + ".com", out _, out var reason));
        Assert.Contains("64 characters", reason);
        Assert.Contains("63", reason);
    }

    [Fact]
    public void TryParse_253Characters_Accepted()
    {
        var input = NameOfLength(253);

        Assert.True(ServiceName.TryParse(input, out var name, out var reason), reason);
        Assert.Equal(253, name.Value.Length);
    }

    [Fact]
    public void TryParse_253CharactersPlusTrailingDot_AcceptedAndStripped()
    {
        var input = NameOfLength(253) + ".";

        Assert.True(ServiceName.TryParse(input, out var name, out var reason), reason);
        Assert.Equal(input[..^1], name.Value);
    }

    [Fact]
    public void TryParse_254Characters_RejectedMentioningLength()
    {
        Assert.False(ServiceName.TryParse(NameOfLength(254), out _, out var reason));
        Assert.Contains("254 characters", reason);
        Assert.Contains("253", reason);
    }

    [Fact]
    public void TryParse_254CharactersPlusTrailingDot_Rejected()
    {
        Assert.False(ServiceName.TryParse(NameOfLength(254) + ".", out _, out var reason));
        Assert.Contains("254 characters", reason);
    }

    [Fact]
    public void Parse_Invalid_ThrowsRelayExceptionWithField()
    {
        var ex = Assert.Throws<RelayException>(() => ServiceName.Parse("a_b", "services[3].name"));

        Assert.Equal(ErrorCode.Invalid, ex.Code);
        Assert.Equal("services[3].name", ex.Errors[0].Field);
        Assert.Contains("'_'", ex.Message);
    }

    [Fact]
    public void ToString_Default_IsEmpty()
    {
        Assert.Equal("", default(ServiceName).ToString());
    }
}
