//! Bad frames through the whole path on a veth pair: every frame of the XDP test
//! corpus (`xdp_ebpf::corpus`), sent as raw bytes from a packet socket in the peer
//! namespace, reaches the XDP program of a running `xdpstack` and takes exactly the
//! verdict the corpus names; the steered ones reach the UDP consumer (accepted, or
//! rejected for their reason) and the capture file byte for byte. Frames longer
//! than the stack side's MTU allows never reach XDP: the veth drops them, counted.
//! Needs root; run through `cargo xtask test`.
//!
//! # Frames shorter than an Ethernet header
//!
//! BPF_PROG_TEST_RUN refuses XDP input shorter than 14 bytes (see foundation.rs),
//! and on a veth no path delivers such a frame to XDP either, so the corpus' cuts
//! below 14 bytes (84 of them) can only be checked to be refused:
//! - A packet socket's send (`packet_snd`, and `tpacket_snd` for a TX ring) calls
//!   `dev_validate_header` (include/linux/netdevice.h), which returns false for
//!   `len < dev->min_header_len` *before* the CAP_SYS_RAWIO branch that would pad
//!   a short header with zeros; `ether_setup` sets `min_header_len = ETH_HLEN` on
//!   every Ethernet device, veth included. So even root gets EINVAL, for every
//!   length from 0 to 13, and nothing is transmitted ([`short_frames_are_refused`]
//!   checks exactly that on the live testbed).
//! - The kernel's own stack always builds a whole link-layer header.
//! - An XDP program cannot make a frame shorter than 14 bytes for the next hop:
//!   `bpf_xdp_adjust_head` refuses `data > data_end - ETH_HLEN` and
//!   `bpf_xdp_adjust_tail` refuses `data_end < data + ETH_HLEN` (net/core/filter.c),
//!   so nothing redirected into the veth (ndo_xdp_xmit) is shorter either.
//!
//! So a short frame can reach `classify` only through the host tests of the same
//! code (xdp-ebpf's corpus tests), never on a veth.
//!
//! # Addresses
//!
//! The corpus frames go to the unicast MAC 02:00:00:00:00:01 (or broadcast, or the
//! STP group address). XDP and AF_XDP do not care: a veth has no MAC filter, the
//! program runs before the kernel looks at the packet type, and a redirected frame
//! never meets the kernel stack. Only the frames the program passes would be
//! dropped early by the kernel as PACKET_OTHERHOST; so that they take the kernel's
//! real path instead (and are dropped there for their own faults), each unicast
//! destination MAC is replaced by the stack side's MAC. Nothing else in a frame
//! changes: its verdict depends on the bytes after the MACs only. The corpus
//! steers UDP to port 9000 (`corpus::STEERED_PORT`), the tests' [`PORT`].
//!
//! # Counting what is not ours
//!
//! The XDP program counts every frame the stack side receives, the kernel's own
//! included (IPv6 router solicitations and MLD reports of the peer, neighbour
//! discovery). The peer's IPv6 is switched off, so that with nothing else talking
//! on the peer, the peer sends only our frames; the tests check that through the
//! peer's TX counter, so the XDP counters can be compared exactly.
#![deny(unsafe_code)]

use std::{collections::BTreeMap, io, path::Path, time::Duration};

use serde_json::Value;
use xdp_ebpf::{
    Counter, Verdict,
    corpus::{self, IpVersion, STEERED_PORT},
};
use xdpstack_tests::{
    PORT, StackProcess, TempDir, Testbed, counter, ip, link_counters, link_json,
    packet::PacketSocket, pcap_frames, quiet_testbed, wait_detached,
};

