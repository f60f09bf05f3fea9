using Relay.Core.Errors;

namespace Relay.Core.Model;

/// <summary>Transport protocols a port mapping can name.</summary>
public enum TransportProtocol
{
    /// <summary>TCP.</summary>
    Tcp,
    /// <summary>UDP.</summary>
    Udp,
}

/// <summary>
/// Virtual port to instance port: traffic to the service's virtual address on <see cref="Port"/>
/// reaches an instance on <see cref="TargetPort"/>.
/// </summary>
public sealed record PortMapping(TransportProtocol Protocol, int Port, int TargetPort)
{
    /// <summary>The protocol as nft and users write it.</summary>
    public string ProtocolName => Protocol == TransportProtocol.Tcp ? "tcp" : "udp";

    /// <inheritdoc />
    public override string ToString() => $"{Port}:{TargetPort}/{ProtocolName}";

    /// <summary>
    /// Parses <c>PORT[:TARGET][/tcp|/udp]</c> (docker's <c>-p</c> order: the virtual port first).
    /// The protocol defaults to tcp and the target to the same port.
    /// </summary>
    public static PortMapping? TryParse(string text, string field, ErrorCollector errors)
    {
        var proto = TransportProtocol.Tcp;
        var s = text.Trim();
        var slash = s.IndexOf('/');
        if (slash >= 0)
        {
            switch (s[(slash + 1)..].ToLowerInvariant())
            {
                case "tcp": proto = TransportProtocol.Tcp; break;
                case "udp": proto = TransportProtocol.Udp; break;
                default:
                    errors.Add(ErrorCode.Invalid, field, $"'{text}': the protocol must be tcp or udp");
                    return null;
            }
            s = s[..slash];
        }
        var parts = s.Split(':');
        if (parts.Length > 2 || !TryPort(parts[0], out var port) || !TryPort(parts.Length == 2 ? parts[1] : parts[0], out var target))
        {
            errors.Add(ErrorCode.Invalid, field, $"'{text}' is not a port mapping (expected PORT[:TARGET][/tcp|/udp], ports 1-65535, such as 80:8080/tcp)");
            return null;
        }
        return new PortMapping(proto, port, target);
    }

    /// <summary>Adds an error for each invalid field of this mapping.</summary>
    public void Validate(string field, ErrorCollector errors)
    {
        if (Port is < 1 or > 65535)
        {
            errors.Add(ErrorCode.Invalid, field + ".port", $"port {Port} is out of range 1-65535");
        }
        if (TargetPort is < 1 or > 65535)
        {
            errors.Add(ErrorCode.Invalid, field + ".targetPort", $"target port {TargetPort} is out of range 1-65535");
        }
    }

    private static bool TryPort(string s, out int port) => int.TryParse(s, out port) && port is >= 1 and <= 65535;
}
