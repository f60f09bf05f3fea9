using System.Net;
using System.Net.Sockets;
using Relay.Core.Errors;

namespace Relay.Core.Addressing;

/// <summary>
/// Hands out addresses of one prefix. Allocation walks forward from a cursor and wraps, so a
/// released address is reused as late as possible: a virtual address that a client may still
/// hold in a cache or a conntrack entry is not handed to another service soon after.
/// <para>
/// Callers plan with <see cref="PeekNext"/> (no change), apply the kernel change, then
/// <see cref="Claim"/>: a request that fails leaves the pool exactly as it was.
/// </para>
/// </summary>
public sealed class AddressPool
{
    private readonly HashSet<UInt128> _used = [];
    private readonly HashSet<UInt128> _reserved = [];
    private readonly UInt128 _base;
    private readonly UInt128 _size;
    private UInt128 _cursor;

    /// <summary>Creates a pool over <paramref name="prefix"/>; <paramref name="reserved"/> addresses are never handed out.</summary>
    public AddressPool(string name, IPNetwork prefix, IEnumerable<IPAddress>? reserved = null)
    {
        Name = name;
        Prefix = prefix;
        _base = IpMath.ToInteger(prefix.BaseAddress);
        _size = IpMath.Size(prefix);
        // The all-zeros address is the network (v4) or the subnet-router anycast address (v6);
        // the all-ones address of a v4 subnet is its broadcast. Neither is ever a host, except in
        // point-to-point prefixes of one or two addresses (RFC 3021), where every address is.
        if (_size > 2)
        {
            _reserved.Add(0);
            if (Family == AddressFamily.InterNetwork)
            {
                _reserved.Add(_size - 1);
            }
        }
        foreach (var r in reserved ?? [])
        {
            if (prefix.Contains(r))
            {
                _reserved.Add(IpMath.ToInteger(r) - _base);
            }
        }
        _cursor = 0;
    }

    /// <summary>What the pool is for, used in error messages ("virtual IPv4").</summary>
    public string Name { get; }

    /// <summary>The prefix addresses come from.</summary>
    public IPNetwork Prefix { get; }

    /// <summary>IPv4 or IPv6.</summary>
    public AddressFamily Family => Prefix.BaseAddress.AddressFamily;

    /// <summary>Number of addresses handed out.</summary>
    public int Allocated => _used.Count;

    /// <summary>True when <paramref name="address"/> is in the prefix and not reserved.</summary>
    public bool Contains(IPAddress address)
        => address.AddressFamily == Family && Prefix.Contains(address) && !_reserved.Contains(IpMath.ToInteger(address) - _base);

    /// <summary>True when <paramref name="address"/> is handed out.</summary>
    public bool IsAllocated(IPAddress address)
        => address.AddressFamily == Family && Prefix.Contains(address) && _used.Contains(IpMath.ToInteger(address) - _base);

    /// <summary>
    /// The next <paramref name="count"/> addresses <see cref="Claim"/> would take, without taking them;
    /// fewer when the pool runs out. <paramref name="skip"/> addresses are left aside (already planned).
    /// </summary>
    public IReadOnlyList<IPAddress> PeekNext(int count, IReadOnlySet<IPAddress>? skip = null)
    {
        if (count <= 0)
        {
            return [];
        }
        var result = new List<IPAddress>(count);
        var offset = _cursor;
        // Among any run of consecutive offsets at most `blocked` are unavailable, so `blocked + count`
        // steps find `count` free addresses unless the pool itself is smaller: one lap at most.
        var blocked = (UInt128)(_used.Count + _reserved.Count + (skip?.Count ?? 0));
        var limit = UInt128.Min(_size, blocked + (UInt128)count);
        for (UInt128 step = 0; step < limit && result.Count < count; step++)
        {
            var candidate = (offset + step) % _size;
            if (_used.Contains(candidate) || _reserved.Contains(candidate))
            {
                continue;
            }
            var address = IpMath.FromInteger(_base + candidate, Family);
            if (skip is not null && skip.Contains(address))
            {
                continue;
            }
            result.Add(address);
        }
        return result;
    }

    /// <summary>The next free address, or a <see cref="RelayException"/> (<see cref="ErrorCode.PoolExhausted"/>).</summary>
    public IPAddress PeekOne(string field, IReadOnlySet<IPAddress>? skip = null)
    {
        var next = PeekNext(1, skip);
        return next.Count == 1
            ? next[0]
            : throw new RelayException(ErrorCode.PoolExhausted, field, $"the {Name} pool {Prefix} has no free address left ({_used.Count} in use)");
    }

    /// <summary>Checks that <paramref name="address"/> may be claimed; returns null when it may, else the error.</summary>
    public RelayError? CheckClaim(IPAddress address, string field)
    {
        if (address.AddressFamily != Family || !Prefix.Contains(address))
        {
            return new RelayError(ErrorCode.NotInPool, field, $"{address} is not in the {Name} pool {Prefix}");
        }
        var offset = IpMath.ToInteger(address) - _base;
        if (_reserved.Contains(offset))
        {
            return new RelayError(ErrorCode.NotInPool, field, $"{address} is reserved in the {Name} pool {Prefix}");
        }
        if (_used.Contains(offset))
        {
            return new RelayError(ErrorCode.Duplicate, field, $"{address} is already in use");
        }
        return null;
    }

    /// <summary>
    /// Marks <paramref name="address"/> as handed out. When <paramref name="advanceCursor"/> is set (an automatic
    /// allocation), the next automatic allocation starts after it.
    /// </summary>
    public void Claim(IPAddress address, bool advanceCursor = true)
    {
        var error = CheckClaim(address, "address");
        if (error is not null)
        {
            throw new RelayException([error]);
        }
        var offset = IpMath.ToInteger(address) - _base;
        _used.Add(offset);
        if (advanceCursor)
        {
            _cursor = (offset + 1) % _size;
        }
    }

    /// <summary>Returns <paramref name="address"/> to the pool. Unknown addresses are ignored.</summary>
    public void Release(IPAddress address)
    {
        if (address.AddressFamily == Family && Prefix.Contains(address))
        {
            _used.Remove(IpMath.ToInteger(address) - _base);
        }
    }
}
