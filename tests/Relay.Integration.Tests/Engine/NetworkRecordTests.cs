using Relay.Engine;
using Relay.Integration.Tests.Support;
using Relay.Linux.Namespaces;

namespace Relay.Integration.Tests.Engine;

public sealed class NetworkRecordTests
{
    [Fact]
    public async Task Record_IsRewrittenOnlyWhenTheNamespacesChange()
    {
        using var t = new TestNetwork();
        var net = t.Network;
        net.AddService(new ServiceOptions { Name = "a.com" });
        var first = net.AddInstance("a.com");
        var path = NetworkRecord.PathFor(TestNetwork.RecordDirectory, net.Name);
        var before = Netns.Inode(path);
        Assert.NotEqual(0UL, before);

        // Changes that leave the namespaces as they were (a service here; a migration, a health
        // change or a flow are persisted the same way) do not rewrite it: each rewrite is a
        // new file renamed over the old one, which would show as a new inode.
        net.AddService(new ServiceOptions { Name = "b.com" });
        net.RemoveService("b.com");
        Assert.Equal(before, Netns.Inode(path));
        Assert.Equal([net.OrchestratorNamespace, first.Namespace], Namespaces(path));

        // A namespace more is recorded at once, and one less too.
        var second = net.AddInstance("a.com");
        Assert.NotEqual(before, Netns.Inode(path));
        Assert.Equal([net.OrchestratorNamespace, .. new[] { first.Namespace, second.Namespace }.Order(StringComparer.Ordinal)], Namespaces(path));
        await net.RemoveInstanceAsync(first.Name, TimeSpan.Zero).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal([net.OrchestratorNamespace, second.Namespace], Namespaces(path));
    }

    private static string[] Namespaces(string path)
    {
        var record = NetworkRecord.Load(Path.GetDirectoryName(path)!, Path.GetFileNameWithoutExtension(path))!;
        return [record.Orchestrator, .. record.Instances.Order(StringComparer.Ordinal)];
    }
}
