//! Ethernet frames of every common kind, built byte by byte, for the capture
//! filter tests: ARP, ICMP and ICMPv6 echo, TCP, UDP, VLAN tags, IPv6 extension
//! headers, broadcast and multicast destinations. Checksums are left 0: no
//! filter here reads them.
//!
//! Addresses come from 198.18.0.0/15 and fd00::/8 as in the XDP corpus, and from
//! 192.0.2.0/24 and 2001:db8::/32 (the documentation ranges) for "elsewhere".

/// MAC addresses: ours (locally administered), broadcast, IPv4 multicast.
pub const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// The other end.
pub const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
/// ff:ff:ff:ff:ff:ff.
pub const MAC_BROADCAST: [u8; 6] = [0xff; 6];
/// 01:00:5e:00:00:fb, the MAC of 224.0.0.251 (mDNS).
pub const MAC_MDNS: [u8; 6] = [0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb];

/// EtherTypes.
pub const ETH_P_IP: u16 = 0x0800;
/// See [`ETH_P_IP`].
pub const ETH_P_ARP: u16 = 0x0806;
/// See [`ETH_P_IP`].
pub const ETH_P_IPV6: u16 = 0x86dd;
/// See [`ETH_P_IP`].
pub const ETH_P_8021Q: u16 = 0x8100;

/// IP protocol numbers.
pub const IPPROTO_ICMP: u8 = 1;
/// See [`IPPROTO_ICMP`].
pub const IPPROTO_TCP: u8 = 6;
/// See [`IPPROTO_ICMP`].
pub const IPPROTO_UDP: u8 = 17;
/// See [`IPPROTO_ICMP`].
pub const IPPROTO_ICMPV6: u8 = 58;
/// IPv6 extension headers.
pub const IPPROTO_HOPOPTS: u8 = 0;
/// See [`IPPROTO_HOPOPTS`].
pub const IPPROTO_FRAGMENT: u8 = 44;
/// See [`IPPROTO_HOPOPTS`].
pub const IPPROTO_DSTOPTS: u8 = 60;

/// TCP flags.
pub const TCP_SYN: u8 = 0x02;
/// See [`TCP_SYN`].
pub const TCP_ACK: u8 = 0x10;

/// An Ethernet frame, padded to the 60-byte minimum.
pub fn ether(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

/// An 802.1Q tag with VLAN id `vid` in front of `ethertype` and `payload`.
pub fn vlan(vid: u16, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(4 + payload.len());
    p.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    p.extend_from_slice(&ethertype.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// An IPv4 header without options, TTL 64, then `payload`.
pub fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8]) -> Vec<u8> {
    ipv4_with(src, dst, proto, 0, &[], payload)
}

/// An IPv4 header with `frag` (flags and fragment offset) and `options`.
pub fn ipv4_with(
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    frag: u16,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0, "IPv4 options come in words");
    let hlen = 20 + options.len();
    let total = u16::try_from(hlen + payload.len()).expect("fits IPv4");
    let mut p = vec![0x40 | (hlen / 4) as u8, 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&0x1234u16.to_be_bytes());
    p.extend_from_slice(&frag.to_be_bytes());
    p.extend_from_slice(&[64, proto, 0, 0]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(options);
    p.extend_from_slice(payload);
    p
}

/// An IPv6 header, hop limit 64, next header `next`, then `payload`.
pub fn ipv6(src: [u8; 16], dst: [u8; 16], next: u8, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len()).expect("fits IPv6");
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&len.to_be_bytes());
    p.extend_from_slice(&[next, 64]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}

/// An 8-byte IPv6 extension header (hop-by-hop or destination options with
/// padding only) in front of `next` and `payload`.
pub fn ipv6_options(next: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![next, 0, 1, 4, 0, 0, 0, 0];
    p.extend_from_slice(payload);
    p
}

/// An IPv6 fragment header (first fragment, more to come) in front of `next`.
pub fn ipv6_fragment(next: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![next, 0, 0x00, 0x01, 0xab, 0xcd, 0x00, 0x01];
    p.extend_from_slice(payload);
    p
}

/// A UDP header and `payload`.
pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(8 + payload.len()).expect("fits UDP");
    let mut p = Vec::new();
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&len.to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

/// A 20-byte TCP header with `flags`, no payload.
pub fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&1u32.to_be_bytes());
    p.extend_from_slice(&0u32.to_be_bytes());
    p.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    p
}

/// An ICMP or ICMPv6 echo message: `kind` 8/0 (ICMP request/reply) or 128/129.
pub fn echo(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![kind, 0, 0, 0, 0x12, 0x34, 0, 1];
    p.extend_from_slice(payload);
    p
}

/// An ARP request (`op` 1) or reply (2) for IPv4 over Ethernet.
pub fn arp(op: u16, sender: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let mut p = vec![0, 1, 0x08, 0x00, 6, 4];
    p.extend_from_slice(&op.to_be_bytes());
    p.extend_from_slice(&MAC_B);
    p.extend_from_slice(&sender);
    p.extend_from_slice(&if op == 1 { [0; 6] } else { MAC_A });
    p.extend_from_slice(&target);
    p
}

/// An IPv6 address `prefix::low` from its first two and last 16-bit groups.
pub fn v6(first: u16, second: u16, low: u16) -> [u8; 16] {
    let mut a = [0; 16];
    a[..2].copy_from_slice(&first.to_be_bytes());
    a[2..4].copy_from_slice(&second.to_be_bytes());
    a[14..].copy_from_slice(&low.to_be_bytes());
    a
}

