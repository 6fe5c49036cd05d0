//! `xdpstack-socket-echo`: the socket API's echo for `cargo xtask bench`.
//!
//! What a user of the library's socket API writes: bind a port, take datagrams
//! in batches (`recv_batch_timeout`), answer each with `send_to` its sender,
//! which goes through the kernel's routing and neighbour tables like any
//! destination (not the reply fast path). It runs until SIGINT/SIGTERM or
//! `--duration`, then prints the stack's report as one JSON object (the shape
//! of `xdpstack --json`), with the echo's own counters under `echo`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Result;
use clap::Parser;
use xdpstack::stack::{StackOptions, net::Network};

/// An echo server on the socket API, for benchmarks.
#[derive(Debug, Parser)]
struct Args {
    /// Interface.
    #[arg(short = 'i')]
    iface: String,
    /// UDP port.
    #[arg(long, default_value_t = 9000)]
    port: u16,
    /// Stop after this many seconds at most.
    #[arg(long, value_name = "S")]
    duration: Option<f64>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    ctrlc::set_handler(move || s.store(true, Ordering::Relaxed))?;
    let opts = StackOptions {
        iface: args.iface,
        ..StackOptions::default()
    };
    let mut net = Network::open(opts)?;
    let socket = net.bind(args.port)?;
    let running = net.start()?;
    let deadline = args
        .duration
        .map(|d| Instant::now() + Duration::from_secs_f64(d));
    let (mut echoed, mut refused, mut waits) = (0u64, 0u64, 0u64);
    let mut batch = Vec::with_capacity(64);
    while !stop.load(Ordering::Relaxed) && deadline.is_none_or(|d| Instant::now() < d) {
        socket.recv_batch_timeout(&mut batch, 64, Duration::from_millis(100));
        for d in batch.drain(..) {
            // Backpressure: wait for the poller to make room (bounded), as an
            // application that must not lose replies would.
            let mut tries = 0;
            loop {
                match socket.send_to(d.payload(), d.src()) {
                    Ok(()) => {
                        echoed += 1;
                        break;
                    }
                    Err(e) if e.is_backpressure() && tries < 1000 => {
                        tries += 1;
                        waits += 1;
                        std::thread::yield_now();
                    }
                    // Counted by cause in the report.
                    Err(_) => {
                        refused += 1;
                        break;
                    }
                }
            }
        }
    }
    let report = running.stop()?;
    let mut value = serde_json::to_value(&report)?;
    value["echo"] = serde_json::json!({
        "echoed": echoed,
        "refused": refused,
        "backpressure_waits": waits,
    });
    println!("{value}");
    Ok(())
}
