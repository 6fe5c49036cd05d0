//! The NAPI-style poller of one RX queue, written against [`XskRings`] so that it
//! runs in unit tests over a fake ring, with no kernel (sans-IO).
//!
//! One round ([`Poller::poll_once`]), like a NAPI poll with a budget:
//! 1. frames whose last view was dropped come back from the return queue to the free
//!    list, and free frames go to the fill ring, in one batch;
//! 2. up to `budget` descriptors are taken from the RX ring, each becomes a
//!    [`FrameView`], and every consumer gets its own view of the frame;
//! 3. inline consumers run right there (run-to-completion); threaded ones get the
//!    view through a bounded queue: a full queue drops the view and counts it
//!    ([`Overflow::Drop`]), or keeps it in a backlog that holds its frame out of the
//!    fill ring ([`Overflow::Wait`], lossless: the kernel's fill-ring-empty counter
//!    shows the pressure). The poller never blocks on a consumer.
//!
//! [`Poller::run`] repeats rounds; when the RX ring is empty it spins a little
//! (adaptively, like NAPI's busy-poll window) and then sleeps in poll(2) until the
//! kernel has frames, kicking the kernel first only when `need_wakeup` asks.

use std::{
    collections::VecDeque,
    io,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::Thread,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crossbeam_queue::ArrayQueue;

use crate::{
    frame::{ConsumerId, Frame, FramePool, FrameView, MAX_CONSUMERS, RxMeta},
    tx::{SPARE_FRAMES, TX_QUEUE, Transmitter, TxRequest, TxShared, TxStats},
    udp::{Layout, ReplyError, make_reply_in_place, write_reply},
    xsk::XskStats,
};

/// Free frames a poller with a transmitter keeps out of the fill ring, for
/// replies that need a frame of their own (copy-on-write echo, spare frames).
pub const TX_RESERVE: usize = 2 * SPARE_FRAMES;

/// Bit set of the consumers (by index) that get owned views: the threaded ones.
fn threaded_set(sinks: &[Sink]) -> u8 {
    sinks
        .iter()
        .enumerate()
        .filter(|(_, s)| matches!(s, Sink::Threaded { .. }))
        .fold(0, |set, (i, _)| set | (1 << i))
}

/// A descriptor from the RX ring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxDesc {
    /// UMEM address of the first byte of the packet.
    pub addr: u64,
    /// Packet length.
    pub len: u32,
}

/// A descriptor for the TX ring: the frame's bytes start at the pool's headroom.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxDesc {
    /// UMEM address of the first byte to send (frame start + headroom).
    pub addr: u64,
    /// Bytes to send.
    pub len: u32,
}

/// The kernel side of one AF_XDP socket, as the poller needs it.
///
/// Implementations read the kernel's producer index once per batch (Acquire) and
/// publish their own index once per batch (Release); see `xsk.rs` for the real one.
///
/// # Safety
/// [`XskRings::rx_consume`] must only return addresses that were given to
/// [`XskRings::fill_produce`] and not returned since, each at most once per trip:
/// the poller turns them back into unique frame handles. Likewise
/// [`XskRings::comp_consume`] only returns addresses given to
/// [`XskRings::tx_produce`], each once per trip.
pub unsafe trait XskRings {
    /// Move up to `out.len()` descriptors off the RX ring into `out`.
    fn rx_consume(&mut self, out: &mut [RxDesc]) -> usize;
    /// Free slots in the fill ring (at most `want`).
    fn fill_capacity(&mut self, want: u32) -> u32;
    /// Put the frames at `addrs` on the fill ring. `addrs.len()` never exceeds the
    /// last [`XskRings::fill_capacity`], so all of them fit.
    fn fill_produce(&mut self, addrs: &[u64]);
    /// True when the kernel asked to be woken to look at the fill ring.
    fn fill_needs_wakeup(&mut self) -> bool;
    /// Wake the kernel (a non-blocking syscall on the socket).
    fn wakeup(&mut self) -> io::Result<()>;
    /// Sleep until the RX ring has descriptors or `timeout_ms` passes; true when
    /// readable.
    fn wait_rx(&mut self, timeout_ms: i32) -> io::Result<bool>;
    /// The kernel's XDP_STATISTICS.
    fn statistics(&self) -> io::Result<XskStats>;
    /// Free slots in the TX ring (at most `want`).
    fn tx_capacity(&mut self, want: u32) -> u32;
    /// Put `descs` on the TX ring; never more than the last
    /// [`XskRings::tx_capacity`].
    fn tx_produce(&mut self, descs: &[TxDesc]);
    /// True when the kernel must be kicked to transmit what is on the TX ring
    /// (always, in copy mode).
    fn tx_needs_wakeup(&mut self) -> bool;
    /// Ask the kernel to transmit (a non-blocking sendto(2)).
    fn tx_kick(&mut self) -> io::Result<()>;
    /// Move up to `out.len()` addresses off the completion ring: frames the
    /// kernel has sent.
    fn comp_consume(&mut self, out: &mut [u64]) -> usize;
    /// Descriptors on the RX ring and on the fill ring right now, read from the
    /// kernel's indexes (not the cached ones), in that order: a frame the kernel
    /// moves from the fill ring to the RX ring between the two reads is counted in
    /// neither, never twice.
    fn occupancy(&mut self) -> RingOccupancy;
}

/// Where the frames a poller gave the kernel are, as far as the rings show; the
/// rest of [`Poller::frames_in_kernel`] is in the kernel's hands between the two
/// (in copy mode, buffers it took off the fill ring and has not yet filled).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RingOccupancy {
    /// Frames on the RX ring, received and not yet taken by the poller.
    pub rx_ring: u32,
    /// Frames on the fill ring, waiting for packets.
    pub fill_ring: u32,
}

