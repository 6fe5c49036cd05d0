//! The transmit side of one queue: what consumers hand the poller to send.
//!
//! Like a socket's send path, but without the copy into a send buffer: a consumer
//! asks for a reply through a [`Transmitter`] and the queue's poller, which owns
//! the TX and completion rings and the free frames, builds and sends it:
//! - [`Transmitter::echo`]: answer a datagram with its own payload. The poller
//!   builds the reply in the received frame itself when the request's view is the
//!   frame's only one by then (zero copy), and otherwise (the pcap writer still
//!   holds the frame) copies the reply into a free frame: copy-on-write, the way the
//!   kernel copies a cloned `sk_buff` before writing it.
//! - [`Transmitter::reply`]: answer a datagram with another payload, written at
//!   once into one of the [`SPARE_FRAMES`] the poller keeps ready for its
//!   consumers (a poller with a transmitter keeps [`TX_RESERVE`] free frames out
//!   of the fill ring for these and for copy-on-write echoes).
//!
//! Requests wait in a bounded lock-free queue (the "send buffer"); a full queue
//! refuses the request ([`TxError::QueueFull`], counted), it never blocks. Frames
//! come back to the free list from the completion ring.
//!
//! - [`Transmitter::send`]: a datagram to any destination, with the addresses
//!   the caller found ([`route`]: the kernel's routing and neighbour tables),
//!   written at once into a spare frame. It is how the socket API's `send_to`
//!   sends, from any thread; a poller asleep in poll(2) is woken by its
//!   [`Doorbell`], and tasks waiting for room are woken when there is some
//!   ([`Transmitter::poll_writable`]).
//!
//! Counters are split by writer ([`TxStats`]): what the poller counts is written
//! by its thread alone, with a plain load and store; what consumers count is
//! written with atomic read-modify-writes, since any number of consumer threads
//! may reply at once.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    task::{Context, Poll},
};

use crossbeam_queue::ArrayQueue;

use crate::{
    frame::{Frame, FrameView, FrameWriter, MAX_CONSUMERS},
    ring::Doorbell,
    wire::{Addressing, Layout, ReplyError, write_datagram, write_reply},
};

mod build;
pub mod ready;
pub mod route;

use ready::Readiness;
use route::Unreachable;

pub(crate) use build::{Built, build_datagram, build_echo};

/// Requests that may wait for the poller, per queue.
pub const TX_QUEUE: usize = 1024;
/// Spare frames the poller keeps ready for [`Transmitter::reply`].
pub const SPARE_FRAMES: usize = 64;
/// Free frames a poller with a transmitter keeps out of the fill ring, for
/// replies that need a frame of their own (copy-on-write echo, spare frames).
pub const TX_RESERVE: usize = 2 * SPARE_FRAMES;

/// Transmit counters of one queue, split by writer so that no counter has two
/// writers that could lose each other's increments.
#[derive(Debug, Default)]
pub struct TxStats {
    /// Written by the queue's poller only.
    pub(crate) poller: PollerTxStats,
    /// Written by the queue's consumers, from any thread.
    pub(crate) consumers: ConsumerTxStats,
}

/// What the poller counts: one writer, so a plain load and store (no locked
/// instruction on the data path; see [`add`]).
#[derive(Debug, Default)]
pub(crate) struct PollerTxStats {
    /// Packets put on the TX ring (a multi-buffer packet counts once).
    pub(crate) queued: AtomicU64,
    /// Packets the kernel returned on the completion ring (with their last
    /// buffer).
    pub(crate) completed: AtomicU64,
    /// Of `queued`: packets put on the ring as several buffers.
    pub(crate) multi_buffer: AtomicU64,
    /// Frames the kernel completed without sending them (see
    /// [`crate::ring::KickOutcome::Dropped`]).
    pub(crate) kernel_dropped: AtomicU64,
    /// Echo replies built in the received frame (zero copy).
    pub(crate) in_place: AtomicU64,
    /// Echo replies copied into a free frame because the received one was shared.
    pub(crate) copied: AtomicU64,
    /// Rounds that found the TX ring too full for the waiting requests (they wait).
    pub(crate) ring_full: AtomicU64,
    /// Echo replies dropped for want of a free frame (copy-on-write).
    pub(crate) no_frame: AtomicU64,
    /// Echo requests that cannot be answered (see [`ReplyError`]).
    pub(crate) reply_errors: AtomicU64,
    /// sendto(2) calls that asked the kernel to transmit (only when it asks).
    pub(crate) kicks: AtomicU64,
    /// Kicks the kernel answered "busy, try again" (the frames stay on the ring).
    pub(crate) kicks_busy: AtomicU64,
    /// Frames on the TX or completion ring right now.
    pub(crate) in_flight: AtomicU64,
}

