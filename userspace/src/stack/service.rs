//! The service `xdpstack` runs: the stack with a UDP app (`--app`) and an
//! optional capture (`-w`) on every queue, and the report of both. A front end
//! turns its command line into [`StackOptions`] and [`ServiceOptions`], calls
//! [`serve`] and renders the [`Report`]; everything in between is here.

use std::{
    os::fd::AsFd as _,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use serde::Serialize;

use super::{
    CaptureMode, ConsumerSpec, Interval, QueueContext, StackError, StackOptions, Summary, Taps,
};
use crate::{
    app::{
        Echo, PortCounts, Sink, UdpConsumer, UdpSocket, UdpStats, UdpSummary, socket::SocketSummary,
    },
    capture::{
        Capture, CaptureConfig, CaptureEnd, CaptureError, CaptureStats, Outbound, Output,
        QueueStats, Selects,
    },
    poller::{Overflow, TxTap},
    sys::{process::pipe_reader_gone, xsk::XskConfig},
    tx::Transmitter,
};

/// `-Q in|out|inout`: which directions the capture keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptureDirection {
    /// Received frames only.
    In,
    /// Transmitted frames only.
    Out,
    /// Both (tcpdump's default).
    #[default]
    InOut,
}

/// `--app sink|echo|none`: what the UDP consumer does with each datagram.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AppKind {
    /// Count datagrams and bytes per destination port.
    #[default]
    Sink,
    /// Answer each datagram with its own payload through the AF_XDP TX ring.
    Echo,
    /// No UDP consumer (capture only).
    None,
}

/// The service on top of the stack.
#[derive(Clone, Debug, Default)]
pub struct ServiceOptions {
    /// The UDP app.
    pub app: AppKind,
    /// The capture, if any.
    pub capture: Option<CaptureConfig>,
    /// What a capture that falls behind does (`--pcap-overflow`).
    pub pcap_overflow: Overflow,
    /// The capture's expression, for the frames the stack receives for its apps
    /// and those it transmits (the XDP program runs it on the rest:
    /// [`StackOptions::kernel_capture`]).
    pub filter: Option<Arc<dyn Selects>>,
    /// `-Q`: the directions the capture keeps.
    pub direction: CaptureDirection,
    /// Sockets bound on the stack (see [`super::net::Network`]): their ports
    /// go to them, not to the app.
    pub sockets: Vec<UdpSocket>,
}

impl ServiceOptions {
    /// Whether anything on the stack transmits (echo, sockets).
    fn transmits(&self) -> bool {
        self.app == AppKind::Echo || !self.sockets.is_empty()
    }
}

/// Why the service did not run (or stopped).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The stack.
    #[error(transparent)]
    Stack(#[from] StackError),
    /// Opening the capture output.
    #[error(transparent)]
    Capture(#[from] CaptureError),
}

/// The capture's part of the report.
#[derive(Debug, Serialize)]
pub struct CaptureReport {
    /// The last file written (`None` for standard output).
    pub path: Option<PathBuf>,
    /// The writer's counters.
    pub stats: CaptureStats,
    /// The first write error, if writing stopped.
    #[serde(serialize_with = "error_text")]
    pub error: Option<CaptureError>,
    /// Why the capture ended the run, if it did (not an error: the reader of
    /// standard output went away, or `-G` with `-W` wrote its files).
    pub end: Option<CaptureEnd>,
    /// Frames the stack received for its apps that the expression did not
    /// select.
    pub unselected_views: u64,
    /// Transmitted frames the expression did not select.
    pub unselected_outbound: u64,
    /// Copies of transmitted frames lost because the copy thread was behind.
    pub outbound_dropped: u64,
}

fn error_text<S: serde::Serializer>(e: &Option<CaptureError>, s: S) -> Result<S::Ok, S::Error> {
    match e {
        Some(e) => s.serialize_some(&e.to_string()),
        None => s.serialize_none(),
    }
}

/// What a run of the service did: the stack's summary, the UDP consumers'
/// figures summed over queues, and the capture's.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The stack's summary (its fields are the report's, flattened).
    #[serde(flatten)]
    pub summary: Summary,
    /// The UDP app that ran.
    pub app: AppKind,
    /// The UDP consumers, all queues (zeros with `--app none`).
    pub udp: UdpSummary,
    /// The capture, with `-w`.
    pub capture: Option<CaptureReport>,
    /// The sockets bound on the stack.
    pub sockets: Vec<SocketSummary>,
}

