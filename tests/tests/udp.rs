//! The UDP apps end to end on a veth pair. `--app echo` answers every datagram
//! through the AF_XDP TX ring, byte for byte, over IPv4 and IPv6, with and without
//! an 802.1Q tag, small and full-size: in place, or in a fresh frame when the
//! capture writer still holds the request. `--app sink` counts per port and answers
//! nothing; frames with bad checksums are counted per reason and never delivered;
//! `--app none` only captures. The untagged clients are stock kernel sockets in
//! the peer namespace, so the peer's kernel checks every reply's checksums; tagged
//! traffic and broken frames come from a packet socket. Needs root; run through
//! `cargo xtask test`.
#![deny(unsafe_code)]

use std::{
    collections::BTreeMap,
    fs::File,
    io::{ErrorKind, Read as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    os::unix::fs::OpenOptionsExt as _,
    path::Path,
    process::Command,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde_json::Value;
use xdpstack_testbed::{PEER_V4, PEER_V6, STACK_V4, STACK_V6, in_netns};
use xdpstack_tests::{
    PORT, StackProcess, TempDir, Testbed, counter, ip, packet::PacketSocket, pcap_frames, run,
    testbed, wait_detached,
};

// ---------------------------------------------------------------------------------
// The JSON summary: one accessor per field, so a renamed field is a one-line fix.

/// The per-queue summaries.
fn queues(json: &Value) -> &[Value] {
    json["queues"]
        .as_array()
        .unwrap_or_else(|| panic!("no `queues` list in {json}"))
}

/// `queues[*].tx.<name>`, summed over the queues.
fn tx(json: &Value, name: &str) -> u64 {
    queues(json).iter().map(|q| counter(q, &["tx", name])).sum()
}

/// `queues[*].xsk.<name>` (the socket's XDP_STATISTICS), summed over the queues.
fn xsk(json: &Value, name: &str) -> u64 {
    queues(json)
        .iter()
        .map(|q| counter(q, &["xsk", name]))
        .sum()
}

/// The XDP program's verdict counter `name`.
fn xdp(json: &Value, name: &str) -> u64 {
    counter(json, &["xdp", name])
}

/// The app the run used: `"echo"`, `"sink"` or `"none"`.
fn app(json: &Value) -> &str {
    json["app"]
        .as_str()
        .unwrap_or_else(|| panic!("no `app` in {json}"))
}

/// Datagrams the UDP consumer delivered to the app, over all queues.
fn udp_datagrams(json: &Value) -> u64 {
    counter(json, &["udp", "datagrams"])
}

/// UDP payload bytes delivered to the app.
fn udp_payload_bytes(json: &Value) -> u64 {
    counter(json, &["udp", "payload_bytes"])
}

/// Frames the UDP parser refused, per reason.
fn rejected(json: &Value) -> BTreeMap<String, u64> {
    let reasons = json["udp"]["rejected"]
        .as_object()
        .unwrap_or_else(|| panic!("no `udp.rejected` object in {json}"));
    reasons
        .iter()
        .map(|(k, v)| {
            let n = v
                .as_u64()
                .unwrap_or_else(|| panic!("udp.rejected.{k} is not a count: {json}"));
            (k.clone(), n)
        })
        .collect()
}

/// The reasons the UDP parser counts (the keys of `udp.rejected`).
const REJECT_REASONS: [&str; 10] = {
    let mut names = [""; 10];
    let mut i = 0;
    while i < 10 {
        names[i] = xdpstack::wire::Reject::ALL[i].name();
        i += 1;
    }
    names
};

/// Every reject reason is counted, `want` ones with the counts given, all others 0.
fn assert_rejected(json: &Value, want: &[(&str, u64)]) {
    let got = rejected(json);
    for reason in REJECT_REASONS {
        let expected = want
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n);
        assert_eq!(
            got.get(reason).copied(),
            Some(expected),
            "udp.rejected.{reason}: {json}"
        );
    }
}

/// `udp.ports[port]` (filled by the sink app): (datagrams, payload bytes).
fn port_count(json: &Value, port: u16) -> (u64, u64) {
    let p = &json["udp"]["ports"][port.to_string()];
    assert!(p.is_object(), "no udp.ports.{port} in {json}");
    (counter(p, &["datagrams"]), counter(p, &["bytes"]))
}

/// Counters of the consumers named `name`, summed over the queues.
#[derive(Debug, Default, PartialEq, Eq)]
struct ConsumerCounts {
    delivered: u64,
    dropped: u64,
    held: u64,
}

/// The consumers named `name` (`"udp"`, `"pcap"`) summed over the queues; `None`
/// when no queue has one.
fn consumer(json: &Value, name: &str) -> Option<ConsumerCounts> {
    let mut found = None;
    for q in queues(json) {
        let list = q["consumers"]
            .as_array()
            .unwrap_or_else(|| panic!("no `consumers` list in {q}"));
        for c in list.iter().filter(|c| c["name"] == name) {
            let sum: &mut ConsumerCounts = found.get_or_insert_default();
            sum.delivered += counter(c, &["delivered"]);
            sum.dropped += counter(c, &["dropped"]);
            sum.held += counter(c, &["held"]);
        }
    }
    found
}

/// `capture.stats.records_written`.
fn records_written(json: &Value) -> u64 {
    counter(json, &["capture", "stats", "records_written"])
}

// ---------------------------------------------------------------------------------
// Running the stack.

/// Start `xdpstack ARGS` on the stack side and wait until it has attached.
fn start(bed: &Testbed, args: &[&str]) -> StackProcess {
    let mut stack = StackProcess::start(bed, args);
    stack.wait_attached(bed);
    stack
}

/// SIGTERM, a clean exit within 10 s, nothing left attached; the JSON summary.
fn stop(bed: &Testbed, stack: StackProcess) -> Value {
    stack.signal(libc::SIGTERM);
    let done = stack.wait(Duration::from_secs(10));
    assert!(done.status.success(), "{done:?}");
    let json = done.json();
    assert_eq!(wait_detached(bed), None, "still attached after exit");
    json
}

/// Give the stack time to take in what was sent when nothing comes back to wait
/// for (the sink app); a clean stop drains the rings anyway.
fn settle() {
    std::thread::sleep(Duration::from_millis(500));
}

// ---------------------------------------------------------------------------------
// Plumbing: the testbed, MTU, offloads, link addresses.

/// An MTU that carries a 1472-byte UDP payload over IPv6 (1520 bytes of IP),
/// tagged, without fragments.
const JUMBO_MTU: u32 = 1600;

/// Both veth ends of the testbed: (namespace, interface).
fn veth_ends(bed: &Testbed) -> [(String, String); 2] {
    [
        (bed.stack_ns(), bed.stack_if()),
        (bed.peer_ns(), bed.peer_if()),
    ]
}

/// A testbed whose veth ends put on the "wire" what a NIC would, checked here
/// because every test below depends on it (the testbed does it too). By default
/// veth hands the skb's shortcuts along: a UDP checksum left for the "hardware"
/// to finish (only the pseudo-header sum is in the frame, and the stack would
/// reject every datagram from a kernel socket as `bad_udp_checksum`), and VLAN
/// tags in skb metadata (XDP, which sees only the bytes, would see untagged
/// frames; this matters only for tags added by a kernel VLAN interface, and the
/// tagged frames here come from a packet socket with the tag in the bytes).
fn udp_testbed(tag: &str, queues: u32) -> Testbed {
    let bed = testbed(tag, queues);
    for (ns, dev) in veth_ends(&bed) {
        let ethtool = |args: &[&str]| {
            run(Command::new("ip")
                .args(["netns", "exec", &ns, "ethtool"])
                .args(args))
        };
        ethtool(&["-K", &dev, "tx", "off", "txvlan", "off", "rxvlan", "off"]);
        let features = ethtool(&["-k", &dev]);
        for feature in ["tx-checksumming", "tx-vlan-offload", "rx-vlan-offload"] {
            assert!(
                features
                    .lines()
                    .any(|l| l.trim_start().starts_with(&format!("{feature}: off"))),
                "{ns} {dev}: {feature} still on:\n{features}"
            );
        }
    }
    bed
}

/// Set the MTU of both veth ends (before the stack attaches).
fn set_mtu(bed: &Testbed, mtu: u32) {
    for (ns, dev) in veth_ends(bed) {
        ip(&ns, &["link", "set", "dev", &dev, "mtu", &mtu.to_string()]);
    }
}

/// The ifindex and MAC address of `dev` in namespace `ns` (`ip -j link show`).
fn link(ns: &str, dev: &str) -> (i32, [u8; 6]) {
    let out = ip(ns, &["-j", "link", "show", "dev", dev]);
    let v: Value = serde_json::from_str(&out).expect("ip -j prints JSON");
    let ifindex = v[0]["ifindex"].as_i64().expect("ifindex");
    let text = v[0]["address"].as_str().expect("address");
    let bytes: Vec<u8> = text
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).expect("hex MAC"))
        .collect();
    let mac = bytes.try_into().expect("6-byte MAC");
    (i32::try_from(ifindex).expect("ifindex fits"), mac)
}