/// What consumers count, on any thread: atomic read-modify-writes (see [`count`]).
#[derive(Debug, Default)]
pub(crate) struct ConsumerTxStats {
    /// Requests refused because the transmit queue was full.
    pub(crate) queue_full: AtomicU64,
    /// [`Transmitter::reply`] calls that found no spare frame.
    pub(crate) no_frame: AtomicU64,
    /// [`Transmitter::reply`] calls whose reply cannot be built.
    pub(crate) reply_errors: AtomicU64,
    /// Echoes refused because the consumer held 255 views of the frame.
    pub(crate) too_many_views: AtomicU64,
    /// Datagrams [`Transmitter::send`] queued.
    pub(crate) send_to: AtomicU64,
    /// Datagrams to any destination that could not be sent, by cause
    /// (indexed like [`Unreachable::ALL`]).
    pub(crate) unreachable: [AtomicU64; Unreachable::ALL.len()],
    /// Datagrams larger than the path MTU allows (no IP fragmentation).
    pub(crate) too_large: AtomicU64,
    /// Datagrams that waited for their next hop to be resolved.
    pub(crate) held: AtomicU64,
}

/// The most buffers one packet may be sent in: what the kernel's copy mode
/// takes (`MAX_SKB_FRAGS + 1`; a longer chain is an invalid descriptor). A
/// datagram that would need more is not sent (counted `reply_errors`).
pub const MAX_TX_SEGMENTS: usize = 18;

/// Bytes of Ethernet header.
const ETH_HLEN: usize = 14;

/// The frame [`write_datagram`] makes for `payload_len` bytes to `to`:
/// Ethernet, IP without options, UDP.
pub(crate) fn frame_len(to: &Addressing, payload_len: usize) -> usize {
    let ip_header = if to.dst.is_ipv4() { 20 } else { 40 };
    ETH_HLEN + ip_header + 8 + payload_len
}

/// Add `n` to a counter that only the calling thread writes (the poller's): a
/// load and a store, which other threads read consistently (Relaxed atomics)
/// but which would lose increments if two threads wrote it.
#[inline]
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

