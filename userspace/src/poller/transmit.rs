//! The transmit half of a round: completions back to the free list, queued
//! requests built and put on the TX ring (a packet larger than a frame as a
//! chain of descriptors), and the kicks the kernel asks for.

use std::sync::atomic::Ordering;

use super::{Poller, top_up_spares};
use crate::{
    ring::{KickOutcome, Rings, TxDesc, XDP_PKT_CONTD},
    tx::{Built, MAX_TX_SEGMENTS, TxRequest, add, build_datagram, build_echo},
};

impl<R: Rings> Poller<R> {
    /// The transmit half of a round: take back what the kernel has sent, keep
    /// spare frames ready, and turn queued requests into TX descriptors. Whether
    /// the kernel must then be kicked is [`Poller::wants_tx_kick`].
    pub fn transmit(&mut self) {
        if self.tx.is_none() {
            return;
        }
        self.take_completions();
        if let Some(tx) = self.tx.as_deref() {
            top_up_spares(tx, &mut self.free);
        }
        self.put_requests();
        let Some(tx) = self.tx.as_deref() else {
            return;
        };
        let (stats, in_tx) = (&tx.stats.poller, &self.in_tx);
        stats.in_flight.store(*in_tx, Ordering::Relaxed);
        // Senders waiting for room (the socket API's, async): there may be
        // some now.
        if tx.writable.has_waiters() && tx.is_writable() {
            tx.writable.wake_all();
        }
    }

    /// Frames the kernel has sent go back to the free list; a packet counts
    /// as completed with its last buffer.
    fn take_completions(&mut self) {
        let Self {
            tx,
            rings,
            pool,
            free,
            in_tx,
            comp,
            config,
            tx_continues,
            ..
        } = self;
        let Some(tx) = tx.as_deref() else {
            return;
        };
        let stats = &tx.stats.poller;
        // (`>=` is an equivalent mutant: with nothing in flight the completion
        // ring is empty.)
        if *in_tx > 0 {
            let n = rings.comp_consume(comp);
            let mut packets = 0u64;
            for &addr in &comp[..n] {
                // SAFETY: by the `Rings` contract the completion ring returns
                // each address given to `tx_produce` once.
                match unsafe { pool.received(addr) } {
                    Some(frame) => {
                        // A packet completes with its last buffer.
                        let continues = config.multi_buffer
                            && std::mem::take(&mut tx_continues[frame.index() as usize]);
                        packets += u64::from(!continues);
                        free.push(frame);
                    }
                    None => packets += 1,
                }
            }
            *in_tx -= n as u64;
            add(&stats.completed, packets);
        }
    }

    /// Turn queued requests into TX descriptors, as far as the ring has room
    /// for whole packets.
    fn put_requests(&mut self) {
        let Self {
            tx,
            rings,
            pool,
            free,
            in_tx,
            tx_descs,
            tx_tap,
            queue,
            config,
            tx_frames,
            tx_scratch,
            tx_continues,
            ..
        } = self;
        let Some(tx) = tx.as_deref() else {
            return;
        };
        let stats = &tx.stats.poller;
        if !tx.requests.is_empty() {
            // A request may become a packet of up to MAX_TX_SEGMENTS buffers, all
            // of which must go on the ring together.
            let per_request = if config.multi_buffer {
                MAX_TX_SEGMENTS as u32
            } else {
                1
            };
            let waiting = u32::try_from(tx.requests.len()).unwrap_or(u32::MAX);
            let mut room = rings.tx_capacity(waiting.saturating_mul(per_request));
            tx_descs.clear();
            let headroom = u64::from(pool.headroom());
            let mut packets = 0u64;
            loop {
                if room < per_request {
                    if !tx.requests.is_empty() {
                        add(&stats.ring_full, 1);
                    }
                    break;
                }
                let Some(request) = tx.requests.pop() else {
                    break;
                };
                let out = Built {
                    frames: tx_frames,
                    scratch: tx_scratch,
                    multi_buffer: config.multi_buffer,
                };
                match request {
                    TxRequest::Frame { frame, len } => out.frames.push((frame, len)),
                    TxRequest::Echo { view, layout } => {
                        build_echo(pool, free, &tx.stats, view, &layout, out);
                    }
                    TxRequest::Datagram { to, payload } => {
                        let to_send = (&to, &payload[..]);
                        build_datagram(pool, free, &tx.spares, &tx.stats, to_send, out);
                    }
                }
                let Some(last) = tx_frames.len().checked_sub(1) else {
                    continue;
                };
                if let Some(tap) = tx_tap.as_deref() {
                    if last == 0 {
                        let (frame, len) = &mut tx_frames[0];
                        let bytes = pool.bytes_mut(frame);
                        tap.transmitted(*queue, &bytes[..(*len as usize).min(bytes.len())]);
                    } else {
                        // A packet in several frames is whole in the scratch
                        // buffer it was scattered from.
                        tap.transmitted(*queue, tx_scratch);
                    }
                }
                if last > 0 {
                    add(&stats.multi_buffer, 1);
                }
                for (i, (frame, len)) in tx_frames.drain(..).enumerate() {
                    let options = if i < last {
                        tx_continues[frame.index() as usize] = true;
                        XDP_PKT_CONTD
                    } else {
                        0
                    };
                    // The unit tests' heap pools have no headroom; the
                    // offset is checked with the UMEM's 256 bytes by the root
                    // tests (echo on veth, replies byte-exact).
                    tx_descs.push(TxDesc {
                        addr: frame.into_addr(pool) + headroom,
                        len,
                        options,
                    });
                }
                room -= last as u32 + 1;
                packets += 1;
            }
            if !tx_descs.is_empty() {
                rings.tx_produce(tx_descs);
                *in_tx += tx_descs.len() as u64;
                add(&stats.queued, packets);
            }
        }
    }

    /// True when frames wait on the TX ring that the kernel has not taken yet,
    /// and it asked to be kicked (always, in copy mode): the caller then makes
    /// the syscall and tells [`Poller::tx_kicked`] what came of it. Frames the
    /// kernel took and has not completed yet need no kick.
    pub fn wants_tx_kick(&mut self) -> bool {
        self.in_tx > 0 && self.rings.tx_pending() > 0 && self.rings.tx_needs_wakeup()
    }

    /// The caller kicked the kernel to transmit, with this outcome: counted
    /// (a dropped frame is not sent, though the kernel completes it).
    pub fn tx_kicked(&mut self, outcome: KickOutcome) {
        if let Some(tx) = &self.tx {
            let stats = &tx.stats.poller;
            add(&stats.kicks, 1);
            match outcome {
                KickOutcome::Accepted => {}
                KickOutcome::Busy => add(&stats.kicks_busy, 1),
                KickOutcome::Dropped => add(&stats.kernel_dropped, 1),
            }
        }
    }

    /// True when nothing is queued for the TX ring and nothing is on it: every
    /// reply asked for has been sent and completed (or counted as not sent).
    pub fn tx_idle(&self) -> bool {
        self.in_tx == 0 && self.tx.as_ref().is_none_or(|t| t.requests.is_empty())
    }

    /// Give the spare frames, and the buffers of a packet whose last buffer
    /// never came, back to the free list (the end of a run).
    pub fn return_spares(&mut self) {
        let partial = self.chain.drain(..).map(|s| s.frame);
        self.free.extend(partial);
        self.discarding = false;
        if let Some(tx) = &self.tx {
            while let Some(frame) = tx.spares.pop() {
                self.free.push(frame);
            }
        }
    }
}
