//! The wire layer: from an Ethernet frame to a parsed UDP datagram ([`Parsed`]),
//! or a [`Reject`] naming why the frame is not one; and the frame rewrites a reply
//! needs ([`make_reply_in_place`], [`write_reply`]), and the frames the send path
//! builds ([`write_datagram`]). Pure functions over byte
//! slices: this layer imports nothing else of the crate (smoltcp's `wire`), so it
//! is tested, fuzzed and benchmarked on its own.
//!
//! What the kernel's `ip_rcv` + `udp_rcv` would check, this checks: Ethernet, up to
//! two VLAN tags (802.1Q, 802.1ad, and the pre-standard 0x9100), IPv4 (with
//! options) or IPv6 (with extension headers), UDP; the IPv4 header checksum and the
//! UDP checksum over the pseudo-header. Every length comes from a length field (IPv4
//! total length, IPv6 payload length, UDP length), never from the frame's length:
//! Ethernet pads frames to 60 bytes, and the padding is not payload.
//!
//! # Agreement with the XDP program
//!
//! The XDP program (`xdp_ebpf::steer`) decides which frames reach this parser. Both
//! apply the same length rules and limits ([`xdp_ebpf::MAX_VLAN_TAGS`],
//! [`xdp_ebpf::MAX_IPV6_EXT_HEADERS`], [`xdp_ebpf::MAX_HEADER_BYTES`]), and where the
//! program names a reason for passing a frame, this parser rejects it with the
//! corresponding [`Reject`] (the tests run the program's whole test corpus through
//! both). The differences are deliberate:
//! - checksums: the program does not verify them (it would cost a pass over every
//!   payload in the kernel); this parser does ([`Reject::BadIpv4Checksum`],
//!   [`Reject::BadUdpChecksum`], [`Reject::ZeroUdpChecksumIpv6`]).
//! - fragments: the program steers a first fragment (offset 0, More Fragments) by
//!   its UDP header; this parser does no reassembly and rejects every fragment,
//!   first ones included, with [`Reject::Fragment`]. An IPv6 atomic fragment (offset
//!   0, M 0, RFC 6946) is a whole datagram and is accepted, as by the kernel.
//! - an IPv6 Routing header with Segments Left > 0 ([`Reject::RoutingHeader`]): the
//!   program steers it, but this host is not the datagram's final destination.
//!
//! # Use of etherparse
//!
//! Parsing goes through etherparse's per-layer slices (`Ethernet2Slice`,
//! `SingleVlanSlice`, `Ipv4Slice`, `Ipv6HeaderSlice`, `Ipv6ExtensionsSlice`,
//! `UdpHeaderSlice`, `UdpSlice`) and its checksum helpers; `parse` only decides the
//! order and where to stop. Not `LaxSlicedPacket`: where a length field disagrees
//! with the data it falls back to the slice length, which turns Ethernet padding
//! into payload. Not `SlicedPacket::from_ethernet` either, although its lengths are
//! strict (it calls the same slices): it walks a third VLAN tag and MACsec, walks
//! through IPv4 and IPv6 AH and hands back the UDP datagram behind it (which must go
//! to the kernel to be authenticated), does not slice the UDP header of a first
//! fragment, takes a zero UDP length or IPv6 payload length as "the rest of the
//! slice" (jumbograms, RFC 2675, which we do not support), and parses TCP and ICMP
//! headers we would throw away. What etherparse does not do is written by hand in
//! `parse.rs`, each with a comment saying why.

use std::net::SocketAddr;

use serde::Serialize;

#[cfg(any(test, feature = "oracle"))]
#[doc(hidden)]
pub mod oracle;
mod parse;
mod reply;
#[cfg(test)]
pub(crate) mod tests;

pub use parse::parse;

/// The Internet checksum (RFC 1071) of `bytes` (an odd last byte is padded with
/// zero), as the value a header stores big-endian: "the 16-bit one's complement
/// of the one's complement sum of all 16-bit words".
pub fn internet_checksum(bytes: &[u8]) -> u16 {
    // etherparse sums native-endian words; `to_be` gives the network-order value.
    etherparse::checksum::Sum16BitWords::new()
        .add_slice(bytes)
        .ones_complement()
        .to_be()
}
pub use reply::{
    Addressing, REPLY_HOP_LIMIT, ReplyError, make_reply_in_place, write_datagram, write_reply,
};

/// The IP version of a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpVersion {
    /// IPv4 (RFC 791).
    V4,
    /// IPv6 (RFC 8200).
    V6,
}

/// Where a datagram's headers lie in its frame: what the echo path needs to
/// rewrite the frame in place.
///
/// Only [`parse`] makes one, so a `Layout` always describes a well-formed frame;
/// the reply functions still check that it fits the frame they are given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Offset of the IP header: 14 plus 4 per VLAN tag.
    l3: usize,
    /// Offset of the UDP header: `l3` plus the IP header with its options or
    /// extension headers.
    l4: usize,
    /// The IP packet's length by its own length field: IPv4 total length, or 40 +
    /// IPv6 payload length. The frame may be longer (Ethernet padding).
    ip_len: usize,
    /// The UDP length field: header and payload.
    udp_len: usize,
    version: IpVersion,
}

