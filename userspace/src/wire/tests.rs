//! Tests of the UDP parser and the reply builders: byte fixtures, the XDP
//! program's corpus, checksums, reply round trips, and property tests (no panics,
//! round trips, differentials against etherparse and against steer.rs).

use std::net::{IpAddr, SocketAddr};

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use xdp_ebpf::corpus::{self, STEERED_PORT};
use xdp_ebpf::{Counter, SteerMode, Verdict, classify};

use super::oracle::{agrees_with_steer, etherparse_verdict, reject_for, rfc1071};
use super::*;

// ---------------------------------------------------------------------------------
// Byte fixtures (built by an independent script: its own RFC 1071 checksums).

/// IPv4 192.0.2.1:40000 -> 192.0.2.2:7, payload "ping", padded to 60 bytes with
/// 0xee (padding need not be zeros; it must never show up in the payload).
pub(crate) const V4_PADDED: &[u8] = &[
    // Ethernet: dst 02:00:00:00:00:01, src 02:00:00:00:00:02, EtherType IPv4
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x08, 0x00,
    // IPv4: IHL 5, total length 32, ID 0x1234, DF, TTL 64, UDP, checksum
    0x45, 0x00, 0x00, 0x20, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0xa4, 0x95, 0xc0, 0x00, 0x02, 0x01,
    0xc0, 0x00, 0x02, 0x02, // UDP: 40000 -> 7, length 12, checksum
    0x9c, 0x40, 0x00, 0x07, 0x00, 0x0c, 0x00, 0xba, // payload "ping"
    0x70, 0x69, 0x6e, 0x67, // Ethernet padding (not payload)
    0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee,
];

/// IPv6 [2001:db8::1]:40000 -> [2001:db8::2]:9000, payload "hello, xdpstack", no
/// padding.
pub(crate) const V6: &[u8] = &[
    // Ethernet, EtherType IPv6
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x86, 0xdd,
    // IPv6: payload length 23, next header UDP, hop limit 64, src, dst
    0x60, 0x00, 0x00, 0x00, 0x00, 0x17, 0x11, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02,
    // UDP: 40000 -> 9000, length 23, checksum
    0x9c, 0x40, 0x23, 0x28, 0x00, 0x17, 0xdc, 0x23, // payload
    0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x2c, 0x20, 0x78, 0x64, 0x70, 0x73, 0x74, 0x61, 0x63, 0x6b,
];

/// IPv4 in one 802.1Q tag (PCP 5, VLAN 100): 192.0.2.1:5353 -> 192.0.2.2:9000,
/// payload "vlan", padded with zeros.
pub(crate) const V4_VLAN: &[u8] = &[
    // Ethernet, TPID 0x8100, TCI PCP 5 VID 100, EtherType IPv4
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x81, 0x00, 0xa0, 0x64,
    0x08, 0x00, // IPv4, total length 32
    0x45, 0x00, 0x00, 0x20, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0xa4, 0x95, 0xc0, 0x00, 0x02, 0x01,
    0xc0, 0x00, 0x02, 0x02, // UDP: 5353 -> 9000, length 12
    0x14, 0xe9, 0x23, 0x28, 0x00, 0x0c, 0x6b, 0xe6, // payload "vlan"
    0x76, 0x6c, 0x61, 0x6e, // Ethernet padding
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
];

/// IPv6 in QinQ (802.1ad S-tag VLAN 10, 802.1Q C-tag VLAN 20):
/// [2001:db8::1]:40001 -> [2001:db8::2]:9000, payload "qinq".
const V6_QINQ: &[u8] = &[
    // Ethernet, TPID 0x88a8 VID 10, TPID 0x8100 VID 20, EtherType IPv6
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x88, 0xa8, 0x00, 0x0a,
    0x81, 0x00, 0x00, 0x14, 0x86, 0xdd, // IPv6: payload length 12
    0x60, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x11, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, // UDP: 40001 -> 9000, length 12
    0x9c, 0x41, 0x23, 0x28, 0x00, 0x0c, 0x05, 0x1d, // payload "qinq"
    0x71, 0x69, 0x6e, 0x71,
];

/// IPv4 with a Router Alert option (RFC 2113, IHL 6): 192.0.2.1:40000 ->
/// 192.0.2.2:9000, payload "options", padded with zeros.
const V4_OPTIONS: &[u8] = &[
    // Ethernet
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x08, 0x00,
    // IPv4: IHL 6, total length 39
    0x46, 0x00, 0x00, 0x27, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0x0f, 0x8a, 0xc0, 0x00, 0x02, 0x01,
    0xc0, 0x00, 0x02, 0x02, // IPv4 option: Router Alert, value 0
    0x94, 0x04, 0x00, 0x00, // UDP: length 15
    0x9c, 0x40, 0x23, 0x28, 0x00, 0x0f, 0xf6, 0x1a, // payload "options"
    0x6f, 0x70, 0x74, 0x69, 0x6f, 0x6e, 0x73, // Ethernet padding
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
];

/// IPv6 with Hop-by-Hop, Destination Options, Routing (type 253, Segments Left 0)
/// and an atomic Fragment header (RFC 6946): [2001:db8::1]:40000 ->
/// [2001:db8::2]:9000, payload "extension headers".
const V6_EXTS: &[u8] = &[
    // Ethernet
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x86, 0xdd,
    // IPv6: payload length 57, next header Hop-by-Hop
    0x60, 0x00, 0x00, 0x00, 0x00, 0x39, 0x00, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02,
    // Hop-by-Hop: next Destination Options, length 8, PadN
    0x3c, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00,
    // Destination Options: next Routing, PadN
    0x2b, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00,
    // Routing: next Fragment, type 253, Segments Left 0
    0x2c, 0x00, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00,
    // Fragment: next UDP, offset 0, M 0 (atomic, RFC 6946), ID 0xabcd
    0x11, 0x00, 0x00, 0x00, 0x00, 0x00, 0xab, 0xcd, // UDP: length 25
    0x9c, 0x40, 0x23, 0x28, 0x00, 0x19, 0x22, 0xc1, // payload "extension headers"
    0x65, 0x78, 0x74, 0x65, 0x6e, 0x73, 0x69, 0x6f, 0x6e, 0x20, 0x68, 0x65, 0x61, 0x64, 0x65, 0x72,
    0x73,
];

// ---------------------------------------------------------------------------------
// Helpers.

