//! The properties the fuzz targets check, and the byte layouts of their inputs.
//!
//! Each target in `fuzz_targets/` is one line that hands libFuzzer's input to a
//! `check` function here; `src/bin/seed.rs` writes the seed corpora with the
//! `encode` functions of the same modules, so the two cannot disagree on a layout.
//! The oracles are independent of the code under test: byte offsets read by hand
//! (RFC 791, 8200, 768, 1071) and etherparse's `SlicedPacket`, with the documented
//! differences of xdpstack's parsers named where they are allowed.

pub mod pcap_record;
pub mod steer;
pub mod udp_parse;

/// Ethernet header length, and the EtherType offset in the first 14 bytes.
const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;

/// The big-endian `u16` at `off`, if the slice holds it.
pub fn be16(b: &[u8], off: usize) -> Option<u16> {
    let w = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_be_bytes([w[0], w[1]]))
}

/// 802.1Q, 802.1ad and the pre-standard QinQ 0x9100 (both parsers take all three).
fn is_vlan(ethertype: u16) -> bool {
    matches!(ethertype, 0x8100 | 0x88a8 | 0x9100)
}

/// Where the IP packet of `frame` ends by its own length field (IPv4 total length,
/// IPv6 40 + payload length), when the frame holds all of it: Ethernet, at most two
/// VLAN tags, an IPv4 header with the right version, IHL >= 5 and IHL*4 <= total
/// length, or an IPv6 header with the right version. `None` otherwise.
///
/// Both parsers must decide such a frame from its first `end` bytes alone: what
/// follows is Ethernet padding (RFC 894: the data field is padded to 46 octets; RFC
/// 8200 3 and RFC 791 bound the packet by its length field).
pub fn ip_end(frame: &[u8]) -> Option<usize> {
    let mut ethertype = be16(frame, 12)?;
    let mut l3 = ETH_HLEN;
    let mut tags = 0;
    while is_vlan(ethertype) {
        if tags == 2 {
            return None;
        }
        tags += 1;
        ethertype = be16(frame, l3 + 2)?;
        l3 += VLAN_HLEN;
    }
    let first = *frame.get(l3)?;
    let end = match ethertype {
        ETH_P_IP => {
            let ihl = usize::from(first & 0x0f) * 4;
            let total = usize::from(be16(frame, l3 + 2)?);
            if first >> 4 != 4 || ihl < 20 || ihl > total {
                return None;
            }
            l3 + total
        }
        ETH_P_IPV6 if first >> 4 == 6 => l3 + 40 + usize::from(be16(frame, l3 + 4)?),
        _ => return None,
    };
    (end <= frame.len()).then_some(end)
}

/// The two variants of `frame` that differ only in the padding after `end`: cut at
/// `end`, and with every padding byte inverted.
pub fn padding_variants(frame: &[u8], end: usize) -> [Vec<u8>; 2] {
    let mut inverted = frame.to_vec();
    for b in &mut inverted[end..] {
        *b = !*b;
    }
    [frame[..end].to_vec(), inverted]
}
