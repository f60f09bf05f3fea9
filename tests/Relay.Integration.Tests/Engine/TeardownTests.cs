using Relay.Core.Model;
using Relay.Engine;
using Relay.Engine.Probes;
using Relay.Integration.Tests.Support;

namespace Relay.Integration.Tests.Engine;

[Collection(HostStateCollection.Name)]
public sealed class TeardownTests
{
    [Fact]
    public void Dispose_AfterServicesInstancesAndProcesses_HostIsAsBefore()
    {
        var before = KernelState.Capture();
        var t = new TestNetwork();
        string[] namespaces;
        int[] pids;
        try
        {
            var net = t.Network;
            net.AddService(new ServiceOptions { Name = "a.com" });
            net.AddService(new ServiceOptions { Name = "web.test", Ports = [new PortMapping(TransportProtocol.Tcp, 80, 8080)] });
            net.AddInstance("a.com", new InstanceOptions { Command = ["sleep", "300"] });
            net.AddInstance("a.com");
            net.AddInstance("web.test", new InstanceOptions { Command = ["sh", "-c", "sleep 300 & sleep 300"] });
            namespaces = [net.OrchestratorNamespace, .. net.Instances.Select(i => i.Namespace)];
            Assert.All(namespaces, n => Assert.True(Relay.Linux.Namespaces.Netns.Exists(n)));
            pids = net.Instances.Select(i => i.Pid).OfType<int>().ToArray();
            Assert.Equal(2, pids.Length);
        }
        finally
        {
            t.Dispose();
        }
        Assert.Equal(before, KernelState.Capture());
        Assert.All(namespaces, n => Assert.False(Relay.Linux.Namespaces.Netns.Exists(n)));
        Assert.All(pids, p => Assert.False(Directory.Exists($"/proc/{p}"), $"process {p} survived"));
        Assert.False(File.Exists(NetworkRecord.PathFor(TestNetwork.RecordDirectory, t.Network.Name)));
        // The instances' commands wrote logs there; the directory goes with them.
        Assert.False(Directory.Exists(Path.Combine(new NetworkOptions { Name = "x" }.LogDirectory, t.Network.Name)));
    }

    [Fact]
    public void RemoveLeftovers_AfterCrash_RemovesExactlyTheRecordedNamespaces()
    {
        var before = KernelState.Capture();
        var name = TestNetwork.UniqueName("t");
        var bystander = "relay-" + name + "x";   // looks like ours but is not in the record
        Relay.Linux.Namespaces.Netns.Add(bystander);
        try
        {
            var net = RelayNetwork.Create(new NetworkOptions { Name = name, RecordDirectory = TestNetwork.RecordDirectory });
            net.AddService(new ServiceOptions { Name = "a.com" });
            net.AddInstance("a.com", new InstanceOptions { Command = ["sleep", "300"] });
            // Simulate a crash: the object is dropped without Dispose; only the record remains.
            var record = NetworkRecord.Load(TestNetwork.RecordDirectory, name);
            Assert.NotNull(record);
            Assert.Single(record!.Instances);
            var removed = record.RemoveLeftovers(TestNetwork.RecordDirectory);
            Assert.Equal(2, removed.Count);
            Assert.True(Relay.Linux.Namespaces.Netns.Exists(bystander));
            try
            {
                net.Dispose();
            }
            catch (AggregateException)
            {
                // The namespaces are already gone; the object may complain about that.
            }
        }
        finally
        {
            Relay.Linux.Namespaces.Netns.Delete(bystander);
        }
        Assert.Equal(before, KernelState.Capture());
    }
}