impl Layout {
    /// Offset of the IP header in the frame.
    pub fn l3(&self) -> usize {
        self.l3
    }

    /// Offset of the UDP header in the frame.
    pub fn l4(&self) -> usize {
        self.l4
    }

    /// The IP version.
    pub fn ip_version(&self) -> IpVersion {
        self.version
    }

    /// Length of the IP packet by its header (IPv4 total length, or 40 + IPv6
    /// payload length); `l3() + ip_len()` is where the IP packet ends.
    pub fn ip_len(&self) -> usize {
        self.ip_len
    }

    /// The UDP length: 8 header bytes plus the payload.
    pub fn udp_len(&self) -> usize {
        self.udp_len
    }

    /// VLAN tags between the Ethernet header and the IP header.
    pub fn vlan_tags(&self) -> usize {
        self.l3.saturating_sub(parse::ETH_HLEN) / parse::VLAN_HLEN
    }

    /// Offset of the first payload byte.
    pub fn payload_offset(&self) -> usize {
        self.l4 + parse::UDP_HLEN
    }

    /// Offset just past the UDP datagram; bytes from here to the end of the frame
    /// (IP payload beyond the UDP length, Ethernet padding) are not the datagram's.
    pub fn udp_end(&self) -> usize {
        self.l4.saturating_add(self.udp_len)
    }
}

/// A UDP datagram parsed from a frame, without receive metadata: what [`parse`]
/// returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
    /// The UDP payload, bounded by the UDP length.
    pub payload: &'a [u8],
    /// VLAN IDs, outermost first; `None` where the frame has fewer tags.
    pub vlan: [Option<u16>; 2],
    /// Header offsets, for rewriting the frame.
    pub layout: Layout,
    /// The whole frame as received, Ethernet padding included.
    pub frame: &'a [u8],
}

/// Why a frame is not a datagram for the stack.
///
/// Where the XDP program passes a frame with a counter, the reason here
/// corresponds: `malformed_truncated` is [`Reject::Truncated`],
/// `malformed_bad_ihl` and `malformed_bad_version` are [`Reject::BadIpHeader`],
/// `malformed_bad_length` is [`Reject::BadLength`], `malformed_too_many_headers` is
/// [`Reject::TooManyHeaders`], `pass_fragment` is [`Reject::Fragment`],
/// `pass_ieee8023` and a non-UDP `pass_not_steered` are [`Reject::NotUdp`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Reject {
    /// Well-formed as far as parsed, but not UDP over IPv4/IPv6: another EtherType
    /// (ARP, an IEEE 802.3 length field, MACsec), another IP protocol, an IPv6
    /// packet with No Next Header, or UDP behind an IPsec AH (which the kernel must
    /// authenticate; the XDP program passes those too).
    #[error("not a UDP datagram")]
    NotUdp,
    /// The frame ends inside a fixed-size header (Ethernet, VLAN tag, the fixed
    /// part of the IPv4 or IPv6 header).
    #[error("frame ends inside a header")]
    Truncated,
    /// IP version disagrees with the EtherType, IPv4 IHL below 5 or beyond the
    /// total length.
    #[error("bad IP version or header length")]
    BadIpHeader,
    /// Inconsistent lengths: an IP total/payload length beyond the frame, an IPv6
    /// payload length of 0 (jumbogram, not supported), an extension header or UDP
    /// header beyond the IP payload, a UDP length below 8 or beyond the IP payload.
    #[error("inconsistent IP or UDP length")]
    BadLength,
    /// The IPv4 header checksum is wrong (RFC 791).
    #[error("bad IPv4 header checksum")]
    BadIpv4Checksum,
    /// The UDP checksum is wrong (RFC 768, RFC 8200 8.1).
    #[error("bad UDP checksum")]
    BadUdpChecksum,
    /// A zero UDP checksum over IPv6, which RFC 8200 8.1 says to discard.
    #[error("zero UDP checksum over IPv6")]
    ZeroUdpChecksumIpv6,
    /// An IP fragment, first fragments included: there is no reassembly.
    #[error("IP fragment (no reassembly)")]
    Fragment,
    /// More than two VLAN tags, more than eight IPv6 extension headers or a
    /// Hop-by-Hop header not right after the IPv6 header, or headers ending beyond
    /// [`xdp_ebpf::MAX_HEADER_BYTES`].
    #[error("too many headers")]
    TooManyHeaders,
    /// A UDP datagram behind an IPv6 Routing header with Segments Left > 0: this
    /// host is an intermediate hop, not the final destination (RFC 8200 4.4), and
    /// the UDP checksum is over the final destination's address (8.1). Linux
    /// drops these too (unless it forwards them).
    #[error("IPv6 routing header with segments left")]
    RoutingHeader,
}

