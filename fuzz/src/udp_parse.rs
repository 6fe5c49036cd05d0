//! `udp_parse`: `xdpstack::wire::parse` on arbitrary bytes (the input is the frame).
//!
//! Properties, beyond "never panics" (a panic is a crash to libFuzzer):
//! 1. An accepted frame is what its bytes say: the payload is the subslice at the
//!    UDP header's offset + 8 with the UDP length - 8 bytes, within the IP packet,
//!    within the frame; addresses, ports, VLAN IDs and lengths are the fields at
//!    the offsets the layout names; the IPv4 header checksum and the UDP checksum
//!    (RFC 1071 over the pseudo-header) verify; it is not an IPv4 fragment.
//! 2. Differential against etherparse's own validating parse (`SlicedPacket`,
//!    strict lengths, its checksum calculation), minus the parser's documented
//!    differences: the oracle of the proptest `mutated_frames_agree_with_etherparse`
//!    in `userspace/src/udp/tests.rs`. Both accept or both reject, and where both
//!    accept, payload and ports agree.
//! 3. Differential against the XDP program's `classify` with every port steered:
//!    the reject reason corresponds to steer.rs's verdict by the mapping table of
//!    `udp::Reject` (the proptest `mutated_frames_agree_with_steer`).
//! 4. Padding is not payload: a frame that holds its whole IP packet parses the same
//!    with the padding cut off or inverted.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use xdp_ebpf::{MAX_HEADER_BYTES, MAX_VLAN_TAGS, SteerMode, classify};
use xdpstack::wire::{
    IpVersion, Parsed, Reject,
    oracle::{agrees_with_steer, etherparse_verdict, rfc1071},
    parse,
};

use crate::{be16, ip_end, padding_variants};

/// Runs every check on one input.
pub fn check(frame: &[u8]) {
    let ours = parse(frame);
    if let Ok(p) = &ours {
        matches_the_bytes(frame, p);
    }
    agrees_with_etherparse(frame, &ours);
    let verdict = classify(frame, SteerMode::Udp, |_| true);
    let result = ours.as_ref().map(|_| ()).map_err(|r| *r);
    assert!(
        agrees_with_steer(verdict, result),
        "steer.rs {verdict:?}, parse {result:?}\n  frame: {frame:02x?}"
    );
    if let Some(end) = ip_end(frame) {
        for variant in padding_variants(frame, end) {
            assert_eq!(
                summary(&parse(&variant)),
                summary(&ours),
                "the padding after byte {end} changed the result\n  frame: {frame:02x?}"
            );
        }
    }
}

/// What a parse result says, without the frame it borrows from.
fn summary(r: &Result<Parsed<'_>, Reject>) -> Result<impl PartialEq + std::fmt::Debug, Reject> {
    r.map(|p| (p.src, p.dst, p.payload.to_vec(), p.vlan, p.layout))
}

fn ip4(b: &[u8]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(b).expect("4 bytes")))
}

fn ip6(b: &[u8]) -> IpAddr {
    IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(b).expect("16 bytes")))
}

