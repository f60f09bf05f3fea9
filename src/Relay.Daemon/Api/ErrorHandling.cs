using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Extensions.Logging;
using Relay.Core.Errors;

namespace Relay.Daemon.Api;

/// <summary>
/// Errors become JSON with a status that says whose fault it is: 4xx with every problem for a bad
/// request (nothing was changed), 5xx with the reason when the kernel refused. Never a stack trace.
/// </summary>
public sealed partial class ErrorHandling(RequestDelegate next, ILogger<ErrorHandling> log)
{
    /// <summary>Runs the request, translating failures.</summary>
    public async Task InvokeAsync(HttpContext context)
    {
        try
        {
            await ReadBody(context).ConfigureAwait(false);
            await next(context).ConfigureAwait(false);
            if (!context.Response.HasStarted && context.Response.StatusCode >= 400)
            {
                // Routing (no such endpoint, wrong method) answers with a bare status.
                await Write(context, context.Response.StatusCode, new ApiError(BareStatusMessage(context))).ConfigureAwait(false);
            }
        }
        catch (RelayException e)
        {
            await Write(context, StatusOf(e.Code), new ApiError(e.Message, e.Errors.Select(x => new ApiFieldError(Code(x.Code), x.Field, x.Message)).ToArray())).ConfigureAwait(false);
        }
        catch (BadHttpRequestException e)
        {
            var message = e.InnerException is JsonException j ? "the request body is not valid JSON for this endpoint: " + j.Message
                : e.StatusCode == StatusCodes.Status415UnsupportedMediaType ? NotJson(context)
                : e.Message.StartsWith("Implicit body inferred", StringComparison.Ordinal) || e.Message.Contains("was not provided from body", StringComparison.Ordinal) ? "this endpoint needs a JSON body"
                : e.Message;
            await Write(context, e.StatusCode, new ApiError(message)).ConfigureAwait(false);
        }
        catch (JsonException e)
        {
            await Write(context, StatusCodes.Status400BadRequest, new ApiError("the request body is not valid JSON for this endpoint: " + e.Message)).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            // The client went away.
        }
        catch (Exception e)
        {
            LogUnexpected(log, context.Request.Path, e);
            await Write(context, StatusCodes.Status500InternalServerError, new ApiError($"internal error: {e.Message}")).ConfigureAwait(false);
        }
    }

    /// <summary>Bodies over the limit are still read (and dropped) up to this size, so that the client can read the refusal.</summary>
    private const long DrainLimit = 64 << 20;

    /// <summary>
    /// Reads the body (at most the limit, 4 MiB) before the endpoint binds it. Kestrel would refuse
    /// a larger body only while it is read, the endpoints' JSON binding takes that refusal for a
    /// broken connection (a bare 413), and a client still sending (the CLI streams its JSON) would
    /// see the connection closed under it rather than the answer. So the limit is enforced here:
    /// the rest of a larger body is read and dropped (up to <see cref="DrainLimit"/>), then the
    /// request is refused with a message.
    /// </summary>
    private static async Task ReadBody(HttpContext context)
    {
        if (context.Features.Get<IHttpRequestBodyDetectionFeature>() is { CanHaveBody: false })
        {
            return;
        }
        var size = context.Features.Get<IHttpMaxRequestBodySizeFeature>();
        if (size is not { IsReadOnly: false, MaxRequestBodySize: { } limit })
        {
            return;
        }
        var tooLarge = new BadHttpRequestException($"the request body is too large: the limit is {limit} bytes", StatusCodes.Status413PayloadTooLarge);
        if (context.Request.ContentLength > DrainLimit)
        {
            throw tooLarge;
        }
        size.MaxRequestBodySize = null; // counted here instead
        var body = new MemoryStream();
        var chunk = new byte[64 << 10];
        long total = 0;
        int read;
        while (total <= DrainLimit && (read = await context.Request.Body.ReadAsync(chunk, context.RequestAborted).ConfigureAwait(false)) > 0)
        {
            if (total + read <= limit)
            {
                body.Write(chunk, 0, read);
            }
            total += read;
        }
        if (total > limit)
        {
            throw tooLarge;
        }
        body.Position = 0;
        context.Request.Body = body;
    }

    private static string BareStatusMessage(HttpContext context) => context.Response.StatusCode switch
    {
        StatusCodes.Status404NotFound => $"no such endpoint: {context.Request.Method} {context.Request.Path} (the API is under /v1; see /openapi/v1.json)",
        StatusCodes.Status405MethodNotAllowed => $"{context.Request.Method} is not allowed on {context.Request.Path}",
        StatusCodes.Status415UnsupportedMediaType => NotJson(context),
        var status => $"the request was refused ({status} {ReasonPhrases.GetReasonPhrase(status)})",
    };

    private static string NotJson(HttpContext context)
        => $"the request body must be JSON (Content-Type: application/json), not {(string.IsNullOrEmpty(context.Request.ContentType) ? "without a Content-Type" : $"'{context.Request.ContentType}'")}";

    private static int StatusOf(ErrorCode code) => code switch
    {
        ErrorCode.NotFound => StatusCodes.Status404NotFound,
        ErrorCode.Duplicate or ErrorCode.Conflict => StatusCodes.Status409Conflict,
        ErrorCode.Kernel => StatusCodes.Status500InternalServerError,
        ErrorCode.Unavailable => StatusCodes.Status503ServiceUnavailable,
        _ => StatusCodes.Status400BadRequest,
    };

    private static string Code(ErrorCode code) => JsonNamingPolicy.CamelCase.ConvertName(code.ToString());

    private static async Task Write(HttpContext context, int status, ApiError error)
    {
        if (context.Response.HasStarted)
        {
            return;
        }
        context.Response.Clear();
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        await context.Response.WriteAsync(JsonSerializer.Serialize(error, ApiJson.Options)).ConfigureAwait(false);
    }

    [LoggerMessage(EventId = 401, Level = LogLevel.Error, Message = "api: {Path} failed")]
    private static partial void LogUnexpected(ILogger log, string path, Exception e);
}
