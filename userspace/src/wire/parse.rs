//! Frame to [`Parsed`]: etherparse's slices, driven in the order and with the
//! limits of the XDP program's parser (`xdp_ebpf::steer`).
//!
//! Every read goes through an etherparse slice constructor (which checks the
//! length first) or through `get`, so no input can make this panic or read beyond
//! the frame; every bound after the Ethernet header comes from a length field.

use std::net::{IpAddr, SocketAddr};

use etherparse::{
    EtherType, Ethernet2Slice, IpNumber, Ipv4Slice, Ipv6ExtensionSlice, Ipv6ExtensionsSlice,
    Ipv6HeaderSlice, Ipv6RawExtHeaderSlice, SingleVlanSlice, UdpHeaderSlice, UdpSlice,
    checksum::Sum16BitWords,
    err::{Layer, LenError, ipv4, ipv6, ipv6_exts},
};
use xdp_ebpf::{MAX_HEADER_BYTES, MAX_IPV6_EXT_HEADERS, MAX_VLAN_TAGS};

use super::{IpVersion, Layout, Parsed, Reject};

pub(super) const ETH_HLEN: usize = 14;
pub(super) const VLAN_HLEN: usize = 4;
pub(super) const IPV4_MIN_HLEN: usize = 20;
pub(super) const IPV6_HLEN: usize = 40;
pub(super) const UDP_HLEN: usize = 8;
/// RFC 8200 4: every extension header we walk is a multiple of 8 octets long.
const IPV6_EXT_MIN_LEN: usize = 8;

/// A datagram's IP addresses, for the UDP pseudo-header.
#[derive(Clone, Copy, Debug)]
enum Addrs {
    V4 { src: [u8; 4], dst: [u8; 4] },
    V6 { src: [u8; 16], dst: [u8; 16] },
}

/// What the IP layer hands to UDP.
struct Net<'a> {
    addrs: Addrs,
    /// The IP header with its options or extension headers.
    hlen: usize,
    /// The IP packet's length by its length field.
    ip_len: usize,
    /// The IP payload behind all headers, bounded by the IP length field.
    payload: &'a [u8],
    /// Offset 0 with More Fragments set: the UDP header is there, the rest of the
    /// datagram is not.
    first_fragment: bool,
    /// An IPv6 Routing header with Segments Left > 0: the packet is on its way
    /// to another final destination. Only a reject for what is otherwise a UDP
    /// datagram (steer.rs does not look at it; anything else stays `NotUdp`).
    routed: bool,
}

/// Parse an Ethernet frame (destination MAC to the end of the payload or padding,
/// no FCS) into a UDP datagram, checking lengths and checksums.
///
/// Never panics and never reads beyond `frame`, the IP length or the UDP length;
/// the returned payload is bounded by the UDP length (so never includes Ethernet
/// padding).
pub fn parse(frame: &[u8]) -> Result<Parsed<'_>, Reject> {
    let eth = Ethernet2Slice::from_slice_without_fcs(frame).map_err(|_| Reject::Truncated)?;
    let mut next = eth.payload();
    let mut vlan = [None; MAX_VLAN_TAGS];
    let mut tags = 0;
    while is_vlan(next.ether_type) {
        // By hand: `SlicedPacket` walks a third tag (and MACsec) and silently
        // stops at a fourth; steer.rs calls a third tag too many.
        let Some(slot) = vlan.get_mut(tags) else {
            return Err(Reject::TooManyHeaders);
        };
        let tag = SingleVlanSlice::from_slice(next.payload).map_err(|_| Reject::Truncated)?;
        *slot = Some(tag.vlan_identifier().value());
        tags += 1;
        next = tag.payload();
    }
    let l3 = ETH_HLEN + tags * VLAN_HLEN;
    // Everything else is not ours: ARP, MACsec, and IEEE 802.3 length fields
    // (values below 0x0600), which never equal the IP EtherTypes.
    let net = match next.ether_type {
        EtherType::IPV4 => ipv4(next.payload)?,
        EtherType::IPV6 => ipv6(next.payload, l3)?,
        _ => return Err(Reject::NotUdp),
    };
    let udp = udp(net.payload, net.first_fragment)?;
    if net.routed {
        return Err(Reject::RoutingHeader);
    }
    verify_udp_checksum(&udp, net.addrs)?;
    let (src, dst, version) = match net.addrs {
        Addrs::V4 { src, dst } => (IpAddr::from(src), IpAddr::from(dst), IpVersion::V4),
        Addrs::V6 { src, dst } => (IpAddr::from(src), IpAddr::from(dst), IpVersion::V6),
    };
    Ok(Parsed {
        src: SocketAddr::new(src, udp.source_port()),
        dst: SocketAddr::new(dst, udp.destination_port()),
        payload: udp.payload(),
        vlan,
        layout: Layout {
            l3,
            l4: l3 + net.hlen,
            ip_len: net.ip_len,
            udp_len: usize::from(udp.length()),
            version,
        },
        frame,
    })
}

