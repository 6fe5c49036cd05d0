//! Echo replies, built by the poller from the request's frame, and datagrams
//! built by the poller in free frames: one frame each, or, with multi-buffer,
//! a chain of frames for a packet that one frame cannot hold.

use super::{MAX_TX_SEGMENTS, TxStats, add, frame_len};
use crate::{
    frame::{Frame, FramePool, FrameView, Segment},
    wire::{Addressing, Layout, ReplyError, make_reply_in_place, write_datagram, write_reply},
};

/// What the builders fill: the frames of one packet to transmit, in order,
/// each with its length (from the pool's headroom), and, for a packet in
/// several frames, the whole packet in `scratch` (what the TX tap is shown).
pub(crate) struct Built<'a> {
    pub(crate) frames: &'a mut Vec<(Frame, u32)>,
    pub(crate) scratch: &'a mut Vec<u8>,
    /// The socket sends multi-buffer packets (bound with `XDP_USE_SG`).
    pub(crate) multi_buffer: bool,
}

/// Build the echo reply to the datagram in `view` into `out`: in its own frame
/// when `view` is the frame's last view, else in a free frame (copy-on-write).
/// Nothing is added (and it is counted) when there is no reply to send.
pub(crate) fn build_echo(
    pool: &mut FramePool,
    free: &mut Vec<Frame>,
    stats: &TxStats,
    view: FrameView,
    layout: &Layout,
    out: Built<'_>,
) {
    if view.is_chained() {
        return build_echo_chain(pool, free, stats, view, layout, out);
    }
    let headroom = pool.headroom();
    match pool.take_unique(view) {
        Ok((mut frame, offset, len)) => {
            let bytes = pool.bytes_mut(&mut frame);
            // Heap pools in unit tests have no headroom; the root tests' UMEM
            // has 256 bytes (echo on veth, replies byte-exact).
            let start = (offset - headroom) as usize;
            match make_reply_in_place(&mut bytes[start..start + len as usize], layout) {
                Ok(reply_len) => {
                    // TX descriptors start at the headroom.
                    bytes.copy_within(start..start + reply_len, 0);
                    add(&stats.poller.in_place, 1);
                    out.frames.push((frame, reply_len as u32));
                }
                Err(_) => {
                    add(&stats.poller.reply_errors, 1);
                    free.push(frame);
                }
            }
        }
        Err(view) => {
            let Some(mut frame) = free.pop() else {
                add(&stats.poller.no_frame, 1);
                return;
            };
            let request = view.bytes();
            let payload = request.get(layout.payload_offset()..layout.udp_end());
            let built = payload
                .ok_or(ReplyError::LayoutMismatch)
                .and_then(|p| write_reply(pool.bytes_mut(&mut frame), request, layout, p));
            match built {
                Ok(reply_len) => {
                    add(&stats.poller.copied, 1);
                    out.frames.push((frame, reply_len as u32));
                }
                Err(_) => {
                    add(&stats.poller.reply_errors, 1);
                    free.push(frame);
                }
            }
        }
    }
}

/// The echo reply to a multi-buffer datagram. The reply's UDP checksum covers
/// the whole payload and the reply code works on one contiguous buffer, so the
/// packet is gathered into `scratch`, answered there, and scattered back into
/// the request's own frames when it was their last view (else into free
/// frames): one copy each way, on a path that is about a packet's size of
/// memory bandwidth per reply, not its per-packet cost.
fn build_echo_chain(
    pool: &mut FramePool,
    free: &mut Vec<Frame>,
    stats: &TxStats,
    view: FrameView,
    layout: &Layout,
    out: Built<'_>,
) {
    if !out.multi_buffer {
        // A chain arrives only on a socket bound for multi-buffer, which
        // sends them too; anything else is a bug to count, not to send.
        add(&stats.poller.reply_errors, 1);
        return;
    }
    out.scratch.clear();
    for seg in view.segments() {
        out.scratch.extend_from_slice(seg);
    }
    let cap = (pool.frame_size() - pool.headroom()) as usize;
    let reply = make_reply_in_place(out.scratch, layout);
    let Some(reply_len) = reply
        .ok()
        .filter(|len| len.div_ceil(cap) <= MAX_TX_SEGMENTS)
    else {
        add(&stats.poller.reply_errors, 1);
        return;
    };
    out.scratch.truncate(reply_len);
    let mut own = Vec::new();
    if let Err(view) = pool.take_unique_segments(view, &mut own) {
        // Shared (the capture holds it too): the reply goes in free frames.
        drop(view);
    }
    let mut frames = own.into_iter().map(|s: Segment| s.frame);
    if scatter(pool, free, &mut frames, out) {
        add(&stats.poller.copied, 1);
    } else {
        add(&stats.poller.no_frame, 1);
    }
    free.extend(frames);
}

/// Copy `out.scratch` into frames, a frame's usable bytes each, taken from
/// `frames` and then `free`, pushing them to `out.frames`. False (and every
/// frame taken is back in `free`) when there are not enough.
fn scatter(
    pool: &mut FramePool,
    free: &mut Vec<Frame>,
    frames: &mut impl Iterator<Item = Frame>,
    out: Built<'_>,
) -> bool {
    let cap = (pool.frame_size() - pool.headroom()) as usize;
    let start = out.frames.len();
    for chunk in out.scratch.chunks(cap) {
        let Some(mut frame) = frames.next().or_else(|| free.pop()) else {
            free.extend(out.frames.drain(start..).map(|(f, _)| f));
            return false;
        };
        pool.bytes_mut(&mut frame)[..chunk.len()].copy_from_slice(chunk);
        out.frames.push((frame, chunk.len() as u32));
    }
    true
}

/// Build the datagram addressed as `to` with `payload` into `out`, in a free
/// frame (or a spare one), or in a chain of free frames when one cannot hold
/// it and the socket sends multi-buffer packets. Nothing is added (and it is
/// counted: no free frame, or a datagram the headers cannot carry) otherwise.
pub(crate) fn build_datagram(
    pool: &mut FramePool,
    free: &mut Vec<Frame>,
    spares: &crossbeam_queue::ArrayQueue<Frame>,
    stats: &TxStats,
    (to, payload): (&Addressing, &[u8]),
    out: Built<'_>,
) {
    let cap = (pool.frame_size() - pool.headroom()) as usize;
    let len = frame_len(to, payload.len());
    if out.multi_buffer && len > cap {
        if len.div_ceil(cap) > MAX_TX_SEGMENTS {
            // More buffers than the kernel sends one packet in.
            add(&stats.poller.reply_errors, 1);
            return;
        }
        out.scratch.clear();
        out.scratch.resize(len, 0);
        match write_datagram(out.scratch, to, payload) {
            Ok(len) => {
                out.scratch.truncate(len);
                // From the free list only: the spares are for single frames
                // that handlers fill on their own threads.
                if !scatter(pool, free, &mut std::iter::empty(), out) {
                    add(&stats.poller.no_frame, 1);
                }
            }
            Err(_) => add(&stats.poller.reply_errors, 1),
        }
        return;
    }
    // The free list first; the spares were just topped up from it, and are
    // for the same purpose.
    let Some(mut frame) = free.pop().or_else(|| spares.pop()) else {
        add(&stats.poller.no_frame, 1);
        return;
    };
    match write_datagram(pool.bytes_mut(&mut frame), to, payload) {
        Ok(len) => out.frames.push((frame, len as u32)),
        Err(_) => {
            add(&stats.poller.reply_errors, 1);
            free.push(frame);
        }
    }
}
