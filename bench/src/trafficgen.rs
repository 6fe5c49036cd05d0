//! `xdpstack-gen`: the project's own UDP traffic generator, for the benchmarks.
//!
//! Like xdp-trafficgen, it never builds a packet per send. The XDP program
//! `xdpstack_gen` (crate `xdpstack-bench-ebpf`) runs through
//! `BPF_PROG_TEST_RUN` with `BPF_F_TEST_XDP_LIVE_FRAMES` on one template frame:
//! the kernel copies the template into page-pool pages, runs the program on each
//! (it stamps the flow's UDP source port) and transmits every frame it returns
//! `XDP_TX` for out of the interface, as the driver's `ndo_xdp_xmit` would for a
//! redirect. One syscall sends up to millions of frames, in batches of
//! [`GenConfig::batch`] with a flush after each.
//!
//! What was really sent is read from the interface's own counters, not assumed:
//! on a veth, a frame counts in `tx_packets` once the peer's NAPI has taken it from
//! its ring, and in `tx_dropped` when the peer's ring was full
//! (`drivers/net/veth.c`). So for a run, `runs` (frames the program handled) =
//! `packets` + `dropped` + `dropped_in_program` + frames whose redirect failed
//! before reaching the driver (counted nowhere), give or take frames the kernel
//! sends on its own over the same interface (ARP, neighbour discovery):
//! [`GenReport::unaccounted`] shows the difference.
//!
//! veth specifics that shape a benchmark (kernel 6.x):
//! - A veth accepts XDP frames only when its *peer* (the receiving end) has NAPI
//!   enabled: an XDP program attached there, or GRO on (`ethtool -K PEER gro on`).
//!   Otherwise the veth lacks the `NDO_XMIT` XDP feature, the redirect fails before
//!   the driver and the frames vanish without a counter (older kernels counted
//!   them in `tx_dropped`). The generator sends a few probe frames first and fails
//!   with [`GenError::PeerNotReady`] when none was transmitted. If the receiver
//!   detaches its XDP program mid-run, the rest vanish the same way: `unaccounted`.
//! - The receiving RX queue is `sending CPU % RX queues`, not a flow hash: one
//!   sending CPU feeds one RX queue, whatever [`GenConfig::flows`] says. Sending
//!   from several CPUs ([`GenConfig::cpus`]) spreads the load over queues.
//! - The peer's NAPI is scheduled on the sending CPU, so the receiving side's
//!   softirq work (XDP program, AF_XDP copy, or the kernel's UDP receive path)
//!   runs on the generator's core, inside its syscall, after each batch: the
//!   generator then goes only as fast as that work, and the peer's ring never
//!   overflows. With threaded NAPI on the receiving veth
//!   (`echo 1 > /sys/class/net/PEER/threaded`, then pin the `napi/PEER-*`
//!   kthreads to the receiver's core) that work leaves the generator's core, the
//!   generator out-runs the receiver, and the excess shows as ring-full drops

mod counters;
mod error;
mod frame;
mod limits;
mod send;

use std::{
    net::Ipv4Addr,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use counters::{SysfsCounters, TxCounters};
pub use error::GenError;
pub use frame::{FrameSpec, MacAddr, template};
pub use limits::{DEFAULT_BATCH, HEADERS_LEN, MAX_BATCH, MAX_PAYLOAD, MIN_PAYLOAD, PROBE_FRAMES};
use send::Sender;
use xdpstack::sys::{
    ifinfo::{self, if_index},
    process::{cpu_seconds, pin_to_cpu},
};

use crate::{
    loader::{TrafficGenCounters, TrafficGenProgram},
    sys::iface_addresses,
};

/// What to send, where, and for how long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenConfig {
    /// The interface to send out of (in the calling thread's network namespace).
    pub iface: String,
    /// Destination MAC: the receiving interface's address.
    pub dst_mac: MacAddr,
    /// Source MAC; `None` takes the interface's own.
    pub src_mac: Option<MacAddr>,
    /// Source IPv4 address; `None` takes the interface's first IPv4 address.
    pub src_ip: Option<Ipv4Addr>,
    /// Destination IPv4 address.
    pub dst_ip: Ipv4Addr,
    /// Destination UDP port.
    pub dst_port: u16,
    /// First UDP source port; flow `i` uses `src_port + i`.
    pub src_port: u16,
    /// UDP payload length, [`MIN_PAYLOAD`]..=[`MAX_PAYLOAD`].
    pub payload: usize,
    /// Number of flows (source ports), used in turn frame by frame on each CPU.
    pub flows: u16,
    /// Stop after this many frames (over all CPUs).
    pub count: Option<u64>,
    /// Stop after this long. At least one of `count` and `duration` is required.
    pub duration: Option<Duration>,
    /// One sending thread pinned to each of these CPUs; empty: send from the
    /// calling thread, wherever the scheduler runs it.
    pub cpus: Vec<usize>,
    /// Frames per live-frames batch (1..=[`MAX_BATCH`]); the kernel flushes the
    /// interface's transmit queue after each batch.
    pub batch: u32,
}

