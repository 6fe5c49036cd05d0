//! `xdpstack-xdp-drop`: the in-kernel ceiling of `cargo xtask bench`.
//!
//! Attaches an XDP program that drops every frame (driver mode by default) to
//! `-i IFACE`, says so on stderr, and holds it until SIGINT/SIGTERM or
//! `--duration`. Then it detaches and prints one JSON object on stdout: the
//! interface, the mode, the seconds attached and the frames the program dropped
//! (its own per-CPU counter; the interface's `rx_queue_N_xdp_drops` from
//! `ethtool -S` should say the same). The attachment is a bpf_link, so the
//! kernel detaches it even if this process is killed with SIGKILL.
//!
//! ```text
//! ip netns exec xsbench-stack xdpstack-xdp-drop -i xsbenchs
//! ```

use std::{
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use aya::programs::XdpMode;
use clap::{Parser, ValueEnum};
use xdpstack_bench::ceiling::DropCeiling;

/// Drop every frame arriving on an interface in XDP, and count them.
#[derive(Debug, Parser)]
struct Cli {
    /// The interface to attach to.
    #[arg(short = 'i', long = "interface", value_name = "IFACE")]
    iface: String,
    /// XDP attach mode.
    #[arg(long, value_enum, default_value_t = Mode::Drv)]
    mode: Mode,
    /// Detach after this many seconds at most.
    #[arg(long, value_name = "S")]
    duration: Option<f64>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    /// Native (driver) mode.
    Drv,
    /// Generic (SKB) mode.
    Skb,
}

fn run(cli: &Cli, stop: &AtomicBool) -> anyhow::Result<serde_json::Value> {
    let (mode, mode_name) = match cli.mode {
        Mode::Drv => (XdpMode::Driver, "drv"),
        Mode::Skb => (XdpMode::Skb, "skb"),
    };
    let mut ceiling = DropCeiling::attach(&cli.iface, mode)?;
    eprintln!(
        "xdpstack-xdp-drop: attached to {} in {mode_name} mode; SIGINT or SIGTERM detaches",
        ceiling.iface()
    );
    let start = Instant::now();
    let limit = cli.duration.map(Duration::from_secs_f64);
    while !stop.load(Ordering::Relaxed) && limit.is_none_or(|l| start.elapsed() < l) {
        std::thread::sleep(Duration::from_millis(20));
    }
    ceiling.detach();
    let seconds = start.elapsed().as_secs_f64();
    let per_cpu = ceiling.dropped_per_cpu()?;
    Ok(serde_json::json!({
        "iface": cli.iface,
        "mode": mode_name,
        "seconds": seconds,
        "dropped": per_cpu.iter().sum::<u64>(),
        "dropped_per_cpu": per_cpu,
    }))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        // SIGINT and SIGTERM detach and report; a second one exits at once (the
        // kernel detaches the bpf_link when the process goes).
        if let Err(e) = ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::Relaxed) {
                std::process::exit(130);
            }
        }) {
            eprintln!("xdpstack-xdp-drop: installing the signal handler failed: {e}");
            return ExitCode::FAILURE;
        }
    }
    match run(&cli, &stop) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xdpstack-xdp-drop: {e:#}");
            ExitCode::FAILURE
        }
    }
}