// ---------------------------------------------------------------------------------
// Clients in the peer namespace.

/// VLAN ID of the tagged traffic.
const VLAN_ID: u16 = 100;
/// Addresses in the tagged frames (no interface has them: see [`RawClient`]).
const STACK_VLAN_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
const STACK_VLAN_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 1);
const PEER_VLAN_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
const PEER_VLAN_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 2);

/// Datagrams a client keeps in flight.
const WINDOW: usize = 16;
/// How long a client waits for the next echo before counting the window lost.
const ECHO_TIMEOUT: Duration = Duration::from_secs(1);

/// Which addresses a client uses, and whether its frames carry a VLAN tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Net {
    v6: bool,
    vlan: bool,
}

impl Net {
    const V4: Net = Net {
        v6: false,
        vlan: false,
    };
    const V6: Net = Net {
        v6: true,
        vlan: false,
    };
    const V4_VLAN: Net = Net {
        v6: false,
        vlan: true,
    };
    const V6_VLAN: Net = Net {
        v6: true,
        vlan: true,
    };
    /// Every combination.
    const ALL: [Net; 4] = [Net::V4, Net::V6, Net::V4_VLAN, Net::V6_VLAN];

    fn name(self) -> &'static str {
        match (self.v6, self.vlan) {
            (false, false) => "v4",
            (true, false) => "v6",
            (false, true) => "v4vlan",
            (true, true) => "v6vlan",
        }
    }

    fn stack(self) -> IpAddr {
        match (self.v6, self.vlan) {
            (false, false) => STACK_V4.into(),
            (true, false) => STACK_V6.into(),
            (false, true) => STACK_VLAN_V4.into(),
            (true, true) => STACK_VLAN_V6.into(),
        }
    }

    fn peer(self) -> IpAddr {
        match (self.v6, self.vlan) {
            (false, false) => PEER_V4.into(),
            (true, false) => PEER_V6.into(),
            (false, true) => PEER_VLAN_V4.into(),
            (true, true) => PEER_VLAN_V6.into(),
        }
    }
}

