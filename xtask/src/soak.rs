//! `cargo xtask soak --minutes M`: a long run under a flood with random stalls,
//! checked at the end (not part of CI).
//!
//! A 2-queue veth testbed (threaded NAPI on the stack side, as for the bench) and
//! the release binaries, used as a black box:
//! - `xdpstack --app echo -w FIFO --pcap-overflow drop|wait --json --stats 1`
//!   runs in the stack namespace; the run is split into phases that alternate
//!   the overflow mode, and the stack is restarted between them.
//! - Traffic from the peer namespace: `xdpstack-gen` in bursts of random length,
//!   payload, batch (rate) and CPUs, with random pauses between them, and a
//!   low-rate kernel UDP socket per family (IPv4 and IPv6) whose echoes are
//!   checked byte for byte.
//! - Stalls: the capture's reader (a thread here, at the other end of the FIFO,
//!   which also checks every pcap record) stops reading for 0.1-3 s at random
//!   (the writer's queue fills: capture drops, or with `wait` an empty fill
//!   ring); and the whole `xdpstack` process is stopped (SIGSTOP) for 50-500 ms
//!   at random (the kernel's RX ring fills).
//! - A watchdog fails the run when the stack's packet count does not move for
//!   10 s while traffic is offered and the process is not stopped. RSS, open
//!   fds and BPF objects of the process are sampled every second.
//! - At the end of each phase (SIGINT, JSON summary): frame conservation per
//!   queue and the counters reconciled against each other, the generator and the
//!   capture reader.
//!
//! Output: a report on stdout, `target/soak/report.json`, and every injected
//! event with its time in `target/soak/events.log`. Non-zero exit on any failed
//! check.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs::File,
    io::{BufReader, Read, Write as _},
    net::{SocketAddr, UdpSocket},
    os::unix::{fs::OpenOptionsExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde::Serialize;
use serde_json::{Value, json};
use xdpstack_testbed::{PEER_V4, PEER_V6, STACK_V4, STACK_V6, Testbed};

use crate::bench::{Proc, counter, json_line, link_stats, mac_of, threaded_napi};

const PORT: u16 = 9000;
/// Frames in each queue's UMEM (`--frames`, the default).
const FRAMES: u64 = 4096;
/// RX queues of the testbed.
const QUEUES: u32 = 2;
/// The watchdog fails the run after this long without progress.
const WATCHDOG: Duration = Duration::from_secs(10);
/// RSS may grow by at most this much after the warm-up.
const RSS_BOUND_KIB: u64 = 4096;
/// Target length of a phase (one xdpstack process), seconds.
const PHASE_S: f64 = 150.0;
/// Mean time between two capture-reader stalls, and between two SIGSTOPs.
const READER_STALL_EVERY_S: f64 = 8.0;
const SIGSTOP_EVERY_S: f64 = 6.0;
/// A capture-reader stall lasts between these, seconds.
const READER_STALL_MIN_S: f64 = 0.1;
const READER_STALL_MAX_S: f64 = 3.0;
/// The kernel UDP senders' period (one datagram per family each time).
const KERNEL_UDP_PERIOD: Duration = Duration::from_millis(4);

/// Set by SIGINT/SIGTERM: end the current phase cleanly and report.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Ctrl-C and SIGTERM end the run through the normal teardown (the children run
/// in process groups of their own, so a terminal's Ctrl-C reaches only us).
#[allow(unsafe_code)]
fn catch_signals() {
    let handler = on_signal as extern "C" fn(libc::c_int);
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(sig, handler as libc::sighandler_t);
        }
    }
}

/// Send `sig` to `pid`, a child of ours that has not been reaped.
#[allow(unsafe_code)]
fn signal(pid: i32, sig: libc::c_int) -> bool {
    // SAFETY: kill(2) has no memory-safety preconditions; the caller makes sure
    // the pid is its unreaped child, so it cannot name another process.
    unsafe { libc::kill(pid, sig) == 0 }
}

/// The random schedule: fastrand's seeded generator (the seed is in the report,
/// so a run's schedule can be replayed), with the distributions the soak needs.
#[derive(Clone, Debug)]
struct Rng(fastrand::Rng);

impl Rng {
    fn seeded(seed: u64) -> Self {
        Rng(fastrand::Rng::with_seed(seed))
    }
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.0.f64()
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0.u64(..n.max(1))
    }
    /// Exponentially distributed, mean `mean` (a Poisson process's gaps).
    fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.0.f64()).ln()
    }
    fn fork(&mut self) -> Rng {
        Rng(self.0.fork())
    }
}

/// The event log: one line per injected event, with its time.
struct Log {
    start: Instant,
    file: Mutex<File>,
}

impl Log {
    fn event(&self, what: &str) {
        let t = self.start.elapsed().as_secs_f64();
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(f, "{t:10.3} {what}");
    }
}

/// Count, total and longest duration of one kind of stall.
#[derive(Clone, Copy, Debug, Default, Serialize)]
struct Stalls {
    count: u64,
    total_s: f64,
    max_s: f64,
}

impl Stalls {
    fn add(&mut self, s: f64) {
        self.count += 1;
        self.total_s += s;
        self.max_s = self.max_s.max(s);
    }
    fn merge(&mut self, o: &Stalls) {
        self.count += o.count;
        self.total_s += o.total_s;
        self.max_s = self.max_s.max(o.max_s);
    }
}

/// The generator's bursts, summed.
#[derive(Clone, Debug, Default, Serialize)]
struct GenTotals {
    bursts: u64,
    /// Bursts that failed to start or exited non-zero.
    failed: u64,
    last_error: Option<String>,
    /// Program runs: frames offered.
    offered: u64,
    /// Offered frames the peer veth refused (the receiving ring was full).
    veth_ring_full: u64,
    dropped_in_program: u64,
    /// offered - veth_ring_full - dropped_in_program: frames put on the wire.
    transmitted: u64,
    /// The generator's own reconciliation (its interface's TX counter).
    unaccounted: i64,
    seconds: f64,
}

impl GenTotals {
    fn merge(&mut self, o: &GenTotals) {
        self.bursts += o.bursts;
        self.failed += o.failed;
        if o.last_error.is_some() {
            self.last_error.clone_from(&o.last_error);
        }
        self.offered += o.offered;
        self.veth_ring_full += o.veth_ring_full;
        self.dropped_in_program += o.dropped_in_program;
        self.transmitted += o.transmitted;
        self.unaccounted += o.unaccounted;
        self.seconds += o.seconds;
    }
}

/// The kernel UDP senders (one socket per family in the peer namespace).
#[derive(Clone, Debug, Default, Serialize)]
struct KernelUdp {
    sent_v4: u64,
    sent_v6: u64,
    echoed_v4: u64,
    echoed_v6: u64,
    /// Echoes whose payload or source was not what was sent.
    mismatched: u64,
    send_errors: u64,
    /// Send errors by errno.
    send_error_kinds: BTreeMap<String, u64>,
}

impl KernelUdp {
    fn merge(&mut self, o: &KernelUdp) {
        self.sent_v4 += o.sent_v4;
        self.sent_v6 += o.sent_v6;
        self.echoed_v4 += o.echoed_v4;
        self.echoed_v6 += o.echoed_v6;
        self.mismatched += o.mismatched;
        self.send_errors += o.send_errors;
        for (k, v) in &o.send_error_kinds {
            *self.send_error_kinds.entry(k.clone()).or_insert(0) += v;
        }
    }
}

