//! Frames the stack sends: replies for the echo app, and datagrams to any
//! destination ([`write_datagram`], the send path's). Pure functions over byte
//! buffers, no I/O.
//!
//! A reply goes back the way the request came: MAC addresses, IP addresses and
//! ports swapped, the VLAN tags (TPIDs, priorities, IDs) kept. What the request
//! said about its own path is not repeated: the reply has no IPv4 options or IPv6
//! extension headers (a kernel UDP socket's reply would not have them either; RFC
//! 1122 3.2.1.8 and RFC 8200 4 leave them to the sender), a fresh TTL / hop limit
//! of [`REPLY_HOP_LIMIT`], and no ECN codepoint (RFC 3168 5: only an ECN-capable
//! transport sets ECT, and a CE mark describes the request's path). The DSCP, the
//! IPv4 identification and DF flag, and the IPv6 flow label are kept (Linux's
//! `flowlabel_reflect` reflects the flow label too).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use etherparse::UdpHeader;

use super::parse::{ETH_HLEN, IPV4_MIN_HLEN, IPV6_HLEN, UDP_HLEN};
use super::{IpVersion, Layout};

/// TTL (IPv4) and hop limit (IPv6) of replies: Linux's default
/// (`net.ipv4.ip_default_ttl`, `net.ipv6.conf.*.hop_limit`).
pub const REPLY_HOP_LIMIT: u8 = 64;

/// The IP protocol number of UDP.
const IPPROTO_UDP: u8 = 17;
/// The largest value of a 16-bit length field.
const MAX_LEN16: usize = u16::MAX as usize;

/// Why no reply can be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// The frame is not the one the layout was parsed from (too short, another IP
    /// version, another UDP length).
    #[error("udp reply: the frame does not match the layout parsed from it; parse this frame")]
    LayoutMismatch,
    /// The request did not go between unicast addresses (Ethernet or IP): a reply
    /// would have a group or unspecified source or destination address, which RFC
    /// 1122 3.2.1.3 and RFC 4291 2.7 forbid. Drop such requests. (A directed
    /// subnet broadcast cannot be told from a unicast address here: that needs the
    /// interface's prefix.)
    #[error("udp reply: the request was not between unicast addresses; drop it")]
    NotUnicast,
    /// The request came from port 0: "If not used, a value of zero is inserted"
    /// (RFC 768), so there is no port to reply to.
    #[error("udp reply: the request came from port 0, which names no port to reply to")]
    ZeroSourcePort,
    /// The reply does not fit the destination buffer.
    #[error("udp reply: the reply frame needs {needed} bytes, the buffer has {available}")]
    BufferTooSmall {
        /// Bytes the reply frame needs.
        needed: usize,
        /// Bytes the buffer has.
        available: usize,
    },
    /// A datagram's source and destination are of different IP versions.
    #[error("udp datagram: source {src} and destination {dst} are not of one IP version")]
    MixedVersions {
        /// The source address.
        src: IpAddr,
        /// The destination address.
        dst: IpAddr,
    },
    /// The payload does not fit the IP and UDP 16-bit length fields.
    #[error("udp reply: a {len}-byte payload does not fit a UDP datagram over {version:?}")]
    PayloadTooLong {
        /// Payload bytes.
        len: usize,
        /// The IP version of the reply.
        version: IpVersion,
    },
}