/// Run the service until `stop` is set (or the stack's own stop conditions, or
/// the end of the capture: see [`CaptureEnd`]). Bad input fails before anything
/// is attached: the queues, then the capture output.
pub fn serve(
    opts: &StackOptions,
    service: &ServiceOptions,
    stop: Arc<AtomicBool>,
    on_interval: &mut dyn FnMut(Interval),
) -> Result<Report, ServeError> {
    serve_with(opts, service, stop, None, on_interval)
}

/// [`serve`], with the caller's hook run once the stack is attached and
/// before any thread of the run starts (see [`super::ReadyHook`]): there the
/// `xdpstack` command drops its privileges and confines itself. The capture's
/// output is opened right after the hook, so that `-Z USER` creates it as
/// USER, and a run that fails before leaves no file behind; then the watcher of
/// a piped standard output starts, the first thread of the run.
pub fn serve_with(
    opts: &StackOptions,
    service: &ServiceOptions,
    stop: Arc<AtomicBool>,
    ready: Option<super::ReadyHook>,
    on_interval: &mut dyn FnMut(Interval),
) -> Result<Report, ServeError> {
    // Only echo and sockets transmit: the other apps' AF_XDP sockets bind no
    // TX ring, which in copy mode would cost every poll(2) a pass of the
    // kernel's transmit loop.
    let opts = &StackOptions {
        xsk: XskConfig {
            tx_ring: service.transmits(),
            ..opts.xsk
        },
        // A capture gets each frame's own receive time.
        stamps: opts.stamps || service.capture.is_some(),
        ..opts.clone()
    };
    let queues = super::resolve_queues(opts)?;
    let (capture, outbound, mut taps) = open_capture(opts, service, &queues, &stop)?;
    let watch_stdout = service
        .capture
        .as_ref()
        .is_some_and(|c| c.output == Output::Stdout && stdout_is_fifo());
    // The UDP consumer's ports: the steered ones, or every port with
    // `--capture all` and no `--port`.
    let ports: Vec<u16> = if opts.ports.is_empty() {
        (0..=u16::MAX).collect()
    } else {
        opts.ports.clone()
    };
    // The sockets' ports are theirs.
    let ports: Vec<u16> = ports
        .into_iter()
        .filter(|p| !service.sockets.iter().any(|s| s.port() == *p))
        .collect();
    let udp_stats: Mutex<Vec<Arc<UdpStats>>> = Mutex::new(Vec::new());
    let port_counts = PortCounts::default();
    let consumers = |ctx: &mut QueueContext<'_>| {
        let shared = Shared {
            opts,
            service,
            ports: &ports,
            port_counts: &port_counts,
            udp_stats: &udp_stats,
        };
        queue_consumers(ctx, &shared, capture.as_ref())
    };
    let run_over = Arc::new(AtomicBool::new(false));
    let watcher = Watcher::default();
    taps.ready = Some(ready_then_open(
        ready,
        capture.clone(),
        watch_stdout.then(|| (watcher.clone(), stop.clone(), run_over.clone())),
    ));
    let mut with_capture = |mut iv: Interval| {
        iv.capture = capture.as_ref().map(Capture::stats);
        on_interval(iv);
    };
    let summary = super::run_with(opts, stop.clone(), &consumers, taps, &mut with_capture);
    run_over.store(true, Ordering::Relaxed);
    let watcher = lock(&watcher).take();
    let reader_gone = watcher.is_some_and(|w| w.join().unwrap_or(false));
    let summary = summary?;
    let mut udp = UdpSummary::default();
    for stats in lock(&udp_stats).iter() {
        udp += &stats.summary();
    }
    udp.ports = lock(&port_counts).clone();
    let capture = capture.map(|c| {
        let unselected_views = c.unselected();
        let mut report = close_capture(c, &summary);
        report.unselected_views = unselected_views;
        if let Some(o) = &outbound {
            report.unselected_outbound = o.unselected();
            report.outbound_dropped = o.dropped();
        }
        if reader_gone && report.error.is_none() {
            report.end = report.end.or(Some(CaptureEnd::ReaderClosed));
        }
        report
    });
    Ok(Report {
        summary,
        app: service.app,
        udp,
        capture,
        sockets: service.sockets.iter().map(UdpSocket::summary).collect(),
    })
}