impl GenConfig {
    /// A configuration with the defaults: source port 10000, one flow, an 18-byte
    /// payload, batches of [`DEFAULT_BATCH`], the interface's own MAC and IPv4
    /// address, from the calling thread. Set `count` or `duration` before running.
    pub fn new(iface: &str, dst_mac: MacAddr, dst_ip: Ipv4Addr, dst_port: u16) -> Self {
        Self {
            iface: iface.to_string(),
            dst_mac,
            src_mac: None,
            src_ip: None,
            dst_ip,
            dst_port,
            src_port: 10_000,
            payload: MIN_PAYLOAD,
            flows: 1,
            count: None,
            duration: None,
            cpus: Vec::new(),
            batch: DEFAULT_BATCH,
        }
    }

    /// Check everything that does not need the interface.
    pub fn validate(&self) -> Result<(), GenError> {
        if !(MIN_PAYLOAD..=MAX_PAYLOAD).contains(&self.payload) {
            return Err(GenError::Payload(self.payload));
        }
        if self.flows == 0 || u32::from(self.src_port) + u32::from(self.flows) - 1 > 65_535 {
            return Err(GenError::Flows {
                flows: self.flows,
                src_port: self.src_port,
            });
        }
        if self.count.is_none() && self.duration.is_none() {
            return Err(GenError::Unbounded);
        }
        if !(1..=MAX_BATCH).contains(&self.batch) {
            return Err(GenError::Batch(self.batch));
        }
        for (i, cpu) in self.cpus.iter().enumerate() {
            if self.cpus[..i].contains(cpu) {
                return Err(GenError::DuplicateCpu(*cpu));
            }
        }
        Ok(())
    }
}

/// What a run sent, from the program's and the interface's counters.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct GenReport {
    /// The interface sent out of.
    pub iface: String,
    /// Source MAC used.
    pub src_mac: MacAddr,
    /// Destination MAC used.
    pub dst_mac: MacAddr,
    /// Source IPv4 address used.
    pub src_ip: Ipv4Addr,
    /// Destination `address:port`.
    pub dst: String,
    /// UDP payload bytes per frame.
    pub payload: usize,
    /// Frame length without the FCS (payload + 42).
    pub frame_len: usize,
    /// Number of flows (source ports).
    pub flows: u16,
    /// CPUs the sending threads were pinned to (empty: not pinned).
    pub cpus: Vec<usize>,
    /// Frames the XDP program ran on: what was offered to the interface.
    pub runs: u64,
    /// Frames the interface transmitted (its `tx_packets` grew by this much): on a
    /// veth, taken from the ring by the peer's NAPI.
    pub packets: u64,
    /// Bytes the interface transmitted (`tx_bytes`).
    pub bytes: u64,
    /// Frames the interface dropped (`tx_dropped`): on a veth, the peer's ring was
    /// full. The counter is the interface's, so a frame the kernel sent on its
    /// own meanwhile (a router solicitation, an MLD report) and dropped for the
    /// same reason counts here too: exact figures need a quiet interface.
    pub dropped: u64,
    /// Frames the program dropped itself (a template it could not handle; zero).
    pub dropped_in_program: u64,
    /// `runs - dropped_in_program - packets - dropped`: frames no counter saw
    /// (failed redirects) when positive; frames the kernel sent on its own over
    /// the interface meanwhile (ARP, neighbour discovery) when negative.
    pub unaccounted: i64,
    /// Seconds from the first frame to the last.
    pub seconds: f64,
    /// Transmitted frames per second.
    pub pps: f64,
    /// Transmitted bits per second / 1e9 (frame bytes, without FCS and preamble).
    pub gbps: f64,
    /// Offered frames (`runs`) per second.
    pub offered_pps: f64,
    /// CPU time of the process (user + system) during the run. On a veth this
    /// includes the receiving end's softirq work that ran in the generator's
    /// syscalls, unless the kernel accounts softirq time separately.
    pub cpu_seconds: f64,
    /// The run ended early on the caller's stop flag (Ctrl-C).
    pub interrupted: bool,
}

/// Run the generator until `config`'s count or duration is reached.
pub fn run(config: &GenConfig) -> Result<GenReport, GenError> {
    run_until(config, &AtomicBool::new(false))
}