impl Reject {
    /// Every reason, in [`RejectCounters`] order.
    pub const ALL: [Reject; 10] = [
        Reject::NotUdp,
        Reject::Truncated,
        Reject::BadIpHeader,
        Reject::BadLength,
        Reject::BadIpv4Checksum,
        Reject::BadUdpChecksum,
        Reject::ZeroUdpChecksumIpv6,
        Reject::Fragment,
        Reject::TooManyHeaders,
        Reject::RoutingHeader,
    ];

    /// A stable snake_case name, used in statistics output and JSON.
    pub const fn name(self) -> &'static str {
        match self {
            Reject::NotUdp => "not_udp",
            Reject::Truncated => "truncated",
            Reject::BadIpHeader => "bad_ip_header",
            Reject::BadLength => "bad_length",
            Reject::BadIpv4Checksum => "bad_ipv4_checksum",
            Reject::BadUdpChecksum => "bad_udp_checksum",
            Reject::ZeroUdpChecksumIpv6 => "zero_udp_checksum_ipv6",
            Reject::Fragment => "fragment",
            Reject::TooManyHeaders => "too_many_headers",
            Reject::RoutingHeader => "routing_header",
        }
    }
}

/// How many frames were rejected, per [`Reject`] reason.
///
/// Serializes as an object with one field per reason, named by [`Reject::name`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RejectCounters {
    /// [`Reject::NotUdp`].
    pub not_udp: u64,
    /// [`Reject::Truncated`].
    pub truncated: u64,
    /// [`Reject::BadIpHeader`].
    pub bad_ip_header: u64,
    /// [`Reject::BadLength`].
    pub bad_length: u64,
    /// [`Reject::BadIpv4Checksum`].
    pub bad_ipv4_checksum: u64,
    /// [`Reject::BadUdpChecksum`].
    pub bad_udp_checksum: u64,
    /// [`Reject::ZeroUdpChecksumIpv6`].
    pub zero_udp_checksum_ipv6: u64,
    /// [`Reject::Fragment`].
    pub fragment: u64,
    /// [`Reject::TooManyHeaders`].
    pub too_many_headers: u64,
    /// [`Reject::RoutingHeader`].
    pub routing_header: u64,
}

impl RejectCounters {
    fn slot(&mut self, reason: Reject) -> &mut u64 {
        match reason {
            Reject::NotUdp => &mut self.not_udp,
            Reject::Truncated => &mut self.truncated,
            Reject::BadIpHeader => &mut self.bad_ip_header,
            Reject::BadLength => &mut self.bad_length,
            Reject::BadIpv4Checksum => &mut self.bad_ipv4_checksum,
            Reject::BadUdpChecksum => &mut self.bad_udp_checksum,
            Reject::ZeroUdpChecksumIpv6 => &mut self.zero_udp_checksum_ipv6,
            Reject::Fragment => &mut self.fragment,
            Reject::TooManyHeaders => &mut self.too_many_headers,
            Reject::RoutingHeader => &mut self.routing_header,
        }
    }

    /// Count one frame rejected for `reason`.
    #[inline]
    pub fn count(&mut self, reason: Reject) {
        *self.slot(reason) += 1;
    }

    /// Count `n` frames rejected for `reason`.
    pub fn add(&mut self, reason: Reject, n: u64) {
        *self.slot(reason) += n;
    }

    /// The count for `reason`.
    pub fn get(&self, reason: Reject) -> u64 {
        match reason {
            Reject::NotUdp => self.not_udp,
            Reject::Truncated => self.truncated,
            Reject::BadIpHeader => self.bad_ip_header,
            Reject::BadLength => self.bad_length,
            Reject::BadIpv4Checksum => self.bad_ipv4_checksum,
            Reject::BadUdpChecksum => self.bad_udp_checksum,
            Reject::ZeroUdpChecksumIpv6 => self.zero_udp_checksum_ipv6,
            Reject::Fragment => self.fragment,
            Reject::TooManyHeaders => self.too_many_headers,
            Reject::RoutingHeader => self.routing_header,
        }
    }

    /// All rejected frames.
    pub fn total(&self) -> u64 {
        self.iter().map(|(_, n)| n).sum()
    }

    /// `(name, count)` for every reason, in [`Reject::ALL`] order, names as in
    /// [`Reject::name`].
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Reject::ALL.into_iter().map(|r| (r.name(), self.get(r)))
    }
}

impl std::ops::AddAssign<&RejectCounters> for RejectCounters {
    /// Add another set of counters (e.g. another queue's) to these.
    fn add_assign(&mut self, other: &RejectCounters) {
        for r in Reject::ALL {
            *self.slot(r) += other.get(r);
        }
    }
}
