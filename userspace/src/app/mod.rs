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
    /// The UDP payload, bounded by the UDP length.
    pub payload: &'a [u8],
    /// VLAN IDs, outermost first; `None` where the frame has fewer tags.
    pub vlan: [Option<u16>; 2],
    /// RX queue the frame arrived on.
    pub queue: u32,
    /// Receive time, ns since the Unix epoch.
    pub timestamp_ns: u64,
    /// Header offsets, for rewriting the frame.
    pub layout: Layout,
    /// The whole frame as received, Ethernet padding included.
    pub frame: &'a [u8],
    /// The view of the frame: clone it to keep the datagram beyond the call
    /// (the frame stays out of the fill ring while any view lives).
    pub view: &'a FrameView,
}

/// Parse the frame of `view` (see [`parse`]) into a datagram borrowing from it,
/// with its RX queue and timestamp.
#[inline]
pub fn parse_view(view: &FrameView) -> Result<Datagram<'_>, Reject> {
    parse(view.bytes()).map(|p| Datagram {
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