/// [`run`], also ending early (and reporting what was sent) once `stop` is set.
pub fn run_until(config: &GenConfig, stop: &AtomicBool) -> Result<GenReport, GenError> {
    config.validate()?;
    let target = Target::resolve(config)?;
    let mut program = TrafficGenProgram::load()?;
    program.configure(xdpstack_bench_ebpf::GenConfig {
        base_port: u32::from(config.src_port),
        flows: u32::from(config.flows),
    })?;

    let cpu0 = cpu_seconds();
    let before = target.counters.read()?;
    let t0 = Instant::now();
    let probe = probe(config, &target, &program, &before)?;
    let sender = Sender {
        program: &program,
        frame: &target.frame,
        ifindex: target.ifindex,
        batch: config.batch,
        stop,
        deadline: config.duration.map(|d| t0 + d),
    };
    let remaining = config.count.map(|c| c.saturating_sub(u64::from(probe)));
    sender.send_on(&config.cpus, remaining)?;
    let seconds = t0.elapsed().as_secs_f64();
    let prog = program.counters()?;
    let after = target.counters.settle(&before, prog.runs - prog.dropped)?;
    let cpu_seconds = (cpu_seconds() - cpu0).max(0.0);
    Ok(report(
        config,
        &target.spec,
        target.frame.len(),
        prog,
        after.since(&before),
        seconds,
        cpu_seconds,
        stop.load(Ordering::Relaxed),
    ))
}

/// The interface a run sends out of, checked, and the frame it sends.
struct Target {
    ifindex: u32,
    spec: FrameSpec,
    frame: Vec<u8>,
    counters: SysfsCounters,
}

impl Target {
    /// Look the interface up in the calling thread's namespace, check the MTU,
    /// fill in the source addresses it gives and build the template.
    fn resolve(config: &GenConfig) -> Result<Self, GenError> {
        let iface = config.iface.as_str();
        let ifindex =
            if_index(iface).ok_or_else(|| GenError::UnknownInterface(iface.to_string()))?;
        let if_err = |source| GenError::Interface {
            iface: iface.to_string(),
            source,
        };
        let mtu = ifinfo::mtu(iface).map_err(if_err)?;
        if config.payload + 28 > mtu as usize {
            return Err(GenError::Mtu {
                iface: iface.to_string(),
                payload: config.payload,
                mtu,
            });
        }
        let (own_mac, own_ipv4) = iface_addresses(iface).map_err(if_err)?;
        let own_mac = own_mac.map(MacAddr);
        let spec = FrameSpec {
            dst_mac: config.dst_mac,
            src_mac: config
                .src_mac
                .or(own_mac)
                .ok_or_else(|| GenError::NoSourceMac(iface.to_string()))?,
            src_ip: config
                .src_ip
                .or(own_ipv4)
                .ok_or_else(|| GenError::NoSourceAddress(iface.to_string()))?,
            dst_ip: config.dst_ip,
            src_port: config.src_port,
            dst_port: config.dst_port,
            payload: config.payload,
        };
        let frame = template(&spec)?;
        let counters = SysfsCounters::open(iface, ifindex, own_mac)?;
        Ok(Self {
            ifindex,
            spec,
            frame,
            counters,
        })
    }
}

/// Send a few frames first, so that a receiver that cannot take them is a clear
/// error rather than a run of drops. Returns the number of probe frames sent.
fn probe(
    config: &GenConfig,
    target: &Target,
    program: &TrafficGenProgram,
    before: &TxCounters,
) -> Result<u32, GenError> {
    let probe = u32::try_from(
        config
            .count
            .unwrap_or(u64::MAX)
            .min(u64::from(PROBE_FRAMES)),
    )
    .unwrap_or(PROBE_FRAMES);
    if probe == 0 {
        return Ok(0);
    }
    let send_probe = || -> Result<(), GenError> {
        program.send_live(
            &target.frame,
            target.ifindex,
            probe,
            config.batch.min(probe),
        )?;
        Ok(())
    };
    match config.cpus.first() {
        // From the first sender's CPU: the RX queue of a veth peer is picked by
        // the sending CPU, so the probe lands where the run will.
        Some(&cpu) => std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    pin_to_cpu(cpu).map_err(|source| GenError::Pin { cpu, source })?;
                    send_probe()
                })
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })?,
        None => send_probe()?,
    }
    let runs = program.counters()?.runs;
    let seen = target.counters.settle(before, runs)?.since(before);
    // Without NAPI at the peer, a veth drops the frames: counted (ENXIO from
    // its ndo_xdp_xmit) on older kernels; uncounted on 6.x, where the redirect
    // fails earlier because the veth lacks the NDO_XMIT XDP feature.
    if seen.packets == 0 {
        return Err(GenError::PeerNotReady {
            iface: config.iface.clone(),
            runs,
            dropped: seen.dropped,
            frame_len: target.frame.len(),
        });
    }
    Ok(probe)
}

