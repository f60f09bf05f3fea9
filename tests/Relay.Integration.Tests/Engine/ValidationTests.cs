using Relay.Core.Errors;
using Relay.Engine;
using Relay.Engine.Probes;
using Relay.Integration.Tests.Support;

namespace Relay.Integration.Tests.Engine;

/// <summary>Bad input is a clear error and changes nothing: neither the kernel nor memory.</summary>
public sealed class ValidationTests
{
    private static void AssertRejectedUnchanged(TestNetwork t, ErrorCode code, Action bad)
    {
        var net = t.Network;
        var before = KernelState.Capture(net.OrchestratorNamespace);
        var services = net.Services;
        var instances = net.Instances;
        var e = Assert.Throws<RelayException>(bad);
        Assert.Contains(e.Errors, x => x.Code == code);
        Assert.False(string.IsNullOrWhiteSpace(e.Message));
        Assert.Equal(before, KernelState.Capture(net.OrchestratorNamespace));
        Assert.Equal(services, net.Services, new InfoComparer<ServiceInfo>());
        Assert.Equal(instances, net.Instances, new InfoComparer<InstanceInfo>());
    }

    private sealed class InfoComparer<T> : IEqualityComparer<T>
    {
        // Records hold lists; compare their printed form, which includes every field.
        public bool Equals(T? x, T? y) => Print(x) == Print(y);

        public int GetHashCode(T obj) => Print(obj).GetHashCode();

        private static string Print(T? o) => o switch
        {
            ServiceInfo s => $"{s.Name} {s.Vip4} {s.Vip6} {s.Policy} {string.Join(',', s.Ports)} {string.Join(',', s.Backends)} {string.Join(',', s.Instances)}",
            _ => o?.ToString() ?? "",
        };
    }

    [Fact]
    public void InvalidInputs_EachKind_ErrorAndKernelUnchanged()
    {
        using var t = new TestNetwork(o => o with { VirtualPool4 = "10.89.0.0/30" });
        var net = t.Network;
        net.AddService(new ServiceOptions { Name = "a.com" });
        net.AddService(new ServiceOptions { Name = "b.com" });
        var a1 = net.AddInstance("a.com", new InstanceOptions { Name = "a1" });
        var b1 = net.AddInstance("b.com", new InstanceOptions { Name = "b1" });

        // Invalid name.
        AssertRejectedUnchanged(t, ErrorCode.Invalid, () => net.AddService(new ServiceOptions { Name = "bad_name.com" }));
        AssertRejectedUnchanged(t, ErrorCode.Invalid, () => net.AddService(new ServiceOptions { Name = new string('a', 64) + ".com" }));
        // Duplicate service (case-insensitive, trailing dot).
        AssertRejectedUnchanged(t, ErrorCode.Duplicate, () => net.AddService(new ServiceOptions { Name = "A.COM." }));
        // Unknown instance.
        AssertRejectedUnchanged(t, ErrorCode.NotFound, () => net.Migrate("a.com", "nope", "a1"));
        AssertRejectedUnchanged(t, ErrorCode.NotFound, () => net.RemoveInstanceAsync("nope"));
        // Address not in pool.
        AssertRejectedUnchanged(t, ErrorCode.NotInPool, () => net.AddService(new ServiceOptions { Name = "c.com", Vip4 = "192.0.2.1" }));
        // Migrating to an instance of another service.
        AssertRejectedUnchanged(t, ErrorCode.Conflict, () => net.Migrate("a.com", "a1", "b1"));
        // Unknown policy, duplicate instance name, command that does not exist.
        AssertRejectedUnchanged(t, ErrorCode.Invalid, () => net.AddService(new ServiceOptions { Name = "d.com", Policy = "fastest" }));
        AssertRejectedUnchanged(t, ErrorCode.Duplicate, () => net.AddInstance("a.com", new InstanceOptions { Name = "a1" }));
        AssertRejectedUnchanged(t, ErrorCode.NotFound, () => net.AddInstance("a.com", new InstanceOptions { Command = ["/no/such/program"] }));
        // Pool exhausted: a /30 has two usable addresses, both taken by a.com and b.com.
        AssertRejectedUnchanged(t, ErrorCode.PoolExhausted, () => net.AddService(new ServiceOptions { Name = "e.com" }));
    }

    [Fact]
    public void InvalidInput_SeveralErrors_AllReportedAtOnce()
    {
        using var t = new TestNetwork();
        var e = Assert.Throws<RelayException>(() => t.Network.AddService(new ServiceOptions
        {
            Name = "-bad-.com",
            Policy = "fastest",
            Vip4 = "not-an-address",
        }));
        Assert.Equal(3, e.Errors.Count);
        Assert.Contains("3 errors", e.Message);
    }

}

[Collection(HostStateCollection.Name)]
public sealed class NetworkValidationTests
{
    [Fact]
    public void CreateNetwork_InvalidOptions_AllErrorsAndNothingCreated()
    {
        var before = KernelState.Capture();
        var e = Assert.Throws<RelayException>(() => RelayNetwork.Create(new NetworkOptions
        {
            Name = "Bad.Name",
            InstancePool4 = "10.88.0.1/16",
            VirtualPool6 = "10.0.0.0/8",
            RecordDirectory = TestNetwork.RecordDirectory,
        }));
        Assert.True(e.Errors.Count >= 3, e.Message);
        Assert.Equal(before, KernelState.Capture());
    }

    [Fact]
    public void CreateNetwork_NameInUse_Refused()
    {
        using var t = new TestNetwork();
        var e = Assert.Throws<RelayException>(() => RelayNetwork.Create(new NetworkOptions { Name = t.Network.Name, RecordDirectory = TestNetwork.RecordDirectory }));
        Assert.Equal(ErrorCode.Duplicate, e.Code);
    }
}
