using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Text.Json;
using Relay.Core.Errors;
using Relay.Daemon.Api;

namespace Relay.Cli.Client;

/// <summary>A failure the CLI reports as one message (exit code 1), with what to do about it.</summary>
public sealed class CliException(string message, int exitCode = 1, IReadOnlyList<ApiFieldError>? errors = null) : Exception(message)
{
    /// <summary>The process exit code to use.</summary>
    public int ExitCode { get; } = exitCode;

    /// <summary>The daemon's field errors, when it sent some.</summary>
    public IReadOnlyList<ApiFieldError> Errors { get; } = errors ?? [];
}

/// <summary>HTTP+JSON to the daemon over its unix socket.</summary>
public sealed class RelayClient : IDisposable
{
    /// <summary>Where the daemon listens unless told otherwise (or RELAY_SOCKET).</summary>
    public const string DefaultSocket = "/run/relay/relay.sock";

    private readonly HttpClient _http;

    /// <summary>A client for the daemon at <paramref name="socket"/>.</summary>
    public RelayClient(string socket)
    {
        Socket = socket;
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, ct) =>
            {
                var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await s.ConnectAsync(new UnixDomainSocketEndPoint(socket), ct).ConfigureAwait(false);
                    return new NetworkStream(s, ownsSocket: true);
                }
                catch (SocketException e)
                {
                    s.Dispose();
                    throw e.SocketErrorCode switch
                    {
                        SocketError.AccessDenied => new CliException($"permission denied on {socket}: the relay API is for root; run relay with sudo"),
                        _ when !File.Exists(socket) => new CliException($"the relay daemon is not running (no socket at {socket}); start it with 'relay daemon' (or 'systemctl start relay')"),
                        _ => new CliException($"cannot reach the relay daemon at {socket}: {e.Message}; is it running? ('relay daemon')"),
                    };
                }
            },
        };
        _http = new HttpClient(handler) { BaseAddress = new Uri("http://relay/"), Timeout = Timeout.InfiniteTimeSpan };
    }

    /// <summary>The socket path.</summary>
    public string Socket { get; }

    /// <summary>GET and decode.</summary>
    public async Task<T> GetAsync<T>(string path, CancellationToken ct = default)
        => (await Send<T>(new HttpRequestMessage(HttpMethod.Get, path), ct).ConfigureAwait(false))!;

    /// <summary>GET as text.</summary>
    public async Task<string> GetTextAsync(string path, CancellationToken ct = default)
    {
        using var response = await Call(new HttpRequestMessage(HttpMethod.Get, path), ct).ConfigureAwait(false);
        return await response.Content.ReadAsStringAsync(ct).ConfigureAwait(false);
    }

    /// <summary>POST a JSON body and decode the answer.</summary>
    public async Task<T> PostAsync<T>(string path, object body, CancellationToken ct = default)
        => (await Send<T>(new HttpRequestMessage(HttpMethod.Post, path) { Content = JsonContent.Create(body, body.GetType(), options: ApiJson.Options) }, ct).ConfigureAwait(false))!;

    /// <summary>DELETE; decode the answer when there is one.</summary>
    public async Task<T?> DeleteAsync<T>(string path, CancellationToken ct = default)
        => await Send<T>(new HttpRequestMessage(HttpMethod.Delete, path), ct).ConfigureAwait(false);

    /// <summary>GET a stream of JSON lines (the event stream).</summary>
    public async IAsyncEnumerable<string> LinesAsync(string path, [EnumeratorCancellation] CancellationToken ct = default)
    {
        using var response = await Call(new HttpRequestMessage(HttpMethod.Get, path), ct, HttpCompletionOption.ResponseHeadersRead).ConfigureAwait(false);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(ct).ConfigureAwait(false));
        while (await reader.ReadLineAsync(ct).ConfigureAwait(false) is { } line)
        {
            yield return line;
        }
    }

    /// <inheritdoc />
    public void Dispose() => _http.Dispose();

    private async Task<T?> Send<T>(HttpRequestMessage request, CancellationToken ct)
    {
        using var response = await Call(request, ct).ConfigureAwait(false);
        if (response.StatusCode is HttpStatusCode.NoContent or HttpStatusCode.Accepted || response.Content.Headers.ContentLength == 0)
        {
            return default;
        }
        return await response.Content.ReadFromJsonAsync<T>(ApiJson.Options, ct).ConfigureAwait(false);
    }

    private async Task<HttpResponseMessage> Call(HttpRequestMessage request, CancellationToken ct, HttpCompletionOption completion = HttpCompletionOption.ResponseContentRead)
    {
        HttpResponseMessage response;
        try
        {
            response = await _http.SendAsync(request, completion, ct).ConfigureAwait(false);
        }
        catch (HttpRequestException e) when (e.InnerException is CliException cli)
        {
            throw cli;
        }
        catch (HttpRequestException e)
        {
            // Connected, then the daemon went away (it was stopped or died) before it answered.
            throw new CliException($"the daemon closed the connection before answering ({e.Message}); the request may or may not have been carried out: check with 'relay status' once the daemon is back");
        }
        if (response.IsSuccessStatusCode)
        {
            return response;
        }
        using (response)
        {
            var text = await response.Content.ReadAsStringAsync(ct).ConfigureAwait(false);
            ApiError? error = null;
            try
            {
                error = JsonSerializer.Deserialize<ApiError>(text, ApiJson.Options);
            }
            catch (JsonException)
            {
            }
            throw new CliException(error?.Error ?? $"the daemon answered {(int)response.StatusCode} {response.ReasonPhrase}: {text}",
                (int)response.StatusCode >= 500 ? 2 : 1, error?.Errors);
        }
    }
}