/// What the capture reader found in the FIFO.
#[derive(Clone, Debug, Default, Serialize)]
struct Reader {
    header_ok: bool,
    snaplen: u32,
    records: u64,
    bytes: u64,
    ipv4: u64,
    ipv6: u64,
    /// Records that break the format (caplen > snaplen, orig_len < caplen, a
    /// fraction of a second >= 1 s, a frame too short or too long) or that are
    /// not UDP to the port (nothing else is steered).
    bad: u64,
    first_bad: Option<String>,
    /// Records earlier than the one before (classic pcap is kept in time order).
    time_backwards: u64,
    /// The stream ended inside a record.
    partial_tail: bool,
    error: Option<String>,
    stalls: Stalls,
}

/// One sample of the stack process.
#[derive(Clone, Copy, Debug, Default, Serialize)]
struct Sample {
    t: f64,
    rss_kib: u64,
    fds: u64,
    bpf_maps: u64,
    bpf_progs: u64,
    bpf_links: u64,
}

/// The stack process's figures over a phase.
#[derive(Clone, Debug, Default, Serialize)]
struct Memory {
    samples: usize,
    warmup_s: f64,
    rss_first_kib: u64,
    rss_max_kib: u64,
    rss_last_kib: u64,
    /// The first sample after the warm-up, and growth beyond it.
    rss_baseline_kib: u64,
    rss_growth_kib: u64,
    fds_first: u64,
    fds_min: u64,
    fds_max: u64,
    fds_last: u64,
    bpf_first: [u64; 3],
    bpf_changed: bool,
}

fn memory(samples: &[Sample], warmup_s: f64) -> Memory {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return Memory::default();
    };
    let baseline = samples
        .iter()
        .find(|s| s.t >= warmup_s)
        .unwrap_or(last)
        .rss_kib;
    let max_after = samples
        .iter()
        .filter(|s| s.t >= warmup_s)
        .map(|s| s.rss_kib)
        .max()
        .unwrap_or(baseline);
    let bpf = |s: &Sample| [s.bpf_maps, s.bpf_progs, s.bpf_links];
    Memory {
        samples: samples.len(),
        warmup_s,
        rss_first_kib: first.rss_kib,
        rss_max_kib: samples.iter().map(|s| s.rss_kib).max().unwrap_or(0),
        rss_last_kib: last.rss_kib,
        rss_baseline_kib: baseline,
        rss_growth_kib: max_after.saturating_sub(baseline),
        fds_first: first.fds,
        fds_min: samples.iter().map(|s| s.fds).min().unwrap_or(0),
        fds_max: samples.iter().map(|s| s.fds).max().unwrap_or(0),
        fds_last: last.fds,
        bpf_first: bpf(first),
        bpf_changed: samples.iter().any(|s| bpf(s) != bpf(first)),
    }
}

/// RSS, open fds and BPF objects (by fdinfo) of process `pid`.
fn sample(pid: i32, t: f64) -> Sample {
    let rss_kib = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0);
    // The stack opens and closes a socket every 100 ms to watch its link: the
    // least of three counts leaves that one out.
    let fds = (0..3)
        .map(|i| {
            if i > 0 {
                std::thread::sleep(Duration::from_millis(3));
            }
            std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
        })
        .min()
        .unwrap_or(0);
    let (mut bpf_maps, mut bpf_progs, mut bpf_links) = (0, 0, 0);
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        if text.contains("link_id:") {
            bpf_links += 1;
        } else if text.contains("prog_id:") {
            bpf_progs += 1;
        } else if text.contains("map_id:") {
            bpf_maps += 1;
        }
    }
    Sample {
        t,
        rss_kib,
        fds,
        bpf_maps,
        bpf_progs,
        bpf_links,
    }
}

/// A check and its outcome.
#[derive(Clone, Debug, Serialize)]
struct Check {
    name: String,
    pass: bool,
    detail: String,
}

/// What the stack printed so far on stdout.
#[derive(Debug, Default)]
struct StackOut {
    /// Packets of the last interval line, all queues.
    packets: u64,
    intervals: u64,
    max_pps: f64,
    /// Lines that are not JSON.
    bad_lines: u64,
    summary: Option<Value>,
}

fn read_stack_stdout(out: impl Read, state: &Mutex<StackOut>) {
    use std::io::BufRead as _;
    for line in BufReader::new(out).lines() {
        let Ok(line) = line else { break };
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        match serde_json::from_str::<Value>(&line) {
            Ok(v) if v["type"] == "interval" => {
                s.intervals += 1;
                s.packets = v["queues"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|q| u(&q["packets"]))
                    .sum();
                s.max_pps = s.max_pps.max(v["pps"].as_f64().unwrap_or(0.0));
            }
            Ok(v) if v["type"] == "summary" => s.summary = Some(v),
            _ => s.bad_lines += 1,
        }
    }
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// Is `frame` UDP to `PORT` (IPv4 without options, or IPv6 without extension
/// headers, which is all this testbed sends to the port)?
fn udp_to_port(frame: &[u8]) -> Option<bool> {
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let (proto, l4) = match ethertype {
        0x0800 => (
            *frame.get(14 + 9)?,
            14 + usize::from(frame.get(14)? & 0x0f) * 4,
        ),
        0x86dd => (*frame.get(14 + 6)?, 14 + 40),
        _ => return Some(false),
    };
    let dport = u16::from_be_bytes([*frame.get(l4 + 2)?, *frame.get(l4 + 3)?]);
    Some(proto == 17 && dport == PORT)
}

/// The capture's reader: open the FIFO, check the pcap header and every record
/// (parsed by pcap-file as they stream in), and stop reading now and then (a
/// stalled consumer).
fn read_pcap(path: &Path, no_stalls: &AtomicBool, mut rng: Rng, log: &Log) -> Reader {
    use pcap_file::{DataLink, PcapError, TsResolution, pcap::PcapReader};
    let mut r = Reader::default();
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => {
            r.error = Some(format!("opening {}: {e}", path.display()));
            return r;
        }
    };
    let mut pcap = match PcapReader::new(BufReader::with_capacity(64 * 1024, file)) {
        Ok(p) => p,
        // The writer closed the FIFO before writing anything.
        Err(PcapError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return r,
        Err(e) => {
            r.error = Some(format!("reading the file header: {e}"));
            return r;
        }
    };
    let header = pcap.header();
    r.snaplen = header.snaplen;
    r.header_ok = (header.version_major, header.version_minor) == (2, 4)
        && header.datalink == DataLink::ETHERNET
        && header.ts_resolution == TsResolution::NanoSecond
        && r.snaplen > 0;
    if !r.header_ok {
        r.error = Some(format!("unexpected pcap header {header:?}"));
    }
    let mut next_stall = Instant::now() + Duration::from_secs_f64(rng.exp(READER_STALL_EVERY_S));
    let mut last_ts = Duration::ZERO;
    let bad = |r: &mut Reader, what: String| {
        r.bad += 1;
        r.first_bad.get_or_insert(what);
    };
    loop {
        if !no_stalls.load(Ordering::Relaxed) && Instant::now() >= next_stall {
            let d = rng.uniform(READER_STALL_MIN_S, READER_STALL_MAX_S);
            log.event(&format!(
                "reader-stall {d:.3}s (after record {})",
                r.records
            ));
            std::thread::sleep(Duration::from_secs_f64(d));
            r.stalls.add(d);
            next_stall = Instant::now() + Duration::from_secs_f64(rng.exp(READER_STALL_EVERY_S));
        }
        let packet = match pcap.next_packet() {
            None => break,
            Some(Ok(p)) => p,
            // pcap-file reports a record the stream ends inside as an early end.
            Some(Err(PcapError::IoError(e))) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                r.partial_tail = true;
                break;
            }
            Some(Err(e)) => {
                r.error = Some(format!("record {}: {e}", r.records));
                break;
            }
        };
        let n = r.records;
        let (caplen, orig) = (packet.data.len() as u32, packet.orig_len);
        if caplen > r.snaplen || orig < caplen {
            let what = format!(
                "record {n}: caplen {caplen}, orig_len {orig}, snaplen {}",
                r.snaplen
            );
            bad(&mut r, what);
        }
        if packet.timestamp < last_ts {
            r.time_backwards += 1;
        }
        last_ts = packet.timestamp;
        r.records += 1;
        r.bytes += u64::from(caplen);
        let frame = &packet.data;
        match frame.get(12..14) {
            Some([0x08, 0x00]) => r.ipv4 += 1,
            Some([0x86, 0xdd]) => r.ipv6 += 1,
            _ => {}
        }
        if !(42..=1518).contains(&orig) || udp_to_port(frame) != Some(true) {
            bad(
                &mut r,
                format!(
                    "record {n}: {orig}-byte frame, not UDP to port {PORT}: {:02x?}",
                    &frame[..frame.len().min(48)]
                ),
            );
        }
    }
    r
}

