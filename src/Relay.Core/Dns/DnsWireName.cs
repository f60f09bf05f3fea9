using System.Text;

namespace Relay.Core.Dns;

/// <summary>
/// Conversions between names as text (<c>b.com</c>) and names on the wire
/// (<c>\x01b\x03com\x00</c>). These allocate and are for setup, tests and logs, not the hot path,
/// except <see cref="ToLower"/>.
/// </summary>
public static class DnsWireName
{
    /// <summary>The root name on the wire: one zero byte.</summary>
    public static ReadOnlySpan<byte> Root => [0];

    /// <summary>
    /// Encodes a name given as text; a trailing dot is optional, and <c>""</c> or <c>"."</c> is the
    /// root. Case is kept. Throws <see cref="ArgumentException"/> for an empty label, a label over
    /// 63 octets, a name over 255, or a character outside ASCII.
    /// </summary>
    public static byte[] FromText(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        var s = name.EndsWith('.') ? name[..^1] : name;
        if (s.Length == 0)
        {
            return [0];
        }
        var wire = new byte[s.Length + 2];
        var w = 0;
        foreach (var label in s.Split('.'))
        {
            if (label.Length is 0 or > DnsReader.MaxLabelLength)
            {
                throw new ArgumentException($"'{name}' is not a DNS name: labels have 1-{DnsReader.MaxLabelLength} characters", nameof(name));
            }
            wire[w++] = (byte)label.Length;
            foreach (var c in label)
            {
                if (c > 0x7F)
                {
                    throw new ArgumentException($"'{name}' is not a DNS name: '{c}' is not ASCII", nameof(name));
                }
                wire[w++] = (byte)c;
            }
        }
        wire[w] = 0;
        if (wire.Length > DnsReader.MaxNameLength)
        {
            throw new ArgumentException($"'{name}' is not a DNS name: it is {wire.Length} octets on the wire; at most {DnsReader.MaxNameLength} are allowed", nameof(name));
        }
        return wire;
    }

    /// <summary>
    /// Decodes a wire name (uncompressed) to text without the trailing dot (<c>"."</c> for the
    /// root); dots, backslashes and bytes outside printable ASCII inside labels are escaped as
    /// RFC 1035 5.1 does (<c>\.</c>, <c>\\</c>, <c>\DDD</c>).
    /// </summary>
    public static string ToText(ReadOnlySpan<byte> wire)
    {
        var sb = new StringBuilder();
        var p = 0;
        while (p < wire.Length && wire[p] != 0)
        {
            int len = wire[p++];
            if (sb.Length > 0)
            {
                sb.Append('.');
            }
            foreach (var b in wire.Slice(p, Math.Min(len, wire.Length - p)))
            {
                if (b is (byte)'.' or (byte)'\\')
                {
                    sb.Append('\\').Append((char)b);
                }
                else if (b is < 0x21 or > 0x7E)
                {
                    sb.Append('\\').Append(b.ToString("D3", System.Globalization.CultureInfo.InvariantCulture));
                }
                else
                {
                    sb.Append((char)b);
                }
            }
            p += len;
        }
        return sb.Length == 0 ? "." : sb.ToString();
    }

    /// <summary>
    /// Copies a wire name with ASCII letters lower-cased (DNS names compare case-insensitively,
    /// RFC 4343). Length bytes are at most 63, below 'A', so they pass through unchanged.
    /// </summary>
    public static void ToLower(ReadOnlySpan<byte> wire, Span<byte> destination)
    {
        if (destination.Length < wire.Length)
        {
            throw new ArgumentException("the destination is shorter than the name", nameof(destination));
        }
        for (var i = 0; i < wire.Length; i++)
        {
            var b = wire[i];
            destination[i] = (uint)(b - 'A') <= 'Z' - 'A' ? (byte)(b | 0x20) : b;
        }
    }
}

/// <summary>
/// Equality of wire names already lower-cased, also for spans, so a dictionary keyed by
/// <c>byte[]</c> can be searched with a <see cref="ReadOnlySpan{T}"/> of the query without
/// allocating. <see cref="HashCode"/> is seeded per process, so crafted names cannot flood one bucket.
/// </summary>
internal sealed class WireNameComparer : IEqualityComparer<byte[]>, IAlternateEqualityComparer<ReadOnlySpan<byte>, byte[]>
{
    public static WireNameComparer Instance { get; } = new();

    public bool Equals(byte[]? x, byte[]? y) => ReferenceEquals(x, y) || (x is not null && y is not null && x.AsSpan().SequenceEqual(y));

    public int GetHashCode(byte[] obj) => Hash(obj);

    public bool Equals(ReadOnlySpan<byte> alternate, byte[] other) => alternate.SequenceEqual(other);

    public int GetHashCode(ReadOnlySpan<byte> alternate) => Hash(alternate);

    public byte[] Create(ReadOnlySpan<byte> alternate) => alternate.ToArray();

    private static int Hash(ReadOnlySpan<byte> bytes)
    {
        var h = new HashCode();
        h.AddBytes(bytes);
        return h.ToHashCode();
    }
}