/// Datagram `i` of a client: `tag:NNNNNN:`, then filler that differs per position
/// and per datagram, `len` bytes in all.
fn payload(tag: &str, i: usize, len: usize) -> Vec<u8> {
    let mut p = format!("{tag}:{i:06}:").into_bytes();
    assert!(p.len() <= len, "payload of {len} bytes too short for {tag}");
    let start = p.len();
    p.extend((start..len).map(|k| (k * 7 + i * 13) as u8));
    p
}

/// The sequence number of a [`payload`].
fn sequence(p: &[u8]) -> Option<usize> {
    let colon = p.iter().position(|&b| b == b':')?;
    std::str::from_utf8(p.get(colon + 1..colon + 7)?)
        .ok()?
        .parse()
        .ok()
}

/// What a client made of one frame or datagram it received.
enum Heard {
    /// A correct echo of datagram `i`.
    Echo(usize),
    /// A reply to this client that is wrong.
    Wrong(String),
    /// Not for this client.
    Other,
}

/// Send `payloads` through `send`, at most [`WINDOW`] in flight; take what comes
/// back from `recv` (`None`: nothing within [`ECHO_TIMEOUT`]) until every datagram
/// has been echoed, or nothing more comes, or 30 s are over. Panics listing
/// what went wrong.
fn windowed_exchange(
    label: &str,
    payloads: &[Vec<u8>],
    mut send: impl FnMut(usize),
    mut recv: impl FnMut() -> Option<Heard>,
) {
    let count = payloads.len();
    let mut echoed = vec![false; count];
    let mut problems = Vec::new();
    let (mut sent, mut received, mut written_off) = (0usize, 0usize, 0usize);
    let deadline = Instant::now() + Duration::from_secs(30);
    while received < count && Instant::now() < deadline {
        while sent < count && sent.saturating_sub(received + written_off) < WINDOW {
            send(sent);
            sent += 1;
        }
        match recv() {
            None if sent == count => break,
            // Whatever is in flight is lost (reported below if it stays lost);
            // go on with the rest.
            None => written_off = sent - received,
            Some(Heard::Other) => {}
            Some(Heard::Wrong(why)) => problems.push(format!("{label}: {why}")),
            Some(Heard::Echo(i)) if std::mem::replace(&mut echoed[i], true) => {
                problems.push(format!("{label} #{i}: echoed twice"));
            }
            Some(Heard::Echo(_)) => received += 1,
        }
    }
    let missing: Vec<usize> = (0..count).filter(|&i| !echoed[i]).collect();
    if !missing.is_empty() {
        problems.push(format!(
            "{label}: {} of {count} datagrams not echoed: {:?}",
            missing.len(),
            &missing[..missing.len().min(20)]
        ));
    }
    assert!(
        problems.is_empty(),
        "{} problems, the first ones:\n{}",
        problems.len(),
        problems[..problems.len().min(20)].join("\n")
    );
}

/// Where `got`, a reply to `sent`, first differs from it.
fn first_difference(got: &[u8], sent: &[u8]) -> String {
    let at = got
        .iter()
        .zip(sent)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(sent.len()));
    format!(
        "echo of {} bytes differs from the {} sent at byte {at}",
        got.len(),
        sent.len()
    )
}

/// A kernel UDP socket in the peer namespace on `net`'s peer address.
fn client(bed: &Testbed, net: Net) -> UdpSocket {
    assert!(!net.vlan, "kernel clients are untagged");
    bed.in_peer(|| UdpSocket::bind(SocketAddr::new(net.peer(), 0)).expect("bind in peer netns"))
        .expect("entering the peer netns")
}

/// From a kernel UDP socket in the peer namespace, send `count` distinct datagrams
/// (sizes cycling through `sizes`) to the stack's address on port [`PORT`], and
/// check that each comes back once, from that address and port, byte for byte.
/// The peer's kernel verifies the IP and UDP checksums of every reply and drops a
/// bad one (counting it in UdpInCsumErrors): a wrong checksum shows up as a
/// missing echo. Returns the payloads sent.
fn echo_exchange(bed: &Testbed, net: Net, count: usize, sizes: &[usize]) -> Vec<Vec<u8>> {
    let to = SocketAddr::new(net.stack(), PORT);
    let label = format!("{} {sizes:?}", net.name());
    let payloads: Vec<Vec<u8>> = (0..count)
        .map(|i| payload(net.name(), i, sizes[i % sizes.len()]))
        .collect();
    let sock = client(bed, net);
    sock.set_read_timeout(Some(ECHO_TIMEOUT)).expect("timeout");
    let mut buf = vec![0u8; 65_536];
    windowed_exchange(
        &label,
        &payloads,
        |i| {
            let n = sock
                .send_to(&payloads[i], to)
                .unwrap_or_else(|e| panic!("{label}: send_to {to}: {e}"));
            assert_eq!(n, payloads[i].len());
        },
        || {
            let (n, from) = match sock.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return None;
                }
                Err(e) => panic!("{label}: recv_from: {e}"),
            };
            let got = &buf[..n];
            Some(match sequence(got).filter(|&i| i < count) {
                None => Heard::Wrong(format!("{n} bytes from {from} that were never sent")),
                Some(i) if from != to => Heard::Wrong(format!("#{i}: echo from {from}, want {to}")),
                Some(i) if got != payloads[i] => {
                    Heard::Wrong(format!("#{i}: {}", first_difference(got, &payloads[i])))
                }
                Some(i) => Heard::Echo(i),
            })
        },
    );
    payloads
}