/// Turn the received `frame` into the reply to it, in place: swap the MAC
/// addresses, IP addresses and ports, keep the VLAN tags, drop IPv4 options and
/// IPv6 extension headers (moving the datagram up), set the TTL / hop limit to
/// [`REPLY_HOP_LIMIT`], clear the ECN bits, and recompute the IPv4 header checksum
/// and the UDP checksum (also when the request had none). `layout` is the one
/// [`parse`](super::parse) found for `frame`.
///
/// Returns the reply's length: the frame is cut at the end of the UDP datagram,
/// so Ethernet padding and IP payload beyond the UDP length are dropped (NICs pad
/// short frames on transmit). The payload is the request's; write a different one
/// into `frame[layout.payload_offset()..layout.udp_end()]` first if needed.
///
/// On error the frame is unchanged.
pub fn make_reply_in_place(frame: &mut [u8], layout: &Layout) -> Result<usize, ReplyError> {
    let udp_end = check_request(frame, layout)?;
    let Layout {
        l3,
        l4,
        udp_len,
        version,
        ..
    } = *layout;
    let hlen = ip_hlen(version);
    let new_l4 = l3 + hlen;
    let end = new_l4 + udp_len;
    // (`>=` is an equivalent mutant: with l4 == new_l4 the copy is a no-op.)
    if l4 > new_l4 {
        frame.copy_within(l4..udp_end, new_l4);
    }
    swap_macs(frame);
    let (ip, udp) = frame[l3..end].split_at_mut(hlen);
    match version {
        IpVersion::V4 => {
            // RFC 791: version 4, IHL 5 (no options).
            ip[0] = 0x45;
            clear_ecn(ip, version);
            ip[2..4].copy_from_slice(&len16(IPV4_MIN_HLEN + udp_len).to_be_bytes());
            // Keep DF; MF and the offset are 0 (no fragment parses), the reserved
            // bit "must be zero".
            ip[6] &= 0x40;
            ip[7] = 0;
            ip[8] = REPLY_HOP_LIMIT;
            let (src, dst) = ip[12..20].split_at_mut(4);
            src.swap_with_slice(dst);
            fix_ipv4_checksum(ip);
        }
        IpVersion::V6 => {
            clear_ecn(ip, version);
            ip[4..6].copy_from_slice(&len16(udp_len).to_be_bytes());
            ip[6] = IPPROTO_UDP;
            ip[7] = REPLY_HOP_LIMIT;
            let (src, dst) = ip[8..40].split_at_mut(16);
            src.swap_with_slice(dst);
        }
    }
    let (src_port, dst_port) = udp[0..4].split_at_mut(2);
    src_port.swap_with_slice(dst_port);
    fix_udp_checksum(ip, udp, version);
    Ok(end)
}

/// Build the reply to the datagram in frame `request` (parsed as `layout`)
/// carrying `payload` into `dst` (a fresh frame, for when the request's frame
/// cannot be written: the copy-on-write path).
///
/// The headers are those [`make_reply_in_place`] would make; with the request's
/// own payload the two produce the same bytes. Returns the reply's length; `dst`
/// beyond it is untouched.
pub fn write_reply(
    dst: &mut [u8],
    request: &[u8],
    layout: &Layout,
    payload: &[u8],
) -> Result<usize, ReplyError> {
    let req = request;
    check_request(req, layout)?;
    let Layout {
        l3, l4, version, ..
    } = *layout;
    let hlen = ip_hlen(version);
    let udp_len = UDP_HLEN + payload.len();
    if udp_len + ip_len_field_extra(version) > MAX_LEN16 {
        return Err(ReplyError::PayloadTooLong {
            len: payload.len(),
            version,
        });
    }
    let end = l3 + hlen + udp_len;
    let available = dst.len();
    let out = dst.get_mut(..end).ok_or(ReplyError::BufferTooSmall {
        needed: end,
        available,
    })?;
    out[..l3].copy_from_slice(&req[..l3]);
    swap_macs(out);
    let (ip, udp) = out[l3..].split_at_mut(hlen);
    let req_ip = &req[l3..l4];
    match version {
        IpVersion::V4 => {
            ip[0] = 0x45;
            ip[1] = req_ip[1];
            clear_ecn(ip, version);
            ip[2..4].copy_from_slice(&len16(IPV4_MIN_HLEN + udp_len).to_be_bytes());
            ip[4..6].copy_from_slice(&req_ip[4..6]);
            ip[6] = req_ip[6] & 0x40;
            ip[7] = 0;
            ip[8] = REPLY_HOP_LIMIT;
            ip[9] = IPPROTO_UDP;
            ip[12..16].copy_from_slice(&req_ip[16..20]);
            ip[16..20].copy_from_slice(&req_ip[12..16]);
            fix_ipv4_checksum(ip);
        }
        IpVersion::V6 => {
            // Version, traffic class, flow label.
            ip[..4].copy_from_slice(&req_ip[..4]);
            clear_ecn(ip, version);
            ip[4..6].copy_from_slice(&len16(udp_len).to_be_bytes());
            ip[6] = IPPROTO_UDP;
            ip[7] = REPLY_HOP_LIMIT;
            ip[8..24].copy_from_slice(&req_ip[24..40]);
            ip[24..40].copy_from_slice(&req_ip[8..24]);
        }
    }
    let req_udp = &req[l4..l4 + UDP_HLEN];
    udp[0..2].copy_from_slice(&req_udp[2..4]);
    udp[2..4].copy_from_slice(&req_udp[0..2]);
    udp[4..6].copy_from_slice(&len16(udp_len).to_be_bytes());
    udp[8..].copy_from_slice(payload);
    fix_udp_checksum(ip, udp, version);
    Ok(end)
}

