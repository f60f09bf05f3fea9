using System.Net;

namespace Relay.Core.Dns;

/// <summary>
/// Gives each client its own addresses for a service with flow addressing. The engine implements
/// it; it may allocate addresses and program the kernel, and it may fail.
/// </summary>
public interface IFlowAddressResolver
{
    /// <summary>
    /// The addresses <paramref name="client"/> should use for <paramref name="service"/>; either may
    /// be null when the client gets none of that family. False when none could be had (the
    /// resolver then answers SERVFAIL).
    /// </summary>
    bool TryGetFlowAddresses(IPAddress client, DnsServiceEntry service, out IPAddress? v4, out IPAddress? v6);
}

/// <summary>What the server does with a query.</summary>
public enum DnsOutcome
{
    /// <summary>Send the response written into the caller's buffer.</summary>
    Answered,
    /// <summary>Relay the query, as received, to the upstream servers (a name outside the owned zones).</summary>
    Forward,
    /// <summary>Send nothing: not a query (a response, or too short to carry an ID to answer).</summary>
    Drop,
}

/// <summary>The result of <see cref="DnsResolver.Respond"/>.</summary>
/// <param name="Outcome">What to do.</param>
/// <param name="Length">The response's length in the caller's buffer (0 unless <see cref="DnsOutcome.Answered"/>).</param>
/// <param name="Rcode">The response code, extended codes included.</param>
/// <param name="Truncated">True when the response carries TC=1: it did not fit, and the client should retry over TCP.</param>
public readonly record struct DnsResult(DnsOutcome Outcome, int Length, DnsResponseCode Rcode, bool Truncated);