/// A client that sends hand-made Ethernet frames through a packet socket on the
/// peer's veth end and reads the replies from it, for VLAN-tagged traffic. (The
/// kernel this runs on may lack 802.1Q support, CONFIG_VLAN_8021Q, so there may be
/// no VLAN interfaces and no kernel sockets behind them.) Nothing checks the
/// replies for it, so it checks them all itself: tag, MACs, addresses and ports
/// swapped, IPv4 header and UDP checksums, payload.
struct RawClient {
    peer_ns: String,
    ifindex: i32,
    stack_mac: [u8; 6],
    peer_mac: [u8; 6],
}

impl RawClient {
    fn new(bed: &Testbed) -> Self {
        let (_, stack_mac) = link(&bed.stack_ns(), &bed.stack_if());
        let (ifindex, peer_mac) = link(&bed.peer_ns(), &bed.peer_if());
        RawClient {
            peer_ns: bed.peer_ns(),
            ifindex,
            stack_mac,
            peer_mac,
        }
    }

    /// Like [`echo_exchange`], with frames tagged [`VLAN_ID`] from source port
    /// `sport` (one per exchange, so that a late reply to an earlier one is not
    /// taken for one of this).
    fn echo_exchange(&self, net: Net, sport: u16, count: usize, sizes: &[usize]) {
        let (from, to) = (
            SocketAddr::new(net.peer(), sport),
            SocketAddr::new(net.stack(), PORT),
        );
        let label = format!("{} {sizes:?}", net.name());
        let payloads: Vec<Vec<u8>> = (0..count)
            .map(|i| payload(net.name(), i, sizes[i % sizes.len()]))
            .collect();
        let frames: Vec<Vec<u8>> = payloads
            .iter()
            .map(|p| udp_frame(self.stack_mac, self.peer_mac, Some(VLAN_ID), from, to, p))
            .collect();
        // A socket of its own: one open earlier would have queued (and then
        // dropped, once its buffer was full) everything seen meanwhile.
        let sock = in_netns(&self.peer_ns, || {
            PacketSocket::receiving(self.ifindex, ECHO_TIMEOUT)
        })
        .expect("entering the peer netns");
        let mut buf = vec![0u8; 65_536];
        windowed_exchange(
            &label,
            &payloads,
            |i| sock.send_frame(&frames[i]),
            || {
                let got = sock.recv(&mut buf)?;
                if got.outgoing {
                    return Some(Heard::Other);
                }
                let frame = &buf[..got.len];
                let Ok(d) = Datagram::parse(frame) else {
                    return Some(Heard::Other);
                };
                if d.dst.port() != sport || d.src.port() != PORT {
                    return Some(Heard::Other);
                }
                let Some(i) = sequence(d.payload).filter(|&i| i < count) else {
                    return Some(Heard::Wrong(format!("{} bytes never sent", frame.len())));
                };
                let mut wrong = Vec::new();
                // The packet socket gets the frame with the tag moved into
                // metadata (the receive path does that before any tap).
                if got.vlan != Some((0x8100, VLAN_ID)) {
                    wrong.push(format!("tag {:x?}, want 802.1Q {VLAN_ID}", got.vlan));
                }
                if (d.dst_mac, d.src_mac) != (self.peer_mac, self.stack_mac) {
                    wrong.push("MACs not swapped".to_string());
                }
                if (d.src, d.dst) != (to, from) {
                    wrong.push(format!("{} -> {}, want {to} -> {from}", d.src, d.dst));
                }
                wrong.extend(d.problems.iter().cloned());
                if d.payload != payloads[i] {
                    wrong.push(first_difference(d.payload, &payloads[i]));
                }
                Some(if wrong.is_empty() {
                    Heard::Echo(i)
                } else {
                    Heard::Wrong(format!("#{i}: {}", wrong.join("; ")))
                })
            },
        );
    }
}

/// Send `count` datagrams from `sock` to `to`, sizes cycling through `sizes`,
/// paced (bursts of 32, 1 ms apart); the payloads sent.
fn send_paced(
    sock: &UdpSocket,
    to: SocketAddr,
    tag: &str,
    count: usize,
    sizes: &[usize],
) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let p = payload(tag, i, sizes[i % sizes.len()]);
            sock.send_to(&p, to).expect("send_to");
            if i % 32 == 31 {
                std::thread::sleep(Duration::from_millis(1));
            }
            p
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// Frames made and read by hand.

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const IPPROTO_UDP: u8 = 17;

/// The Internet checksum (RFC 1071) of `data`: the corpus's reference, written
/// for clarity and independent of the product's.
use xdp_ebpf::corpus::checksum;

/// The IPv4 or IPv6 pseudo-header of a UDP datagram of `udp_len` bytes.
fn pseudo_header(src: IpAddr, dst: IpAddr, udp_len: u16) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut p = [s.octets(), d.octets()].concat();
            p.extend([0, IPPROTO_UDP]);
            p.extend(udp_len.to_be_bytes());
            p
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut p = [s.octets(), d.octets()].concat();
            p.extend(u32::from(udp_len).to_be_bytes());
            p.extend([0, 0, 0, IPPROTO_UDP]);
            p
        }
        _ => panic!("mixed address families"),
    }
}

