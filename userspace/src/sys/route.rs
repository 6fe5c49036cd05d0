//! Next hops for the send path: where a datagram to any destination leaves, from
//! the kernel's own routing and neighbour tables.
//!
//! A datagram we build ourselves needs what the kernel's output path works out for
//! a socket: the route (which interface, which gateway, which source address, the
//! path MTU) and the neighbour's MAC address. Rather than keep tables of our own
//! that would drift from the kernel's, the [`Router`] asks the kernel and follows
//! it, over rtnetlink:
//! - the route: `RTM_GETROUTE` for the destination, the question `ip route get DST`
//!   asks. The kernel answers with the route it would use itself (policy rules,
//!   multipath choice and learnt path MTU included): `RTA_OIF`, `RTA_GATEWAY`,
//!   `RTA_PREFSRC`, the route type and its metrics;
//! - the neighbour: the kernel's neighbour table for our interface, dumped once
//!   and then followed through its change notifications. The kernel keeps doing
//!   ARP and neighbour discovery (those frames reach it through our XDP program's
//!   `XDP_PASS`). A next hop it has no usable entry for is resolved by the kernel
//!   on request: an `RTM_NEWNEIGH` with `NTF_USE` makes `neigh_add()` create the
//!   entry and call `neigh_event_send()`, which starts probing exactly as if a
//!   packet were waiting for it; the result comes as a notification (`REACHABLE`
//!   or `FAILED`). No ARP of our own.
//!
//! Our frames bypass the kernel, so it never sees the traffic that would keep an
//! entry confirmed: an entry in use that the kernel has let go `STALE` is given
//! an `NTF_USE` at most every [`STALE_REFRESH`], which moves it to `DELAY` and
//! then `PROBE`, so that a neighbour that moved is noticed (and the entry does
//! not age out of the kernel's table while we use it). `NTF_USE` is never sent
//! for a `PERMANENT` entry: the kernel clears `NUD_PERMANENT` on it.
//!
//! # Shape
//! The send path asks [`Router::lookup`] for every datagram, from any thread: a
//! hit is a read lock and a hash lookup, no syscall, no allocation. A miss
//! publishes the destination as pending and wakes the router's thread, which owns
//! the netlink sockets, asks the kernel and publishes the answer. That thread
//! also follows the change notifications: a route or address change re-asks the
//! kernel for every cached destination of that family at once (a hot destination
//! keeps its old answer until the new one is in, instead of going pending), a
//! neighbour change updates every destination behind that neighbour, and a lost
//! notification (`ENOBUFS`: the socket overran) drops the whole cache, since
//! nothing says which entries went stale.
//!
//! All decisions are made by [`Resolver`], a sans-IO core like the poller's: it
//! takes decoded netlink messages and the time, and says which questions to ask
//! the kernel, what to publish and which held callbacks to run. Unit tests drive
//! it with messages built from netlink-packet-route's own types and made-up
//! times; the thread around it only moves bytes.

use std::{
    collections::{HashMap, hash_map::Entry},
    io,
    net::IpAddr,
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd},
    sync::{
        Arc, Mutex, PoisonError, RwLock,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        mpsc,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR,
    NLMSG_OVERRUN, NetlinkHeader, NetlinkMessage, NetlinkPayload,
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
use netlink_sys::{Socket, protocols::NETLINK_ROUTE};

/// At most this long from the first hold to an answer (the kernel's own default
/// resolution is 3 probes x 1 s).
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a failure is remembered before the kernel is asked again.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(1);
/// Datagrams held per destination while its next hop resolves (like the
/// kernel's `unres_qlen`).
pub const HOLD_PER_DESTINATION: usize = 64;
/// Datagrams held in all while their next hops resolve.
pub const HOLD_TOTAL: usize = 4096;
/// At most one `NTF_USE` this often for a `STALE` neighbour in use: the kernel's
/// own `delay_first_probe_time` is 5 s, so a refresh is never sent to an entry
/// still in the `DELAY` the last one started.
pub const STALE_REFRESH: Duration = Duration::from_secs(5);
/// The router thread's longest sleep: how often it collects the use marks of
/// `STALE` entries (expiries wake it on time by themselves).
const TICK: Duration = Duration::from_secs(1);
/// At most one `NTF_USE` this often for the same unresolved next hop, however
/// many destinations wait behind it.
const REQUEST_SPACING: Duration = Duration::from_secs(1);
/// How long a request to the kernel may take before it counts as failed (it
/// answers in microseconds; this only keeps a wedged socket from stopping the
/// thread).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// Receive buffer of the notification socket: a burst of route changes (a
/// routing daemon's full table) fits before the kernel reports an overrun.
const EVENTS_RCVBUF: usize = 4 << 20;
/// Largest datagram read from netlink: dumps come in datagrams of up to 32 KiB.
const RECV_BUF: usize = 64 << 10;

/// Where a datagram to a destination leaves: found in the kernel's tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextHop {
    /// Our interface's MAC (the frame's source).
    pub src_mac: [u8; 6],
    /// The neighbour's MAC: the gateway's, or the destination's on a connected route.
    pub dst_mac: [u8; 6],
    /// The source address: the route's preferred source (RTA_PREFSRC), else the
    /// interface's first address of the family (for IPv6 a global one before
    /// link-local unless the destination is link-local).
    pub src_ip: IpAddr,
    /// The gateway, if the route has one.
    pub gateway: Option<IpAddr>,
    /// The path MTU: the route's RTAX_MTU metric, else the interface's MTU.
    pub mtu: u32,
}

/// Why a destination cannot be sent to. [`Unreachable::name`] gives the counter name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Unreachable {
    /// No route (ENETUNREACH/EHOSTUNREACH, unreachable/blackhole/prohibit
    /// routes), or a local/broadcast/multicast destination.
    #[error("no route to the destination")]
    NoRoute,
    /// The route leaves by another interface than ours.
    #[error("the route to the destination leaves by another interface")]
    OtherInterface,
    /// Neighbour discovery failed or did not answer within [`RESOLVE_TIMEOUT`],
    /// or the hold queue was full.
    #[error("the next hop's link-layer address did not resolve")]
    Unresolved,
}

impl Unreachable {
    /// Every cause, in counter order.
    pub const ALL: [Unreachable; 3] = [
        Unreachable::NoRoute,
        Unreachable::OtherInterface,
        Unreachable::Unresolved,
    ];

    /// The counter name.
    pub fn name(self) -> &'static str {
        match self {
            Unreachable::NoRoute => "no_route",
            Unreachable::OtherInterface => "other_interface",
            Unreachable::Unresolved => "unresolved",
        }
    }

    fn index(self) -> usize {
        match self {
            Unreachable::NoRoute => 0,
            Unreachable::OtherInterface => 1,
            Unreachable::Unresolved => 2,
        }
    }
}

/// The answer of [`Router::lookup`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Send it this way.
    Ready(NextHop),
    /// The router is asking the kernel; hold the datagram ([`Router::hold`]) or
    /// drop it.
    Pending,
    /// It cannot be sent; asked again after [`NEGATIVE_TTL`].
    Failed(Unreachable),
}

/// Run once with the answer for a held datagram (see [`Router::hold`]).
pub type Then = Box<dyn FnOnce(Result<NextHop, Unreachable>) + Send>;

/// The router's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RouterStats {
    /// Calls of [`Router::lookup`].
    pub lookups: u64,
    /// Lookups answered [`Lookup::Ready`].
    pub hits: u64,
    /// Lookups answered [`Lookup::Pending`].
    pub misses: u64,
    /// Lookups answered [`Lookup::Failed`] (a remembered failure).
    pub negative_hits: u64,
    /// `RTM_GETROUTE` questions asked.
    pub route_queries: u64,
    /// `NTF_USE` requests sent for unresolved next hops.
    pub neighbour_requests: u64,
    /// `NTF_USE` requests sent for `STALE` neighbours in use.
    pub stale_refreshes: u64,
    /// Change notifications that concerned us (our link, its addresses and
    /// neighbours, routes).
    pub changes_seen: u64,
    /// Notification socket overruns (each dropped the whole cache).
    pub overruns: u64,
    /// Netlink messages that did not parse, skipped.
    pub malformed: u64,
    /// Requests to the kernel that failed for another reason than the answer
    /// itself (a timeout, a socket error).
    pub request_errors: u64,
    /// Resolutions that ended with a next hop.
    pub resolved: u64,
    /// Resolutions that ended in [`Unreachable::NoRoute`].
    pub no_route: u64,
    /// Resolutions that ended in [`Unreachable::OtherInterface`].
    pub other_interface: u64,
    /// Resolutions that ended in [`Unreachable::Unresolved`].
    pub unresolved: u64,
    /// Of `unresolved`: the kernel gave no answer within [`RESOLVE_TIMEOUT`].
    pub timeouts: u64,
    /// Datagrams held ([`Router::hold`]) while their next hop resolved.
    pub held: u64,
    /// Holds refused because a hold limit was reached.
    pub hold_full: u64,
    /// Datagrams held right now.
    pub holding: u64,
    /// Destinations in the cache right now.
    pub entries: u64,
}

/// What the router thread counts (one writer); folded into [`RouterStats`].
#[derive(Clone, Copy, Debug, Default)]
struct CoreStats {
    route_queries: u64,
    neighbour_requests: u64,
    stale_refreshes: u64,
    changes_seen: u64,
    overruns: u64,
    malformed: u64,
    request_errors: u64,
    resolved: u64,
    failed: [u64; 3],
    timeouts: u64,
    entries: u64,
}

// ---------------------------------------------------------------------------
// Decoding: netlink messages into the facts the resolver works with.
// ---------------------------------------------------------------------------

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
        libc::ENETUNREACH | libc::EHOSTUNREACH | libc::EACCES | libc::EINVAL | libc::EPERM => {
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

// ---------------------------------------------------------------------------
// The resolver: the sans-IO core.
// ---------------------------------------------------------------------------

/// Address family of a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of `ip`.
    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

/// What a destination is published as, for [`Router::lookup`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Its next hop.
    Ready(NextHop),
    /// Being resolved.
    Pending,
    /// Not reachable (until the failure expires).
    Failed(Unreachable),
}

/// A change of the published cache, in the order the resolver made them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Publish {
    /// Set a destination's answer.
    Set(IpAddr, Answer),
    /// Forget a destination (the next lookup asks again).
    Remove(IpAddr),
    /// Forget every destination.
    Clear,
}

/// A question for the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// `RTM_GETROUTE` for a destination; answer with [`Resolver::route_answer`].
    Route(IpAddr),
    /// `RTM_NEWNEIGH` with `NTF_USE` for a next hop on our interface: resolve it.
    Neigh(IpAddr),
    /// Dump the link, its addresses and its neighbours again (after an
    /// overrun); feed them in as events, then [`Resolver::tables_reloaded`].
    Reload,
}

/// Is `state` one whose link-layer address may be used? The kernel sends on
/// all of these (`NUD_VALID`): `STALE`/`DELAY`/`PROBE` are being checked, not
/// known wrong.
fn usable(state: NeighbourState) -> bool {
    matches!(
        state,
        NeighbourState::Reachable
            | NeighbourState::Stale
            | NeighbourState::Delay
            | NeighbourState::Probe
            | NeighbourState::Permanent
            | NeighbourState::Noarp
    )
}

/// One neighbour of our interface, as the kernel's table has it.
#[derive(Clone, Copy, Debug)]
struct Neigh {
    state: NeighbourState,
    mac: Option<[u8; 6]>,
    /// When we last sent it an `NTF_USE`.
    requested: Option<Instant>,
}

