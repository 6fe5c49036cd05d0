//! The template frame: Ethernet II, IPv4 and UDP, built once per run.

use std::{fmt, net::Ipv4Addr, str::FromStr};

use super::{
    error::GenError,
    limits::{HEADERS_LEN, MAX_PAYLOAD, MIN_PAYLOAD},
};

/// An Ethernet (MAC) address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl FromStr for MacAddr {
    type Err = GenError;

    /// Six hex bytes separated by `:` or `-`, as `ip link` prints them.
    fn from_str(s: &str) -> Result<Self, GenError> {
        let bad = || GenError::BadMac(s.to_string());
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in &mut out {
            let part = parts.next().ok_or_else(bad)?;
            if part.is_empty() || part.len() > 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(MacAddr(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl serde::Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Every field of the template frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameSpec {
    /// Destination MAC: the receiving interface's own address, or the kernel
    /// there drops the frames as `PACKET_OTHERHOST`.
    pub dst_mac: MacAddr,
    /// Source MAC.
    pub src_mac: MacAddr,
    /// Source IPv4 address.
    pub src_ip: Ipv4Addr,
    /// Destination IPv4 address.
    pub dst_ip: Ipv4Addr,
    /// UDP source port of the template (the program overwrites it per flow).
    pub src_port: u16,
    /// UDP destination port.
    pub dst_port: u16,
    /// UDP payload length in bytes.
    pub payload: usize,
}

/// Build the template frame: Ethernet II, IPv4 (no options, DF, TTL 64, a correct
/// header checksum) and UDP with checksum 0, then `spec.payload` bytes counting up
/// from 0.
///
/// RFC 768: "An all zero transmitted checksum value means that the transmitter
/// generated no checksum". That is what lets the XDP program change the source
/// port without touching any checksum; the IPv4 header checksum does not cover the
/// ports, so it is computed here once.
///
/// Fails only for a payload outside [`MIN_PAYLOAD`]..=[`MAX_PAYLOAD`].
pub fn template(spec: &FrameSpec) -> Result<Vec<u8>, GenError> {
    if !(MIN_PAYLOAD..=MAX_PAYLOAD).contains(&spec.payload) {
        return Err(GenError::Payload(spec.payload));
    }
    // Both fit in 16 bits: the payload is at most 1472.
    let ip_len = (20 + 8 + spec.payload) as u16;
    let udp_len = (8 + spec.payload) as u16;
    let mut f = Vec::with_capacity(HEADERS_LEN + spec.payload);
    f.extend_from_slice(&spec.dst_mac.0);
    f.extend_from_slice(&spec.src_mac.0);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    // IPv4: version 4, IHL 5; DSCP/ECN 0; total length; identification 0 (RFC
    // 6864: atomic datagrams, DF set, need no unique ID); DF; TTL 64; UDP.
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&ip_len.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&spec.src_ip.octets());
    f.extend_from_slice(&spec.dst_ip.octets());
    let checksum = xdpstack::wire::internet_checksum(&f[14..34]);
    f[24..26].copy_from_slice(&checksum.to_be_bytes());
    // UDP: ports, length, checksum 0 ("none").
    f.extend_from_slice(&spec.src_port.to_be_bytes());
    f.extend_from_slice(&spec.dst_port.to_be_bytes());
    f.extend_from_slice(&udp_len.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend((0..spec.payload).map(|i| i as u8));
    Ok(f)
}

#[cfg(test)]
mod tests {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    use xdpstack_bench_ebpf::GEN_SRC_PORT_OFFSET;

    use super::*;

    fn spec(payload: usize) -> FrameSpec {
        FrameSpec {
            dst_mac: "02:00:00:00:00:01".parse().unwrap(),
            src_mac: "02:00:00:00:00:02".parse().unwrap(),
            src_ip: Ipv4Addr::new(198, 18, 0, 2),
            dst_ip: Ipv4Addr::new(198, 18, 0, 1),
            src_port: 10_000,
            dst_port: 9000,
            payload,
        }
    }

    /// Parse `frame` as Ethernet/IPv4/UDP and return (IPv4 header checksum as sent,
    /// as computed, source port, destination port, UDP checksum, payload).
    fn parse(frame: &[u8]) -> (u16, u16, u16, u16, u16, Vec<u8>) {
        let p = SlicedPacket::from_ethernet(frame).expect("parses");
        let Some(NetSlice::Ipv4(ip)) = p.net else {
            panic!("not IPv4: {:?}", p.net)
        };
        let Some(TransportSlice::Udp(udp)) = p.transport else {
            panic!("not UDP")
        };
        let h = ip.header();
        assert_eq!(h.source_addr(), Ipv4Addr::new(198, 18, 0, 2));
        assert_eq!(h.destination_addr(), Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(h.ttl(), 64);
        assert!(h.dont_fragment());
        assert_eq!(usize::from(h.total_len()), frame.len() - 14);
        assert_eq!(usize::from(udp.length()), frame.len() - 34);
        (
            h.header_checksum(),
            h.to_header().calc_header_checksum(),
            udp.source_port(),
            udp.destination_port(),
            udp.checksum(),
            udp.payload().to_vec(),
        )
    }

    #[test]
    fn template_is_the_udp_datagram_asked_for() {
        for (payload, frame_len) in [(18, 60), (512, 554), (1472, 1514)] {
            let frame = template(&spec(payload)).unwrap();
            assert_eq!(frame.len(), frame_len, "payload {payload}");
            assert_eq!(frame.len(), HEADERS_LEN + payload);
            let (sent, computed, sport, dport, udp_sum, data) = parse(&frame);
            assert_eq!(sent, computed, "IPv4 header checksum, payload {payload}");
            assert_ne!(sent, 0);
            assert_eq!((sport, dport), (10_000, 9000));
            assert_eq!(udp_sum, 0, "UDP checksum 0: none (RFC 768)");
            assert_eq!(data.len(), payload);
            assert!(data.iter().enumerate().all(|(i, &b)| b == i as u8));
            assert_eq!(&frame[..6], &[2, 0, 0, 0, 0, 1]);
            assert_eq!(&frame[6..12], &[2, 0, 0, 0, 0, 2]);
        }
    }

    #[test]
    fn header_checksum_verifies_to_zero() {
        let frame = template(&spec(512)).unwrap();
        // RFC 1071: the sum over a header including its checksum is all ones.
        assert_eq!(xdpstack::wire::internet_checksum(&frame[14..34]), 0);
    }

    #[test]
    fn the_program_writes_the_source_port_where_the_template_has_it() {
        // What the XDP program does, on the host: a port written at
        // GEN_SRC_PORT_OFFSET is the UDP source port, and no checksum breaks.
        let mut frame = template(&spec(18)).unwrap();
        let cfg = xdpstack_bench_ebpf::GenConfig {
            base_port: 10_000,
            flows: 4,
        };
        for n in 0..8 {
            let port = cfg.src_port(n);
            frame[GEN_SRC_PORT_OFFSET..GEN_SRC_PORT_OFFSET + 2]
                .copy_from_slice(&port.to_be_bytes());
            let (sent, computed, sport, dport, udp_sum, _) = parse(&frame);
            assert_eq!(sport, 10_000 + (n % 4) as u16);
            assert_eq!(dport, 9000);
            assert_eq!((sent, udp_sum), (computed, 0));
        }
    }

    #[test]
    fn mac_addresses_parse_and_print() {
        let mac: MacAddr = "02:0A:ff:00:10:9".parse().unwrap();
        assert_eq!(mac.0, [0x02, 0x0a, 0xff, 0x00, 0x10, 0x09]);
        assert_eq!(mac.to_string(), "02:0a:ff:00:10:09");
        assert_eq!("02-0a-ff-00-10-09".parse::<MacAddr>().unwrap(), mac);
        for bad in [
            "",
            "02:0a:ff:00:10",
            "02:0a:ff:00:10:09:01",
            "02:0a:ff:00:10:zz",
            "02:0a:ff:00:10:123",
            "02:0a:ff::10:09",
        ] {
            let err = bad.parse::<MacAddr>().unwrap_err();
            assert!(matches!(err, GenError::BadMac(_)), "{bad:?}");
            assert!(err.to_string().starts_with("bad MAC address"));
        }
        assert_eq!(
            serde_json::to_string(&mac).unwrap(),
            "\"02:0a:ff:00:10:09\""
        );
    }
}
