//! The XDP program's steering decision: parse Ethernet, up to two VLAN tags, IPv4 or
//! IPv6 (with a bounded chain of extension headers) and UDP, and say whether the
//! frame goes to the AF_XDP socket or to the kernel, and why.
//!
//! The same code runs in the kernel (through [`PacketBytes`] over `XdpContext`, see
//! `main.rs`) and on the host (over `[u8]`), so unit tests and fuzzing exercise
//! exactly what the verifier accepted. Every read goes through [`PacketBytes`], which
//! bounds-checks against the end of the frame; every offset is bounded by
//! [`MAX_HEADER_BYTES`] before it is used, which keeps the verifier's range tracking
//! simple and rules out arithmetic overflow on the host.
//!
//! A multi-buffer frame (XDP `xdp.frags`, jumbo frames) is a first buffer and
//! fragments behind it. Headers are read from the first buffer only
//! ([`PacketBytes::u8_at`], [`PacketBytes::be16_at`]); a header that does not fit
//! in it (Ethernet, VLAN tags, the IP header and IPv6 extension headers, the UDP
//! header) makes the frame truncated, as a frame that ends there would be. The
//! length fields are checked against the whole packet, every buffer included
//! ([`PacketBytes::packet_len`]).
//!
//! Lengths are checked the way the kernel's receive path checks them:
//! - IPv4 (RFC 791): IHL >= 5 and IHL*4 <= total length; the packet must hold the
//!   whole total length, but may be longer (Ethernet pads frames to 60 bytes).
//! - IPv6 (RFC 8200): the packet must hold 40 + payload length; a zero payload
//!   length (jumbogram, RFC 2675) is not supported and counted as a bad length.
//! - UDP (RFC 768): "Length is the length in octets of this user datagram including
//!   this header and the data. (This means the minimum value of the length is
//!   eight.)" It may not exceed the IP payload, except in a first fragment, where it
//!   describes the reassembled datagram.

use crate::abi::{Counter, MAX_HEADER_BYTES, MAX_IPV6_EXT_HEADERS, MAX_VLAN_TAGS, SteerMode};

/// Bounds-checked reads from a frame's first buffer, and the length of the whole
/// packet.
///
/// Implementations return `None` when any byte of the read lies beyond the first
/// buffer (the whole frame, unless it is a multi-buffer one); they never panic and
/// never read out of bounds.
pub trait PacketBytes {
    /// The byte at `off`.
    fn u8_at(&self, off: usize) -> Option<u8>;
    /// The big-endian `u16` at `off`.
    fn be16_at(&self, off: usize) -> Option<u16>;
    /// The length of the whole packet, every buffer of a multi-buffer frame
    /// included: at least the length of the first buffer, which the reads see.
    fn packet_len(&self) -> usize;
}

impl PacketBytes for [u8] {
    #[inline(always)]
    fn u8_at(&self, off: usize) -> Option<u8> {
        self.get(off).copied()
    }

    #[inline(always)]
    fn be16_at(&self, off: usize) -> Option<u16> {
        let end = off.checked_add(2)?;
        let b = self.get(off..end)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }

    #[inline(always)]
    fn packet_len(&self) -> usize {
        self.len()
    }
}

/// What the program does with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Redirect into the AF_XDP socket of the frame's RX queue.
    Steer,
    /// Pass to the kernel; the counter says why.
    Pass(Counter),
}

/// Decide what to do with `frame` under `mode`; `port_steered(p)` says whether UDP
/// destination port `p` is in the port set.
#[inline(always)]
pub fn classify<P, F>(frame: &P, mode: SteerMode, port_steered: F) -> Verdict
where
    P: PacketBytes + ?Sized,
    F: Fn(u16) -> bool,
{
    if let SteerMode::All = mode {
        return Verdict::Steer;
    }
    match udp_destination(frame) {
        Ok(Some(port)) if port_steered(port) => Verdict::Steer,
        Ok(_) => Verdict::Pass(Counter::PassNotSteered),
        Err(reason) => Verdict::Pass(reason),
    }
}

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
/// Pre-standard QinQ outer tag, still sent by some switches.
const ETH_P_QINQ1: u16 = 0x9100;
/// EtherType values below this are IEEE 802.3 length fields.
const ETH_P_802_3_MIN: u16 = 0x0600;
const VLAN_HLEN: usize = 4;