impl Neigh {
    fn ready_mac(&self) -> Option<[u8; 6]> {
        if usable(self.state) { self.mac } else { None }
    }
}

#[derive(Clone, Copy, Debug)]
enum State {
    /// The route question is out (or queued).
    Querying,
    /// The route is known; waiting for the kernel to resolve `nh`.
    Waiting { route: RouteInfo, nh: IpAddr },
    /// Published as ready.
    Ready {
        route: RouteInfo,
        nh: IpAddr,
        hop: NextHop,
    },
    /// Published as failed, forgotten at `until`.
    Failed { reason: Unreachable, until: Instant },
}

struct Dest {
    state: State,
    /// When the current resolution began: it fails [`RESOLVE_TIMEOUT`] later.
    since: Instant,
    /// A route question is out for a destination that keeps its answer meanwhile.
    requery: bool,
    /// Held callbacks, each with its own deadline.
    holds: Vec<(Then, Instant)>,
}

/// The decisions of the router, without I/O: fed with requests, decoded
/// netlink messages and the time; its output is taken with
/// [`Resolver::take_output`].
pub struct Resolver {
    ifindex: u32,
    link_mac: [u8; 6],
    link_mtu: u32,
    addrs: Vec<IfAddr>,
    neighs: HashMap<IpAddr, Neigh>,
    dests: HashMap<IpAddr, Dest>,
    requests: Vec<Request>,
    publish: Vec<Publish>,
    done: Vec<(Then, Result<NextHop, Unreachable>)>,
    stats: CoreStats,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("ifindex", &self.ifindex)
            .field("destinations", &self.dests.len())
            .field("neighbours", &self.neighs.len())
            .finish()
    }
}

/// What the resolver asks of its caller after a step.
#[derive(Default)]
pub struct Output {
    /// Questions for the kernel, in order.
    pub requests: Vec<Request>,
    /// Changes of the published cache, in order.
    pub publish: Vec<Publish>,
    /// Held callbacks to run, with their answers.
    pub done: Vec<(Then, Result<NextHop, Unreachable>)>,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output")
            .field("requests", &self.requests)
            .field("publish", &self.publish)
            .field("done", &self.done.len())
            .finish()
    }
}

/// Destinations no route leads to, whatever the tables say: the send path
/// builds unicast frames.
fn never_routed(dst: IpAddr) -> bool {
    match dst {
        IpAddr::V4(a) => a.is_unspecified() || a.is_multicast() || a.is_broadcast(),
        IpAddr::V6(a) => a.is_unspecified() || a.is_multicast(),
    }
}

impl Resolver {
    /// A resolver for interface `link` (whose MAC is `link.mac`) with its
    /// addresses and its neighbours as dumped from the kernel.
    pub fn new(link: LinkInfo, mac: [u8; 6]) -> Self {
        Self {
            ifindex: link.ifindex,
            link_mac: mac,
            link_mtu: link.mtu.unwrap_or(1500),
            addrs: Vec::new(),
            neighs: HashMap::new(),
            dests: HashMap::new(),
            requests: Vec::new(),
            publish: Vec::new(),
            done: Vec::new(),
            stats: CoreStats::default(),
        }
    }

    /// Take what the last steps asked for.
    pub fn take_output(&mut self) -> Output {
        Output {
            requests: std::mem::take(&mut self.requests),
            publish: std::mem::take(&mut self.publish),
            done: std::mem::take(&mut self.done),
        }
    }

    fn stats(&self) -> CoreStats {
        CoreStats {
            entries: self.dests.len() as u64,
            ..self.stats
        }
    }

    /// Count a message that did not parse.
    pub fn malformed(&mut self) {
        self.stats.malformed += 1;
    }

    /// Count a request that failed for another reason than its answer.
    pub fn request_error(&mut self) {
        self.stats.request_errors += 1;
    }

    /// A lookup missed `dst`: resolve it, unless that is under way or known.
    pub fn resolve(&mut self, dst: IpAddr, now: Instant) {
        if self.dests.contains_key(&dst) {
            return;
        }
        if never_routed(dst) {
            self.dests.insert(
                dst,
                Dest {
                    state: State::Querying,
                    since: now,
                    requery: false,
                    holds: Vec::new(),
                },
            );
            self.fail(dst, Unreachable::NoRoute, now);
            return;
        }
        self.dests.insert(
            dst,
            Dest {
                state: State::Querying,
                since: now,
                requery: false,
                holds: Vec::new(),
            },
        );
        self.publish.push(Publish::Set(dst, Answer::Pending));
        self.query(dst);
    }

    fn query(&mut self, dst: IpAddr) {
        self.stats.route_queries += 1;
        self.requests.push(Request::Route(dst));
    }

    /// Hold `then` until `dst` resolves or fails; at once if it is known.
    pub fn hold(&mut self, dst: IpAddr, then: Then, now: Instant) {
        self.resolve(dst, now);
        let Some(dest) = self.dests.get_mut(&dst) else {
            self.done.push((then, Err(Unreachable::Unresolved)));
            return;
        };
        match dest.state {
            State::Ready { hop, .. } => self.done.push((then, Ok(hop))),
            State::Failed { reason, .. } => self.done.push((then, Err(reason))),
            State::Querying | State::Waiting { .. } => {
                dest.holds.push((then, now + RESOLVE_TIMEOUT));
            }
        }
    }

    /// The kernel's answer to [`Request::Route`] for `dst`: the route message,
    /// or the errno it refused with.
    pub fn route_answer(&mut self, dst: IpAddr, answer: Result<&RouteMessage, i32>, now: Instant) {
        let Some(dest) = self.dests.get_mut(&dst) else {
            return;
        };
        dest.requery = false;
        let route = match answer {
            Ok(msg) => route_info(msg),
            Err(errno) => match route_error(errno) {
                Some(reason) => Err(reason),
                None => {
                    self.stats.request_errors += 1;
                    Err(Unreachable::Unresolved)
                }
            },
        };
        let route = match route {
            Ok(r) if r.oif != self.ifindex => Err(Unreachable::OtherInterface),
            other => other,
        };
        match route {
            Err(reason) => self.fail(dst, reason, now),
            Ok(route) => {
                let nh = route.gateway.unwrap_or(dst);
                self.settle(dst, route, nh, now);
            }
        }
    }

    /// Put `dst` (whose route is `route`, via `nh`) in the state the
    /// neighbour table allows: ready, or waiting for the kernel to resolve.
    fn settle(&mut self, dst: IpAddr, route: RouteInfo, nh: IpAddr, now: Instant) {
        let mac = self.neighs.get(&nh).and_then(Neigh::ready_mac);
        let Some(dest) = self.dests.get(&dst) else {
            return;
        };
        match mac {
            Some(dst_mac) => match self.next_hop(dst, &route, dst_mac) {
                Some(hop) => self.ready(dst, route, nh, hop),
                None => self.fail(dst, Unreachable::NoRoute, now),
            },
            None => {
                // A resolution starts now unless one is running already.
                let since = match dest.state {
                    State::Querying | State::Waiting { .. } => dest.since,
                    _ => now,
                };
                let was_published_pending =
                    matches!(dest.state, State::Querying | State::Waiting { .. });
                if let Some(dest) = self.dests.get_mut(&dst) {
                    dest.state = State::Waiting { route, nh };
                    dest.since = since;
                }
                if !was_published_pending {
                    self.publish.push(Publish::Set(dst, Answer::Pending));
                }
                self.request_neigh(nh, now);
            }
        }
    }

    /// Ask the kernel to resolve `nh`, unless it is at it (INCOMPLETE), or we
    /// asked within [`REQUEST_SPACING`].
    fn request_neigh(&mut self, nh: IpAddr, now: Instant) {
        let entry = self.neighs.entry(nh).or_insert(Neigh {
            state: NeighbourState::None,
            mac: None,
            requested: None,
        });
        if entry.state == NeighbourState::Permanent {
            return;
        }
        if entry
            .requested
            .is_some_and(|t| now.saturating_duration_since(t) < REQUEST_SPACING)
        {
            return;
        }
        entry.requested = Some(now);
        self.stats.neighbour_requests += 1;
        self.requests.push(Request::Neigh(nh));
    }

    fn next_hop(&self, dst: IpAddr, route: &RouteInfo, dst_mac: [u8; 6]) -> Option<NextHop> {
        let src_ip = route
            .prefsrc
            .filter(|s| Family::of(*s) == Family::of(dst))
            .or_else(|| self.source_for(dst))?;
        Some(NextHop {
            src_mac: self.link_mac,
            dst_mac,
            src_ip,
            gateway: route.gateway,
            mtu: route.mtu.unwrap_or(self.link_mtu),
        })
    }

    /// The interface's first usable address of `dst`'s family; for IPv6 a
    /// global one before a link-local one, unless `dst` is link-local.
    fn source_for(&self, dst: IpAddr) -> Option<IpAddr> {
        let ours = || {
            self.addrs
                .iter()
                .filter(|a| a.ifindex == self.ifindex && a.usable)
                .map(|a| a.ip)
        };
        match dst {
            IpAddr::V4(_) => ours().find(IpAddr::is_ipv4),
            IpAddr::V6(d) => {
                let link_local =
                    |ip: &IpAddr| matches!(ip, IpAddr::V6(a) if a.is_unicast_link_local());
                let v6 = || ours().filter(IpAddr::is_ipv6);
                if d.is_unicast_link_local() {
                    v6().find(link_local).or_else(|| v6().next())
                } else {
                    v6().find(|a| !link_local(a)).or_else(|| v6().next())
                }
            }
        }
    }

    fn ready(&mut self, dst: IpAddr, route: RouteInfo, nh: IpAddr, hop: NextHop) {
        let Some(dest) = self.dests.get_mut(&dst) else {
            return;
        };
        let unchanged = matches!(dest.state, State::Ready { hop: old, .. } if old == hop);
        let was_ready = matches!(dest.state, State::Ready { .. });
        dest.state = State::Ready { route, nh, hop };
        if !was_ready {
            self.stats.resolved += 1;
        }
        for (then, _) in dest.holds.drain(..) {
            self.done.push((then, Ok(hop)));
        }
        if !unchanged {
            self.publish.push(Publish::Set(dst, Answer::Ready(hop)));
        }
    }

    fn fail(&mut self, dst: IpAddr, reason: Unreachable, now: Instant) {
        let Some(dest) = self.dests.get_mut(&dst) else {
            return;
        };
        if matches!(dest.state, State::Failed { reason: r, .. } if r == reason) {
            return;
        }
        dest.state = State::Failed {
            reason,
            until: now + NEGATIVE_TTL,
        };
        dest.requery = false;
        self.stats.failed[reason.index()] += 1;
        for (then, _) in dest.holds.drain(..) {
            self.done.push((then, Err(reason)));
        }
        self.publish.push(Publish::Set(dst, Answer::Failed(reason)));
    }

