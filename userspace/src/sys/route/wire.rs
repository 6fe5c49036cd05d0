//! The netlink messages of the router: decoded into the facts the resolver
//! works with, and the requests it sends, built with netlink-packet-route's
//! types. Nothing here panics on any input.

use std::net::IpAddr;

use netlink_packet_core::{
    NLMSG_DONE, NLMSG_ERROR, NLMSG_OVERRUN, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope},
    link::{LinkAttribute, LinkMessage},
    neighbour::{
        NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
    },
    route::{
        RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteMetric, RouteType, RouteVia,
    },
};

use super::Unreachable;

/// The kernel's answer to `RTM_GETROUTE`, reduced to what a next hop needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteInfo {
    /// `RTA_OIF`: the interface the route leaves by.
    pub oif: u32,
    /// `RTA_GATEWAY` (or `RTA_VIA`, a gateway of the other family).
    pub gateway: Option<IpAddr>,
    /// `RTA_PREFSRC`: the source address the kernel chose.
    pub prefsrc: Option<IpAddr>,
    /// `RTAX_MTU` of `RTA_METRICS` (a route's `mtu`, or a learnt path MTU).
    pub mtu: Option<u32>,
}

/// One entry of the kernel's neighbour table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighInfo {
    /// The interface it belongs to.
    pub ifindex: u32,
    /// The neighbour's IP address.
    pub ip: IpAddr,
    /// Its NUD state.
    pub state: NeighbourState,
    /// Its link-layer address, when the kernel has one (6 bytes, Ethernet).
    pub mac: Option<[u8; 6]>,
}

/// Our interface's link facts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    /// Its index.
    pub ifindex: u32,
    /// Its MAC (`IFLA_ADDRESS`), when it is a 6-byte one.
    pub mac: Option<[u8; 6]>,
    /// Its MTU (`IFLA_MTU`).
    pub mtu: Option<u32>,
}

/// An address of an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IfAddr {
    /// The interface.
    pub ifindex: u32,
    /// The address.
    pub ip: IpAddr,
    /// Usable as a source: not tentative (DAD still running) nor failed DAD.
    pub usable: bool,
}

/// A decoded netlink message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A route message: an answer (`RTM_NEWROUTE` to our question) or a
    /// notification; which one is told by the sequence number.
    Route(RouteMessage),
    /// A route was added or removed (notification).
    RouteDeleted(RouteMessage),
    /// A neighbour entry was added or changed.
    Neigh(NeighInfo),
    /// A neighbour entry was removed.
    NeighGone(NeighInfo),
    /// A link was added or changed.
    Link(LinkInfo),
    /// A link was removed.
    LinkGone(u32),
    /// An address was added.
    Addr(IfAddr),
    /// An address was removed.
    AddrGone(IfAddr),
    /// NLMSG_ERROR: an acknowledgement (0) or an error (a negative errno).
    Ack(i32),
    /// NLMSG_DONE: the end of a dump.
    Done,
    /// A message of a kind we do not follow.
    Ignored,
}

/// One message of a datagram: its header and what it said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// The message's sequence number (0 for notifications).
    pub seq: u32,
    /// What it said, or `None` when it did not parse.
    pub event: Option<Event>,
}

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_NEWNEIGH: u16 = 28;
const RTM_DELNEIGH: u16 = 29;
const NLMSG_HDRLEN: usize = 16;

/// Split a netlink datagram into its messages and decode each. Never panics:
/// a message that does not parse is returned with `event: None`, and a length
/// field that does not fit ends the datagram (with one `None`).
pub fn decode(datagram: &[u8]) -> Vec<Decoded> {
    let mut out = Vec::new();
    let mut rest = datagram;
    while rest.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        let seq = u32::from_ne_bytes([rest[8], rest[9], rest[10], rest[11]]);
        if len < NLMSG_HDRLEN || len > rest.len() {
            out.push(Decoded { seq, event: None });
            return out;
        }
        let event = decode_one(kind, &rest[..len]);
        out.push(Decoded { seq, event });
        // Messages are 4-byte aligned; the last one may end without padding.
        let next = len.next_multiple_of(4).min(rest.len());
        rest = &rest[next..];
    }
    if !rest.is_empty() {
        out.push(Decoded {
            seq: 0,
            event: None,
        });
    }
    out
}