/// Which bytes datagram `seq` of `len` bytes carries.
fn kernel_payload(seq: u64, len: usize, buf: &mut [u8]) {
    buf[..8].copy_from_slice(&seq.to_le_bytes());
    for (i, b) in buf[8..len].iter_mut().enumerate() {
        *b = (seq as u8)
            .wrapping_mul(31)
            .wrapping_add((i as u8).wrapping_mul(7));
    }
}

/// Low-rate kernel UDP, IPv4 and IPv6 at once, from the peer's sockets; every
/// echo is compared with what was sent.
fn kernel_udp(
    socks: [UdpSocket; 2],
    stop: &AtomicBool,
    active: &AtomicBool,
    mut rng: Rng,
) -> KernelUdp {
    let dst: [SocketAddr; 2] = [
        SocketAddr::new(STACK_V4.into(), PORT),
        SocketAddr::new(STACK_V6.into(), PORT),
    ];
    let mut k = KernelUdp::default();
    for s in &socks {
        let _ = s.set_nonblocking(true);
    }
    let mut out = [0u8; 2048];
    let mut want = [0u8; 2048];
    let mut got = [0u8; 2048];
    let drain = |k: &mut KernelUdp, got: &mut [u8], want: &mut [u8]| {
        for (i, s) in socks.iter().enumerate() {
            while let Ok((n, from)) = s.recv_from(got) {
                let seq = got.get(..8).map_or(u64::MAX, |b| {
                    u64::from_le_bytes(b.try_into().unwrap_or([0xff; 8]))
                });
                let ok = n >= 16 && from == dst[i] && {
                    kernel_payload(seq, n, want);
                    got[..n] == want[..n]
                };
                if !ok {
                    k.mismatched += 1;
                } else if i == 0 {
                    k.echoed_v4 += 1;
                } else {
                    k.echoed_v6 += 1;
                }
            }
        }
    };
    let mut seq = 0u64;
    active.store(true, Ordering::Relaxed);
    while !stop.load(Ordering::Relaxed) {
        for (i, s) in socks.iter().enumerate() {
            let len = 16 + rng.below(1185) as usize;
            kernel_payload(seq, len, &mut out);
            seq += 1;
            match s.send_to(&out[..len], dst[i]) {
                Ok(_) if i == 0 => k.sent_v4 += 1,
                Ok(_) => k.sent_v6 += 1,
                Err(e) => {
                    k.send_errors += 1;
                    let kind = format!("v{} {e}", if i == 0 { 4 } else { 6 });
                    *k.send_error_kinds.entry(kind).or_insert(0) += 1;
                }
            }
        }
        drain(&mut k, &mut got, &mut want);
        std::thread::sleep(KERNEL_UDP_PERIOD);
    }
    active.store(false, Ordering::Relaxed);
    // The last echoes.
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        drain(&mut k, &mut got, &mut want);
        std::thread::sleep(Duration::from_millis(5));
    }
    k
}

/// Sleep `secs`, or less if `stop` is set.
fn sleep_unless(stop: &AtomicBool, secs: f64) {
    let until = Instant::now() + Duration::from_secs_f64(secs);
    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Everything a phase needs.
struct Ctx<'a> {
    xdpstack: PathBuf,
    generator: PathBuf,
    bed: &'a Testbed,
    stack_mac: String,
    fifo: PathBuf,
    log: &'a Log,
}

/// Generator bursts with random pauses until `stop`.
fn flood(ctx: &Ctx<'_>, stop: &AtomicBool, active: &AtomicBool, mut rng: Rng) -> GenTotals {
    let mut g = GenTotals::default();
    let bed = ctx.bed;
    while !stop.load(Ordering::Relaxed) {
        sleep_unless(stop, rng.uniform(0.1, 3.0));
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let payload = 18 + rng.below(1472 - 18 + 1);
        let flows = 1 + rng.below(64);
        let batch = [1, 4, 16, 64, 128, 256][rng.below(6) as usize];
        let cpus = ["0", "1", "0,1"][rng.below(3) as usize];
        let length: Vec<String> = if rng.below(2) == 0 {
            let count = 10f64.powf(rng.uniform(4.0, 6.5)) as u64;
            vec![
                "-c".into(),
                count.to_string(),
                "--duration".into(),
                "8".into(),
            ]
        } else {
            vec!["--duration".into(), format!("{:.2}", rng.uniform(0.2, 4.0))]
        };
        let what = format!(
            "burst {}: payload {payload}, flows {flows}, batch {batch}, cpu {cpus}, {}",
            g.bursts + 1,
            length.join(" ")
        );
        g.bursts += 1;
        let mut cmd = bed.peer_command(&ctx.generator);
        cmd.args(["-i", &bed.peer_if(), "--dst-mac", &ctx.stack_mac])
            .args([
                "--dst",
                &format!("{STACK_V4}:{PORT}"),
                "--src",
                &PEER_V4.to_string(),
            ])
            .args([
                "--payload",
                &payload.to_string(),
                "--flows",
                &flows.to_string(),
            ])
            .args(["--batch", &batch.to_string(), "--cpu", cpus, "--json"])
            .args(&length)
            .process_group(0);
        let mut p = match Proc::spawn(&mut cmd, "xdpstack-gen") {
            Ok(p) => p,
            Err(e) => {
                g.failed += 1;
                g.last_error = Some(format!("{e:#}"));
                ctx.log.event(&format!("{what}: could not start: {e:#}"));
                sleep_unless(stop, 1.0);
                continue;
            }
        };
        active.store(true, Ordering::Relaxed);
        let mut exited = None;
        while !stop.load(Ordering::Relaxed) {
            match p.child.try_wait() {
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Ok(Some(status)) => {
                    exited = Some(status);
                    break;
                }
                Err(_) => break,
            }
        }
        active.store(false, Ordering::Relaxed);
        let result = match exited {
            // Reaped already: read what it wrote; never signal its pid again.
            Some(status) => {
                let (mut out, mut err) = (String::new(), String::new());
                if let Some(mut o) = p.child.stdout.take() {
                    let _ = o.read_to_string(&mut out);
                }
                if let Some(mut e) = p.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                Ok((status, out, err))
            }
            None => p.stop_with("-INT", Duration::from_secs(10)),
        };
        let report = result.and_then(|(status, out, err)| {
            if !status.success() {
                bail!("exit {status}: {}", err.trim());
            }
            json_line(&out)
        });
        match report {
            Ok(r) => {
                let runs = u(&r["runs"]);
                let dropped = u(&r["dropped"]);
                let in_prog = u(&r["dropped_in_program"]);
                let secs = r["seconds"].as_f64().unwrap_or(0.0);
                g.offered += runs;
                g.veth_ring_full += dropped;
                g.dropped_in_program += in_prog;
                g.transmitted += runs.saturating_sub(dropped + in_prog);
                g.unaccounted += r["unaccounted"].as_i64().unwrap_or(0);
                g.seconds += secs;
                ctx.log.event(&format!(
                    "{what}: offered {runs}, veth ring full {dropped}, sent {} in {secs:.2} s ({:.3} Mpps offered)",
                    runs.saturating_sub(dropped + in_prog),
                    runs as f64 / secs.max(1e-9) / 1e6
                ));
            }
            Err(e) => {
                g.failed += 1;
                g.last_error = Some(format!("{e:#}"));
                ctx.log.event(&format!("{what}: failed: {e:#}"));
            }
        }
    }
    g
}

