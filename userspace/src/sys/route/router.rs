//! The router's I/O: the netlink sockets, its thread, and the published cache
//! that [`Router::lookup`] reads.

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

use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE, NLM_F_REQUEST};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{Socket, protocols::NETLINK_ROUTE};

use super::{
    CoreStats, EVENTS_RCVBUF, HOLD_PER_DESTINATION, HOLD_TOTAL, Lookup, RECV_BUF, REQUEST_TIMEOUT,
    RouterStats, TICK, Then, Unreachable,
    resolver::{Answer, Publish, Request, Resolver},
    wire::{
        Event, addr_dump_request, decode, link_request, neigh_dump_request, neigh_use_request,
        route_request, serialize,
    },
};

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
    // Past net.core.rmem_max with CAP_NET_ADMIN (SO_RCVBUFFORCE), else as much
    // as allowed: a smaller buffer only overruns sooner, which is handled.
    let size = EVENTS_RCVBUF as libc::c_int;
    // SAFETY: a valid c_int of the size passed, for a socket we own;
    // setsockopt only reads it.
    let forced = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const size).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if forced != 0 {
        let _ = socket.set_rx_buf_sz(EVENTS_RCVBUF);
    }
    socket.set_non_blocking(true)?;
    Ok(socket)
}

pub(super) fn eventfd() -> io::Result<OwnedFd> {
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
pub(super) struct Slot {
    pub(super) answer: Answer,
    /// Looked up since the router last looked (a `STALE` neighbour in use
    /// gets refreshed).
    used: AtomicBool,
    /// Datagrams held for it (while pending).
    held: AtomicUsize,
}

impl Slot {
    pub(super) fn new(answer: Answer) -> Self {
        Self {
            answer,
            used: AtomicBool::new(false),
            held: AtomicUsize::new(0),
        }
    }
}

pub(super) enum Command {
    Resolve(IpAddr),
    Hold(IpAddr, Then),
}

/// A counter written from many threads: each adds to the stripe of its own
/// (threads spread over the stripes), the reader sums them.
#[derive(Default)]
pub(super) struct Hits([Stripe; HIT_STRIPES]);

/// Stripes of [`Hits`]: enough that a sending thread per core rarely shares.
const HIT_STRIPES: usize = 16;

/// One stripe, on a cache line (two: adjacent-line prefetch) of its own.
#[derive(Default)]
#[repr(align(128))]
struct Stripe(AtomicU64);

impl Hits {
    fn add(&self) {
        thread_local!(static STRIPE: usize = {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            NEXT.fetch_add(1, Ordering::Relaxed) % HIT_STRIPES
        });
        let i = STRIPE.with(|s| *s);
        self.0[i].0.fetch_add(1, Ordering::Relaxed);
    }

    fn sum(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

/// What the router's thread and its callers share.
pub(super) struct Shared {
    pub(super) cache: RwLock<HashMap<IpAddr, Slot>>,
    pub(super) wake: OwnedFd,
    pub(super) stop: AtomicBool,
    /// Lookups answered from the cache, on stripes: every send looks up its
    /// destination, from any thread, and one shared counter would bounce
    /// its cache line between the senders' cores.
    pub(super) hits: Hits,
    pub(super) misses: AtomicU64,
    pub(super) negative: AtomicU64,
    pub(super) held: AtomicU64,
    pub(super) hold_full: AtomicU64,
    /// Datagrams held right now, against [`HOLD_TOTAL`].
    pub(super) holding: AtomicUsize,
    pub(super) core: Mutex<CoreStats>,
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
    pub(super) shared: Arc<Shared>,
    pub(super) commands: mpsc::Sender<Command>,
    pub(super) thread: Mutex<Option<JoinHandle<()>>>,
    pub(super) ifindex: u32,
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
            hits: Hits::default(),
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
                        s.hits.add();
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
    /// Never later than [`RESOLVE_TIMEOUT`](super::RESOLVE_TIMEOUT) (+ a poll tick) after the call.
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
        let hits = s.hits.sum();
        let misses = s.misses.load(Ordering::Relaxed);
        let negative_hits = s.negative.load(Ordering::Relaxed);
        RouterStats {
            lookups: hits + misses + negative_hits,
            hits,
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
            no_route: core.failed[Unreachable::NoRoute as usize],
            other_interface: core.failed[Unreachable::OtherInterface as usize],
            unresolved: core.failed[Unreachable::Unresolved as usize],
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

/// The send path asks through the transmit layer's trait.
impl crate::tx::route::Resolve for Router {
    fn lookup(&self, dst: std::net::IpAddr) -> Lookup {
        Router::lookup(self, dst)
    }

    fn hold(&self, dst: std::net::IpAddr, then: Then) {
        Router::hold(self, dst, then);
    }
}
