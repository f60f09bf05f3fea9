using Relay.Core.Dataplane;
using static Relay.Core.Tests.Dataplane.Specs;

namespace Relay.Core.Tests.Dataplane;

/// <summary>The test model of the kernel must itself catch a wrong transaction, or the diff property tests prove nothing.</summary>
public class NftApplyTests
{
    private static NftTransaction Tx(params string[] commands)
    {
        var tx = new NftTransaction(full: false);
        foreach (var c in commands)
        {
            tx.Append(c);
        }
        return tx;
    }

    private static readonly NftRuleset Current = DataplaneCompiler.Compile(Spec(Service(0, [0, 1])));

    [Fact]
    public void Apply_DeleteChainStillReferenced_Fails()
    {
        Assert.ThrowsAny<Xunit.Sdk.XunitException>(() => NftApply.Apply(Current, Tx("delete chain inet relay lb4-round-robin-2")));
    }

    [Fact]
    public void Apply_ElementJumpsToMissingChain_Fails()
    {
        Assert.ThrowsAny<Xunit.Sdk.XunitException>(() => NftApply.Apply(Current, Tx("add element inet relay svc4 { 10.99.0.9 : goto lb4-round-robin-9 }")));
    }

    [Fact]
    public void Apply_AddExistingElement_Fails()
    {
        Assert.ThrowsAny<Xunit.Sdk.XunitException>(() => NftApply.Apply(Current, Tx("add element inet relay be4 { 10.99.0.1 . 0 : 10.88.0.9 }")));
    }

    [Fact]
    public void Apply_DeleteMissingElement_Fails()
    {
        Assert.ThrowsAny<Xunit.Sdk.XunitException>(() => NftApply.Apply(Current, Tx("delete element inet relay be4 { 10.99.0.1 . 7 }")));
    }

    [Fact]
    public void Apply_ValidCommands_ChangesCopyOnly()
    {
        var result = NftApply.Apply(Current, Tx(
            "delete element inet relay be4 { 10.99.0.1 . 0, 10.99.0.1 . 1 }",
            "add element inet relay be4 { 10.99.0.1 . 0 : 10.88.0.9 }",
            "add element inet relay src4 { \"rv3\" . 10.88.0.3 }"));

        Assert.Equal(new Dictionary<string, string> { ["10.99.0.1 . 0"] = "10.88.0.9" }, result.Elements["be4"]);
        Assert.Equal(new Dictionary<string, string> { ["\"rv3\" . 10.88.0.3"] = "" }, result.Elements["src4"]);
        Assert.Equal(2, Current.Elements["be4"].Count);
        Assert.Throws<Xunit.Sdk.EqualException>(() => NftApply.AssertSame(Current, result));
    }
}
