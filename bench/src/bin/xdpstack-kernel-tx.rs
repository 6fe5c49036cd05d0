//! `xdpstack-kernel-tx`: a kernel UDP socket sender, the benchmarks' generator
//! where `xdpstack-gen` cannot go: frames larger than a page. `xdpstack-gen` runs
//! its template through `BPF_PROG_TEST_RUN` with live frames, and the kernel
//! refuses live frames beyond a page less the XDP headroom and `skb_shared_info`
//! ("disallow live data mode for jumbo frames", `bpf_prog_test_run_xdp`), so an
//! 8972-byte payload at MTU 9000 cannot be sent that way. (An AF_XDP sender would
//! need multi-buffer TX of its own; a kernel socket is what every peer has.)
//!
//! What it does is what a fast user-space sender would: `--flows` connected UDP
//! sockets (one source port each), each `sendmmsg(2)` call giving one socket
//! `--batch` datagrams of one preallocated payload, round robin, pinned to
//! `--cpu`, until `--duration` is over or SIGINT/SIGTERM. Sends block while the
//! socket's send buffer is full, so it goes as fast as the path takes the
//! datagrams away. It prints one JSON object: datagrams the kernel accepted
//! (`runs`, the name `xdpstack-gen` uses for what it offered), send errors, the
//! kernel's UDP send-side drop counters of its namespace over the run, seconds
//! and CPU time. What really left the interface is the interface's own counter,
//! which the bench reads.
#![allow(unsafe_code)]

use std::{
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use xdpstack::sys::process::{cpu_seconds, pin_to_cpu};

/// The longest run: every load loop is bounded in time.
const MAX_SECONDS: f64 = 600.0;

/// A kernel UDP sender with sendmmsg, for benchmarks.
#[derive(Debug, Parser)]
struct Args {
    /// Destination address and port (only the benchmarking range is sent to).
    #[arg(long, value_name = "IP:PORT")]
    dst: SocketAddr,
    /// Source address to bind (the port is the kernel's choice, one per flow).
    #[arg(long, value_name = "IP")]
    src: std::net::IpAddr,
    /// UDP payload bytes per datagram.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=65_507))]
    payload: u32,
    /// Sockets (source ports) to spread the datagrams over.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    flows: u32,
    /// Datagrams per sendmmsg call.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    batch: u32,
    /// Seconds to send for (at most 600).
    #[arg(long, value_name = "S")]
    duration: f64,
    /// CPU to pin the sender to.
    #[arg(long)]
    cpu: Option<usize>,
    /// Print the JSON report (the only output there is; accepted so that the
    /// command line reads like `xdpstack-gen`'s).
    #[arg(long)]
    json: bool,
}

/// The kernel's UDP counters of this network namespace (`Udp:` or `Udp6:`
/// lines in /proc/net/snmp, /proc/net/snmp6), by name.
fn udp_snmp(v6: bool) -> Result<Vec<(String, u64)>> {
    if v6 {
        let text = std::fs::read_to_string("/proc/thread-self/net/snmp6")
            .context("reading /proc/thread-self/net/snmp6")?;
        return Ok(text
            .lines()
            .filter_map(|l| {
                let (name, value) = l.split_once(char::is_whitespace)?;
                let name = name.strip_prefix("Udp6")?;
                Some((name.to_string(), value.trim().parse().ok()?))
            })
            .collect());
    }
    let text = std::fs::read_to_string("/proc/thread-self/net/snmp")
        .context("reading /proc/thread-self/net/snmp")?;
    let mut lines = text.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        bail!("no Udp lines in /proc/net/snmp");
    };
    Ok(names
        .split_whitespace()
        .zip(values.split_whitespace())
        .skip(1)
        .filter_map(|(n, v)| Some((n.to_string(), v.parse().ok()?)))
        .collect())
}

fn snmp_delta(before: &[(String, u64)], after: &[(String, u64)], name: &str) -> u64 {
    let get = |v: &[(String, u64)]| v.iter().find(|(n, _)| n == name).map_or(0, |(_, x)| *x);
    get(after).saturating_sub(get(before))
}

