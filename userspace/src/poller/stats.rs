//! The counters of one queue, read from any thread while the poller runs.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64},
};

use crate::{frame::MAX_CONSUMERS, tx::TxStats};

/// Per-consumer counters.
#[derive(Debug, Default)]
pub struct ConsumerStats {
    /// Views handed to the consumer (or its queue).
    pub delivered: AtomicU64,
    /// Views dropped because the consumer's queue was full, or taken back from
    /// it unconsumed so that the fill ring does not run dry (`reclaimed`).
    pub dropped: AtomicU64,
    /// Of `dropped`: views taken back from a dropping consumer's queue before
    /// it consumed them, because the kernel was about to run out of frames.
    pub reclaimed: AtomicU64,
    /// Views waiting in the lossless backlog right now.
    pub backlog: AtomicU64,
}

/// Per-queue counters, written by the poller's thread only (its rounds and its
/// run loop: single writer, a load and a store) and read
/// by anyone.
#[derive(Debug, Default)]
pub struct QueueStats {
    /// Packets received (a multi-buffer packet counts once).
    pub rx_packets: AtomicU64,
    /// Of `rx_packets`: packets that came in several buffers (AF_XDP
    /// multi-buffer, `XDP_PKT_CONTD`).
    pub rx_multi_buffer: AtomicU64,
    /// Descriptors dropped that the kernel should never make: an address
    /// outside the UMEM, or a packet of more than `MAX_SEGMENTS` buffers
    /// (counted once; its frames go back).
    pub rx_malformed: AtomicU64,
    /// Bytes received.
    pub rx_bytes: AtomicU64,
    /// Rounds that received at least one frame.
    pub batches: AtomicU64,
    /// Rounds that found the RX ring empty.
    pub empty_polls: AtomicU64,
    /// Frames received without the XDP program's receive stamp while stamps
    /// were asked for (given the round's time instead).
    pub unstamped: AtomicU64,
    /// Times the poller slept in poll(2).
    pub sleeps: AtomicU64,
    /// Syscalls made to wake the kernel: because it asked (need_wakeup), or
    /// every empty round with busy polling.
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
