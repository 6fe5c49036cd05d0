//! `xdpstack-filter-cost`: what xdpstack's XDP program costs a frame with the
//! capture's pieces on, measured by the kernel with BPF_PROG_TEST_RUN (a
//! million runs a case, JITed, no NIC): the steering alone; with a capture
//! expression (`udp port 53`, 18 classic BPF instructions) that does not select
//! the frame (two tail calls and the translated filter); selecting and copying
//! it into the ring; and with per-packet receive stamps. Prints one JSON object
//! per case on stdout; `cargo xtask bench` reports them.
//!
//! Needs root (CAP_BPF). Attaches nothing.

use std::{
    os::fd::{AsFd as _, OwnedFd},
    process::ExitCode,
    time::Duration,
};

use clap::Parser;
use serde::Serialize;
use xdpstack::{
    SteerMode,
    filter::Filter,
    stack::{CaptureMode, load_filter},
    sys::loader::XdpProgram,
};

/// Measure the XDP program's cost per frame in each capture configuration.
#[derive(Debug, Parser)]
struct Cli {
    /// Runs per case.
    #[arg(long, default_value_t = 1_000_000)]
    repeat: u32,
    /// The capture expression.
    #[arg(long, default_value = "udp port 53")]
    expression: String,
    /// Rounds over the cases; each case's least time is reported.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
}

/// One case's result.
#[derive(Debug, Serialize)]
struct Case {
    case: &'static str,
    ns_per_frame: f64,
    /// Instructions of the expression's classic BPF program, where one runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    cbpf_instructions: Option<usize>,
}

/// An Ethernet/IPv4/UDP frame of 60 bytes to `dport` (198.18.0.2 -> 198.18.0.1).
fn frame(dport: u16) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 2]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&46u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[198, 18, 0, 2]);
    ip[16..20].copy_from_slice(&[198, 18, 0, 1]);
    let udp = &mut f[34..42];
    udp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    udp[2..4].copy_from_slice(&dport.to_be_bytes());
    udp[4..6].copy_from_slice(&26u16.to_be_bytes());
    f
}

/// The capture configurations measured, in order.
#[derive(Clone, Copy, Debug)]
enum Setup {
    /// Port 9000 steered, no capture.
    Plain,
    /// Copy mode through the expression's program.
    Filtered,
    /// No capture, receive stamps on.
    Stamped,
}

fn configure(p: &mut XdpProgram, setup: Setup, filter: &OwnedFd) -> anyhow::Result<()> {
    match setup {
        Setup::Plain => {
            p.configure_capture(CaptureMode::Off, None, 0)?;
            p.set_stamps(false)?;
        }
        Setup::Filtered => {
            p.set_stamps(false)?;
            p.configure_capture(CaptureMode::Copy, Some(filter.as_fd()), 0)?;
        }
        Setup::Stamped => {
            p.configure_capture(CaptureMode::Off, None, 0)?;
            p.set_stamps(true)?;
        }
    }
    Ok(())
}

fn run(cli: &Cli) -> anyhow::Result<Vec<Case>> {
    let filter = Filter::new(&cli.expression)?;
    let n = filter.instructions().len();
    let mut program = XdpProgram::load()?;
    // Port 9000 steered (no socket: it passes, counted pass_no_socket).
    program.configure(SteerMode::Udp, &[9000])?;
    let fd = load_filter(&program, &filter)?;
    let (other, selected, steered) = (frame(9100), frame(53), frame(9000));
    let cases: [(&'static str, Setup, &[u8], Option<usize>); 5] = [
        ("steering only, frame passed", Setup::Plain, &other, None),
        (
            "capture expression, frame not selected",
            Setup::Filtered,
            &other,
            Some(n),
        ),
        (
            "capture expression, frame selected and copied (once the ring is full: counted copy_ring_full)",
            Setup::Filtered,
            &selected,
            Some(n),
        ),
        ("steered frame, no stamp", Setup::Plain, &steered, None),
        (
            "steered frame, receive stamp in the metadata",
            Setup::Stamped,
            &steered,
            None,
        ),
    ];
    // The least of several interleaved rounds: the machine is shared, and a
    // round that another process interrupted only ever takes longer.
    let mut best = [f64::INFINITY; 5];
    for _ in 0..cli.rounds {
        for (i, (_, setup, frame, _)) in cases.iter().enumerate() {
            configure(&mut program, *setup, &fd)?;
            let d: Duration = program.test_run_repeat(frame, cli.repeat)?;
            best[i] = best[i].min(d.as_nanos() as f64);
        }
    }
    Ok(cases
        .iter()
        .zip(best)
        .map(|((case, _, _, n), ns)| Case {
            case,
            ns_per_frame: ns,
            cbpf_instructions: *n,
        })
        .collect())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(cases) => {
            for c in cases {
                println!("{}", serde_json::to_string(&c).unwrap_or_default());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xdpstack-filter-cost: {e:#}");
            ExitCode::FAILURE
        }
    }
}
