//! The socket API: a UDP port bound on the stack, with batched receive from
//! every RX queue and `send_to` to any destination, from any thread, blocking
//! or async.
//!
//! A [`UdpSocket`] is the application's end of a port; its [`SocketHandler`]s
//! are the stack's end, one per RX queue, run by that queue's [`UdpConsumer`]
//! on the poller's thread. A datagram is not copied on its way in: the socket's
//! queue holds a [`Received`], which owns a view of the UMEM frame (the frame
//! stays out of the fill ring until the `Received` is dropped, as for any
//! consumer). A full queue drops the datagram and counts it (`socket_full`),
//! like a kernel socket's full receive buffer; the poller never waits.
//!
//! `send_to` asks the stack's resolver ([`Resolve`]: the kernel's routing and
//! neighbour tables, followed through netlink) where the datagram goes, writes
//! it into a spare frame of one queue's [`Transmitter`] (chosen by the
//! destination, so one peer's datagrams keep their order) and wakes that
//! queue's poller if it sleeps. A destination still being resolved holds the
//! datagram (a copy) until the kernel answers; one that cannot be reached is
//! refused and counted by cause. Backpressure is an error the caller sees
//! ([`TxError::is_backpressure`]), and [`UdpSocket::poll_writable`] (or the
//! async [`UdpSocket::send_to_async`]) waits for room.
//!
//! The async side is runtime-agnostic (std's `Waker`s): it runs under tokio,
//! and `app::quinn` (feature `quinn`) puts a `quinn::Endpoint` on it.
//!
//! [`UdpConsumer`]: super::UdpConsumer

use std::{
    future::poll_fn,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicU8, AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use crossbeam_queue::ArrayQueue;
use serde::Serialize;

use super::{Datagram, Handler};
use crate::{
    frame::FrameView,
    poller::LiveCounters,
    tx::{
        Transmitter, TxError,
        ready::{Readiness, thread_waker},
        route::{Lookup, NextHop, Resolve, Unreachable},
    },
    wire::Addressing,
};

/// Datagrams a socket's receive queue holds by default. Each holds a UMEM
/// frame: the stack bounds a socket's queue to half a queue's frames.
pub const SOCKET_QUEUE: usize = 1024;

/// A datagram the socket received: it owns a view of its frame (zero copy).
#[derive(Debug)]
pub struct Received {
    view: FrameView,
    src: SocketAddr,
    dst: SocketAddr,
    payload_offset: u32,
    payload_len: u32,
    /// A multi-buffer datagram's payload in one piece, for
    /// [`Received::payload`] (the frames hold it in several).
    joined: Option<Box<[u8]>>,
}

impl Received {
    /// The UDP payload, in one slice: the frame's own bytes, or for a
    /// datagram that arrived in several buffers a copy made on receipt
    /// ([`Received::payload_slices`] reads the frames themselves).
    pub fn payload(&self) -> &[u8] {
        if let Some(joined) = &self.joined {
            return joined;
        }
        let start = self.payload_offset as usize;
        &self.view.bytes()[start..start + self.payload_len as usize]
    }

    /// The UDP payload as slices of the frames it arrived in (zero copy).
    pub fn payload_slices(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.view
            .slices(self.payload_offset as usize, self.payload_len as usize)
    }

    /// The sender's address and port.
    pub fn src(&self) -> SocketAddr {
        self.src
    }

    /// The address and port it was sent to (ours).
    pub fn dst(&self) -> SocketAddr {
        self.dst
    }

    /// The RX queue it arrived on.
    pub fn queue(&self) -> u32 {
        self.view.queue()
    }

    /// Receive time, ns since the Unix epoch.
    pub fn timestamp_ns(&self) -> u64 {
        self.view.timestamp_ns()
    }

    /// The whole frame's view.
    pub fn view(&self) -> &FrameView {
        &self.view
    }
}

/// What one queue's [`SocketHandler`] counted (written by that queue's poller
/// thread only).
#[derive(Debug, Default)]
pub struct SocketQueueStats {
    /// Datagrams put in the socket's receive queue.
    pub received: AtomicU64,
    /// Datagrams dropped because the socket's receive queue was full.
    pub full: AtomicU64,
}

/// In the queue's live statistics.
impl LiveCounters for SocketQueueStats {
    fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("socket_received", self.received.load(Ordering::Relaxed)),
            ("socket_full", self.full.load(Ordering::Relaxed)),
        ]
    }
}