/// One xdpstack process's run.
#[derive(Debug, Default, Serialize)]
struct Phase {
    index: usize,
    overflow: &'static str,
    start_attempts: u32,
    start_errors: Vec<String>,
    seconds: f64,
    exit: String,
    generator: GenTotals,
    kernel_udp: KernelUdp,
    reader: Reader,
    sigstops: Stalls,
    memory: Memory,
    intervals: u64,
    max_pps: f64,
    /// Peer and stack veth counters over the phase.
    link: Value,
    /// The stack's JSON summary.
    summary: Value,
    stderr: String,
    /// Why the run stopped here (watchdog, crash, interrupted).
    fatal: Option<String>,
    checks: Vec<Check>,
}

/// Stop everything a phase started, on every way out of it.
struct PhaseGuard<'a> {
    flags: &'a [&'a AtomicBool],
    fifo: &'a Path,
}

impl Drop for PhaseGuard<'_> {
    fn drop(&mut self) {
        for f in self.flags {
            f.store(true, Ordering::Relaxed);
        }
        unblock_fifo(self.fifo);
    }
}

/// A reader still waiting in open(2) for a writer gets one, and end of file.
fn unblock_fifo(fifo: &Path) {
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(fifo);
}

/// Signal `p` and wait for it, unless it has exited and been reaped already (its
/// pid may then belong to another process: it is not signalled again).
fn stop_child(mut p: Proc, signal: &str, timeout: Duration) -> Result<std::process::ExitStatus> {
    if let Some(status) = p.child.try_wait()? {
        return Ok(status);
    }
    p.stop_with(signal, timeout).map(|(status, _, _)| status)
}