/// Each corpus frame is sent this many times.
const ROUNDS: usize = 3;
/// Shorter than an Ethernet header.
const ETH_HLEN: usize = 14;
/// Bytes the kernel keeps in front of every AF_XDP frame.
const XDP_PACKET_HEADROOM: usize = xdpstack::frame::XDP_PACKET_HEADROOM as usize;
/// What the stack allows beyond the MTU in a UMEM frame: Ethernet header and two
/// VLAN tags (userspace/src/stack.rs refuses a larger MTU at start-up).
const L2_OVERHEAD: usize = 14 + 2 * 4;
/// What a veth forwards beyond its MTU: an Ethernet header and one VLAN tag,
/// tagged or not (`is_skb_forwardable`, net/core/dev.c).
const VETH_SLACK: usize = 14 + 4;

// ---------------------------------------------------------------------------------
// The testbed.

/// The ifindex and MAC address of `dev` in namespace `ns`.
fn link(ns: &str, dev: &str) -> (i32, [u8; 6]) {
    let v = link_json(ns, dev, false);
    let ifindex = v["ifindex"].as_i64().expect("ifindex");
    let text = v["address"].as_str().expect("address");
    let bytes: Vec<u8> = text
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).expect("hex MAC"))
        .collect();
    let mac = bytes.try_into().expect("6-byte MAC");
    (i32::try_from(ifindex).expect("ifindex fits"), mac)
}

fn set_mtu(ns: &str, dev: &str, mtu: usize) {
    ip(ns, &["link", "set", "dev", dev, "mtu", &mtu.to_string()]);
}

/// `frame` with a unicast destination MAC replaced by `mac` (see the module
/// documentation); broadcast and multicast destinations are kept.
fn addressed_to(frame: &[u8], mac: [u8; 6]) -> Vec<u8> {
    let mut f = frame.to_vec();
    if f.len() >= 6 && f[0] & 1 == 0 {
        f[..6].copy_from_slice(&mac);
    }
    f
}

/// Send `frames` in order from a packet socket on the peer's veth end, paced
/// (bursts of 32, 1 ms apart) so that the stack side's ring is never overrun;
/// each send's result.
fn send_frames(bed: &Testbed, frames: &[Vec<u8>]) -> Vec<io::Result<usize>> {
    let (ifindex, _) = link(&bed.peer_ns(), &bed.peer_if());
    bed.in_peer(|| {
        let sock = PacketSocket::sending(ifindex);
        frames
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let sent = sock.send(f);
                if i % 32 == 31 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                sent
            })
            .collect()
    })
    .expect("entering the peer netns")
}

// ---------------------------------------------------------------------------------
// The run.

/// Start `xdpstack ARGS` and wait until it has attached.
fn start(bed: &Testbed, args: &[&str]) -> StackProcess {
    let mut stack = StackProcess::start(bed, args);
    stack.wait_attached(bed);
    stack
}

/// Let the stack take in what was sent (nothing comes back to wait for), then
/// SIGTERM, a clean exit within 10 s, nothing left attached; the JSON summary.
fn stop(bed: &Testbed, stack: StackProcess) -> Value {
    std::thread::sleep(Duration::from_millis(500));
    stack.signal(libc::SIGTERM);
    let done = stack.wait(Duration::from_secs(10));
    assert!(done.status.success(), "{done:?}");
    let json = done.json();
    assert_eq!(wait_detached(bed), None, "still attached after exit");
    json
}

/// Every XDP counter of the summary, by name.
fn xdp_counters(json: &Value) -> BTreeMap<String, u64> {
    Counter::ALL
        .iter()
        .map(|c| (c.name().to_string(), counter(json, &["xdp", c.name()])))
        .collect()
}

/// `queues[0].xsk.<name>`: the one socket's XDP_STATISTICS.
fn xsk(json: &Value, name: &str) -> u64 {
    counter(&json["queues"][0], &["xsk", name])
}

/// The counter a frame with verdict `v` lands in.
fn verdict_counter(v: Verdict) -> Counter {
    match v {
        Verdict::Steer => Counter::Redirected,
        Verdict::Pass(c) => c,
    }
}

/// The capture file's frames.
fn captured(file: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(file).expect("reading the capture");
    pcap_frames(&bytes)
}

// ---------------------------------------------------------------------------------
// The tests.