/// What every queue's consumers share (see [`queue_consumers`]).
struct Shared<'a> {
    opts: &'a StackOptions,
    service: &'a ServiceOptions,
    /// The app's ports.
    ports: &'a [u16],
    port_counts: &'a PortCounts,
    udp_stats: &'a Mutex<Vec<Arc<UdpStats>>>,
}

/// One queue's consumers: the UDP consumer with the app's and the sockets'
/// routes (inline), and the capture's writer (threaded).
fn queue_consumers(
    ctx: &mut QueueContext<'_>,
    shared: &Shared<'_>,
    capture: Option<&Capture>,
) -> Vec<ConsumerSpec> {
    let Shared {
        opts,
        service,
        ports,
        port_counts,
        udp_stats,
    } = *shared;
    let mut specs = Vec::new();
    // Receive only unless something transmits: no transmit code runs on
    // the queue then.
    let tx = if service.transmits() {
        ctx.transmitter()
    } else {
        Transmitter::disconnected()
    };
    let mut udp = match service.app {
        AppKind::None => None,
        AppKind::Sink => Some(
            UdpConsumer::new(tx.clone())
                .route(ports.iter().copied(), Sink::new(port_counts.clone())),
        ),
        AppKind::Echo => Some(UdpConsumer::new(tx.clone()).route(ports.iter().copied(), Echo)),
    };
    for socket in &service.sockets {
        socket.add_queue(tx.clone());
        let handler = socket.handler();
        ctx.show_live(handler.stats());
        let consumer = udp.take().unwrap_or_else(|| UdpConsumer::new(tx.clone()));
        udp = Some(consumer.route([socket.port()], handler));
    }
    if let Some(udp) = udp {
        ctx.show_live(udp.stats());
        lock(udp_stats).push(udp.stats());
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
        capacity: opts.xsk.frame_count as usize,
        overflow: service.pcap_overflow,
    }));
    specs
}

/// The thread watching a piped standard output, once started.
type Watcher = Arc<Mutex<Option<std::thread::JoinHandle<bool>>>>;

/// The stack's hook: the caller's first, then the capture's output opened
/// (as the user the caller may have become), then the watcher of a piped
/// standard output started, with the stop flag and the end-of-run flag.
fn ready_then_open(
    ready: Option<super::ReadyHook>,
    capture: Option<Capture>,
    watch: Option<(Watcher, Arc<AtomicBool>, Arc<AtomicBool>)>,
) -> super::ReadyHook {
    Box::new(move || {
        if let Some(ready) = ready {
            ready()?;
        }
        if let Some(c) = &capture {
            c.open_output()?;
        }
        if let Some((watcher, stop, run_over)) = watch {
            let thread = std::thread::spawn(move || watch_pipe_reader(&stop, &run_over));
            *lock(&watcher) = Some(thread);
        }
        Ok(())
    })
}

