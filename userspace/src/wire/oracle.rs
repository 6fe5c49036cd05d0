//! Reference oracles for the UDP parser, shared by its property tests
//! (`udp/tests.rs`) and the `udp_parse` fuzz target (fuzz/): etherparse's own
//! validating parse with the parser's documented differences, and the mapping
//! between the XDP program's verdicts and the parser's reject reasons. Compiled
//! for tests and with the `oracle` feature only; not part of the API.

use etherparse::{Ipv6ExtensionSlice, LinkExtSlice, NetSlice, SlicedPacket, TransportSlice};
use xdp_ebpf::{Counter, MAX_HEADER_BYTES, MAX_IPV6_EXT_HEADERS, MAX_VLAN_TAGS, Verdict};

use super::Reject;

/// The reference Internet checksum (RFC 1071), the one the XDP corpus builds its
/// frames with.
pub use xdp_ebpf::corpus::checksum as rfc1071;

/// etherparse's verdict: `SlicedPacket::from_ethernet` (strict lengths) finds a
/// UDP datagram whose checksums etherparse's own calculation confirms, minus the
/// intentional differences of [`parse`](super::parse), each named by its error.
/// `Ok` holds the source port, destination port and payload.
pub fn etherparse_verdict(frame: &[u8]) -> Result<(u16, u16, &[u8]), &'static str> {
    let p = SlicedPacket::from_ethernet(frame).map_err(|_| "etherparse: error")?;
    if p.link_exts.len() > MAX_VLAN_TAGS {
        return Err("difference: a third VLAN tag (steer.rs's limit)");
    }
    if p.link_exts
        .iter()
        .any(|e| !matches!(e, LinkExtSlice::Vlan(_)))
    {
        return Err("difference: MACsec is not walked");
    }
    let Some(TransportSlice::Udp(udp)) = &p.transport else {
        return Err("etherparse: no UDP datagram (or a fragment)");
    };
    if udp.length() == 0 {
        return Err("difference: UDP length 0 (etherparse: the rest of the IP payload)");
    }
    let l3 = 14 + 4 * p.link_exts.len();
    match &p.net {
        Some(NetSlice::Ipv4(ip)) => {
            if ip.extensions().auth.is_some() {
                return Err("difference: UDP behind AH is the kernel's");
            }
            // Not `to_header().calc_header_checksum()`: etherparse's Ipv4Header
            // has no field for the reserved flag bit, so that is not the checksum
            // of the bytes on the wire. And one's complement has two zeros: a
            // stored 0xffff where the calculation gives 0x0000 is correct. So
            // verify the RFC 1071 way, summing the header with its checksum.
            if rfc1071(ip.header().slice()) != 0 {
                return Err("IPv4 header checksum");
            }
            let h = ip.header().to_header();
            if udp.checksum() != 0
                && Ok(udp.checksum()) != udp.to_header().calc_checksum_ipv4(&h, udp.payload())
            {
                return Err("etherparse: UDP checksum");
            }
        }
        Some(NetSlice::Ipv6(ip)) => {
            if ip.header().payload_length() == 0 {
                return Err("difference: IPv6 payload length 0 (jumbogram)");
            }
            let exts = ip.extensions();
            let mut count = 0;
            for ext in exts.clone() {
                count += 1;
                match ext {
                    Ipv6ExtensionSlice::Authentication(_) => {
                        return Err("difference: UDP behind AH is the kernel's");
                    }
                    Ipv6ExtensionSlice::Routing(r) if r.slice()[3] != 0 => {
                        return Err("difference: Routing header with Segments Left");
                    }
                    _ => {}
                }
            }
            if count > MAX_IPV6_EXT_HEADERS || l3 + 40 + exts.slice().len() > MAX_HEADER_BYTES {
                return Err("difference: extension headers beyond steer.rs's limits");
            }
            if udp.checksum() == 0 {
                return Err("etherparse: zero UDP checksum over IPv6");
            }
            let h = ip.header().to_header();
            if Ok(udp.checksum()) != udp.to_header().calc_checksum_ipv6(&h, udp.payload()) {
                return Err("etherparse: UDP checksum");
            }
        }
        _ => return Err("etherparse: not IP"),
    }
    Ok((udp.source_port(), udp.destination_port(), udp.payload()))
}

/// The reason `parse` gives for a frame the XDP program passes with `counter`
/// (the table in `udp::Reject`'s documentation).
pub fn reject_for(counter: Counter) -> Option<Reject> {
    Some(match counter {
        Counter::PassNotSteered | Counter::PassIeee8023 => Reject::NotUdp,
        Counter::PassFragment => Reject::Fragment,
        Counter::MalformedTruncated => Reject::Truncated,
        Counter::MalformedBadIhl | Counter::MalformedBadVersion => Reject::BadIpHeader,
        Counter::MalformedBadLength => Reject::BadLength,
        Counter::MalformedTooManyHeaders => Reject::TooManyHeaders,
        // Not verdicts of `classify` on a frame.
        Counter::Seen | Counter::Redirected | Counter::PassNoSocket => return None,
    })
}

/// Whether steer.rs's verdict (with every port steered) and the parser's result
/// agree, by the mapping table [`reject_for`] and the documented differences.
pub fn agrees_with_steer(verdict: Verdict, ours: Result<(), Reject>) -> bool {
    match (verdict, ours) {
        (Verdict::Steer, Ok(())) => true,
        // steer.rs verifies no checksum, steers first fragments, and does not
        // look at Segments Left.
        (
            Verdict::Steer,
            Err(
                Reject::BadUdpChecksum
                | Reject::ZeroUdpChecksumIpv6
                | Reject::Fragment
                | Reject::RoutingHeader,
            ),
        ) => true,
        // The IPv4 header checksum is verified once the header's lengths are; the
        // verdicts steer.rs reaches after that point are these.
        (
            Verdict::Steer
            | Verdict::Pass(
                Counter::PassNotSteered | Counter::PassFragment | Counter::MalformedBadLength,
            ),
            Err(Reject::BadIpv4Checksum),
        ) => true,
        (Verdict::Pass(counter), Err(reject)) => reject_for(counter) == Some(reject),
        (Verdict::Pass(_), Ok(())) | (Verdict::Steer, Err(_)) => false,
    }
}
