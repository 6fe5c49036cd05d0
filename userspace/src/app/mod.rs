//! The application layer: UDP datagrams handed to handlers by destination port,
//! and the built-in apps of `--app` ([`Sink`], [`Echo`]).
//!
//! A [`Datagram`] borrows the [`FrameView`] of its frame (zero copy): the frame
//! stays out of the fill ring for as long as the datagram's view, or a clone of
//! it, lives. [`UdpConsumer`] is the frame consumer that parses frames
//! ([`crate::wire::parse`]) and routes datagrams to [`Handler`]s. Beside the
//! handler API, the [`socket`] API: a port bound as a [`UdpSocket`], with
//! batched receive and `send_to` any destination, from any thread.

use std::net::SocketAddr;

use crate::{
    frame::FrameView,
    tx::{Transmitter, TxError},
    wire::{Layout, Reject, parse},
};

mod apps;
#[cfg(feature = "quinn")]
pub mod quinn;
pub mod socket;
#[cfg(test)]
mod tests;
mod udp;

pub use apps::{Echo, PortCount, PortCounts, Sink};
pub use socket::{Received, SocketHandler, UdpSocket};
pub use udp::{Handler, UdpConsumer, UdpStats, UdpSummary};

/// A received UDP datagram: borrowed from the [`FrameView`] of its frame (zero
/// copy), with where and when it arrived.
#[derive(Clone, Copy, Debug)]
pub struct Datagram<'a> {
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
    /// The UDP payload, bounded by the UDP length, in one slice: the frame's
    /// own bytes, or for a multi-buffer packet ([`FrameView::is_chained`]) a
    /// copy in the consumer's scratch buffer; [`Datagram::payload_slices`]
    /// gives the same bytes in the frames themselves.
    pub payload: &'a [u8],
    /// VLAN IDs, outermost first; `None` where the frame has fewer tags.
    pub vlan: [Option<u16>; 2],
    /// RX queue the frame arrived on.
    pub queue: u32,
    /// Receive time, ns since the Unix epoch.
    pub timestamp_ns: u64,
    /// Header offsets, for rewriting the frame.
    pub layout: Layout,
    /// The whole frame as received, Ethernet padding included (contiguous,
    /// like `payload`).
    pub frame: &'a [u8],
    /// The view of the frame: clone it to keep the datagram beyond the call
    /// (the frame stays out of the fill ring while any view lives).
    pub view: &'a FrameView,
}

/// Parse the frame of `view` (see [`parse`]) into a datagram borrowing from it,
/// with its RX queue and timestamp. A multi-buffer packet is parsed (its
/// checksum verified, and its payload given) from a copy in `scratch`, reused
/// across calls: the parser's bounds and checks are the same for every
/// packet, and it needs the datagram in one slice.
#[inline]
pub fn parse_view<'a>(
    view: &'a FrameView,
    scratch: &'a mut Vec<u8>,
) -> Result<Datagram<'a>, Reject> {
    parse(view.contiguous(scratch)).map(|p| Datagram {
        src: p.src,
        dst: p.dst,
        payload: p.payload,
        vlan: p.vlan,
        queue: view.queue(),
        timestamp_ns: view.timestamp_ns(),
        layout: p.layout,
        frame: p.frame,
        view,
    })
}

impl Datagram<'_> {
    /// The payload as slices of the frames it arrived in, without a copy: one
    /// slice, unless the packet came in several buffers.
    pub fn payload_slices(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.view
            .slices(self.layout.payload_offset(), self.payload.len())
    }

    /// Answer this datagram with its own payload (see [`Transmitter::echo`]).
    #[inline]
    pub fn echo(&self, tx: &Transmitter) -> Result<(), TxError> {
        tx.echo(self.view, &self.layout)
    }

    /// Answer this datagram with `payload` (see [`Transmitter::reply`]).
    pub fn reply(&self, tx: &Transmitter, payload: &[u8]) -> Result<(), TxError> {
        tx.reply(self.frame, &self.layout, payload)
    }
}
