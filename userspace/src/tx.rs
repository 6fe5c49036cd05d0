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
//!   consumers (a poller with a transmitter keeps [`crate::poller::TX_RESERVE`]
//!   free frames out of the fill ring for these and for copy-on-write echoes).
//!
//! Requests wait in a bounded lock-free queue (the "send buffer"); a full queue
//! refuses the request ([`TxError::QueueFull`], counted), it never blocks. Frames
//! come back to the free list from the completion ring.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use crossbeam_queue::ArrayQueue;

use crate::{
    frame::{Frame, FrameView, FrameWriter, MAX_CONSUMERS},
    udp::{Datagram, Layout, ReplyError, write_reply},
};

/// Requests that may wait for the poller, per queue.
pub const TX_QUEUE: usize = 1024;
/// Spare frames the poller keeps ready for [`Transmitter::reply`].
pub const SPARE_FRAMES: usize = 64;

/// Transmit counters of one queue (the poller writes most of them; consumers
/// count the requests they could not queue).
#[derive(Debug, Default)]
pub struct TxStats {
    /// Frames put on the TX ring.
    pub sent: AtomicU64,
    /// Frames the kernel returned on the completion ring.
    pub completed: AtomicU64,
    /// Echo replies built in the received frame (zero copy).
    pub in_place: AtomicU64,
    /// Echo replies copied into a free frame because the received one was shared.
    pub copied: AtomicU64,
    /// Rounds that found the TX ring too full for the waiting requests (they wait).
    pub ring_full: AtomicU64,
    /// Requests refused because the transmit queue was full.
    pub queue_full: AtomicU64,
    /// Replies dropped for want of a free frame.
    pub no_frame: AtomicU64,
    /// Requests that cannot be answered (see [`ReplyError`]: not unicast, source
    /// port 0, reply too large).
    pub reply_errors: AtomicU64,
    /// sendto(2) calls that asked the kernel to transmit (only when it asks).
    pub kicks: AtomicU64,
    /// Frames on the TX or completion ring right now.
    pub in_flight: AtomicU64,
}

/// The counters as plain numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TxSummary {
    /// See [`TxStats::sent`].
    pub sent: u64,
    /// See [`TxStats::completed`].
    pub completed: u64,
    /// See [`TxStats::in_place`].
    pub in_place: u64,
    /// See [`TxStats::copied`].
    pub copied: u64,
    /// See [`TxStats::ring_full`].
    pub ring_full: u64,
    /// See [`TxStats::queue_full`].
    pub queue_full: u64,
    /// See [`TxStats::no_frame`].
    pub no_frame: u64,
    /// See [`TxStats::reply_errors`].
    pub reply_errors: u64,
    /// See [`TxStats::kicks`].
    pub kicks: u64,
}

impl TxStats {
    /// A snapshot.
    pub fn summary(&self) -> TxSummary {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TxSummary {
            sent: get(&self.sent),
            completed: get(&self.completed),
            in_place: get(&self.in_place),
            copied: get(&self.copied),
            ring_full: get(&self.ring_full),
            queue_full: get(&self.queue_full),
            no_frame: get(&self.no_frame),
            reply_errors: get(&self.reply_errors),
            kicks: get(&self.kicks),
        }
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
}

/// A request for the poller.
pub(crate) enum TxRequest {
    /// Answer the datagram in `view` (parsed as `layout`) with its own payload.
    Echo { view: FrameView, layout: Layout },
    /// Send `len` bytes of `frame` (from the pool's headroom), already built.
    Frame { frame: Frame, len: u32 },
}

/// What a queue's poller and its transmitters share.
pub(crate) struct TxShared {
    pub(crate) requests: ArrayQueue<TxRequest>,
    pub(crate) spares: ArrayQueue<Frame>,
    pub(crate) stats: Arc<TxStats>,
    writer: FrameWriter,
}

impl TxShared {
    pub(crate) fn new(writer: FrameWriter, stats: Arc<TxStats>) -> Self {
        Self {
            requests: ArrayQueue::new(TX_QUEUE),
            // Frames out of the queue at once: at most one per thread in `reply`
            // (one per consumer), so putting one back always fits.
            spares: ArrayQueue::new(SPARE_FRAMES + MAX_CONSUMERS + 1),
            stats,
            writer,
        }
    }
}

/// Sends replies on one queue; cheap to clone, `Send` and `Sync`: one per
/// consumer, inline or threaded. Get it from the stack (`stack::QueueContext`) or
/// from [`crate::poller::Poller::transmitter`].
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

    /// Answer `datagram` with its own payload (MACs, addresses and ports swapped,
    /// VLAN tags kept, checksums recomputed; see [`crate::udp::make_reply_in_place`]).
    /// `view` is the frame the datagram was parsed from. The reply is built by the
    /// poller: in place if nobody else holds the frame by then, else in a free frame.
    pub fn echo(&self, datagram: &Datagram<'_>) -> Result<(), TxError> {
        let shared = self.shared()?;
        let request = TxRequest::Echo {
            view: datagram.view.clone(),
            layout: datagram.layout,
        };
        shared.requests.push(request).map_err(|_| {
            count(&shared.stats.queue_full);
            TxError::QueueFull
        })
    }

    /// Answer `datagram` with `payload` (headers as for [`Transmitter::echo`]),
    /// copied now into a spare frame.
    pub fn reply(&self, datagram: &Datagram<'_>, payload: &[u8]) -> Result<(), TxError> {
        let shared = self.shared()?;
        let Some(mut frame) = shared.spares.pop() else {
            count(&shared.stats.no_frame);
            return Err(TxError::NoFrame);
        };
        let built = write_reply(
            shared.writer.bytes_mut(&mut frame),
            datagram.frame,
            &datagram.layout,
            payload,
        );
        match built {
            Ok(len) => {
                let len = u32::try_from(len).expect("a reply fits its frame");
                match shared.requests.push(TxRequest::Frame { frame, len }) {
                    Ok(()) => Ok(()),
                    Err(refused) => {
                        if let TxRequest::Frame { frame, .. } = refused {
                            // Back to the spares, which have room for one frame
                            // per thread in here.
                            let back = shared.spares.push(frame);
                            debug_assert!(back.is_ok(), "spare queue has room for ours");
                        }
                        count(&shared.stats.queue_full);
                        Err(TxError::QueueFull)
                    }
                }
            }
            Err(e) => {
                let back = shared.spares.push(frame);
                debug_assert!(back.is_ok(), "spare queue has room for ours");
                count(&shared.stats.reply_errors);
                Err(TxError::Reply(e))
            }
        }
    }
}

/// Counters written by consumers (any thread): a locked add.
fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}