pub(crate) fn sock(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

fn be16(f: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([f[off], f[off + 1]])
}

fn put16(f: &mut [u8], off: usize, v: u16) {
    f[off..off + 2].copy_from_slice(&v.to_be_bytes());
}

/// Recompute the IPv4 header checksum of the header at `l3` (IHL from the header).
fn fix_ipv4_header_checksum(f: &mut [u8], l3: usize) {
    let ihl = usize::from(f[l3] & 0x0f) * 4;
    put16(f, l3 + 10, 0);
    let sum = rfc1071(&f[l3..l3 + ihl]);
    put16(f, l3 + 10, sum);
}

/// Recompute the UDP checksum of the datagram at `l4` (by its UDP length) over
/// the pseudo-header of the IP header at `l3`; a computed 0 is sent as all ones.
fn fix_udp_checksum(f: &mut [u8], l3: usize, l4: usize, v6: bool) {
    let len = usize::from(be16(f, l4 + 4));
    let mut buf = Vec::new();
    if v6 {
        buf.extend_from_slice(&f[l3 + 8..l3 + 40]);
        buf.extend_from_slice(&(len as u32).to_be_bytes());
        buf.extend_from_slice(&[0, 0, 0, 17]);
    } else {
        buf.extend_from_slice(&f[l3 + 12..l3 + 20]);
        buf.extend_from_slice(&[0, 17]);
        buf.extend_from_slice(&(len as u16).to_be_bytes());
    }
    put16(f, l4 + 6, 0);
    buf.extend_from_slice(&f[l4..l4 + len]);
    let sum = match rfc1071(&buf) {
        0 => 0xffff,
        s => s,
    };
    put16(f, l4 + 6, sum);
}

/// True when etherparse finds a UDP datagram in `frame` whose IPv4 header checksum
/// (if IPv4) and UDP checksum are correct by etherparse's own calculation.
fn etherparse_checksums_ok(frame: &[u8]) -> bool {
    let Ok(p) = SlicedPacket::from_ethernet(frame) else {
        return false;
    };
    let Some(TransportSlice::Udp(udp)) = &p.transport else {
        return false;
    };
    match &p.net {
        Some(NetSlice::Ipv4(ip)) => {
            let h = ip.header().to_header();
            h.header_checksum == h.calc_header_checksum()
                && (udp.checksum() == 0
                    || Ok(udp.checksum()) == udp.to_header().calc_checksum_ipv4(&h, udp.payload()))
        }
        Some(NetSlice::Ipv6(ip)) => {
            let h = ip.header().to_header();
            Ok(udp.checksum()) == udp.to_header().calc_checksum_ipv6(&h, udp.payload())
        }
        _ => false,
    }
}

// ---------------------------------------------------------------------------------
// Byte fixtures: every protocol combination.

#[test]
fn ipv4_padded_frame() {
    let p = parse(V4_PADDED).unwrap();
    assert_eq!(p.src, sock("192.0.2.1:40000"));
    assert_eq!(p.dst, sock("192.0.2.2:7"));
    assert_eq!(
        p.payload, b"ping",
        "the 14 bytes of padding are not payload"
    );
    assert_eq!(p.vlan, [None, None]);
    let l = p.layout;
    assert_eq!((l.l3(), l.l4(), l.ip_len(), l.udp_len()), (14, 34, 32, 12));
    assert_eq!((l.ip_version(), l.vlan_tags()), (IpVersion::V4, 0));
    assert_eq!((l.payload_offset(), l.udp_end()), (42, 46));
    assert_eq!(p.frame.len(), 60);
}

#[test]
fn ipv6_frame() {
    let p = parse(V6).unwrap();
    assert_eq!(p.src, sock("[2001:db8::1]:40000"));
    assert_eq!(p.dst, sock("[2001:db8::2]:9000"));
    assert_eq!(p.payload, b"hello, xdpstack");
    assert_eq!(p.vlan, [None, None]);
    let l = p.layout;
    assert_eq!((l.l3(), l.l4(), l.ip_len(), l.udp_len()), (14, 54, 63, 23));
    assert_eq!(l.ip_version(), IpVersion::V6);
}

#[test]
fn ipv4_in_one_vlan_tag() {
    let p = parse(V4_VLAN).unwrap();
    assert_eq!(p.src, sock("192.0.2.1:5353"));
    assert_eq!(p.dst, sock("192.0.2.2:9000"));
    assert_eq!(p.payload, b"vlan");
    // The VLAN ID only: the TCI's priority (5) is not part of it.
    assert_eq!(p.vlan, [Some(100), None]);
    assert_eq!(
        (p.layout.l3(), p.layout.l4(), p.layout.vlan_tags()),
        (18, 38, 1)
    );
}

#[test]
fn ipv6_in_qinq() {
    let p = parse(V6_QINQ).unwrap();
    assert_eq!(p.src, sock("[2001:db8::1]:40001"));
    assert_eq!(p.dst, sock("[2001:db8::2]:9000"));
    assert_eq!(p.payload, b"qinq");
    assert_eq!(p.vlan, [Some(10), Some(20)], "outer tag first");
    assert_eq!(
        (p.layout.l3(), p.layout.l4(), p.layout.vlan_tags()),
        (22, 62, 2)
    );
}

#[test]
fn ipv4_with_options() {
    let p = parse(V4_OPTIONS).unwrap();
    assert_eq!(p.src, sock("192.0.2.1:40000"));
    assert_eq!(p.dst, sock("192.0.2.2:9000"));
    assert_eq!(p.payload, b"options");
    assert_eq!(
        (p.layout.l3(), p.layout.l4(), p.layout.ip_len()),
        (14, 38, 39)
    );
}

#[test]
fn ipv6_with_extension_headers() {
    let p = parse(V6_EXTS).unwrap();
    assert_eq!(p.src, sock("[2001:db8::1]:40000"));
    assert_eq!(p.dst, sock("[2001:db8::2]:9000"));
    assert_eq!(p.payload, b"extension headers");
    // 4 extension headers of 8 octets between the IPv6 and the UDP header.
    assert_eq!(
        (p.layout.l3(), p.layout.l4(), p.layout.ip_len()),
        (14, 86, 97)
    );
}

#[test]
fn fixtures_agree_with_etherparse() {
    for f in [V4_PADDED, V6, V4_VLAN, V6_QINQ, V4_OPTIONS, V6_EXTS] {
        assert!(etherparse_checksums_ok(f));
        let p = SlicedPacket::from_ethernet(f).unwrap();
        let Some(TransportSlice::Udp(udp)) = p.transport else {
            panic!("no UDP");
        };
        assert_eq!(parse(f).unwrap().payload, udp.payload());
    }
}

#[test]
fn payload_ends_at_the_udp_length_not_the_ip_length() {
    // 8 more bytes of IP payload after the 12-byte datagram (the padding becomes
    // part of the IP packet): the datagram and its checksum are unchanged.
    let mut f = V4_PADDED.to_vec();
    put16(&mut f, 14 + 2, 40);
    fix_ipv4_header_checksum(&mut f, 14);
    let p = parse(&f).unwrap();
    assert_eq!(p.payload, b"ping");
    assert_eq!((p.layout.ip_len(), p.layout.udp_end()), (40, 46));
}

#[test]
fn padding_is_optional_but_the_datagram_is_not() {
    let unpadded = &V4_PADDED[..46];
    assert_eq!(parse(unpadded).unwrap().payload, b"ping");
    // One byte short of the IP total length.
    assert_eq!(parse(&V4_PADDED[..45]), Err(Reject::BadLength));
    assert_eq!(parse(&V6[..V6.len() - 1]), Err(Reject::BadLength));
}

// ---------------------------------------------------------------------------------
// The XDP program's corpus: every verdict maps to a result here.

/// Steered frames that are first fragments (offset 0, More Fragments): steer.rs
/// steers them by their UDP header, this parser does no reassembly.
const STEERED_FIRST_FRAGMENTS: [&str; 4] = [
    "steer/udp4/first-fragment-udp-length-2008-beyond-fragment",
    "steer/udp4/vlan-8100-options-first-fragment",
    "steer/udp6/first-fragment-udp-length-3008-beyond-fragment",
    "steer/udp6/hop-by-hop-dstopts-first-fragment",
];

/// Well-formed UDP the corpus does not steer only because of the port: datagrams
/// here (port filtering is the application's).
const UDP_TO_OTHER_PORTS: [&str; 6] = [
    "pass_not_steered/udp4/dst-port-9001",
    "pass_not_steered/udp4/dst-port-53-from-port-9000",
    "pass_not_steered/udp4/dst-port-0",
    "pass_not_steered/udp6/dst-port-9001",
    "pass_not_steered/udp4/qinq-88a8-8100-dst-port-9001",
    "pass_not_steered/udp6/hop-by-hop-dst-port-9001",
];

/// What `parse` must answer for a corpus case.
///
/// The corpus computes correct IPv4 header and UDP checksums for its well-formed
/// frames (`steer/udp4/udp-checksum-zero` carries 0, valid over IPv4). Its
/// malformed frames are well-formed ones with one field patched (IPv4 header
/// checksum recomputed, UDP checksum left stale) or cut short; each breaks a rule
/// checked before the UDP checksum, so the structural reason is the expected one
/// and no case expects a checksum reject.
fn expected(case: &corpus::Case) -> Result<(), Reject> {
    match case.expected {
        Verdict::Steer if STEERED_FIRST_FRAGMENTS.contains(&case.name.as_str()) => {
            Err(Reject::Fragment)
        }
        Verdict::Steer => Ok(()),
        Verdict::Pass(Counter::PassNotSteered)
            if UDP_TO_OTHER_PORTS.contains(&case.name.as_str()) =>
        {
            Ok(())
        }
        Verdict::Pass(counter) => Err(reject_for(counter).expect("a verdict of classify")),
    }
}

#[test]
fn every_corpus_case_gets_the_mapped_result() {
    let cases = corpus::cases();
    let names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    for name in STEERED_FIRST_FRAGMENTS.iter().chain(&UDP_TO_OTHER_PORTS) {
        assert!(names.contains(name), "{name} is not in the corpus any more");
    }
    let mut failures = Vec::new();
    let mut seen = std::collections::BTreeMap::new();
    for case in &cases {
        let want = expected(case);
        let got = parse(&case.frame);
        *seen.entry(format!("{want:?}")).or_insert(0) += 1;
        if got.map(|_| ()) != want {
            failures.push(format!(
                "{}: expected {want:?}, got {:?}\n  frame ({} bytes): {:02x?}",
                case.name,
                got.map(|_| ()),
                case.frame.len(),
                case.frame
            ));
            continue;
        }
        if let Ok(p) = got {
            // Steered frames go to the port, the others elsewhere; the payload
            // lies within the UDP length, which lies within the IP packet.
            assert_eq!(
                p.dst.port() == STEERED_PORT,
                case.expected == Verdict::Steer,
                "{}",
                case.name
            );
            let l = p.layout;
            assert_eq!(p.payload.len(), l.udp_len() - 8, "{}", case.name);
            assert!(l.udp_end() <= l.l3() + l.ip_len(), "{}", case.name);
            assert!(l.l3() + l.ip_len() <= case.frame.len(), "{}", case.name);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // Every result the table can produce occurs.
    for want in [
        "Ok(())",
        "Err(NotUdp)",
        "Err(Fragment)",
        "Err(Truncated)",
        "Err(BadIpHeader)",
        "Err(BadLength)",
        "Err(TooManyHeaders)",
    ] {
        assert!(seen.contains_key(want), "no case expects {want}: {seen:?}");
    }
}

// ---------------------------------------------------------------------------------
// Checksums.

#[test]
fn bad_ipv4_header_checksum_is_rejected() {
    // The IPv4 identification is in the header checksum but not in the UDP
    // pseudo-header: only the header checksum breaks.
    let mut f = V4_PADDED.to_vec();
    f[14 + 4] ^= 0x01;
    assert_eq!(parse(&f), Err(Reject::BadIpv4Checksum));
    fix_ipv4_header_checksum(&mut f, 14);
    assert!(parse(&f).is_ok());
}

#[test]
fn bad_udp_checksum_is_rejected_over_ipv4_and_ipv6() {
    for (frame, payload_at) in [(V4_PADDED, 42), (V6, 62), (V4_OPTIONS, 46), (V6_EXTS, 94)] {
        let mut f = frame.to_vec();
        f[payload_at] ^= 0x20;
        assert_eq!(parse(&f), Err(Reject::BadUdpChecksum), "{frame:02x?}");
    }
    // A wrong pseudo-header (another destination address) too.
    let mut f = V6.to_vec();
    f[14 + 39] = 3;
    assert_eq!(parse(&f), Err(Reject::BadUdpChecksum));
}

#[test]
fn zero_udp_checksum_means_none_over_ipv4() {
    let mut f = V4_PADDED.to_vec();
    put16(&mut f, 34 + 6, 0);
    f[42] ^= 0x20; // not verified: no checksum was sent
    assert_eq!(parse(&f).unwrap().payload, b"Ping");
}

#[test]
fn zero_udp_checksum_is_rejected_over_ipv6() {
    for (frame, l4) in [(V6, 54), (V6_QINQ, 62), (V6_EXTS, 86)] {
        let mut f = frame.to_vec();
        put16(&mut f, l4 + 6, 0);
        assert_eq!(parse(&f), Err(Reject::ZeroUdpChecksumIpv6));
    }
}

#[test]
fn a_computed_zero_checksum_is_sent_as_all_ones() {
    // Add the datagram's checksum to a payload word (one's complement addition):
    // the sum then comes out as 0, which RFC 768 sends as 0xffff.
    for (frame, l3, l4, v6) in [(V4_PADDED, 14, 34, false), (V6, 14, 54, true)] {
        let mut f = frame.to_vec();
        let sum = u32::from(be16(&f, l4 + 8)) + u32::from(be16(&f, l4 + 6));
        put16(&mut f, l4 + 8, ((sum & 0xffff) + (sum >> 16)) as u16);
        fix_udp_checksum(&mut f, l3, l4, v6);
        assert_eq!(be16(&f, l4 + 6), 0xffff);
        assert!(parse(&f).is_ok());
        assert!(etherparse_checksums_ok(&f));
    }
}

proptest! {
    /// The checksum helpers of etherparse that the parser and the reply builders
    /// use, as they use them, agree with a plain RFC 1071 sum.
    #[test]
    fn etherparse_sum_matches_rfc1071(data in prop::collection::vec(any::<u8>(), 0..200)) {
        let sum = etherparse::checksum::Sum16BitWords::new()
            .add_slice(&data)
            .ones_complement()
            .to_be();
        prop_assert_eq!(sum, rfc1071(&data));
    }
}

// ---------------------------------------------------------------------------------
// Other rejects.

#[test]
fn udp_behind_ipv6_ah_is_not_ours() {
    // AH (RFC 4302) with Payload Len 4 (24 octets), then a valid UDP datagram.
    let mut ah = vec![17, 4, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 1];
    ah.resize(24, 0);
    let udp_at = 14 + 40 + ah.len();
    let mut f = V6[..54].to_vec();
    f[14 + 6] = 51;
    f.extend_from_slice(&ah);
    f.extend_from_slice(&V6[54..]);
    put16(&mut f, 14 + 4, (ah.len() + 23) as u16);
    fix_udp_checksum(&mut f, 14, udp_at, true);
    assert!(etherparse_checksums_ok(&f), "etherparse finds the datagram");
    assert_eq!(parse(&f), Err(Reject::NotUdp));
    // An AH with Payload Len 0 (shorter than its own fixed fields): still AH.
    f[54 + 1] = 0;
    assert_eq!(parse(&f), Err(Reject::NotUdp));
}

#[test]
fn routing_header_with_segments_left_is_not_for_this_host() {
    let mut f = V6_EXTS.to_vec();
    f[14 + 40 + 16 + 3] = 1; // Segments Left
    assert_eq!(parse(&f), Err(Reject::RoutingHeader));
}

/// Also the regression test for iterating the headers of a walk that stopped at
/// an error: etherparse 0.21's iterator would read beyond its slice here (debug
/// builds abort on the `get_unchecked` precondition).
#[test]
fn hop_by_hop_after_another_header_is_too_many_headers() {
    let mut f = V6_EXTS.to_vec();
    // Destination Options -> Hop-by-Hop instead of Routing.
    f[14 + 40 + 8] = 0;
    assert_eq!(parse(&f), Err(Reject::TooManyHeaders));
}

#[test]
fn ipv6_payload_length_zero_is_a_bad_length_unless_nothing_follows() {
    let mut f = V6.to_vec();
    put16(&mut f, 14 + 4, 0);
    assert_eq!(
        parse(&f),
        Err(Reject::BadLength),
        "a jumbogram, not supported"
    );
    f[14 + 6] = 59; // No Next Header
    assert_eq!(parse(&f), Err(Reject::NotUdp));
}

#[test]
fn udp_length_zero_is_a_bad_length() {
    // etherparse would take the rest of the IP payload; RFC 768 says 8 at least.
    let mut f = V4_PADDED.to_vec();
    put16(&mut f, 34 + 4, 0);
    assert_eq!(parse(&f), Err(Reject::BadLength));
}

#[test]
fn macsec_and_other_ethertypes_are_not_udp() {
    for ethertype in [0x88e5u16, 0x0806, 0x88cc, 0x0026] {
        let mut f = V4_PADDED.to_vec();
        put16(&mut f, 12, ethertype);
        assert_eq!(parse(&f), Err(Reject::NotUdp), "{ethertype:#06x}");
    }
}

#[test]
fn extension_header_beyond_the_payload_length_is_a_bad_length() {
    // The frames of xdp-ebpf's `divergence_extension_header_past_payload_length`:
    // a Fragment header announced in a 2-octet payload, whatever the padding.
    let mut f = V6[..54].to_vec();
    f[14 + 6] = 44;
    put16(&mut f, 14 + 4, 2);
    f.extend_from_slice(&[17, 0]);
    let mut zero_padded = f.clone();
    zero_padded.resize(60, 0);
    let mut odd_padded = f.clone();
    odd_padded.extend_from_slice(&[0x00, 0x08, 0x00, 0x00]);
    for frame in [f, zero_padded, odd_padded] {
        assert_eq!(parse(&frame), Err(Reject::BadLength));
    }
}

// ---------------------------------------------------------------------------------
// Reject counters.

#[test]
fn reject_names_are_stable_and_unique() {
    let names: Vec<&str> = Reject::ALL.iter().map(|r| r.name()).collect();
    assert_eq!(
        names,
        [
            "not_udp",
            "truncated",
            "bad_ip_header",
            "bad_length",
            "bad_ipv4_checksum",
            "bad_udp_checksum",
            "zero_udp_checksum_ipv6",
            "fragment",
            "too_many_headers",
            "routing_header",
        ]
    );
}

#[test]
fn reject_counters_count_iterate_and_serialize_alike() {
    let mut c = RejectCounters::default();
    for (i, r) in Reject::ALL.into_iter().enumerate() {
        for _ in 0..=i {
            c.count(r);
        }
    }
    for (i, r) in Reject::ALL.into_iter().enumerate() {
        assert_eq!(c.get(r), i as u64 + 1, "{r:?}");
    }
    assert_eq!(c.total(), (1..=10).sum::<u64>());
    let listed: Vec<(&str, u64)> = c.iter().collect();
    assert_eq!(listed[0], ("not_udp", 1));
    assert_eq!(listed[9], ("routing_header", 10));
    // The JSON fields are the names `iter` gives, with the same values.
    let json = serde_json::to_value(c).unwrap();
    let object = json.as_object().unwrap();
    assert_eq!(object.len(), Reject::ALL.len());
    for (name, value) in listed {
        assert_eq!(object[name], value, "{name}");
    }
    let mut sum = c;
    sum += &c;
    assert_eq!(sum.get(Reject::Fragment), 16);
    assert_eq!(sum.total(), 2 * c.total());
}

// ---------------------------------------------------------------------------------
// Replies.

const FIXTURES: [(&str, &[u8]); 6] = [
    ("v4", V4_PADDED),
    ("v6", V6),
    ("v4-vlan", V4_VLAN),
    ("v6-qinq", V6_QINQ),
    ("v4-options", V4_OPTIONS),
    ("v6-exts", V6_EXTS),
];

/// The reply `make_reply_in_place` makes of `frame`, cut to its length.
fn reply(frame: &[u8]) -> Vec<u8> {
    let layout = parse(frame).unwrap().layout;
    let mut f = frame.to_vec();
    let len = make_reply_in_place(&mut f, &layout).unwrap();
    f.truncate(len);
    f
}

/// Check that `reply` answers `request`: swapped addresses and ports, the same
/// payload and VLAN tags, a fresh hop limit, correct checksums by etherparse, no
/// padding, options or extension headers.
fn assert_answers(request: &[u8], reply: &[u8]) {
    let req = parse(request).unwrap();
    let rep = parse(reply).unwrap_or_else(|e| panic!("reply does not parse: {e}"));
    assert_eq!((rep.src, rep.dst), (req.dst, req.src));
    assert_eq!(rep.payload, req.payload);
    assert_eq!(rep.vlan, req.vlan);
    assert!(etherparse_checksums_ok(reply), "checksums by etherparse");
    let l3 = req.layout.l3();
    assert_eq!(&reply[..6], &request[6..12], "MACs swapped");
    assert_eq!(&reply[6..12], &request[..6], "MACs swapped");
    assert_eq!(
        &reply[12..l3],
        &request[12..l3],
        "VLAN tags (TPID, TCI) kept"
    );
    let (hop_limit, hlen) = match req.layout.ip_version() {
        IpVersion::V4 => (reply[l3 + 8], 20),
        IpVersion::V6 => (reply[l3 + 7], 40),
    };
    assert_eq!(hop_limit, REPLY_HOP_LIMIT);
    assert_eq!(
        rep.layout.l4(),
        l3 + hlen,
        "no options or extension headers"
    );
    assert_eq!(reply.len(), rep.layout.udp_end(), "no padding");
    assert_eq!(rep.layout.l3() + rep.layout.ip_len(), reply.len());
}

#[test]
fn in_place_replies_answer_every_fixture() {
    for (name, frame) in FIXTURES {
        let r = reply(frame);
        assert_answers(frame, &r);
        assert!(r.len() <= frame.len(), "{name}");
    }
    assert_eq!(reply(V4_PADDED).len(), 46, "14 bytes of padding dropped");
}

#[test]
fn reply_of_reply_is_the_original() {
    // The fixtures carry TTL/hop limit 64 and no ECN, so the only changes are the
    // dropped padding and the dropped options or extension headers.
    for (name, frame) in FIXTURES {
        let twice = reply(&reply(frame));
        let p = parse(frame).unwrap().layout;
        if p.l4()
            == p.l3()
                + if p.ip_version() == IpVersion::V4 {
                    20
                } else {
                    40
                }
        {
            assert_eq!(twice, &frame[..p.udp_end()], "{name}");
        } else {
            assert_eq!(twice, reply(&reply(&twice)), "{name}");
            assert_answers(frame, &reply(frame));
        }
    }
}

#[test]
fn options_and_extension_headers_are_dropped_from_replies() {
    let r = reply(V4_OPTIONS);
    assert_eq!(r[14], 0x45);
    assert_eq!(be16(&r, 16), 20 + 15);
    // The UDP header right behind the 20-byte header: ports swapped, length 15.
    assert_eq!(&r[34..40], &[0x23, 0x28, 0x9c, 0x40, 0x00, 0x0f]);
    assert_eq!(parse(&r).unwrap().payload, b"options");
    let r = reply(V6_EXTS);
    assert_eq!((r[14 + 6], be16(&r, 14 + 4)), (17, 25));
    assert_eq!(parse(&r).unwrap().payload, b"extension headers");
}

#[test]
fn write_reply_builds_what_the_in_place_reply_makes() {
    for (name, frame) in FIXTURES {
        let req = parse(frame).unwrap();
        let mut buf = [0x55u8; 2048];
        let len = write_reply(&mut buf, req.frame, &req.layout, req.payload).unwrap();
        assert_eq!(&buf[..len], &reply(frame)[..], "{name}");
        assert!(
            buf[len..].iter().all(|&b| b == 0x55),
            "{name}: beyond the reply"
        );
    }
}

#[test]
fn write_reply_carries_any_payload() {
    for (name, frame) in FIXTURES {
        let req = parse(frame).unwrap();
        for payload in [&b""[..], b"x", &[0xab; 1472][..]] {
            let mut buf = vec![0u8; 1600];
            let len = write_reply(&mut buf, req.frame, &req.layout, payload).unwrap();
            let rep = parse(&buf[..len]).unwrap();
            assert_eq!(rep.payload, payload, "{name}");
            assert_eq!((rep.src, rep.dst), (req.dst, req.src), "{name}");
            assert!(etherparse_checksums_ok(&buf[..len]), "{name}");
        }
    }
}

#[test]
fn ecn_is_cleared_and_dscp_kept() {
    let mut f = V4_PADDED.to_vec();
    f[15] = 0xb8 | 0x03; // DSCP EF, ECN CE
    fix_ipv4_header_checksum(&mut f, 14);
    let r = reply(&f);
    assert_eq!(r[15], 0xb8);
    let mut f = V6.to_vec();
    f[14] = 0x6b; // traffic class 0xb8 | CE: 0x6b 0x80 | 0x30
    f[15] = 0xb0;
    let r = reply(&f);
    assert_eq!((r[14], r[15]), (0x6b, 0x80));
}

#[test]
fn replies_need_unicast_addresses_and_a_source_port() {
    let cases: [(&[u8], usize, &[u8]); 5] = [
        (V4_PADDED, 0, &[0xff; 6]),                   // broadcast MAC
        (V4_PADDED, 0, &[0x01, 0x00, 0x5e, 0, 0, 1]), // multicast MAC
        (V4_PADDED, 14 + 16, &[224, 0, 0, 251]),      // multicast IPv4
        (V4_PADDED, 14 + 16, &[255, 255, 255, 255]),  // limited broadcast
        (V6, 14 + 24, &[0xff, 0x02]),                 // ff02::2 multicast IPv6
    ];
    for (frame, at, bytes) in cases {
        let layout = parse(frame).unwrap().layout;
        let mut f = frame.to_vec();
        f[at..at + bytes.len()].copy_from_slice(bytes);
        let before = f.clone();
        assert_eq!(
            make_reply_in_place(&mut f, &layout),
            Err(ReplyError::NotUnicast),
            "{bytes:02x?} at {at}"
        );
        assert_eq!(f, before, "unchanged on error");
    }
    let layout = parse(V6).unwrap().layout;
    let mut f = V6.to_vec();
    put16(&mut f, 54, 0);
    assert_eq!(
        make_reply_in_place(&mut f, &layout),
        Err(ReplyError::ZeroSourcePort)
    );
}

#[test]
fn reply_errors_name_the_problem() {
    let req = parse(V6_QINQ).unwrap();
    let mut small = [0u8; 73];
    assert_eq!(
        write_reply(&mut small, req.frame, &req.layout, b"qinq"),
        Err(ReplyError::BufferTooSmall {
            needed: 74,
            available: 73
        })
    );
    assert!(write_reply(&mut [0u8; 74], req.frame, &req.layout, b"qinq").is_ok());
    let huge = vec![0u8; 65_535 - 8 + 1];
    let mut buf = vec![0u8; 70_000];
    assert_eq!(
        write_reply(&mut buf, req.frame, &req.layout, &huge),
        Err(ReplyError::PayloadTooLong {
            len: huge.len(),
            version: IpVersion::V6
        })
    );
    assert!(write_reply(&mut buf, req.frame, &req.layout, &huge[1..]).is_ok());
    let req = parse(V4_PADDED).unwrap();
    assert_eq!(
        write_reply(&mut buf, req.frame, &req.layout, &huge[20..]),
        Err(ReplyError::PayloadTooLong {
            len: 65_508,
            version: IpVersion::V4
        })
    );
    // A layout applied to another frame.
    let layout = parse(V4_PADDED).unwrap().layout;
    for other in [V6, &V4_PADDED[..45], V4_OPTIONS] {
        let mut f = other.to_vec();
        assert_eq!(
            make_reply_in_place(&mut f, &layout),
            Err(ReplyError::LayoutMismatch)
        );
    }
    assert_eq!(
        ReplyError::BufferTooSmall {
            needed: 74,
            available: 73
        }
        .to_string(),
        "udp reply: the reply frame needs 74 bytes, the buffer has 73"
    );
}

// ---------------------------------------------------------------------------------
// Generated frames.

const TPIDS: [u16; 3] = [0x8100, 0x88a8, 0x9100];

/// An IPv6 extension header for [`Spec`].
#[derive(Clone, Copy, Debug)]
enum Ext {
    /// Hop-by-Hop (only first) or Destination Options with this Hdr Ext Len,
    /// filled with PadN.
    Options(u8),
    /// Routing type 253 (RFC 4727), Segments Left 0.
    Routing,
    /// Fragment header, offset 0, M 0 (RFC 6946).
    AtomicFragment,
}

/// The IP layer of a generated frame.
#[derive(Clone, Debug)]
enum NetSpec {
    V4 {
        src: [u8; 4],
        dst: [u8; 4],
        /// IPv4 options (a multiple of 4 octets): NOPs and End of Options.
        options: usize,
        ttl: u8,
        dont_fragment: bool,
    },
    V6 {
        src: [u8; 16],
        dst: [u8; 16],
        flow_label: u32,
        hop_limit: u8,
        hop_by_hop: Option<u8>,
        exts: Vec<Ext>,
    },
}

/// A valid UDP frame to generate.
#[derive(Clone, Debug)]
struct Spec {
    /// (TPID, TCI), outermost first.
    tags: Vec<(u16, u16)>,
    net: NetSpec,
    dscp: u8,
    src_port: u16,
    dst_port: u16,
    payload: Vec<u8>,
    /// Bytes after the IP packet: padding to 60 bytes, then this many more.
    trailer: usize,
}

/// `spec` as a frame, with the offsets of its IP and UDP headers. Checksums by
/// the reference [`rfc1071`].
fn build(spec: &Spec) -> (Vec<u8>, usize, usize) {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02];
    for &(tpid, tci) in &spec.tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    let l3 = f.len() + 2;
    let udp_len = 8 + spec.payload.len();
    let (l4, v6) = match &spec.net {
        NetSpec::V4 {
            src,
            dst,
            options,
            ttl,
            dont_fragment,
        } => {
            f.extend_from_slice(&0x0800u16.to_be_bytes());
            let hlen = 20 + options;
            f.push(0x40 | (hlen / 4) as u8);
            f.push(spec.dscp << 2);
            f.extend_from_slice(&((hlen + udp_len) as u16).to_be_bytes());
            f.extend_from_slice(&0x5a5au16.to_be_bytes());
            f.extend_from_slice(&(if *dont_fragment { 0x4000u16 } else { 0 }).to_be_bytes());
            f.extend_from_slice(&[*ttl, 17, 0, 0]);
            f.extend_from_slice(src);
            f.extend_from_slice(dst);
            let mut opts = vec![1u8; *options];
            if let Some(last) = opts.last_mut() {
                *last = 0;
            }
            f.extend_from_slice(&opts);
            fix_ipv4_header_checksum(&mut f, l3);
            (l3 + hlen, false)
        }
        NetSpec::V6 {
            src,
            dst,
            flow_label,
            hop_limit,
            hop_by_hop,
            exts,
        } => {
            f.extend_from_slice(&0x86ddu16.to_be_bytes());
            let mut chain: Vec<(u8, Vec<u8>)> = Vec::new();
            let options = |units: u8| {
                let len = (usize::from(units) + 1) * 8;
                let mut h = vec![0, units, 1, (len - 4) as u8];
                h.resize(len, 0);
                h
            };
            if let Some(units) = hop_by_hop {
                chain.push((0, options(*units)));
            }
            for ext in exts {
                chain.push(match ext {
                    Ext::Options(units) => (60, options(*units)),
                    Ext::Routing => (43, vec![0, 0, 253, 0, 0, 0, 0, 0]),
                    Ext::AtomicFragment => (44, vec![0, 0, 0, 0, 0, 0, 0x12, 0x34]),
                });
            }
            let ext_len: usize = chain.iter().map(|(_, h)| h.len()).sum();
            let first = chain.first().map_or(17, |(p, _)| *p);
            let word = 6 << 28 | u32::from(spec.dscp) << 22 | (flow_label & 0xf_ffff);
            f.extend_from_slice(&word.to_be_bytes());
            f.extend_from_slice(&((ext_len + udp_len) as u16).to_be_bytes());
            f.extend_from_slice(&[first, *hop_limit]);
            f.extend_from_slice(src);
            f.extend_from_slice(dst);
            for i in 0..chain.len() {
                let next = chain.get(i + 1).map_or(17, |(p, _)| *p);
                let mut h = chain[i].1.clone();
                h[0] = next;
                f.extend_from_slice(&h);
            }
            (l3 + 40 + ext_len, true)
        }
    };
    f.extend_from_slice(&spec.src_port.to_be_bytes());
    f.extend_from_slice(&spec.dst_port.to_be_bytes());
    f.extend_from_slice(&(udp_len as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&spec.payload);
    fix_udp_checksum(&mut f, l3, l4, v6);
    let padded = f.len().max(60) + spec.trailer;
    // Padding need not be zeros.
    f.resize(padded, 0xa5);
    (f, l3, l4)
}

fn unicast_v4() -> impl Strategy<Value = [u8; 4]> {
    (1u8..=223, any::<[u8; 3]>()).prop_map(|(a, [b, c, d])| [a, b, c, d])
}

fn unicast_v6() -> impl Strategy<Value = [u8; 16]> {
    (0x20u8..=0xfe, any::<[u8; 15]>()).prop_map(|(a, rest)| {
        let mut ip = [a; 16];
        ip[1..].copy_from_slice(&rest);
        ip
    })
}

/// Extension headers that keep a datagram valid (Hop-by-Hop is placed first by
/// [`net`]); at most 7 after it, each at most 24 octets, well within the limits.
fn ext() -> impl Strategy<Value = Ext> {
    prop_oneof![
        (0u8..=2).prop_map(Ext::Options),
        Just(Ext::Routing),
        Just(Ext::AtomicFragment),
    ]
}

fn net(with_headers: bool) -> impl Strategy<Value = NetSpec> {
    let max_options: usize = if with_headers { 10 } else { 0 };
    let max_exts = if with_headers { 7 } else { 0 };
    prop_oneof![
        (
            unicast_v4(),
            unicast_v4(),
            0..=max_options,
            any::<u8>(),
            any::<bool>()
        )
            .prop_map(|(src, dst, words, ttl, dont_fragment)| NetSpec::V4 {
                src,
                dst,
                options: words * 4,
                ttl,
                dont_fragment,
            }),
        (
            unicast_v6(),
            unicast_v6(),
            any::<u32>(),
            any::<u8>(),
            prop::option::weighted(if with_headers { 0.3 } else { 0.0 }, 0u8..=2),
            prop::collection::vec(ext(), 0..=max_exts),
        )
            .prop_map(|(src, dst, flow_label, hop_limit, hop_by_hop, exts)| {
                NetSpec::V6 {
                    src,
                    dst,
                    flow_label,
                    hop_limit,
                    hop_by_hop,
                    exts,
                }
            }),
    ]
}

fn spec(with_headers: bool, max_payload: usize) -> impl Strategy<Value = Spec> {
    (
        prop::collection::vec((select(&TPIDS[..]), any::<u16>()), 0..=2),
        net(with_headers),
        0u8..64,
        1u16..,
        any::<u16>(),
        prop::collection::vec(any::<u8>(), 0..=max_payload),
        0usize..=4,
    )
        .prop_map(
            |(tags, net, dscp, src_port, dst_port, payload, trailer)| Spec {
                tags,
                net,
                dscp,
                src_port,
                dst_port,
                payload,
                trailer,
            },
        )
}

/// The frame the reply of the reply of `spec` must be: the same datagram with
/// TTL/hop limit 64, without options, extension headers or padding.
fn normalized(spec: &Spec) -> Vec<u8> {
    let mut s = spec.clone();
    s.trailer = 0;
    match &mut s.net {
        NetSpec::V4 { options, ttl, .. } => {
            *options = 0;
            *ttl = REPLY_HOP_LIMIT;
        }
        NetSpec::V6 {
            hop_limit,
            hop_by_hop,
            exts,
            ..
        } => {
            *hop_limit = REPLY_HOP_LIMIT;
            *hop_by_hop = None;
            exts.clear();
        }
    }
    let (mut f, _, l4) = build(&s);
    f.truncate(l4 + 8 + s.payload.len());
    f
}

proptest! {
    /// Random valid datagrams (IPv4/IPv6, 0-2 VLAN tags of any TPID, IPv4 options,
    /// IPv6 extension headers, payloads of 0-1472 bytes, padding) parse back to
    /// what was built.
    #[test]
    fn valid_datagrams_round_trip(spec in spec(true, 1472)) {
        let (f, l3, l4) = build(&spec);
        let p = parse(&f).map_err(|e| TestCaseError::fail(format!("{e}: {f:02x?}")))?;
        let (src, dst): (IpAddr, IpAddr) = match &spec.net {
            NetSpec::V4 { src, dst, .. } => ((*src).into(), (*dst).into()),
            NetSpec::V6 { src, dst, .. } => ((*src).into(), (*dst).into()),
        };
        prop_assert_eq!(p.src, SocketAddr::new(src, spec.src_port));
        prop_assert_eq!(p.dst, SocketAddr::new(dst, spec.dst_port));
        prop_assert_eq!(p.payload, &spec.payload[..]);
        let vlan: Vec<Option<u16>> = spec.tags.iter().map(|&(_, tci)| Some(tci & 0x0fff)).collect();
        prop_assert_eq!(&p.vlan[..spec.tags.len()], &vlan[..]);
        prop_assert!(p.vlan[spec.tags.len()..].iter().all(Option::is_none));
        prop_assert_eq!((p.layout.l3(), p.layout.l4()), (l3, l4));
        prop_assert_eq!(p.layout.udp_len(), 8 + spec.payload.len());
        prop_assert!(etherparse_checksums_ok(&f));
    }

    /// Replies of random datagrams answer them; the reply of the reply is the
    /// request, normalized; `write_reply` builds the same bytes.
    #[test]
    fn replies_round_trip(spec in spec(true, 1472)) {
        let (f, _, _) = build(&spec);
        let r = reply(&f);
        assert_answers(&f, &r);
        prop_assert_eq!(reply(&r), normalized(&spec));
        let req = parse(&f).unwrap();
        let mut buf = vec![0u8; 2048];
        let len = write_reply(&mut buf, req.frame, &req.layout, req.payload).unwrap();
        prop_assert_eq!(&buf[..len], &r[..]);
    }
}

// ---------------------------------------------------------------------------------
// Robustness: no input panics.

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        let _ = parse(&bytes);
    }

    /// Random bytes behind real EtherTypes and VLAN tags, so that the IP and
    /// extension header code sees them.
    #[test]
    fn random_bytes_behind_ip_ethertypes_never_panic(
        tpids in prop::collection::vec(select(&TPIDS[..]), 0..=3),
        ethertype in select(&[0x0800u16, 0x86dd][..]),
        first in select(&[0x45u8, 0x46, 0x4f, 0x60][..]),
        next_header in select(&[0u8, 17, 43, 44, 51, 59, 60][..]),
        rest in prop::collection::vec(any::<u8>(), 0..1500),
    ) {
        let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
        for tpid in tpids {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&[0, 1]);
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.push(first);
        f.extend_from_slice(&rest);
        let l3 = f.len() - rest.len() - 1;
        if ethertype == 0x86dd && f.len() > l3 + 6 {
            f[l3 + 6] = next_header;
        }
        let _ = parse(&f);
    }

    /// The reply builders with any frame and any layout, consistent or not.
    #[test]
    fn reply_builders_never_panic(
        mut frame in prop::collection::vec(any::<u8>(), 0..200),
        l3 in 0usize..100,
        l4 in 0usize..200,
        ip_len in 0usize..300,
        udp_len in prop_oneof![0usize..300, Just(usize::MAX), Just(usize::MAX - 7)],
        v6 in any::<bool>(),
        payload in prop::collection::vec(any::<u8>(), 0..100),
        dst_len in 0usize..300,
    ) {
        let layout = Layout {
            l3,
            l4,
            ip_len,
            udp_len,
            version: if v6 { IpVersion::V6 } else { IpVersion::V4 },
        };
        let copy = frame.clone();
        let mut dst = vec![0u8; dst_len];
        let _ = write_reply(&mut dst, &copy, &layout, &payload);
        let _ = make_reply_in_place(&mut frame, &layout);
    }
}

// ---------------------------------------------------------------------------------
// Differentials on mutated frames.

/// Byte values that mean something in the headers: IP versions and IHLs,
/// protocol numbers, EtherType and TPID halves, fragment bits.
const INTERESTING: [u8; 26] = [
    0x00, 0x01, 0x05, 0x06, 0x08, 0x11, 0x20, 0x23, 0x28, 0x2b, 0x2c, 0x33, 0x3b, 0x3c, 0x40, 0x45,
    0x4f, 0x60, 0x80, 0x81, 0x86, 0x88, 0x91, 0xa8, 0xdd, 0xff,
];

#[derive(Clone, Debug)]
enum Mutation {
    /// Replace the byte at the position (the `bool`: within the first 128 bytes).
    Set(bool, Index, u8),
    /// Flip these bits of the byte at the position.
    Flip(bool, Index, u8),
    /// Cut the frame here.
    Cut(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let value = prop_oneof![select(&INTERESTING[..]), any::<u8>()];
    prop_oneof![
        4 => (prop::bool::weighted(0.8), any::<Index>(), value)
            .prop_map(|(h, i, v)| Mutation::Set(h, i, v)),
        4 => (prop::bool::weighted(0.8), any::<Index>(), 1u8..=255)
            .prop_map(|(h, i, v)| Mutation::Flip(h, i, v)),
        1 => any::<Index>().prop_map(Mutation::Cut),
    ]
}

fn mutate(f: &mut Vec<u8>, m: &Mutation) {
    if f.is_empty() {
        return;
    }
    let at = |headers: bool, i: &Index| i.index(if headers { f.len().min(128) } else { f.len() });
    match m {
        Mutation::Set(h, i, v) => {
            let at = at(*h, i);
            f[at] = *v;
        }
        Mutation::Flip(h, i, v) => {
            let at = at(*h, i);
            f[at] ^= *v;
        }
        Mutation::Cut(i) => {
            let at = i.index(f.len());
            f.truncate(at);
        }
    }
}

/// Recompute the checksums a mutation broke, where the (mutated) headers at the
/// original offsets still allow it, so that mutated frames also reach the length
/// and structure rules behind the checksums.
fn refresh_checksums(f: &mut [u8], l3: usize, l4: usize, v6: bool) {
    if !v6 && f.len() >= l3 + 20 {
        let ihl = usize::from(f[l3] & 0x0f) * 4;
        if ihl >= 20 && l3 + ihl <= f.len() {
            fix_ipv4_header_checksum(f, l3);
        }
    }
    let ip_end = if v6 { l3 + 40 } else { l3 + 20 };
    if f.len() >= l4 + 8 && l4 >= ip_end {
        let len = usize::from(be16(f, l4 + 4));
        if len >= 8 && l4 + len <= f.len() {
            fix_udp_checksum(f, l3, l4, v6);
        }
    }
}

/// Valid frames with 1-5 mutations, half of them with their checksums
/// recomputed afterwards, some with the UDP checksum zeroed ("none").
fn mutated_frame() -> impl Strategy<Value = Vec<u8>> {
    (
        spec(true, 64),
        prop::collection::vec(mutation(), 1..6),
        any::<bool>(),
        prop::bool::weighted(0.05),
    )
        .prop_map(|(spec, mutations, refresh, zero_udp_checksum)| {
            let (mut f, l3, l4) = build(&spec);
            for m in &mutations {
                mutate(&mut f, m);
            }
            if refresh {
                refresh_checksums(&mut f, l3, l4, matches!(spec.net, NetSpec::V6 { .. }));
            }
            if zero_udp_checksum && f.len() >= l4 + 8 {
                put16(&mut f, l4 + 6, 0);
            }
            f
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    /// Differential against etherparse's own validating parse: the two agree on
    /// accepting or rejecting every mutated frame, and where both accept, on the
    /// datagram.
    #[test]
    fn mutated_frames_agree_with_etherparse(f in mutated_frame()) {
        let ours = parse(&f);
        let theirs = etherparse_verdict(&f);
        prop_assert_eq!(
            ours.is_ok(),
            theirs.is_ok(),
            "ours {:?}, etherparse {:?}\n  frame: {:02x?}",
            ours.map(|_| ()),
            theirs.map(|_| ()),
            f
        );
        if let (Ok(p), Ok((sport, dport, payload))) = (ours, theirs) {
            prop_assert_eq!((p.src.port(), p.dst.port(), p.payload), (sport, dport, payload));
        }
    }

    /// Differential against the XDP program's parser: every reason steer.rs gives
    /// is the reason given here, by the mapping table.
    #[test]
    fn mutated_frames_agree_with_steer(f in mutated_frame()) {
        let verdict = classify(&f[..], SteerMode::Udp, |_| true);
        let ours = parse(&f).map(|_| ());
        prop_assert!(
            agrees_with_steer(verdict, ours),
            "steer.rs {:?}, ours {:?}\n  frame: {:02x?}",
            verdict,
            ours,
            f
        );
    }
}

/// The mutated frames of the differentials reach every outcome of `parse` (so
/// the differentials test every reason), and accepted frames are common.
#[test]
fn mutated_frames_reach_every_outcome() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = mutated_frame();
    let mut accepted = 0;
    let mut rejected = RejectCounters::default();
    for _ in 0..5000 {
        let f = strategy.new_tree(&mut runner).unwrap().current();
        match parse(&f) {
            Ok(_) => accepted += 1,
            Err(reject) => rejected.count(reject),
        }
    }
    assert!(accepted > 500, "{accepted} of 5000 accepted");
    for (name, count) in rejected.iter() {
        assert!(
            count > 0,
            "no mutated frame is rejected as {name}: {rejected:?}"
        );
    }
}

#[test]
fn reject_discriminants_index_all() {
    // `UdpStats` indexes its counters with `reason as usize`.
    for (i, reason) in Reject::ALL.into_iter().enumerate() {
        assert_eq!(reason as usize, i, "{reason:?}");
    }
}

/// `add` counts n frames for its reason and no other, and adds up.
#[test]
fn reject_counters_add_up_per_reason() {
    for (i, r) in Reject::ALL.into_iter().enumerate() {
        let mut c = RejectCounters::default();
        c.add(r, 2);
        c.add(r, i as u64 + 3);
        c.count(r);
        assert_eq!(c.get(r), i as u64 + 6, "{r:?}");
        let others: u64 = Reject::ALL
            .iter()
            .filter(|&&o| o != r)
            .map(|&o| c.get(o))
            .sum();
        assert_eq!(others, 0, "{r:?} counted elsewhere");
    }
}

/// A jumbo request (an 8000-byte IPv4 datagram, as a 9000-byte MTU carries) is
/// answered like any other: the length checks bound the IP total length at
/// 65535, not the UDP length times anything.
#[test]
fn jumbo_requests_are_answered() {
    let payload = vec![0x5au8; 8000];
    let builder = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1])
        .ipv4([198, 18, 0, 2], [198, 18, 0, 1], 64)
        .udp(40000, 9000);
    let mut frame = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut frame, &payload).unwrap();
    let r = reply(&frame);
    assert_answers(&frame, &r);
    assert_eq!(parse(&r).unwrap().payload.len(), 8000);
}

