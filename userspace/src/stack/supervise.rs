//! The supervisor: the calling thread of [`super::run`] watches the pollers,
//! stops the run on `-c`, `--duration` or a lost interface, and takes the live
//! statistics (an `ss -m` for AF_XDP) when asked.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use super::{
    L2_OVERHEAD, StackOptions,
    summary::{Interval, QueueInterval, consumer_summaries},
};
use crate::{
    frame::PoolProbe,
    poller::{LiveCounters, QueueStats},
    ring::RingOccupancy,
    sys::{ifinfo, loader::AttachedMode, xsk::read_statistics},
    wire::Reject,
};

/// What the supervisor reads of a running queue.
pub(super) struct QueueProbe {
    pub(super) queue: u32,
    pub(super) stats: Arc<QueueStats>,
    pub(super) pool: PoolProbe,
    pub(super) fd: std::os::fd::RawFd,
    pub(super) consumers: Vec<String>,
    pub(super) live: Vec<Arc<dyn LiveCounters>>,
}

/// How long the statistics wait for the pollers to sample their rings before
/// reporting an interval: a busy poller answers within a round (once the
/// scheduler runs it: on a loaded machine that can take several milliseconds),
/// one sleeping on a busy queue within its 1 ms poll(2); an idle one (100 ms) is
/// left with its last sample, which an idle queue does not change.
const RING_SAMPLE_WAIT: Duration = Duration::from_millis(20);

/// Read every queue's counters: rates since the last interval (`last` keeps
/// packets and bytes per queue), drops by cause, and where the frames are (the
/// kernel's rings, free, held by each consumer) - an `ss -m` for AF_XDP.
fn interval(
    mode: &Mode,
    probes: &[QueueProbe],
    xdp: BTreeMap<&'static str, u64>,
    last: &mut [(u64, u64)],
    secs: f64,
    t: f64,
) -> Interval {
    let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let secs = secs.max(1e-9);
    let queues: Vec<QueueInterval> = probes
        .iter()
        .zip(last.iter_mut())
        .map(|(probe, last)| {
            let s = &probe.stats;
            let (packets, bytes) = (get(&s.rx_packets), get(&s.rx_bytes));
            let pps = (packets - last.0) as f64 / secs;
            let mbps = (bytes - last.1) as f64 * 8.0 / secs / 1e6;
            *last = (packets, bytes);
            QueueInterval {
                queue: probe.queue,
                pps,
                mbps,
                packets,
                bytes,
                multi_buffer: get(&s.rx_multi_buffer),
                malformed: get(&s.rx_malformed),
                xsk: read_statistics(probe.fd).unwrap_or_default(),
                frames_in_kernel: get(&s.in_kernel),
                rings: RingOccupancy {
                    rx_ring: get(&s.rx_ring) as u32,
                    fill_ring: get(&s.fill_ring) as u32,
                },
                frames_free: get(&s.free),
                consumers: consumer_summaries(&probe.consumers, s, |id| probe.pool.held_by(id)),
                tx: s.tx.summary(),
                counters: probe.live.iter().flat_map(|l| l.counters()).collect(),
            }
        })
        .collect();
    Interval {
        kind: "interval",
        t,
        iface: mode.iface.clone(),
        xdp_mode: mode.xdp_mode.to_string(),
        zero_copy: mode.zero_copy,
        pps: queues.iter().map(|q| q.pps).sum(),
        mbps: queues.iter().map(|q| q.mbps).sum(),
        queues,
        xdp,
        capture: None,
    }
}

/// How the stack is attached, for the live statistics.
pub(super) struct Mode {
    pub(super) iface: String,
    pub(super) xdp_mode: AttachedMode,
    pub(super) zero_copy: bool,
    /// The largest MTU whose frames the sockets take: one UMEM frame's, or
    /// any with multi-buffer sockets.
    pub(super) max_mtu: u32,
    /// The interface's veth peer, when it is a veth.
    pub(super) veth: Option<super::doctor::VethPeer>,
}

