//! The run loop of one queue: the I/O around the sans-IO poller. It reads the
//! clock, wakes the kernel when the rings ask, sleeps in poll(2) when there is
//! nothing to do, and at stop hands the last views and replies out in bounded
//! time.

use std::{
    io,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use crate::{
    poller::{Consumer, Poller, ThreadedReceiver},
    ring::{KickOutcome, Rings},
    sys::{
        Kernel,
        process::{monotonic_ns, realtime_ns},
    },
    tx::add,
};

/// How long a consumer may make no progress on its backlog at stop before the
/// rest is dropped (counted). Generous: a capture writer flushing its buffer into
/// a slow FIFO takes seconds between two views.
pub(crate) const BACKLOG_STALL: Duration = Duration::from_secs(10);

/// How long the run loop waits before kicking again a kernel that was too busy
/// to take the TX ring's frames.
const TX_BUSY_WAIT: Duration = Duration::from_micros(50);

/// How long the end of a run waits for the kernel to complete the last replies.
const TX_DRAIN: Duration = Duration::from_millis(500);

/// One round and what it asks of the kernel: the poller's round at the current
/// time, then the TX kick it wants. Returns the frames received.
pub(crate) fn round<R: Rings + Kernel>(poller: &mut Poller<R>) -> usize {
    let now = realtime_ns();
    if poller.stamping() {
        // The stamps' clock to Unix time, taken anew each round (one more
        // clock read a round): NTP slews the realtime clock.
        poller.set_stamps(Some(now as i64 - monotonic_ns() as i64));
    }
    let n = poller.poll_once(now);
    kick_tx(poller);
    n
}

/// Kicks one round makes at most. In copy mode the kernel sends up to 32 frames
/// a kick, and a frame it drops ends the kick: eight carry 256 frames, four
/// rounds' replies at the default budget of 64, without starving the receive
/// side.
const KICKS_PER_ROUND: u32 = 8;

/// Kick the kernel to transmit while the poller says frames wait for it (the
/// kernel takes a batch a call), and tell the poller what each kick did. A busy
/// kernel or an error leaves the rest on the ring for the next round.
pub(crate) fn kick_tx<R: Rings + Kernel>(poller: &mut Poller<R>) {
    for _ in 0..KICKS_PER_ROUND {
        if !poller.wants_tx_kick() {
            return;
        }
        match poller.rings_mut().tx_kick() {
            Ok(outcome) => {
                poller.tx_kicked(outcome);
                if outcome == KickOutcome::Busy {
                    return;
                }
            }
            Err(e) => {
                // Neither busy nor a dropped frame (the device went away): the
                // frames stay on the ring, and the kernel counts invalid
                // descriptors itself (tx_invalid_descs).
                tracing::debug!(error = %e, "TX kick failed");
                poller.tx_kicked(KickOutcome::Busy);
                return;
            }
        }
    }
}

/// Run rounds until `stop` is set, then flush: the lossless backlogs to their
/// consumers (at most [`BACKLOG_STALL`] without progress), the last replies to
/// the kernel (at most 500 ms), and the frames released on this thread back to
/// the pool, so that it can be used (and dropped) from another thread.
pub(crate) fn run<R: Rings + Kernel>(poller: &mut Poller<R>, stop: &AtomicBool) -> io::Result<()> {
    // Inline consumers' views are dropped on this thread: let their frames come
    // back without atomics.
    let bound = poller.bind_to_current_thread();
    debug_assert!(bound, "the poller runs before any frame is viewed");
    // A first sample of the rings, so that readers never see none.
    poller.stats().sample_rings.store(true, Ordering::Relaxed);
    let result = run_rounds(poller, stop);
    flush_backlogs(poller, BACKLOG_STALL);
    drain_tx(poller, TX_DRAIN);
    poller.refill();
    result
}

/// When the RX ring is empty: spin (up to an adaptive number of empty rounds),
/// then kick the kernel if it asked and sleep in poll(2).
fn run_rounds<R: Rings + Kernel>(poller: &mut Poller<R>, stop: &AtomicBool) -> io::Result<()> {
    let stats = poller.stats();
    let config = *poller.config();
    let mut busy = BusyPoll::new(config.busy_poll).required(config.require_busy_poll);
    let mut spin = 0u32;
    while !stop.load(Ordering::Relaxed) {
        poller.answer_ring_sample();
        if round(poller) > 0 {
            // Traffic: spin longer next time the ring runs dry.
            spin = (spin * 2).clamp(16, config.max_spin.max(16));
            continue;
        }
        let received = stats.rx_packets.load(Ordering::Relaxed);
        if busy.keep_or_fail(received, || poller.rings().napi_id(), poller.queue())? {
            // Busy polling: the syscall itself runs the driver's NAPI poll.
            poller.rings_mut().wakeup()?;
            add(&stats.wakeups, 1);
            continue;
        }
        if spin > 0 {
            spin -= 1;
            std::hint::spin_loop();
            continue;
        }
        if poller.has_tx() && poller.rings_mut().tx_pending() > 0 {
            // Never sleep in poll(2) with frames on the TX ring: in copy mode
            // poll(2) transmits them itself and swallows what the driver
            // refused (the EBUSY a kick reports), so they would count as sent.
            // The kernel was busy: wait a little and kick again.
            std::thread::sleep(TX_BUSY_WAIT);
            continue;
        }
        if poller.rings_mut().fill_needs_wakeup() {
            poller.rings_mut().wakeup()?;
            add(&stats.wakeups, 1);
        }
        add(&stats.sleeps, 1);
        // Replies in flight or requested from other threads: sleep briefly, so
        // completions and requests are not left waiting a whole timeout.
        let sleep_ms = if poller.has_tx() && (poller.frames_in_tx() > 0 || poller.has_threaded()) {
            1
        } else {
            config.sleep_ms
        };
        // Requests queued from other threads (the socket API's sends) ring
        // the socket's doorbell while this sleeps; one that came just now
        // keeps it awake.
        if !poller.prepare_sleep() {
            poller.woke();
            continue;
        }
        let slept = poller.rings_mut().wait_rx(sleep_ms);
        poller.woke();
        match slept {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Whether the run loop busy polls (`--busy-poll`). Busy polling runs the NAPI
/// poll of the socket's NAPI id from the poller's syscalls; a socket whose
/// packets carry no NAPI id (veth's XDP rings: `SO_INCOMING_NAPI_ID` stays 0)
/// gives it nothing to run, and a poller that never sleeps then only takes the
/// CPU from the NAPI thread that does the work: on a shared core the queue
/// collapses to a tenth of its rate. So once packets have come, a socket without
/// a NAPI id falls back to sleeping in poll(2), with a warning.
#[derive(Debug)]
pub(crate) struct BusyPoll {
    on: bool,
    checked: bool,
    required: bool,
    fell_back: bool,
}

impl BusyPoll {
    pub(crate) fn new(on: bool) -> Self {
        Self {
            on,
            checked: !on,
            required: false,
            fell_back: false,
        }
    }

    /// Fail instead of falling back (`--require busy-poll`).
    pub(crate) fn required(mut self, required: bool) -> Self {
        self.required = required;
        self
    }

    /// [`Self::keep`], but a fallback that was required not to happen is an
    /// error that ends the run, naming the requirement.
    pub(crate) fn keep_or_fail(
        &mut self,
        received: u64,
        napi_id: impl FnOnce() -> io::Result<u32>,
        queue: u32,
    ) -> io::Result<bool> {
        let keep = self.keep(received, napi_id, queue);
        if self.required && self.fell_back {
            return Err(io::Error::other(
                "--require busy-poll: the socket's packets carry no NAPI id \
                 (SO_INCOMING_NAPI_ID is 0), so busy polling has no NAPI poll to run; \
                 busy polling needs a NIC driver with NAPI per queue: drop --require busy-poll",
            ));
        }
        Ok(keep)
    }

    /// Whether to busy poll now, given the packets received so far and the
    /// socket's NAPI id (asked once, after the first packet).
    pub(crate) fn keep(
        &mut self,
        received: u64,
        napi_id: impl FnOnce() -> io::Result<u32>,
        queue: u32,
    ) -> bool {
        if !self.checked && received > 0 {
            self.checked = true;
            match napi_id() {
                Ok(0) => {
                    tracing::warn!(
                        queue,
                        "--busy-poll: the socket's packets carry no NAPI id (SO_INCOMING_NAPI_ID \
                         is 0; veth's XDP rings give none), so busy polling has nothing to \
                         run: sleeping in poll(2) instead"
                    );
                    self.on = false;
                    self.fell_back = true;
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(queue, error = %e, "SO_INCOMING_NAPI_ID"),
            }
        }
        self.on
    }
}

/// At stop: hand the lossless backlogs to their consumers, whose threads run
/// until the pollers are done, for as long as they make progress, so that
/// `--pcap-overflow wait` loses nothing at the end either. What a consumer
/// stalled for `stall` has not taken is dropped and counted, so that a stuck
/// consumer cannot hold the stack up forever.
/// Returns how many views were dropped.
pub(crate) fn flush_backlogs<R: Rings>(poller: &mut Poller<R>, stall: Duration) -> u64 {
    let mut left = poller.backlogged();
    let mut progress = Instant::now();
    while left > 0 {
        poller.drain_backlogs();
        let now = poller.backlogged();
        if now < left {
            left = now;
            progress = Instant::now();
        } else if progress.elapsed() >= stall {
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    poller.drop_backlogs()
}

/// Send what is queued and wait for the kernel to complete it, at most
/// `timeout`; then give the spare frames back to the free list. The end of a
/// run: the last replies are not lost.
pub(crate) fn drain_tx<R: Rings + Kernel>(poller: &mut Poller<R>, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        poller.transmit();
        kick_tx(poller);
        if poller.tx_idle() || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    poller.return_spares();
}

/// Drain a threaded consumer until the poller is gone and the queue is empty.
pub(crate) fn consumer_thread(
    rx: ThreadedReceiver,
    mut consumer: Box<dyn Consumer>,
    done: &AtomicBool,
) {
    loop {
        let mut got = 0;
        while let Some(view) = rx.try_recv() {
            consumer.consume_owned(view);
            got += 1;
            if got == 256 {
                break;
            }
        }
        if got > 0 {
            consumer.flush();
            continue;
        }
        if done.load(Ordering::Acquire) && rx.is_empty() {
            consumer.flush();
            return;
        }
        rx.park(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests;