/// A socket's counters, summed over its queues, as plain numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SocketSummary {
    /// The port.
    pub port: u16,
    /// Datagrams received (put in the receive queue).
    pub received: u64,
    /// Datagrams dropped: the receive queue was full.
    pub full: u64,
    /// Datagrams the application took.
    pub taken: u64,
    /// Datagrams in the receive queue now.
    pub queued: u64,
}

struct Inner {
    port: u16,
    local: SocketAddr,
    rx: ArrayQueue<Received>,
    readable: Readiness,
    /// One per RX queue, in queue order; set while the stack opens its queues.
    txs: RwLock<Vec<Transmitter>>,
    resolver: Arc<dyn Resolve>,
    queue_stats: Mutex<Vec<Arc<SocketQueueStats>>>,
    taken: AtomicU64,
}

/// A UDP port bound on the stack (see the [module docs](self)). Cheap to
/// clone (a shared handle), `Send` and `Sync`.
///
/// Get one from `stack::Network::bind`; [`UdpSocket::new`] is for wiring it
/// to a stack by hand.
#[derive(Clone)]
pub struct UdpSocket {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpSocket")
            .field("local", &self.inner.local)
            .field("queued", &self.inner.rx.len())
            .finish()
    }
}

impl UdpSocket {
    /// A socket for `local` (its port is the one bound), receiving into a
    /// queue of `capacity` datagrams and sending where `resolver` says. It
    /// receives once its [`UdpSocket::handler`]s run on the stack's queues,
    /// and sends once [`UdpSocket::add_queue`] has given it a transmitter.
    pub fn new(local: SocketAddr, capacity: usize, resolver: Arc<dyn Resolve>) -> Self {
        Self {
            inner: Arc::new(Inner {
                port: local.port(),
                local,
                rx: ArrayQueue::new(capacity.max(1)),
                readable: Readiness::default(),
                txs: RwLock::new(Vec::new()),
                resolver,
                queue_stats: Mutex::new(Vec::new()),
                taken: AtomicU64::new(0),
            }),
        }
    }

    /// The handler for one RX queue's [`super::UdpConsumer`], routed this
    /// socket's port; its counters are shown live with
    /// [`SocketHandler::stats`].
    pub fn handler(&self) -> SocketHandler {
        let stats = Arc::new(SocketQueueStats::default());
        lock(&self.inner.queue_stats).push(stats.clone());
        SocketHandler {
            inner: self.inner.clone(),
            stats,
            pushed: false,
        }
    }

    /// Send through `tx` too (one transmitter per RX queue).
    pub fn add_queue(&self, tx: Transmitter) {
        self.inner
            .txs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(tx);
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.inner.port
    }