/// The counters as plain numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TxSummary {
    /// Packets the kernel transmitted: completed and not dropped. This is what
    /// the interface's TX packet counter counts of ours.
    pub sent: u64,
    /// Packets put on the TX ring (a multi-buffer packet counts once).
    pub queued: u64,
    /// Packets the kernel returned on the completion ring, sent or not.
    pub completed: u64,
    /// Of `queued`: packets sent as several buffers (AF_XDP multi-buffer).
    pub multi_buffer: u64,
    /// Frames the kernel took off the TX ring and completed without sending
    /// them: in copy mode, the driver refused the frame (`sendto(2)` says
    /// EBUSY; a veth whose peer cannot take it, a link without carrier). The
    /// interface counts them in its `tx_dropped`.
    pub kernel_dropped: u64,
    /// Echo replies built in the received frame (zero copy).
    pub in_place: u64,
    /// Echo replies copied into a free frame because the received one was shared.
    pub copied: u64,
    /// Rounds that found the TX ring too full for the waiting requests (they wait).
    pub ring_full: u64,
    /// Requests refused because the transmit queue was full.
    pub queue_full: u64,
    /// Replies dropped for want of a free frame: copy-on-write echoes (the
    /// poller's) and [`Transmitter::reply`] calls with no spare frame.
    pub no_frame: u64,
    /// Requests that cannot be answered (see [`ReplyError`]: not unicast, source
    /// port 0, reply too large).
    pub reply_errors: u64,
    /// sendto(2) calls that asked the kernel to transmit (only when it asks).
    pub kicks: u64,
    /// Kicks the kernel answered "busy, try again" (the frames stayed on the
    /// ring for the next one).
    pub kicks_busy: u64,
    /// Echoes refused because the consumer already held 255 views of the
    /// frame ([`TxError::TooManyViews`]).
    pub too_many_views: u64,
    /// Datagrams to any destination queued ([`Transmitter::send`], the socket
    /// API's `send_to`, and held ones once resolved: [`Transmitter::send_later`],
    /// which the poller builds, or counts `no_frame` when it has no frame).
    pub send_to: u64,
    /// Datagrams not sent: no route to the destination.
    pub no_route: u64,
    /// Datagrams not sent: the route leaves by another interface.
    pub other_interface: u64,
    /// Datagrams not sent: the next hop's MAC could not be resolved in time
    /// (or too many datagrams waited for it).
    pub unresolved: u64,
    /// Datagrams not sent: larger than the path MTU (no IP fragmentation).
    pub too_large: u64,
    /// Datagrams that waited for their next hop to be resolved (then sent, or
    /// counted as `unresolved`).
    pub held: u64,
}

impl TxStats {
    /// A snapshot.
    pub fn summary(&self) -> TxSummary {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (p, c) = (&self.poller, &self.consumers);
        // Dropped frames are counted when the kick returns, before their
        // completion is read: a snapshot between the two must not underflow.
        let (completed, kernel_dropped) = (get(&p.completed), get(&p.kernel_dropped));
        TxSummary {
            sent: completed.saturating_sub(kernel_dropped),
            queued: get(&p.queued),
            completed,
            multi_buffer: get(&p.multi_buffer),
            kernel_dropped,
            in_place: get(&p.in_place),
            copied: get(&p.copied),
            ring_full: get(&p.ring_full),
            queue_full: get(&c.queue_full),
            no_frame: get(&p.no_frame) + get(&c.no_frame),
            reply_errors: get(&p.reply_errors) + get(&c.reply_errors),
            kicks: get(&p.kicks),
            kicks_busy: get(&p.kicks_busy),
            too_many_views: get(&c.too_many_views),
            send_to: get(&c.send_to),
            no_route: get(&c.unreachable[Unreachable::NoRoute as usize]),
            other_interface: get(&c.unreachable[Unreachable::OtherInterface as usize]),
            unresolved: get(&c.unreachable[Unreachable::Unresolved as usize]),
            too_large: get(&c.too_large),
            held: get(&c.held),
        }
    }

    /// Frames on the TX or completion ring right now.
    pub fn in_flight(&self) -> u64 {
        self.poller.in_flight.load(Ordering::Relaxed)
    }
}

