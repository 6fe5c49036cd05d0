//! The NAPI-style poller of one RX queue: sans-IO, written against the ring
//! trait ([`Rings`]), so that it runs in unit tests over a fake ring with no
//! kernel, under Miri too. It reads no clock (the caller passes the time) and
//! makes no syscall (the caller wakes the kernel when it asks).
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
//!    shows the pressure). The poller never blocks on a consumer;
//! 4. replies the consumers asked for go to the TX ring ([`Poller::transmit`]).
//!
//! The run loop (`stack`) repeats rounds; when the RX ring is empty it spins a
//! little (adaptively, like NAPI's busy-poll window) and then sleeps in poll(2)
//! until the kernel has frames, kicking the kernel first only when `need_wakeup`
//! asks.

use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::Thread,
};

use crossbeam_queue::ArrayQueue;

use crate::{
    frame::{
        ConsumerId, Frame, FramePool, FrameView, MAX_CONSUMERS, MAX_SEGMENTS, RxMeta, Segment,
    },
    ring::{Doorbell, RingOccupancy, Rings, RxDesc, TxDesc},
    tx::{SPARE_FRAMES, TX_QUEUE, TX_RESERVE, Transmitter, TxShared, add},
};

mod assemble;
#[cfg(test)]
mod chain_tests;
mod sink;
mod stats;
#[cfg(test)]
pub(crate) mod tests;
mod transmit;
#[cfg(test)]
mod tx_tests;

pub use sink::{Consumer, LiveCounters, Overflow, ThreadedReceiver};
use sink::{Sink, deliver, threaded_set, wake};
pub use stats::{ConsumerStats, QueueStats};

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
    /// With `busy_poll`: a socket whose packets turn out to carry no NAPI id
    /// ends the run with an error instead of falling back to sleeping
    /// (`--require busy-poll`, where the kernel could not tell at start).
    pub require_busy_poll: bool,
    /// The socket is bound with `XDP_USE_SG`: packets larger than a frame
    /// are sent as chains of buffers (received ones are assembled either way).
    pub multi_buffer: bool,
}

impl Default for PollerConfig {
    fn default() -> Self {
        Self {
            budget: 64,
            max_spin: 256,
            sleep_ms: 100,
            busy_poll: false,
            require_busy_poll: false,
            multi_buffer: false,
        }
    }
}

/// Keep [`SPARE_FRAMES`] frames ready for [`Transmitter::reply`], from `free`.
#[inline]
fn top_up_spares(tx: &TxShared, free: &mut Vec<Frame>) {
    while tx.spares.len() < SPARE_FRAMES {
        let Some(frame) = free.pop() else { break };
        if let Err(frame) = tx.spares.push(frame) {
            free.push(frame);
            break;
        }
    }
}

/// Sees every frame the poller puts on the TX ring, as it goes (the capture's
/// outbound side). Called on the poller's thread: it must not block.
pub trait TxTap: Send + Sync + std::fmt::Debug {
    /// `frame` (Ethernet header first) goes out on RX queue `queue`'s TX ring.
    fn transmitted(&self, queue: u32, frame: &[u8]);
}

/// The poller of one RX queue.
pub struct Poller<R: Rings> {
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
    /// Below this many frames in the fill ring, views waiting in dropping
    /// consumers' queues are taken back (see [`Poller::poll_once`]).
    low_water: u64,
    /// Frames on the TX and completion rings.
    in_tx: u64,
    tx_descs: Vec<TxDesc>,
    /// Scratch for completion-ring batches.
    comp: Vec<u64>,
    /// Shown every frame that goes out.
    tx_tap: Option<Arc<dyn TxTap>>,
    /// Frames carry their receive time (see [`Poller::set_stamps`]).
    stamps: Option<i64>,
    /// Wakes the run loop from other threads' sends (see [`Poller::set_doorbell`]).
    doorbell: Option<Arc<dyn Doorbell>>,
    /// The buffers so far of a multi-buffer packet (see [`Poller::assemble`]).
    chain: Vec<Segment>,
    /// Its metadata, from its first buffer.
    chain_meta: RxMeta,
    /// Dropping the rest of a packet's buffers (see [`Poller::drop_chain`]).
    discarding: bool,
    /// The frames of the packet being put on the TX ring.
    tx_frames: Vec<(Frame, u32)>,
    /// Where multi-buffer packets to send are built whole.
    tx_scratch: Vec<u8>,
    /// Per frame: on the TX ring as a buffer that its packet continues after
    /// (so its completion does not complete a packet).
    tx_continues: Vec<bool>,
}

/// A received packet: its frame, offset and length, or (frame `None`) the
/// chain in `Poller::chain` and its whole length; and its metadata.
type Packet = (Option<Frame>, u32, u32, RxMeta);

impl<R: Rings> std::fmt::Debug for Poller<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poller")
            .field("queue", &self.queue)
            .field("free", &self.free.len())
            .field("in_kernel", &self.in_kernel)
            .field("consumers", &self.sinks.len())
            .finish()
    }
}