/// 802.1Q, 802.1ad, and the pre-standard QinQ 0x9100 some switches still send.
fn is_vlan(ether_type: EtherType) -> bool {
    ether_type == EtherType::VLAN_TAGGED_FRAME
        || ether_type == EtherType::PROVIDER_BRIDGING
        || ether_type == EtherType::VLAN_DOUBLE_TAGGED_FRAME
}

fn ipv4(ip: &[u8]) -> Result<Net<'_>, Reject> {
    // Ipv4Slice checks IHL >= 5, that the frame holds IHL*4 bytes, that the total
    // length covers the header and that the frame holds the total length; the
    // payload it returns ends at the total length.
    let packet = Ipv4Slice::from_slice(ip).map_err(|e| ipv4_error(ip, &e))?;
    let header = packet.header();
    // RFC 1071 4.1: summed with its checksum field, a correct header gives all
    // ones, whose complement is 0.
    if Sum16BitWords::new()
        .add_slice(header.slice())
        .ones_complement()
        != 0
    {
        return Err(Reject::BadIpv4Checksum);
    }
    // The header's protocol, not `payload().ip_number`: etherparse walks an AH
    // (RFC 4302) and names the protocol behind it, but a datagram behind AH is the
    // kernel's to authenticate (steer.rs does not walk AH in IPv4 either).
    if header.protocol() != IpNumber::UDP {
        return Err(Reject::NotUdp);
    }
    // RFC 791: "Fragment Offset: 13 bits. This field indicates where in the
    // datagram this fragment belongs." Past offset 0 there is no UDP header.
    if header.fragments_offset().value() != 0 {
        return Err(Reject::Fragment);
    }
    Ok(Net {
        addrs: Addrs::V4 {
            src: header.source(),
            dst: header.destination(),
        },
        hlen: header.slice().len(),
        ip_len: usize::from(header.total_len()),
        payload: packet.payload().payload,
        first_fragment: header.more_fragments(),
        routed: false,
    })
}

/// The reason for an `Ipv4Slice` error.
///
/// By hand because etherparse reports "too short" before it looks at the version
/// and IHL, and compares the frame with IHL*4 before it compares the total length
/// with IHL*4, while steer.rs names the field at fault: for the same frame both
/// sides should count the same reason. So the fields are re-read here in
/// steer.rs's order (only on this error path).
fn ipv4_error(ip: &[u8], err: &ipv4::SliceError) -> Reject {
    match err {
        // An AH that does not parse: what it protects is the kernel's anyway.
        ipv4::SliceError::Exts(_)
        | ipv4::SliceError::Len(LenError {
            layer: Layer::IpAuthHeader,
            ..
        }) => return Reject::NotUdp,
        _ => {}
    }
    let Some(&version_ihl) = ip.first() else {
        return Reject::Truncated;
    };
    let ihl = usize::from(version_ihl & 0x0f) * 4;
    if version_ihl >> 4 != 4 || ihl < IPV4_MIN_HLEN {
        return Reject::BadIpHeader;
    }
    let Some(total) = ip
        .get(2..4)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    else {
        return Reject::Truncated;
    };
    if ihl > total {
        return Reject::BadIpHeader;
    }
    if ip.len() < IPV4_MIN_HLEN {
        return Reject::Truncated;
    }
    // IHL*4 <= total length, and the frame lacks IHL*4 or total length bytes:
    // the total length claims bytes the frame does not have.
    Reject::BadLength
}