    /// A decoded notification (or dump entry) about the kernel's tables.
    pub fn event(&mut self, event: &Event, now: Instant) {
        match event {
            Event::Route(msg) | Event::RouteDeleted(msg) => {
                // Any route change may change any destination's route (a more
                // specific prefix, a rule, a metric): every destination of that
                // family is asked about again.
                self.stats.changes_seen += 1;
                let family = match msg.header.address_family {
                    AddressFamily::Inet => Family::V4,
                    AddressFamily::Inet6 => Family::V6,
                    _ => return,
                };
                self.routes_changed(family, now);
            }
            Event::Neigh(n) if n.ifindex == self.ifindex => {
                self.stats.changes_seen += 1;
                self.neigh_changed(*n, now);
            }
            Event::NeighGone(n) if n.ifindex == self.ifindex => {
                self.stats.changes_seen += 1;
                self.neigh_gone(n.ip, now);
            }
            Event::Link(l) if l.ifindex == self.ifindex => {
                self.stats.changes_seen += 1;
                self.link_changed(*l);
            }
            Event::LinkGone(i) if *i == self.ifindex => {
                // Routes through it go too (and say so); the neighbours are gone.
                self.stats.changes_seen += 1;
                self.neighs.clear();
                self.routes_changed(Family::V4, now);
                self.routes_changed(Family::V6, now);
            }
            Event::Addr(a) | Event::AddrGone(a) if a.ifindex == self.ifindex => {
                self.stats.changes_seen += 1;
                let added = matches!(event, Event::Addr(_));
                self.addrs.retain(|old| old.ip != a.ip);
                if added {
                    self.addrs.push(*a);
                }
                // An address brings and takes its prefix route and may change
                // the preferred source of any route of its family.
                self.routes_changed(Family::of(a.ip), now);
            }
            _ => {}
        }
    }

    /// Load an entry of a dump (link, address, neighbour) without treating it
    /// as a change.
    pub fn load(&mut self, event: &Event) {
        match event {
            Event::Neigh(n) if n.ifindex == self.ifindex => {
                self.neighs.insert(
                    n.ip,
                    Neigh {
                        state: n.state,
                        mac: n.mac,
                        requested: None,
                    },
                );
            }
            Event::Addr(a) if a.ifindex == self.ifindex => {
                self.addrs.retain(|old| old.ip != a.ip);
                self.addrs.push(*a);
            }
            Event::Link(l) if l.ifindex == self.ifindex => self.link_changed(*l),
            _ => {}
        }
    }

    fn routes_changed(&mut self, family: Family, now: Instant) {
        let mut forget = Vec::new();
        let mut ask = Vec::new();
        for (dst, dest) in &mut self.dests {
            if Family::of(*dst) != family {
                continue;
            }
            match dest.state {
                // A remembered failure is forgotten: the next lookup asks.
                State::Failed { .. } => forget.push(*dst),
                // The others keep their answer until the new one is in.
                _ if dest.requery => {}
                _ => {
                    dest.requery = true;
                    ask.push(*dst);
                }
            }
        }
        for dst in forget {
            if let Some(dest) = self.dests.remove(&dst) {
                // A failed destination holds nothing (its holds were answered).
                debug_assert!(dest.holds.is_empty());
            }
            self.publish.push(Publish::Remove(dst));
        }
        let _ = now;
        for dst in ask {
            self.query(dst);
        }
    }

    fn neigh_changed(&mut self, n: NeighInfo, now: Instant) {
        let entry = self.neighs.entry(n.ip).or_insert(Neigh {
            state: n.state,
            mac: n.mac,
            requested: None,
        });
        entry.state = n.state;
        // The kernel reports no address for states without one; keep the last
        // one only for the states that have it.
        entry.mac = n.mac.filter(|_| usable(n.state));
        let neigh = *entry;
        let behind: Vec<(IpAddr, RouteInfo)> = self
            .dests
            .iter()
            .filter_map(|(dst, d)| match d.state {
                State::Waiting { route, nh } | State::Ready { route, nh, .. } if nh == n.ip => {
                    Some((*dst, route))
                }
                _ => None,
            })
            .collect();
        for (dst, route) in behind {
            if neigh.state == NeighbourState::Failed {
                self.fail(dst, Unreachable::Unresolved, now);
            } else if let Some(mac) = neigh.ready_mac() {
                match self.next_hop(dst, &route, mac) {
                    Some(hop) => self.ready(dst, route, n.ip, hop),
                    None => self.fail(dst, Unreachable::NoRoute, now),
                }
            } else {
                // INCOMPLETE (the kernel is probing) or NONE: wait for it.
                self.unready(dst, route, n.ip, now);
                if neigh.state != NeighbourState::Incomplete {
                    self.request_neigh(n.ip, now);
                }
            }
        }
    }

    /// A ready destination whose neighbour has no address any more waits for it.
    fn unready(&mut self, dst: IpAddr, route: RouteInfo, nh: IpAddr, now: Instant) {
        if let Some(dest) = self.dests.get_mut(&dst)
            && let State::Ready { .. } = dest.state
        {
            dest.state = State::Waiting { route, nh };
            dest.since = now;
            self.publish.push(Publish::Set(dst, Answer::Pending));
        }
    }

    fn neigh_gone(&mut self, ip: IpAddr, now: Instant) {
        self.neighs.remove(&ip);
        let behind: Vec<(IpAddr, RouteInfo)> = self
            .dests
            .iter()
            .filter_map(|(dst, d)| match d.state {
                State::Waiting { route, nh } | State::Ready { route, nh, .. } if nh == ip => {
                    Some((*dst, route))
                }
                _ => None,
            })
            .collect();
        let any = !behind.is_empty();
        for (dst, route) in behind {
            self.unready(dst, route, ip, now);
        }
        // Still needed: have the kernel make it again.
        if any {
            self.request_neigh(ip, now);
        }
    }

    fn link_changed(&mut self, l: LinkInfo) {
        let mac = l.mac.unwrap_or(self.link_mac);
        let mtu = l.mtu.unwrap_or(self.link_mtu);
        if (mac, mtu) == (self.link_mac, self.link_mtu) {
            return;
        }
        self.link_mac = mac;
        self.link_mtu = mtu;
        let ready: Vec<(IpAddr, RouteInfo, IpAddr, NextHop)> = self
            .dests
            .iter()
            .filter_map(|(dst, d)| match d.state {
                State::Ready { route, nh, hop } => Some((*dst, route, nh, hop)),
                _ => None,
            })
            .collect();
        for (dst, route, nh, mut hop) in ready {
            hop.src_mac = mac;
            hop.mtu = route.mtu.unwrap_or(mtu);
            self.ready(dst, route, nh, hop);
        }
    }

    /// Notifications were lost (`ENOBUFS`): nothing we know can be trusted.
    /// Drops the cache; destinations with held datagrams are resolved again
    /// from scratch (their holds keep their deadlines); the caller reloads
    /// the tables ([`Request::Reload`]) before it asks the route questions.
    pub fn overrun(&mut self, now: Instant) {
        self.stats.overruns += 1;
        self.neighs.clear();
        self.addrs.clear();
        self.publish.push(Publish::Clear);
        self.requests.push(Request::Reload);
        let mut keep = Vec::new();
        for (dst, dest) in self.dests.drain() {
            if !dest.holds.is_empty() {
                keep.push((dst, dest));
            }
        }
        for (dst, mut dest) in keep {
            dest.state = State::Querying;
            dest.requery = false;
            dest.since = now;
            self.dests.insert(dst, dest);
            self.publish.push(Publish::Set(dst, Answer::Pending));
            self.query(dst);
        }
    }

