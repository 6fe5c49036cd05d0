//! The stack on one interface: load and attach the XDP program, open one AF_XDP
//! socket per RX queue, receive on each queue in its own thread until told to stop,
//! then detach and report.
//!
//! The receive loop here is rxdrop with counting; the refcounted frame views,
//! consumers and TX path are built on top of the same sockets.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use xdp_ebpf::SteerMode;

use crate::{
    cli::QueueSpec,
    loader::{AttachedMode, LoaderError, XdpCounters, XdpModeChoice, XdpProgram, if_index},
    xsk::{XskConfig, XskError, XskSocket, XskStats},
};

/// Bytes the kernel reserves in front of every AF_XDP frame (XDP_PACKET_HEADROOM).
const XDP_PACKET_HEADROOM: u32 = 256;
/// Ethernet header plus two VLAN tags: what a frame carries beyond the MTU.
const L2_OVERHEAD: u32 = 14 + 2 * 4;

/// Everything the stack needs to run.
#[derive(Clone, Debug)]
pub struct StackOptions {
    /// Interface.
    pub iface: String,
    /// RX queues.
    pub queues: QueueSpec,
    /// What the XDP program steers.
    pub mode: SteerMode,
    /// UDP destination ports (in `Udp` mode).
    pub ports: Vec<u16>,
    /// XDP attach mode.
    pub xdp_mode: XdpModeChoice,
    /// UMEM and rings.
    pub xsk: XskConfig,
    /// Descriptors per poll round.
    pub budget: u32,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Stop after this many packets.
    pub count: Option<u64>,
}

/// Errors that stop the stack before or while it runs.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// No such interface.
    #[error("interface {0} not found (see `ip link`)")]
    UnknownInterface(String),
    /// Bad `--queues`.
    #[error("{0}")]
    Queues(String),
    /// The MTU does not fit a UMEM frame.
    #[error(
        "MTU {mtu} of {iface} is too large for {frame_size}-byte AF_XDP frames (at most \
         {max}); lower it (`ip link set dev {iface} mtu {max}`) or use larger frames"
    )]
    Mtu {
        /// The interface.
        iface: String,
        /// Its MTU.
        mtu: u32,
        /// The frame size.
        frame_size: u32,
        /// The largest MTU that fits.
        max: u32,
    },
    /// The XDP program.
    #[error(transparent)]
    Loader(#[from] LoaderError),
    /// An AF_XDP socket.
    #[error(transparent)]
    Xsk(#[from] XskError),
    /// A receive loop failed.
    #[error("receiving on {iface} queue {queue} failed: {source}")]
    Receive {
        /// The interface.
        iface: String,
        /// The queue.
        queue: u32,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// What one queue received.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct QueueSummary {
    /// RX queue index.
    pub queue: u32,
    /// Frames received on the AF_XDP socket.
    pub packets: u64,
    /// Bytes of those frames.
    pub bytes: u64,
    /// The kernel's XDP_STATISTICS for the socket.
    pub xsk: XskStats,
}

/// The outcome of a run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Summary {
    /// Interface.
    pub iface: String,
    /// XDP attach mode obtained.
    pub xdp_mode: AttachedMode,
    /// True when every socket is zero-copy.
    pub zero_copy: bool,
    /// Seconds from attach to detach.
    pub seconds: f64,
    /// Frames received, all queues.
    pub packets: u64,
    /// Bytes received, all queues.
    pub bytes: u64,
    /// Per queue.
    pub queues: Vec<QueueSummary>,
    /// The XDP program's counters over the run, by name.
    pub xdp: std::collections::BTreeMap<&'static str, u64>,
}

impl Summary {
    /// A human-readable report, several lines.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let rate = if self.seconds > 0.0 {
            self.packets as f64 / self.seconds
        } else {
            0.0
        };
        let _ = writeln!(
            s,
            "xdpstack: {} packets, {} bytes in {:.2} s ({:.0} pkt/s) on {} ({} mode, {})",
            self.packets,
            self.bytes,
            self.seconds,
            rate,
            self.iface,
            self.xdp_mode,
            if self.zero_copy { "zero-copy" } else { "copy" },
        );
        for q in &self.queues {
            let _ = writeln!(
                s,
                "  queue {}: {} packets, {} bytes; kernel drops: rx_dropped {}, rx_ring_full {}, \
                 fill_ring_empty {}, rx_invalid {}",
                q.queue,
                q.packets,
                q.bytes,
                q.xsk.rx_dropped,
                q.xsk.rx_ring_full,
                q.xsk.rx_fill_ring_empty_descs,
                q.xsk.rx_invalid_descs,
            );
        }
        let _ = write!(s, "  xdp:");
        for counter in xdp_ebpf::Counter::ALL {
            let v = self.xdp.get(counter.name()).copied().unwrap_or(0);
            if v != 0 || counter == xdp_ebpf::Counter::Seen {
                let _ = write!(s, " {} {v}", counter.name());
            }
        }
        s.push('\n');
        s
    }
}

