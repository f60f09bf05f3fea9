using Relay.Core.Errors;
using Relay.Linux.Namespaces;
using Relay.Linux.Processes;

namespace Relay.Linux.Topology;

/// <summary>
/// Creates and removes Relay's namespaces and links. Every object it creates is named so that it
/// is recognisably Relay's (<c>relay-</c> namespaces, <c>rv</c> links that exist only inside
/// Relay's namespaces: the host's own namespace never gets a link), and every failure removes
/// what the failed step had created.
/// </summary>
public static class TopologyBuilder
{
    /// <summary>
    /// Creates the orchestrator namespace with forwarding on. Reverse-path filtering is off: Relay's
    /// own anti-spoofing rule checks each link against the exact addresses of its instance, which is
    /// stricter, and rp_filter would otherwise depend on the host's defaults.
    /// </summary>
    public static NetnsThread CreateOrchestrator(string name)
    {
        if (Netns.Exists(name))
        {
            throw new RelayException(ErrorCode.Duplicate, "network", $"namespace {name} already exists; run 'relay down' for that network, or pick another name");
        }
        Netns.Add(name);
        NetnsThread? thread = null;
        try
        {
            thread = NetnsThread.Enter(name);
            ConfigureOrchestrator(name, thread);
            return thread;
        }
        catch
        {
            thread?.Dispose();
            Netns.Delete(name);
            throw;
        }
    }

    /// <summary>
    /// Enters an orchestrator namespace that already exists (a daemon restarting) and makes sure of
    /// its settings; writing a sysctl to the value it has changes nothing.
    /// </summary>
    public static NetnsThread AdoptOrchestrator(string name)
    {
        var thread = NetnsThread.Enter(name);
        try
        {
            ConfigureOrchestrator(name, thread);
            return thread;
        }
        catch
        {
            thread.Dispose();
            throw;
        }
    }

    private static void ConfigureOrchestrator(string name, NetnsThread thread)
    {
        foreach (var (key, value) in new[]
                 {
                     ("net.ipv4.ip_forward", "1"),
                     ("net.ipv6.conf.all.forwarding", "1"),
                     ("net.ipv4.conf.all.rp_filter", "0"),
                     ("net.ipv4.conf.default.rp_filter", "0"),
                     ("net.ipv6.conf.all.accept_dad", "0"),
                     ("net.ipv6.conf.default.accept_dad", "0"),
                 })
        {
            if (Sysctl.Read(thread, key) != value)
            {
                Sysctl.Write(thread, key, value);
            }
        }
        IpCommand.Batch(name, ["link set lo up"]);
    }

    /// <summary>True when the instance's namespace exists and the orchestrator end of its veth is there.</summary>
    public static bool IsWired(string orchestrator, InstanceWiring w) => Netns.Exists(w.Namespace) && LinkExists(orchestrator, w.HostInterface);