    /// Time passed: fail resolutions and holds past their deadline, forget
    /// expired failures. `used` are the ready destinations looked up since the
    /// last call: those behind a `STALE` neighbour get it refreshed.
    pub fn tick(&mut self, now: Instant, used: &[IpAddr]) {
        let mut timed_out = Vec::new();
        let mut expired = Vec::new();
        for (dst, dest) in &mut self.dests {
            match dest.state {
                State::Failed { until, .. } if until <= now => expired.push(*dst),
                State::Querying | State::Waiting { .. } => {
                    if dest.since + RESOLVE_TIMEOUT <= now {
                        timed_out.push(*dst);
                    } else {
                        // A hold that came late is bound by its own deadline
                        // only if the resolution restarted after it.
                        let mut i = 0;
                        while i < dest.holds.len() {
                            if dest.holds[i].1 <= now {
                                let (then, _) = dest.holds.swap_remove(i);
                                self.done.push((then, Err(Unreachable::Unresolved)));
                            } else {
                                i += 1;
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        for dst in timed_out {
            self.stats.timeouts += 1;
            self.fail(dst, Unreachable::Unresolved, now);
        }
        for dst in expired {
            self.dests.remove(&dst);
            self.publish.push(Publish::Remove(dst));
        }
        for dst in used {
            let Some(Dest {
                state: State::Ready { nh, .. },
                ..
            }) = self.dests.get(dst)
            else {
                continue;
            };
            let nh = *nh;
            if let Some(neigh) = self.neighs.get_mut(&nh)
                && neigh.state == NeighbourState::Stale
                && neigh
                    .requested
                    .is_none_or(|t| now.saturating_duration_since(t) >= STALE_REFRESH)
            {
                neigh.requested = Some(now);
                self.stats.stale_refreshes += 1;
                self.requests.push(Request::Neigh(nh));
            }
        }
    }

    /// When [`Resolver::tick`] must run next, at the latest.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.dests
            .values()
            .filter_map(|d| match d.state {
                State::Failed { until, .. } => Some(until),
                State::Querying | State::Waiting { .. } => {
                    let first_hold = d.holds.iter().map(|h| h.1).min();
                    let end = d.since + RESOLVE_TIMEOUT;
                    Some(first_hold.map_or(end, |h| h.min(end)))
                }
                State::Ready { .. } => None,
            })
            .min()
    }

    /// The router stops: every held callback is answered `Unresolved`.
    pub fn shutdown(&mut self) {
        for dest in self.dests.values_mut() {
            for (then, _) in dest.holds.drain(..) {
                self.done.push((then, Err(Unreachable::Unresolved)));
            }
        }
    }

    /// Datagrams held right now.
    pub fn holding(&self) -> usize {
        self.dests.values().map(|d| d.holds.len()).sum()
    }
}

// ---------------------------------------------------------------------------
// Netlink messages we send.
// ---------------------------------------------------------------------------

fn family_of(ip: IpAddr) -> AddressFamily {
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

fn link_request(ifindex: u32) -> RouteNetlinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = ifindex;
    RouteNetlinkMessage::GetLink(msg)
}

fn addr_dump_request() -> RouteNetlinkMessage {
    RouteNetlinkMessage::GetAddress(AddressMessage::default())
}

fn neigh_dump_request(ifindex: u32) -> RouteNetlinkMessage {
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

// ---------------------------------------------------------------------------
// The I/O: sockets, the thread, the published cache.
// ---------------------------------------------------------------------------

fn context(what: &str) -> impl FnOnce(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("xdpstack: routing: {what}: {e}"))
}

/// The request socket: one question at a time, answered in order.
struct Requests {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

/// What a request brought back: the messages, and the kernel's errno (0: done).
struct Reply {
    events: Vec<Event>,
    errno: i32,
    malformed: u64,
}

impl Requests {
    fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        let timeout = libc::timeval {
            tv_sec: REQUEST_TIMEOUT.as_secs() as libc::time_t,
            tv_usec: REQUEST_TIMEOUT.subsec_micros() as libc::suseconds_t,
        };
        // SAFETY: a valid timeval of the size passed, for a socket we own;
        // setsockopt only reads it.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            socket,
            seq: 0,
            buf: Vec::with_capacity(RECV_BUF),
        })
    }

    /// Send `msg` (with `flags` beside REQUEST|ACK) and read until the kernel
    /// acknowledges, refuses or ends the dump. Messages of earlier, timed-out
    /// requests are skipped by their sequence number.
    fn ask(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<Reply> {
        self.seq = self.seq.wrapping_add(1).max(1);
        let seq = self.seq;
        let bytes = serialize(msg, NLM_F_REQUEST | NLM_F_ACK | flags, seq);
        self.socket.send(&bytes, 0)?;
        let mut reply = Reply {
            events: Vec::new(),
            errno: 0,
            malformed: 0,
        };
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        loop {
            if Instant::now() >= deadline {
                return Err(io::Error::from(io::ErrorKind::TimedOut));
            }
            self.buf.clear();
            let n = match self.socket.recv(&mut self.buf, libc::MSG_TRUNC) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n > self.buf.len() {
                // Truncated: the rest of this reply cannot be trusted.
                reply.malformed += 1;
                continue;
            }
            for d in decode(&self.buf) {
                if d.seq != seq {
                    continue;
                }
                match d.event {
                    None => reply.malformed += 1,
                    Some(Event::Ack(code)) => {
                        reply.errno = -code;
                        return Ok(reply);
                    }
                    Some(Event::Done) => return Ok(reply),
                    Some(Event::Ignored) => {}
                    Some(e) => reply.events.push(e),
                }
            }
        }
    }
}

/// The notification socket: subscribed to what the resolver follows.
fn events_socket() -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    for group in [
        libc::RTNLGRP_LINK,
        libc::RTNLGRP_NEIGH,
        libc::RTNLGRP_IPV4_IFADDR,
        libc::RTNLGRP_IPV6_IFADDR,
        libc::RTNLGRP_IPV4_ROUTE,
        libc::RTNLGRP_IPV6_ROUTE,
    ] {
        socket.add_membership(group)?;
    }
    // Best effort: a smaller buffer only overruns sooner, which is handled.
    let _ = socket.set_rx_buf_sz(EVENTS_RCVBUF);
    socket.set_non_blocking(true)?;
    Ok(socket)
}

fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd(2) takes no pointers; a non-negative result is a new
    // descriptor that nothing else owns.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by eventfd and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// One published destination.
struct Slot {
    answer: Answer,
    /// Looked up since the router last looked (a `STALE` neighbour in use
    /// gets refreshed).
    used: AtomicBool,
    /// Datagrams held for it (while pending).
    held: AtomicUsize,
}

impl Slot {
    fn new(answer: Answer) -> Self {
        Self {
            answer,
            used: AtomicBool::new(false),
            held: AtomicUsize::new(0),
        }
    }
}

enum Command {
    Resolve(IpAddr),
    Hold(IpAddr, Then),
}

/// What the router's thread and its callers share.
struct Shared {
    cache: RwLock<HashMap<IpAddr, Slot>>,
    wake: OwnedFd,
    stop: AtomicBool,
    lookups: AtomicU64,
    misses: AtomicU64,
    negative: AtomicU64,
    held: AtomicU64,
    hold_full: AtomicU64,
    /// Datagrams held right now, against [`HOLD_TOTAL`].
    holding: AtomicUsize,
    core: Mutex<CoreStats>,
}

impl Shared {
    fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to the eventfd we own. A full
        // counter (EAGAIN) means a wakeup is pending already.
        unsafe {
            libc::write(self.wake.as_raw_fd(), (&raw const one).cast(), 8);
        }
    }

    fn drain_wake(&self) {
        let mut value: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from the non-blocking eventfd
        // we own; EAGAIN (nothing to read) is fine.
        unsafe {
            libc::read(self.wake.as_raw_fd(), (&raw mut value).cast(), 8);
        }
    }
}

/// Follows the kernel's routing and neighbour tables for one interface, for
/// the send path. `Send + Sync`: share it in an `Arc`.
pub struct Router {
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
    thread: Mutex<Option<JoinHandle<()>>>,
    ifindex: u32,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("ifindex", &self.ifindex)
            .finish_non_exhaustive()
    }
}

impl Router {
    /// Open on interface `ifindex`, in the calling thread's network namespace;
    /// spawns the router's thread (named "xdpstack-route"), which owns the
    /// netlink sockets. Errors name what failed.
    pub fn open(ifindex: u32) -> io::Result<Arc<Router>> {
        // Subscribe before the dumps, so that no change falls between them.
        let events = events_socket().map_err(context("opening the notification socket"))?;
        let mut requests = Requests::open().map_err(context("opening the request socket"))?;
        let link = requests
            .ask(link_request(ifindex), 0)
            .map_err(context("reading the interface"))?;
        if link.errno == libc::ENODEV {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("xdpstack: routing: interface index {ifindex} not found"),
            ));
        }
        let info = link.events.iter().find_map(|e| match e {
            Event::Link(l) if l.ifindex == ifindex => Some(*l),
            _ => None,
        });
        let Some(info) = info else {
            return Err(io::Error::other(format!(
                "xdpstack: routing: interface index {ifindex}: {}",
                io::Error::from_raw_os_error(link.errno.max(libc::EIO))
            )));
        };
        let Some(mac) = info.mac else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("xdpstack: routing: interface index {ifindex} has no Ethernet address"),
            ));
        };
        let mut core = Resolver::new(info, mac);
        load_tables(&mut requests, &mut core).map_err(context("reading the tables"))?;
        let shared = Arc::new(Shared {
            cache: RwLock::new(HashMap::new()),
            wake: eventfd().map_err(context("creating the wakeup eventfd"))?,
            stop: AtomicBool::new(false),
            lookups: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            negative: AtomicU64::new(0),
            held: AtomicU64::new(0),
            hold_full: AtomicU64::new(0),
            holding: AtomicUsize::new(0),
            core: Mutex::new(CoreStats::default()),
        });
        let (tx, rx) = mpsc::channel();
        let worker = Worker {
            shared: Arc::clone(&shared),
            commands: rx,
            events,
            requests,
            core,
            ifindex,
            buf: Vec::with_capacity(RECV_BUF),
        };
        let thread = thread::Builder::new()
            .name("xdpstack-route".into())
            .spawn(move || worker.run())
            .map_err(context("spawning the router thread"))?;
        Ok(Arc::new(Router {
            shared,
            commands: tx,
            thread: Mutex::new(Some(thread)),
            ifindex,
        }))
    }

    /// The send path's question, from any thread: a hit costs a read lock and a
    /// hash lookup, no syscall, no allocation. A miss returns `Pending` and asks
    /// the router's thread to resolve, once per destination however many
    /// callers miss.
    pub fn lookup(&self, dst: IpAddr) -> Lookup {
        let s = &self.shared;
        s.lookups.fetch_add(1, Ordering::Relaxed);
        {
            let cache = s.cache.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(slot) = cache.get(&dst) {
                return match slot.answer {
                    Answer::Ready(hop) => {
                        // Load before store: the flag's cache line stays shared
                        // among the senders while it is set.
                        if !slot.used.load(Ordering::Relaxed) {
                            slot.used.store(true, Ordering::Relaxed);
                        }
                        Lookup::Ready(hop)
                    }
                    Answer::Pending => {
                        s.misses.fetch_add(1, Ordering::Relaxed);
                        Lookup::Pending
                    }
                    Answer::Failed(reason) => {
                        s.negative.fetch_add(1, Ordering::Relaxed);
                        Lookup::Failed(reason)
                    }
                };
            }
        }
        s.misses.fetch_add(1, Ordering::Relaxed);
        self.miss(dst);
        Lookup::Pending
    }

    /// Publish `dst` as pending and ask the thread, unless someone did already.
    /// True when the destination is (now) pending; false when it got an
    /// answer meanwhile.
    fn miss(&self, dst: IpAddr) -> bool {
        let mut cache = self
            .shared
            .cache
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        match cache.entry(dst) {
            Entry::Occupied(e) => matches!(e.get().answer, Answer::Pending),
            Entry::Vacant(e) => {
                e.insert(Slot::new(Answer::Pending));
                drop(cache);
                // The receiver lives as long as the thread, which outlives
                // every caller (Drop joins it).
                let _ = self.commands.send(Command::Resolve(dst));
                self.shared.wake();
                true
            }
        }
    }

    /// Run `then` once, when `dst` resolves (Ok) or fails (Err), on the
    /// router's thread; at once on the caller's thread with
    /// `Err(Unresolved)` when the hold is full ([`HOLD_PER_DESTINATION`],
    /// [`HOLD_TOTAL`]), and at once with the answer if it is already known.
    /// Never later than [`RESOLVE_TIMEOUT`] (+ a poll tick) after the call.
    pub fn hold(&self, dst: IpAddr, then: Then) {
        let s = &self.shared;
        // Twice at most: an unknown destination is made pending, then held.
        for _ in 0..2 {
            let answer = {
                let cache = s.cache.read().unwrap_or_else(PoisonError::into_inner);
                match cache.get(&dst) {
                    None => None,
                    Some(slot) => match slot.answer {
                        Answer::Ready(hop) => Some(Ok(hop)),
                        Answer::Failed(r) => Some(Err(r)),
                        Answer::Pending => {
                            if !self.reserve(slot) {
                                s.hold_full.fetch_add(1, Ordering::Relaxed);
                                Some(Err(Unreachable::Unresolved))
                            } else {
                                s.held.fetch_add(1, Ordering::Relaxed);
                                let _ = self.commands.send(Command::Hold(dst, then));
                                s.wake();
                                return;
                            }
                        }
                    },
                }
            };
            match answer {
                Some(result) => return then(result),
                // Unknown: make it pending, then hold on the pending slot.
                None => {
                    self.miss(dst);
                }
            }
        }
        // Made pending and answered and forgotten between two looks: ask again
        // later.
        s.hold_full.fetch_add(1, Ordering::Relaxed);
        then(Err(Unreachable::Unresolved));
    }

    /// Count a hold against both limits; false (and nothing counted) when
    /// either is reached.
    fn reserve(&self, slot: &Slot) -> bool {
        let s = &self.shared;
        if slot.held.fetch_add(1, Ordering::Relaxed) >= HOLD_PER_DESTINATION {
            slot.held.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        if s.holding.fetch_add(1, Ordering::Relaxed) >= HOLD_TOTAL {
            s.holding.fetch_sub(1, Ordering::Relaxed);
            slot.held.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// The counters.
    pub fn stats(&self) -> RouterStats {
        let s = &self.shared;
        let core = *s.core.lock().unwrap_or_else(PoisonError::into_inner);
        let lookups = s.lookups.load(Ordering::Relaxed);
        let misses = s.misses.load(Ordering::Relaxed);
        let negative_hits = s.negative.load(Ordering::Relaxed);
        RouterStats {
            lookups,
            hits: lookups.saturating_sub(misses + negative_hits),
            misses,
            negative_hits,
            route_queries: core.route_queries,
            neighbour_requests: core.neighbour_requests,
            stale_refreshes: core.stale_refreshes,
            changes_seen: core.changes_seen,
            overruns: core.overruns,
            malformed: core.malformed,
            request_errors: core.request_errors,
            resolved: core.resolved,
            no_route: core.failed[Unreachable::NoRoute.index()],
            other_interface: core.failed[Unreachable::OtherInterface.index()],
            unresolved: core.failed[Unreachable::Unresolved.index()],
            timeouts: core.timeouts,
            held: s.held.load(Ordering::Relaxed),
            hold_full: s.hold_full.load(Ordering::Relaxed),
            holding: s.holding.load(Ordering::Relaxed) as u64,
            entries: core.entries,
        }
    }
}

impl Drop for Router {
    /// Stops and joins the thread; held callbacks get `Err(Unresolved)`.
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake();
        let handle = self
            .thread
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            // A held callback may drop the last `Arc<Router>` on the router's
            // own thread: it stops by itself after the callback.
            if handle.thread().id() != thread::current().id() {
                let _ = handle.join();
            }
        }
    }
}