const IPV4_MIN_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;
const UDP_HLEN: usize = 8;

const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_NONE: u8 = 59;
const IPPROTO_DSTOPTS: u8 = 60;
/// Every IPv6 extension header we walk is at least 8 octets (RFC 8200 4).
const IPV6_EXT_MIN_LEN: usize = 8;

/// IPv4 flags/fragment-offset field (RFC 791): bit 13 is More Fragments, the low 13
/// bits the offset in 8-octet units.
const IPV4_MF: u16 = 0x2000;
const IPV4_OFFSET_MASK: u16 = 0x1fff;
/// IPv6 fragment header (RFC 8200 4.5): offset in the top 13 bits, M flag in bit 0.
const IPV6_FRAG_OFFSET_MASK: u16 = 0xfff8;
const IPV6_FRAG_MORE: u16 = 0x0001;

type Parse<T> = Result<T, Counter>;

#[inline(always)]
fn truncated<T>(v: Option<T>) -> Parse<T> {
    v.ok_or(Counter::MalformedTruncated)
}

/// True when the frame's first buffer holds at least `len` bytes: a header that
/// ends there can be read.
#[inline(always)]
fn holds<P: PacketBytes + ?Sized>(frame: &P, len: usize) -> bool {
    len == 0 || frame.u8_at(len - 1).is_some()
}

/// True when the whole packet, every buffer included, is at least `len` bytes
/// long: what the length fields of the headers are checked against.
#[inline(always)]
fn spans<P: PacketBytes + ?Sized>(frame: &P, len: usize) -> bool {
    len <= frame.packet_len()
}

#[inline(always)]
fn is_vlan(ethertype: u16) -> bool {
    ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD || ethertype == ETH_P_QINQ1
}

/// The UDP destination port of `frame`, `None` for a well-formed frame that is not
/// UDP over IP, or the counter naming why the frame cannot be steered.
#[inline(always)]
pub fn udp_destination<P: PacketBytes + ?Sized>(frame: &P) -> Parse<Option<u16>> {
    let mut ethertype = truncated(frame.be16_at(12))?;
    let mut l3 = ETH_HLEN;
    let mut tags = 0;
    while is_vlan(ethertype) {
        if tags == MAX_VLAN_TAGS {
            return Err(Counter::MalformedTooManyHeaders);
        }
        tags += 1;
        ethertype = truncated(frame.be16_at(l3 + 2))?;
        l3 += VLAN_HLEN;
    }
    if ethertype < ETH_P_802_3_MIN {
        return Err(Counter::PassIeee8023);
    }
    match ethertype {
        ETH_P_IP => ipv4(frame, l3),
        ETH_P_IPV6 => ipv6(frame, l3),
        _ => Ok(None),
    }
}

#[inline(always)]
fn ipv4<P: PacketBytes + ?Sized>(frame: &P, l3: usize) -> Parse<Option<u16>> {
    let version_ihl = truncated(frame.u8_at(l3))?;
    if version_ihl >> 4 != 4 {
        return Err(Counter::MalformedBadVersion);
    }
    let ihl = usize::from(version_ihl & 0x0f) * 4;
    if ihl < IPV4_MIN_HLEN {
        return Err(Counter::MalformedBadIhl);
    }
    let total = usize::from(truncated(frame.be16_at(l3 + 2))?);
    if ihl > total {
        return Err(Counter::MalformedBadIhl);
    }
    if !holds(frame, l3 + IPV4_MIN_HLEN) {
        return Err(Counter::MalformedTruncated);
    }
    if !spans(frame, l3 + total) {
        // Total length longer than the frame: a truncated or lying packet.
        return Err(Counter::MalformedBadLength);
    }
    // From here on the whole IP packet, header included, lies within the frame,
    // though not necessarily within its first buffer.
    let protocol = truncated(frame.u8_at(l3 + 9))?;
    if protocol != IPPROTO_UDP {
        return Ok(None);
    }
    let flags_offset = truncated(frame.be16_at(l3 + 6))?;
    if flags_offset & IPV4_OFFSET_MASK != 0 {
        return Err(Counter::PassFragment);
    }
    let first_fragment = flags_offset & IPV4_MF != 0;
    udp(frame, l3 + ihl, l3 + total, first_fragment)
}