/// Receives frames, run-to-completion: the frame is lent for the call, as the
/// kernel's receive path hands an `skb` down; a consumer that keeps it clones the
/// view (one atomic add), and the clone holds the frame until it is dropped.
pub trait Consumer: Send {
    /// One frame.
    fn consume(&mut self, view: &FrameView);
    /// One frame, owned: how a threaded consumer's thread hands over the views
    /// from its queue. Keeping it costs nothing more; the default lends it to
    /// [`Consumer::consume`] and drops it.
    fn consume_owned(&mut self, view: FrameView) {
        self.consume(&view);
    }
    /// The end of a batch (a chance to flush buffered work).
    fn flush(&mut self) {}
}

impl<F: FnMut(&FrameView) + Send> Consumer for F {
    fn consume(&mut self, view: &FrameView) {
        self(view)
    }
}

/// What a threaded consumer's full queue does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Overflow {
    /// Drop the view and count it (the frame goes back at once).
    #[default]
    Drop,
    /// Keep the view in a backlog: frames are held back from the fill ring, so the
    /// kernel drops instead (counted in `rx_fill_ring_empty_descs`) and the consumer
    /// loses nothing.
    Wait,
}

/// The receiving end of a threaded consumer's queue, for its own thread.
#[derive(Debug)]
pub struct ThreadedReceiver {
    queue: Arc<ArrayQueue<FrameView>>,
    sleeping: Arc<AtomicBool>,
}

impl ThreadedReceiver {
    /// Take the next view, if any.
    pub fn try_recv(&self) -> Option<FrameView> {
        self.queue.pop()
    }

    /// Sleep until the poller pushes something or `timeout` passes.
    pub fn park(&self, timeout: Duration) {
        self.sleeping.store(true, Ordering::SeqCst);
        // Re-check after announcing sleep: a push between our last pop and the
        // store above would otherwise not wake us (the poller unparks only when
        // it sees `sleeping`).
        if self.queue.is_empty() {
            std::thread::park_timeout(timeout);
        }
        self.sleeping.store(false, Ordering::SeqCst);
    }

