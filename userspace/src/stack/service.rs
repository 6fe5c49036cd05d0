//! The service `xdpstack` runs: the stack with a UDP app (`--app`) and an
//! optional capture (`-w`) on every queue, and the report of both. A front end
//! turns its command line into [`StackOptions`] and [`ServiceOptions`], calls
//! [`serve`] and renders the [`Report`]; everything in between is here.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex, atomic::AtomicBool},
};

use serde::Serialize;

use super::{ConsumerSpec, Interval, QueueContext, StackError, StackOptions, Summary};
use crate::{
    app::{Echo, PortCounts, Sink, UdpConsumer, UdpStats, UdpSummary},
    capture::{Capture, CaptureConfig, CaptureError, CaptureStats, QueueStats},
    poller::Overflow,
    sys::xsk::XskConfig,
    tx::Transmitter,
};

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
}

/// Run the service until `stop` is set (or the stack's own stop conditions).
/// Bad input fails before anything is attached: the queues, then the capture
/// output.
pub fn serve(
    opts: &StackOptions,
    service: &ServiceOptions,
    stop: Arc<AtomicBool>,
    on_interval: &mut dyn FnMut(Interval),
) -> Result<Report, ServeError> {
    // Only echo transmits: the other apps' sockets bind no TX ring, which in
    // copy mode would cost every poll(2) a pass of the kernel's transmit loop.
    let opts = &StackOptions {
        xsk: XskConfig {
            tx_ring: service.app == AppKind::Echo,
            ..opts.xsk
        },
        ..opts.clone()
    };
    let queues = super::resolve_queues(opts)?;
    let capture = match &service.capture {
        Some(config) => Some(Capture::open(config, &opts.iface, &queues, opts.count)?),
        None => None,
    };
    // The UDP consumer's ports: the steered ones, or every port with
    // `--capture all` and no `--port`.
    let ports: Vec<u16> = if opts.ports.is_empty() {
        (0..=u16::MAX).collect()
    } else {
        opts.ports.clone()
    };
    let udp_stats: Mutex<Vec<Arc<UdpStats>>> = Mutex::new(Vec::new());
    let port_counts = PortCounts::default();
    let consumers = |ctx: &mut QueueContext<'_>| -> Vec<ConsumerSpec> {
        let mut specs = Vec::new();
        let udp = match service.app {
            AppKind::None => None,
            // Receive only: no transmit code runs on the queue.
            AppKind::Sink => Some(
                UdpConsumer::new(Transmitter::disconnected())
                    .route(ports.iter().copied(), Sink::new(port_counts.clone())),
            ),
            AppKind::Echo => {
                Some(UdpConsumer::new(ctx.transmitter()).route(ports.iter().copied(), Echo))
            }
        };
        if let Some(udp) = udp {
            ctx.show_live(udp.stats());
            lock(&udp_stats).push(udp.stats());
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
    };
    let summary = super::run(opts, stop, &consumers, on_interval)?;
    let mut udp = UdpSummary::default();
    for stats in lock(&udp_stats).iter() {
        udp += &stats.summary();
    }
    udp.ports = lock(&port_counts).clone();
    let capture = capture.map(|c| close_capture(c, &summary));
    Ok(Report {
        summary,
        app: service.app,
        udp,
        capture,
    })
}

/// Close the capture with each queue's counters (pcapng's statistics blocks).
fn close_capture(capture: Capture, summary: &Summary) -> CaptureReport {
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
    let closed = capture.close(&stats);
    CaptureReport {
        path: closed.path,
        stats: closed.stats,
        error: closed.error,
    }
}

/// A poisoned lock means a consumer panicked, which aborts the process; recover
/// the guard regardless.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