fn decode_one(kind: u16, bytes: &[u8]) -> Option<Event> {
    match kind {
        RTM_NEWLINK | RTM_DELLINK | RTM_NEWADDR | RTM_DELADDR | RTM_NEWROUTE | RTM_DELROUTE
        | RTM_NEWNEIGH | RTM_DELNEIGH | NLMSG_ERROR | NLMSG_DONE => {}
        NLMSG_OVERRUN => return None,
        _ => return Some(Event::Ignored),
    }
    let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes).ok()?;
    Some(match msg.payload {
        NetlinkPayload::Error(e) => Event::Ack(e.raw_code()),
        NetlinkPayload::Done(_) => Event::Done,
        NetlinkPayload::InnerMessage(m) => match m {
            RouteNetlinkMessage::NewRoute(r) => Event::Route(r),
            RouteNetlinkMessage::DelRoute(r) => Event::RouteDeleted(r),
            RouteNetlinkMessage::NewNeighbour(n) => {
                neigh_info(&n).map_or(Event::Ignored, Event::Neigh)
            }
            RouteNetlinkMessage::DelNeighbour(n) => {
                neigh_info(&n).map_or(Event::Ignored, Event::NeighGone)
            }
            RouteNetlinkMessage::NewLink(l) => Event::Link(link_info(&l)),
            RouteNetlinkMessage::DelLink(l) => Event::LinkGone(l.header.index),
            RouteNetlinkMessage::NewAddress(a) => addr_info(&a).map_or(Event::Ignored, Event::Addr),
            RouteNetlinkMessage::DelAddress(a) => {
                addr_info(&a).map_or(Event::Ignored, Event::AddrGone)
            }
            _ => Event::Ignored,
        },
        _ => Event::Ignored,
    })
}

fn route_ip(addr: &RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

/// The route the kernel answered, or why there is none to send by. The
/// interface is not checked here (the resolver knows ours).
pub fn route_info(msg: &RouteMessage) -> Result<RouteInfo, Unreachable> {
    // Only unicast routes lead to a neighbour. The others are no way out for a
    // datagram of ours: local/broadcast/anycast ones are for this host,
    // multicast needs a group's MAC, and blackhole/unreachable/prohibit/throw
    // say there is no route.
    if msg.header.kind != RouteType::Unicast {
        return Err(Unreachable::NoRoute);
    }
    let mut info = RouteInfo {
        oif: 0,
        gateway: None,
        prefsrc: None,
        mtu: None,
    };
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Oif(i) => info.oif = *i,
            RouteAttribute::Gateway(a) => info.gateway = route_ip(a),
            RouteAttribute::Via(RouteVia::Inet(a)) => info.gateway = Some(IpAddr::V4(*a)),
            RouteAttribute::Via(RouteVia::Inet6(a)) => info.gateway = Some(IpAddr::V6(*a)),
            RouteAttribute::PrefSource(a) => info.prefsrc = route_ip(a),
            RouteAttribute::Metrics(metrics) => {
                for m in metrics {
                    if let RouteMetric::Mtu(mtu) = m
                        && *mtu > 0
                    {
                        info.mtu = Some(*mtu);
                    }
                }
            }
            _ => {}
        }
    }
    // An answer without an interface (a multipath route without a choice) is
    // no way out either.
    if info.oif == 0 {
        return Err(Unreachable::NoRoute);
    }
    Ok(info)
}

/// Why `RTM_GETROUTE` failed, as a cause. The kernel answers a lookup that
/// finds no route with ENETUNREACH, an `unreachable` route with EHOSTUNREACH,
/// `prohibit` with EACCES and an IPv4 `blackhole` with EINVAL.
pub fn route_error(errno: i32) -> Option<Unreachable> {
    match errno {
        libc::ENETUNREACH | libc::EHOSTUNREACH | libc::EACCES | libc::EINVAL => {
            Some(Unreachable::NoRoute)
        }
        _ => None,
    }
}

