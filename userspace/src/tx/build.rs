//! Echo replies, built by the poller from the request's frame, and datagrams
//! built by the poller in a free frame.

use super::{TxStats, add};
use crate::{
    frame::{Frame, FramePool, FrameView},
    wire::{Addressing, Layout, ReplyError, make_reply_in_place, write_datagram, write_reply},
};

/// Build the echo reply to the datagram in `view`: in its own frame when `view` is
/// the frame's last view, else in a free frame (copy-on-write). Returns the frame
/// and the reply's length, or `None` (counted) when there is no reply to send.
pub(crate) fn build_echo(
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
            // Heap pools in unit tests have no headroom; the root tests' UMEM
            // has 256 bytes (echo on veth, replies byte-exact).
            let start = (offset - headroom) as usize;
            match make_reply_in_place(&mut bytes[start..start + len as usize], layout) {
                Ok(reply_len) => {
                    // TX descriptors start at the headroom.
                    bytes.copy_within(start..start + reply_len, 0);
                    add(&stats.poller.in_place, 1);
                    Some((frame, reply_len as u32))
                }
                Err(_) => {
                    add(&stats.poller.reply_errors, 1);
                    free.push(frame);
                    None
                }
            }
        }
        Err(view) => {
            let Some(mut frame) = free.pop() else {
                add(&stats.poller.no_frame, 1);
                return None;
            };
            let request = view.bytes();
            let payload = request.get(layout.payload_offset()..layout.udp_end());
            let built = payload
                .ok_or(ReplyError::LayoutMismatch)
                .and_then(|p| write_reply(pool.bytes_mut(&mut frame), request, layout, p));
            match built {
                Ok(reply_len) => {
                    add(&stats.poller.copied, 1);
                    Some((frame, reply_len as u32))
                }
                Err(_) => {
                    add(&stats.poller.reply_errors, 1);
                    free.push(frame);
                    None
                }
            }
        }
    }
}

/// Build the datagram addressed as `to` with `payload` in a free frame (or a
/// spare one).
/// Returns the frame and the datagram's length, or `None` (counted: no free
/// frame, or a datagram the headers cannot carry).
pub(crate) fn build_datagram(
    pool: &mut FramePool,
    free: &mut Vec<Frame>,
    spares: &crossbeam_queue::ArrayQueue<Frame>,
    stats: &TxStats,
    to: &Addressing,
    payload: &[u8],
) -> Option<(Frame, u32)> {
    // The free list first; the spares were just topped up from it, and are
    // for the same purpose.
    let Some(mut frame) = free.pop().or_else(|| spares.pop()) else {
        add(&stats.poller.no_frame, 1);
        return None;
    };
    match write_datagram(pool.bytes_mut(&mut frame), to, payload) {
        Ok(len) => Some((frame, len as u32)),
        Err(_) => {
            add(&stats.poller.reply_errors, 1);
            free.push(frame);
            None
        }
    }
}