/// Dump the link, our addresses and neighbours into `core`.
fn load_tables(requests: &mut Requests, core: &mut Resolver) -> io::Result<()> {
    let ifindex = core.ifindex;
    for (msg, flags) in [
        (link_request(ifindex), 0),
        (addr_dump_request(), NLM_F_DUMP),
        (neigh_dump_request(ifindex), NLM_F_DUMP),
    ] {
        let reply = requests.ask(msg, flags)?;
        for _ in 0..reply.malformed {
            core.malformed();
        }
        if reply.errno != 0 {
            return Err(io::Error::from_raw_os_error(reply.errno));
        }
        for e in &reply.events {
            core.load(e);
        }
    }
    Ok(())
}

/// The router's thread.
struct Worker {
    shared: Arc<Shared>,
    commands: mpsc::Receiver<Command>,
    events: Socket,
    requests: Requests,
    core: Resolver,
    ifindex: u32,
    buf: Vec<u8>,
}

impl Worker {
    fn run(mut self) {
        let mut next_tick = Instant::now() + TICK;
        while !self.shared.stop.load(Ordering::Acquire) {
            let now = Instant::now();
            let wake_at = self
                .core
                .next_deadline()
                .map_or(next_tick, |d| d.min(next_tick));
            let timeout = wake_at.saturating_duration_since(now);
            self.wait(timeout);
            if self.shared.stop.load(Ordering::Acquire) {
                break;
            }
            self.shared.drain_wake();
            let now = Instant::now();
            while let Ok(cmd) = self.commands.try_recv() {
                match cmd {
                    Command::Resolve(dst) => self.core.resolve(dst, now),
                    Command::Hold(dst, then) => self.core.hold(dst, then, now),
                }
            }
            self.read_events(now);
            let used = if now >= next_tick {
                next_tick = now + TICK;
                self.take_used()
            } else {
                Vec::new()
            };
            self.core.tick(now, &used);
            self.step();
        }
        self.core.shutdown();
        while let Ok(cmd) = self.commands.try_recv() {
            if let Command::Hold(_, then) = cmd {
                self.core.hold_failed(then);
            }
        }
        self.step();
    }

