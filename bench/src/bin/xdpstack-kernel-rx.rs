//! `xdpstack-kernel-rx`: the kernel-socket baseline of `cargo xtask bench`.
//!
//! What a user would write instead of xdpstack: one UDP socket, drained with
//! recvmmsg(2) in batches of 64 into preallocated buffers, payloads counted and
//! dropped; with `--echo`, each batch sent back to its senders with one
//! sendmmsg(2) (the kernel's echo, against the socket API's). It runs until SIGINT/SIGTERM or `--duration`, then prints one JSON
//! object: datagrams and payload bytes received, seconds, the CPU time of the
//! process, and the kernel's UDP drop counters over the run (`/proc/net/snmp` of
//! the network namespace it runs in).
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
use xdpstack::sys::process::cpu_seconds;

/// A kernel UDP receiver with recvmmsg, for benchmarks.
#[derive(Debug, Parser)]
struct Args {
    /// Address and port to bind.
    #[arg(long, value_name = "IP:PORT")]
    bind: SocketAddr,
    /// Datagrams per recvmmsg call.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1024))]
    batch: u32,
    /// Bytes per datagram buffer: at least the largest payload sent (a
    /// longer datagram is cut, and counted as `truncated`).
    #[arg(long = "buffer", default_value_t = 2048, value_parser = clap::value_parser!(u32).range(64..=65_536))]
    buffer: u32,
    /// Socket receive buffer in bytes (SO_RCVBUFFORCE).
    #[arg(long, default_value_t = 4 << 20)]
    rcvbuf: u32,
    /// Stop after this many seconds at most.
    #[arg(long, value_name = "S")]
    duration: Option<f64>,
    /// Send every datagram back to its sender (sendmmsg, one call a batch).
    #[arg(long)]
    echo: bool,
}

/// The kernel's UDP counters of this network namespace (`Udp:` in
/// /proc/net/snmp), by name.
fn udp_snmp() -> Result<Vec<(String, u64)>> {
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

fn main() -> Result<()> {
    let args = Args::parse();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    ctrlc::set_handler(move || s.store(true, Ordering::Relaxed))?;
    let sock = UdpSocket::bind(args.bind).with_context(|| format!("binding {}", args.bind))?;
    // Wake up now and then to see `stop`.
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    let fd = sock.as_raw_fd();
    let rcvbuf = i32::try_from(args.rcvbuf).unwrap_or(i32::MAX);
    // SAFETY: `rcvbuf` is a live c_int and the length matches it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const rcvbuf).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        bail!(
            "SO_RCVBUFFORCE: {} (needs CAP_NET_ADMIN)",
            std::io::Error::last_os_error()
        );
    }

    let batch = args.batch as usize;
    let mut bufs = vec![vec![0u8; args.buffer as usize]; batch];
    let mut iovecs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: an all-zero mmsghdr is valid (null name, no control data).
    let mut msgs: Vec<libc::mmsghdr> = (0..batch).map(|_| unsafe { std::mem::zeroed() }).collect();
    // SAFETY: an all-zero sockaddr_storage is valid (family AF_UNSPEC).
    let mut names: Vec<libc::sockaddr_storage> =
        (0..batch).map(|_| unsafe { std::mem::zeroed() }).collect();
    const NAME_LEN: libc::socklen_t =
        std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    for ((m, iov), name) in msgs.iter_mut().zip(iovecs.iter_mut()).zip(names.iter_mut()) {
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
        if args.echo {
            m.msg_hdr.msg_name = (name as *mut libc::sockaddr_storage).cast();
            m.msg_hdr.msg_namelen = NAME_LEN;
        }
    }
    let (mut echoed, mut echo_failed) = (0u64, 0u64);

    let before = udp_snmp()?;
    let cpu_before = cpu_seconds();
    let deadline = args
        .duration
        .map(|d| Instant::now() + Duration::from_secs_f64(d));
    let (mut datagrams, mut bytes, mut calls, mut truncated) = (0u64, 0u64, 0u64, 0u64);
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) && deadline.is_none_or(|d| Instant::now() < d) {
        // SAFETY: `msgs` holds `batch` headers, each pointing at one iovec over a
        // live `--buffer`-byte buffer; the kernel writes at most that much per
        // message.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                batch as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            match err.kind() {
                std::io::ErrorKind::WouldBlock
                | std::io::ErrorKind::TimedOut
                | std::io::ErrorKind::Interrupted => continue,
                _ => return Err(err).context("recvmmsg"),
            }
        }
        let now = Instant::now();
        first.get_or_insert(now);
        last = now;
        calls += 1;
        for m in &msgs[..n as usize] {
            datagrams += 1;
            bytes += u64::from(m.msg_len);
            if m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                truncated += 1;
            }
        }
        if args.echo {
            let n = n as usize;
            // Each reply carries what its request did, to its sender.
            for (m, iov) in msgs[..n].iter_mut().zip(iovecs.iter_mut()) {
                iov.iov_len = m.msg_len as usize;
            }
            let mut done = 0;
            while done < n {
                // SAFETY: the first `n` headers were filled by recvmmsg: names
                // and iovecs over live buffers, lengths as received.
                let sent = unsafe {
                    libc::sendmmsg(fd, msgs.as_mut_ptr().add(done), (n - done) as u32, 0)
                };
                if sent <= 0 {
                    // A full send buffer or a refused datagram: lost, counted.
                    echo_failed += (n - done) as u64;
                    break;
                }
                done += sent as usize;
                echoed += sent as u64;
            }
            for ((m, iov), b) in msgs[..n].iter_mut().zip(iovecs.iter_mut()).zip(bufs.iter()) {
                iov.iov_len = b.len();
                m.msg_hdr.msg_namelen = NAME_LEN;
            }
        }
    }
    let cpu_s = cpu_seconds() - cpu_before;
    let after = udp_snmp()?;
    let seconds = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
    let report = serde_json::json!({
        "datagrams": datagrams,
        "payload_bytes": bytes,
        "recvmmsg_calls": calls,
        "truncated": truncated,
        "echoed": echoed,
        "echo_failed": echo_failed,
        "seconds": seconds,
        "cpu_s": cpu_s,
        "drops": {
            "udp_rcvbuf_errors": snmp_delta(&before, &after, "RcvbufErrors"),
            "udp_in_errors": snmp_delta(&before, &after, "InErrors"),
            "udp_in_csum_errors": snmp_delta(&before, &after, "InCsumErrors"),
            "udp_no_ports": snmp_delta(&before, &after, "NoPorts"),
        },
    });
    println!("{report}");
    Ok(())
}