    /// Views waiting in the queue.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

enum Sink {
    Inline(Box<dyn Consumer>),
    Threaded {
        queue: Arc<ArrayQueue<FrameView>>,
        sleeping: Arc<AtomicBool>,
        thread: Option<Thread>,
        overflow: Overflow,
        backlog: VecDeque<FrameView>,
        /// Views were pushed in this batch: wake the consumer at its end.
        pushed: bool,
    },
}

/// Wake a threaded consumer if it sleeps. `swap` so that one wakeup is made per
/// sleep, not one futex call per view pushed while the consumer is still getting
/// up (its `park` re-checks the queue after announcing sleep, so none is lost).
fn wake(sleeping: &AtomicBool, thread: Option<&Thread>) {
    if sleeping.swap(false, Ordering::SeqCst)
        && let Some(t) = thread
    {
        t.unpark();
    }
}

/// How long a consumer may make no progress on its backlog at stop before the
/// rest is dropped (counted). Generous: a capture writer flushing its buffer into
/// a slow FIFO takes seconds between two views.
const BACKLOG_STALL: Duration = Duration::from_secs(10);

/// Per-consumer counters.
#[derive(Debug, Default)]
pub struct ConsumerStats {
    /// Views handed to the consumer (or its queue).
    pub delivered: AtomicU64,
    /// Views dropped because the consumer's queue was full.
    pub dropped: AtomicU64,
    /// Views waiting in the lossless backlog right now.
    pub backlog: AtomicU64,
}

/// Per-queue counters, written by the poller (single writer, Relaxed) and read by
/// anyone.
#[derive(Debug, Default)]
pub struct QueueStats {
    /// Frames received.
    pub rx_packets: AtomicU64,
    /// Bytes received.
    pub rx_bytes: AtomicU64,
    /// Rounds that received at least one frame.
    pub batches: AtomicU64,
    /// Rounds that found the RX ring empty.
    pub empty_polls: AtomicU64,
    /// Times the poller slept in poll(2).
    pub sleeps: AtomicU64,
    /// Syscalls made because the kernel asked (need_wakeup).
    pub wakeups: AtomicU64,
    /// Batches put on the fill ring.
    pub fill_batches: AtomicU64,
    /// Frames put on the fill ring, in total.
    pub filled: AtomicU64,
    /// Frames in the free list right now (neither viewed, nor in a kernel ring).
    pub free: AtomicU64,
    /// Frames the kernel holds right now (fill ring + RX ring + in flight).
    pub in_kernel: AtomicU64,
    /// Frames on the fill ring at the last sample (see `sample_rings`).
    pub fill_ring: AtomicU64,
    /// Frames on the RX ring at the last sample.
    pub rx_ring: AtomicU64,
    /// Set by a reader (the live statistics) to ask the poller for a fresh
    /// sample of the rings' occupancy; the poller clears it when it has taken
    /// one. Reading the kernel's ring indexes costs a cache miss each, so the
    /// poller does it on request, not every round.
    pub sample_rings: AtomicBool,
    /// Per consumer, in registration order.
    pub consumers: [ConsumerStats; MAX_CONSUMERS],
    /// The transmit side.
    pub tx: Arc<TxStats>,
}

impl QueueStats {
    fn add(counter: &AtomicU64, n: u64) {
        // Single writer: a plain load + store is enough and avoids a locked add.
        counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }
}

/// Tuning of a poller.
#[derive(Clone, Copy, Debug)]
pub struct PollerConfig {
    /// Descriptors taken from the RX ring per round.
    pub budget: u32,
    /// Empty rounds spun before sleeping in poll(2) (the upper bound; the poller
    /// adapts between 0 and this).
    pub max_spin: u32,
    /// poll(2) timeout, which bounds how late the poller notices a stop request.
    pub sleep_ms: i32,
    /// Never sleep: drive the queue with non-blocking syscalls (busy polling).
    pub busy_poll: bool,
}

impl Default for PollerConfig {
    fn default() -> Self {
        Self {
            budget: 64,
            max_spin: 256,
            sleep_ms: 100,
            busy_poll: false,
        }
    }
}

/// The poller of one RX queue.
pub struct Poller<R: XskRings> {
    // Consumers first: fields drop in order, and consumers (and transmit requests)
    // may hold views that must be gone before the pool drops (or the pool leaks
    // its memory).
    sinks: Vec<Sink>,
    tx: Option<Arc<TxShared>>,
    rings: R,
    pool: FramePool,
    queue: u32,
    config: PollerConfig,
    free: Vec<Frame>,
    in_kernel: u64,
    stats: Arc<QueueStats>,
    descs: Vec<RxDesc>,
    addrs: Vec<u64>,
    spin: u32,
    /// Frames on the TX and completion rings.
    in_tx: u64,
    tx_descs: Vec<TxDesc>,
    /// Scratch for completion-ring batches.
    comp: Vec<u64>,
}

impl<R: XskRings> std::fmt::Debug for Poller<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poller")
            .field("queue", &self.queue)
            .field("free", &self.free.len())
            .field("in_kernel", &self.in_kernel)
            .field("consumers", &self.sinks.len())
            .finish()
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl<R: XskRings> Poller<R> {
    /// A poller over `rings` whose frames come from `pool` (all of them start free;
    /// the first round gives them to the fill ring).
    pub fn new(rings: R, mut pool: FramePool, queue: u32, config: PollerConfig) -> Self {
        let free = pool.take_all();
        let budget = config.budget.max(1) as usize;
        let stats = Arc::new(QueueStats::default());
        stats.free.store(free.len() as u64, Ordering::Relaxed);
        Self {
            rings,
            pool,
            queue,
            config,
            free,
            in_kernel: 0,
            sinks: Vec::new(),
            stats,
            descs: vec![RxDesc::default(); budget],
            addrs: Vec::with_capacity(budget.max(64)),
            spin: 0,
            tx: None,
            in_tx: 0,
            tx_descs: Vec::with_capacity(TX_QUEUE),
            comp: vec![0; budget.max(64)],
        }
    }

    /// Add a consumer called on the poller's thread.
    pub fn add_inline(&mut self, consumer: Box<dyn Consumer>) -> ConsumerId {
        self.push_sink(Sink::Inline(consumer))
    }

    /// Add a consumer on its own thread behind a queue of `capacity` views. The
    /// returned receiver goes to that thread; call [`Poller::set_consumer_thread`]
    /// with the thread's handle so the poller can wake it.
    pub fn add_threaded(
        &mut self,
        capacity: usize,
        overflow: Overflow,
    ) -> (ConsumerId, ThreadedReceiver) {
        let queue = Arc::new(ArrayQueue::new(capacity.max(1)));
        let sleeping = Arc::new(AtomicBool::new(false));
        let rx = ThreadedReceiver {
            queue: queue.clone(),
            sleeping: sleeping.clone(),
        };
        let id = self.push_sink(Sink::Threaded {
            queue,
            sleeping,
            thread: None,
            overflow,
            backlog: VecDeque::new(),
            pushed: false,
        });
        (id, rx)
    }

    /// A transmitter for this queue's consumers: replies they ask for are built
    /// and sent by this poller (see [`crate::tx`]).
    pub fn transmitter(&mut self) -> Transmitter {
        let shared = self.tx.get_or_insert_with(|| {
            Arc::new(TxShared::new(self.pool.writer(), self.stats.tx.clone()))
        });
        Transmitter::new(shared.clone())
    }

    /// Frames on the TX and completion rings.
    pub fn frames_in_tx(&self) -> u64 {
        self.in_tx
    }

    /// Frames kept spare for replies ([`Transmitter::reply`]).
    pub fn spare_frames(&self) -> usize {
        self.tx.as_ref().map_or(0, |t| t.spares.len())
    }

    /// The thread that drains threaded consumer `id`.
    pub fn set_consumer_thread(&mut self, id: ConsumerId, handle: Thread) {
        if let Some(Sink::Threaded { thread, .. }) = self.sinks.get_mut(usize::from(id.0)) {
            *thread = Some(handle);
        }
    }

    fn push_sink(&mut self, sink: Sink) -> ConsumerId {
        let id = FramePool::consumer_id(self.sinks.len());
        self.sinks.push(sink);
        id
    }

    /// The queue's counters (shared; read them from any thread).
    pub fn stats(&self) -> Arc<QueueStats> {
        self.stats.clone()
    }

    /// The frame pool.
    pub fn pool(&self) -> &FramePool {
        &self.pool
    }

    /// The rings (for statistics and tests).
    pub fn rings(&self) -> &R {
        &self.rings
    }

    /// The rings, mutably (tests use it to feed the fake ring).
    pub fn rings_mut(&mut self) -> &mut R {
        &mut self.rings
    }

    /// The RX queue.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// Frames in the free list.
    pub fn free_frames(&self) -> usize {
        self.free.len()
    }

    /// Frames the kernel holds (given to the fill ring and not yet received).
    pub fn frames_in_kernel(&self) -> u64 {
        self.in_kernel
    }

    fn has_threaded(&self) -> bool {
        self.sinks
            .iter()
            .any(|s| matches!(s, Sink::Threaded { .. }))
    }

    /// Views waiting in lossless backlogs.
    pub fn backlogged(&self) -> usize {
        self.sinks
            .iter()
            .map(|s| match s {
                Sink::Threaded { backlog, .. } => backlog.len(),
                Sink::Inline(_) => 0,
            })
            .sum()
    }

    /// Bring back frames whose views are gone and give free frames to the kernel.
    pub fn refill(&mut self) {
        while let Some(frame) = self.pool.reclaim() {
            self.free.push(frame);
        }
        // With a transmitter, keep a few frames back for copy-on-write replies
        // and spare frames; everything else goes to the kernel.
        let keep = if self.tx.is_some() { TX_RESERVE } else { 0 };
        let want = u32::try_from(self.free.len().saturating_sub(keep)).unwrap_or(u32::MAX);
        if want == 0 {
            return;
        }
        let n = self.rings.fill_capacity(want).min(want) as usize;
        if n == 0 {
            return;
        }
        self.addrs.clear();
        let start = self.free.len() - n;
        for frame in self.free.drain(start..) {
            self.addrs.push(frame.into_addr(&self.pool));
        }
        self.rings.fill_produce(&self.addrs);
        self.in_kernel += n as u64;
        QueueStats::add(&self.stats.fill_batches, 1);
        QueueStats::add(&self.stats.filled, n as u64);
        self.stats
            .free
            .store(self.free.len() as u64, Ordering::Relaxed);
        self.stats
            .in_kernel
            .store(self.in_kernel, Ordering::Relaxed);
    }

    /// Push lossless backlogs into their queues as far as they fit.
    fn drain_backlogs(&mut self) {
        for (i, sink) in self.sinks.iter_mut().enumerate() {
            if let Sink::Threaded {
                queue,
                backlog,
                sleeping,
                thread,
                ..
            } = sink
            {
                let mut pushed = false;
                while let Some(view) = backlog.pop_front() {
                    match queue.push(view) {
                        Ok(()) => pushed = true,
                        Err(view) => {
                            backlog.push_front(view);
                            break;
                        }
                    }
                }
                self.stats.consumers[i]
                    .backlog
                    .store(backlog.len() as u64, Ordering::Relaxed);
                if pushed {
                    wake(sleeping, thread.as_ref());
                }
            }
        }
    }

    /// One NAPI round: refill, receive up to the budget, dispatch. Returns the
    /// number of frames received.
    pub fn poll_once(&mut self) -> usize {
        self.drain_backlogs();
        self.refill();
        let n = self.rings.rx_consume(&mut self.descs);
        if n == 0 {
            QueueStats::add(&self.stats.empty_polls, 1);
            self.transmit();
            return 0;
        }
        let meta = RxMeta {
            queue: self.queue,
            timestamp_ns: now_ns(),
        };
        // Frame sizes are powers of two (FramePool checks): offsets are a mask.
        let offset_mask = u64::from(self.pool.frame_size()) - 1;
        let dropped_before: [u64; MAX_CONSUMERS] =
            std::array::from_fn(|i| self.stats.consumers[i].dropped.load(Ordering::Relaxed));
        let mut dispatched = 0u64;
        let threaded = threaded_set(&self.sinks);
        let mut bytes = 0u64;
        for i in 0..n {
            let desc = self.descs[i];
            // SAFETY: by the `XskRings` contract, `desc.addr` went to the fill ring
            // (in `refill`) and comes back exactly once, here.
            let Some(frame) = (unsafe { self.pool.received(desc.addr) }) else {
                // Not an address of our UMEM: the kernel never does this; count it
                // as lost rather than trust it.
                continue;
            };
            self.in_kernel -= 1;
            bytes += u64::from(desc.len);
            let offset = ((desc.addr & offset_mask) as u32).max(self.pool.headroom());
            let len = desc.len.min(self.pool.frame_size() - offset);
            if self.sinks.is_empty() {
                // No consumer: the frame goes straight back (rxdrop).
                self.free.push(frame);
                continue;
            }
            let Self {
                pool, sinks, stats, ..
            } = self;
            // Threaded consumers get owned views (counted in the frame's word
            // up front); inline ones get the poller's view lent, run to
            // completion; then the poller's own view goes, usually the last.
            let own = pool.into_dispatch(frame, offset, len, meta, threaded, |view| {
                let i = view.holder().index();
                deliver(&mut sinks[i], &stats.consumers[i], view);
            });
            for (i, sink) in sinks.iter_mut().enumerate() {
                if let Sink::Inline(c) = sink {
                    own.lend(FramePool::consumer_id(i), |v| c.consume(v));
                }
            }
            drop(own);
            dispatched += 1;
        }
        for sink in &mut self.sinks {
            match sink {
                Sink::Inline(c) => c.flush(),
                // One wakeup per batch, after the inline consumers ran: on a
                // shared core the woken thread would otherwise preempt the
                // poller mid-batch.
                Sink::Threaded {
                    sleeping,
                    thread,
                    pushed,
                    ..
                } => {
                    if std::mem::take(pushed) {
                        wake(sleeping, thread.as_ref());
                    }
                }
            }
        }
        // `delivered` per batch rather than per view: every consumer got one view
        // of each frame, minus what its full queue dropped.
        for (i, c) in self
            .stats
            .consumers
            .iter()
            .enumerate()
            .take(self.sinks.len())
        {
            let dropped = c.dropped.load(Ordering::Relaxed) - dropped_before[i];
            QueueStats::add(&c.delivered, dispatched - dropped);
        }
        QueueStats::add(&self.stats.rx_packets, n as u64);
        QueueStats::add(&self.stats.rx_bytes, bytes);
        QueueStats::add(&self.stats.batches, 1);
        self.stats
            .in_kernel
            .store(self.in_kernel, Ordering::Relaxed);
        // The batch's replies go out in the same round (their requests were
        // queued by the inline consumers just now, and the poller's own views are
        // gone, so unshared frames are answered in place).
        self.transmit();
        n
    }

    /// The transmit half of a round: take back what the kernel has sent, keep
    /// spare frames ready, turn queued requests into TX descriptors, and kick the
    /// kernel while frames wait on the TX ring and it asks for it.
    pub fn transmit(&mut self) {
        let Self {
            tx,
            rings,
            pool,
            free,
            in_tx,
            tx_descs,
            comp,
            ..
        } = self;
        let Some(tx) = tx.as_deref() else {
            return;
        };
        let stats = &*tx.stats;
        if *in_tx > 0 {
            let n = rings.comp_consume(comp);
            for &addr in &comp[..n] {
                // SAFETY: by the `XskRings` contract the completion ring returns
                // each address given to `tx_produce` once.
                if let Some(frame) = unsafe { pool.received(addr) } {
                    free.push(frame);
                }
            }
            *in_tx -= n as u64;
            QueueStats::add(&stats.completed, n as u64);
        }
        while tx.spares.len() < SPARE_FRAMES {
            let Some(frame) = free.pop() else { break };
            if let Err(frame) = tx.spares.push(frame) {
                free.push(frame);
                break;
            }
        }
        if !tx.requests.is_empty() {
            let waiting = u32::try_from(tx.requests.len()).unwrap_or(u32::MAX);
            let room = rings.tx_capacity(waiting);
            if room < waiting {
                QueueStats::add(&stats.ring_full, 1);
            }
            tx_descs.clear();
            let headroom = pool.headroom();
            for _ in 0..room {
                let Some(request) = tx.requests.pop() else {
                    break;
                };
                let built = match request {
                    TxRequest::Frame { frame, len } => Some((frame, len)),
                    TxRequest::Echo { view, layout } => {
                        build_echo(pool, free, stats, view, &layout)
                    }
                };
                if let Some((frame, len)) = built {
                    tx_descs.push(TxDesc {
                        addr: frame.into_addr(pool) + u64::from(headroom),
                        len,
                    });
                }
            }
            if !tx_descs.is_empty() {
                rings.tx_produce(tx_descs);
                *in_tx += tx_descs.len() as u64;
                QueueStats::add(&stats.sent, tx_descs.len() as u64);
            }
        }
        if *in_tx > 0 && rings.tx_needs_wakeup() {
            // Errors other than "busy, try again" (which `tx_kick` absorbs) leave
            // the frames on the ring for the next kick; the kernel counts invalid
            // descriptors itself (tx_invalid_descs).
            if let Err(e) = rings.tx_kick() {
                tracing::debug!(error = %e, "TX kick failed");
            }
            QueueStats::add(&stats.kicks, 1);
        }
        stats.in_flight.store(*in_tx, Ordering::Relaxed);
    }

    /// Send what is queued and wait for the kernel to complete it, at most
    /// `timeout`; then give the spare frames back to the free list. The end of a
    /// run: the last replies are not lost.
    pub fn drain_tx(&mut self, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            self.transmit();
            let queued = self.tx.as_ref().is_some_and(|t| !t.requests.is_empty());
            if (self.in_tx == 0 && !queued) || std::time::Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        if let Some(tx) = &self.tx {
            while let Some(frame) = tx.spares.pop() {
                self.free.push(frame);
            }
        }
    }

    /// At stop: hand the lossless backlogs to their consumers, whose threads run
    /// until the pollers are done, for as long as they make progress, so that
    /// `--pcap-overflow wait` loses nothing at the end either. What a consumer
    /// stalled for `stall` has not taken is dropped and counted (moved from
    /// `delivered` to `dropped`), so that a stuck consumer cannot hold the stack
    /// up forever.
    pub fn flush_backlogs(&mut self, stall: Duration) {
        let mut left = self.backlogged();
        let mut progress = std::time::Instant::now();
        while left > 0 {
            self.drain_backlogs();
            let now = self.backlogged();
            if now < left {
                left = now;
                progress = std::time::Instant::now();
            } else if progress.elapsed() >= stall {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        for (i, sink) in self.sinks.iter_mut().enumerate() {
            if let Sink::Threaded { backlog, .. } = sink
                && !backlog.is_empty()
            {
                let n = backlog.len() as u64;
                let c = &self.stats.consumers[i];
                tracing::warn!(
                    queue = self.queue,
                    consumer = i,
                    n,
                    "consumer stalled at stop: dropping its backlog"
                );
                c.delivered
                    .store(c.delivered.load(Ordering::Relaxed) - n, Ordering::Relaxed);
                QueueStats::add(&c.dropped, n);
                c.backlog.store(0, Ordering::Relaxed);
                backlog.clear();
            }
        }
    }

    /// Run rounds until `stop` is set. When the RX ring is empty: spin (up to an
    /// adaptive number of empty rounds), then kick the kernel if it asked and sleep
    /// in poll(2).
    pub fn run(&mut self, stop: &AtomicBool) -> io::Result<()> {
        // Inline consumers' views are dropped on this thread: let their frames
        // come back without atomics.
        let bound = self.pool.bind_to_current_thread();
        debug_assert!(bound, "the poller runs before any frame is viewed");
        // A first sample of the rings, so that readers never see none.
        self.stats.sample_rings.store(true, Ordering::Relaxed);
        let result = self.run_rounds(stop);
        self.flush_backlogs(BACKLOG_STALL);
        self.drain_tx(Duration::from_millis(500));
        // Hand frames released on this thread back before it ends, so the pool
        // can be used (and dropped) from another thread.
        self.refill();
        result
    }

    /// Publish the rings' occupancy if a reader asked for it.
    fn answer_ring_sample(&mut self) {
        if self.stats.sample_rings.load(Ordering::Relaxed) {
            let o = self.rings.occupancy();
            self.stats
                .rx_ring
                .store(u64::from(o.rx_ring), Ordering::Relaxed);
            self.stats
                .fill_ring
                .store(u64::from(o.fill_ring), Ordering::Relaxed);
            self.stats.sample_rings.store(false, Ordering::Release);
        }
    }

    /// The rings' occupancy now (exact; the poller's thread only).
    pub fn ring_occupancy(&mut self) -> RingOccupancy {
        self.rings.occupancy()
    }

    fn run_rounds(&mut self, stop: &AtomicBool) -> io::Result<()> {
        while !stop.load(Ordering::Relaxed) {
            self.answer_ring_sample();
            if self.poll_once() > 0 {
                // Traffic: spin longer next time the ring runs dry.
                self.spin = (self.spin * 2).clamp(16, self.config.max_spin.max(16));
                continue;
            }
            if self.config.busy_poll {
                // Busy polling: the syscall itself runs the driver's NAPI poll.
                self.rings.wakeup()?;
                QueueStats::add(&self.stats.wakeups, 1);
                continue;
            }
            if self.spin > 0 {
                self.spin -= 1;
                std::hint::spin_loop();
                continue;
            }
            if self.rings.fill_needs_wakeup() {
                self.rings.wakeup()?;
                QueueStats::add(&self.stats.wakeups, 1);
            }
            QueueStats::add(&self.stats.sleeps, 1);
            // Replies in flight or requested from other threads: sleep briefly,
            // so completions and requests are not left waiting a whole timeout.
            let sleep_ms = if self.tx.is_some() && (self.in_tx > 0 || self.has_threaded()) {
                1
            } else {
                self.config.sleep_ms
            };
            match self.rings.wait_rx(sleep_ms) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Build the echo reply to the datagram in `view`: in its own frame when `view` is
/// the frame's last view, else in a free frame (copy-on-write). Returns the frame
/// and the reply's length, or `None` (counted) when there is no reply to send.
fn build_echo(
    pool: &mut FramePool,
    free: &mut Vec<Frame>,
    stats: &TxStats,
    view: FrameView,
    layout: &Layout,
) -> Option<(Frame, u32)> {
    let headroom = pool.headroom();
    match pool.take_unique(view) {
        Ok((mut frame, offset, len)) => {
            let bytes = pool.bytes_mut(&mut frame);
            let start = (offset - headroom) as usize;
            match make_reply_in_place(&mut bytes[start..start + len as usize], layout) {
                Ok(reply_len) => {
                    // TX descriptors start at the headroom.
                    bytes.copy_within(start..start + reply_len, 0);
                    QueueStats::add(&stats.in_place, 1);
                    Some((frame, reply_len as u32))
                }
                Err(_) => {
                    QueueStats::add(&stats.reply_errors, 1);
                    free.push(frame);
                    None
                }
            }
        }
        Err(view) => {
            let Some(mut frame) = free.pop() else {
                QueueStats::add(&stats.no_frame, 1);
                return None;
            };
            let request = view.bytes();
            let payload = request.get(layout.payload_offset()..layout.udp_end());
            let built = payload
                .ok_or(ReplyError::LayoutMismatch)
                .and_then(|p| write_reply(pool.bytes_mut(&mut frame), request, layout, p));
            match built {
                Ok(reply_len) => {
                    QueueStats::add(&stats.copied, 1);
                    Some((frame, reply_len as u32))
                }
                Err(_) => {
                    QueueStats::add(&stats.reply_errors, 1);
                    free.push(frame);
                    None
                }
            }
        }
    }
}

/// Hand `view` to one consumer; never blocks. Counts drops; the caller counts
/// deliveries per batch.
fn deliver(sink: &mut Sink, stats: &ConsumerStats, view: FrameView) {
    match sink {
        // Inline consumers are lent the poller's view instead (see poll_once).
        Sink::Inline(_) => drop(view),
        Sink::Threaded {
            queue,
            overflow,
            backlog,
            pushed,
            ..
        } => {
            if !backlog.is_empty() {
                // Keep order behind what is already waiting.
                backlog.push_back(view);
                return;
            }
            match queue.push(view) {
                // The consumer is woken once, at the end of the batch.
                Ok(()) => *pushed = true,
                Err(view) => match overflow {
                    Overflow::Drop => {
                        QueueStats::add(&stats.dropped, 1);
                        drop(view);
                    }
                    Overflow::Wait => backlog.push_back(view),
                },
            }
        }
    }
}

#[cfg(test)]
mod tx_tests;

#[cfg(test)]
mod tests {
    use std::{
        collections::HashSet,
        sync::{Arc, Mutex},
    };

    use proptest::prelude::*;

    use super::*;
    use crate::{frame::HeapMemory, sim::SimRings};

    const FRAME: u32 = 512;

    type FakeRings = SimRings;

    fn poller(frames: u32, fill_cap: usize, rx_cap: usize, budget: u32) -> Poller<FakeRings> {
        let pool = FramePool::new(Box::new(HeapMemory::new(FRAME, frames)), 0);
        Poller::new(
            SimRings::new(FRAME, fill_cap, rx_cap),
            pool,
            0,
            PollerConfig {
                budget,
                ..PollerConfig::default()
            },
        )
    }

    /// Every frame is in exactly one place: free list, kernel rings, return queue,
    /// or viewed; no address is in the kernel twice; no viewed frame is in the
    /// kernel.
    fn check_conservation(p: &Poller<FakeRings>, held: &[&Vec<FrameView>]) {
        let kernel = p.rings().kernel_frames();
        let unique: HashSet<u64> = kernel.iter().copied().collect();
        assert_eq!(unique.len(), kernel.len(), "a frame is in the kernel twice");
        assert_eq!(kernel.len() as u64, p.frames_in_kernel(), "in-kernel count");
        for views in held {
            for v in views.iter() {
                assert!(
                    !unique.contains(&u64::from(v.frame_index())),
                    "frame {} is in a kernel ring while viewed",
                    v.frame_index()
                );
            }
        }
        let total = p.free_frames()
            + kernel.len()
            + p.pool().returned_len()
            + p.pool().viewed_frames()
            + p.spare_frames();
        assert_eq!(total, p.pool().frame_count() as usize, "frame conservation");
    }

    /// The rings' occupancy is read only when a reader asks, and then matches
    /// where the frames are.
    #[test]
    fn ring_occupancy_is_sampled_on_request() {
        let mut p = poller(64, 64, 64, 16);
        p.poll_once();
        assert_eq!(p.rings_mut().arrive(10, 100), 10);
        let stats = p.stats();
        let sample = |s: &QueueStats| {
            (
                s.rx_ring.load(Ordering::Relaxed),
                s.fill_ring.load(Ordering::Relaxed),
            )
        };
        p.answer_ring_sample();
        assert_eq!(sample(&stats), (0, 0), "nobody asked");
        stats.sample_rings.store(true, Ordering::Relaxed);
        p.answer_ring_sample();
        assert!(!stats.sample_rings.load(Ordering::Relaxed), "answered");
        assert_eq!(sample(&stats), (10, 54));
        assert_eq!(10 + 54, p.frames_in_kernel());
        assert_eq!(
            p.ring_occupancy(),
            RingOccupancy {
                rx_ring: 10,
                fill_ring: 54
            }
        );
    }

    #[test]
    fn first_round_fills_and_frames_flow_back() {
        let mut p = poller(64, 64, 64, 16);
        assert_eq!(p.poll_once(), 0);
        assert_eq!(p.frames_in_kernel(), 64);
        let held = Arc::new(Mutex::new(Vec::new()));
        let h = held.clone();
        p.add_inline(Box::new(move |v: &FrameView| {
            h.lock().unwrap().push(v.clone())
        }));
        assert_eq!(p.rings_mut().arrive(40, 100), 40);
        assert_eq!(p.poll_once(), 16, "budget");
        assert_eq!(p.poll_once(), 16);
        assert_eq!(p.poll_once(), 8);
        {
            let views = held.lock().unwrap();
            assert_eq!(views.len(), 40);
            assert!(views.iter().all(|v| v.len() == 100));
            check_conservation(&p, &[&views]);
        }
        held.lock().unwrap().clear();
        p.poll_once();
        assert_eq!(p.frames_in_kernel(), 64, "all frames back in the fill ring");
        let s = p.stats();
        assert_eq!(s.rx_packets.load(Ordering::Relaxed), 40);
        assert_eq!(s.rx_bytes.load(Ordering::Relaxed), 4000);
        assert_eq!(s.consumers[0].delivered.load(Ordering::Relaxed), 40);
    }

    #[test]
    fn two_consumers_share_one_frame() {
        let mut p = poller(8, 8, 8, 8);
        let a = Arc::new(Mutex::new(Vec::new()));
        let b = Arc::new(Mutex::new(Vec::new()));
        let (a2, b2) = (a.clone(), b.clone());
        let ia = p.add_inline(Box::new(move |v: &FrameView| {
            a2.lock().unwrap().push(v.clone())
        }));
        let ib = p.add_inline(Box::new(move |v: &FrameView| {
            b2.lock().unwrap().push(v.clone())
        }));
        p.poll_once();
        p.rings_mut().arrive(3, 60);
        assert_eq!(p.poll_once(), 3);
        {
            let (va, vb) = (a.lock().unwrap(), b.lock().unwrap());
            for (x, y) in va.iter().zip(vb.iter()) {
                assert_eq!(x.frame_index(), y.frame_index(), "same frame, two views");
                assert_eq!(x.ref_count(), 2);
                assert_eq!(x.bytes().as_ptr(), y.bytes().as_ptr(), "zero copy");
            }
        }
        assert_eq!((p.pool().held_by(ia), p.pool().held_by(ib)), (3, 3));
        a.lock().unwrap().clear();
        b.lock().unwrap().clear();
        p.poll_once();
        assert_eq!(p.frames_in_kernel(), 8, "every frame back");
    }

    #[test]
    fn full_queue_drops_and_counts_without_blocking() {
        let mut p = poller(32, 32, 32, 32);
        let (id, rx) = p.add_threaded(4, Overflow::Drop);
        p.poll_once();
        p.rings_mut().arrive(10, 64);
        assert_eq!(p.poll_once(), 10);
        let c = &p.stats().consumers[usize::from(id.0)];
        assert_eq!(c.delivered.load(Ordering::Relaxed), 4);
        assert_eq!(c.dropped.load(Ordering::Relaxed), 6);
        assert_eq!(rx.len(), 4);
        // Dropped views returned their frames at once.
        assert_eq!(p.pool().returned_len(), 6);
        while let Some(v) = rx.try_recv() {
            drop(v);
        }
        p.poll_once();
        assert_eq!(p.frames_in_kernel(), 32);
    }

    #[test]
    fn lossless_consumer_holds_frames_back_and_the_kernel_counts() {
        let mut p = poller(16, 16, 16, 16);
        let (id, rx) = p.add_threaded(2, Overflow::Wait);
        p.poll_once();
        // More packets than frames: the backlog holds every frame, the fill ring
        // runs dry, the fake kernel counts fill-ring-empty drops.
        let delivered = p.rings_mut().arrive(16, 64);
        assert_eq!(delivered, 16);
        p.poll_once();
        assert_eq!(p.backlogged(), 14);
        assert_eq!(p.rings_mut().arrive(5, 64), 0);
        assert_eq!(p.rings().fill_empty(), 5);
        let c = &p.stats().consumers[usize::from(id.0)];
        assert_eq!(c.dropped.load(Ordering::Relaxed), 0, "lossless");
        // The consumer catches up; everything reaches it, in order.
        let mut got = Vec::new();
        for _ in 0..20 {
            while let Some(v) = rx.try_recv() {
                got.push(v.frame_index());
            }
            p.poll_once();
        }
        assert_eq!(got.len(), 16);
        assert_eq!(p.backlogged(), 0);
        assert_eq!(p.frames_in_kernel(), 16);
    }

    /// At stop, a lossless backlog goes to its consumer, still running, in full;
    /// a consumer that takes nothing has it dropped and counted.
    #[test]
    fn backlogs_are_flushed_at_stop() {
        for reads in [true, false] {
            let mut p = poller(16, 16, 16, 16);
            let (id, rx) = p.add_threaded(2, Overflow::Wait);
            p.poll_once();
            assert_eq!(p.rings_mut().arrive(16, 64), 16);
            p.poll_once();
            assert_eq!(p.backlogged(), 14);
            let got = std::thread::scope(|s| {
                let reader = s.spawn(|| {
                    let mut got = 0;
                    let deadline = std::time::Instant::now() + Duration::from_secs(5);
                    while reads && got < 16 && std::time::Instant::now() < deadline {
                        match rx.try_recv() {
                            Some(_) => got += 1,
                            None => std::thread::yield_now(),
                        }
                    }
                    got
                });
                p.flush_backlogs(Duration::from_millis(if reads { 2000 } else { 50 }));
                reader.join().unwrap()
            });
            assert_eq!(p.backlogged(), 0);
            let c = &p.stats().consumers[usize::from(id.0)];
            let (delivered, dropped) = (
                c.delivered.load(Ordering::Relaxed),
                c.dropped.load(Ordering::Relaxed),
            );
            if reads {
                assert_eq!((got, delivered, dropped), (16, 16, 0));
            } else {
                // The two in its queue stay delivered; the backlog is dropped.
                assert_eq!((got, delivered, dropped), (0, 2, 14));
            }
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Arrive(usize),
        Poll,
        ReleaseInline(usize),
        DrainThreaded(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0usize..80).prop_map(Op::Arrive),
            Just(Op::Poll),
            (0usize..40).prop_map(Op::ReleaseInline),
            (0usize..40).prop_map(Op::DrainThreaded),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Random arrivals, polls, release orders and queue-full events: frames are
        /// conserved at every step, never reused while viewed, and after draining
        /// every frame is free or in the fill ring once; counters add up.
        #[test]
        fn frames_are_conserved(
            ops in proptest::collection::vec(op(), 1..120),
            frames in 8u32..64,
            budget in 1u32..32,
            queue_cap in 1usize..16,
            lossless in any::<bool>(),
            seed in any::<u64>(),
        ) {
            let mut p = poller(frames, frames as usize, 32, budget);
            let inline_held = Arc::new(Mutex::new(Vec::new()));
            let h = inline_held.clone();
            p.add_inline(Box::new(move |v: &FrameView| h.lock().unwrap().push(v.clone())));
            let overflow = if lossless { Overflow::Wait } else { Overflow::Drop };
            let (tid, rx) = p.add_threaded(queue_cap, overflow);
            let mut threaded_held: Vec<FrameView> = Vec::new();
            let mut arrived = 0u64;
            let mut rng = seed;
            let mut next = move |n: usize| {
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((rng >> 33) as usize) % n.max(1)
            };
            for op in ops {
                match op {
                    Op::Arrive(n) => arrived += p.rings_mut().arrive(n, 60) as u64,
                    Op::Poll => { p.poll_once(); }
                    Op::ReleaseInline(n) => {
                        let mut held = inline_held.lock().unwrap();
                        for _ in 0..n.min(held.len()) {
                            let i = next(held.len());
                            held.swap_remove(i);
                        }
                    }
                    Op::DrainThreaded(n) => {
                        for _ in 0..n {
                            match rx.try_recv() { Some(v) => threaded_held.push(v), None => break }
                        }
                        for _ in 0..next(threaded_held.len() + 1) {
                            if threaded_held.is_empty() { break; }
                            let i = next(threaded_held.len());
                            threaded_held.swap_remove(i);
                        }
                    }
                }
                let held = inline_held.lock().unwrap();
                check_conservation(&p, &[&held, &threaded_held]);
            }
            // Drain: consumers let go of everything, the poller catches up.
            for _ in 0..(frames as usize * 4) {
                inline_held.lock().unwrap().clear();
                threaded_held.clear();
                while rx.try_recv().is_some() {}
                p.poll_once();
            }
            check_conservation(&p, &[]);
            prop_assert_eq!(p.frames_in_kernel() + p.free_frames() as u64, u64::from(frames));
            prop_assert_eq!(p.frames_in_kernel(), u64::from(frames), "fill ring takes every frame");
            let s = p.stats();
            let received = s.rx_packets.load(Ordering::Relaxed);
            prop_assert_eq!(received, arrived, "every arrival received");
            let c0 = &s.consumers[0];
            prop_assert_eq!(c0.delivered.load(Ordering::Relaxed), received);
            let c1 = &s.consumers[usize::from(tid.0)];
            prop_assert_eq!(
                c1.delivered.load(Ordering::Relaxed) + c1.dropped.load(Ordering::Relaxed),
                received,
                "threaded: delivered + dropped = received"
            );
            if lossless {
                prop_assert_eq!(c1.dropped.load(Ordering::Relaxed), 0);
            }
        }
    }
}