/// The number of RX queues of `iface`, from sysfs.
fn rx_queue_count(iface: &str) -> u32 {
    let dir = Path::new("/sys/class/net").join(iface).join("queues");
    let n = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count()
        })
        .unwrap_or(1);
    u32::try_from(n).unwrap_or(u32::MAX).max(1)
}

fn mtu(iface: &str) -> Option<u32> {
    let path = Path::new("/sys/class/net").join(iface).join("mtu");
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn counters_by_name(c: &XdpCounters) -> std::collections::BTreeMap<&'static str, u64> {
    c.iter().map(|(k, v)| (k.name(), v)).collect()
}

/// Run the stack until `stop` is set, the duration passes or the count is reached.
///
/// Everything is validated before the program is attached, and the program is
/// detached before this returns, error or not.
pub fn run(opts: &StackOptions, stop: Arc<AtomicBool>) -> Result<Summary, StackError> {
    if if_index(&opts.iface).is_none() {
        return Err(StackError::UnknownInterface(opts.iface.clone()));
    }
    let queues = opts
        .queues
        .resolve(rx_queue_count(&opts.iface))
        .map_err(StackError::Queues)?;
    let max_mtu = opts
        .xsk
        .frame_size
        .saturating_sub(XDP_PACKET_HEADROOM + L2_OVERHEAD);
    if let Some(mtu) = mtu(&opts.iface)
        && mtu > max_mtu
    {
        return Err(StackError::Mtu {
            iface: opts.iface.clone(),
            mtu,
            frame_size: opts.xsk.frame_size,
            max: max_mtu,
        });
    }

    let mut program = XdpProgram::load()?;
    program.configure(opts.mode, &opts.ports)?;
    let mut sockets = Vec::with_capacity(queues.len());
    for &q in &queues {
        let socket = XskSocket::open(&opts.iface, q, &opts.xsk)?;
        program.register_socket(q, socket.raw_fd())?;
        sockets.push(socket);
    }
    let xdp_mode = program.attach(&opts.iface, opts.xdp_mode)?;
    tracing::info!(iface = %opts.iface, %xdp_mode, queues = ?queues, "attached");
    let before = program.counters()?;
    let zero_copy = sockets.iter().all(XskSocket::zero_copy);

    let started = Instant::now();
    let deadline = opts.duration.map(|d| started + d);
    let total = AtomicU64::new(0);
    let budget = opts.budget as usize;
    let results: Vec<Result<QueueSummary, StackError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = sockets
            .iter_mut()
            .map(|socket| {
                let stop = &stop;
                let total = &total;
                scope.spawn(move || receive_loop(socket, budget, stop, total, opts.count, deadline))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("receive thread panicked"))
            .collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    let after = program.counters()?;
    program.detach();

    let mut per_queue = Vec::with_capacity(results.len());
    for r in results {
        per_queue.push(r?);
    }
    Ok(Summary {
        iface: opts.iface.clone(),
        xdp_mode,
        zero_copy,
        seconds,
        packets: per_queue.iter().map(|q| q.packets).sum(),
        bytes: per_queue.iter().map(|q| q.bytes).sum(),
        queues: per_queue,
        xdp: counters_by_name(&after.since(&before)),
    })
}

fn receive_loop(
    socket: &mut XskSocket,
    budget: usize,
    stop: &AtomicBool,
    total: &AtomicU64,
    count: Option<u64>,
    deadline: Option<Instant>,
) -> Result<QueueSummary, StackError> {
    let mut summary = QueueSummary {
        queue: socket.queue(),
        ..QueueSummary::default()
    };
    let receive_err = |socket: &XskSocket, source| StackError::Receive {
        iface: socket.iface().to_string(),
        queue: socket.queue(),
        source,
    };
    while !stop.load(Ordering::Relaxed) {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            stop.store(true, Ordering::Relaxed);
            break;
        }
        // The 100 ms poll(2) bound is how often an idle queue notices `stop`.
        let mut bytes = 0u64;
        let n = match socket.receive_batch(budget, 100, |frame| bytes += frame.len() as u64) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                return Err(receive_err(socket, e));
            }
        };
        summary.packets += n as u64;
        summary.bytes += bytes;
        let seen = total.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if count.is_some_and(|c| seen >= c) {
            stop.store(true, Ordering::Relaxed);
        }
    }
    summary.xsk = socket.statistics().map_err(|e| receive_err(socket, e))?;
    Ok(summary)
}