/// Wait until `p` has attached its program, or exited, or `timeout`.
fn wait_attached(bed: &Testbed, p: &mut Proc, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = p.child.try_wait()? {
            bail!("exited before attaching ({status})");
        }
        if bed.stack_xdp_prog_id()?.is_some() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("not attached after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn link_counters(bed: &Testbed) -> Result<Value> {
    Ok(json!({
        "peer": link_stats(&bed.peer_ns(), &bed.peer_if())?,
        "stack": link_stats(&bed.stack_ns(), &bed.stack_if())?,
    }))
}

fn link_delta(before: &Value, after: &Value) -> Value {
    let mut out = json!({});
    for side in ["peer", "stack"] {
        for dir in ["rx", "tx"] {
            for name in ["packets", "dropped", "errors"] {
                let d = counter(&after[side], dir, name) as i64
                    - counter(&before[side], dir, name) as i64;
                out[side][dir][name] = json!(d);
            }
        }
    }
    out
}

#[allow(clippy::too_many_lines)]
fn run_phase(
    ctx: &Ctx<'_>,
    index: usize,
    overflow: &'static str,
    seconds: f64,
    rng: &mut Rng,
) -> Result<Phase> {
    let bed = ctx.bed;
    let mut phase = Phase {
        index,
        overflow,
        ..Phase::default()
    };
    let stop_flood = AtomicBool::new(false);
    let stop_kernel = AtomicBool::new(false);
    let no_stalls = AtomicBool::new(false);
    let gen_active = AtomicBool::new(false);
    let kernel_active = AtomicBool::new(false);
    let flags = [&stop_flood, &stop_kernel, &no_stalls];
    ctx.log.event(&format!("phase {index} ({overflow}): start"));
    std::thread::scope(|s| -> Result<Phase> {
        let _guard = PhaseGuard {
            flags: &flags,
            fifo: &ctx.fifo,
        };
        let (no_stalls, stop_flood, stop_kernel) = (&no_stalls, &stop_flood, &stop_kernel);
        let (gen_active, kernel_active) = (&gen_active, &kernel_active);
        // Start, retrying: a start that fails is reported, whatever the reason.
        let state = Arc::new(Mutex::new(StackOut::default()));
        let stderr_text = Arc::new(Mutex::new(String::new()));
        let (mut stack, reader, out_thread, err_thread) = loop {
            phase.start_attempts += 1;
            *state.lock().unwrap_or_else(|p| p.into_inner()) = StackOut::default();
            let reader_rng = rng.fork();
            let reader = s.spawn(move || read_pcap(&ctx.fifo, no_stalls, reader_rng, ctx.log));
            let mut cmd = bed.stack_command(&ctx.xdpstack);
            cmd.args(["-i", &bed.stack_if(), "--port", &PORT.to_string()])
                .args(["--app", "echo", "-w"])
                .arg(&ctx.fifo)
                .args(["--pcap-overflow", overflow, "--json", "--stats", "1"])
                .args(["--frames", &FRAMES.to_string()])
                .stdin(Stdio::null())
                .process_group(0);
            let mut p = Proc::spawn(&mut cmd, "xdpstack")?;
            let out = p.child.stdout.take().context("stdout")?;
            let err = p.child.stderr.take().context("stderr")?;
            let st = state.clone();
            let out_thread = s.spawn(move || read_stack_stdout(out, &st));
            let et = stderr_text.clone();
            let err_thread = s.spawn(move || {
                let mut text = String::new();
                let _ = BufReader::new(err).read_to_string(&mut text);
                *et.lock().unwrap_or_else(|p| p.into_inner()) = text;
            });
            match wait_attached(bed, &mut p, Duration::from_secs(10)) {
                Ok(()) => break (p, reader, out_thread, err_thread),
                Err(e) => {
                    let _ = stop_child(p, "-KILL", Duration::from_secs(5));
                    unblock_fifo(&ctx.fifo);
                    let _ = out_thread.join();
                    let _ = err_thread.join();
                    let _ = reader.join();
                    let text = stderr_text
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone();
                    let msg = format!("attempt {}: {e:#}: {}", phase.start_attempts, text.trim());
                    eprintln!("    xdpstack did not start: {msg}");
                    ctx.log
                        .event(&format!("phase {index}: start failed: {msg}"));
                    phase.start_errors.push(msg);
                    if phase.start_attempts >= 3 || INTERRUPTED.load(Ordering::Relaxed) {
                        phase.fatal = Some(format!(
                            "xdpstack did not start in {} attempts",
                            phase.start_attempts
                        ));
                        return Ok(phase);
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        };
        let pid = stack.pid();
        let started = Instant::now();
        let link_before = link_counters(bed)?;
        let socks = bed.in_peer(|| -> std::io::Result<[UdpSocket; 2]> {
            Ok([
                UdpSocket::bind(SocketAddr::new(PEER_V4.into(), 0))?,
                UdpSocket::bind(SocketAddr::new(PEER_V6.into(), 0))?,
            ])
        })??;
        let krng = rng.fork();
        let kernel = s.spawn(move || kernel_udp(socks, stop_kernel, kernel_active, krng));
        let frng = rng.fork();
        let flooder = s.spawn(move || flood(ctx, stop_flood, gen_active, frng));

        let deadline = started + Duration::from_secs_f64(seconds);
        let warmup_s = (seconds * 0.1).min(60.0);
        let mut samples = Vec::new();
        let mut next_sample = started;
        let mut next_stop = started + Duration::from_secs_f64(rng.exp(SIGSTOP_EVERY_S));
        let mut stopped: Option<(Instant, f64)> = None;
        let mut last_packets = 0;
        let mut last_progress = started;
        let mut next_progress_line = started + Duration::from_secs(30);
        loop {
            let now = Instant::now();
            // The process must still be there (checked before any signal: once
            // reaped, its pid is not ours to signal).
            if let Some(status) = stack.child.try_wait()? {
                phase.fatal = Some(format!("xdpstack exited during the run ({status})"));
                break;
            }
            if let Some((since, d)) = stopped {
                if now >= since + Duration::from_secs_f64(d) {
                    signal(pid, libc::SIGCONT);
                    let held = since.elapsed().as_secs_f64();
                    phase.sigstops.add(held);
                    ctx.log.event(&format!("sigcont after {held:.3}s"));
                    stopped = None;
                    last_progress = now;
                }
            } else if now >= next_stop && now + Duration::from_secs(1) < deadline {
                let d = rng.uniform(0.05, 0.5);
                ctx.log.event(&format!("sigstop xdpstack for {d:.3}s"));
                if signal(pid, libc::SIGSTOP) {
                    stopped = Some((now, d));
                }
                next_stop = now + Duration::from_secs_f64(d + rng.exp(SIGSTOP_EVERY_S));
            }
            // Watchdog.
            let (packets, intervals) = {
                let st = state.lock().unwrap_or_else(|p| p.into_inner());
                (st.packets, st.intervals)
            };
            let offered =
                gen_active.load(Ordering::Relaxed) || kernel_active.load(Ordering::Relaxed);
            if packets != last_packets || stopped.is_some() || !offered {
                last_packets = packets;
                last_progress = now;
            }
            if now.duration_since(last_progress) > WATCHDOG {
                let msg = format!(
                    "watchdog: no progress for {:.1} s at {packets} packets ({intervals} interval lines) while traffic was offered and the process ran",
                    now.duration_since(last_progress).as_secs_f64()
                );
                eprintln!("    {msg}");
                ctx.log.event(&msg);
                phase.fatal = Some(msg);
                break;
            }
            if now >= next_sample {
                samples.push(sample(pid, now.duration_since(started).as_secs_f64()));
                next_sample += Duration::from_secs(1);
            }
            if now >= next_progress_line {
                next_progress_line += Duration::from_secs(30);
                let last = samples.last().copied().unwrap_or_default();
                eprintln!(
                    "    {:5.0} s: {packets} packets, {} sigstops, RSS {} KiB, {} fds",
                    now.duration_since(started).as_secs_f64(),
                    phase.sigstops.count,
                    last.rss_kib,
                    last.fds
                );
            }
            if INTERRUPTED.load(Ordering::Relaxed) {
                phase.fatal = Some("interrupted".into());
                break;
            }
            if now >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if stopped.is_some() && stack.child.try_wait()?.is_none() {
            signal(pid, libc::SIGCONT);
            phase
                .sigstops
                .add(stopped.map_or(0.0, |(t, _)| t.elapsed().as_secs_f64()));
            ctx.log.event("sigcont (end of phase)");
        }
        // Quiesce: traffic off, reader reading, rings drained; then SIGINT.
        no_stalls.store(true, Ordering::Relaxed);
        stop_flood.store(true, Ordering::Relaxed);
        phase.generator = flooder.join().unwrap_or_default();
        stop_kernel.store(true, Ordering::Relaxed);
        phase.kernel_udp = kernel.join().unwrap_or_default();
        std::thread::sleep(Duration::from_millis(300));
        let link_after = link_counters(bed)?;
        phase.link = link_delta(&link_before, &link_after);
        phase.memory = memory(&samples, warmup_s);
        ctx.log.event(&format!("phase {index}: SIGINT"));
        phase.exit = match stop_child(stack, "-INT", Duration::from_secs(30)) {
            Ok(status) => status.to_string(),
            Err(e) => format!("{e:#}"),
        };
        unblock_fifo(&ctx.fifo);
        let _ = out_thread.join();
        let _ = err_thread.join();
        phase.reader = reader.join().unwrap_or_default();
        phase.seconds = started.elapsed().as_secs_f64();
        phase.stderr = stderr_text
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let st = state.lock().unwrap_or_else(|p| p.into_inner());
        phase.summary = st.summary.clone().unwrap_or(Value::Null);
        phase.intervals = st.intervals;
        phase.max_pps = st.max_pps;
        let bad_lines = st.bad_lines;
        drop(st);
        let attached_after = bed.stack_xdp_prog_id()?;
        phase.checks = phase_checks(&phase, bad_lines, attached_after);
        ctx.log.event(&format!("phase {index}: end"));
        Ok(phase)
    })
}

/// The checks of one phase, from its summary and what we counted ourselves.
#[allow(clippy::too_many_lines)]
fn phase_checks(p: &Phase, bad_lines: u64, attached_after: Option<u32>) -> Vec<Check> {
    let mut c = Vec::new();
    let mut check = |name: &str, pass: bool, detail: String| {
        c.push(Check {
            name: name.to_string(),
            pass,
            detail,
        });
    };
    check(
        "start_first_try",
        p.start_attempts == 1,
        if p.start_errors.is_empty() {
            "started and attached at once".into()
        } else {
            p.start_errors.join("; ")
        },
    );
    let fatal = p.fatal.as_deref().unwrap_or("");
    check(
        "watchdog",
        !fatal.starts_with("watchdog"),
        if fatal.starts_with("watchdog") {
            fatal.to_string()
        } else {
            format!("progress at least every {} s", WATCHDOG.as_secs())
        },
    );
    check(
        "ran_to_the_end",
        p.fatal.is_none(),
        p.fatal
            .clone()
            .unwrap_or_else(|| "the phase ran its whole time".into()),
    );
    check(
        "clean_exit",
        p.exit == "exit status: 0",
        format!("{}; stderr: {:?}", p.exit, p.stderr.trim()),
    );
    check(
        "detached_after_exit",
        attached_after.is_none(),
        format!("XDP program on the interface after exit: {attached_after:?}"),
    );
    check(
        "json_lines",
        bad_lines == 0 && p.intervals > 0 && !p.summary.is_null(),
        format!(
            "{} interval lines, {bad_lines} not JSON, summary {}",
            p.intervals,
            if p.summary.is_null() {
                "missing"
            } else {
                "present"
            }
        ),
    );
    let s = &p.summary;
    if s.is_null() {
        check(
            "summary",
            false,
            "no JSON summary: no counter checks".into(),
        );
        return c;
    }
    let queues = s["queues"].as_array().cloned().unwrap_or_default();
    let consumer = consumer_field;
    let sum = |f: &dyn Fn(&Value) -> u64| queues.iter().map(f).sum::<u64>();
    let packets = u(&s["packets"]);

    // Frame conservation, per queue.
    let mut detail = Vec::new();
    let mut ok = queues.len() == QUEUES as usize;
    for q in &queues {
        let held: u64 = q["consumers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|x| u(&x["held"]))
            .sum();
        let total = u(&q["frames_free"]) + u(&q["frames_in_kernel"]) + u(&q["frames_in_tx"]) + held;
        ok &= total == FRAMES;
        detail.push(format!(
            "q{}: free {} + kernel {} + tx {} + held {held} = {total}",
            u(&q["queue"]),
            u(&q["frames_free"]),
            u(&q["frames_in_kernel"]),
            u(&q["frames_in_tx"])
        ));
    }
    check(
        "frame_conservation",
        ok,
        format!("{} (of {FRAMES})", detail.join("; ")),
    );

    // Every packet reached the UDP consumer (inline) and the pcap writer or its
    // drop counter.
    let mut detail = Vec::new();
    let mut ok = true;
    for q in &queues {
        let (pk, d, dr) = (
            u(&q["packets"]),
            consumer(q, "pcap", "delivered"),
            consumer(q, "pcap", "dropped"),
        );
        ok &= d + dr == pk;
        detail.push(format!(
            "q{}: pcap delivered {d} + dropped {dr} vs packets {pk}",
            u(&q["queue"])
        ));
    }
    check("pcap_delivered_plus_dropped", ok, detail.join("; "));
    let udp_delivered = sum(&|q| consumer(q, "udp", "delivered"));
    let udp_dropped = sum(&|q| consumer(q, "udp", "dropped"));
    check(
        "udp_consumer_got_every_packet",
        udp_delivered == packets && udp_dropped == 0,
        format!("udp delivered {udp_delivered}, dropped {udp_dropped}, packets {packets}"),
    );

    // The capture file: what the writer says it wrote is what we read.
    let cap = &s["capture"];
    let written = u(&cap["stats"]["records_written"]);
    let pcap_delivered = sum(&|q| consumer(q, "pcap", "delivered"));
    check(
        "pcap_written_equals_read",
        written == p.reader.records,
        format!(
            "records_written {written}, records read from the FIFO {}",
            p.reader.records
        ),
    );
    check(
        "pcap_written_equals_delivered",
        written == pcap_delivered
            && u(&cap["stats"]["records_dropped"]) == 0
            && u(&cap["stats"]["records_buffered"]) == 0
            && cap["error"].is_null(),
        format!(
            "written {written}, delivered to the writer {pcap_delivered}, records_dropped {}, buffered {}, error {}",
            u(&cap["stats"]["records_dropped"]),
            u(&cap["stats"]["records_buffered"]),
            cap["error"]
        ),
    );
    let r = &p.reader;
    check(
        "pcap_records_valid",
        r.header_ok && r.bad == 0 && r.time_backwards == 0 && !r.partial_tail && r.error.is_none(),
        format!(
            "header ok {}, snaplen {}, {} records ({} IPv4, {} IPv6), {} bad{}, {} out of time order, partial tail {}, error {:?}",
            r.header_ok,
            r.snaplen,
            r.records,
            r.ipv4,
            r.ipv6,
            r.bad,
            r.first_bad
                .as_ref()
                .map_or(String::new(), |b| format!(" (first: {b})")),
            r.time_backwards,
            r.partial_tail,
            r.error
        ),
    );

    // UDP: every frame is a datagram or a reject.
    let udp = &s["udp"];
    let rejected: u64 = udp["rejected"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(_, v)| u(v))
        .sum();
    let datagrams = u(&udp["datagrams"]);
    let unmatched = u(&udp["unmatched"]);
    check(
        "udp_datagrams_plus_rejects",
        datagrams + unmatched + rejected == packets,
        format!(
            "datagrams {datagrams} + unmatched {unmatched} + rejected {rejected} vs packets {packets}"
        ),
    );
    check(
        "udp_no_rejects",
        rejected == 0 && unmatched == 0,
        format!(
            "rejected {rejected} ({}), unmatched {unmatched}: every frame sent is valid UDP to the port",
            udp["rejected"]
        ),
    );

    // The XDP program: one verdict per frame; every redirect received or
    // counted by the kernel.
    let xdp = &s["xdp"];
    let seen = u(&xdp["seen"]);
    let verdicts: u64 = xdp
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| *k != "seen")
        .map(|(_, v)| u(v))
        .sum();
    check(
        "xdp_one_verdict_per_frame",
        seen == verdicts,
        format!("seen {seen}, verdicts {verdicts} ({xdp})"),
    );
    let peer_tx = p.link["peer"]["tx"]["packets"].as_i64().unwrap_or(-1);
    check(
        "xdp_saw_every_frame_sent",
        i64::try_from(seen).is_ok_and(|s| s == peer_tx),
        format!("seen {seen}, peer veth transmitted {peer_tx}"),
    );
    let redirected = u(&xdp["redirected"]);
    let rx_dropped = sum(&|q| u(&q["xsk"]["rx_dropped"]));
    let ring_full = sum(&|q| u(&q["xsk"]["rx_ring_full"]));
    check(
        "xdp_redirected_reconciles",
        redirected == packets + rx_dropped + ring_full,
        format!(
            "redirected {redirected} vs packets {packets} + rx_dropped {rx_dropped} + rx_ring_full {ring_full} = {}",
            packets + rx_dropped + ring_full
        ),
    );
    let invalid = sum(&|q| u(&q["xsk"]["rx_invalid_descs"]) + u(&q["xsk"]["tx_invalid_descs"]));
    check(
        "xsk_no_invalid_descriptors",
        invalid == 0,
        format!("rx + tx invalid descriptors {invalid}"),
    );

    // Traffic in. The peer veth's tx_dropped counts every frame it could not hand
    // over: the generator's, the kernel UDP senders' and the peer kernel's own
    // (ARP, NDP, MLD, ICMP); the generator's `dropped` takes all of those that
    // fall inside its bursts. So generator runs + kernel datagrams - every veth
    // drop = redirected - the peer kernel's own frames the veth dropped: never
    // negative (nothing vanished), and at most a handful.
    let k = &p.kernel_udp;
    let offered = p.generator.offered - p.generator.dropped_in_program + k.sent_v4 + k.sent_v6;
    let veth_dropped = p.link["peer"]["tx"]["dropped"].as_i64().unwrap_or(0);
    let expected = offered as i64 - veth_dropped;
    let extra = redirected as i64 - expected;
    let not_steered = u(&xdp["pass_not_steered"]);
    let bound = not_steered.max(16) as i64;
    check(
        "sent_equals_redirected",
        (0..=bound).contains(&extra),
        format!(
            "generator runs {} + kernel UDP {} (v4 {}, v6 {}) - peer veth tx_dropped {veth_dropped} = {expected}; \
             redirected {redirected}: {extra} more (the peer kernel's own frames dropped by the veth; \
             0..={bound} allowed, {not_steered} of them got through); generator transmitted {} by its own count",
            p.generator.offered - p.generator.dropped_in_program,
            k.sent_v4 + k.sent_v6,
            k.sent_v4,
            k.sent_v6,
            p.generator.transmitted,
        ),
    );
    check(
        "generator_bursts_ok",
        p.generator.failed == 0 && p.generator.bursts > 0,
        format!(
            "{} bursts, {} failed{}",
            p.generator.bursts,
            p.generator.failed,
            p.generator
                .last_error
                .as_ref()
                .map_or(String::new(), |e| format!(" (last: {e})"))
        ),
    );

    // Echo: every datagram answered or counted; every reply completed, sent or
    // counted as dropped by the kernel.
    let tx = |f: &str| sum(&|q| u(&q["tx"][f]));
    let (queued, sent, completed) = (tx("queued"), tx("sent"), tx("completed"));
    let not_sent = tx("queue_full") + tx("no_frame") + tx("reply_errors") + tx("too_many_views");
    check(
        "echo_reconciles",
        datagrams == queued + not_sent
            && queued == completed
            && sent + tx("kernel_dropped") == completed,
        format!(
            "datagrams {datagrams} vs queued {queued} + queue_full {} + no_frame {} + reply_errors {}; \
             completed {completed} = sent {sent} + kernel_dropped {}",
            tx("queue_full"),
            tx("no_frame"),
            tx("reply_errors"),
            tx("kernel_dropped"),
        ),
    );
    check(
        "kernel_udp_echoes_exact",
        k.mismatched == 0 && k.echoed_v4 > 0 && k.echoed_v6 > 0,
        format!(
            "v4 {}/{} echoed, v6 {}/{} echoed, {} mismatched, {} send errors {:?} (not sent, not counted as sent)",
            k.echoed_v4,
            k.sent_v4,
            k.echoed_v6,
            k.sent_v6,
            k.mismatched,
            k.send_errors,
            k.send_error_kinds
        ),
    );

    // Resources.
    let m = &p.memory;
    check(
        "rss_flat",
        m.samples > 0 && m.rss_growth_kib <= RSS_BOUND_KIB,
        format!(
            "RSS first {} KiB, after {:.0} s warm-up {} KiB, max {} KiB, last {} KiB: growth {} KiB (bound {RSS_BOUND_KIB})",
            m.rss_first_kib,
            m.warmup_s,
            m.rss_baseline_kib,
            m.rss_max_kib,
            m.rss_last_kib,
            m.rss_growth_kib
        ),
    );
    check(
        "fds_constant",
        m.samples > 0 && m.fds_min == m.fds_max,
        format!(
            "fds first {}, min {}, max {}, last {}",
            m.fds_first, m.fds_min, m.fds_max, m.fds_last
        ),
    );
    check(
        "bpf_objects_constant",
        m.samples > 0 && !m.bpf_changed,
        format!(
            "maps/progs/links {:?}, changed {}",
            m.bpf_first, m.bpf_changed
        ),
    );
    c
}

/// Sum of field `f` of every queue of every phase's summary.
fn total(phases: &[Phase], f: &dyn Fn(&Value) -> u64) -> u64 {
    phases
        .iter()
        .flat_map(|p| p.summary["queues"].as_array().cloned().unwrap_or_default())
        .map(|q| f(&q))
        .sum()
}

fn consumer_total(phases: &[Phase], name: &str, field: &str) -> u64 {
    total(phases, &|q| consumer_field(q, name, field))
}

/// `field` of consumer `name` in a queue's summary (0 if it has none).
fn consumer_field(q: &Value, name: &str, field: &str) -> u64 {
    q["consumers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|x| x["name"] == name)
        .map(|x| u(&x[field]))
        .sum()
}

/// Run the soak for `minutes`, with the release `xdpstack` (its siblings next to
/// it).
#[allow(clippy::too_many_lines)]
pub(crate) fn soak(xdpstack: &Path, minutes: f64, seed: Option<u64>) -> Result<()> {
    if !(minutes > 0.0 && minutes.is_finite()) {
        bail!("--minutes must be a positive number");
    }
    catch_signals();
    let dir = crate::root().join("target").join("soak");
    std::fs::create_dir_all(&dir)?;
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let mut rng = Rng::seeded(seed);
    let started = Instant::now();
    let log = Log {
        start: started,
        file: Mutex::new(File::create(dir.join("events.log")).context("events.log")?),
    };
    let name = format!("xsoak{}", std::process::id() % 100_000);
    if Testbed::exists(&name) {
        Testbed::remove(&name)?;
    }
    let bed = Testbed::create(&name, QUEUES)?;
    // As for the bench: the stack's veth runs its NAPI in kernel threads (on CPU
    // 0), so the generator is not paced by the receive path and floods it.
    threaded_napi(&bed.stack_ns(), &bed.stack_if(), 0)?;
    let fifo = dir.join(format!("capture-{name}.fifo"));
    let _ = std::fs::remove_file(&fifo);
    let status = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .context("mkfifo")?;
    if !status.success() {
        bail!("mkfifo {} failed", fifo.display());
    }
    let bin_dir = xdpstack.parent().context("binary has a directory")?;
    let ctx = Ctx {
        xdpstack: xdpstack.to_path_buf(),
        generator: bin_dir.join("xdpstack-gen"),
        bed: &bed,
        stack_mac: mac_of(&bed.stack_ns(), &bed.stack_if())?,
        fifo: fifo.clone(),
        log: &log,
    };
    let total_s = minutes * 60.0;
    let n_phases = ((total_s / PHASE_S).round() as usize).max(2);
    let phase_s = total_s / n_phases as f64;
    eprintln!(
        "==> soak: {minutes} min on testbed {name} ({QUEUES} queues), {n_phases} phases of {phase_s:.0} s \
         alternating --pcap-overflow drop/wait, seed {seed}; events in {}",
        dir.join("events.log").display()
    );
    log.event(&format!("seed {seed}, {n_phases} phases of {phase_s:.1} s"));
    let mut phases = Vec::new();
    let mut error = None;
    for i in 0..n_phases {
        if INTERRUPTED.load(Ordering::Relaxed) {
            break;
        }
        let overflow = if i % 2 == 0 { "drop" } else { "wait" };
        eprintln!(
            "==> phase {}/{n_phases}: --pcap-overflow {overflow}, {phase_s:.0} s",
            i + 1
        );
        match run_phase(&ctx, i + 1, overflow, phase_s, &mut rng) {
            Ok(p) => {
                let failed: Vec<&str> = p
                    .checks
                    .iter()
                    .filter(|c| !c.pass)
                    .map(|c| c.name.as_str())
                    .collect();
                eprintln!(
                    "    {} packets in {:.0} s; {}",
                    u(&p.summary["packets"]),
                    p.seconds,
                    if failed.is_empty() {
                        "all checks pass".to_string()
                    } else {
                        format!("FAILED: {}", failed.join(", "))
                    }
                );
                let fatal = p.fatal.is_some();
                phases.push(p);
                if fatal {
                    break;
                }
            }
            Err(e) => {
                eprintln!("    phase {} could not run: {e:#}", i + 1);
                error = Some(format!("phase {}: {e:#}", i + 1));
                break;
            }
        }
    }
    let _ = std::fs::remove_file(&fifo);
    let teardown = Testbed::remove(&name);
    bed.keep(); // removed just now, explicitly, to report the outcome
    let wall_s = started.elapsed().as_secs_f64();

    // Totals.
    let mut gen_ = GenTotals::default();
    let mut kudp = KernelUdp::default();
    let mut reader_stalls = Stalls::default();
    let mut sigstops = Stalls::default();
    for p in &phases {
        gen_.merge(&p.generator);
        kudp.merge(&p.kernel_udp);
        reader_stalls.merge(&p.reader.stalls);
        sigstops.merge(&p.sigstops);
    }
    let packets: u64 = phases.iter().map(|p| u(&p.summary["packets"])).sum();
    let stack_s: f64 = phases
        .iter()
        .map(|p| p.summary["seconds"].as_f64().unwrap_or(p.seconds))
        .sum();
    let xsk = |f: &str| total(&phases, &|q| u(&q["xsk"][f]));
    let txf = |f: &str| total(&phases, &|q| u(&q["tx"][f]));
    let xdp_total = |f: &str| phases.iter().map(|p| u(&p.summary["xdp"][f])).sum::<u64>();
    let mut xdp = BTreeMap::new();
    for p in &phases {
        for (k, v) in p.summary["xdp"].as_object().into_iter().flatten() {
            *xdp.entry(k.clone()).or_insert(0u64) += u(v);
        }
    }
    let drops = json!({
        "veth_ring_full": gen_.veth_ring_full,
        "xsk_rx_dropped": xsk("rx_dropped"),
        "xsk_rx_ring_full": xsk("rx_ring_full"),
        "xsk_rx_fill_ring_empty_descs": xsk("rx_fill_ring_empty_descs"),
        "xsk_rx_invalid_descs": xsk("rx_invalid_descs"),
        "xsk_tx_invalid_descs": xsk("tx_invalid_descs"),
        "xsk_tx_ring_empty_descs": xsk("tx_ring_empty_descs"),
        "pcap_queue_full": consumer_total(&phases, "pcap", "dropped"),
        "udp_queue_full": consumer_total(&phases, "udp", "dropped"),
        "tx_queue_full": txf("queue_full"),
        "tx_no_frame": txf("no_frame"),
        "tx_reply_errors": txf("reply_errors"),
        "tx_ring_full_rounds": txf("ring_full"),
        "udp_rejected": phases.iter().map(|p| p.summary["udp"]["rejected"].as_object().into_iter().flatten().map(|(_, v)| u(v)).sum::<u64>()).sum::<u64>(),
    });

    // Checks over the whole run: each phase's, grouped by name.
    let mut checks: Vec<Check> = Vec::new();
    for p in &phases {
        for c in &p.checks {
            match checks.iter_mut().find(|x| x.name == c.name) {
                Some(x) => {
                    if !c.pass && x.pass {
                        x.pass = false;
                        x.detail = format!("phase {} ({}): {}", p.index, p.overflow, c.detail);
                    }
                }
                None => checks.push(Check {
                    name: c.name.clone(),
                    pass: c.pass,
                    detail: if c.pass {
                        format!("all phases; phase 1: {}", c.detail)
                    } else {
                        format!("phase {} ({}): {}", p.index, p.overflow, c.detail)
                    },
                }),
            }
        }
    }
    let mut run_check = |name: &str, pass: bool, detail: String| {
        checks.push(Check {
            name: name.into(),
            pass,
            detail,
        });
    };
    run_check(
        "all_phases_ran",
        phases.len() == n_phases && error.is_none(),
        format!(
            "{} of {n_phases} phases{}",
            phases.len(),
            error.as_ref().map_or(String::new(), |e| format!("; {e}"))
        ),
    );
    run_check(
        "stalls_injected",
        reader_stalls.count > 0 && sigstops.count > 0,
        format!(
            "{} capture-reader stalls, {} SIGSTOPs",
            reader_stalls.count, sigstops.count
        ),
    );
    run_check(
        "testbed_removed",
        teardown.is_ok() && !Testbed::exists(&name),
        teardown
            .as_ref()
            .map_or_else(|e| e.to_string(), |()| format!("{name} removed")),
    );
    let pass = checks.iter().all(|c| c.pass);

    let rss: Vec<Value> = phases
        .iter()
        .map(|p| {
            json!({
                "phase": p.index,
                "first_kib": p.memory.rss_first_kib,
                "baseline_kib": p.memory.rss_baseline_kib,
                "max_kib": p.memory.rss_max_kib,
                "last_kib": p.memory.rss_last_kib,
                "growth_kib": p.memory.rss_growth_kib,
                "fds": [p.memory.fds_min, p.memory.fds_max],
                "bpf_maps_progs_links": p.memory.bpf_first,
            })
        })
        .collect();
    let report = json!({
        "pass": pass,
        "interrupted": INTERRUPTED.load(Ordering::Relaxed),
        "minutes": minutes,
        "seed": seed,
        "wall_s": wall_s,
        "stack_s": stack_s,
        "phases_planned": n_phases,
        "phases_run": phases.len(),
        "restarts": phases.len().saturating_sub(1),
        "start_retries": phases.iter().map(|p| p.start_attempts.saturating_sub(1)).sum::<u32>(),
        "start_errors": phases.iter().flat_map(|p| p.start_errors.clone()).collect::<Vec<_>>(),
        "generator": gen_,
        "kernel_udp": kudp,
        "packets": packets,
        "mpps_avg": packets as f64 / stack_s.max(1e-9) / 1e6,
        "max_pps": phases.iter().map(|p| p.max_pps).fold(0.0, f64::max),
        "udp_datagrams": phases.iter().map(|p| u(&p.summary["udp"]["datagrams"])).sum::<u64>(),
        "echo_sent": txf("sent"),
        "echo_kernel_dropped": txf("kernel_dropped"),
        "captured": phases.iter().map(|p| p.reader.records).sum::<u64>(),
        "captured_ipv6": phases.iter().map(|p| p.reader.ipv6).sum::<u64>(),
        "xdp": xdp,
        "drops": drops,
        "stalls": {
            "capture_reader": reader_stalls,
            "sigstop": sigstops,
        },
        "memory": rss,
        "checks": checks,
        "phases": phases,
    });
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;

    let mut t = String::new();
    let _ = writeln!(
        t,
        "soak: {minutes} min requested, {wall_s:.0} s wall, {} phase(s) ({} restart(s), {} start retr(ies)), seed {seed}",
        phases.len(),
        report["restarts"],
        report["start_retries"]
    );
    let _ = writeln!(
        t,
        "  generator: {} bursts ({} failed), {} frames offered, {} refused by the veth (ring full), {} sent",
        gen_.bursts, gen_.failed, gen_.offered, gen_.veth_ring_full, gen_.transmitted
    );
    let _ = writeln!(
        t,
        "  kernel UDP: sent v4 {} v6 {}, echoed v4 {} v6 {}, mismatched {}",
        kudp.sent_v4, kudp.sent_v6, kudp.echoed_v4, kudp.echoed_v6, kudp.mismatched
    );
    let _ = writeln!(
        t,
        "  received {packets} packets in {stack_s:.0} s ({:.3} Mpps average, {:.3} Mpps peak interval); redirected {}, {} datagrams, {} echoes sent, {} records captured ({} IPv6)",
        report["mpps_avg"].as_f64().unwrap_or(0.0),
        report["max_pps"].as_f64().unwrap_or(0.0) / 1e6,
        xdp_total("redirected"),
        report["udp_datagrams"],
        report["echo_sent"],
        report["captured"],
        report["captured_ipv6"]
    );
    let _ = writeln!(t, "  drops:");
    for (k, v) in drops.as_object().into_iter().flatten() {
        let _ = writeln!(t, "    {k:<52} {v}");
    }
    let _ = writeln!(
        t,
        "  stalls: capture reader {} ({:.1} s total, longest {:.2} s); SIGSTOP {} ({:.1} s total, longest {:.3} s)",
        reader_stalls.count,
        reader_stalls.total_s,
        reader_stalls.max_s,
        sigstops.count,
        sigstops.total_s,
        sigstops.max_s
    );
    for p in &phases {
        let m = &p.memory;
        let _ = writeln!(
            t,
            "  phase {} ({}): {} packets, RSS first {} / max {} / last {} KiB (growth after {:.0} s: {} KiB), fds {}..{}, bpf maps/progs/links {:?}",
            p.index,
            p.overflow,
            u(&p.summary["packets"]),
            m.rss_first_kib,
            m.rss_max_kib,
            m.rss_last_kib,
            m.warmup_s,
            m.rss_growth_kib,
            m.fds_min,
            m.fds_max,
            m.bpf_first
        );
    }
    let _ = writeln!(t, "  checks:");
    for c in &checks {
        let _ = writeln!(
            t,
            "    [{}] {}: {}",
            if c.pass { "pass" } else { "FAIL" },
            c.name,
            c.detail
        );
    }
    let _ = writeln!(
        t,
        "  {} -> {}",
        if pass { "PASS" } else { "FAIL" },
        dir.join("report.json").display()
    );
    print!("{t}");
    if !pass {
        bail!(
            "soak failed: {}",
            checks
                .iter()
                .filter(|c| !c.pass)
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}
