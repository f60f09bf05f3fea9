using System.Net;
using Relay.Core.Dataplane;

namespace Relay.Core.Tests.Dataplane;

public class FlowFragmentTests
{
    private static DataplaneFlow Flow(string backend4, string backend6) => new(
        "c1>web.test",
        IPAddress.Parse("10.88.0.2"), IPAddress.Parse("fd88::2"),
        IPAddress.Parse("10.90.0.1"), IPAddress.Parse("fd90::1"),
        IPAddress.Parse(backend4), IPAddress.Parse(backend6));

    [Fact]
    public void CompileFlow_TranslationAndCounterKeyedByClient()
    {
        var f = DataplaneCompiler.CompileFlow(Flow("10.88.0.7", "fd88::7"));

        Assert.Empty(f.Chains);
        Assert.Contains(new NftElement("flow4", "10.90.0.1", "10.88.0.7"), f.Elements);
        Assert.Contains(new NftElement("flow6", "fd90::1", "fd88::7"), f.Elements);
        Assert.Contains(new NftElement("fstat4", "10.88.0.2 . 10.90.0.1", ""), f.Elements);
        Assert.Contains(new NftElement("fstat6", "fd88::2 . fd90::1", ""), f.Elements);
    }

    [Fact]
    public void Plan_RepointFlow_ChangesOnlyTheTranslationNotTheCounter()
    {
        var image = new DataplaneImage();
        image.Commit(image.Plan([], flows: [Flow("10.88.0.7", "fd88::7")]));

        var tx = image.Plan([], flows: [Flow("10.88.0.8", "fd88::8")]).Transaction;

        Assert.Equal(2, tx.ElementsDeleted);
        Assert.Equal(2, tx.ElementsAdded);
        Assert.DoesNotContain("fstat", tx.ToString());
        Assert.Contains("add element inet relay flow4 { 10.90.0.1 : 10.88.0.8 }", tx.ToString());
    }

    [Fact]
    public void Plan_RemoveFlow_DeletesAllFourElements()
    {
        var image = new DataplaneImage();
        image.Commit(image.Plan([], flows: [Flow("10.88.0.7", "fd88::7")]));

        var tx = image.Plan([], removedFlows: ["c1>web.test"]).Transaction;

        Assert.Equal(4, tx.ElementsDeleted);
        Assert.Equal(0, tx.ElementsAdded);
        Assert.Empty(image.ToRuleset(image.Plan([], removedFlows: ["c1>web.test"])).Elements["flow4"]);
    }
}
