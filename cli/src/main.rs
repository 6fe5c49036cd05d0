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
        CaptureMode, KernelCapture, ReadyHook, StackOptions,
        doctor::{self, Requirement},
        service::{self, CaptureReport, ServiceOptions},
    },
    sys::{
        confine::{self, User},
        loader::XdpModeChoice,
        process::block_termination_signals,
        xsk::{XskConfig, ZeroCopy},
    },
};

mod args;
mod metrics;
mod report;

/// `xdpstack: MESSAGE` on standard error, as eprintln! would write it, but a
/// stream that cannot be written (its reader gone) is not a panic: the run
/// ends as it would have, with its exit status.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr(), "xdpstack: {}", format_args!($($arg)*));
    }};
}

use args::{App, CaptureChoice, Cli, Command, DirectionArg, RequireArg};

/// clap's error in one line, as every other error is: its first line (the
/// rest is a tip and the usage), with where to look.
fn one_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    format!("{first} (see xdpstack --help)")
}

/// The completion script for `shell`. clap's completes every value as a
/// file name; for bash, `-i`/`--interface` completes the interfaces of the
/// namespace the shell runs in instead (clap's static scripts have no hook for
/// a value list known only at completion time).
fn completion_script(shell: clap_complete::Shell) -> String {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "xdpstack", &mut script);
    let script = String::from_utf8_lossy(&script).into_owned();
    if shell != clap_complete::Shell::Bash {
        return script;
    }
    let files = "                    COMPREPLY=($(compgen -f \"${cur}\"))";
    let interfaces = "                    COMPREPLY=($(compgen -W \"$(ls /sys/class/net 2>/dev/null)\" -- \"${cur}\"))";
    let mut out = String::with_capacity(script.len());
    let mut interface_case = false;
    for line in script.lines() {
        let trimmed = line.trim();
        if trimmed == "-i)" || trimmed == "--interface)" {
            interface_case = true;
        } else if interface_case && line == files {
            out.push_str(interfaces);
            out.push('\n');
            interface_case = false;
            continue;
        } else if trimmed.ends_with(')') {
            interface_case = false;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help, --version: not errors.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            say!("{}", one_line(&e));
            return ExitCode::from(2);
        }
    };
    if let Some(Command::Completions { shell }) = cli.command {
        let _ = std::io::stdout().write_all(completion_script(shell).as_bytes());
        return ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("XDPSTACK_LOG")
                .unwrap_or_else(|_| cli.log_filter().into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal, never into a file or a pipe.
        .with_ansi(std::io::stderr().is_terminal())
        // A log line that cannot be written (standard error is a pipe whose
        // reader left: `-vv 2>&1 | head -3`) is dropped. Otherwise the
        // subscriber reports the failure with eprintln!, which panics on the
        // same closed stream, and the panic hook aborts the run.
        .log_internal_errors(false)
        .init();
    if let Some(Command::Doctor {
        iface,
        frame_size,
        frames,
    }) = &cli.command
    {
        return run_doctor(iface, *frame_size, *frames);
    }
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
    install_panic_policy();
    // SIGINT, SIGTERM and SIGHUP wait until the handler is installed, after
    // the privileges are dropped (see `ready`): the handler's thread must not
    // be there to keep them.
    if let Err(e) = block_termination_signals(true) {
        say!("blocking signals during setup failed: {e}");
        return ExitCode::FAILURE;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let opts = stack_options(&cli, filter.as_ref());
    let Setup { user, listener } = match setup(&cli, &opts) {
        Ok(setup) => setup,
        Err((msg, code)) => {
            say!("{msg}");
            return ExitCode::from(code);
        }
    };
    let service = service_options(&cli, filter.as_ref());
    // With `-w -` the capture owns standard output: JSON and the report go to
    // standard error.
    let to_stdout = cli.write.as_deref() == Some(Path::new("-"));
    let mut live = report::LiveOutput::new(cli.json, !to_stdout);
    let show_live = live_wanted(&cli);
    let latest = metrics::Latest::default();
    let hook = ready(
        user.clone(),
        !cli.no_seccomp,
        stop.clone(),
        listener.map(|l| (l, latest.clone())),
    );
    let report = match service::serve_with(&opts, &service, stop, Some(hook), &mut |iv| {
        latest.update(&iv);
        if show_live {
            live.show(&iv);
        }
    }) {
        Ok(report) => report,
        Err(e) => {
            say!("{}", explain(&e.to_string(), user.as_ref()));
            return ExitCode::FAILURE;
        }
    };
    print_report(&cli, &report, to_stdout)
}

/// What is found out before anything is loaded: `-Z`'s user, the metrics
/// listener (bound now, so that a taken port fails before anything is
/// attached, and a privileged one works: it is served once the privileges
/// are gone), and the `--require`d features. Errors carry their exit status.
struct Setup {
    user: Option<User>,
    listener: Option<std::net::TcpListener>,
}

fn setup(cli: &Cli, opts: &StackOptions) -> Result<Setup, (String, u8)> {
    let user = cli
        .user
        .as_deref()
        .map(confine::lookup_user)
        .transpose()
        .map_err(|e| (e.to_string(), 2))?;
    let listener = cli
        .metrics
        .map(std::net::TcpListener::bind)
        .transpose()
        .map_err(|e| {
            let addr = cli.metrics.map(|a| a.to_string()).unwrap_or_default();
            (
                format!("--metrics {addr}: cannot listen there: {e} (choose another ADDR:PORT)"),
                1,
            )
        })?;
    let required: Vec<Requirement> = cli.require.iter().map(|&r| r.into()).collect();
    if !required.is_empty() {
        let queues = xdpstack::stack::resolve_queues(opts).map_err(|e| (e.to_string(), 1))?;
        doctor::check_requirements(&opts.iface, &queues, &required)
            .map_err(|e| (e.to_string(), 1))?;
    }
    Ok(Setup { user, listener })
}

/// The summary, as text or JSON, on standard output (standard error with
/// `-w -`), then a capture's write error; the exit status.
fn print_report(cli: &Cli, report: &service::Report, to_stdout: bool) -> ExitCode {
    let text = if cli.json {
        match serde_json::to_string(report) {
            Ok(line) => format!("{line}\n"),
            Err(e) => {
                say!("encoding the summary failed: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        report::render_report(report, cli.app != App::None)
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

/// A panic on any thread ends the process at once: a stack with a dead poller
/// must not limp on. The kernel then closes our fds, which detaches the program.
fn install_panic_policy() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::abort();
    }));
}

/// What runs once the stack is attached and before its threads start: drop
/// every privilege (and become `user` with -Z), install the seccomp
/// allow-list, then the signal handler, the metrics endpoint and the tests'
/// hooks, each a thread that starts confined.
fn ready(
    user: Option<User>,
    seccomp: bool,
    stop: Arc<AtomicBool>,
    metrics: Option<(std::net::TcpListener, metrics::Latest)>,
) -> ReadyHook {
    Box::new(move || {
        confine::drop_privileges(user.as_ref())?;
        if seccomp {
            confine::install_seccomp()?;
        }
        let flag = stop;
        // SIGINT and SIGTERM end the run cleanly; a second one exits at once.
        ctrlc::set_handler(move || {
            if flag.swap(true, Ordering::Relaxed) {
                std::process::exit(130);
            }
        })
        .map_err(|e| format!("installing the signal handler failed: {e}"))?;
        block_termination_signals(false)?;
        if let Some((listener, latest)) = metrics {
            metrics::spawn(listener, latest)?;
        }
        test_hooks();
        Ok(())
    })
}

/// Hooks for the tests, after the hook above: a panic after attaching must
/// leave nothing attached (bpf_link semantics); a syscall outside the seccomp
/// allow-list (linkat: a hard link) must end the process, as designed.
fn test_hooks() {
    let after = |var: &str| {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_millis)
    };
    if let Some(t) = after("XDPSTACK_TEST_PANIC_AFTER_MS") {
        std::thread::spawn(move || {
            std::thread::sleep(t);
            panic!("XDPSTACK_TEST_PANIC_AFTER_MS: deliberate panic");
        });
    }
    if let Some(t) = after("XDPSTACK_TEST_SECCOMP_VIOLATION_AFTER_MS") {
        std::thread::spawn(move || {
            std::thread::sleep(t);
            let r = std::fs::hard_link("/nonexistent/xdpstack-a", "/nonexistent/xdpstack-b");
            tracing::warn!("XDPSTACK_TEST_SECCOMP_VIOLATION_AFTER_MS: linkat returned {r:?}");
        });
    }
}

/// Whether the live statistics are shown: asked for with --stats, or by
/// default when a person watches standard error.
fn live_wanted(cli: &Cli) -> bool {
    cli.stats.is_some() || (!cli.json && std::io::stderr().is_terminal())
}

/// A capture file the `-Z` user may not create: say that it was the user's
/// attempt, since root could have.
fn explain(message: &str, user: Option<&User>) -> String {
    match user {
        Some(u) if message.starts_with("capture file ") && message.contains("ermission denied") => {
            format!(
                "{message} (it is created as user {} after privileges are dropped, -Z {})",
                u.name, u.name
            )
        }
        _ => message.to_string(),
    }
}

/// `xdpstack doctor -i IF`: every finding on a line, its fix beneath.
fn run_doctor(iface: &str, frame_size: u32, frames: u32) -> ExitCode {
    match doctor::diagnose(iface, doctor::Planned { frame_size, frames }) {
        Ok(checks) => {
            let text = report::render_doctor(iface, &checks);
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
            ExitCode::SUCCESS
        }
        Err(e) => {
            say!("{e}");
            ExitCode::FAILURE
        }
    }
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
        // What --require asks for is asked of the kernel strictly too.
        xdp_mode: if cli.require.contains(&RequireArg::Drv) {
            XdpModeChoice::Drv
        } else {
            cli.xdp_mode.into()
        },
        xsk: XskConfig {
            frame_count: cli.frames,
            frame_size: cli.frame_size,
            zero_copy: if cli.require.contains(&RequireArg::ZeroCopy) {
                ZeroCopy::On
            } else {
                cli.zero_copy.into()
            },
            ..XskConfig::default()
        },
        poller: PollerConfig {
            budget: cli.budget,
            busy_poll: cli.busy_poll || cli.require.contains(&RequireArg::BusyPoll),
            require_busy_poll: cli.require.contains(&RequireArg::BusyPoll),
            ..PollerConfig::default()
        },
        pin_cpus: cli.pin_cpus,
        multi_buffer: cli.multi_buffer.into(),
        duration: cli.duration,
        count: cli.count,
        // Live statistics every second by default when a person is watching,
        // or when the metrics endpoint serves them.
        stats_interval: cli.stats.or_else(|| {
            (live_wanted(cli) || cli.metrics.is_some()).then(|| Duration::from_secs(1))
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
    #[test]
    fn bash_completes_interfaces_for_i() {
        let script = super::completion_script(clap_complete::Shell::Bash);
        let interfaces = script.matches("compgen -W \"$(ls /sys/class/net").count();
        // -i and --interface, of the run and of doctor.
        assert_eq!(interfaces, 4, "{script}");
        // Files still complete for -w.
        assert!(script.contains("compgen -f"));
    }

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