/// Why a reply was not queued. Each is also counted in [`TxStats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    /// The transmit queue is full: the poller is behind or the TX ring is full.
    #[error("transmit queue full")]
    QueueFull,
    /// No spare frame to write the reply into.
    #[error("no free frame for the reply")]
    NoFrame,
    /// The reply cannot be built.
    #[error(transparent)]
    Reply(#[from] ReplyError),
    /// A [`Transmitter::disconnected`] sends nothing.
    #[error("this consumer has no transmitter")]
    Disconnected,
    /// The consumer already holds 255 views of this frame (echoes of it waiting
    /// to be sent, say): the most one consumer may hold of one frame.
    #[error("too many views of one frame (255 per consumer)")]
    TooManyViews,
    /// The destination cannot be sent to (see [`route`]).
    #[error(transparent)]
    Unreachable(#[from] Unreachable),
    /// The datagram is larger than the path MTU allows (IP fragmentation is
    /// not supported).
    #[error("a {len}-byte datagram exceeds the path MTU of {mtu} bytes")]
    TooLarge {
        /// The IP packet's length.
        len: usize,
        /// The path MTU.
        mtu: u32,
    },
}

impl TxError {
    /// A refusal that clears when the poller catches up (retry after
    /// [`Transmitter::poll_writable`]), as opposed to one that will not.
    pub fn is_backpressure(&self) -> bool {
        matches!(self, TxError::QueueFull | TxError::NoFrame)
    }
}

/// A request for the poller.
pub(crate) enum TxRequest {
    /// Answer the datagram in `view` (parsed as `layout`) with its own payload.
    Echo { view: FrameView, layout: Layout },
    /// Send `len` bytes of `frame` (from the pool's headroom), already built.
    Frame { frame: Frame, len: u32 },
    /// Build a datagram addressed as `to` with `payload` in a free frame, then
    /// send it (a held datagram whose next hop resolved: the thread that
    /// resolved it has no frame, the poller has its free list).
    Datagram { to: Addressing, payload: Box<[u8]> },
}

/// What a queue's poller and its transmitters share.
pub(crate) struct TxShared {
    pub(crate) requests: ArrayQueue<TxRequest>,
    pub(crate) spares: ArrayQueue<Frame>,
    pub(crate) stats: Arc<TxStats>,
    writer: FrameWriter,
    /// Wakes the poller asleep in poll(2) (none in tests: their loops spin).
    doorbell: Option<Arc<dyn Doorbell>>,
    /// The poller is asleep or about to be (see [`TxShared::prepare_sleep`]).
    sleeping: AtomicBool,
    /// Tasks waiting for room to send.
    pub(crate) writable: Readiness,
    /// The poller sends packets larger than a frame as chains of buffers.
    multi_buffer: bool,
}

impl TxShared {
    pub(crate) fn new(
        writer: FrameWriter,
        stats: Arc<TxStats>,
        doorbell: Option<Arc<dyn Doorbell>>,
        multi_buffer: bool,
    ) -> Self {
        Self {
            multi_buffer,
            doorbell,
            sleeping: AtomicBool::new(false),
            writable: Readiness::default(),
            requests: ArrayQueue::new(TX_QUEUE),
            // Frames out of the queue at once: at most one per thread in `reply`
            // (one per consumer), so putting one back always fits.
            spares: ArrayQueue::new(SPARE_FRAMES + MAX_CONSUMERS + 1),
            stats,
            writer,
        }
    }

    /// The poller is about to sleep: true if it may, false if requests came
    /// meanwhile (it then stays awake; [`TxShared::woke`] either way). A
    /// sender pushes its request and then looks at the flag, the poller sets
    /// the flag and then looks at the requests (both SeqCst): one of the two
    /// sees the other, so no request waits out a whole sleep.
    pub(crate) fn prepare_sleep(&self) -> bool {
        self.sleeping.store(true, Ordering::SeqCst);
        self.requests.is_empty()
    }

    /// The poller is awake.
    pub(crate) fn woke(&self) {
        self.sleeping.store(false, Ordering::SeqCst);
    }

    /// A request was queued: wake the poller if it sleeps.
    #[inline]
    fn queued(&self) {
        if self.sleeping.load(Ordering::SeqCst)
            && self.sleeping.swap(false, Ordering::SeqCst)
            && let Some(bell) = &self.doorbell
        {
            bell.ring();
        }
    }

    /// Room for a datagram: a spare frame and a free slot in the queue.
    pub(crate) fn is_writable(&self) -> bool {
        !self.spares.is_empty() && !self.requests.is_full()
    }
}

/// Sends replies on one queue; cheap to clone, `Send` and `Sync`: one per
/// consumer, inline or threaded. Get it from the stack (`stack::QueueContext`) or
/// from the queue's poller (`Poller::transmitter`).
#[derive(Clone)]
pub struct Transmitter {
    shared: Option<Arc<TxShared>>,
}

impl std::fmt::Debug for Transmitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transmitter")
            .field("queued", &self.shared.as_ref().map(|s| s.requests.len()))
            .finish()
    }
}