/// The report of a run: the program's counters reconciled with the interface's.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site, all plain numbers"
)]
fn report(
    config: &GenConfig,
    spec: &FrameSpec,
    frame_len: usize,
    prog: TrafficGenCounters,
    tx: TxCounters,
    seconds: f64,
    cpu_seconds: f64,
    interrupted: bool,
) -> GenReport {
    let per_second = |n: u64| {
        if seconds > 0.0 {
            n as f64 / seconds
        } else {
            0.0
        }
    };
    let accounted = i128::from(prog.dropped) + i128::from(tx.packets) + i128::from(tx.dropped);
    GenReport {
        iface: config.iface.clone(),
        src_mac: spec.src_mac,
        dst_mac: spec.dst_mac,
        src_ip: spec.src_ip,
        dst: format!("{}:{}", spec.dst_ip, spec.dst_port),
        payload: spec.payload,
        frame_len,
        flows: config.flows,
        cpus: config.cpus.clone(),
        runs: prog.runs,
        packets: tx.packets,
        bytes: tx.bytes,
        dropped: tx.dropped,
        dropped_in_program: prog.dropped,
        unaccounted: i64::try_from(i128::from(prog.runs) - accounted).unwrap_or(i64::MIN),
        seconds,
        pps: per_second(tx.packets),
        gbps: per_second(tx.bytes) * 8.0 / 1e9,
        offered_pps: per_second(prog.runs),
        cpu_seconds,
        interrupted,
    }
}

#[cfg(test)]
mod tests {
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

    fn config() -> GenConfig {
        let mut c = GenConfig::new(
            "veth0",
            "02:00:00:00:00:01".parse().unwrap(),
            Ipv4Addr::new(198, 18, 0, 1),
            9000,
        );
        c.count = Some(1000);
        c
    }

    #[test]
    fn validation_names_what_is_wrong() {
        assert!(config().validate().is_ok());
        type Mutation = fn(&mut GenConfig);
        let cases: [(Mutation, &str); 8] = [
            (|c| c.payload = 17, "payload of 17 bytes"),
            (|c| c.payload = 1473, "payload of 1473 bytes"),
            (|c| c.flows = 0, "0 flows"),
            (
                |c| {
                    c.src_port = 65_000;
                    c.flows = 537;
                },
                "537 flows from source port 65000",
            ),
            (|c| c.count = None, "needs a bound"),
            (|c| c.batch = 0, "batch of 0"),
            (|c| c.batch = 257, "batch of 257"),
            (|c| c.cpus = vec![1, 0, 1], "CPU 1 is listed twice"),
        ];
        for (mutate, message) in cases {
            let mut c = config();
            mutate(&mut c);
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(message), "{err:?} lacks {message:?}");
        }
        let mut c = config();
        c.src_port = 65_000;
        c.flows = 536;
        c.count = None;
        c.duration = Some(Duration::from_secs(1));
        assert!(c.validate().is_ok(), "ports up to 65535 inclusive");
    }

    #[test]
    fn unknown_interface_is_reported_before_anything_loads() {
        let mut c = config();
        c.iface = "xg-no-such-if".into();
        let err = run(&c).unwrap_err();
        assert!(matches!(err, GenError::UnknownInterface(_)), "{err}");
        assert_eq!(
            err.to_string(),
            "interface xg-no-such-if not found in this network namespace (see `ip link`)"
        );
    }

    #[test]
    fn report_reconciles_runs_with_the_counters() {
        let c = config();
        let s = spec(18);
        let prog = TrafficGenCounters {
            runs: 1000,
            dropped: 0,
        };
        let tx = TxCounters {
            packets: 900,
            bytes: 900 * 60,
            dropped: 98,
        };
        let r = report(&c, &s, 60, prog, tx, 2.0, 1.5, false);
        assert_eq!(r.unaccounted, 2);
        assert_eq!(r.pps, 450.0);
        assert_eq!(r.offered_pps, 500.0);
        assert!((r.gbps - 900.0 * 60.0 * 8.0 / 2.0 / 1e9).abs() < 1e-12);
        // The kernel's own frames (ARP) make it negative.
        let tx = TxCounters {
            packets: 1003,
            bytes: 0,
            dropped: 0,
        };
        assert_eq!(
            report(&c, &s, 60, prog, tx, 1.0, 0.0, false).unaccounted,
            -3
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["dst"], "198.18.0.1:9000");
        assert_eq!(json["src_mac"], "02:00:00:00:00:02");
        assert_eq!(json["runs"], 1000);
    }
}
