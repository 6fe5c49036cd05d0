//! `xdpstack-gen`: send IPv4/UDP frames out of an interface as fast as the kernel
//! goes, through an XDP program run with live frames (see `xdpstack_bench::trafficgen`).
//!
//! ```text
//! ip netns exec gb1-peer xdpstack-gen -i gb1p --dst-mac 02:.. --dst 198.18.0.1:9000 \
//!     --payload 18 --flows 16 --duration 5 --cpu 1 --json
//! ```

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use clap::{Parser, builder::TypedValueParser as _};
use xdpstack_bench::trafficgen::{
    DEFAULT_BATCH, GenConfig, GenError, GenReport, MAX_PAYLOAD, MIN_PAYLOAD, MacAddr, run_until,
};

/// Send IPv4/UDP frames out of IFACE with an XDP program run through
/// BPF_PROG_TEST_RUN in live-frames mode, and report what the interface sent.
///
/// On a veth the receiving end needs NAPI: an XDP program attached there, or GRO
/// on (`ethtool -K PEER gro on`). Frames land on RX queue (sending CPU % queues),
/// and the receiving end's softirq work runs on the sending CPU unless its NAPI is
/// threaded (`echo 1 > /sys/class/net/PEER/threaded`).
#[derive(Debug, Parser)]
#[command(name = "xdpstack-gen", version)]
struct Cli {
    /// Interface to send out of.
    #[arg(short, long, value_name = "IFACE")]
    interface: String,
    /// Destination MAC: the receiving interface's address.
    #[arg(long, value_name = "MAC", value_parser = parse_mac)]
    dst_mac: MacAddr,
    /// Destination IPv4 address and UDP port.
    #[arg(long, value_name = "IP:PORT")]
    dst: SocketAddrV4,
    /// Source IPv4 address [default: the interface's first IPv4 address].
    #[arg(long, value_name = "IP")]
    src: Option<Ipv4Addr>,
    /// Source MAC [default: the interface's own].
    #[arg(long, value_name = "MAC", value_parser = parse_mac)]
    src_mac: Option<MacAddr>,
    /// First UDP source port; flow i uses PORT + i.
    #[arg(long, value_name = "PORT", default_value_t = 10_000)]
    src_port: u16,
    /// UDP payload bytes (18 makes 64-byte frames on the wire, 1472 makes 1518).
    #[arg(long, value_name = "N", default_value_t = MIN_PAYLOAD,
          value_parser = clap::value_parser!(u16).range(MIN_PAYLOAD as i64..=MAX_PAYLOAD as i64)
              .map(usize::from))]
    payload: usize,
    /// Number of flows (UDP source ports), used in turn.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..))]
    flows: u16,
    /// Stop after COUNT frames.
    #[arg(short = 'c', long, value_name = "COUNT")]
    count: Option<u64>,
    /// Stop after S seconds (decimals allowed) [default: 10 when no count is given].
    #[arg(long, value_name = "S", value_parser = parse_seconds)]
    duration: Option<Duration>,
    /// Pin a sending thread to each CPU listed (e.g. `1` or `0,1`); each CPU feeds
    /// its own RX queue of a veth peer.
    #[arg(long, value_name = "N[,N...]", value_delimiter = ',')]
    cpu: Vec<usize>,
    /// Frames per live-frames batch (the kernel flushes after each), 1..=256.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BATCH,
          value_parser = clap::value_parser!(u32).range(1..=256))]
    batch: u32,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

fn parse_mac(s: &str) -> Result<MacAddr, String> {
    s.parse().map_err(|e: GenError| e.to_string())
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 86_400.0 => Ok(Duration::from_secs_f64(v)),
        _ => Err(format!("{s:?} is not a number of seconds in (0, 86400]")),
    }
}

impl Cli {
    fn config(&self) -> GenConfig {
        let mut c = GenConfig::new(
            &self.interface,
            self.dst_mac,
            *self.dst.ip(),
            self.dst.port(),
        );
        c.src_mac = self.src_mac;
        c.src_ip = self.src;
        c.src_port = self.src_port;
        c.payload = self.payload;
        c.flows = self.flows;
        c.count = self.count;
        c.duration = match (self.count, self.duration) {
            (None, None) => Some(Duration::from_secs(10)),
            (_, d) => d,
        };
        c.cpus = self.cpu.clone();
        c.batch = self.batch;
        c
    }
}

fn print_human(r: &GenReport) {
    let cpus = if r.cpus.is_empty() {
        "not pinned".to_string()
    } else {
        let list: Vec<String> = r.cpus.iter().map(ToString::to_string).collect();
        format!("CPU {}", list.join(","))
    };
    println!(
        "xdpstack-gen: {} -> {} ({}), {}-byte frames ({}-byte payload), {} flow(s), {}{}",
        r.iface,
        r.dst,
        r.dst_mac,
        r.frame_len,
        r.payload,
        r.flows,
        cpus,
        if r.interrupted { ", interrupted" } else { "" }
    );
    println!(
        "  offered      {:>14} frames in {:.3} s  ({:.3} Mpps)",
        r.runs,
        r.seconds,
        r.offered_pps / 1e6
    );
    println!(
        "  transmitted  {:>14} frames, {} bytes  ({:.3} Mpps, {:.3} Gbit/s)",
        r.packets,
        r.bytes,
        r.pps / 1e6,
        r.gbps
    );
    println!(
        "  dropped      {:>14} by {} (a veth: the peer's ring was full)",
        r.dropped, r.iface
    );
    if r.dropped_in_program != 0 {
        println!(
            "  dropped      {:>14} by the XDP program",
            r.dropped_in_program
        );
    }
    println!(
        "  unaccounted  {:>14} (> 0: failed redirects; < 0: the kernel's own frames)",
        r.unaccounted
    );
    println!("  CPU time     {:>14.3} s", r.cpu_seconds);
    if r.unaccounted > i64::try_from(r.runs / 100).unwrap_or(i64::MAX) {
        eprintln!(
            "xdpstack-gen: warning: {} frames left no trace in the counters of {}: the \
             receiving end stopped taking XDP frames during the run (receiver exited?)",
            r.unaccounted, r.iface
        );
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = cli.config();
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        // SIGINT and SIGTERM end the run with a report; a second one exits at once.
        if let Err(e) = ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::Relaxed) {
                std::process::exit(130);
            }
        }) {
            eprintln!("xdpstack-gen: installing the signal handler failed: {e}");
            return ExitCode::FAILURE;
        }
    }
    match run_until(&config, &stop) {
        Ok(report) => {
            if cli.json {
                match serde_json::to_string(&report) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("xdpstack-gen: writing the report: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print_human(&report);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xdpstack-gen: {e}");
            ExitCode::FAILURE
        }
    }
}