/// An Ethernet frame, tagged 802.1Q `vlan` if given, carrying one UDP datagram
/// `src` -> `dst` with `payload`, every checksum right (IPv4: DF, no options;
/// IPv6: no extension headers).
fn udp_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    vlan: Option<u16>,
    src: SocketAddr,
    dst: SocketAddr,
    payload: &[u8],
) -> Vec<u8> {
    let udp_len = u16::try_from(8 + payload.len()).expect("fits");
    let mut udp = Vec::new();
    udp.extend(src.port().to_be_bytes());
    udp.extend(dst.port().to_be_bytes());
    udp.extend(udp_len.to_be_bytes());
    udp.extend([0, 0]);
    udp.extend(payload);
    let mut sum_over = pseudo_header(src.ip(), dst.ip(), udp_len);
    sum_over.extend(&udp);
    // A computed 0 goes out as 0xffff (0 means "no checksum", RFC 768).
    let c = match checksum(&sum_over) {
        0 => 0xffff,
        c => c,
    };
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    let (ethertype, ip_header) = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = (20 + udp_len).to_be_bytes();
            let mut h = vec![0x45, 0, total[0], total[1], 0x12, 0x34, 0x40, 0, 64];
            h.extend([IPPROTO_UDP, 0, 0]);
            h.extend(s.octets());
            h.extend(d.octets());
            let c = checksum(&h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            (ETH_P_IP, h)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let plen = udp_len.to_be_bytes();
            let mut h = vec![0x60, 0, 0, 0, plen[0], plen[1], IPPROTO_UDP, 64];
            h.extend(s.octets());
            h.extend(d.octets());
            (ETH_P_IPV6, h)
        }
        _ => panic!("mixed address families"),
    };
    let mut frame = [dst_mac, src_mac].concat();
    if let Some(id) = vlan {
        frame.extend(ETH_P_8021Q.to_be_bytes());
        frame.extend(id.to_be_bytes());
    }
    frame.extend(ethertype.to_be_bytes());
    frame.extend(ip_header);
    frame.extend(udp);
    frame
}

/// Offset of the IPv4 header checksum in an untagged frame.
const IPV4_CSUM_AT: usize = 14 + 10;

/// Offset of the UDP checksum in an untagged frame from [`udp_frame`].
fn udp_csum_at(frame: &[u8]) -> usize {
    match u16::from_be_bytes([frame[12], frame[13]]) {
        ETH_P_IP => 14 + 20 + 6,
        ETH_P_IPV6 => 14 + 40 + 6,
        t => panic!("ethertype {t:#06x}"),
    }
}

/// Replace the 16-bit checksum at `at` by a wrong one (neither its value nor 0 or
/// 0xffff, which are one and the same in ones' complement).
fn spoil_checksum(frame: &mut [u8], at: usize) {
    let right = u16::from_be_bytes([frame[at], frame[at + 1]]);
    let wrong: u16 = if right == 0x1234 { 0x4321 } else { 0x1234 };
    frame[at..at + 2].copy_from_slice(&wrong.to_be_bytes());
}

/// The UDP datagram in an untagged Ethernet frame (IPv4 with any header length,
/// IPv6 without extension headers), and what is wrong with its headers.
#[derive(Debug)]
struct Datagram<'a> {
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: SocketAddr,
    dst: SocketAddr,
    payload: &'a [u8],
    /// Bad lengths or checksums (a UDP checksum of 0 counts as bad: the stack
    /// always computes one).
    problems: Vec<String>,
}

impl<'a> Datagram<'a> {
    /// `Err` when it is not an untagged frame with a UDP datagram in it.
    fn parse(frame: &'a [u8]) -> Result<Self, String> {
        let cut = || format!("frame of {} bytes cut short", frame.len());
        let mac = |at: usize| -> [u8; 6] { frame[at..at + 6].try_into().expect("6 bytes") };
        let be16 = |b: &[u8], at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
        if frame.len() < 14 {
            return Err(cut());
        }
        let ip = &frame[14..];
        let mut problems = Vec::new();
        let (src_ip, dst_ip, udp): (IpAddr, IpAddr, &[u8]) = match be16(frame, 12) {
            ETH_P_IP => {
                if ip.len() < 20 || ip[9] != IPPROTO_UDP {
                    return Err("not IPv4/UDP".to_string());
                }
                let hlen = usize::from(ip[0] & 0x0f) * 4;
                let total = usize::from(be16(ip, 2));
                if hlen < 20 || total < hlen + 8 || total > ip.len() {
                    return Err(format!("IPv4 header length {hlen}, total length {total}"));
                }
                if checksum(&ip[..hlen]) != 0 {
                    problems.push("bad IPv4 header checksum".to_string());
                }
                let a = |at: usize| -> IpAddr {
                    <[u8; 4]>::try_from(&ip[at..at + 4]).expect("4").into()
                };
                (a(12), a(16), &ip[hlen..total])
            }
            ETH_P_IPV6 => {
                if ip.len() < 40 || ip[6] != IPPROTO_UDP {
                    return Err("not IPv6/UDP".to_string());
                }
                let end = 40 + usize::from(be16(ip, 4));
                if end > ip.len() {
                    return Err(format!("IPv6 payload length {}", end - 40));
                }
                let a = |at: usize| -> IpAddr {
                    <[u8; 16]>::try_from(&ip[at..at + 16]).expect("16").into()
                };
                (a(8), a(24), &ip[40..end])
            }
            _ => return Err("not IP".to_string()),
        };
        if udp.len() < 8 {
            return Err(cut());
        }
        let len = usize::from(be16(udp, 4));
        if len < 8 || len > udp.len() {
            return Err(format!("UDP length {len} in {} bytes", udp.len()));
        }
        if len != udp.len() {
            problems.push(format!("UDP length {len}, IP says {}", udp.len()));
        }
        let mut sum_over = pseudo_header(src_ip, dst_ip, be16(udp, 4));
        sum_over.extend(&udp[..len]);
        if be16(udp, 6) == 0 || checksum(&sum_over) != 0 {
            problems.push(format!("bad UDP checksum {:#06x}", be16(udp, 6)));
        }
        Ok(Datagram {
            dst_mac: mac(0),
            src_mac: mac(6),
            src: SocketAddr::new(src_ip, be16(udp, 0)),
            dst: SocketAddr::new(dst_ip, be16(udp, 2)),
            payload: &udp[8..len],
            problems,
        })
    }
}