/// Named frames of every kind the filter tests need both outcomes for.
pub fn kinds() -> Vec<(String, Vec<u8>)> {
    let (a4, b4, c4) = ([198, 18, 0, 1], [198, 19, 0, 2], [198, 18, 0, 9]);
    let away4 = [192, 0, 2, 1];
    let (a6, b6, away6) = (v6(0xfd00, 0, 1), v6(0xfd00, 0, 2), v6(0x2001, 0xdb8, 1));
    let hello = b"hello, filter";
    let v4 = |src, dst, proto, l4: &[u8]| ether(MAC_A, MAC_B, ETH_P_IP, &ipv4(src, dst, proto, l4));
    let v6f =
        |src, dst, next, l4: &[u8]| ether(MAC_A, MAC_B, ETH_P_IPV6, &ipv6(src, dst, next, l4));
    let dns = udp(40000, 53, &[0; 29]);
    let mut out = vec![
        (
            "arp/request-broadcast",
            ether(MAC_BROADCAST, MAC_B, ETH_P_ARP, &arp(1, a4, b4)),
        ),
        ("arp/reply", ether(MAC_A, MAC_B, ETH_P_ARP, &arp(2, b4, a4))),
        (
            "icmp/echo-request",
            v4(a4, b4, IPPROTO_ICMP, &echo(8, hello)),
        ),
        ("icmp/echo-reply", v4(b4, a4, IPPROTO_ICMP, &echo(0, hello))),
        (
            "icmp6/echo-request",
            v6f(a6, b6, IPPROTO_ICMPV6, &echo(128, hello)),
        ),
        (
            "icmp6/echo-reply",
            v6f(b6, a6, IPPROTO_ICMPV6, &echo(129, hello)),
        ),
        (
            "tcp4/syn-80",
            v4(a4, b4, IPPROTO_TCP, &tcp(40000, 80, TCP_SYN)),
        ),
        (
            "tcp4/ack-from-80",
            v4(b4, a4, IPPROTO_TCP, &tcp(80, 40000, TCP_ACK)),
        ),
        (
            "tcp6/syn-443",
            v6f(a6, b6, IPPROTO_TCP, &tcp(40001, 443, TCP_SYN)),
        ),
        ("udp4/dns-query", v4(a4, c4, IPPROTO_UDP, &dns)),
        (
            "udp4/dns-answer",
            v4(c4, a4, IPPROTO_UDP, &udp(53, 40000, &[0; 60])),
        ),
        ("udp4/dns-elsewhere", v4(a4, away4, IPPROTO_UDP, &dns)),
        (
            "udp4/hello-9005",
            v4(away4, b4, IPPROTO_UDP, &udp(40000, 9005, hello)),
        ),
        ("udp6/dns-query", v6f(a6, b6, IPPROTO_UDP, &dns)),
        (
            "udp6/elsewhere-9011",
            v6f(away6, b6, IPPROTO_UDP, &udp(40000, 9011, hello)),
        ),
        (
            "udp4/broadcast",
            ether(
                MAC_BROADCAST,
                MAC_B,
                ETH_P_IP,
                &ipv4(a4, [255; 4], IPPROTO_UDP, &udp(68, 67, &[0; 40])),
            ),
        ),
        (
            "udp4/mdns-multicast",
            ether(
                MAC_MDNS,
                MAC_B,
                ETH_P_IP,
                &ipv4(
                    a4,
                    [224, 0, 0, 251],
                    IPPROTO_UDP,
                    &udp(5353, 5353, &[0; 20]),
                ),
            ),
        ),
        (
            "vlan100/udp",
            ether(
                MAC_A,
                MAC_B,
                ETH_P_8021Q,
                &vlan(
                    100,
                    ETH_P_IP,
                    &ipv4(a4, b4, IPPROTO_UDP, &udp(40000, 9000, hello)),
                ),
            ),
        ),
        (
            "vlan200/tcp",
            ether(
                MAC_A,
                MAC_B,
                ETH_P_8021Q,
                &vlan(
                    200,
                    ETH_P_IP,
                    &ipv4(a4, b4, IPPROTO_TCP, &tcp(40000, 22, TCP_SYN)),
                ),
            ),
        ),
        (
            "ipv6/hopopts-fragment-udp",
            v6f(
                a6,
                b6,
                IPPROTO_HOPOPTS,
                &ipv6_options(
                    IPPROTO_FRAGMENT,
                    &ipv6_fragment(IPPROTO_UDP, &udp(40000, 9000, hello)),
                ),
            ),
        ),
        (
            "ipv6/dstopts-tcp",
            v6f(
                a6,
                b6,
                IPPROTO_DSTOPTS,
                &ipv6_options(IPPROTO_TCP, &tcp(40000, 80, TCP_SYN)),
            ),
        ),
        (
            "ipv4/fragment-offset",
            ether(
                MAC_A,
                MAC_B,
                ETH_P_IP,
                &ipv4_with(a4, b4, IPPROTO_UDP, 0x00b9, &[], &[0; 64]),
            ),
        ),
        (
            "ipv4/options-udp",
            ether(
                MAC_A,
                MAC_B,
                ETH_P_IP,
                &ipv4_with(
                    a4,
                    b4,
                    IPPROTO_UDP,
                    0,
                    &[1, 1, 1, 0],
                    &udp(40000, 53, hello),
                ),
            ),
        ),
        (
            "udp4/big-1400",
            v4(a4, b4, IPPROTO_UDP, &udp(40000, 9000, &[0x5a; 1400])),
        ),
    ];
    // A frame shorter than 60 bytes (no padding: as the XDP program can see
    // one on a virtual link).
    let mut short = v4(a4, b4, IPPROTO_UDP, &udp(40000, 9000, &[]));
    short.truncate(42);
    out.push(("udp4/unpadded-42", short));
    out.into_iter().map(|(n, f)| (n.to_owned(), f)).collect()
}