    /// poll(2) on the notification socket and the wakeup eventfd.
    fn wait(&self, timeout: Duration) {
        let mut fds = [
            libc::pollfd {
                fd: self.events.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.shared.wake.as_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // Round up: waking a millisecond early would spin until the deadline.
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        // SAFETY: two valid pollfds on descriptors we hold open; poll only
        // writes their `revents`.
        unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
    }

    /// Read every pending notification into the resolver.
    fn read_events(&mut self, now: Instant) {
        loop {
            self.buf.clear();
            match self.events.recv(&mut self.buf, libc::MSG_TRUNC) {
                Ok(n) if n > self.buf.len() => self.core.malformed(),
                Ok(_) => {
                    for d in decode(&self.buf) {
                        match d.event {
                            None => self.core.malformed(),
                            Some(e) => self.core.event(&e, now),
                        }
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => self.core.overrun(now),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// The ready destinations looked up since the last call (their marks cleared).
    fn take_used(&self) -> Vec<IpAddr> {
        let cache = self
            .shared
            .cache
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        cache
            .iter()
            .filter(|(_, slot)| slot.used.swap(false, Ordering::Relaxed))
            .map(|(dst, _)| *dst)
            .collect()
    }

    /// Carry out what the resolver asked until it asks nothing more: ask the
    /// kernel, publish, run callbacks (outside the lock: a callback may look up).
    fn step(&mut self) {
        loop {
            let out = self.core.take_output();
            if out.requests.is_empty() && out.publish.is_empty() && out.done.is_empty() {
                break;
            }
            if !out.publish.is_empty() {
                let mut cache = self
                    .shared
                    .cache
                    .write()
                    .unwrap_or_else(PoisonError::into_inner);
                for p in out.publish {
                    match p {
                        Publish::Set(dst, answer) => {
                            cache.insert(dst, Slot::new(answer));
                        }
                        Publish::Remove(dst) => {
                            cache.remove(&dst);
                        }
                        Publish::Clear => cache.clear(),
                    }
                }
            }
            let finished = out.done.len();
            for (then, result) in out.done {
                // A panicking callback loses its own datagram, not the router.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| then(result)));
            }
            self.shared.holding.fetch_sub(finished, Ordering::Relaxed);
            for request in out.requests {
                self.carry_out(request);
            }
        }
        *self
            .shared
            .core
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = self.core.stats();
    }

    fn carry_out(&mut self, request: Request) {
        let now = Instant::now();
        match request {
            Request::Route(dst) => match self.requests.ask(route_request(dst, self.ifindex), 0) {
                Ok(reply) => {
                    for _ in 0..reply.malformed {
                        self.core.malformed();
                    }
                    let route = reply.events.iter().find_map(|e| match e {
                        Event::Route(r) => Some(r),
                        _ => None,
                    });
                    match (route, reply.errno) {
                        (Some(r), 0) => self.core.route_answer(dst, Ok(r), now),
                        (_, 0) => {
                            self.core.malformed();
                            self.core.route_answer(dst, Err(libc::EIO), now);
                        }
                        (_, errno) => self.core.route_answer(dst, Err(errno), now),
                    }
                }
                Err(e) => {
                    self.core
                        .route_answer(dst, Err(e.raw_os_error().unwrap_or(libc::EIO)), now)
                }
            },
            Request::Neigh(ip) => {
                let flags = NLM_F_CREATE | NLM_F_REPLACE;
                match self
                    .requests
                    .ask(neigh_use_request(ip, self.ifindex), flags)
                {
                    Ok(reply) if reply.errno == 0 => {}
                    // The kernel refused (the resolution times out and is
                    // counted), or did not answer.
                    _ => self.core.request_error(),
                }
            }
            Request::Reload => {
                if load_tables(&mut self.requests, &mut self.core).is_err() {
                    self.core.request_error();
                }
            }
        }
    }
}

impl Resolver {
    /// A hold that arrived after the router stopped.
    fn hold_failed(&mut self, then: Then) {
        self.done.push((then, Err(Unreachable::Unresolved)));
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use netlink_packet_route::{
        address::AddressHeaderFlags, link::LinkHeader, neighbour::NeighbourHeader,
    };

    use super::*;

    const IF: u32 = 7;
    const OUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
    const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
    const MOVED_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x03];
    const OUR_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const GW_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
    const FAR_V4: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 2);
    const OUR_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
    const OUR_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
    const GW_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
    const FAR_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 2);

    fn far4() -> IpAddr {
        FAR_V4.into()
    }

    fn gw4() -> IpAddr {
        GW_V4.into()
    }

    /// Through bytes and back: what the router thread would read.
    fn wire(msg: RouteNetlinkMessage) -> Event {
        let bytes = serialize(msg, 0, 0);
        let mut decoded = decode(&bytes);
        assert_eq!(decoded.len(), 1, "{decoded:?}");
        decoded.remove(0).event.expect("parses")
    }

    fn route(
        kind: RouteType,
        oif: u32,
        gateway: Option<IpAddr>,
        prefsrc: Option<IpAddr>,
    ) -> RouteMessage {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.kind = kind;
        msg.header.destination_prefix_length = 32;
        msg.attributes
            .push(RouteAttribute::Destination(far4().into()));
        msg.attributes.push(RouteAttribute::Oif(oif));
        if let Some(gw) = gateway {
            msg.attributes.push(RouteAttribute::Gateway(gw.into()));
        }
        if let Some(src) = prefsrc {
            msg.attributes.push(RouteAttribute::PrefSource(src.into()));
        }
        msg
    }

    /// The kernel's answer for FAR_V4 via GW_V4 on our interface.
    fn answer_via(gw: IpAddr) -> RouteMessage {
        match wire(RouteNetlinkMessage::NewRoute(route(
            RouteType::Unicast,
            IF,
            Some(gw),
            Some(OUR_V4.into()),
        ))) {
            Event::Route(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn neigh_msg(
        ip: IpAddr,
        ifindex: u32,
        state: NeighbourState,
        mac: Option<[u8; 6]>,
    ) -> NeighbourMessage {
        let mut msg = NeighbourMessage::default();
        msg.header = NeighbourHeader {
            family: family_of(ip),
            ifindex,
            state,
            ..NeighbourHeader::default()
        };
        msg.attributes
            .push(NeighbourAttribute::Destination(ip.into()));
        if let Some(mac) = mac {
            msg.attributes
                .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        }
        msg
    }

    fn neigh(ip: IpAddr, state: NeighbourState, mac: Option<[u8; 6]>) -> Event {
        wire(RouteNetlinkMessage::NewNeighbour(neigh_msg(
            ip, IF, state, mac,
        )))
    }

    fn addr(ip: IpAddr, flags: AddressFlags) -> Event {
        let mut msg = AddressMessage::default();
        msg.header.family = family_of(ip);
        msg.header.index = IF;
        msg.header.prefix_len = if ip.is_ipv4() { 24 } else { 64 };
        msg.attributes.push(AddressAttribute::Address(ip));
        if ip.is_ipv4() {
            msg.attributes.push(AddressAttribute::Local(ip));
        }
        msg.attributes.push(AddressAttribute::Flags(flags));
        wire(RouteNetlinkMessage::NewAddress(msg))
    }

    fn link(mac: [u8; 6], mtu: u32) -> Event {
        let mut msg = LinkMessage::default();
        msg.header = LinkHeader {
            index: IF,
            ..LinkHeader::default()
        };
        msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
        msg.attributes.push(LinkAttribute::Mtu(mtu));
        wire(RouteNetlinkMessage::NewLink(msg))
    }

    /// A resolver for interface IF with its addresses loaded, as after a dump.
    fn resolver() -> Resolver {
        let mut r = Resolver::new(
            LinkInfo {
                ifindex: IF,
                mac: Some(OUR_MAC),
                mtu: Some(1500),
            },
            OUR_MAC,
        );
        r.load(&addr(OUR_V4.into(), AddressFlags::Permanent));
        r.load(&addr(OUR_LL.into(), AddressFlags::Permanent));
        r.load(&addr(OUR_V6.into(), AddressFlags::Permanent));
        r
    }

    fn requests(r: &mut Resolver) -> Vec<Request> {
        r.take_output().requests
    }

    type Answers = Arc<Mutex<Vec<Result<NextHop, Unreachable>>>>;

    fn recorder() -> (Answers, impl Fn() -> Then) {
        let answers: Answers = Arc::default();
        let a = Arc::clone(&answers);
        (answers, move || {
            let a = Arc::clone(&a);
            Box::new(move |r| a.lock().unwrap().push(r))
        })
    }

    /// Run the callbacks of `out`, as the router thread does.
    fn run(out: Output) -> Output {
        let Output {
            requests,
            publish,
            done,
        } = out;
        for (then, result) in done {
            then(result);
        }
        Output {
            requests,
            publish,
            done: Vec::new(),
        }
    }

    fn expected_hop(gateway: Option<IpAddr>) -> NextHop {
        NextHop {
            src_mac: OUR_MAC,
            dst_mac: GW_MAC,
            src_ip: OUR_V4.into(),
            gateway,
            mtu: 1500,
        }
    }

    // --- decoding --------------------------------------------------------

    #[test]
    fn a_route_answer_gives_interface_gateway_source_and_mtu() {
        let mut msg = route(RouteType::Unicast, IF, Some(gw4()), Some(OUR_V4.into()));
        msg.attributes
            .push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(1400)]));
        let Event::Route(back) = wire(RouteNetlinkMessage::NewRoute(msg)) else {
            panic!("not a route");
        };
        assert_eq!(
            route_info(&back),
            Ok(RouteInfo {
                oif: IF,
                gateway: Some(gw4()),
                prefsrc: Some(OUR_V4.into()),
                mtu: Some(1400),
            })
        );
        // A connected route has no gateway; an IPv4 route may have an IPv6
        // next hop (RTA_VIA).
        let mut via = route(RouteType::Unicast, IF, None, None);
        via.attributes
            .push(RouteAttribute::Via(RouteVia::Inet6(GW_V6)));
        let Event::Route(back) = wire(RouteNetlinkMessage::NewRoute(via)) else {
            panic!("not a route");
        };
        assert_eq!(route_info(&back).unwrap().gateway, Some(GW_V6.into()));
    }

    #[test]
    fn routes_that_lead_nowhere_are_no_route() {
        for kind in [
            RouteType::BlackHole,
            RouteType::Unreachable,
            RouteType::Prohibit,
            RouteType::Throw,
            RouteType::Local,
            RouteType::Broadcast,
            RouteType::Multicast,
            RouteType::Anycast,
        ] {
            let Event::Route(back) =
                wire(RouteNetlinkMessage::NewRoute(route(kind, IF, None, None)))
            else {
                panic!("not a route");
            };
            assert_eq!(route_info(&back), Err(Unreachable::NoRoute), "{kind:?}");
        }
        let mut no_oif = route(RouteType::Unicast, IF, None, None);
        no_oif
            .attributes
            .retain(|a| !matches!(a, RouteAttribute::Oif(_)));
        assert_eq!(route_info(&no_oif), Err(Unreachable::NoRoute));
        for errno in [
            libc::ENETUNREACH,
            libc::EHOSTUNREACH,
            libc::EACCES,
            libc::EINVAL,
        ] {
            assert_eq!(route_error(errno), Some(Unreachable::NoRoute), "{errno}");
        }
        assert_eq!(route_error(libc::ENOBUFS), None);
    }

    #[test]
    fn neighbour_notifications_are_decoded_and_foreign_ones_ignored() {
        assert_eq!(
            neigh(gw4(), NeighbourState::Reachable, Some(GW_MAC)),
            Event::Neigh(NeighInfo {
                ifindex: IF,
                ip: gw4(),
                state: NeighbourState::Reachable,
                mac: Some(GW_MAC),
            })
        );
        let gone = wire(RouteNetlinkMessage::DelNeighbour(neigh_msg(
            GW_V6.into(),
            IF,
            NeighbourState::Failed,
            None,
        )));
        assert_eq!(
            gone,
            Event::NeighGone(NeighInfo {
                ifindex: IF,
                ip: GW_V6.into(),
                state: NeighbourState::Failed,
                mac: None,
            })
        );
        let mut fdb = neigh_msg(gw4(), IF, NeighbourState::Permanent, Some(GW_MAC));
        fdb.header.family = AddressFamily::Bridge;
        fdb.attributes
            .retain(|a| !matches!(a, NeighbourAttribute::Destination(_)));
        assert_eq!(wire(RouteNetlinkMessage::NewNeighbour(fdb)), Event::Ignored);
        let mut proxy = neigh_msg(gw4(), IF, NeighbourState::None, None);
        proxy.header.flags = NeighbourFlags::Proxy;
        assert_eq!(
            wire(RouteNetlinkMessage::NewNeighbour(proxy)),
            Event::Ignored
        );
    }

    #[test]
    fn links_and_addresses_are_decoded() {
        assert_eq!(
            link(OUR_MAC, 9000),
            Event::Link(LinkInfo {
                ifindex: IF,
                mac: Some(OUR_MAC),
                mtu: Some(9000),
            })
        );
        assert_eq!(
            addr(OUR_V6.into(), AddressFlags::Tentative),
            Event::Addr(IfAddr {
                ifindex: IF,
                ip: OUR_V6.into(),
                usable: false,
            })
        );
        let mut header_flags = AddressMessage::default();
        header_flags.header.family = AddressFamily::Inet6;
        header_flags.header.index = IF;
        header_flags.header.flags = AddressHeaderFlags::Permanent;
        header_flags
            .attributes
            .push(AddressAttribute::Address(OUR_V6.into()));
        assert!(matches!(
            wire(RouteNetlinkMessage::NewAddress(header_flags)),
            Event::Addr(IfAddr { usable: true, .. })
        ));
    }

    #[test]
    fn several_messages_in_one_datagram_are_all_decoded() {
        let mut datagram = serialize(
            RouteNetlinkMessage::NewNeighbour(neigh_msg(
                gw4(),
                IF,
                NeighbourState::Stale,
                Some(GW_MAC),
            )),
            0,
            5,
        );
        datagram.extend(serialize(
            RouteNetlinkMessage::NewRoute(route(RouteType::Unicast, IF, None, None)),
            0,
            6,
        ));
        let decoded = decode(&datagram);
        assert_eq!(decoded.len(), 2);
        assert_eq!(decoded[0].seq, 5);
        assert!(matches!(decoded[0].event, Some(Event::Neigh(_))));
        assert_eq!(decoded[1].seq, 6);
        assert!(matches!(decoded[1].event, Some(Event::Route(_))));
    }

    #[test]
    fn malformed_datagrams_are_skipped_not_trusted() {
        let good = serialize(
            RouteNetlinkMessage::NewNeighbour(neigh_msg(
                gw4(),
                IF,
                NeighbourState::Reachable,
                Some(GW_MAC),
            )),
            0,
            0,
        );
        // A length beyond the datagram.
        let mut long = good.clone();
        long[0] = 0xff;
        assert_eq!(
            decode(&long),
            vec![Decoded {
                seq: 0,
                event: None
            }]
        );
        // A length shorter than a header.
        let mut short = good.clone();
        short[..4].copy_from_slice(&8u32.to_ne_bytes());
        assert_eq!(decode(&short)[0].event, None);
        // An attribute cut in half.
        let mut cut = good[..good.len() - 3].to_vec();
        let len = cut.len() as u32;
        cut[..4].copy_from_slice(&len.to_ne_bytes());
        assert_eq!(decode(&cut)[0].event, None);
        // A tail shorter than a header.
        let mut tail = good.clone();
        tail.extend([1, 2, 3]);
        let decoded = decode(&tail);
        assert_eq!(decoded.len(), 2);
        assert!(decoded[0].event.is_some());
        assert_eq!(decoded[1].event, None);
        // A kind we do not follow is no error.
        let mut other = good.clone();
        other[4..6].copy_from_slice(&104u16.to_ne_bytes());
        assert_eq!(decode(&other)[0].event, Some(Event::Ignored));
        assert!(decode(&[]).is_empty());
    }

    proptest::proptest! {
        /// No input panics the decoder: random bytes, and real messages with
        /// bytes changed.
        #[test]
        fn decoding_never_panics(
            noise in proptest::collection::vec(proptest::num::u8::ANY, 0..256),
            flips in proptest::collection::vec((0usize..200, proptest::num::u8::ANY), 1..8),
            which in 0usize..4,
        ) {
            let _ = decode(&noise);
            let mut gated = route(RouteType::Unicast, IF, Some(gw4()), Some(OUR_V4.into()));
            gated.attributes.push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(1400)]));
            let msg = match which {
                0 => RouteNetlinkMessage::NewRoute(gated),
                1 => RouteNetlinkMessage::NewNeighbour(neigh_msg(gw4(), IF, NeighbourState::Reachable, Some(GW_MAC))),
                2 => match link(OUR_MAC, 1500) {
                    Event::Link(_) => {
                        let mut l = LinkMessage::default();
                        l.header.index = IF;
                        l.attributes.push(LinkAttribute::Address(OUR_MAC.to_vec()));
                        l.attributes.push(LinkAttribute::Mtu(1500));
                        RouteNetlinkMessage::NewLink(l)
                    }
                    _ => unreachable!(),
                },
                _ => {
                    let mut a = AddressMessage::default();
                    a.header.family = AddressFamily::Inet6;
                    a.header.index = IF;
                    a.attributes.push(AddressAttribute::Address(OUR_V6.into()));
                    RouteNetlinkMessage::NewAddress(a)
                }
            };
            let mut bytes = serialize(msg, 0, 0);
            for (at, value) in flips {
                if let Some(b) = bytes.get_mut(at) {
                    *b = value;
                }
            }
            for d in decode(&bytes) {
                if let Some(Event::Route(r)) = &d.event {
                    let _ = route_info(r);
                }
            }
        }
    }

    #[test]
    fn the_requests_say_what_the_kernel_needs() {
        // NTF_USE, NUD_NONE (not PERMANENT: no GC exemption), our interface.
        let bytes = serialize(
            neigh_use_request(gw4(), IF),
            NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE,
            3,
        );
        let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes).unwrap();
        assert_eq!(
            msg.header.flags,
            NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE
        );
        assert_eq!(msg.header.sequence_number, 3);
        let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(n)) = msg.payload else {
            panic!("not RTM_NEWNEIGH");
        };
        assert_eq!(n.header.flags, NeighbourFlags::Use);
        assert_eq!(u16::from(n.header.state), 0);
        assert_eq!(n.header.ifindex, IF);
        assert_eq!(n.header.family, AddressFamily::Inet);
        assert_eq!(
            n.attributes,
            vec![NeighbourAttribute::Destination(gw4().into())]
        );
        // Route questions: a host prefix; link-local ones on our interface.
        let RouteNetlinkMessage::GetRoute(q) = route_request(far4(), IF) else {
            panic!("not RTM_GETROUTE");
        };
        assert_eq!(q.header.destination_prefix_length, 32);
        assert_eq!(
            q.attributes,
            vec![RouteAttribute::Destination(far4().into())]
        );
        let RouteNetlinkMessage::GetRoute(q) = route_request(OUR_LL.into(), IF) else {
            panic!("not RTM_GETROUTE");
        };
        assert_eq!(q.header.destination_prefix_length, 128);
        assert!(q.attributes.contains(&RouteAttribute::Oif(IF)));
    }

    // --- the state machine -------------------------------------------------

    #[test]
    fn a_known_neighbour_makes_a_miss_ready_after_one_question() {
        let t0 = Instant::now();
        let mut r = resolver();
        r.load(&neigh(gw4(), NeighbourState::Reachable, Some(GW_MAC)));
        r.resolve(far4(), t0);
        r.resolve(far4(), t0);
        let out = r.take_output();
        assert_eq!(out.requests, vec![Request::Route(far4())], "asked once");
        assert_eq!(out.publish, vec![Publish::Set(far4(), Answer::Pending)]);
        r.route_answer(far4(), Ok(&answer_via(gw4())), t0);
        let out = r.take_output();
        assert!(
            out.requests.is_empty(),
            "no NTF_USE for a REACHABLE neighbour"
        );
        assert_eq!(
            out.publish,
            vec![Publish::Set(
                far4(),
                Answer::Ready(expected_hop(Some(gw4())))
            )]
        );
        assert_eq!(r.stats().resolved, 1);
        assert_eq!(r.stats().route_queries, 1);
        assert_eq!(r.next_deadline(), None, "nothing to expire");
    }