/// Every corpus frame of 14 bytes or more, [`ROUNDS`] times, through a running
/// `xdpstack --app sink -w FILE`:
/// - the XDP counters are exactly the corpus' verdicts times the rounds, every
///   counter, `seen` included (the peer's TX counter shows that nothing else was
///   sent);
/// - every redirected frame reached the socket (no kernel drop) and the UDP
///   consumer: datagrams plus rejects per reason are the packets, each frame
///   accepted or rejected as `xdpstack::wire::parse` does with the bytes sent
///   (first fragments: `fragment`);
/// - the capture holds exactly the steered frames, in order, byte for byte.
///
/// The largest corpus frame is 2120 bytes (an IPv6 packet with a 2048-byte
/// Hop-by-Hop header): both veth ends get an MTU of 2200 and the stack 4096-byte
/// frames, so that every frame fits the path (the next test covers what does not).
#[test]
fn every_corpus_frame_takes_its_verdict_through_the_whole_path() {
    const MTU: usize = 2200;
    let bed = quiet_testbed("bad");
    for (ns, dev) in [
        (bed.stack_ns(), bed.stack_if()),
        (bed.peer_ns(), bed.peer_if()),
    ] {
        set_mtu(&ns, &dev, MTU);
    }
    assert_eq!(STEERED_PORT, PORT);
    let (_, stack_mac) = link(&bed.stack_ns(), &bed.stack_if());
    let cases: Vec<_> = corpus::cases()
        .into_iter()
        .filter(|c| c.frame.len() >= ETH_HLEN)
        .collect();
    let largest = cases.iter().map(|c| c.frame.len()).max().expect("cases");
    assert!(largest <= MTU + ETH_HLEN, "corpus frame of {largest} bytes");
    let mut frames = Vec::new();
    let mut verdicts = Vec::new();
    for _ in 0..ROUNDS {
        for c in &cases {
            frames.push(addressed_to(&c.frame, stack_mac));
            verdicts.push(c.expected);
        }
    }

    let dir = TempDir::new("bad");
    let file = dir.0.join("bad.pcap");
    let port = PORT.to_string();
    let peer_before = link_counters(&bed.peer_ns(), &bed.peer_if());
    let stack = start(
        &bed,
        &[
            "--port",
            &port,
            "--app",
            "sink",
            "--frame-size",
            "4096",
            "-w",
            file.to_str().expect("UTF-8 path"),
            "--duration",
            "60",
            "--json",
        ],
    );
    let results = send_frames(&bed, &frames);
    let failed: Vec<String> = results
        .iter()
        .zip(&frames)
        .filter(|(r, f)| r.as_ref().ok() != Some(&f.len()))
        .map(|(r, f)| format!("{} bytes: {r:?}", f.len()))
        .collect();
    assert!(failed.is_empty(), "sends failed: {failed:?}");
    let json = stop(&bed, stack);
    let peer_after = link_counters(&bed.peer_ns(), &bed.peer_if());
    let sent = frames.len() as u64;

    // The peer sent our frames and nothing else, and the veth dropped none.
    assert_eq!(
        peer_after.tx_packets - peer_before.tx_packets,
        sent,
        "the peer sent something else too: {peer_before:?} -> {peer_after:?}"
    );
    assert_eq!(peer_after.tx_dropped, peer_before.tx_dropped);

    // XDP: exactly the corpus' verdicts.
    let mut want: BTreeMap<String, u64> = Counter::ALL
        .iter()
        .map(|c| (c.name().to_string(), 0))
        .collect();
    *want.get_mut(Counter::Seen.name()).expect("seen") = sent;
    for v in &verdicts {
        *want.get_mut(verdict_counter(*v).name()).expect("counter") += 1;
    }
    assert_eq!(xdp_counters(&json), want, "{json}");
    eprintln!("xdp counters: {want:?}");

    // Every redirected frame reached the socket.
    let steered: Vec<&Vec<u8>> = frames
        .iter()
        .zip(&verdicts)
        .filter(|(_, v)| **v == Verdict::Steer)
        .map(|(f, _)| f)
        .collect();
    let redirected = steered.len() as u64;
    assert_eq!(counter(&json, &["packets"]), redirected, "{json}");
    for name in ["rx_dropped", "rx_ring_full", "rx_fill_ring_empty_descs"] {
        assert_eq!(xsk(&json, name), 0, "xsk.{name}: {json}");
    }

    // The UDP consumer: each frame as the parser takes the bytes sent.
    let mut want_rejects: BTreeMap<String, u64> = xdpstack::wire::Reject::ALL
        .iter()
        .map(|r| (r.name().to_string(), 0))
        .collect();
    let (mut datagrams, mut payload_bytes) = (0u64, 0u64);
    for f in &steered {
        match xdpstack::wire::parse(f) {
            Ok(d) => {
                assert_eq!(d.dst.port(), PORT);
                datagrams += 1;
                payload_bytes += d.payload.len() as u64;
            }
            Err(r) => *want_rejects.get_mut(r.name()).expect("reason") += 1,
        }
    }
    // Independently of the parser: every first fragment is a `fragment` (no
    // reassembly), and the other steered cases are sound datagrams.
    let first_fragments = cases
        .iter()
        .filter(|c| c.expected == Verdict::Steer && c.name.contains("first-fragment"))
        .count() as u64;
    assert!(first_fragments > 0);
    assert_eq!(
        want_rejects.values().sum::<u64>(),
        ROUNDS as u64 * first_fragments,
        "rejects: {want_rejects:?}"
    );
    assert_eq!(
        want_rejects["fragment"],
        ROUNDS as u64 * first_fragments,
        "{want_rejects:?}"
    );
    let got_rejects: BTreeMap<String, u64> = want_rejects
        .keys()
        .map(|k| (k.clone(), counter(&json, &["udp", "rejected", k])))
        .collect();
    assert_eq!(got_rejects, want_rejects, "{json}");
    eprintln!("udp: {datagrams} datagrams, rejected {got_rejects:?}");
    assert_eq!(counter(&json, &["udp", "datagrams"]), datagrams, "{json}");
    assert_eq!(counter(&json, &["udp", "payload_bytes"]), payload_bytes);
    assert_eq!(counter(&json, &["udp", "unmatched"]), 0, "{json}");
    assert_eq!(
        datagrams + got_rejects.values().sum::<u64>(),
        redirected,
        "datagrams + rejects = packets"
    );

    // The capture: exactly the steered frames, in order, byte for byte.
    assert_eq!(
        counter(&json, &["capture", "stats", "records_written"]),
        redirected,
        "{json}"
    );
    let got = captured(&file);
    assert_eq!(got.len(), steered.len(), "records in the capture");
    for (i, (g, w)) in got.iter().zip(&steered).enumerate() {
        assert!(
            g == *w,
            "record {i}: {} bytes captured, {} sent, first difference at {:?}",
            g.len(),
            w.len(),
            g.iter().zip(w.iter()).position(|(a, b)| a != b)
        );
    }
}

