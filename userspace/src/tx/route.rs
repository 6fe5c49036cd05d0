//! Where a datagram to any destination goes: the answer the send path needs
//! from the kernel's routing and neighbour tables, and the trait the resolver
//! that follows them implements (`sys::route::Router`; a fixed table in
//! tests).
//!
//! The send path asks [`Resolve::lookup`] for every datagram, so a hit must be
//! cheap: no syscall, no allocation. A miss is answered later, through
//! [`Resolve::hold`]: the datagram waits (bounded, like the kernel's own
//! `unres_qlen`) until the kernel has resolved the neighbour or given up.

use std::{fmt, net::IpAddr};

/// Where a datagram to a destination leaves: found in the kernel's tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextHop {
    /// Our interface's MAC (the frame's source).
    pub src_mac: [u8; 6],
    /// The neighbour's MAC: the gateway's, or the destination's on a
    /// connected route.
    pub dst_mac: [u8; 6],
    /// The source address: the route's preferred source, else the interface's
    /// first address of the family.
    pub src_ip: IpAddr,
    /// The gateway, if the route has one.
    pub gateway: Option<IpAddr>,
    /// The path MTU: the route's MTU metric, else the interface's MTU.
    pub mtu: u32,
}

/// Why a destination cannot be sent to. [`Unreachable::name`] is the counter's
/// name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Unreachable {
    /// No route (the kernel answers ENETUNREACH or EHOSTUNREACH, or the route
    /// is of type unreachable, blackhole or prohibit), or a destination that is
    /// local, broadcast or multicast.
    #[error("no route to the destination")]
    NoRoute,
    /// The route leaves by another interface than the stack's.
    #[error("the route to the destination leaves by another interface")]
    OtherInterface,
    /// Neighbour discovery (ARP, NDP) failed or did not answer in time, or too
    /// many datagrams were waiting for it.
    #[error("the next hop's link-layer address could not be resolved")]
    Unresolved,
}

impl Unreachable {
    /// Every cause, in counter order.
    pub const ALL: [Unreachable; 3] = [
        Unreachable::NoRoute,
        Unreachable::OtherInterface,
        Unreachable::Unresolved,
    ];

    /// The counter's name.
    pub fn name(self) -> &'static str {
        match self {
            Unreachable::NoRoute => "no_route",
            Unreachable::OtherInterface => "other_interface",
            Unreachable::Unresolved => "unresolved",
        }
    }
}

/// What a resolver knows of a destination now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Known: send.
    Ready(NextHop),
    /// Being resolved: hold the datagram ([`Resolve::hold`]).
    Pending,
    /// Known not to work (for a while: the resolver asks again later).
    Failed(Unreachable),
}

/// What to do with a held datagram once its destination is resolved or not.
pub type Then = Box<dyn FnOnce(Result<NextHop, Unreachable>) + Send>;

/// Answers "where does a datagram to this address go", from any thread.
pub trait Resolve: Send + Sync + fmt::Debug {
    /// The answer known now. A miss starts resolution and says
    /// [`Lookup::Pending`]. Must not block, make a syscall or allocate on a hit.
    fn lookup(&self, dst: IpAddr) -> Lookup;
    /// Run `then` exactly once, when `dst` is resolved or has failed, in
    /// bounded time (on the resolver's thread, or on the caller's when the
    /// answer is known or the hold is full).
    fn hold(&self, dst: IpAddr, then: Then);
}
