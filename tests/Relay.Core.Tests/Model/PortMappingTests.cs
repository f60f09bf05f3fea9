using Relay.Core.Errors;
using Relay.Core.Model;

namespace Relay.Core.Tests.Model;

public class PortMappingTests
{
    [Theory]
    [InlineData("80", TransportProtocol.Tcp, 80, 80)]
    [InlineData("80:8080", TransportProtocol.Tcp, 80, 8080)]
    [InlineData("53/udp", TransportProtocol.Udp, 53, 53)]
    [InlineData("53:5353/udp", TransportProtocol.Udp, 53, 5353)]
    [InlineData("443/tcp", TransportProtocol.Tcp, 443, 443)]
    [InlineData("53/UDP", TransportProtocol.Udp, 53, 53)]
    [InlineData(" 1:65535 ", TransportProtocol.Tcp, 1, 65535)]
    public void TryParse_Valid_ReturnsMappingWithoutErrors(string text, TransportProtocol protocol, int port, int target)
    {
        var errors = new ErrorCollector();

        var mapping = PortMapping.TryParse(text, "ports[0]", errors);

        Assert.Equal(new PortMapping(protocol, port, target), mapping);
        Assert.True(errors.IsEmpty);
    }

    [Theory]
    [InlineData("0", "not a port mapping")]
    [InlineData("70000", "not a port mapping")]
    [InlineData("65536", "not a port mapping")]
    [InlineData("80:x", "not a port mapping")]
    [InlineData("x", "not a port mapping")]
    [InlineData("", "not a port mapping")]
    [InlineData("80:", "not a port mapping")]
    [InlineData(":80", "not a port mapping")]
    [InlineData("80:0", "not a port mapping")]
    [InlineData("-1", "not a port mapping")]
    [InlineData("1:2:3", "not a port mapping")]
    [InlineData("80/sctp", "the protocol must be tcp or udp")]
    [InlineData("80/", "the protocol must be tcp or udp")]
    [InlineData("80/tcp/udp", "the protocol must be tcp or udp")]
    public void TryParse_Invalid_ReturnsNullAndAddsError(string text, string messageMentions)
    {
        var errors = new ErrorCollector();

        var mapping = PortMapping.TryParse(text, "ports[2]", errors);

        Assert.Null(mapping);
        var error = Assert.Single(errors.Errors);
        Assert.Equal(ErrorCode.Invalid, error.Code);
        Assert.Equal("ports[2]", error.Field);
        Assert.Contains(messageMentions, error.Message);
        Assert.Contains($"'{text}'", error.Message);
    }

    [Fact]
    public void TryParse_SeveralInvalid_CollectsEveryError()
    {
        var errors = new ErrorCollector();

        PortMapping.TryParse("0", "p0", errors);
        PortMapping.TryParse("80", "p1", errors);
        PortMapping.TryParse("80/sctp", "p2", errors);

        Assert.Equal(["p0", "p2"], errors.Errors.Select(e => e.Field));
    }

    [Theory]
    [InlineData(TransportProtocol.Tcp, 80, 8080, "80:8080/tcp", "tcp")]
    [InlineData(TransportProtocol.Udp, 53, 53, "53:53/udp", "udp")]
    public void ToString_Mapping_RoundTripsThroughTryParse(TransportProtocol protocol, int port, int target, string text, string protocolName)
    {
        var mapping = new PortMapping(protocol, port, target);

        Assert.Equal(text, mapping.ToString());
        Assert.Equal(protocolName, mapping.ProtocolName);
        Assert.Equal(mapping, PortMapping.TryParse(mapping.ToString(), "p", new ErrorCollector()));
    }

    [Fact]
    public void Validate_OutOfRangePorts_AddsOneErrorPerField()
    {
        var errors = new ErrorCollector();

        new PortMapping(TransportProtocol.Tcp, 0, 70000).Validate("ports[1]", errors);

        Assert.Equal(["ports[1].port", "ports[1].targetPort"], errors.Errors.Select(e => e.Field));
        Assert.Contains("port 0 is out of range", errors.Errors[0].Message);
        Assert.Contains("target port 70000 is out of range", errors.Errors[1].Message);
    }

    [Fact]
    public void Validate_InRangePorts_AddsNothing()
    {
        var errors = new ErrorCollector();

        new PortMapping(TransportProtocol.Udp, 1, 65535).Validate("p", errors);

        Assert.True(errors.IsEmpty);
    }
}