fn ipv6(ip: &[u8], l3: usize) -> Result<Net<'_>, Reject> {
    let header = Ipv6HeaderSlice::from_slice(ip).map_err(|e| match e {
        ipv6::HeaderSliceError::Len(_) => Reject::Truncated,
        ipv6::HeaderSliceError::Content(_) => Reject::BadIpHeader,
    })?;
    let payload_len = usize::from(header.payload_length());
    if payload_len == 0 {
        // By hand: etherparse reads payload length 0 as a jumbogram (RFC 2675)
        // running to the end of the slice, padding included. Jumbograms need a
        // link MTU above 65575 octets, so not on Ethernet; we (and steer.rs) call
        // it a bad length. Empty is only right with No Next Header (RFC 8200 4.7).
        return Err(if header.next_header() == IpNumber::IPV6_NO_NEXT_HEADER {
            Reject::NotUdp
        } else {
            Reject::BadLength
        });
    }
    // RFC 8200 3: Payload Length is the "Length of the IPv6 payload, i.e., the rest
    // of the packet following this IPv6 header, in octets." Anything the frame
    // holds beyond it is padding.
    let ip_len = IPV6_HLEN + payload_len;
    let payload = ip.get(IPV6_HLEN..ip_len).ok_or(Reject::BadLength)?;
    // The lax walk applies the same length checks as the strict one (each header
    // must lie within `payload`), but hands back the headers it parsed before an
    // error: steer.rs's verdict can depend on them (a fragment, an AH or the
    // header count come first).
    let (exts, next, rest, error) =
        Ipv6ExtensionsSlice::from_slice_lax(header.next_header(), payload);
    let mut off = l3 + IPV6_HLEN;
    let mut walked = 0;
    let mut first_fragment = false;
    let mut routed = false;
    // Iterate by bytes, not to the iterator's end: etherparse 0.21's iterator
    // reads each header's type from the header before it and does not check the
    // slice's length, so after the last header of a walk that stopped at an error
    // (whose type is an extension header, the one that failed) it would read
    // beyond its slice (`get_unchecked`, undefined behaviour).
    let mut left = exts.slice().len();
    let mut iter = exts.into_iter();
    while left > 0 {
        let Some(ext) = iter.next() else { break };
        let len = match ext {
            // UDP behind AH is the kernel's to authenticate; steer.rs passes it.
            Ipv6ExtensionSlice::Authentication(_) => return Err(Reject::NotUdp),
            // RFC 8200 4.5: a non-zero Fragment Offset: no UDP header here.
            Ipv6ExtensionSlice::Fragment(f) if f.fragment_offset().value() != 0 => {
                return Err(Reject::Fragment);
            }
            Ipv6ExtensionSlice::Fragment(f) => {
                // Offset 0, M 0 is an atomic fragment, a whole datagram (RFC 6946).
                first_fragment |= f.more_fragments();
                f.slice().len()
            }
            Ipv6ExtensionSlice::Routing(r) => {
                routed |= segments_left(&r) != 0;
                r.slice().len()
            }
            Ipv6ExtensionSlice::HopByHop(h) | Ipv6ExtensionSlice::DestinationOptions(h) => {
                h.slice().len()
            }
        };
        ext_limits(walked, off + len)?;
        walked += 1;
        off += len;
        left = left.saturating_sub(len);
    }
    if let Some((err, layer)) = error {
        return Err(ipv6_ext_error(&err, layer, rest.len(), walked, off));
    }
    if next != IpNumber::UDP {
        return Err(Reject::NotUdp);
    }
    Ok(Net {
        addrs: Addrs::V6 {
            src: header.source(),
            dst: header.destination(),
        },
        hlen: off - l3,
        ip_len,
        payload: rest,
        first_fragment,
        routed,
    })
}

/// RFC 8200 4.4: Next Header, Hdr Ext Len, Routing Type, Segments Left ("Number
/// of route segments remaining, i.e., number of explicitly listed intermediate
/// nodes still to be visited before reaching the final destination"). By hand:
/// etherparse keeps routing headers raw.
fn segments_left(routing: &Ipv6RawExtHeaderSlice<'_>) -> u8 {
    routing.slice().get(3).copied().unwrap_or(0)
}