impl Transmitter {
    pub(crate) fn new(shared: Arc<TxShared>) -> Self {
        Self {
            shared: Some(shared),
        }
    }

    /// A transmitter that sends nothing ([`TxError::Disconnected`]), for
    /// receive-only consumers: the queue then runs no transmit code at all.
    pub fn disconnected() -> Self {
        Self { shared: None }
    }

    fn shared(&self) -> Result<&TxShared, TxError> {
        self.shared.as_deref().ok_or(TxError::Disconnected)
    }

    /// Answer the datagram in `view`, parsed as `layout`, with its own payload
    /// (MACs, addresses and ports swapped, VLAN tags kept, checksums recomputed;
    /// see [`crate::wire::make_reply_in_place`]). The reply is built by the poller:
    /// in place if nobody else holds the frame by then, else in a free frame.
    pub fn echo(&self, view: &FrameView, layout: &Layout) -> Result<(), TxError> {
        let shared = self.shared()?;
        let Some(view) = view.try_clone() else {
            count(&shared.stats.consumers.too_many_views);
            return Err(TxError::TooManyViews);
        };
        let request = TxRequest::Echo {
            view,
            layout: *layout,
        };
        match shared.requests.push(request) {
            Ok(()) => {
                shared.queued();
                Ok(())
            }
            Err(_) => {
                count(&shared.stats.consumers.queue_full);
                Err(TxError::QueueFull)
            }
        }
    }

    /// Answer the datagram in `request` (a frame parsed as `layout`) with
    /// `payload` (headers as for [`Transmitter::echo`]), copied now into a spare
    /// frame.
    pub fn reply(&self, request: &[u8], layout: &Layout, payload: &[u8]) -> Result<(), TxError> {
        let shared = self.shared()?;
        let Some(mut frame) = shared.spares.pop() else {
            count(&shared.stats.consumers.no_frame);
            return Err(TxError::NoFrame);
        };
        let built = write_reply(
            shared.writer.bytes_mut(&mut frame),
            request,
            layout,
            payload,
        );
        Self::queue_built(shared, frame, built)
    }

    /// Send `payload` in a datagram addressed as `to` (see
    /// [`write_datagram`]), written now into a spare frame; the poller puts it
    /// on the TX ring, woken if it sleeps. What the path allows (the MTU, the
    /// route) is the caller's to check: see [`Transmitter::send_checked`].
    /// A datagram larger than a frame goes to the poller to be built in a
    /// chain of frames when the socket sends multi-buffer packets (a copy of
    /// `payload`), and cannot be built otherwise ([`TxError::Reply`]).
    pub fn send(&self, to: &Addressing, payload: &[u8]) -> Result<(), TxError> {
        let shared = self.shared()?;
        let (needed, capacity) = (frame_len(to, payload.len()), shared.writer.capacity());
        if shared.multi_buffer && needed > capacity {
            let available = capacity * MAX_TX_SEGMENTS;
            if needed > available {
                count(&shared.stats.consumers.reply_errors);
                return Err(ReplyError::BufferTooSmall { needed, available }.into());
            }
            return Self::queue_datagram(shared, to, payload.into());
        }
        let Some(mut frame) = shared.spares.pop() else {
            count(&shared.stats.consumers.no_frame);
            return Err(TxError::NoFrame);
        };
        let built = write_datagram(shared.writer.bytes_mut(&mut frame), to, payload);
        Self::queue_built(shared, frame, built)?;
        count(&shared.stats.consumers.send_to);
        Ok(())
    }

    /// [`Transmitter::send`] with the path MTU checked first: a datagram
    /// whose IP packet exceeds `mtu` is refused and counted
    /// ([`TxError::TooLarge`]).
    pub fn send_checked(&self, to: &Addressing, payload: &[u8], mtu: u32) -> Result<(), TxError> {
        self.check_mtu(to, payload.len(), mtu)?;
        self.send(to, payload)
    }

