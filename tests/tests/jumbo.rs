//! Jumbo frames end to end through AF_XDP multi-buffer, on a veth pair at MTU
//! 9000 on both ends: datagrams of 1, 1500, 4000 and 8972 bytes over IPv4 and
//! 8952 over IPv6 (the largest that fit: MTU less 28 and 48 bytes of IP and UDP
//! headers) from a stock kernel socket in the peer namespace reach `--app echo`
//! and come back byte for byte; the capture holds each of them, both ways, as one
//! record of its true length that tshark reads and finds sound; and the JSON
//! summary accounts for every one. `--multi-buffer off` at the same MTU is
//! refused in one line that names the option, with nothing left attached.
//!
//! The peer's kernel checks the IP and UDP checksums of every echo and drops a bad
//! one, so a reply assembled wrongly from its buffers shows up as a missing echo;
//! the echo itself is compared byte for byte. Needs root; run through
//! `cargo xtask test`.
#![deny(unsafe_code)]

use std::{
    collections::BTreeMap,
    io::ErrorKind,
    net::{IpAddr, SocketAddr, UdpSocket},
    path::Path,
    process::Command,
    time::Duration,
};

use serde_json::Value;
use xdpstack_testbed::{Options, PEER_V4, PEER_V6};
use xdpstack_tests::{
    PORT, StackProcess, TempDir, Testbed, counter, require_root, unique_name, wait_detached,
};

/// The veth MTU of both ends.
const MTU: u32 = 9000;
/// Ethernet, IPv4 and UDP headers: a frame is its payload and these.
const V4_HEADERS: usize = 14 + 20 + 8;
/// Ethernet, IPv6 and UDP headers.
const V6_HEADERS: usize = 14 + 40 + 8;
/// IPv4 payloads: the smallest, one that fits a 1500-byte MTU, one that needs
/// a 4096-byte frame (or two 2048-byte ones), and the largest at MTU 9000.
const V4_SIZES: [usize; 4] = [1, 1500, 4000, MTU as usize - 28];
/// The largest IPv6 payload at MTU 9000.
const V6_SIZES: [usize; 1] = [MTU as usize - 48];
/// Datagrams per size (each with its own bytes).
const ROUNDS: usize = 3;
/// UMEM frames per queue, given explicitly so that conservation can be checked.
const FRAMES: u64 = 4096;
/// UMEM frame size, given explicitly: which packets take several frames
/// depends on it.
const FRAME_SIZE: usize = 2048;
/// Packet bytes one frame holds: its size less the kernel's 256 bytes of XDP
/// headroom (every buffer of a chain has its own).
const FRAME_CAPACITY: usize = FRAME_SIZE - 256;
/// How long a datagram's echo may take before it counts as lost.
const ECHO_TIMEOUT: Duration = Duration::from_secs(2);

/// A one-queue testbed at [`MTU`] on both veth ends, checked to be so.
fn jumbo_testbed(tag: &str) -> Testbed {
    require_root();
    let bed = Testbed::create_with(&unique_name(tag), 1, Options { mtu: MTU })
        .expect("creating the testbed");
    assert_eq!(
        bed.mtus().expect("ip link show"),
        (MTU, MTU),
        "both veth ends at MTU {MTU}"
    );
    bed
}

/// Datagram number `k` of `len` bytes: a pattern of its own (no two datagrams
/// of a run share their bytes, not even the 1-byte ones), so that an echo of
/// the wrong datagram, or bytes from another one's buffer, cannot pass.
fn payload(k: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| ((j * 31 + k * 101 + 7) % 251) as u8)
        .collect()
}

/// One datagram the test sends: its family and its bytes.
struct Datagram {
    v6: bool,
    bytes: Vec<u8>,
}

impl Datagram {
    /// Its frame length on the wire (without the FCS).
    fn frame_len(&self) -> usize {
        self.bytes.len() + if self.v6 { V6_HEADERS } else { V4_HEADERS }
    }

    /// Whether its frame takes more than one UMEM frame.
    fn chained(&self) -> bool {
        self.frame_len() > FRAME_CAPACITY
    }
}

/// Every datagram of the run, IPv4 first.
fn datagrams() -> Vec<Datagram> {
    let mut out = Vec::new();
    for (v6, sizes) in [(false, &V4_SIZES[..]), (true, &V6_SIZES[..])] {
        for &len in sizes {
            for _ in 0..ROUNDS {
                let k = out.len();
                out.push(Datagram {
                    v6,
                    bytes: payload(k, len),
                });
            }
        }
    }
    out
}

