using System.Globalization;
using System.Net.Sockets;
using System.Text;

namespace Relay.Engine.Health;

/// <summary>
/// Healthy when an HTTP/1.0 GET from the orchestrator gets a 2xx or 3xx status line in time. Only
/// the status line is read: a check judges the server, not the size of its page.
/// </summary>
internal sealed class HttpProbe : BlockingProbe
{
    // A status line is short; a server that sends this much without a line break is not HTTP.
    private const int MaxStatusLine = 4096;

    private readonly ProbeTarget _target;
    private readonly int _port;
    private readonly byte[] _request;

    public HttpProbe(ProbeTarget target, int port, string path)
    {
        _target = target;
        _port = port;
        // Host carries the port unless it is 80 (RFC 9112 section 3.2), as curl and Go send it.
        var host = port == 80 ? target.Address4.ToString() : $"{target.Address4}:{port}";
        _request = Encoding.ASCII.GetBytes($"GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: relay-health\r\n\r\n");
    }

    /// <inheritdoc />
    protected override string? Run(Deadline deadline, CancellationToken ct)
    {
        using var socket = ProbeSockets.ConnectTcp(_target.Orchestrator, _target.Address4, _port, deadline, ct, out var error);
        if (socket is null)
        {
            return error;
        }
        try
        {
            // A fresh connection's send buffer takes the small request whole; a short write
            // would mean something is badly wrong with the connection, which fails the check.
            if (socket.Send(_request) != _request.Length)
            {
                return "the request could not be sent whole";
            }
            var (line, failure) = ReadStatusLine(socket, deadline, ct);
            if (line is null)
            {
                return failure;
            }
            if (!TryParseStatus(line, out var status))
            {
                return $"not an HTTP status line: '{Printable(line)}'";
            }
            return status is >= 200 and <= 399 ? null : $"status {status}";
        }
        catch (SocketException e)
        {
            return ProbeSockets.Describe(e.SocketErrorCode);
        }
    }

    /// <summary>Parses <c>HTTP/1.x NNN ...</c>; the reason phrase is optional.</summary>
    internal static bool TryParseStatus(string line, out int status)
    {
        status = 0;
        var parts = line.Split(' ', 3, StringSplitOptions.RemoveEmptyEntries);
        return parts.Length >= 2
            && parts[0].StartsWith("HTTP/", StringComparison.Ordinal)
            && parts[1].Length == 3
            && int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out status);
    }

    private static (string? Line, string? Error) ReadStatusLine(Socket socket, Deadline deadline, CancellationToken ct)
    {
        var buffer = new byte[MaxStatusLine];
        var filled = 0;
        while (filled < buffer.Length)
        {
            if (!ProbeSockets.WaitFor(socket, SelectMode.SelectRead, deadline, ct))
            {
                return (null, ProbeSockets.TimeoutReason(deadline));
            }
            int n;
            try
            {
                n = socket.Receive(buffer, filled, buffer.Length - filled, SocketFlags.None);
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.WouldBlock)
            {
                continue;
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset && filled > 0)
            {
                // The server answered and reset (it closed without reading the request): what
                // arrived before the reset is still the answer.
                n = 0;
            }
            if (n == 0)
            {
                // A server may send its whole answer without a final line break and close.
                return filled == 0
                    ? (null, "the connection closed before a status line")
                    : (Encoding.Latin1.GetString(buffer, 0, filled).TrimEnd('\r', '\n'), null);
            }
            var end = Array.IndexOf(buffer, (byte)'\n', filled, n);
            filled += n;
            if (end >= 0)
            {
                return (Encoding.Latin1.GetString(buffer, 0, end).TrimEnd('\r'), null);
            }
        }
        return (Encoding.Latin1.GetString(buffer, 0, 80), null);
    }

    private static string Printable(string line)
    {
        var s = new string(line.Select(c => c < ' ' || c > '~' ? '?' : c).ToArray());
        return s.Length <= 80 ? s : s[..80];
    }
}