    /// <summary>
    /// Creates the instance namespace and its veth, configured on both ends. Three short <c>ip</c>
    /// processes: namespaces can only be created outside <c>ip -n</c> (its bind mount would be
    /// private to that process), and each side's addresses are set inside that side's namespace.
    /// With <paramref name="mtu"/> (a network that spans hosts over VXLAN), both ends get that MTU:
    /// an instance that sent full 1500-byte frames would see them vanish in the tunnel.
    /// </summary>
    public static void WireInstance(string orchestrator, Gateways gateways, InstanceWiring w, int? mtu = null)
    {
        if (Netns.Exists(w.Namespace))
        {
            throw new RelayException(ErrorCode.Duplicate, "instance", $"namespace {w.Namespace} already exists");
        }
        const string eth = InstanceWiring.InstanceInterface;
        var (hostMac, instanceMac) = Macs(w.Address4);
        var mtuOption = mtu is { } m ? $" mtu {m}" : "";
        try
        {
            IpCommand.Batch(null,
            [
                $"netns add {w.Namespace}",
                // Both ends are created directly in their namespaces: nothing appears in the host's.
                $"link add {w.HostInterface} netns {orchestrator} address {hostMac}{mtuOption} type veth peer name {eth} netns {w.Namespace} address {instanceMac}{mtuOption}",
            ]);
            using (var inside = NetnsThread.Enter(w.Namespace))
            {
                // Addresses are unique by allocation; duplicate address detection would only hold
                // IPv6 back for a second after the link comes up.
                Sysctl.Write(inside, "net.ipv6.conf.all.accept_dad", "0");
                Sysctl.Write(inside, "net.ipv6.conf.default.accept_dad", "0");
                Sysctl.Write(inside, $"net.ipv6.conf.{eth}.accept_dad", "0");
            }
            IpCommand.Batch(orchestrator,
            [
                $"link set {w.HostInterface} up",
                $"addr add {gateways.V4}/32 dev {w.HostInterface}",
                $"addr add {gateways.V6}/128 dev {w.HostInterface} nodad",
                $"route add {w.Address4}/32 dev {w.HostInterface}",
                $"route add {w.Address6}/128 dev {w.HostInterface}",
                // Both ends' neighbours are known: the first packet to a fresh instance (a migration's
                // first) waits for no ARP or neighbour discovery, as Calico does for its workloads.
                $"neigh replace {w.Address4} lladdr {instanceMac} dev {w.HostInterface} nud permanent",
                $"neigh replace {w.Address6} lladdr {instanceMac} dev {w.HostInterface} nud permanent",
            ]);
            IpCommand.Batch(w.Namespace,
            [
                "link set lo up",
                $"link set {eth} up",
                $"addr add {w.Address4}/32 dev {eth}",
                $"addr add {w.Address6}/128 dev {eth} nodad",
                $"route add {gateways.V4} dev {eth} scope link",
                $"route add default via {gateways.V4} dev {eth} src {w.Address4}",
                $"route add {gateways.V6} dev {eth}",
                $"route add default via {gateways.V6} dev {eth} src {w.Address6}",
                $"neigh replace {gateways.V4} lladdr {hostMac} dev {eth} nud permanent",
                $"neigh replace {gateways.V6} lladdr {hostMac} dev {eth} nud permanent",
            ]);
        }
        catch
        {
            UnwireInstance(orchestrator, w);
            throw;
        }
    }

    /// <summary>
    /// The two ends' MAC addresses, from the instance's IPv4 address (unique in its network; a veth
    /// pair is a segment of its own, so networks may repeat them): locally administered unicast,
    /// <c>02:72:...</c> on the orchestrator's end, <c>02:69:...</c> on the instance's.
    /// </summary>
    public static (string Host, string Instance) Macs(System.Net.IPAddress address4)
    {
        var b = address4.GetAddressBytes();
        var tail = $"{b[0]:x2}:{b[1]:x2}:{b[2]:x2}:{b[3]:x2}";
        return ($"02:72:{tail}", $"02:69:{tail}");
    }

    /// <summary>
    /// Removes the instance's link and namespace (whatever part of them exists). The link is
    /// deleted explicitly: a namespace kept alive by a stray process would otherwise keep its veth.
    /// </summary>
    public static void UnwireInstance(string orchestrator, InstanceWiring w)
    {
        if (Netns.Exists(orchestrator) && LinkExists(orchestrator, w.HostInterface))
        {
            IpCommand.Batch(orchestrator, [$"link delete {w.HostInterface}"]);
        }
        Netns.Delete(w.Namespace);
    }

    /// <summary>True when <paramref name="link"/> exists in <paramref name="netns"/>.</summary>
    public static bool LinkExists(string netns, string link)
    {
        try
        {
            IpCommand.Run(["-n", netns, "link", "show", "dev", link]);
            return true;
        }
        catch (RelayException)
        {
            return false;
        }
    }
}
