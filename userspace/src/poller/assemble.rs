//! The receive half's multi-buffer assembly: RX descriptors into packets,
//! chains of `XDP_PKT_CONTD` descriptors into one view of several frames.

use super::{Packet, Poller};
use crate::{
    frame::{MAX_SEGMENTS, RxMeta, Segment},
    ring::{Rings, RxDesc, XDP_PKT_CONTD},
    tx::add,
};

impl<R: Rings> Poller<R> {
    /// Take one RX descriptor: the packet it completes (in one buffer, or the
    /// last of a chain, which is then in `self.chain`), or `None` while a chain
    /// is still open or when the descriptor was dropped (counted).
    #[inline]
    pub(super) fn assemble(&mut self, desc: RxDesc, now_ns: u64) -> Option<Packet> {
        let more = desc.options & XDP_PKT_CONTD != 0;
        // SAFETY: by the `Rings` contract, `desc.addr` went to the fill ring (in
        // `refill`) and comes back exactly once, here.
        let Some(mut frame) = (unsafe { self.pool.received(desc.addr) }) else {
            // Not an address of our UMEM: the kernel never does this; count it
            // as lost rather than trust it, with the packet it belongs to.
            add(&self.stats.rx_malformed, 1);
            self.drop_chain(more);
            return None;
        };
        self.in_kernel -= 1;
        // Frame sizes are powers of two (FramePool checks): offsets are a mask.
        let offset_mask = u64::from(self.pool.frame_size()) - 1;
        let offset = ((desc.addr & offset_mask) as u32).max(self.pool.headroom());
        let len = desc.len.min(self.pool.frame_size() - offset);
        if self.discarding {
            // The rest of a packet already dropped.
            self.free.push(frame);
            self.discarding = more;
            return None;
        }
        if !more && self.chain.is_empty() {
            let meta = RxMeta {
                queue: self.queue,
                timestamp_ns: self.stamp(&mut frame, offset, now_ns),
            };
            return Some((Some(frame), offset, len, meta));
        }
        self.assemble_chain(Segment { frame, offset, len }, more, now_ns)
    }

    /// A buffer of a multi-buffer packet (`XDP_PKT_CONTD` chains), which may
    /// span rounds: the packet when `segment` is its last buffer.
    #[cold]
    fn assemble_chain(&mut self, mut segment: Segment, more: bool, now_ns: u64) -> Option<Packet> {
        if self.chain.is_empty() {
            // The first buffer carries the XDP program's stamp.
            self.chain_meta = RxMeta {
                queue: self.queue,
                timestamp_ns: self.stamp(&mut segment.frame, segment.offset, now_ns),
            };
        }
        self.chain.push(segment);
        if more {
            if self.chain.len() == MAX_SEGMENTS {
                add(&self.stats.rx_malformed, 1);
                self.drop_chain(true);
            }
            return None;
        }
        add(&self.stats.rx_multi_buffer, 1);
        let total = self.chain.iter().map(|s| s.len).sum();
        Some((None, 0, total, self.chain_meta))
    }

    /// The packet being assembled is lost (a bad descriptor in it, or too many
    /// buffers): its frames go back, and with `more` so will the rest of its
    /// buffers as they arrive.
    #[cold]
    fn drop_chain(&mut self, more: bool) {
        for segment in self.chain.drain(..) {
            self.free.push(segment.frame);
        }
        self.discarding = more;
    }

    /// A packet nobody consumes: its frames go back to the free list.
    #[inline]
    pub(super) fn free_packet(&mut self, packet: Packet) {
        match packet.0 {
            Some(frame) => self.free.push(frame),
            None => self.free.extend(self.chain.drain(..).map(|s| s.frame)),
        }
    }

    /// Frames of a multi-buffer packet whose last buffer has not arrived yet.
    pub fn frames_in_chain(&self) -> usize {
        self.chain.len()
    }
}