/// Property 1: every field of an accepted frame, read back from the bytes.
fn matches_the_bytes(frame: &[u8], p: &Parsed<'_>) {
    let l = p.layout;
    let ctx = || format!("\n  parsed: {p:?}\n  frame: {frame:02x?}");
    assert!(std::ptr::eq(p.frame, frame), "the frame itself{}", ctx());

    // Ethernet and VLAN tags: l3 = 14 + 4 per tag, TPIDs then the IP EtherType.
    let tags = l.vlan_tags();
    assert!(tags <= MAX_VLAN_TAGS, "tags{}", ctx());
    assert_eq!(l.l3(), 14 + 4 * tags, "l3{}", ctx());
    for (i, vlan) in p.vlan.iter().enumerate() {
        let tag = 14 + 4 * i;
        let expected = (i < tags).then(|| be16(frame, tag).map(|tci| tci & 0x0fff));
        assert_eq!(*vlan, expected.flatten(), "VLAN ID {i}{}", ctx());
        if i < tags {
            let tpid = be16(frame, tag - 2).expect("TPID");
            assert!(matches!(tpid, 0x8100 | 0x88a8 | 0x9100), "TPID{}", ctx());
        }
    }
    let ethertype = be16(frame, l.l3() - 2).expect("EtherType");

    // The IP packet lies within the frame, the UDP datagram within the IP packet.
    let (l3, l4, ip_len, udp_len) = (l.l3(), l.l4(), l.ip_len(), l.udp_len());
    assert!(
        l3 + ip_len <= frame.len(),
        "IP packet beyond the frame{}",
        ctx()
    );
    assert!(
        l4 + udp_len <= l3 + ip_len,
        "UDP beyond the IP packet{}",
        ctx()
    );
    assert!(l4 + 8 <= l4 + udp_len, "UDP length below 8{}", ctx());
    let ip = &frame[l3..l3 + ip_len];
    match l.ip_version() {
        IpVersion::V4 => {
            assert_eq!(ethertype, 0x0800, "EtherType{}", ctx());
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            assert_eq!(ip[0] >> 4, 4, "version{}", ctx());
            assert_eq!(l4 - l3, ihl, "IHL{}", ctx());
            assert_eq!(
                Some(ip_len),
                be16(ip, 2).map(usize::from),
                "total length{}",
                ctx()
            );
            assert_eq!(ip[9], 17, "protocol{}", ctx());
            // RFC 791: MF clear and offset 0, or no complete datagram is here.
            assert_eq!(be16(ip, 6).expect("flags") & 0x3fff, 0, "fragment{}", ctx());
            assert_eq!(rfc1071(&ip[..ihl]), 0, "IPv4 header checksum{}", ctx());
            assert_eq!(p.src.ip(), ip4(&ip[12..16]), "source{}", ctx());
            assert_eq!(p.dst.ip(), ip4(&ip[16..20]), "destination{}", ctx());
        }
        IpVersion::V6 => {
            assert_eq!(ethertype, 0x86dd, "EtherType{}", ctx());
            assert_eq!(ip[0] >> 4, 6, "version{}", ctx());
            assert_eq!(
                Some(ip_len - 40),
                be16(ip, 4).map(usize::from),
                "payload length{}",
                ctx()
            );
            // RFC 8200 4: extension headers are multiples of 8 octets.
            assert!(l4 - l3 >= 40 && (l4 - l3 - 40) % 8 == 0, "l4{}", ctx());
            assert!(l4 <= MAX_HEADER_BYTES, "headers beyond the limit{}", ctx());
            assert_eq!(p.src.ip(), ip6(&ip[8..24]), "source{}", ctx());
            assert_eq!(p.dst.ip(), ip6(&ip[24..40]), "destination{}", ctx());
        }
    }

    // UDP: ports and length from the header, the payload is the subslice after it.
    assert_eq!(Some(p.src.port()), be16(frame, l4), "source port{}", ctx());
    assert_eq!(
        Some(p.dst.port()),
        be16(frame, l4 + 2),
        "destination port{}",
        ctx()
    );
    assert_eq!(
        Some(udp_len),
        be16(frame, l4 + 4).map(usize::from),
        "UDP length{}",
        ctx()
    );
    assert_eq!(l.payload_offset(), l4 + 8, "payload offset{}", ctx());
    assert_eq!(l.udp_end(), l4 + udp_len, "UDP end{}", ctx());
    let at = p.payload.as_ptr() as usize - frame.as_ptr() as usize;
    assert_eq!(
        (at, p.payload.len()),
        (l4 + 8, udp_len - 8),
        "payload subslice{}",
        ctx()
    );

    // RFC 768 and RFC 8200 8.1: the checksum over the pseudo-header and the
    // datagram verifies; 0 means "none" over IPv4 and is refused over IPv6.
    let datagram = &frame[l4..l4 + udp_len];
    let stored = be16(datagram, 6).expect("checksum");
    let mut pseudo = Vec::with_capacity(40 + udp_len);
    match l.ip_version() {
        IpVersion::V4 => {
            pseudo.extend_from_slice(&ip[12..20]);
            pseudo.extend_from_slice(&[0, 17]);
            pseudo.extend_from_slice(&(udp_len as u16).to_be_bytes());
        }
        IpVersion::V6 => {
            assert_ne!(stored, 0, "zero UDP checksum over IPv6{}", ctx());
            pseudo.extend_from_slice(&ip[8..40]);
            pseudo.extend_from_slice(&(udp_len as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, 17]);
        }
    }
    if stored != 0 {
        pseudo.extend_from_slice(datagram);
        assert_eq!(rfc1071(&pseudo), 0, "UDP checksum{}", ctx());
    }
}

/// Property 2.
fn agrees_with_etherparse(frame: &[u8], ours: &Result<Parsed<'_>, Reject>) {
    let theirs = etherparse_verdict(frame);
    assert_eq!(
        ours.is_ok(),
        theirs.is_ok(),
        "parse {:?}, etherparse {:?}\n  frame: {frame:02x?}",
        ours.as_ref().map(|_| ()),
        theirs.map(|_| ()),
    );
    if let (Ok(p), Ok((sport, dport, payload))) = (ours, theirs) {
        assert_eq!(
            (p.src.port(), p.dst.port(), p.payload),
            (sport, dport, payload),
            "ports and payload\n  frame: {frame:02x?}"
        );
    }
}