// ---------------------------------------------------------------------------------
// Capture files.

/// The UDP payloads of the captured frames, each checked to be a sound datagram
/// to `port`.
fn captured_payloads(frames: &[Vec<u8>], port: u16) -> Vec<Vec<u8>> {
    frames
        .iter()
        .map(|f| {
            let d = Datagram::parse(f).unwrap_or_else(|e| panic!("captured frame: {e}"));
            assert!(d.problems.is_empty(), "captured frame: {:?}", d.problems);
            assert_eq!(d.dst.port(), port, "captured frame to {}", d.dst);
            d.payload.to_vec()
        })
        .collect()
}

/// A FIFO for the capture, whose read end the test holds but does not read until
/// [`Fifo::drain`], shrunk to the smallest pipe (a page). With `-U` the capture
/// writer flushes every record, so once a page of records is in the pipe it blocks
/// in write(2), holding its batch of views; every later frame's view waits in its
/// queue, so the frame is shared when the echo app answers it.
struct Fifo {
    read_end: File,
    /// The pipe's capacity in bytes.
    capacity: usize,
}

impl Fifo {
    fn new(path: &Path) -> Self {
        run(Command::new("mkfifo").arg(path));
        // Non-blocking: there is no writer yet.
        let read_end = File::options()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .expect("opening the FIFO");
        let capacity = sys::shrink_pipe(&read_end);
        Fifo { read_end, capacity }
    }

    /// Read everything written, until the writer closes, on a thread.
    fn drain(self) -> JoinHandle<Vec<u8>> {
        let mut file = self.read_end;
        sys::set_blocking(&file);
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes).expect("reading the FIFO");
            bytes
        })
    }
}

// ---------------------------------------------------------------------------------
// System calls std has no API for.

#[expect(unsafe_code, reason = "pipe sizes have no std API")]
mod sys {
    use std::{fs::File, io, os::fd::AsRawFd};

    /// Shrink the pipe behind `file` to one page; its new capacity.
    pub fn shrink_pipe(file: &File) -> usize {
        // SAFETY: fcntl on an open descriptor we own; F_SETPIPE_SZ takes an int.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
        assert!(rc > 0, "F_SETPIPE_SZ: {}", io::Error::last_os_error());
        usize::try_from(rc).expect("positive")
    }

    /// Clear O_NONBLOCK on `file`.
    pub fn set_blocking(file: &File) {
        let fd = file.as_raw_fd();
        // SAFETY: fcntl on an open descriptor we own.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        assert!(flags >= 0, "F_GETFL: {}", io::Error::last_os_error());
        // SAFETY: as above; F_SETFL takes an int.
        let rc = unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) };
        assert_eq!(rc, 0, "F_SETFL: {}", io::Error::last_os_error());
    }
}

// ---------------------------------------------------------------------------------
// The tests.

/// Echo over both queues: IPv4 and IPv6, untagged and tagged 802.1Q 100, 18 and
/// 1472 payload bytes, 100 datagrams each; every one answered once, byte for
/// byte, from the address and port it was sent to, with the tag kept and sound
/// checksums. The untagged ones come from kernel sockets (the peer's kernel checks
/// the replies), the tagged ones from a packet socket ([`RawClient`], which checks
/// them itself). No other consumer shares the frames, so every reply is built in
/// place.
#[test]
fn echo_answers_every_datagram_v4_v6_vlan() {
    const PER_CASE: usize = 100;
    let bed = udp_testbed("echo", 2);
    set_mtu(&bed, JUMBO_MTU);
    let port = PORT.to_string();
    let stack = start(&bed, &["--port", &port, "--app", "echo", "--json"]);
    let raw = RawClient::new(&bed);
    let mut cases = 0;
    for net in Net::ALL {
        for size in [18, 1472] {
            if net.vlan {
                raw.echo_exchange(net, 40_000 + cases, PER_CASE, &[size]);
            } else {
                echo_exchange(&bed, net, PER_CASE, &[size]);
            }
            cases += 1;
        }
    }
    let total = u64::from(cases) * PER_CASE as u64;
    let json = stop(&bed, stack);

    assert_eq!(app(&json), "echo", "{json}");
    assert_eq!(xdp(&json, "redirected"), total, "{json}");
    assert_eq!(udp_datagrams(&json), total, "{json}");
    assert_rejected(&json, &[]);
    assert_eq!(
        consumer(&json, "udp"),
        Some(ConsumerCounts {
            delivered: total,
            ..ConsumerCounts::default()
        }),
        "{json}"
    );
    assert_eq!(consumer(&json, "pcap"), None, "{json}");
    assert_eq!(tx(&json, "sent"), total, "{json}");
    assert_eq!(tx(&json, "completed"), total, "{json}");
    assert_eq!(tx(&json, "in_place"), total, "{json}");
    assert_eq!(
        tx(&json, "copied"),
        0,
        "nothing else holds the frames: {json}"
    );
    for trouble in ["ring_full", "queue_full", "no_frame", "reply_errors"] {
        assert_eq!(tx(&json, trouble), 0, "tx.{trouble}: {json}");
    }
    assert_eq!(xsk(&json, "tx_invalid_descs"), 0, "{json}");
}