/// The capture's output, its outbound tap (echo's replies, with `-Q out` or
/// `inout`), and where the stack sends copies.
type OpenCapture = (Option<Capture>, Option<Arc<Outbound>>, Taps);

/// Open the capture (see [`OpenCapture`]).
fn open_capture(
    opts: &StackOptions,
    service: &ServiceOptions,
    queues: &[u32],
    stop: &Arc<AtomicBool>,
) -> Result<OpenCapture, ServeError> {
    let capture = match &service.capture {
        Some(config) => {
            // Opened once the stack is attached (`serve_with`).
            let mut c = Capture::prepare(config, &opts.iface, queues, opts.count)?
                .stop_on_end(stop.clone());
            // The views of an app's frames go through the expression; without
            // apps (no port steered) every view is a frame the XDP program's
            // copy of the expression already selected (--steal).
            if let Some(f) = &service.filter
                && !opts.ports.is_empty()
            {
                c = c.with_filter(f.clone());
            }
            if service.direction == CaptureDirection::Out {
                c = c.outbound_only();
            }
            Some(c)
        }
        None => None,
    };
    // Transmitted frames, when the capture keeps them and the app transmits.
    let outbound = match &capture {
        Some(_) if service.direction != CaptureDirection::In && service.transmits() => {
            Some(Arc::new(Outbound::new(service.filter.clone())))
        }
        _ => None,
    };
    let copies_in_kernel = opts
        .kernel_capture
        .as_ref()
        .is_some_and(|k| k.mode == CaptureMode::Copy);
    let taps = Taps {
        copies: capture
            .as_ref()
            .filter(|_| copies_in_kernel || outbound.is_some())
            .map(|c| c.copy_writer(outbound.clone())),
        outbound: outbound.clone().map(|o| o as Arc<dyn TxTap>),
        ready: None,
    };
    Ok((capture, outbound, taps))
}

/// Close the capture with each queue's counters (pcapng's statistics blocks).
fn close_capture(capture: Capture, summary: &Summary) -> CaptureReport {
    let stats: Vec<QueueStats> = summary
        .queues
        .iter()
        .map(|q| QueueStats {
            queue: q.queue,
            received: q.packets,
            // The kernel's drops, and the XDP program's copies the ring had
            // no room for.
            kernel_drops: q.xsk.rx_dropped
                + q.xsk.rx_ring_full
                + summary.capture_lost.get(&q.queue).copied().unwrap_or(0),
            consumer_drops: q.consumers.iter().map(|c| c.dropped).sum(),
        })
        .collect();
    let closed = capture.close(&stats);
    CaptureReport {
        path: closed.path,
        stats: closed.stats,
        error: closed.error,
        end: closed.end,
        unselected_views: 0,
        unselected_outbound: 0,
        outbound_dropped: 0,
    }
}

/// True when standard output is a pipe or FIFO (`-w - | tshark -r -`).
fn stdout_is_fifo() -> bool {
    use std::os::unix::fs::FileTypeExt as _;
    std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .and_then(|f| f.metadata())
        .is_ok_and(|m| m.file_type().is_fifo())
}

/// How often the reader of a piped standard output is looked for.
const READER_CHECK: Duration = Duration::from_millis(20);

/// With `-w -` into a pipe: stops the run as soon as the pipe has no reader
/// (`-w - | head -c 100` once head exits), even while no frame comes that
/// would make a write fail with EPIPE. True if it stopped the run so.
fn watch_pipe_reader(stop: &AtomicBool, run_over: &AtomicBool) -> bool {
    let stdout = std::io::stdout();
    while !run_over.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
        if pipe_reader_gone(stdout.as_fd()) {
            tracing::info!("the reader of standard output went away: stopping the run");
            stop.store(true, Ordering::Relaxed);
            return true;
        }
        std::thread::sleep(READER_CHECK);
    }
    false
}

/// A poisoned lock means a consumer panicked, which aborts the process; recover
/// the guard regardless.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