/// Ask every poller for a sample of its rings and wait (at most
/// [`RING_SAMPLE_WAIT`]) until they have answered, so that the figures printed
/// are of the same moment as the other counters.
fn sample_rings(probes: &[QueueProbe]) {
    for p in probes {
        p.stats.sample_rings.store(true, Ordering::Relaxed);
    }
    let deadline = Instant::now() + RING_SAMPLE_WAIT;
    while Instant::now() < deadline
        && probes
            .iter()
            .any(|p| p.stats.sample_rings.load(Ordering::Acquire))
    {
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// The interface went away under the stack: how, and when.
pub(super) struct LinkLost {
    pub(super) what: &'static str,
    pub(super) after_s: f64,
}

/// Watch the pollers from the calling thread: enforce `-c` and `--duration`,
/// hand an [`Interval`] to `on_interval` every `--stats` period, until `stop` is
/// set; stop, and say what happened, when the interface goes down or disappears.
pub(super) fn supervise(
    opts: &StackOptions,
    mode: &Mode,
    stop: &AtomicBool,
    probes: &[QueueProbe],
    xdp: &dyn Fn() -> BTreeMap<&'static str, u64>,
    on_interval: &mut dyn FnMut(Interval),
    started: Instant,
) -> Option<LinkLost> {
    let deadline = opts.duration.map(|d| started + d);
    let mut next_stats = opts.stats_interval.map(|i| started + i);
    let mut last = vec![(0u64, 0u64); probes.len()];
    let mut last_time = started;
    let mut mtu_warned = false;
    let mut checksum_explained = mode.veth.is_none();
    let mut next_link_check = started;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(5));
        let now = Instant::now();
        if now >= next_link_check {
            next_link_check = now + Duration::from_millis(100);
            if !mtu_warned {
                mtu_warned = warn_raised_mtu(&opts.iface, mode.max_mtu);
            }
            if !checksum_explained && let Some(peer) = &mode.veth {
                checksum_explained = explain_checksum_rejects(&opts.iface, peer, probes);
            }
            if let Some(what) = link_lost(&opts.iface) {
                stop.store(true, Ordering::Relaxed);
                return Some(LinkLost {
                    what,
                    after_s: now.duration_since(started).as_secs_f64(),
                });
            }
        }
        let packets: u64 = probes
            .iter()
            .map(|p| p.stats.rx_packets.load(Ordering::Relaxed))
            .sum();
        if opts.count.is_some_and(|c| packets >= c) || deadline.is_some_and(|d| now >= d) {
            stop.store(true, Ordering::Relaxed);
        }
        if let (Some(at), Some(every)) = (next_stats, opts.stats_interval)
            && now >= at
        {
            sample_rings(probes);
            let now = Instant::now();
            let secs = now.duration_since(last_time).as_secs_f64();
            let t = now.duration_since(started).as_secs_f64();
            on_interval(interval(mode, probes, xdp(), &mut last, secs, t));
            last_time = now;
            next_stats = Some(at + every);
        }
    }
    None
}

/// An MTU raised under the running stack: frames that no longer fit a UMEM frame
/// are dropped by the kernel (rx_dropped). Say why, once; true once said.
fn warn_raised_mtu(iface: &str, max_mtu: u32) -> bool {
    match ifinfo::mtu(iface) {
        Ok(mtu) if mtu > max_mtu => {
            tracing::warn!(
                "the MTU of {iface} was raised to {mtu} while running: frames longer than \
                 {} bytes no longer fit a UMEM frame and are dropped by the kernel \
                 (counted in rx_dropped); restart to take them in several frames \
                 (--multi-buffer auto does when the MTU needs it; --multi-buffer on \
                 always does)",
                max_mtu + L2_OVERHEAD
            );
            true
        }
        _ => false,
    }
}

/// A veth whose every rejected datagram failed its UDP checksum: its peer
/// almost surely keeps TX checksum offload on, which a user cannot see from
/// the counters. Say what is going on and the fix, once; true once said.
fn explain_checksum_rejects(
    iface: &str,
    peer: &super::doctor::VethPeer,
    probes: &[QueueProbe],
) -> bool {
    let (mut bad, mut rejected) = (0u64, 0u64);
    for probe in probes {
        for live in &probe.live {
            for (name, n) in live.counters() {
                if name == Reject::BadUdpChecksum.name() {
                    bad += n;
                }
                if Reject::ALL.iter().any(|r| r.name() == name) {
                    rejected += n;
                }
            }
        }
    }
    if bad == 0 || bad != rejected {
        return false;
    }
    tracing::warn!(
        "{bad} UDP datagram(s) rejected as bad_udp_checksum, and nothing else rejected: {}",
        super::doctor::veth_checksum_explanation(iface, peer)
    );
    true
}

/// "went down" or "disappeared" when the interface did.
fn link_lost(iface: &str) -> Option<&'static str> {
    match ifinfo::is_up(iface) {
        Ok(true) => None,
        Ok(false) => Some("went down"),
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Some("disappeared"),
        Err(_) => None,
    }
}
