namespace Relay.Linux.Conntrack;

/// <summary>
/// ctnetlink wire constants, named and numbered as in the kernel UAPI headers
/// linux/netfilter/nfnetlink.h and linux/netfilter/nfnetlink_conntrack.h.
/// </summary>
internal static class CtNetlink
{
    // nfnetlink.h
    public const byte NFNETLINK_V0 = 0;
    public const byte NFNL_SUBSYS_CTNETLINK = 1;

    // enum cntl_msg_types
    public const byte IPCTNL_MSG_CT_NEW = 0;
    public const byte IPCTNL_MSG_CT_GET = 1;
    public const byte IPCTNL_MSG_CT_DELETE = 2;

    // enum ctattr_type
    public const ushort CTA_TUPLE_ORIG = 1;
    public const ushort CTA_TUPLE_REPLY = 2;
    public const ushort CTA_STATUS = 3;
    public const ushort CTA_PROTOINFO = 4;
    public const ushort CTA_MARK = 8;
    public const ushort CTA_ZONE = 18;

    // enum ctattr_tuple
    public const ushort CTA_TUPLE_IP = 1;
    public const ushort CTA_TUPLE_PROTO = 2;
    public const ushort CTA_TUPLE_ZONE = 3;

    // enum ctattr_ip
    public const ushort CTA_IP_V4_SRC = 1;
    public const ushort CTA_IP_V4_DST = 2;
    public const ushort CTA_IP_V6_SRC = 3;
    public const ushort CTA_IP_V6_DST = 4;

    // enum ctattr_l4proto
    public const ushort CTA_PROTO_NUM = 1;
    public const ushort CTA_PROTO_SRC_PORT = 2;
    public const ushort CTA_PROTO_DST_PORT = 3;
    public const ushort CTA_PROTO_ICMP_ID = 4;
    public const ushort CTA_PROTO_ICMP_TYPE = 5;
    public const ushort CTA_PROTO_ICMP_CODE = 6;
    public const ushort CTA_PROTO_ICMPV6_ID = 7;
    public const ushort CTA_PROTO_ICMPV6_TYPE = 8;
    public const ushort CTA_PROTO_ICMPV6_CODE = 9;

    // enum ctattr_protoinfo
    public const ushort CTA_PROTOINFO_TCP = 1;

    // enum ctattr_protoinfo_tcp
    public const ushort CTA_PROTOINFO_TCP_STATE = 1;

    /// <summary>The nlmsg_type of a ctnetlink message: subsystem in the high byte, operation in the low (NFNL_SUBSYS_ID / NFNL_MSG_TYPE).</summary>
    public static ushort MessageType(byte operation) => (ushort)((NFNL_SUBSYS_CTNETLINK << 8) | operation);
}