/// The neighbour entry a message describes; `None` for entries that are no
/// IPv4/IPv6 neighbours (bridge FDB entries, proxies).
pub fn neigh_info(msg: &NeighbourMessage) -> Option<NeighInfo> {
    if !matches!(
        msg.header.family,
        AddressFamily::Inet | AddressFamily::Inet6
    ) || msg.header.flags.contains(NeighbourFlags::Proxy)
    {
        return None;
    }
    let mut ip = None;
    let mut mac = None;
    for attr in &msg.attributes {
        match attr {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => ip = Some(IpAddr::V4(*a)),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                ip = Some(IpAddr::V6(*a))
            }
            NeighbourAttribute::LinkLayerAddress(l) => mac = <[u8; 6]>::try_from(l.as_slice()).ok(),
            _ => {}
        }
    }
    Some(NeighInfo {
        ifindex: msg.header.ifindex,
        ip: ip?,
        state: msg.header.state,
        mac,
    })
}

/// Our interface's facts from a link message.
pub fn link_info(msg: &LinkMessage) -> LinkInfo {
    let mut info = LinkInfo {
        ifindex: msg.header.index,
        mac: None,
        mtu: None,
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::Address(a) => info.mac = <[u8; 6]>::try_from(a.as_slice()).ok(),
            LinkAttribute::Mtu(m) => info.mtu = Some(*m),
            _ => {}
        }
    }
    info
}

/// The address an address message describes.
pub fn addr_info(msg: &AddressMessage) -> Option<IfAddr> {
    let mut address = None;
    let mut local = None;
    let mut flags = AddressFlags::from_bits_retain(u32::from(msg.header.flags.bits()));
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Address(a) => address = Some(*a),
            // On IPv4, IFA_LOCAL is ours and IFA_ADDRESS the peer's of a
            // point-to-point link.
            AddressAttribute::Local(a) => local = Some(*a),
            AddressAttribute::Flags(f) => flags = *f,
            _ => {}
        }
    }
    Some(IfAddr {
        ifindex: msg.header.index,
        ip: local.or(address)?,
        usable: !flags.intersects(AddressFlags::Tentative | AddressFlags::Dadfailed)
            && msg.header.scope != AddressScope::Host,
    })
}

pub(super) fn family_of(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// `RTM_GETROUTE` for `dst`, as `ip route get DST` asks it. A link-local IPv6
/// destination only means something on a link: it is asked about on ours.
pub fn route_request(dst: IpAddr, ifindex: u32) -> RouteNetlinkMessage {
    let mut msg = RouteMessage::default();
    msg.header = RouteHeader {
        address_family: family_of(dst),
        destination_prefix_length: if dst.is_ipv4() { 32 } else { 128 },
        ..RouteHeader::default()
    };
    msg.attributes.push(RouteAttribute::Destination(dst.into()));
    if let IpAddr::V6(a) = dst
        && a.is_unicast_link_local()
    {
        msg.attributes.push(RouteAttribute::Oif(ifindex));
    }
    RouteNetlinkMessage::GetRoute(msg)
}

/// `RTM_NEWNEIGH` with `NTF_USE` for `ip` on `ifindex` (sent with
/// `NLM_F_CREATE | NLM_F_REPLACE`): the kernel creates the entry if needed and
/// starts resolving it. The state is `NUD_NONE`: `neigh_add()` keeps the
/// entry's own state under `NTF_USE`, and a `NUD_PERMANENT` here would exempt
/// the new entry from garbage collection.
pub fn neigh_use_request(ip: IpAddr, ifindex: u32) -> RouteNetlinkMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = family_of(ip);
    msg.header.ifindex = ifindex;
    msg.header.state = NeighbourState::None;
    msg.header.flags = NeighbourFlags::Use;
    msg.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::from(ip)));
    RouteNetlinkMessage::NewNeighbour(msg)
}

pub(super) fn link_request(ifindex: u32) -> RouteNetlinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = ifindex;
    RouteNetlinkMessage::GetLink(msg)
}

pub(super) fn addr_dump_request() -> RouteNetlinkMessage {
    RouteNetlinkMessage::GetAddress(AddressMessage::default())
}

pub(super) fn neigh_dump_request(ifindex: u32) -> RouteNetlinkMessage {
    let mut msg = NeighbourMessage::default();
    msg.attributes.push(NeighbourAttribute::IfIndex(ifindex));
    RouteNetlinkMessage::GetNeighbour(msg)
}

/// `msg` as bytes, with header flags `flags` and sequence number `seq`.
pub fn serialize(msg: RouteNetlinkMessage, flags: u16, seq: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = seq;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    buf
}