/// Who a datagram goes between: the Ethernet and the IP/UDP addresses of a
/// frame the stack builds from nothing ([`write_datagram`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addressing {
    /// Our interface's MAC.
    pub src_mac: [u8; 6],
    /// The next hop's MAC (the neighbour: a gateway, or the destination itself).
    pub dst_mac: [u8; 6],
    /// Our address and port.
    pub src: SocketAddr,
    /// The destination's.
    pub dst: SocketAddr,
}

/// Write a whole frame carrying `payload` from `to.src` to `to.dst` into `dst`:
/// Ethernet II, IPv4 (no options, DF set, identification 0: RFC 6864 4.1 lets an
/// atomic datagram's identification be any value) or IPv6 (traffic class and
/// flow label 0), UDP with its checksum. TTL / hop limit [`REPLY_HOP_LIMIT`],
/// no ECN codepoint. Returns the frame's length; `dst` beyond it is untouched.
///
/// The addresses are the caller's to check (the send path takes them from the
/// kernel's routing and neighbour tables); only what the headers cannot carry
/// is refused: mixed IP versions, a payload beyond the 16-bit length fields, a
/// buffer too small.
pub fn write_datagram(
    dst: &mut [u8],
    to: &Addressing,
    payload: &[u8],
) -> Result<usize, ReplyError> {
    let version = match (to.src.ip(), to.dst.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) => IpVersion::V4,
        (IpAddr::V6(_), IpAddr::V6(_)) => IpVersion::V6,
        (src, dst) => return Err(ReplyError::MixedVersions { src, dst }),
    };
    let hlen = ip_hlen(version);
    let udp_len = UDP_HLEN + payload.len();
    if udp_len + ip_len_field_extra(version) > MAX_LEN16 {
        return Err(ReplyError::PayloadTooLong {
            len: payload.len(),
            version,
        });
    }
    let end = ETH_HLEN + hlen + udp_len;
    let available = dst.len();
    let out = dst.get_mut(..end).ok_or(ReplyError::BufferTooSmall {
        needed: end,
        available,
    })?;
    out[..6].copy_from_slice(&to.dst_mac);
    out[6..12].copy_from_slice(&to.src_mac);
    let ethertype: u16 = match version {
        IpVersion::V4 => 0x0800,
        IpVersion::V6 => 0x86dd,
    };
    out[12..14].copy_from_slice(&ethertype.to_be_bytes());
    let (ip, udp) = out[ETH_HLEN..].split_at_mut(hlen);
    match (to.src.ip(), to.dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            ip[0] = 0x45;
            ip[1] = 0;
            ip[2..4].copy_from_slice(&len16(IPV4_MIN_HLEN + udp_len).to_be_bytes());
            ip[4..6].fill(0);
            // DF, offset 0.
            ip[6] = 0x40;
            ip[7] = 0;
            ip[8] = REPLY_HOP_LIMIT;
            ip[9] = IPPROTO_UDP;
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            fix_ipv4_checksum(ip);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            ip[..4].copy_from_slice(&[0x60, 0, 0, 0]);
            ip[4..6].copy_from_slice(&len16(udp_len).to_be_bytes());
            ip[6] = IPPROTO_UDP;
            ip[7] = REPLY_HOP_LIMIT;
            ip[8..24].copy_from_slice(&s.octets());
            ip[24..40].copy_from_slice(&d.octets());
        }
        // The versions were matched above.
        _ => {
            return Err(ReplyError::MixedVersions {
                src: to.src.ip(),
                dst: to.dst.ip(),
            });
        }
    }
    udp[0..2].copy_from_slice(&to.src.port().to_be_bytes());
    udp[2..4].copy_from_slice(&to.dst.port().to_be_bytes());
    udp[4..6].copy_from_slice(&len16(udp_len).to_be_bytes());
    udp[8..].copy_from_slice(payload);
    fix_udp_checksum(ip, udp, version);
    Ok(end)
}

