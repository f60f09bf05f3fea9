namespace Relay.Engine.Health;

/// <summary>Healthy when a TCP connection from the orchestrator to the instance's port is accepted in time.</summary>
internal sealed class TcpProbe(ProbeTarget target, int port) : BlockingProbe
{
    /// <inheritdoc />
    protected override string? Run(Deadline deadline, CancellationToken ct)
    {
        using var socket = ProbeSockets.ConnectTcp(target.Orchestrator, target.Address4, port, deadline, ct, out var error);
        return error;
    }
}
