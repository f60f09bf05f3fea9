using Relay.Engine;

namespace Relay.Integration.Tests.Support;

/// <summary>
/// A Relay network with a unique name for one test, torn down in Dispose even when the test
/// failed. Names start with "t" and carry random hex, so parallel tests never collide.
/// </summary>
public sealed class TestNetwork : IDisposable
{
    public TestNetwork(Func<NetworkOptions, NetworkOptions>? configure = null)
    {
        var options = new NetworkOptions
        {
            Name = UniqueName("t"),
            RecordDirectory = RecordDirectory,
            StopGrace = TimeSpan.FromMilliseconds(500),
        };
        Network = RelayNetwork.Create(configure is null ? options : configure(options));
    }

    /// <summary>Records of test networks are kept apart from real ones.</summary>
    public static string RecordDirectory => "/run/relay/test-networks";

    public RelayNetwork Network { get; }

    public static string UniqueName(string prefix) => $"{prefix}{Guid.NewGuid().ToString("N")[..8]}";

    public void Dispose() => Network.Dispose();
}