/// Echo while capturing: the capture writer holds the requests, so the replies
/// are built in fresh frames (copy on write) and the requests reach the file
/// intact. The capture goes to a FIFO the test does not read until the echoes are
/// in (see [`Fifo`]), which makes the copy path deterministic: only the records
/// that fit in one page of pipe may have been written, and their frames released,
/// before the echo app answered them.
///
/// IPv6 payloads are 1452 bytes, the most that fits the testbed's 1500-byte MTU
/// (the first test covers a larger MTU); IPv4 ones 1472.
#[test]
fn echo_with_capture_copies_on_write() {
    const PER_FAMILY: usize = 300;
    let bed = udp_testbed("ecow", 1);
    let dir = TempDir::new("ecow");
    let path = dir.0.join("echo.pcap");
    let fifo = Fifo::new(&path);
    let port = PORT.to_string();
    let stack = start(
        &bed,
        &[
            "--port",
            &port,
            "--app",
            "echo",
            "-w",
            path.to_str().expect("UTF-8 path"),
            "-U",
            "--json",
        ],
    );
    let mut sent = echo_exchange(&bed, Net::V4, PER_FAMILY, &[18, 1472]);
    sent.extend(echo_exchange(&bed, Net::V6, PER_FAMILY, &[18, 1452]));
    let total = sent.len() as u64;
    let pipe_capacity = fifo.capacity;
    let file = fifo.drain();
    let json = stop(&bed, stack);
    let bytes = file.join().expect("FIFO reader");

    assert_eq!(app(&json), "echo", "{json}");
    assert_eq!(udp_datagrams(&json), total, "{json}");
    assert_rejected(&json, &[]);
    for name in ["udp", "pcap"] {
        assert_eq!(
            consumer(&json, name),
            Some(ConsumerCounts {
                delivered: total,
                ..ConsumerCounts::default()
            }),
            "consumer {name}: {json}"
        );
    }
    let (in_place, copied) = (tx(&json, "in_place"), tx(&json, "copied"));
    assert_eq!(in_place + copied, total, "{json}");
    assert_eq!(tx(&json, "sent"), total, "{json}");
    assert_eq!(tx(&json, "completed"), total, "{json}");
    for trouble in ["ring_full", "queue_full", "no_frame", "reply_errors"] {
        assert_eq!(tx(&json, trouble), 0, "tx.{trouble}: {json}");
    }
    // At most a pipe's worth of records went out before the writer blocked: the
    // capacity over the smallest record (16 bytes of record header and a 60-byte
    // frame: IPv4, 18 payload bytes), plus the record being written and one more.
    // Only their frames can have been released before the echo app answered them.
    let may_be_released = (pipe_capacity / (16 + 60) + 2) as u64;
    assert!(
        copied > 0 && copied + may_be_released >= total,
        "{copied} replies copied; at most {may_be_released} requests could have been \
         written out before the pipe filled: {json}"
    );

    // Both directions (-Q inout, the default): every request and every reply.
    assert_eq!(records_written(&json), 2 * total, "{json}");
    let frames = pcap_frames(&bytes);
    assert_eq!(frames.len(), 2 * sent.len(), "records in the capture");
    // Requests go to PORT; replies come from it, with the request's payload.
    let (requests, replies): (Vec<Vec<u8>>, Vec<Vec<u8>>) = frames
        .into_iter()
        .partition(|f| Datagram::parse(f).is_ok_and(|d| d.dst.port() == PORT));
    let mut got = captured_payloads(&requests, PORT);
    got.sort();
    sent.sort();
    assert!(got == sent, "the capture holds exactly the requests sent");
    let mut echoed: Vec<Vec<u8>> = replies
        .iter()
        .map(|f| {
            let d = Datagram::parse(f).unwrap_or_else(|e| panic!("captured reply: {e}"));
            assert_eq!(d.src.port(), PORT, "a reply comes from the echo port");
            d.payload.to_vec()
        })
        .collect();
    echoed.sort();
    assert!(echoed == sent, "and exactly their replies");
}