/// Any address pair of one version, any port pair, any payload that fits.
fn addressing() -> impl Strategy<Value = Addressing> {
    let v4 =
        (any::<[u8; 4]>(), any::<[u8; 4]>()).prop_map(|(s, d)| (IpAddr::from(s), IpAddr::from(d)));
    let v6 = (any::<[u8; 16]>(), any::<[u8; 16]>())
        .prop_map(|(s, d)| (IpAddr::from(s), IpAddr::from(d)));
    (
        prop_oneof![v4, v6],
        any::<(u16, u16)>(),
        any::<([u8; 6], [u8; 6])>(),
    )
        .prop_map(|((s, d), (sp, dp), (smac, dmac))| Addressing {
            src_mac: smac,
            dst_mac: dmac,
            src: SocketAddr::new(s, sp),
            dst: SocketAddr::new(d, dp),
        })
}

proptest! {
    /// What `write_datagram` builds, the parser takes back whole (checksums
    /// verified) and etherparse reads the same way.
    #[test]
    fn written_datagrams_parse_back(to in addressing(), payload in proptest::collection::vec(any::<u8>(), 0..1500)) {
        let mut buf = vec![0xaa; 2048];
        let len = write_datagram(&mut buf, &to, &payload).unwrap();
        let frame = &buf[..len];
        let p = parse(frame).unwrap();
        prop_assert_eq!(p.src, to.src);
        prop_assert_eq!(p.dst, to.dst);
        prop_assert_eq!(p.payload, &payload[..]);
        prop_assert_eq!(&frame[..6], &to.dst_mac);
        prop_assert_eq!(&frame[6..12], &to.src_mac);
        prop_assert!(etherparse_checksums_ok(frame));
        prop_assert!(buf[len..].iter().all(|&b| b == 0xaa));
    }
}

#[test]
fn written_datagrams_refuse_what_headers_cannot_carry() {
    let v4 = SocketAddr::from(([198, 18, 0, 1], 9));
    let v6 = SocketAddr::from(([0xfd00, 0, 0, 0, 0, 0, 0, 1], 9));
    let mut to = Addressing {
        src_mac: [2; 6],
        dst_mac: [4; 6],
        src: v4,
        dst: v6,
    };
    let mut buf = vec![0; 128];
    assert!(matches!(
        write_datagram(&mut buf, &to, b"x"),
        Err(ReplyError::MixedVersions { .. })
    ));
    to.dst = v4;
    assert_eq!(
        write_datagram(&mut buf, &to, &[0; 100]),
        Err(ReplyError::BufferTooSmall {
            needed: 14 + 20 + 8 + 100,
            available: 128
        })
    );
    let big = vec![0; 65536 - 28];
    let mut huge = vec![0; 70000];
    assert!(matches!(
        write_datagram(&mut huge, &to, &big),
        Err(ReplyError::PayloadTooLong { .. })
    ));
    // The largest IPv4 datagram fits.
    assert!(write_datagram(&mut huge, &to, &big[..big.len() - 1]).is_ok());
}
