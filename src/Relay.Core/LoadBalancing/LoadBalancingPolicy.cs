namespace Relay.Core.LoadBalancing;

/// <summary>How the kernel picks an instance for a new flow to a service's virtual address.</summary>
public enum LoadBalancingPolicy
{
    /// <summary>Uniformly at random per new flow (<c>numgen random</c>). The default, as in kube-proxy.</summary>
    Random,
    /// <summary>Each new flow to the next instance (<c>numgen inc</c>).</summary>
    RoundRobin,
    /// <summary>Consistent hash of the flow into a Maglev lookup table: losing an instance moves only its flows.</summary>
    Maglev,
    /// <summary>Client affinity: a hash of the client's address into the same Maglev table.</summary>
    Source,
}

/// <summary>The policies' names as users write them, looked up once.</summary>
public static class PolicyNames
{
    /// <summary><see cref="LoadBalancingPolicy.Random"/>.</summary>
    public const string Random = "random";
    /// <summary><see cref="LoadBalancingPolicy.RoundRobin"/>.</summary>
    public const string RoundRobin = "round-robin";
    /// <summary><see cref="LoadBalancingPolicy.Maglev"/>.</summary>
    public const string Maglev = "maglev";
    /// <summary><see cref="LoadBalancingPolicy.Source"/>.</summary>
    public const string Source = "source";

    /// <summary>Every name, in documentation order.</summary>
    public static IReadOnlyList<string> All { get; } = [Random, RoundRobin, Maglev, Source];

    /// <summary>The name of <paramref name="policy"/>.</summary>
    public static string Of(LoadBalancingPolicy policy) => policy switch
    {
        LoadBalancingPolicy.Random => Random,
        LoadBalancingPolicy.RoundRobin => RoundRobin,
        LoadBalancingPolicy.Maglev => Maglev,
        LoadBalancingPolicy.Source => Source,
        _ => throw new ArgumentOutOfRangeException(nameof(policy)),
    };

    /// <summary>Parses a name (case-insensitive).</summary>
    public static bool TryParse(string? name, out LoadBalancingPolicy policy)
    {
        switch (name?.ToLowerInvariant())
        {
            case Random: policy = LoadBalancingPolicy.Random; return true;
            case RoundRobin or "roundrobin" or "rr": policy = LoadBalancingPolicy.RoundRobin; return true;
            case Maglev: policy = LoadBalancingPolicy.Maglev; return true;
            case Source: policy = LoadBalancingPolicy.Source; return true;
            default: policy = default; return false;
        }
    }

    /// <summary>True for the policies that use a Maglev lookup table.</summary>
    public static bool UsesLookupTable(LoadBalancingPolicy policy)
        => policy is LoadBalancingPolicy.Maglev or LoadBalancingPolicy.Source;
}