/// The sink app counts datagrams and payload bytes per destination port and
/// answers nothing.
#[test]
fn sink_counts_per_port() {
    let bed = udp_testbed("sink", 1);
    let stack = start(&bed, &["--port", "9000-9001", "--app", "sink", "--json"]);
    let sizes = [18, 512, 1472];
    let sock = client(&bed, Net::V4);
    let mut want = BTreeMap::new();
    for (port, count) in [(PORT, 300), (PORT + 1, 200)] {
        let to = SocketAddr::new(Net::V4.stack(), port);
        let sent = send_paced(&sock, to, "sink", count, &sizes);
        let bytes: usize = sent.iter().map(Vec::len).sum();
        want.insert(port, (count as u64, bytes as u64));
    }
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut buf = [0u8; 2048];
    match sock.recv_from(&mut buf) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("the sink answered: {other:?}"),
    }
    settle();
    let json = stop(&bed, stack);

    assert_eq!(app(&json), "sink", "{json}");
    for (&port, &counts) in &want {
        assert_eq!(port_count(&json, port), counts, "udp.ports.{port}: {json}");
    }
    let ports = json["udp"]["ports"].as_object().expect("udp.ports");
    assert_eq!(ports.len(), want.len(), "only the ports sent to: {json}");
    let (datagrams, bytes) = want
        .values()
        .fold((0, 0), |(d, b), &(d2, b2)| (d + d2, b + b2));
    assert_eq!(udp_datagrams(&json), datagrams, "{json}");
    assert_eq!(udp_payload_bytes(&json), bytes, "{json}");
    assert_rejected(&json, &[]);
    assert_eq!(tx(&json, "sent"), 0, "{json}");
}

/// Frames with a wrong UDP checksum, a wrong IPv4 header checksum, or (IPv6) no UDP
/// checksum at all are counted per reason and not delivered; the good ones are.
/// The XDP program steers by port and checks no checksum, so all of them reach
/// user space. They are made by hand and sent from a packet socket.
#[test]
fn bad_checksums_are_counted_not_delivered() {
    const EACH: usize = 50;
    let bed = udp_testbed("csum", 1);
    let (_, stack_mac) = link(&bed.stack_ns(), &bed.stack_if());
    let (peer_index, peer_mac) = link(&bed.peer_ns(), &bed.peer_if());
    let port = PORT.to_string();
    let stack = start(&bed, &["--port", &port, "--app", "sink", "--json"]);

    let to = |v6| SocketAddr::new(Testbed::stack_addr(v6), PORT);
    let from = |v6: bool| {
        let ip: IpAddr = if v6 { PEER_V6.into() } else { PEER_V4.into() };
        SocketAddr::new(ip, 40_000)
    };
    let frame = |v6: bool, i: usize| {
        let p = payload("raw", i, 64);
        udp_frame(stack_mac, peer_mac, None, from(v6), to(v6), &p)
    };
    let mut frames = Vec::new();
    for i in 0..EACH {
        frames.push(frame(false, i));
        let mut f = frame(false, EACH + i);
        let at = udp_csum_at(&f);
        spoil_checksum(&mut f, at);
        frames.push(f);
        let mut f = frame(false, 2 * EACH + i);
        spoil_checksum(&mut f, IPV4_CSUM_AT);
        frames.push(f);
        let mut f = frame(true, 3 * EACH + i);
        let at = udp_csum_at(&f);
        f[at..at + 2].copy_from_slice(&[0, 0]);
        frames.push(f);
    }
    bed.in_peer(|| {
        let sock = PacketSocket::sending(peer_index);
        for (i, f) in frames.iter().enumerate() {
            sock.send_frame(f);
            if i % 32 == 31 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    })
    .expect("entering the peer netns");
    settle();
    let json = stop(&bed, stack);

    let each = EACH as u64;
    assert_eq!(xdp(&json, "redirected"), 4 * each, "{json}");
    assert_eq!(udp_datagrams(&json), each, "{json}");
    assert_eq!(port_count(&json, PORT), (each, 64 * each), "{json}");
    assert_rejected(
        &json,
        &[
            ("bad_udp_checksum", each),
            ("bad_ipv4_checksum", each),
            ("zero_udp_checksum_ipv6", each),
        ],
    );
}

/// `--app none`: the frames are captured and nothing else sees them.
#[test]
fn capture_only_app_none() {
    const N: usize = 200;
    let bed = udp_testbed("none", 1);
    let dir = TempDir::new("none");
    let path = dir.0.join("none.pcap");
    let port = PORT.to_string();
    let stack = start(
        &bed,
        &[
            "--port",
            &port,
            "--app",
            "none",
            "-w",
            path.to_str().expect("UTF-8 path"),
            "--json",
        ],
    );
    let sock = client(&bed, Net::V4);
    let sent = send_paced(
        &sock,
        SocketAddr::new(Net::V4.stack(), PORT),
        "none",
        N,
        &[18, 200, 1400],
    );
    settle();
    let json = stop(&bed, stack);

    assert_eq!(app(&json), "none", "{json}");
    assert_eq!(records_written(&json), N as u64, "{json}");
    assert_eq!(udp_datagrams(&json), 0, "{json}");
    assert_eq!(consumer(&json, "udp"), None, "no UDP consumer: {json}");
    assert_eq!(
        consumer(&json, "pcap"),
        Some(ConsumerCounts {
            delivered: N as u64,
            ..ConsumerCounts::default()
        }),
        "{json}"
    );
    assert_eq!(tx(&json, "sent"), 0, "{json}");
    let bytes = std::fs::read(&path).expect("reading the capture");
    let mut got = captured_payloads(&pcap_frames(&bytes), PORT);
    let mut want = sent;
    got.sort();
    want.sort();
    assert!(got == want, "the file holds exactly the datagrams sent");
}