/// Where `got` first differs from `want`.
fn first_difference(got: &[u8], want: &[u8]) -> String {
    let at = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    format!(
        "echo of {} bytes differs from the {} sent at byte {at}",
        got.len(),
        want.len()
    )
}

/// Send each datagram from a kernel socket in the peer namespace (one per
/// family) to the stack's address on [`PORT`] and wait for its echo, one at a
/// time, each at most [`ECHO_TIMEOUT`]. Returns what went wrong, one line per
/// datagram.
fn echo_each(bed: &Testbed, datagrams: &[Datagram]) -> Vec<String> {
    let socket = |ip: IpAddr| {
        let sock = bed
            .in_peer(|| UdpSocket::bind(SocketAddr::new(ip, 0)).expect("bind in the peer netns"))
            .expect("entering the peer netns");
        sock.set_read_timeout(Some(ECHO_TIMEOUT)).expect("timeout");
        sock
    };
    let (v4, v6) = (socket(PEER_V4.into()), socket(PEER_V6.into()));
    let mut buf = vec![0u8; 65_536];
    let mut problems = Vec::new();
    for (k, d) in datagrams.iter().enumerate() {
        let (sock, to) = if d.v6 {
            (&v6, SocketAddr::new(Testbed::stack_addr(true), PORT))
        } else {
            (&v4, SocketAddr::new(Testbed::stack_addr(false), PORT))
        };
        let what = format!("#{k} ({} bytes to {to})", d.bytes.len());
        let n = sock
            .send_to(&d.bytes, to)
            .unwrap_or_else(|e| panic!("{what}: send_to: {e}"));
        assert_eq!(n, d.bytes.len(), "{what}: a short send");
        match sock.recv_from(&mut buf) {
            Ok((n, from)) if from != to => {
                problems.push(format!("{what}: {n} bytes from {from}, want {to}"));
            }
            Ok((n, _)) if buf[..n] != d.bytes[..] => {
                problems.push(format!("{what}: {}", first_difference(&buf[..n], &d.bytes)));
            }
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                problems.push(format!("{what}: no echo within {ECHO_TIMEOUT:?}"));
            }
            Err(e) => panic!("{what}: recv_from: {e}"),
        }
    }
    problems
}

// ---------------------------------------------------------------------------------
// The JSON summary: one accessor per field, so that a renamed field is a one-line fix.

fn queues(json: &Value) -> &[Value] {
    json["queues"]
        .as_array()
        .unwrap_or_else(|| panic!("no `queues` list in {json}"))
}

/// `queues[*].<path>`, summed over the queues.
fn per_queue(json: &Value, path: &[&str]) -> u64 {
    queues(json).iter().map(|q| counter(q, path)).sum()
}

/// (delivered, dropped, held) of the consumers named `name`, summed over queues.
fn consumer(json: &Value, name: &str) -> (u64, u64, u64) {
    let mut sum = (0, 0, 0);
    let mut found = false;
    for q in queues(json) {
        for c in q["consumers"]
            .as_array()
            .unwrap_or_else(|| panic!("no `consumers` in {q}"))
            .iter()
            .filter(|c| c["name"] == name)
        {
            found = true;
            sum.0 += counter(c, &["delivered"]);
            sum.1 += counter(c, &["dropped"]);
            sum.2 += counter(c, &["held"]);
        }
    }
    assert!(found, "no consumer {name} in {json}");
    sum
}

