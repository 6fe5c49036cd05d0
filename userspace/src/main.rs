//! `xdpstack`: thin front end over the library.

use std::{
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use clap::Parser as _;
use xdpstack::{
    SteerMode,
    cli::{CaptureChoice, Cli},
    poller::PollerConfig,
    stack::{self, StackOptions},
    xsk::XskConfig,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("XDPSTACK_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(msg) = cli.validate() {
        eprintln!("xdpstack: {msg}");
        return ExitCode::from(2);
    }
    // Test hook for the crash-cleanup tests: a panic after attaching must leave
    // nothing attached (bpf_link semantics).
    let panic_after = std::env::var("XDPSTACK_TEST_PANIC_AFTER_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok());

    // A panic on any thread ends the process at once: a stack with a dead poller
    // must not limp on. The kernel then closes our fds, which detaches the program.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::abort();
    }));

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        // SIGINT and SIGTERM end the run cleanly; a second one exits at once.
        let result = ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::Relaxed) {
                std::process::exit(130);
            }
        });
        if let Err(e) = result {
            eprintln!("xdpstack: installing the signal handler failed: {e}");
            return ExitCode::FAILURE;
        }
    }
    if let Some(ms) = panic_after {
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(ms));
            panic!("XDPSTACK_TEST_PANIC_AFTER_MS: deliberate panic");
        });
    }

    let opts = StackOptions {
        iface: cli.iface.clone(),
        queues: cli.queues.clone(),
        mode: match cli.capture {
            CaptureChoice::Udp => SteerMode::Udp,
            CaptureChoice::All => SteerMode::All,
        },
        ports: cli.port_list(),
        xdp_mode: cli.xdp_mode,
        xsk: XskConfig {
            frame_count: cli.frames,
            frame_size: cli.frame_size,
            zero_copy: cli.zero_copy,
            ..XskConfig::default()
        },
        poller: PollerConfig {
            budget: cli.budget,
            busy_poll: cli.busy_poll,
            ..PollerConfig::default()
        },
        pin_cpus: cli.pin_cpus,
        duration: cli.duration,
        count: cli.count,
        stats_interval: cli.stats,
    };
    match stack::run(&opts, stop, &|_queue| Vec::new()) {
        Ok(summary) => {
            if cli.json {
                match serde_json::to_string(&summary) {
                    Ok(line) => println!("{line}"),
                    Err(e) => {
                        eprintln!("xdpstack: encoding the summary failed: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{}", summary.render());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xdpstack: {e}");
            ExitCode::FAILURE
        }
    }
}
