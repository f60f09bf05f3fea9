using Relay.Core.Errors;

namespace Relay.Core.Tests.Errors;

public class RelayExceptionTests
{
    [Fact]
    public void Message_SingleError_IsFieldColonMessage()
    {
        var ex = new RelayException(ErrorCode.NotFound, "services[0].name", "no such service");

        Assert.Equal("services[0].name: no such service", ex.Message);
        Assert.Equal(ErrorCode.NotFound, ex.Code);
        Assert.Single(ex.Errors);
    }

    [Fact]
    public void Message_SingleErrorWithEmptyField_IsMessageOnly()
    {
        var ex = new RelayException(ErrorCode.Kernel, "", "nft refused the transaction");

        Assert.Equal("nft refused the transaction", ex.Message);
    }

    [Fact]
    public void Message_ManyErrors_ListsEveryErrorInOrder()
    {
        var ex = new RelayException(
        [
            new RelayError(ErrorCode.Invalid, "a", "first problem"),
            new RelayError(ErrorCode.Duplicate, "b", "second problem"),
            new RelayError(ErrorCode.PoolExhausted, "", "third problem"),
        ]);

        Assert.Equal("3 errors:\n  - a: first problem\n  - b: second problem\n  - third problem", ex.Message);
        Assert.Equal(ErrorCode.Invalid, ex.Code);
        Assert.Equal(3, ex.Errors.Count);
        Assert.Equal(ErrorCode.PoolExhausted, ex.Errors[2].Code);
    }

    [Fact]
    public void Constructor_NoErrors_ThrowsArgumentException()
    {
        var ex = Assert.Throws<ArgumentException>(() => new RelayException(Array.Empty<RelayError>()));

        Assert.Equal("errors", ex.ParamName);
    }

    [Fact]
    public void Constructor_WithInner_KeepsInnerException()
    {
        var inner = new InvalidOperationException("netlink said no");

        var ex = new RelayException(ErrorCode.Kernel, "ns", "failed", inner);

        Assert.Same(inner, ex.InnerException);
    }

    [Fact]
    public void ToString_RelayErrorWithField_PrefixesField()
    {
        Assert.Equal("x: y", new RelayError(ErrorCode.Invalid, "x", "y").ToString());
        Assert.Equal("y", new RelayError(ErrorCode.Invalid, "", "y").ToString());
    }
}