/// Frames shorter than an Ethernet header: a packet socket on the veth refuses
/// every length from 0 to 13 with EINVAL, root or not (see the module
/// documentation), the corpus' cuts below 14 bytes included; the peer transmits
/// nothing and the running stack's XDP program sees nothing. A 14-byte frame, the
/// shortest that can be sent, goes through and is counted.
#[test]
fn short_frames_are_refused() {
    let bed = quiet_testbed("shrt");
    let (_, stack_mac) = link(&bed.stack_ns(), &bed.stack_if());
    let port = PORT.to_string();
    let stack = start(&bed, &["--port", &port, "--duration", "60", "--json"]);
    let peer_before = link_counters(&bed.peer_ns(), &bed.peer_if());
    let mut short: Vec<Vec<u8>> = corpus::cases()
        .into_iter()
        .filter(|c| c.frame.len() < ETH_HLEN)
        .map(|c| addressed_to(&c.frame, stack_mac))
        .collect();
    assert!(!short.is_empty(), "corpus cuts below 14 bytes");
    // Every length, also with a MAC that is not the corpus' one.
    let mut header = stack_mac.to_vec();
    header.extend([0x02, 0, 0, 0, 0, 0x02, 0x88, 0xb5]);
    short.extend((0..ETH_HLEN).map(|n| header[..n].to_vec()));
    let results = send_frames(&bed, &short);
    for (f, r) in short.iter().zip(&results) {
        let err = r.as_ref().expect_err("a short frame was sent");
        assert_eq!(
            err.raw_os_error(),
            Some(libc::EINVAL),
            "{}-byte frame: {err}",
            f.len()
        );
    }
    let peer_mid = link_counters(&bed.peer_ns(), &bed.peer_if());
    assert_eq!(peer_mid, peer_before, "the peer transmitted a short frame");
    let results = send_frames(&bed, std::slice::from_ref(&header));
    assert_eq!(results[0].as_ref().ok(), Some(&ETH_HLEN), "{results:?}");
    let json = stop(&bed, stack);
    let peer_after = link_counters(&bed.peer_ns(), &bed.peer_if());
    assert_eq!(peer_after.tx_packets - peer_before.tx_packets, 1);
    let mut want: BTreeMap<String, u64> = Counter::ALL
        .iter()
        .map(|c| (c.name().to_string(), 0))
        .collect();
    // The 14-byte frame: EtherType 0x88b5, nothing to read behind it.
    want.insert(Counter::Seen.name().to_string(), 1);
    want.insert(Counter::PassNotSteered.name().to_string(), 1);
    assert_eq!(xdp_counters(&json), want, "{json}");
}