impl<R: Rings> Poller<R> {
    /// A poller over `rings` whose frames come from `pool` (all of them start free;
    /// the first round gives them to the fill ring).
    pub fn new(rings: R, mut pool: FramePool, queue: u32, config: PollerConfig) -> Self {
        let free = pool.take_all();
        let budget = config.budget.max(1) as usize;
        let stats = Arc::new(QueueStats::default());
        stats.free.store(free.len() as u64, Ordering::Relaxed);
        // An eighth of the frames, and at least two rounds' worth (but never
        // more than half): the kernel refills from it while the poller takes
        // frames back from a lagging consumer.
        let frames = free.len() as u64;
        let low_water = (frames / 8).max(2 * budget as u64).min(frames / 2);
        Self {
            low_water,
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
            tx: None,
            in_tx: 0,
            tx_descs: Vec::with_capacity(TX_QUEUE),
            comp: vec![0; budget.max(64)],
            tx_tap: None,
            stamps: None,
            doorbell: None,
            chain: Vec::with_capacity(MAX_SEGMENTS),
            chain_meta: RxMeta::default(),
            discarding: false,
            tx_frames: Vec::with_capacity(MAX_SEGMENTS),
            tx_scratch: Vec::new(),
            tx_continues: if config.multi_buffer {
                vec![false; frames as usize]
            } else {
                Vec::new()
            },
        }
    }

    /// Take each frame's receive time from the stamp the XDP program wrote
    /// into its metadata (CLOCK_MONOTONIC), plus `mono_to_real_ns` (CLOCK_REALTIME
    /// minus CLOCK_MONOTONIC, which the caller refreshes as NTP slews the clock);
    /// `None`: every frame of a round gets the round's time.
    pub fn set_stamps(&mut self, mono_to_real_ns: Option<i64>) {
        self.stamps = mono_to_real_ns;
    }

    /// True when frames take their time from the XDP program's stamps.
    pub fn stamping(&self) -> bool {
        self.stamps.is_some()
    }

    /// The receive time of `frame`, whose data starts at `offset`: its stamp,
    /// or the round's time `now_ns` when it has none.
    #[inline]
    fn stamp(&self, frame: &mut Frame, offset: u32, now_ns: u64) -> u64 {
        let Some(to_real) = self.stamps else {
            return now_ns;
        };
        match self.pool.take_stamp(frame, offset) {
            0 => {
                add(&self.stats.unstamped, 1);
                now_ns
            }
            mono => mono.saturating_add_signed(to_real),
        }
    }

