using Relay.Core.Errors;

namespace Relay.Core.Tests.Errors;

public class ErrorCollectorTests
{
    [Fact]
    public void ThrowIfAny_Empty_DoesNotThrow()
    {
        var errors = new ErrorCollector();

        var thrown = Record.Exception(errors.ThrowIfAny);

        Assert.Null(thrown);
        Assert.True(errors.IsEmpty);
    }

    [Fact]
    public void ThrowIfAny_OneError_ThrowsWithThatError()
    {
        var errors = new ErrorCollector();
        errors.Add(ErrorCode.Conflict, "network", "already running");

        var ex = Assert.Throws<RelayException>(errors.ThrowIfAny);

        Assert.False(errors.IsEmpty);
        Assert.Equal(ErrorCode.Conflict, ex.Code);
        Assert.Equal("network: already running", ex.Message);
    }

    [Fact]
    public void ThrowIfAny_ManyErrors_ThrowsWithAllInOrder()
    {
        var errors = new ErrorCollector();
        errors.Add(ErrorCode.Invalid, "a", "one");
        errors.AddRange([new RelayError(ErrorCode.Duplicate, "b", "two"), new RelayError(ErrorCode.NotFound, "c", "three")]);

        var ex = Assert.Throws<RelayException>(errors.ThrowIfAny);

        Assert.Equal(["a", "b", "c"], ex.Errors.Select(e => e.Field));
        Assert.Contains("3 errors:", ex.Message);
        Assert.Contains("a: one", ex.Message);
        Assert.Contains("b: two", ex.Message);
        Assert.Contains("c: three", ex.Message);
    }

    [Fact]
    public void ThrowIfAny_ErrorsAddedLater_ExceptionIsASnapshot()
    {
        var errors = new ErrorCollector();
        errors.Add(ErrorCode.Invalid, "a", "one");
        var ex = Assert.Throws<RelayException>(errors.ThrowIfAny);

        errors.Add(ErrorCode.Invalid, "b", "two");

        Assert.Single(ex.Errors);
        Assert.Equal(2, errors.Errors.Count);
    }
}