#[inline(always)]
fn ipv6<P: PacketBytes + ?Sized>(frame: &P, l3: usize) -> Parse<Option<u16>> {
    if !holds(frame, l3 + IPV6_HLEN) {
        return Err(Counter::MalformedTruncated);
    }
    let version = truncated(frame.u8_at(l3))? >> 4;
    if version != 6 {
        return Err(Counter::MalformedBadVersion);
    }
    let payload = usize::from(truncated(frame.be16_at(l3 + 4))?);
    let mut next = truncated(frame.u8_at(l3 + 6))?;
    if payload == 0 {
        // "No Next Header" with nothing after it is a valid, empty packet (RFC
        // 8200 4.7). Otherwise a zero length means a jumbogram (RFC 2675), which
        // we do not support, or garbage.
        return if next == IPPROTO_NONE {
            Ok(None)
        } else {
            Err(Counter::MalformedBadLength)
        };
    }
    let end = l3 + IPV6_HLEN + payload;
    if !spans(frame, end) {
        return Err(Counter::MalformedBadLength);
    }
    let mut off = l3 + IPV6_HLEN;
    let mut first_fragment = false;
    let mut walked = 0;
    loop {
        if matches!(
            next,
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_FRAGMENT
        ) && off + IPV6_EXT_MIN_LEN > end
        {
            // The header would reach past the payload length: never read the
            // Ethernet padding as if it were part of the packet.
            return Err(Counter::MalformedBadLength);
        }
        let len = match next {
            IPPROTO_UDP => return udp(frame, off, end, first_fragment),
            IPPROTO_HOPOPTS if walked > 0 => {
                // RFC 8200 4.1: "The Hop-by-Hop Options header, when present,
                // must immediately follow the IPv6 header." The kernel drops it
                // anywhere else.
                return Err(Counter::MalformedTooManyHeaders);
            }
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                // RFC 8200 4.3-4.6: Hdr Ext Len in 8-octet units, not counting the
                // first 8 octets.
                (usize::from(truncated(frame.u8_at(off + 1))?) + 1) * 8
            }
            IPPROTO_FRAGMENT => {
                let offset_flags = truncated(frame.be16_at(off + 2))?;
                if offset_flags & IPV6_FRAG_OFFSET_MASK != 0 {
                    return Err(Counter::PassFragment);
                }
                // M set in any Fragment header makes the packet a fragment; an
                // atomic one (RFC 6946) before or behind it does not undo that.
                first_fragment |= offset_flags & IPV6_FRAG_MORE != 0;
                8
            }
            // No Next Header (59), ICMPv6, TCP, ESP, ...: not ours. AH (51) too:
            // steering what follows it would skip the kernel's authentication.
            _ => return Ok(None),
        };
        if walked == MAX_IPV6_EXT_HEADERS {
            return Err(Counter::MalformedTooManyHeaders);
        }
        walked += 1;
        next = truncated(frame.u8_at(off))?;
        off += len;
        if off > MAX_HEADER_BYTES {
            return Err(Counter::MalformedTooManyHeaders);
        }
        if off > end {
            return Err(Counter::MalformedBadLength);
        }
    }
}

/// The UDP header at `l4`; `end` is where the IP payload ends (within the
/// packet).
#[inline(always)]
fn udp<P: PacketBytes + ?Sized>(
    frame: &P,
    l4: usize,
    end: usize,
    first_fragment: bool,
) -> Parse<Option<u16>> {
    if l4 + UDP_HLEN > end {
        return Err(Counter::MalformedBadLength);
    }
    // The whole header in the first buffer, checksum included, although only
    // the ports and the length are read: whoever takes the frame finds it
    // there. Always true of a frame of one buffer, which holds `end`.
    if !holds(frame, l4 + UDP_HLEN) {
        return Err(Counter::MalformedTruncated);
    }
    let dport = truncated(frame.be16_at(l4 + 2))?;
    let len = usize::from(truncated(frame.be16_at(l4 + 4))?);
    if len < UDP_HLEN {
        return Err(Counter::MalformedBadLength);
    }
    if !first_fragment && len > end - l4 {
        return Err(Counter::MalformedBadLength);
    }
    Ok(Some(dport))
}