    /// Show `tap` every frame this poller transmits from now on.
    pub fn set_tx_tap(&mut self, tap: Arc<dyn TxTap>) {
        self.tx_tap = Some(tap);
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
    /// and sent by this poller (see [`crate::tx`]). A poller that never hands one
    /// out runs no transmit code at all.
    pub fn transmitter(&mut self) -> Transmitter {
        let shared = self.tx.get_or_insert_with(|| {
            let tx = Arc::new(TxShared::new(
                self.pool.writer(),
                self.stats.tx.clone(),
                self.doorbell.clone(),
                self.config.multi_buffer,
            ));
            // Spares at once: a datagram sent from another thread before the
            // first round finds one.
            top_up_spares(&tx, &mut self.free);
            tx
        });
        Transmitter::new(shared.clone())
    }

    /// What wakes the run loop when another thread queues a request while it
    /// sleeps (the socket's eventfd). Set it before handing out transmitters.
    pub fn set_doorbell(&mut self, doorbell: Arc<dyn Doorbell>) {
        debug_assert!(
            self.tx.is_none(),
            "set the doorbell before transmitters exist"
        );
        self.doorbell = Some(doorbell);
    }

    /// The run loop is about to sleep: true if it may (no request is waiting
    /// to be sent). Call [`Poller::woke`] after the sleep, or instead of it.
    pub fn prepare_sleep(&self) -> bool {
        self.tx.as_deref().is_none_or(TxShared::prepare_sleep)
    }

    /// The run loop is awake again (see [`Poller::prepare_sleep`]).
    pub fn woke(&self) {
        if let Some(tx) = self.tx.as_deref() {
            tx.woke();
        }
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

    /// True when a transmitter was handed out: the queue sends.
    pub fn has_tx(&self) -> bool {
        self.tx.is_some()
    }

    /// The tuning the poller was made with (the run loop's too).
    pub fn config(&self) -> &PollerConfig {
        &self.config
    }

    /// True when a consumer runs on a thread of its own.
    pub fn has_threaded(&self) -> bool {
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
        // and spare frames (counting the spares made already); everything
        // else goes to the kernel.
        let keep = self
            .tx
            .as_deref()
            .map_or(0, |tx| TX_RESERVE.saturating_sub(tx.spares.len()));
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
        add(&self.stats.fill_batches, 1);
        add(&self.stats.filled, n as u64);
        self.stats
            .free
            .store(self.free.len() as u64, Ordering::Relaxed);
        self.stats
            .in_kernel
            .store(self.in_kernel, Ordering::Relaxed);
    }

    /// The fill ring is low: take views back from dropping consumers' queues
    /// (a capture writer that lags behind holds frames the kernel needs, and the
    /// other consumers would lose datagrams to an empty fill ring), enough for
    /// the fill ring to reach twice the low-water mark, then refill.
    #[cold]
    fn reclaim_from_queues(&mut self) {
        let want = (2 * self.low_water).saturating_sub(self.in_kernel + self.free.len() as u64);
        let mut left = want as usize;
        for (i, sink) in self.sinks.iter_mut().enumerate() {
            if left == 0 {
                break;
            }
            left -= sink::reclaim(sink, &self.stats.consumers[i], left);
        }
        if left < want as usize {
            self.refill();
        }
    }

    /// Push lossless backlogs into their queues as far as they fit.
    pub fn drain_backlogs(&mut self) {
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

    /// One NAPI round at time `now_ns` (ns since the Unix epoch, the receive
    /// timestamp of this round's frames): refill, receive up to the budget,
    /// dispatch, and transmit what was asked for. Returns the number of frames
    /// received. If [`Poller::wants_tx_kick`] then says so, the caller kicks the
    /// kernel: the poller makes no syscall and reads no clock.
    pub fn poll_once(&mut self, now_ns: u64) -> usize {
        self.drain_backlogs();
        self.refill();
        // Spare frames before the round's frames, not only after: the first
        // round may find requests waiting whose replies need them.
        if let Some(tx) = self.tx.as_deref() {
            top_up_spares(tx, &mut self.free);
        }
        if self.in_kernel < self.low_water {
            self.reclaim_from_queues();
        }
        let n = self.rings.rx_consume(&mut self.descs);
        if n == 0 {
            add(&self.stats.empty_polls, 1);
            self.transmit();
            return 0;
        }
        let dropped_before: [u64; MAX_CONSUMERS] =
            std::array::from_fn(|i| self.stats.consumers[i].dropped.load(Ordering::Relaxed));
        let mut dispatched = 0u64;
        let threaded = threaded_set(&self.sinks);
        let mut bytes = 0u64;
        let mut packets = 0u64;
        for i in 0..n {
            let desc = self.descs[i];
            let Some(packet) = self.assemble(desc, now_ns) else {
                continue;
            };
            packets += 1;
            bytes += u64::from(packet.2);
            if self.sinks.is_empty() {
                // No consumer: the frames go straight back (rxdrop).
                self.free_packet(packet);
                continue;
            }
            let Self {
                pool,
                sinks,
                stats,
                chain,
                ..
            } = self;
            // Threaded consumers get owned views (counted in the frame's word
            // up front); inline ones get the poller's view lent, run to
            // completion; then the poller's own view goes, usually the last.
            let deliver_to = |view: FrameView| {
                let i = view.holder().index();
                deliver(&mut sinks[i], &stats.consumers[i], view);
            };
            let (frame, offset, len, meta) = packet;
            let own = match frame {
                Some(frame) => pool.into_dispatch(frame, offset, len, meta, threaded, deliver_to),
                None => pool.into_dispatch_chain(chain, meta, threaded, deliver_to),
            };
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
            add(&c.delivered, dispatched - dropped);
        }
        add(&self.stats.rx_packets, packets);
        add(&self.stats.rx_bytes, bytes);
        add(&self.stats.batches, 1);
        self.stats
            .in_kernel
            .store(self.in_kernel, Ordering::Relaxed);
        // The batch's replies go out in the same round (their requests were
        // queued by the inline consumers just now, and the poller's own views are
        // gone, so unshared frames are answered in place).
        self.transmit();
        n
    }

    /// Drop what the lossless backlogs still hold, counted: moved from
    /// `delivered` to `dropped` (the end of a run whose consumer stalled).
    /// Returns how many views were dropped.
    pub fn drop_backlogs(&mut self) -> u64 {
        let mut total = 0;
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
                // Single writer (this thread), like `add`.
                c.delivered
                    .store(c.delivered.load(Ordering::Relaxed) - n, Ordering::Relaxed);
                add(&c.dropped, n);
                c.backlog.store(0, Ordering::Relaxed);
                backlog.clear();
                total += n;
            }
        }
        total
    }

    /// Make the calling thread the pool's owner, so that views dropped on it (the
    /// inline consumers') return their frames without atomics. Only possible
    /// before any frame is viewed; returns whether it happened.
    pub fn bind_to_current_thread(&mut self) -> bool {
        self.pool.bind_to_current_thread()
    }

    /// Publish the rings' occupancy if a reader asked for it.
    pub fn answer_ring_sample(&mut self) {
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
}