fn is_benchmark_address(ip: std::net::IpAddr) -> bool {
    match ip {
        // 198.18.0.0/15 (RFC 2544).
        std::net::IpAddr::V4(a) => a.octets()[0] == 198 && a.octets()[1] & 0xfe == 18,
        // fd00::/8.
        std::net::IpAddr::V6(a) => a.octets()[0] == 0xfd,
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !is_benchmark_address(args.dst.ip()) {
        bail!(
            "--dst {}: the benchmarks send only to 198.18.0.0/15 and fd00::/8",
            args.dst
        );
    }
    if !(args.duration > 0.0 && args.duration <= MAX_SECONDS) {
        bail!("--duration must be more than 0 and at most {MAX_SECONDS} seconds");
    }
    if let Some(cpu) = args.cpu {
        pin_to_cpu(cpu).with_context(|| format!("pinning to CPU {cpu}"))?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    ctrlc::set_handler(move || s.store(true, Ordering::Relaxed))?;
    let sockets: Vec<UdpSocket> = (0..args.flows)
        .map(|_| {
            let sock = UdpSocket::bind(SocketAddr::new(args.src, 0))
                .with_context(|| format!("binding {}", args.src))?;
            sock.connect(args.dst)
                .with_context(|| format!("connecting to {}", args.dst))?;
            // A blocked send wakes up now and then to see the clock and `stop`.
            sock.set_write_timeout(Some(Duration::from_millis(100)))?;
            Ok(sock)
        })
        .collect::<Result<_>>()?;

    // Every datagram carries the same bytes, from one buffer.
    let payload: Vec<u8> = (0..args.payload).map(|i| (i % 251) as u8).collect();
    let batch = args.batch as usize;
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr().cast_mut().cast(),
        iov_len: payload.len(),
    };
    // SAFETY: an all-zero mmsghdr is valid (null name, no control data).
    let mut msgs: Vec<libc::mmsghdr> = (0..batch).map(|_| unsafe { std::mem::zeroed() }).collect();
    for m in &mut msgs {
        m.msg_hdr.msg_iov = &raw mut iov;
        m.msg_hdr.msg_iovlen = 1;
    }

    let v6 = args.dst.is_ipv6();
    let before = udp_snmp(v6)?;
    let cpu_before = cpu_seconds();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.duration);
    let (mut sent, mut calls, mut errors) = (0u64, 0u64, 0u64);
    let mut next = 0usize;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let fd = sockets[next].as_raw_fd();
        next = (next + 1) % sockets.len();
        // SAFETY: `msgs` holds `batch` headers, each pointing at the one iovec
        // over `payload`, which outlives the call; the kernel only reads them
        // (and writes each header's msg_len).
        let n = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), batch as u32, 0) };
        calls += 1;
        if n < 0 {
            let err = std::io::Error::last_os_error();
            match err.kind() {
                std::io::ErrorKind::WouldBlock
                | std::io::ErrorKind::TimedOut
                | std::io::ErrorKind::Interrupted => continue,
                // ENOBUFS, ECONNREFUSED (an ICMP error from a closed port): the
                // batch is lost, counted; go on.
                _ => errors += 1,
            }
            continue;
        }
        sent += n as u64;
    }
    let seconds = start.elapsed().as_secs_f64();
    let cpu_s = cpu_seconds() - cpu_before;
    let after = udp_snmp(v6)?;
    let report = serde_json::json!({
        "sender": "kernel-udp-sendmmsg",
        "payload": args.payload,
        "flows": args.flows,
        "runs": sent,
        "sendmmsg_calls": calls,
        "send_errors": errors,
        "seconds": seconds,
        "cpu_s": cpu_s,
        "drops": {
            "udp_sndbuf_errors": snmp_delta(&before, &after, "SndbufErrors"),
            "udp_out_errors": snmp_delta(&before, &after, "OutErrors"),
        },
    });
    println!("{report}");
    Ok(())
}