    /// The address the socket is bound to: the unspecified address of the
    /// family (it receives on every address of the interface, both families)
    /// with its port, as given to [`UdpSocket::new`].
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    /// A datagram, if one is waiting.
    pub fn try_recv(&self) -> Option<Received> {
        let r = self.inner.rx.pop();
        if r.is_some() {
            self.inner.taken.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    /// Up to `max` waiting datagrams into `out`, without waiting; returns how
    /// many.
    pub fn recv_batch(&self, out: &mut Vec<Received>, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            let Some(r) = self.inner.rx.pop() else { break };
            out.push(r);
            n += 1;
        }
        self.inner.taken.fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    /// Up to `max` datagrams into `out`, waiting at most `timeout` for the
    /// first; returns how many (0 when the time ran out).
    pub fn recv_batch_timeout(
        &self,
        out: &mut Vec<Received>,
        max: usize,
        timeout: Duration,
    ) -> usize {
        let deadline = Instant::now() + timeout;
        let waker = thread_waker(std::thread::current());
        loop {
            let n = self.recv_batch(out, max);
            if n > 0 || max == 0 {
                return n;
            }
            self.inner.readable.register(&waker);
            let n = self.recv_batch(out, max);
            if n > 0 {
                return n;
            }
            let now = Instant::now();
            if now >= deadline {
                return 0;
            }
            std::thread::park_timeout(deadline - now);
        }
    }

    /// Ready with up to `max` datagrams in `out` (at least one); otherwise
    /// `cx` is woken when some arrive.
    pub fn poll_recv_batch(
        &self,
        cx: &mut Context<'_>,
        out: &mut Vec<Received>,
        max: usize,
    ) -> Poll<usize> {
        let n = self.recv_batch(out, max);
        if n > 0 {
            return Poll::Ready(n);
        }
        self.inner.readable.register(cx.waker());
        match self.recv_batch(out, max) {
            0 => Poll::Pending,
            n => Poll::Ready(n),
        }
    }

    /// The next datagram (async).
    pub async fn recv(&self) -> Received {
        let mut one = Vec::with_capacity(1);
        poll_fn(|cx| self.poll_recv_batch(cx, &mut one, 1)).await;
        one.pop().expect("one datagram was received")
    }

    /// Send `payload` to `dst` from this socket's port: see the [module
    /// docs](self). `Ok` means queued for the TX ring, or held until the
    /// destination's next hop is resolved (then sent, or counted by cause:
    /// `no_route`, `unresolved`, ...); a destination with too many datagrams
    /// held already refuses the next with `unresolved`. Every refusal is
    /// counted on the queue it was for.
    pub fn send_to(&self, payload: &[u8], dst: SocketAddr) -> Result<(), TxError> {
        // A v4-mapped IPv6 address (dual-stack callers) is the IPv4 address.
        let dst = SocketAddr::new(dst.ip().to_canonical(), dst.port());
        let txs = self.inner.txs.read().unwrap_or_else(|p| p.into_inner());
        if txs.is_empty() {
            return Err(TxError::Disconnected);
        }
        let first = pick(dst, txs.len());
        let tx = &txs[first];
        match self.inner.resolver.lookup(dst.ip()) {
            Lookup::Ready(hop) => self.send_via(&txs, first, &hop, dst, payload),
            Lookup::Failed(cause) => {
                tx.count_unreachable(cause);
                Err(cause.into())
            }
            Lookup::Pending => {
                tx.count_held();
                let (tx, data, port) = (tx.clone(), payload.to_vec(), self.inner.port);
                // Set by the answer when it comes at once, on this thread (the
                // hold is full): the caller hears of it.
                let failed = Arc::new(AtomicU8::new(0));
                let seen = failed.clone();
                self.inner.resolver.hold(
                    dst.ip(),
                    Box::new(move |answer| match answer {
                        // Built by the poller, in a frame of its free list:
                        // this thread (the resolver's) holds none. Refusals
                        // are counted by the transmitter.
                        Ok(hop) => {
                            let _ = tx.send_later(&addressing(&hop, port, dst), data, hop.mtu);
                        }
                        Err(cause) => {
                            seen.store(cause as u8 + 1, Ordering::Release);
                            tx.count_unreachable(cause);
                        }
                    }),
                );
                match failed.load(Ordering::Acquire) {
                    0 => Ok(()),
                    n => Err(Unreachable::ALL[usize::from(n - 1)].into()),
                }
            }
        }
    }

    /// Send on queue `first`, or, when it has no room, on another that has.
    fn send_via(
        &self,
        txs: &[Transmitter],
        first: usize,
        hop: &NextHop,
        dst: SocketAddr,
        payload: &[u8],
    ) -> Result<(), TxError> {
        let to = addressing(hop, self.inner.port, dst);
        match txs[first].send_checked(&to, payload, hop.mtu) {
            Err(e) if e.is_backpressure() => {
                // Another queue's ring goes out of the same interface: order
                // between queues is lost only while the first one is full.
                for tx in txs.iter().cycle().skip(first + 1).take(txs.len() - 1) {
                    if tx.is_writable() && tx.send(&to, payload).is_ok() {
                        return Ok(());
                    }
                }
                Err(e)
            }
            other => other,
        }
    }

    /// Ready when a datagram can be queued on some queue; otherwise `cx` is
    /// woken when a poller has made room.
    pub fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<Result<(), TxError>> {
        let txs = self.inner.txs.read().unwrap_or_else(|p| p.into_inner());
        if txs.is_empty() {
            return Poll::Ready(Err(TxError::Disconnected));
        }
        // Registered with every queue that has no room, so that the first to
        // make some wakes the task.
        for tx in txs.iter() {
            if let Poll::Ready(r) = tx.poll_writable(cx) {
                return Poll::Ready(r);
            }
        }
        Poll::Pending
    }

    /// [`UdpSocket::send_to`], waiting (async) while the stack has no room.
    pub async fn send_to_async(&self, payload: &[u8], dst: SocketAddr) -> Result<(), TxError> {
        loop {
            match self.send_to(payload, dst) {
                Err(e) if e.is_backpressure() => poll_fn(|cx| self.poll_writable(cx)).await?,
                other => return other,
            }
        }
    }

    /// The socket's counters (its sends are counted per queue, in the
    /// queues' transmit summaries).
    pub fn summary(&self) -> SocketSummary {
        let mut s = SocketSummary {
            port: self.inner.port,
            taken: self.inner.taken.load(Ordering::Relaxed),
            queued: self.inner.rx.len() as u64,
            ..SocketSummary::default()
        };
        for q in lock(&self.inner.queue_stats).iter() {
            s.received += q.received.load(Ordering::Relaxed);
            s.full += q.full.load(Ordering::Relaxed);
        }
        s
    }
}

/// The frame's addresses for a datagram from `port` to `dst` via `hop`.
fn addressing(hop: &NextHop, port: u16, dst: SocketAddr) -> Addressing {
    Addressing {
        src_mac: hop.src_mac,
        dst_mac: hop.dst_mac,
        src: SocketAddr::new(hop.src_ip, port),
        dst,
    }
}

/// The queue for datagrams to `dst`: the same for one destination (its
/// datagrams keep their order), spread over queues for many (a multiplicative
/// hash of address and port).
fn pick(dst: SocketAddr, queues: usize) -> usize {
    let folded = match dst.ip() {
        IpAddr::V4(a) => u64::from(a.to_bits()),
        IpAddr::V6(a) => {
            let b = a.to_bits();
            (b as u64) ^ ((b >> 64) as u64)
        }
    } ^ (u64::from(dst.port()) << 32);
    let h = folded.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    ((h >> 32) as usize) % queues
}

/// The stack's end of a [`UdpSocket`] on one RX queue: a [`Handler`] that
/// puts each datagram, with its frame's view, in the socket's queue.
#[derive(Debug)]
pub struct SocketHandler {
    inner: Arc<Inner>,
    stats: Arc<SocketQueueStats>,
    pushed: bool,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpSocket")
            .field("port", &self.port)
            .finish()
    }
}

impl SocketHandler {
    /// This queue's counters, for its live statistics.
    pub fn stats(&self) -> Arc<SocketQueueStats> {
        self.stats.clone()
    }
}

/// Single writer (the queue's poller thread): a load and a store.
#[inline]
fn bump(counter: &AtomicU64) {
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

impl Handler for SocketHandler {
    #[inline]
    fn datagram(&mut self, d: &Datagram<'_>, _tx: &Transmitter) {
        // At 255 views of one frame by this consumer (never, for one datagram a
        // frame), the datagram is dropped like one that finds the queue full.
        let Some(view) = d.view.try_clone() else {
            bump(&self.stats.full);
            return;
        };
        let received = Received {
            view,
            src: d.src,
            dst: d.dst,
            payload_offset: d.layout.payload_offset() as u32,
            payload_len: d.payload.len() as u32,
            joined: d.view.is_chained().then(|| d.payload.into()),
        };
        match self.inner.rx.push(received) {
            Ok(()) => {
                bump(&self.stats.received);
                self.pushed = true;
            }
            // The view goes with it: its frame is free again.
            Err(_) => bump(&self.stats.full),
        }
    }

    fn flush(&mut self) {
        // One wakeup a batch.
        if std::mem::take(&mut self.pushed) {
            self.inner.readable.wake_all();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
