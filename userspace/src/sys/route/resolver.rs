//! The router's decisions, without I/O (sans-IO, like the poller): fed with
//! requests, decoded netlink messages and the time, it says which questions to
//! ask the kernel, what to publish and which held callbacks to run.

use std::{collections::HashMap, net::IpAddr, time::Instant};

use netlink_packet_route::{AddressFamily, neighbour::NeighbourState, route::RouteMessage};

use super::{
    CoreStats, IDLE_TTL, NEGATIVE_TTL, NextHop, REQUEST_SPACING, RESOLVE_TIMEOUT, STALE_REFRESH,
    Then, Unreachable,
    wire::{Event, IfAddr, LinkInfo, NeighInfo, RouteInfo, route_error, route_info},
};

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

/// What a destination is published as, for [`Router::lookup`](super::Router::lookup).
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
    /// overrun) and [`Resolver::load`] them, before the route questions
    /// that follow.
    Reload,
}

/// Is `state` one whose link-layer address may be used? The kernel sends on
/// all of these (`NUD_VALID`): `STALE`/`DELAY`/`PROBE` are being checked, not
/// known wrong.
pub(super) fn usable(state: NeighbourState) -> bool {
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
    /// When it was last looked up (as far as the router saw: once a tick).
    last_used: Instant,
}

/// The decisions of the router, without I/O: fed with requests, decoded
/// netlink messages and the time; its output is taken with
/// [`Resolver::take_output`].
pub struct Resolver {
    pub(super) ifindex: u32,
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

    pub(super) fn stats(&self) -> CoreStats {
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
                    last_used: now,
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
                last_used: now,
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
        self.stats.failed[reason as usize] += 1;
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
                self.routes_changed(family);
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
                self.routes_changed(Family::V4);
                self.routes_changed(Family::V6);
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
                self.routes_changed(Family::of(a.ip));
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

    fn routes_changed(&mut self, family: Family) {
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
            // A failed destination holds nothing (its holds were answered
            // when it failed); should one, it is not left waiting.
            if let Some(dest) = self.dests.remove(&dst) {
                for (then, _) in dest.holds {
                    self.done.push((then, Err(Unreachable::Unresolved)));
                }
            }
            self.publish.push(Publish::Remove(dst));
        }
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
    /// expired failures and idle destinations ([`IDLE_TTL`]). `used` are the
    /// ready destinations looked up since the last call that passed them: those
    /// behind a `STALE` neighbour get it refreshed.
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
            if let Some(dest) = self.dests.get_mut(dst) {
                dest.last_used = now;
            }
        }
        let idle: Vec<IpAddr> = self
            .dests
            .iter()
            .filter(|(_, d)| {
                matches!(d.state, State::Ready { .. }) && d.last_used + IDLE_TTL <= now
            })
            .map(|(dst, _)| *dst)
            .collect();
        for dst in idle {
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

impl Resolver {
    /// A hold that arrived after the router stopped.
    pub(super) fn hold_failed(&mut self, then: Then) {
        self.done.push((then, Err(Unreachable::Unresolved)));
    }
}
