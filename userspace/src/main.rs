//! `xdpstack`: thin front end over the library.

use std::{
    io::IsTerminal as _,
    process::ExitCode,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use clap::{CommandFactory as _, Parser as _};
use xdpstack::{
    SteerMode,
    capture::Capture,
    cli::{App, CaptureChoice, Cli, Command},
    pcap::{CaptureConfig, Format, Output, QueueStats},
    poller::PollerConfig,
    stack::{self, ConsumerSpec, QueueContext, StackOptions},
    tx::Transmitter,
    udp::{Echo, PortCounts, Sink, UdpConsumer, UdpStats, UdpSummary},
    xsk::XskConfig,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Completions { shell }) = cli.command {
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "xdpstack",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("XDPSTACK_LOG")
                .unwrap_or_else(|_| cli.log_filter().into()),
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
        iface: cli.iface().to_string(),
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
        // Live statistics every second by default when a person is watching.
        stats_interval: cli.stats.or_else(|| {
            (!cli.json && std::io::stderr().is_terminal()).then(|| Duration::from_secs(1))
        }),
        stats_json: cli.json,
        // With `-w -` the capture owns standard output.
        stats_to_stdout: cli.write.as_deref() != Some(std::path::Path::new("-")),
    };
    // Everything that can fail on bad input fails here, before the program is
    // attached: the queues, and the capture file.
    let queues = match stack::resolve_queues(&opts) {
        Ok(q) => q,
        Err(e) => {
            eprintln!("xdpstack: {e}");
            return ExitCode::FAILURE;
        }
    };
    let to_stdout = cli.write.as_deref() == Some(std::path::Path::new("-"));
    let capture = match &cli.write {
        None => None,
        Some(path) => {
            let mut config = CaptureConfig::new(Output::from_arg(path));
            config.format = if cli.pcapng {
                Format::PcapNg
            } else {
                Format::Pcap
            };
            config.snaplen = cli.snaplen;
            config.packet_buffered = cli.packet_buffered;
            config.file_size_mb = cli.file_size;
            config.file_count = cli.file_count;
            match Capture::open(&config, cli.iface(), &queues, cli.count) {
                Ok(c) => Some(c),
                Err(e) => {
                    eprintln!("xdpstack: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    // The UDP consumer's ports: the steered ones, or every port with
    // `--capture all` and no `--port`.
    let ports = if opts.ports.is_empty() {
        (0..=u16::MAX).collect()
    } else {
        opts.ports.clone()
    };
    let udp_stats: Mutex<Vec<Arc<UdpStats>>> = Mutex::new(Vec::new());
    let port_counts = PortCounts::default();
    let consumers = |ctx: &mut QueueContext<'_>| -> Vec<ConsumerSpec> {
        let mut specs = Vec::new();
        let udp = match cli.app {
            App::None => None,
            App::Sink => Some(
                // Receive only: no transmit code runs on the queue.
                UdpConsumer::new(Transmitter::disconnected())
                    .route(ports.iter().copied(), Sink::new(port_counts.clone())),
            ),
            App::Echo => {
                Some(UdpConsumer::new(ctx.transmitter()).route(ports.iter().copied(), Echo))
            }
        };
        if let Some(udp) = udp {
            ctx.show_live(udp.stats());
            udp_stats
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(udp.stats());
            // Inline: parse and answer on the poller's thread, run to completion.
            specs.push(ConsumerSpec::Inline {
                name: "udp".into(),
                consumer: Box::new(udp),
            });
        }
        specs.extend(capture.iter().map(|c| ConsumerSpec::Threaded {
            name: "pcap".into(),
            consumer: Box::new(c.consumer()),
            // The stack bounds it to half the queue's frames.
            capacity: cli.frames as usize,
            overflow: cli.pcap_overflow,
        }));
        specs
    };
    let result = stack::run(&opts, stop, &consumers);
    let summary = match result {
        Ok(summary) => summary,
        Err(e) => {
            eprintln!("xdpstack: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut udp = UdpSummary::default();
    for stats in udp_stats.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        udp += &stats.summary();
    }
    udp.ports = port_counts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let capture = capture.map(|c| {
        let stats: Vec<QueueStats> = summary
            .queues
            .iter()
            .map(|q| QueueStats {
                queue: q.queue,
                received: q.packets,
                kernel_drops: q.xsk.rx_dropped + q.xsk.rx_ring_full,
                consumer_drops: q.consumers.iter().map(|c| c.dropped).sum(),
            })
            .collect();
        c.close(&stats)
    });

    // With `-w -` the capture owns standard output: the report goes to stderr.
    let mut report = String::new();
    if cli.json {
        let mut value = match serde_json::to_value(&summary) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("xdpstack: encoding the summary failed: {e}");
                return ExitCode::FAILURE;
            }
        };
        value["type"] = serde_json::json!("summary");
        value["app"] = serde_json::json!(cli.app);
        value["udp"] = serde_json::json!(udp);
        if let Some(c) = &capture {
            value["capture"] = serde_json::json!({
                "path": c.path,
                "stats": c.stats,
                "error": c.error.as_ref().map(|e| e.to_string()),
            });
        }
        report = format!("{value}\n");
    } else {
        report.push_str(&summary.render());
        if cli.app != App::None {
            report.push_str(&render_udp(&udp));
        }
        if let Some(c) = &capture {
            let where_ = c.path.as_ref().map_or_else(
                || "standard output".to_string(),
                |p| p.display().to_string(),
            );
            report.push_str(&format!(
                "  capture: {} frames, {} bytes written to {}; {} not written\n",
                c.stats.records_written, c.stats.bytes_written, where_, c.stats.records_dropped,
            ));
        }
    }
    if to_stdout {
        eprint!("{report}");
    } else {
        print!("{report}");
    }
    if let Some(err) = capture.as_ref().and_then(|c| c.error.as_ref()) {
        eprintln!("xdpstack: {err}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// The UDP consumer's lines of the report.
fn render_udp(udp: &UdpSummary) -> String {
    use std::fmt::Write as _;
    let mut s = format!(
        "  udp: {} datagrams, {} payload bytes; {} to no handler; rejected {}",
        udp.datagrams,
        udp.payload_bytes,
        udp.unmatched,
        udp.rejected.total()
    );
    for (name, n) in udp.rejected.iter().filter(|(_, n)| *n > 0) {
        let _ = write!(s, ", {name} {n}");
    }
    s.push('\n');
    for (port, count) in &udp.ports {
        let _ = writeln!(
            s,
            "    port {port}: {} datagrams, {} bytes",
            count.datagrams, count.bytes
        );
    }
    s
}