    /// Queue `payload` addressed as `to` for the poller to build in a frame of
    /// its own and send: for a thread that holds no spare frame and must not
    /// wait for one (the resolver's, sending what waited for a next hop). The
    /// path MTU is checked first, as by [`Transmitter::send_checked`]; a
    /// poller without a free frame then counts the datagram `no_frame`.
    pub fn send_later(&self, to: &Addressing, payload: Vec<u8>, mtu: u32) -> Result<(), TxError> {
        let shared = self.shared()?;
        self.check_mtu(to, payload.len(), mtu)?;
        Self::queue_datagram(shared, to, payload.into_boxed_slice())
    }

    /// Refuse (and count) a datagram whose IP packet would exceed `mtu`.
    fn check_mtu(&self, to: &Addressing, payload_len: usize, mtu: u32) -> Result<(), TxError> {
        let len = frame_len(to, payload_len) - ETH_HLEN;
        if len > mtu as usize {
            if let Some(shared) = self.shared.as_deref() {
                count(&shared.stats.consumers.too_large);
            }
            return Err(TxError::TooLarge { len, mtu });
        }
        Ok(())
    }

    /// Queue a datagram for the poller to build.
    fn queue_datagram(
        shared: &TxShared,
        to: &Addressing,
        payload: Box<[u8]>,
    ) -> Result<(), TxError> {
        let request = TxRequest::Datagram { to: *to, payload };
        match shared.requests.push(request) {
            Ok(()) => {
                shared.queued();
                count(&shared.stats.consumers.send_to);
                Ok(())
            }
            Err(_) => {
                count(&shared.stats.consumers.queue_full);
                Err(TxError::QueueFull)
            }
        }
    }

    /// Count a datagram that could not be sent for `cause` (the send path
    /// found no way to its destination).
    pub fn count_unreachable(&self, cause: Unreachable) {
        if let Some(shared) = self.shared.as_deref() {
            count(&shared.stats.consumers.unreachable[cause as usize]);
        }
    }

    /// Count a datagram that waits for its next hop to be resolved.
    pub fn count_held(&self) {
        if let Some(shared) = self.shared.as_deref() {
            count(&shared.stats.consumers.held);
        }
    }

    /// Whether a datagram can be queued now (a spare frame, room in the queue).
    pub fn is_writable(&self) -> bool {
        self.shared.as_deref().is_some_and(TxShared::is_writable)
    }

    /// Ready when a datagram can be queued; otherwise `cx` is woken when the
    /// poller has made room. A disconnected transmitter is never writable:
    /// it says so at once with [`TxError::Disconnected`].
    pub fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<Result<(), TxError>> {
        let shared = self.shared()?;
        if shared.is_writable() {
            return Poll::Ready(Ok(()));
        }
        shared.writable.register(cx.waker());
        if shared.is_writable() {
            return Poll::Ready(Ok(()));
        }
        Poll::Pending
    }

    /// Queue a frame written into a spare (or give the spare back).
    fn queue_built(
        shared: &TxShared,
        frame: Frame,
        built: Result<usize, ReplyError>,
    ) -> Result<(), TxError> {
        match built {
            Ok(len) => {
                let len = u32::try_from(len).expect("a reply fits its frame");
                match shared.requests.push(TxRequest::Frame { frame, len }) {
                    Ok(()) => {
                        shared.queued();
                        Ok(())
                    }
                    Err(refused) => {
                        if let TxRequest::Frame { frame, .. } = refused {
                            // Back to the spares, which have room for one frame
                            // per thread in here.
                            let back = shared.spares.push(frame);
                            debug_assert!(back.is_ok(), "spare queue has room for ours");
                        }
                        count(&shared.stats.consumers.queue_full);
                        Err(TxError::QueueFull)
                    }
                }
            }
            Err(e) => {
                let back = shared.spares.push(frame);
                debug_assert!(back.is_ok(), "spare queue has room for ours");
                count(&shared.stats.consumers.reply_errors);
                Err(TxError::Reply(e))
            }
        }
    }
}

/// Counters written by consumers (any thread): a locked add.
#[inline]
pub(crate) fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}
