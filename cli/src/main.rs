//! `xdpstack`: the command-line front end over the library. It parses the
//! command line, installs logging and signal handling, and renders what the
//! library reports; the work is the library's (`xdpstack::stack::service`).

use std::{
    io::{IsTerminal as _, Write as _},
    path::Path,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use clap::{CommandFactory as _, Parser as _};
use xdpstack::{
    SteerMode,
    capture::{CaptureConfig, Output, Selects},
    filter::Filter,
    poller::PollerConfig,
    stack::{
        CaptureMode, KernelCapture, StackOptions,
        service::{self, CaptureReport, ServiceOptions},
    },
    sys::xsk::XskConfig,
};

mod args;
mod report;

/// `xdpstack: MESSAGE` on standard error, as eprintln! would write it, but a
/// stream that cannot be written (its reader gone) is not a panic: the run
/// ends as it would have, with its exit status.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr(), "xdpstack: {}", format_args!($($arg)*));
    }};
}

use args::{App, CaptureChoice, Cli, Command, DirectionArg};

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
        // A log line that cannot be written (standard error is a pipe whose
        // reader left: `-vv 2>&1 | head -3`) is dropped. Otherwise the
        // subscriber reports the failure with eprintln!, which panics on the
        // same closed stream, and the panic hook aborts the run.
        .log_internal_errors(false)
        .init();
    if let Err(msg) = cli.validate() {
        say!("{msg}");
        return ExitCode::from(2);
    }
    // The expression is compiled before anything is attached: a bad one gets
    // libpcap's message and status 2, as with tcpdump.
    let filter = match compile_filter(&cli) {
        Ok(f) => f,
        Err(msg) => {
            say!("{msg}");
            return ExitCode::from(2);
        }
    };
    if cli.dump {
        if let Some(f) = &filter {
            // A closed standard output (`-d ... | head -1`) is not an error.
            let _ = std::io::stdout().write_all(f.dump().as_bytes());
        }
        return ExitCode::SUCCESS;
    }
    let stop = match install_handlers() {
        Ok(stop) => stop,
        Err(msg) => {
            say!("{msg}");
            return ExitCode::FAILURE;
        }
    };
    let opts = stack_options(&cli, filter.as_ref());
    let service = service_options(&cli, filter.as_ref());
    // With `-w -` the capture owns standard output: JSON and the report go to
    // standard error.
    let to_stdout = cli.write.as_deref() == Some(Path::new("-"));
    let mut live = report::LiveOutput::new(cli.json, !to_stdout);
    let report = match service::serve(&opts, &service, stop, &mut |iv| live.show(&iv)) {
        Ok(report) => report,
        Err(e) => {
            say!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let text = if cli.json {
        match serde_json::to_string(&report) {
            Ok(line) => format!("{line}\n"),
            Err(e) => {
                say!("encoding the summary failed: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        report::render_report(&report, cli.app != App::None)
    };
    if to_stdout {
        let _ = std::io::stderr().write_all(text.as_bytes());
    } else {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
    if let Some(err) = report.capture.as_ref().and_then(|c| c.error.as_ref()) {
        say!("{err}");
    }
    ExitCode::from(exit_status(report.capture.as_ref()))
}

/// The exit status of a run that got as far as its report: 1 after a capture
/// write error, else 0. A capture that ended the run itself is no error: its
/// reader went away (`-w - | head`: tcpdump exits 0 on SIGPIPE), or `-G` with
/// `-W` wrote its files (tcpdump: "exiting with status 0").
fn exit_status(capture: Option<&CaptureReport>) -> u8 {
    match capture {
        Some(c) if c.error.is_some() => 1,
        _ => 0,
    }
}

/// The panic policy, the stop flag set by SIGINT/SIGTERM, and the crash tests'
/// hook.
fn install_handlers() -> Result<Arc<AtomicBool>, String> {
    // A panic on any thread ends the process at once: a stack with a dead poller
    // must not limp on. The kernel then closes our fds, which detaches the program.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::abort();
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    // SIGINT and SIGTERM end the run cleanly; a second one exits at once.
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::Relaxed) {
            std::process::exit(130);
        }
    })
    .map_err(|e| format!("installing the signal handler failed: {e}"))?;
    // Test hook for the crash-cleanup tests: a panic after attaching must leave
    // nothing attached (bpf_link semantics).
    if let Some(ms) = std::env::var("XDPSTACK_TEST_PANIC_AFTER_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(ms));
            panic!("XDPSTACK_TEST_PANIC_AFTER_MS: deliberate panic");
        });
    }
    Ok(stop)
}

