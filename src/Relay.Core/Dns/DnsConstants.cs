namespace Relay.Core.Dns;

/// <summary>
/// DNS response codes (RFC 1035 4.1.1, RFC 6891 9). Values up to 15 fit the header;
/// <see cref="BadVers"/> is an extended code: header RCODE 0 plus 1 in the OPT record's upper bits.
/// </summary>
public enum DnsResponseCode : byte
{
    /// <summary>No error.</summary>
    NoError = 0,
    /// <summary>The query was malformed.</summary>
    FormErr = 1,
    /// <summary>The server could not answer (here: per-client flow addresses could not be had).</summary>
    ServFail = 2,
    /// <summary>The name does not exist in a zone this server owns.</summary>
    NXDomain = 3,
    /// <summary>The kind of query (opcode or type) is not implemented.</summary>
    NotImp = 4,
    /// <summary>The server will not answer this query (a name it does not own, forwarding off).</summary>
    Refused = 5,
    /// <summary>The query's EDNS version is not supported (extended code 16).</summary>
    BadVers = 16,
}

/// <summary>The resource record types Relay reads or writes (IANA DNS parameters).</summary>
public enum DnsRecordType : ushort
{
    /// <summary>IPv4 address.</summary>
    A = 1,
    /// <summary>Authoritative name server.</summary>
    NS = 2,
    /// <summary>Canonical name.</summary>
    CNAME = 5,
    /// <summary>Start of authority.</summary>
    SOA = 6,
    /// <summary>Domain name pointer (reverse lookups).</summary>
    PTR = 12,
    /// <summary>Mail exchange.</summary>
    MX = 15,
    /// <summary>Text.</summary>
    TXT = 16,
    /// <summary>IPv6 address.</summary>
    AAAA = 28,
    /// <summary>Service locator (RFC 2782).</summary>
    SRV = 33,
    /// <summary>EDNS pseudo-record (RFC 6891).</summary>
    OPT = 41,
    /// <summary>Incremental zone transfer.</summary>
    IXFR = 251,
    /// <summary>Zone transfer.</summary>
    AXFR = 252,
    /// <summary>Every type (a query type only).</summary>
    ANY = 255,
}

/// <summary>DNS classes (RFC 1035 3.2.4).</summary>
public enum DnsClass : ushort
{
    /// <summary>The Internet.</summary>
    IN = 1,
    /// <summary>Chaos.</summary>
    CH = 3,
    /// <summary>Every class (a query class only).</summary>
    ANY = 255,
}

/// <summary>The flag bits of the header's second 16-bit word (RFC 1035 4.1.1, RFC 4035 3.2).</summary>
[Flags]
public enum DnsHeaderFlags : ushort
{
    /// <summary>No flag.</summary>
    None = 0,
    /// <summary>QR: the message is a response.</summary>
    Response = 0x8000,
    /// <summary>AA: the answer comes from a server authoritative for the name.</summary>
    Authoritative = 0x0400,
    /// <summary>TC: the message was truncated to fit the transport; retry over TCP.</summary>
    Truncated = 0x0200,
    /// <summary>RD: the client wants recursion.</summary>
    RecursionDesired = 0x0100,
    /// <summary>RA: the server offers recursion.</summary>
    RecursionAvailable = 0x0080,
    /// <summary>AD: authenticated data (DNSSEC).</summary>
    AuthenticData = 0x0020,
    /// <summary>CD: checking disabled (DNSSEC).</summary>
    CheckingDisabled = 0x0010,
}