    #[test]
    fn an_unknown_neighbour_is_resolved_by_the_kernel_on_request() {
        let t0 = Instant::now();
        let (answers, then) = recorder();
        let mut r = resolver();
        r.hold(far4(), then(), t0);
        assert_eq!(requests(&mut r), vec![Request::Route(far4())]);
        r.route_answer(far4(), Ok(&answer_via(gw4())), t0);
        let out = r.take_output();
        assert_eq!(out.requests, vec![Request::Neigh(gw4())]);
        assert!(out.publish.is_empty(), "still pending");
        // A second destination behind the same gateway: no second NTF_USE.
        let other: IpAddr = Ipv4Addr::new(198, 19, 0, 9).into();
        r.resolve(other, t0);
        r.take_output();
        r.route_answer(other, Ok(&answer_via(gw4())), t0);
        assert!(requests(&mut r).is_empty());
        assert_eq!(r.stats().neighbour_requests, 1);
        // The kernel's notification: both are ready, the hold runs.
        r.event(
            &neigh(gw4(), NeighbourState::Reachable, Some(GW_MAC)),
            t0 + Duration::from_millis(5),
        );
        let out = run(r.take_output());
        assert_eq!(out.publish.len(), 2);
        assert!(out.publish.contains(&Publish::Set(
            far4(),
            Answer::Ready(expected_hop(Some(gw4())))
        )));
        assert_eq!(
            *answers.lock().unwrap(),
            vec![Ok(expected_hop(Some(gw4())))]
        );
        assert_eq!(r.holding(), 0);
    }

    #[test]
    fn incomplete_is_waited_for_and_failed_fails_the_holds() {
        let t0 = Instant::now();
        let (answers, then) = recorder();
        let mut r = resolver();
        r.hold(far4(), then(), t0);
        r.hold(far4(), then(), t0);
        r.take_output();
        r.route_answer(far4(), Ok(&answer_via(gw4())), t0);
        r.take_output();
        // INCOMPLETE: the kernel is probing; nothing changes.
        r.event(&neigh(gw4(), NeighbourState::Incomplete, None), t0);
        let out = r.take_output();
        assert!(out.publish.is_empty() && out.requests.is_empty() && out.done.is_empty());
        // FAILED: the holds fail, the failure is published and remembered.
        let t1 = t0 + Duration::from_secs(2);
        r.event(&neigh(gw4(), NeighbourState::Failed, None), t1);
        let out = run(r.take_output());
        assert_eq!(
            out.publish,
            vec![Publish::Set(
                far4(),
                Answer::Failed(Unreachable::Unresolved)
            )]
        );
        assert_eq!(
            *answers.lock().unwrap(),
            vec![Err(Unreachable::Unresolved), Err(Unreachable::Unresolved)]
        );
        assert_eq!(r.stats().failed[Unreachable::Unresolved.index()], 1);
        // Remembered for NEGATIVE_TTL, then forgotten: the next miss asks again.
        assert_eq!(r.next_deadline(), Some(t1 + NEGATIVE_TTL));
        r.tick(t1 + NEGATIVE_TTL - Duration::from_millis(1), &[]);
        assert!(r.take_output().publish.is_empty());
        r.resolve(far4(), t1);
        assert!(requests(&mut r).is_empty(), "still remembered");
        r.tick(t1 + NEGATIVE_TTL, &[]);
        assert_eq!(r.take_output().publish, vec![Publish::Remove(far4())]);
        r.resolve(far4(), t1 + NEGATIVE_TTL);
        assert_eq!(requests(&mut r), vec![Request::Route(far4())]);
        // Asked again, the FAILED neighbour is re-probed (NTF_USE turns
        // FAILED into INCOMPLETE).
        r.route_answer(far4(), Ok(&answer_via(gw4())), t1 + NEGATIVE_TTL);
        assert_eq!(requests(&mut r), vec![Request::Neigh(gw4())]);
    }

    #[test]
    fn no_answer_within_the_timeout_fails() {
        let t0 = Instant::now();
        let (answers, then) = recorder();
        let mut r = resolver();
        r.resolve(far4(), t0);
        r.take_output();
        r.route_answer(far4(), Ok(&answer_via(gw4())), t0);
        r.take_output();
        // A hold that comes a second later is bound by the resolution's end.
        r.hold(far4(), then(), t0 + Duration::from_secs(1));
        assert_eq!(r.next_deadline(), Some(t0 + RESOLVE_TIMEOUT));
        r.tick(t0 + RESOLVE_TIMEOUT - Duration::from_millis(1), &[]);
        assert!(r.take_output().publish.is_empty());
        r.tick(t0 + RESOLVE_TIMEOUT, &[]);
        let out = run(r.take_output());
        assert_eq!(
            out.publish,
            vec![Publish::Set(
                far4(),
                Answer::Failed(Unreachable::Unresolved)
            )]
        );
        assert_eq!(*answers.lock().unwrap(), vec![Err(Unreachable::Unresolved)]);
        assert_eq!(r.stats().timeouts, 1);
    }

    #[test]
    fn route_errors_and_other_interfaces_fail_with_their_cause() {
        let t0 = Instant::now();
        let mut r = resolver();
        r.resolve(far4(), t0);
        r.route_answer(far4(), Err(libc::ENETUNREACH), t0);
        let out = r.take_output();
        assert_eq!(
            out.publish.last(),
            Some(&Publish::Set(far4(), Answer::Failed(Unreachable::NoRoute)))
        );
        let elsewhere: IpAddr = Ipv4Addr::new(198, 19, 7, 7).into();
        r.resolve(elsewhere, t0);
        let mut msg = answer_via(gw4());
        for a in &mut msg.attributes {
            if let RouteAttribute::Oif(i) = a {
                *i = IF + 1;
            }
        }
        r.route_answer(elsewhere, Ok(&msg), t0);
        assert_eq!(
            r.take_output().publish.last(),
            Some(&Publish::Set(
                elsewhere,
                Answer::Failed(Unreachable::OtherInterface)
            ))
        );
        // Multicast, broadcast and unspecified never reach the kernel.
        for dst in [
            IpAddr::from(Ipv4Addr::new(224, 0, 0, 1)),
            Ipv4Addr::BROADCAST.into(),
            Ipv6Addr::UNSPECIFIED.into(),
            "ff02::1".parse().unwrap(),
        ] {
            r.resolve(dst, t0);
            let out = r.take_output();
            assert!(out.requests.is_empty(), "{dst}");
            assert_eq!(
                out.publish,
                vec![Publish::Set(dst, Answer::Failed(Unreachable::NoRoute))]
            );
        }
        // A request that failed for its own reasons is Unresolved, counted.
        let odd: IpAddr = Ipv4Addr::new(198, 19, 8, 8).into();
        r.resolve(odd, t0);
        r.route_answer(odd, Err(libc::ETIMEDOUT), t0);
        assert_eq!(
            r.take_output().publish.last(),
            Some(&Publish::Set(odd, Answer::Failed(Unreachable::Unresolved)))
        );
        assert_eq!(r.stats().request_errors, 1);
    }

    #[test]
    fn a_route_change_is_followed_without_going_pending() {
        let t0 = Instant::now();
        let new_gw: IpAddr = Ipv4Addr::new(198, 18, 0, 3).into();
        let mut r = resolver();
        r.load(&neigh(gw4(), NeighbourState::Reachable, Some(GW_MAC)));
        r.load(&neigh(new_gw, NeighbourState::Reachable, Some(MOVED_MAC)));
        r.resolve(far4(), t0);
        r.route_answer(far4(), Ok(&answer_via(gw4())), t0);
        // A failure of the same family, and a v6 destination.
        let nowhere: IpAddr = Ipv4Addr::new(198, 19, 99, 1).into();
        r.resolve(nowhere, t0);
        r.route_answer(nowhere, Err(libc::ENETUNREACH), t0);
        r.resolve(FAR_V6.into(), t0);
        r.take_output();
        let change = wire(RouteNetlinkMessage::NewRoute(route(
            RouteType::Unicast,
            IF,
            Some(new_gw),
            None,
        )));
        r.event(&change, t0);
        r.event(&change, t0);
        let out = r.take_output();
        assert_eq!(
            out.requests,
            vec![Request::Route(far4())],
            "asked again, once; v6 untouched"
        );
        assert_eq!(
            out.publish,
            vec![Publish::Remove(nowhere)],
            "no Pending for the ready one"
        );
        r.route_answer(far4(), Ok(&answer_via(new_gw)), t0);
        let want = NextHop {
            dst_mac: MOVED_MAC,
            ..expected_hop(Some(new_gw))
        };
        assert_eq!(
            r.take_output().publish,
            vec![Publish::Set(far4(), Answer::Ready(want))]
        );
        assert_eq!(r.stats().resolved, 1, "a change is no new resolution");
        // An unchanged answer publishes nothing.
        r.event(&change, t0);
        r.take_output();
        r.route_answer(far4(), Ok(&answer_via(new_gw)), t0);
        assert!(r.take_output().publish.is_empty());
        // An address change counts as a route change of its family.
        r.event(
            &addr("fd00::5".parse().unwrap(), AddressFlags::Permanent),
            t0,
        );
        let out = r.take_output();
        assert!(out.requests.contains(&Request::Route(FAR_V6.into())));
        assert!(!out.requests.contains(&Request::Route(far4())));
        assert!(r.stats().changes_seen >= 4);
    }

    #[test]
    fn a_new_mac_or_a_lost_neighbour_updates_every_destination_behind_it() {
        let t0 = Instant::now();
        let mut r = resolver();
        r.load(&neigh(gw4(), NeighbourState::Reachable, Some(GW_MAC)));
        r.resolve(far4(), t0);
        r.route_answer(far4(), Ok(&answer_via(gw4())), t0);
        r.take_output();
        r.event(
            &neigh(gw4(), NeighbourState::Reachable, Some(MOVED_MAC)),
            t0,
        );
        let moved = NextHop {
            dst_mac: MOVED_MAC,
            ..expected_hop(Some(gw4()))
        };
        assert_eq!(
            r.take_output().publish,
            vec![Publish::Set(far4(), Answer::Ready(moved))]
        );
        // STALE keeps the address (the kernel sends on it too).
        r.event(&neigh(gw4(), NeighbourState::Stale, Some(MOVED_MAC)), t0);
        assert!(r.take_output().publish.is_empty());
        // A neighbour on another interface is not ours.
        let mut foreign = neigh_msg(gw4(), IF + 1, NeighbourState::Failed, None);
        foreign.header.ifindex = IF + 1;
        r.event(&wire(RouteNetlinkMessage::NewNeighbour(foreign)), t0);
        assert!(r.take_output().publish.is_empty());
        // Deleted: pending, and the kernel is asked to make it again.
        let gone = wire(RouteNetlinkMessage::DelNeighbour(neigh_msg(
            gw4(),
            IF,
            NeighbourState::Stale,
            None,
        )));
        r.event(&gone, t0);
        let out = r.take_output();
        assert_eq!(out.publish, vec![Publish::Set(far4(), Answer::Pending)]);
        assert_eq!(out.requests, vec![Request::Neigh(gw4())]);
        r.event(&neigh(gw4(), NeighbourState::Reachable, Some(GW_MAC)), t0);
        assert_eq!(
            r.take_output().publish,
            vec![Publish::Set(
                far4(),
                Answer::Ready(expected_hop(Some(gw4())))
            )]
        );
    }