/// The expression, compiled by libpcap; `None` without one.
fn compile_filter(cli: &Cli) -> Result<Option<Arc<Filter>>, String> {
    let expression = cli.expression();
    if expression.trim().is_empty() {
        return Ok(None);
    }
    Filter::new(&expression)
        .map(|f| Some(Arc::new(f)))
        .map_err(|e| e.to_string())
}

/// What the XDP program captures of the frames no app claims: those the
/// expression selects, or all of them with `--capture all` (copied and passed
/// on, or stolen with `--steal`). `--capture all --steal` without an expression
/// is the steering mode itself ([`SteerMode::All`]), the fastest path.
fn kernel_capture(cli: &Cli, filter: Option<&Arc<Filter>>) -> Option<KernelCapture> {
    if cli.write.is_none() || cli.direction == DirectionArg::Out {
        return None;
    }
    let mode = if cli.steal {
        CaptureMode::Steal
    } else {
        CaptureMode::Copy
    };
    match (filter, cli.capture) {
        (Some(f), _) => Some(KernelCapture {
            mode,
            filter: Some(f.clone()),
            snaplen: cli.snaplen,
        }),
        (None, CaptureChoice::All) if !cli.steal => Some(KernelCapture {
            mode,
            filter: None,
            snaplen: cli.snaplen,
        }),
        _ => None,
    }
}

/// The stack's options from the command line.
fn stack_options(cli: &Cli, filter: Option<&Arc<Filter>>) -> StackOptions {
    StackOptions {
        iface: cli.iface().to_string(),
        queues: cli.queues.clone(),
        mode: match cli.capture {
            CaptureChoice::All if cli.steal && filter.is_none() => SteerMode::All,
            _ => SteerMode::Udp,
        },
        kernel_capture: kernel_capture(cli, filter),
        // The service stamps every frame when it captures.
        stamps: false,
        ports: cli.port_list(),
        xdp_mode: cli.xdp_mode.into(),
        xsk: XskConfig {
            frame_count: cli.frames,
            frame_size: cli.frame_size,
            zero_copy: cli.zero_copy.into(),
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
    }
}

/// The app and the capture from the command line.
fn service_options(cli: &Cli, filter: Option<&Arc<Filter>>) -> ServiceOptions {
    let capture = cli.write.as_ref().map(|path| {
        let mut config = CaptureConfig::new(Output::from_arg(path));
        config.format = cli.capture_format();
        config.snaplen = cli.snaplen;
        config.packet_buffered = cli.packet_buffered;
        config.file_size_mb = cli.file_size;
        config.rotate_seconds = cli.rotate_seconds;
        config.file_count = cli.file_count;
        config.filter = filter.map(|f| f.expression().to_string());
        config
    });
    ServiceOptions {
        app: cli.app.into(),
        capture,
        pcap_overflow: cli.pcap_overflow.into(),
        filter: filter.map(|f| f.clone() as Arc<dyn Selects>),
        direction: cli.direction.into(),
        ..ServiceOptions::default()
    }
}

#[cfg(test)]
mod tests {
    use xdpstack::capture::{CaptureEnd, CaptureError, CaptureStats};

    use super::*;

    fn capture(error: Option<CaptureError>, end: Option<CaptureEnd>) -> CaptureReport {
        CaptureReport {
            path: None,
            stats: CaptureStats::default(),
            error,
            end,
            unselected_views: 0,
            unselected_outbound: 0,
            outbound_dropped: 0,
        }
    }

    #[test]
    fn a_capture_that_ends_the_run_is_success_and_an_error_is_not() {
        assert_eq!(exit_status(None), 0);
        assert_eq!(exit_status(Some(&capture(None, None))), 0);
        let closed = capture(None, Some(CaptureEnd::ReaderClosed));
        assert_eq!(exit_status(Some(&closed)), 0, "tcpdump exits 0 on SIGPIPE");
        let limit = capture(None, Some(CaptureEnd::FileLimit { files: 3 }));
        assert_eq!(exit_status(Some(&limit)), 0);
        let failed = capture(
            Some(CaptureError::Stdout {
                source: std::io::Error::other("input/output error"),
                hint: "",
            }),
            None,
        );
        assert_eq!(exit_status(Some(&failed)), 1);
    }
}