/// Check that `layout` describes `frame` and that the request can be answered;
/// returns where the UDP datagram ends. After this, every index the reply
/// functions use lies within `frame`.
fn check_request(frame: &[u8], layout: &Layout) -> Result<usize, ReplyError> {
    let Layout {
        l3,
        l4,
        udp_len,
        version,
        ..
    } = *layout;
    let hlen = ip_hlen(version);
    let udp_end = l4
        .checked_add(udp_len)
        .filter(|&end| end <= frame.len())
        .ok_or(ReplyError::LayoutMismatch)?;
    let fits = l3 >= ETH_HLEN
        && l3.checked_add(hlen).is_some_and(|h| h <= l4)
        && udp_len >= UDP_HLEN
        && udp_len + ip_len_field_extra(version) <= MAX_LEN16;
    if !fits
        || frame[l3] >> 4 != ip_version_number(version)
        || usize::from(be16(&frame[l4 + 4..l4 + 6])) != udp_len
    {
        return Err(ReplyError::LayoutMismatch);
    }
    // IEEE 802: the I/G bit, the least significant bit of the first octet, marks
    // group (multicast, broadcast) addresses.
    let group_mac = frame[0] & 1 != 0 || frame[6] & 1 != 0;
    let ip = &frame[l3..l4];
    let (src, dst) = match version {
        IpVersion::V4 => (
            IpAddr::from(Ipv4Addr::from(array::<4>(&ip[12..16]))),
            IpAddr::from(Ipv4Addr::from(array::<4>(&ip[16..20]))),
        ),
        IpVersion::V6 => (
            IpAddr::from(Ipv6Addr::from(array::<16>(&ip[8..24]))),
            IpAddr::from(Ipv6Addr::from(array::<16>(&ip[24..40]))),
        ),
    };
    if group_mac || !is_unicast(src) || !is_unicast(dst) {
        return Err(ReplyError::NotUnicast);
    }
    if be16(&frame[l4..l4 + 2]) == 0 {
        return Err(ReplyError::ZeroSourcePort);
    }
    Ok(udp_end)
}

fn is_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => !(a.is_multicast() || a.is_broadcast() || a.is_unspecified()),
        IpAddr::V6(a) => !(a.is_multicast() || a.is_unspecified()),
    }
}

fn ip_hlen(version: IpVersion) -> usize {
    match version {
        IpVersion::V4 => IPV4_MIN_HLEN,
        IpVersion::V6 => IPV6_HLEN,
    }
}

/// What the IP length field counts besides the UDP datagram: the IPv4 total
/// length includes the header, the IPv6 payload length does not.
fn ip_len_field_extra(version: IpVersion) -> usize {
    match version {
        IpVersion::V4 => IPV4_MIN_HLEN,
        IpVersion::V6 => 0,
    }
}

fn ip_version_number(version: IpVersion) -> u8 {
    match version {
        IpVersion::V4 => 4,
        IpVersion::V6 => 6,
    }
}

/// A length the callers have checked against [`MAX_LEN16`].
fn len16(len: usize) -> u16 {
    u16::try_from(len).unwrap_or(u16::MAX)
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes(array::<2>(b))
}

/// The first `N` bytes of `b` (which the callers know to be that long).
fn array<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0; N];
    for (to, from) in a.iter_mut().zip(b) {
        *to = *from;
    }
    a
}

fn swap_macs(frame: &mut [u8]) {
    let (dst, src) = frame[..12].split_at_mut(6);
    dst.swap_with_slice(src);
}

/// Set the ECN field (RFC 3168 5) to Not-ECT: the low two bits of the IPv4 TOS
/// octet, or of the IPv6 traffic class (bits 4-5 of the header's second octet).
fn clear_ecn(ip: &mut [u8], version: IpVersion) {
    match version {
        IpVersion::V4 => ip[1] &= !0x03,
        IpVersion::V6 => ip[1] &= !0x30,
    }
}

/// RFC 791: "The checksum field is the 16 bit one's complement of the one's
/// complement sum of all 16 bit words in the header. For purposes of computing
/// the checksum, the value of the checksum field is zero."
fn fix_ipv4_checksum(header: &mut [u8]) {
    header[10..12].fill(0);
    let sum = super::internet_checksum(header);
    header[10..12].copy_from_slice(&sum.to_be_bytes());
}

/// The UDP checksum over the pseudo-header of `ip` (RFC 768; RFC 8200 8.1) and
/// the datagram `udp`, written into `udp`. etherparse leaves the checksum field
/// out of the sum and sends a computed 0 as all ones.
fn fix_udp_checksum(ip: &[u8], udp: &mut [u8], version: IpVersion) {
    let header = UdpHeader {
        source_port: be16(&udp[0..2]),
        destination_port: be16(&udp[2..4]),
        length: be16(&udp[4..6]),
        checksum: 0,
    };
    let payload = &udp[UDP_HLEN..];
    // Fails only for payloads beyond a 16-bit length, which the callers exclude.
    let sum = match version {
        IpVersion::V4 => {
            header.calc_checksum_ipv4_raw(array(&ip[12..16]), array(&ip[16..20]), payload)
        }
        IpVersion::V6 => {
            header.calc_checksum_ipv6_raw(array(&ip[8..24]), array(&ip[24..40]), payload)
        }
    }
    .unwrap_or(0);
    udp[6..8].copy_from_slice(&sum.to_be_bytes());
}
