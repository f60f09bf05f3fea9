using System.Net;
using System.Net.Sockets;

namespace Relay.Core.Addressing;

/// <summary>Address arithmetic on 128-bit integers (IPv4 uses the low 32 bits).</summary>
public static class IpMath
{
    /// <summary>The address as an unsigned integer in host order.</summary>
    public static UInt128 ToInteger(IPAddress address)
    {
        Span<byte> b = stackalloc byte[16];
        if (!address.TryWriteBytes(b, out var n))
        {
            throw new ArgumentException("unexpected address size", nameof(address));
        }
        UInt128 v = 0;
        for (var i = 0; i < n; i++)
        {
            v = (v << 8) | b[i];
        }
        return v;
    }

    /// <summary>The address of <paramref name="family"/> whose integer value is <paramref name="value"/>.</summary>
    public static IPAddress FromInteger(UInt128 value, AddressFamily family)
    {
        var n = family == AddressFamily.InterNetwork ? 4 : 16;
        var b = new byte[n];
        for (var i = n - 1; i >= 0; i--)
        {
            b[i] = (byte)(value & 0xff);
            value >>= 8;
        }
        return new IPAddress(b);
    }

    /// <summary>Number of addresses in <paramref name="prefix"/> (saturates at UInt128.MaxValue for ::/0).</summary>
    public static UInt128 Size(IPNetwork prefix)
    {
        var bits = prefix.BaseAddress.AddressFamily == AddressFamily.InterNetwork ? 32 : 128;
        var hostBits = bits - prefix.PrefixLength;
        return hostBits >= 128 ? UInt128.MaxValue : UInt128.One << hostBits;
    }

    /// <summary>Parses <c>a.b.c.d/n</c> or <c>x::/n</c>; the base must have no host bits set.</summary>
    public static bool TryParsePrefix(string? text, out IPNetwork prefix, out string reason)
    {
        prefix = default;
        reason = "";
        if (string.IsNullOrWhiteSpace(text) || !text.Contains('/'))
        {
            reason = $"'{text}' is not a prefix (expected ADDRESS/LENGTH, such as 10.88.0.0/16)";
            return false;
        }
        var slash = text.IndexOf('/');
        var lengthText = text.AsSpan(slash + 1);
        if (IPAddress.TryParse(text.AsSpan(0, slash), out var parsed) && lengthText.Length > 1 && lengthText[0] == '-' && !lengthText[1..].ContainsAnyExceptInRange('0', '9'))
        {
            reason = $"'{text}': the length must be between 0 and {(parsed.AddressFamily == AddressFamily.InterNetwork ? 32 : 128)}";
            return false;
        }
        if (!IPAddress.TryParse(text.AsSpan(0, slash), out var address) || lengthText.Length is 0 or > 3 || lengthText.ContainsAnyExceptInRange('0', '9')
            || !int.TryParse(lengthText, out var length))
        {
            reason = $"'{text}' is not a prefix (expected ADDRESS/LENGTH, such as 10.88.0.0/16)";
            return false;
        }
        var max = address.AddressFamily == AddressFamily.InterNetwork ? 32 : 128;
        if (length < 0 || length > max)
        {
            reason = $"'{text}': the length must be between 0 and {max}";
            return false;
        }
        // IPNetwork.TryParse silently clears host bits (since .NET 10); a user who wrote
        // 10.88.0.1/16 most likely meant something else, so say so instead of guessing.
        var masked = Mask(address, length);
        if (!masked.Equals(address))
        {
            reason = $"'{text}' has host bits set after /{length}; did you mean {masked}/{length}?";
            return false;
        }
        prefix = new IPNetwork(masked, length);
        return true;
    }

    private static IPAddress Mask(IPAddress address, int length)
    {
        var bits = address.AddressFamily == AddressFamily.InterNetwork ? 32 : 128;
        var v = ToInteger(address);
        var hostBits = bits - length;
        var masked = hostBits >= 128 ? UInt128.Zero : (v >> hostBits) << hostBits;
        return FromInteger(masked, address.AddressFamily);
    }
}