/// steer.rs's bounds on an extension header chain: at most
/// [`MAX_IPV6_EXT_HEADERS`] headers, ending within [`MAX_HEADER_BYTES`] of the
/// frame's start. By hand: etherparse walks chains of any length.
///
/// `end > MAX_HEADER_BYTES` and `end >= MAX_HEADER_BYTES` cannot be told apart
/// (cargo-mutants' equivalent mutant): headers start at 54, 58 or 62 (Ethernet,
/// up to two VLAN tags, IPv6) and every length checked here is a multiple of 8
/// (options, routing and fragment headers; AH never reaches this), so `end` is 2
/// or 6 modulo 8 and never 512.
fn ext_limits(walked: usize, end: usize) -> Result<(), Reject> {
    if walked >= MAX_IPV6_EXT_HEADERS || end > MAX_HEADER_BYTES {
        Err(Reject::TooManyHeaders)
    } else {
        Ok(())
    }
}

/// The reason for an error of the extension header walk at the header that
/// starts `left` bytes before the end of the payload, after `walked` good headers
/// ending at frame offset `off`, in steer.rs's order.
fn ipv6_ext_error(
    err: &ipv6_exts::HeaderSliceError,
    layer: Layer,
    left: usize,
    walked: usize,
    off: usize,
) -> Reject {
    use ipv6_exts::{HeaderError, HeaderSliceError};
    match err {
        // An AH steer.rs does not walk: what it protects is the kernel's.
        HeaderSliceError::Content(HeaderError::IpAuth(_)) => Reject::NotUdp,
        HeaderSliceError::Len(_) if layer == Layer::IpAuthHeader => Reject::NotUdp,
        // The header's fixed 8 octets would reach past the payload length.
        _ if left < IPV6_EXT_MIN_LEN => Reject::BadLength,
        // RFC 8200 4.1: Hop-by-Hop "is restricted to appear immediately after an
        // IPv6 header only"; steer.rs counts it as a header too many.
        HeaderSliceError::Content(HeaderError::HopByHopNotAtStart) => Reject::TooManyHeaders,
        // Longer than what is left of the payload; steer.rs checks its limits on
        // the header count and where the header ends before that.
        HeaderSliceError::Len(len) => match ext_limits(walked, off + len.required_len) {
            Err(reject) => reject,
            Ok(()) => Reject::BadLength,
        },
    }
}

fn udp(payload: &[u8], first_fragment: bool) -> Result<UdpSlice<'_>, Reject> {
    let header = UdpHeaderSlice::from_slice(payload).map_err(|_| Reject::BadLength)?;
    // RFC 768: "Length is the length in octets of this user datagram including
    // this header and the data. (This means the minimum value of the length is
    // eight.)" By hand: etherparse's UdpSlice reads 0 as "the rest of the slice"
    // (RFC 2675 jumbograms), which would turn padding into payload.
    if usize::from(header.length()) < UDP_HLEN {
        return Err(Reject::BadLength);
    }
    // In a first fragment the UDP length describes the reassembled datagram and
    // may exceed the fragment; steer.rs checks no more than the above there. No
    // reassembly here.
    if first_fragment {
        return Err(Reject::Fragment);
    }
    // The UDP length may not exceed the IP payload; the slice ends at it.
    UdpSlice::from_slice(payload).map_err(|_| Reject::BadLength)
}

fn verify_udp_checksum(udp: &UdpSlice<'_>, addrs: Addrs) -> Result<(), Reject> {
    let stored = udp.checksum();
    // etherparse sums the pseudo-header, the header without its checksum field and
    // the payload (up to the UDP length), and sends a computed 0 as 0xffff (RFC 768
    // "If the computed checksum is zero, it is transmitted as all ones"), so a
    // correct checksum compares equal.
    let computed = match addrs {
        Addrs::V4 { src, dst } => {
            // RFC 768: "An all zero transmitted checksum value means that the
            // transmitter generated no checksum".
            if stored == 0 {
                return Ok(());
            }
            udp.to_header()
                .calc_checksum_ipv4_raw(src, dst, udp.payload())
        }
        Addrs::V6 { src, dst } => {
            // RFC 8200 8.1: "IPv6 receivers must discard UDP packets containing a
            // zero checksum and should log the error." (RFC 6935's exception for
            // tunnels is not supported.)
            if stored == 0 {
                return Err(Reject::ZeroUdpChecksumIpv6);
            }
            udp.to_header()
                .calc_checksum_ipv6_raw(src, dst, udp.payload())
        }
    }
    // Only fails for payloads beyond a 16-bit length, which a UDP length excludes.
    .map_err(|_| Reject::BadLength)?;
    if computed == stored {
        Ok(())
    } else {
        Err(Reject::BadUdpChecksum)
    }
}
