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
//! keeps its old answer until the new one is in, instead of going pending; only
//! a new next hop whose MAC the kernel does not know yet makes it pending, as
//! the kernel's own output queues behind an unresolved neighbour), a
//! neighbour change updates every destination behind that neighbour, and a lost
//! notification (`ENOBUFS`: the socket overran) drops the whole cache, since
//! nothing says which entries went stale.
//!
//! All decisions are made by [`Resolver`], a sans-IO core like the poller's: it
//! takes decoded netlink messages and the time, and says which questions to ask
//! the kernel, what to publish and which held callbacks to run. Unit tests drive
//! it with messages built from netlink-packet-route's own types and made-up
//! times; the thread around it only moves bytes. In files: `wire.rs` decodes
//! and builds the messages, `resolver.rs` decides, `router.rs` owns the
//! sockets, the thread and the published cache.

use std::time::Duration;

mod resolver;
mod router;
#[cfg(test)]
mod tests;
mod wire;

pub use resolver::{Answer, Family, Output, Publish, Request, Resolver};
pub use router::Router;
pub use wire::{
    Decoded, Event, IfAddr, LinkInfo, NeighInfo, RouteInfo, addr_info, decode, link_info,
    neigh_info, neigh_use_request, route_error, route_info, route_request, serialize,
};

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
/// A ready destination nobody looked up for this long is forgotten (the next
/// lookup asks again): the cache stays the size of the working set, and a route
/// change re-asks only about destinations in use. The kernel's neighbour
/// table lets unused entries go after as long (`gc_stale_time`, 60 s).
pub const IDLE_TTL: Duration = Duration::from_secs(60);
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

// The answers are the transmit layer's types (the send path below this
// layer asks through its `Resolve` trait, which the Router implements).
pub use crate::tx::route::{Lookup, NextHop, Then, Unreachable};

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
