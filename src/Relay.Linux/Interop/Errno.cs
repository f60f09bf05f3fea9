namespace Relay.Linux.Interop;

/// <summary>The errno values Relay handles by name (asm-generic/errno-base.h, errno.h).</summary>
public enum Errno
{
    /// <summary>No error.</summary>
    None = 0,
    /// <summary>Operation not permitted.</summary>
    EPERM = 1,
    /// <summary>No such file or directory (also: no such conntrack entry).</summary>
    ENOENT = 2,
    /// <summary>Interrupted system call.</summary>
    EINTR = 4,
    /// <summary>Try again.</summary>
    EAGAIN = 11,
    /// <summary>Out of memory.</summary>
    ENOMEM = 12,
    /// <summary>Permission denied.</summary>
    EACCES = 13,
    /// <summary>Device or resource busy.</summary>
    EBUSY = 16,
    /// <summary>File exists.</summary>
    EEXIST = 17,
    /// <summary>Invalid argument.</summary>
    EINVAL = 22,
    /// <summary>No buffer space available (netlink: the receive queue overflowed).</summary>
    ENOBUFS = 105,
    /// <summary>Operation not supported.</summary>
    EOPNOTSUPP = 95,
}

/// <summary>An errno from a system call, typed.</summary>
public sealed class SystemCallException : Exception
{
    /// <summary>Creates the exception for <paramref name="call"/> failing with <paramref name="errno"/>.</summary>
    public SystemCallException(string call, int errno)
        : base($"{call} failed: {Describe(errno)}")
    {
        Call = call;
        Errno = (Errno)errno;
        RawErrno = errno;
    }

    /// <summary>Which call failed.</summary>
    public string Call { get; }

    /// <summary>The errno, typed where Relay knows it.</summary>
    public Errno Errno { get; }

    /// <summary>The raw errno value.</summary>
    public int RawErrno { get; }

    /// <summary>"EPERM (Operation not permitted)" or the number.</summary>
    public static string Describe(int errno)
    {
        var name = Enum.IsDefined(typeof(Errno), errno) ? ((Errno)errno).ToString() : "errno " + errno;
        return $"{name} ({Libc.StrError(errno)})";
    }
}