    #[test]
    fn a_stale_neighbour_in_use_is_refreshed_every_five_seconds() {
        let t0 = Instant::now();
        let mut r = resolver();
        r.load(&neigh(gw4(), NeighbourState::Stale, Some(GW_MAC)));
        r.resolve(far4(), t0);
        r.take_output();
        r.route_answer(far4(), Ok(&answer_via(gw4())), t0);
        assert!(requests(&mut r).is_empty(), "STALE is usable at once");
        // Not used: nothing.
        r.tick(t0, &[]);
        assert!(requests(&mut r).is_empty());
        r.tick(t0, &[far4()]);
        assert_eq!(requests(&mut r), vec![Request::Neigh(gw4())]);
        r.tick(t0 + STALE_REFRESH - Duration::from_millis(1), &[far4()]);
        assert!(requests(&mut r).is_empty(), "at most every STALE_REFRESH");
        r.tick(t0 + STALE_REFRESH, &[far4()]);
        assert_eq!(requests(&mut r), vec![Request::Neigh(gw4())]);
        assert_eq!(r.stats().stale_refreshes, 2);
        // REACHABLE and PERMANENT ones are never touched (NTF_USE would clear
        // NUD_PERMANENT).
        for state in [NeighbourState::Reachable, NeighbourState::Permanent] {
            r.event(&neigh(gw4(), state, Some(GW_MAC)), t0);
            r.take_output();
            r.tick(t0 + 10 * STALE_REFRESH, &[far4()]);
            assert!(requests(&mut r).is_empty(), "{state:?}");
        }
    }

    #[test]
    fn an_overrun_drops_the_cache_and_restarts_only_what_is_held() {
        let t0 = Instant::now();
        let (answers, then) = recorder();
        let mut r = resolver();
        r.load(&neigh(gw4(), NeighbourState::Reachable, Some(GW_MAC)));
        r.resolve(far4(), t0);
        r.route_answer(far4(), Ok(&answer_via(gw4())), t0);
        let waiting: IpAddr = Ipv4Addr::new(198, 19, 50, 1).into();
        r.hold(waiting, then(), t0);
        r.take_output();
        r.overrun(t0);
        let out = r.take_output();
        assert_eq!(
            out.publish,
            vec![Publish::Clear, Publish::Set(waiting, Answer::Pending)]
        );
        assert_eq!(out.requests, vec![Request::Reload, Request::Route(waiting)]);
        assert_eq!(r.stats().entries, 1);
        assert_eq!(r.stats().overruns, 1);
        // The neighbour table is forgotten too: the reload brings it back.
        r.load(&neigh(gw4(), NeighbourState::Reachable, Some(GW_MAC)));
        let mut msg = answer_via(gw4());
        msg.attributes
            .retain(|a| !matches!(a, RouteAttribute::Destination(_)));
        r.route_answer(waiting, Ok(&msg), t0);
        run(r.take_output());
        assert_eq!(
            *answers.lock().unwrap(),
            vec![Ok(expected_hop(Some(gw4())))]
        );
    }

    #[test]
    fn a_link_change_refreshes_source_mac_and_mtu() {
        let t0 = Instant::now();
        let mut r = resolver();
        r.load(&neigh(gw4(), NeighbourState::Reachable, Some(GW_MAC)));
        r.resolve(far4(), t0);
        r.route_answer(far4(), Ok(&answer_via(gw4())), t0);
        // A route MTU wins over the link's.
        let pinned: IpAddr = Ipv4Addr::new(198, 19, 1, 1).into();
        r.resolve(pinned, t0);
        let mut msg = answer_via(gw4());
        msg.attributes
            .push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(1280)]));
        r.route_answer(pinned, Ok(&msg), t0);
        r.take_output();
        r.event(&link(MOVED_MAC, 9000), t0);
        let out = r.take_output();
        let want = NextHop {
            src_mac: MOVED_MAC,
            mtu: 9000,
            ..expected_hop(Some(gw4()))
        };
        assert!(
            out.publish
                .contains(&Publish::Set(far4(), Answer::Ready(want)))
        );
        let want_pinned = NextHop {
            src_mac: MOVED_MAC,
            mtu: 1280,
            ..expected_hop(Some(gw4()))
        };
        assert!(
            out.publish
                .contains(&Publish::Set(pinned, Answer::Ready(want_pinned)))
        );
        r.event(&link(MOVED_MAC, 9000), t0);
        assert!(
            r.take_output().publish.is_empty(),
            "no change, nothing published"
        );
    }

    #[test]
    fn without_a_preferred_source_the_interface_address_is_chosen() {
        let t0 = Instant::now();
        let mut r = resolver();
        let gw_ll: IpAddr = "fe80::2".parse().unwrap();
        r.load(&neigh(gw_ll, NeighbourState::Reachable, Some(GW_MAC)));
        r.load(&neigh(
            GW_V6.into(),
            NeighbourState::Reachable,
            Some(GW_MAC),
        ));
        let v6_route = |gateway: Option<IpAddr>| {
            let mut msg = RouteMessage::default();
            msg.header.address_family = AddressFamily::Inet6;
            msg.header.kind = RouteType::Unicast;
            msg.attributes.push(RouteAttribute::Oif(IF));
            if let Some(gw) = gateway {
                msg.attributes.push(RouteAttribute::Gateway(gw.into()));
            }
            match wire(RouteNetlinkMessage::NewRoute(msg)) {
                Event::Route(r) => r,
                other => panic!("{other:?}"),
            }
        };
        // Global before link-local (loaded first) for a global destination,
        // even through a link-local gateway.
        r.resolve(FAR_V6.into(), t0);
        r.route_answer(FAR_V6.into(), Ok(&v6_route(Some(gw_ll))), t0);
        // A link-local destination gets the link-local source.
        r.resolve(gw_ll, t0);
        r.route_answer(gw_ll, Ok(&v6_route(None)), t0);
        // IPv4 without PREFSRC: the interface's IPv4 address.
        r.resolve(gw4(), t0);
        r.load(&neigh(gw4(), NeighbourState::Noarp, Some(GW_MAC)));
        let Event::Route(v4) = wire(RouteNetlinkMessage::NewRoute(route(
            RouteType::Unicast,
            IF,
            None,
            None,
        ))) else {
            panic!()
        };
        r.route_answer(gw4(), Ok(&v4), t0);
        let out = r.take_output();
        let src = |dst: IpAddr| {
            out.publish.iter().find_map(|p| match p {
                Publish::Set(d, Answer::Ready(h)) if *d == dst => Some(h.src_ip),
                _ => None,
            })
        };
        assert_eq!(src(FAR_V6.into()), Some(OUR_V6.into()));
        assert_eq!(src(gw_ll), Some(OUR_LL.into()));
        assert_eq!(src(gw4()), Some(OUR_V4.into()));
        // No usable address of the family: no way to send.
        let mut bare = Resolver::new(
            LinkInfo {
                ifindex: IF,
                mac: Some(OUR_MAC),
                mtu: Some(1500),
            },
            OUR_MAC,
        );
        bare.load(&addr(OUR_V6.into(), AddressFlags::Tentative));
        bare.load(&neigh(
            GW_V6.into(),
            NeighbourState::Reachable,
            Some(GW_MAC),
        ));
        bare.resolve(FAR_V6.into(), t0);
        bare.route_answer(FAR_V6.into(), Ok(&v6_route(Some(GW_V6.into()))), t0);
        assert_eq!(
            bare.take_output().publish.last(),
            Some(&Publish::Set(
                FAR_V6.into(),
                Answer::Failed(Unreachable::NoRoute)
            ))
        );
    }

    #[test]
    fn holds_on_known_answers_run_at_once_and_shutdown_fails_the_rest() {
        let t0 = Instant::now();
        let (answers, then) = recorder();
        let mut r = resolver();
        r.load(&neigh(gw4(), NeighbourState::Permanent, Some(GW_MAC)));
        r.resolve(far4(), t0);
        r.route_answer(far4(), Ok(&answer_via(gw4())), t0);
        r.take_output();
        r.hold(far4(), then(), t0);
        let waiting: IpAddr = Ipv4Addr::new(198, 19, 50, 1).into();
        r.hold(waiting, then(), t0);
        run(r.take_output());
        assert_eq!(
            *answers.lock().unwrap(),
            vec![Ok(expected_hop(Some(gw4())))]
        );
        assert_eq!(r.holding(), 1);
        r.shutdown();
        run(r.take_output());
        assert_eq!(
            answers.lock().unwrap().last(),
            Some(&Err(Unreachable::Unresolved))
        );
        assert_eq!(r.holding(), 0);
    }

    #[test]
    fn names_are_the_counter_names() {
        let names: Vec<_> = Unreachable::ALL.iter().map(|u| u.name()).collect();
        assert_eq!(names, ["no_route", "other_interface", "unresolved"]);
        for (i, u) in Unreachable::ALL.iter().enumerate() {
            assert_eq!(u.index(), i);
        }
    }

    // --- the published cache, without a thread --------------------------

    /// A router whose thread is the test: the commands come out of the
    /// returned receiver.
    fn detached() -> (Router, mpsc::Receiver<Command>) {
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            cache: RwLock::new(HashMap::new()),
            wake: eventfd().unwrap(),
            stop: AtomicBool::new(false),
            lookups: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            negative: AtomicU64::new(0),
            held: AtomicU64::new(0),
            hold_full: AtomicU64::new(0),
            holding: AtomicUsize::new(0),
            core: Mutex::new(CoreStats::default()),
        });
        let router = Router {
            shared,
            commands: tx,
            thread: Mutex::new(None),
            ifindex: IF,
        };
        (router, rx)
    }

    #[test]
    fn misses_ask_once_and_hits_ask_nothing() {
        let (router, rx) = detached();
        for _ in 0..10 {
            assert_eq!(router.lookup(far4()), Lookup::Pending);
        }
        let asked: Vec<_> = rx.try_iter().collect();
        assert_eq!(asked.len(), 1);
        assert!(matches!(asked[0], Command::Resolve(d) if d == far4()));
        let hop = expected_hop(Some(gw4()));
        router
            .shared
            .cache
            .write()
            .unwrap()
            .insert(far4(), Slot::new(Answer::Ready(hop)));
        assert_eq!(router.lookup(far4()), Lookup::Ready(hop));
        assert!(rx.try_iter().next().is_none());
        let stats = router.stats();
        assert_eq!((stats.lookups, stats.hits, stats.misses), (11, 1, 10));
        let (answers, then) = recorder();
        router.hold(far4(), then());
        assert_eq!(*answers.lock().unwrap(), vec![Ok(hop)], "known: at once");
        assert!(rx.try_iter().next().is_none());
    }

    #[test]
    fn holds_beyond_the_limits_fail_at_once() {
        let (router, rx) = detached();
        let (answers, then) = recorder();
        for _ in 0..HOLD_PER_DESTINATION + 3 {
            router.hold(far4(), then());
        }
        let sent = rx
            .try_iter()
            .filter(|c| matches!(c, Command::Hold(..)))
            .count();
        assert_eq!(sent, HOLD_PER_DESTINATION);
        assert_eq!(
            *answers.lock().unwrap(),
            vec![Err(Unreachable::Unresolved); 3]
        );
        let stats = router.stats();
        assert_eq!((stats.held, stats.hold_full, stats.holding), (64, 3, 64));
        // The total: spread over many destinations.
        let mut sent = 0;
        for i in 0..(HOLD_TOTAL / HOLD_PER_DESTINATION + 1) as u32 {
            let dst = IpAddr::from(Ipv4Addr::from(0xc613_0000 + i + 1));
            for _ in 0..HOLD_PER_DESTINATION {
                router.hold(dst, then());
            }
            sent += rx
                .try_iter()
                .filter(|c| matches!(c, Command::Hold(..)))
                .count();
        }
        assert_eq!(sent + HOLD_PER_DESTINATION, HOLD_TOTAL);
        assert_eq!(router.stats().holding, HOLD_TOTAL as u64);
    }
}