/// The summary accounts for every datagram: each one redirected by the XDP
/// program, received as one packet of its true length, delivered whole to the
/// UDP consumer and to the capture, none dropped anywhere, each echoed once,
/// and every UMEM frame back where it belongs.
fn assert_reconciled(json: &Value, sent: &[Datagram]) {
    let n = sent.len() as u64;
    let frame_bytes: u64 = sent.iter().map(|d| d.frame_len() as u64).sum();
    let payload_bytes: u64 = sent.iter().map(|d| d.bytes.len() as u64).sum();
    assert_eq!(json["app"], "echo", "{json}");
    assert_eq!(counter(json, &["xdp", "redirected"]), n, "{json}");
    for (name, value) in json["xdp"].as_object().expect("`xdp` counters") {
        if name.starts_with("malformed") {
            assert_eq!(value.as_u64(), Some(0), "xdp.{name}: {json}");
        }
    }
    // Packets, not buffers: a 9000-byte frame is one packet however many UMEM
    // frames it took.
    assert_eq!(counter(json, &["packets"]), n, "{json}");
    assert_eq!(counter(json, &["bytes"]), frame_bytes, "{json}");
    // The multi-buffer ones are exactly those larger than a frame, both ways.
    let chained = sent.iter().filter(|d| d.chained()).count() as u64;
    assert!(chained > 0 && chained < n, "the sizes cover both cases");
    assert_eq!(per_queue(json, &["multi_buffer"]), chained, "{json}");
    assert_eq!(per_queue(json, &["tx", "multi_buffer"]), chained, "{json}");
    assert_eq!(per_queue(json, &["malformed"]), 0, "{json}");
    assert_eq!(counter(json, &["udp", "datagrams"]), n, "{json}");
    assert_eq!(
        counter(json, &["udp", "payload_bytes"]),
        payload_bytes,
        "{json}"
    );
    for (reason, count) in json["udp"]["rejected"]
        .as_object()
        .unwrap_or_else(|| panic!("no `udp.rejected` in {json}"))
    {
        assert_eq!(count.as_u64(), Some(0), "udp.rejected.{reason}: {json}");
    }
    for name in ["udp", "pcap"] {
        assert_eq!(consumer(json, name), (n, 0, 0), "consumer {name}: {json}");
    }
    for name in [
        "rx_dropped",
        "rx_invalid_descs",
        "tx_invalid_descs",
        "rx_ring_full",
    ] {
        assert_eq!(per_queue(json, &["xsk", name]), 0, "xsk.{name}: {json}");
    }
    // Echoes sent = datagrams received; the capture held every request, so a
    // reply was built in place or in a copy, one or the other.
    assert_eq!(per_queue(json, &["tx", "sent"]), n, "{json}");
    assert_eq!(per_queue(json, &["tx", "completed"]), n, "{json}");
    assert_eq!(per_queue(json, &["tx", "kernel_dropped"]), 0, "{json}");
    assert_eq!(
        per_queue(json, &["tx", "in_place"]) + per_queue(json, &["tx", "copied"]),
        n,
        "{json}"
    );
    for trouble in ["ring_full", "queue_full", "no_frame", "reply_errors"] {
        assert_eq!(per_queue(json, &["tx", trouble]), 0, "tx.{trouble}: {json}");
    }
    // Both directions (-Q inout, the default): every request and every reply.
    assert_eq!(
        counter(json, &["capture", "stats", "records_written"]),
        2 * n,
        "{json}"
    );
    assert_eq!(
        counter(json, &["capture", "stats", "records_dropped"]),
        0,
        "{json}"
    );
    for q in queues(json) {
        let held: u64 = q["consumers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| counter(c, &["held"]))
            .sum();
        let placed = counter(q, &["frames_free"])
            + counter(q, &["frames_in_kernel"])
            + counter(q, &["frames_in_tx"])
            + held;
        assert_eq!(placed, FRAMES, "every UMEM frame accounted for: {q}");
    }
}

// ---------------------------------------------------------------------------------
// The capture, as tshark reads it.

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `tshark -r FILE -T fields -e ...`, one row per record, with the UDP port
/// decoded as plain data (no heuristic dissector guessing at the patterns) and
/// the IP and UDP checksums verified; fails on any stderr output but tshark's
/// warning about running as root.
fn tshark_fields(file: &Path, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r")
        .arg(file)
        .args(["-d", &format!("udp.port=={PORT},data")])
        .args(["-o", "ip.check_checksum:TRUE"])
        .args(["-o", "udp.check_checksum:TRUE"])
        .args(["-T", "fields", "-E", "separator=/t"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd
        .output()
        .expect("tshark (cargo xtask setup installs it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.contains("Running as user \"root\"") && !l.trim().is_empty())
        .collect();
    assert!(
        out.status.success() && complaints.is_empty(),
        "tshark: {stderr}"
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// Every request and every echo is in the file as one record holding the whole
/// frame (`frame.len` = `frame.cap_len` = payload + headers), with the bytes
/// sent and checksums tshark finds good.
fn assert_captured(file: &Path, sent: &[Datagram]) {
    // udp.checksum.status: 1 is Good (0 Bad, 2 Unverified).
    let rows = tshark_fields(
        file,
        &[
            "frame.len",
            "frame.cap_len",
            "ipv6.src",
            "udp.srcport",
            "udp.dstport",
            "udp.length",
            "udp.checksum.status",
            "udp.payload",
        ],
    );
    assert_eq!(rows.len(), 2 * sent.len(), "records in the capture");
    // (direction, payload hex) -> (v6, frame length), each expected once.
    let mut want: BTreeMap<(&str, String), Vec<(bool, usize)>> = BTreeMap::new();
    for d in sent {
        for dir in ["request", "echo"] {
            want.entry((dir, hex(&d.bytes)))
                .or_default()
                .push((d.v6, d.frame_len()));
        }
    }
    let mut problems = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let [len, cap, v6_src, sport, dport, udp_len, csum, data] = &row[..] else {
            panic!("record {i}: {row:?}");
        };
        let port = PORT.to_string();
        let dir = if *dport == port {
            "request"
        } else if *sport == port {
            "echo"
        } else {
            problems.push(format!("record {i}: ports {sport} -> {dport}"));
            continue;
        };
        let v6 = !v6_src.is_empty();
        let (len, cap): (usize, usize) = (len.parse().expect("len"), cap.parse().expect("len"));
        if cap != len {
            problems.push(format!("record {i} ({dir}): {cap} of {len} bytes captured"));
        }
        if csum != "1" {
            problems.push(format!(
                "record {i} ({dir}, {len} bytes): UDP checksum status {csum}"
            ));
        }
        let payload_len = udp_len.parse::<usize>().expect("udp.length") - 8;
        match want.get_mut(&(dir, data.clone())).and_then(|v| {
            v.iter()
                .position(|&x| x == (v6, len))
                .map(|at| v.remove(at))
        }) {
            Some(_) => {}
            None => problems.push(format!(
                "record {i} ({dir}, {} frame of {len} bytes, {payload_len}-byte payload): not \
                 one that was sent, or its length is not payload + {}",
                if v6 { "IPv6" } else { "IPv4" },
                if v6 { V6_HEADERS } else { V4_HEADERS },
            )),
        }
    }
    let missing: Vec<String> = want
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|((dir, data), v)| format!("{dir} of {} bytes x{}", data.len() / 2, v.len()))
        .collect();
    assert!(
        problems.is_empty() && missing.is_empty(),
        "capture: {problems:#?}\nmissing: {missing:?}"
    );
}

// ---------------------------------------------------------------------------------

/// The acceptance case of jumbo frames: echo and capture at MTU 9000.
#[test]
fn jumbo_datagrams_are_echoed_and_captured_whole() {
    let bed = jumbo_testbed("jmb");
    let dir = TempDir::new("jumbo");
    let file = dir.0.join("jumbo.pcap");
    let port = PORT.to_string();
    let frames = FRAMES.to_string();
    let frame_size = FRAME_SIZE.to_string();
    let mut stack = StackProcess::start(
        &bed,
        &[
            "--app",
            "echo",
            "--port",
            &port,
            "-w",
            file.to_str().expect("UTF-8 path"),
            "--frames",
            &frames,
            "--frame-size",
            &frame_size,
            "--json",
        ],
    );
    stack.wait_attached(&bed);
    let sent = datagrams();
    let problems = echo_each(&bed, &sent);
    stack.signal(libc::SIGTERM);
    let done = stack.wait(Duration::from_secs(15));
    assert!(
        problems.is_empty(),
        "{} of {} datagrams not echoed intact:\n{}\nxdpstack: {done:?}",
        problems.len(),
        sent.len(),
        problems.join("\n")
    );
    assert!(done.status.success(), "{done:?}");
    assert_eq!(wait_detached(&bed), None, "still attached after exit");
    assert_reconciled(&done.json(), &sent);
    assert_captured(&file, &sent);
}

/// `--multi-buffer off` where the MTU needs several frames a packet: refused at
/// start in one line naming the option (and the MTU), nothing attached, no
/// capture file left. (`--duration 5`: a run that was not refused would end
/// with status 0, which fails here.)
#[test]
fn multi_buffer_off_with_a_jumbo_mtu_is_refused() {
    let bed = jumbo_testbed("jmbo");
    let dir = TempDir::new("jumbo-off");
    let file = dir.0.join("off.pcap");
    let port = PORT.to_string();
    let stack = StackProcess::start(
        &bed,
        &[
            "--port",
            &port,
            "--multi-buffer",
            "off",
            "-w",
            file.to_str().expect("UTF-8 path"),
            "--duration",
            "5",
        ],
    );
    let done = stack.wait(Duration::from_secs(20));
    let lines: Vec<&str> = done
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    // 1: a start that failed (2 would be a usage error, such as an option
    // this build does not know).
    assert_eq!(
        done.status.code(),
        Some(1),
        "the exit status of a refused start: {done:?}"
    );
    assert_eq!(lines.len(), 1, "one line: {}", done.stderr);
    for needle in ["--multi-buffer", &MTU.to_string()] {
        assert!(
            lines[0].contains(needle),
            "`{needle}` missing from: {}",
            lines[0]
        );
    }
    assert!(!done.stderr.contains("panicked"), "{}", done.stderr);
    assert_eq!(
        bed.stack_xdp_prog_id().expect("ip link show"),
        None,
        "an XDP program was left attached"
    );
    assert!(
        !file.exists(),
        "a refused start left {} behind",
        file.display()
    );
}