/// Frames larger than a UMEM frame cannot be steered: the stack refuses an MTU
/// whose frames would not fit (errors.rs), and a veth forwards at most MTU + 18
/// bytes (an Ethernet header and one VLAN tag), so with the largest MTU the stack
/// accepts for 2048-byte frames (1770) the longest frame that reaches XDP is 1788
/// bytes, within the 1792 a frame holds behind the kernel's headroom.
///
/// The peer's MTU is raised to 3000, the stack's stays at 1770. Steered frames of
/// 1514, 1518 (tagged and untagged) and 1788 bytes arrive, are redirected and
/// captured byte for byte; frames of 1789, 2000 and 3014 bytes (3018 tagged) are
/// refused by the veth: the peer's send fails with ENOBUFS, the peer counts them
/// in `tx_dropped`, the stack side in `rx_dropped`, and the XDP program never
/// sees them.
#[test]
fn frames_beyond_the_mtu_are_dropped_by_the_veth_before_xdp() {
    const FRAME_SIZE: usize = 2048;
    const PEER_MTU: usize = 3000;
    let stack_mtu = FRAME_SIZE - XDP_PACKET_HEADROOM - L2_OVERHEAD;
    assert_eq!(stack_mtu, 1770);
    let bed = quiet_testbed("jmbo");
    set_mtu(&bed.stack_ns(), &bed.stack_if(), stack_mtu);
    set_mtu(&bed.peer_ns(), &bed.peer_if(), PEER_MTU);
    let (_, stack_mac) = link(&bed.stack_ns(), &bed.stack_if());
    // A steered UDP frame of `len` bytes, untagged or behind one 802.1Q tag.
    let udp = |len: usize, tagged: bool| {
        let tags: &[u16] = if tagged { &[0x8100] } else { &[] };
        let overhead = ETH_HLEN + tags.len() * 4 + 20 + 8;
        let payload: Vec<u8> = (0..len - overhead).map(|i| (i % 251) as u8).collect();
        let f = corpus::udp_frame(IpVersion::V4, tags, 40_000, PORT, &payload);
        assert_eq!(f.len(), len);
        addressed_to(&f, stack_mac)
    };
    let most = stack_mtu + VETH_SLACK;
    assert!(most <= FRAME_SIZE - XDP_PACKET_HEADROOM);
    // The largest steered corpus frames, and frames at the veth's limit.
    let mut fitting: Vec<Vec<u8>> = corpus::cases()
        .into_iter()
        .filter(|c| c.expected == Verdict::Steer && c.frame.len() >= 1514)
        .map(|c| addressed_to(&c.frame, stack_mac))
        .collect();
    assert!(fitting.len() >= 4, "the corpus' full-size frames");
    fitting.extend([udp(1518, false), udp(most, false), udp(most, true)]);
    let oversize = [
        udp(most + 1, false),
        udp(most + 1, true),
        udp(2000, false),
        udp(PEER_MTU + ETH_HLEN, false),
        udp(PEER_MTU + VETH_SLACK, true),
    ];
    let mut frames = Vec::new();
    let mut fits = Vec::new();
    for _ in 0..ROUNDS {
        for f in &fitting {
            frames.push(f.clone());
            fits.push(true);
        }
        for f in &oversize {
            frames.push(f.clone());
            fits.push(false);
        }
    }
    let dir = TempDir::new("jmbo");
    let file = dir.0.join("jumbo.pcap");
    let port = PORT.to_string();
    let stack = start(
        &bed,
        &[
            "--port",
            &port,
            "-w",
            file.to_str().expect("UTF-8 path"),
            "--duration",
            "60",
            "--json",
        ],
    );
    let peer_before = link_counters(&bed.peer_ns(), &bed.peer_if());
    let stack_before = link_counters(&bed.stack_ns(), &bed.stack_if());
    let results = send_frames(&bed, &frames);
    let mut problems = Vec::new();
    for ((f, fit), r) in frames.iter().zip(&fits).zip(&results) {
        let ok = if *fit {
            r.as_ref().ok() == Some(&f.len())
        } else {
            r.as_ref().err().and_then(io::Error::raw_os_error) == Some(libc::ENOBUFS)
        };
        if !ok {
            problems.push(format!("{} bytes: {r:?}", f.len()));
        }
    }
    assert!(problems.is_empty(), "unexpected send results: {problems:?}");
    let json = stop(&bed, stack);
    let peer_after = link_counters(&bed.peer_ns(), &bed.peer_if());
    let stack_after = link_counters(&bed.stack_ns(), &bed.stack_if());

    eprintln!(
        "peer {peer_before:?} -> {peer_after:?}; stack side {stack_before:?} -> {stack_after:?}"
    );
    let delivered = (ROUNDS * fitting.len()) as u64;
    let refused = (ROUNDS * oversize.len()) as u64;
    assert_eq!(
        peer_after.tx_dropped - peer_before.tx_dropped,
        refused,
        "peer {peer_before:?} -> {peer_after:?}"
    );
    assert_eq!(
        stack_after.rx_dropped - stack_before.rx_dropped,
        refused,
        "stack side {stack_before:?} -> {stack_after:?}"
    );
    assert_eq!(
        peer_after.tx_packets - peer_before.tx_packets,
        delivered,
        "peer {peer_before:?} -> {peer_after:?}"
    );
    assert_eq!(counter(&json, &["xdp", "seen"]), delivered, "{json}");
    assert_eq!(counter(&json, &["xdp", "redirected"]), delivered, "{json}");
    assert_eq!(counter(&json, &["packets"]), delivered, "{json}");
    assert_eq!(xsk(&json, "rx_dropped"), 0, "{json}");
    let got = captured(&file);
    let want: Vec<&Vec<u8>> = frames
        .iter()
        .zip(&fits)
        .filter(|(_, fit)| **fit)
        .map(|(f, _)| f)
        .collect();
    assert_eq!(got.len(), want.len(), "records in the capture");
    assert!(
        got.iter().zip(&want).all(|(g, w)| g == *w),
        "the capture differs from the frames sent"
    );
}
