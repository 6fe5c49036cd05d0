//! What the poller hands frames to: consumers run inline (run to completion) or on
//! their own threads behind bounded queues.

use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::Thread,
    time::Duration,
};

use crossbeam_queue::ArrayQueue;

use super::ConsumerStats;
use crate::{frame::FrameView, tx::add};

/// Bit set of the consumers (by index) that get owned views: the threaded ones.
#[inline]
pub(super) fn threaded_set(sinks: &[Sink]) -> u8 {
    sinks
        .iter()
        .enumerate()
        .filter(|(_, s)| matches!(s, Sink::Threaded { .. }))
        // (`^` would do as well: the bits are distinct. cargo-mutants' `| -> ^`
        // is an equivalent mutant.)
        .fold(0, |set, (i, _)| set | (1 << i))
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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
    pub(super) queue: Arc<ArrayQueue<FrameView>>,
    pub(super) sleeping: Arc<AtomicBool>,
}

impl ThreadedReceiver {
    /// Take the next view, if any.
    pub fn try_recv(&self) -> Option<FrameView> {
        self.queue.pop()
    }

    /// Sleep until the poller pushes something or `timeout` passes.
    ///
    /// (Its only effect beside the flag is not burning the CPU: a `park` that
    /// returned at once, cargo-mutants' `replace park with ()`, spins instead,
    /// which no test observes without timing it.)
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

pub(super) enum Sink {
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
#[inline]
pub(super) fn wake(sleeping: &AtomicBool, thread: Option<&Thread>) {
    if sleeping.swap(false, Ordering::SeqCst)
        && let Some(t) = thread
    {
        t.unpark();
    }
}

/// Hand `view` to one consumer; never blocks. Counts drops; the caller counts
/// deliveries per batch.
#[inline]
pub(super) fn deliver(sink: &mut Sink, stats: &ConsumerStats, view: FrameView) {
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
                        add(&stats.dropped, 1);
                        drop(view);
                    }
                    Overflow::Wait => backlog.push_back(view),
                },
            }
        }
    }
}

/// Take up to `max` views back from a dropping consumer's queue, oldest first,
/// unconsumed, and drop them: counted as dropped (and reclaimed) instead of
/// delivered. Returns how many. A consumer that waits (`Overflow::Wait`) is
/// never robbed: it chose to hold frames back from the kernel.
pub(super) fn reclaim(sink: &mut Sink, stats: &ConsumerStats, max: usize) -> usize {
    let Sink::Threaded {
        queue,
        overflow: Overflow::Drop,
        ..
    } = sink
    else {
        return 0;
    };
    let mut n = 0;
    while n < max {
        let Some(view) = queue.pop() else { break };
        drop(view);
        n += 1;
    }
    if n > 0 {
        let n = n as u64;
        add(&stats.dropped, n);
        add(&stats.reclaimed, n);
        let delivered = stats.delivered.load(Ordering::Relaxed);
        stats
            .delivered
            .store(delivered.saturating_sub(n), Ordering::Relaxed);
    }
    n
}

/// Counters a consumer shows in the live statistics and the summary, by name.
pub trait LiveCounters: Send + Sync {
    /// The counters now; zeros may be left out.
    fn counters(&self) -> Vec<(&'static str, u64)>;
}
