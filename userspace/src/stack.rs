//! The stack on one interface: load and attach the XDP program, open one AF_XDP
//! socket and one [`Poller`] thread per RX queue, hand frames to the consumers,
//! stop on request, on `--duration` or after `-c` packets, then detach and report.
//!
//! Everything that can be checked is checked before the program is attached, and
//! the program is detached (by dropping its bpf_link) before [`run`] returns.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use xdp_ebpf::{Counter, SteerMode};

use crate::{
    cli::QueueSpec,
    frame::PoolProbe,
    loader::{AttachedMode, LoaderError, XdpCounters, XdpModeChoice, XdpProgram, if_index},
    poller::{
        Consumer, Overflow, Poller, PollerConfig, QueueStats, RingOccupancy, ThreadedReceiver,
        XskRings,
    },
    tx::{Transmitter, TxSummary},
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
    /// Poller tuning (budget, spinning, busy polling).
    pub poller: PollerConfig,
    /// Pin queue i's poller to CPU i (modulo the CPU count).
    pub pin_cpus: bool,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Stop after this many packets (all queues).
    pub count: Option<u64>,
    /// Print statistics every this often, if set: text to stderr, or JSON.
    pub stats_interval: Option<Duration>,
    /// Statistics as one JSON object per interval (NDJSON) instead of text.
    pub stats_json: bool,
    /// JSON statistics go to standard output (else standard error).
    pub stats_to_stdout: bool,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            iface: String::new(),
            queues: QueueSpec::All,
            mode: SteerMode::Udp,
            ports: Vec::new(),
            xdp_mode: XdpModeChoice::Auto,
            xsk: XskConfig::default(),
            poller: PollerConfig::default(),
            pin_cpus: false,
            duration: None,
            count: None,
            stats_interval: None,
            stats_json: false,
            stats_to_stdout: true,
        }
    }
}

/// How a consumer receives frames.
pub enum ConsumerSpec {
    /// On the poller's thread, run to completion.
    Inline {
        /// Name in statistics.
        name: String,
        /// The consumer.
        consumer: Box<dyn Consumer>,
    },
    /// On a thread of its own, behind a bounded queue.
    Threaded {
        /// Name in statistics.
        name: String,
        /// The consumer, moved to its thread.
        consumer: Box<dyn Consumer>,
        /// Queue capacity in views, at most half the queue's frames: a consumer
        /// that falls behind then loses views (counted) while the other half keeps
        /// the fill ring going for the other consumers, instead of the kernel
        /// dropping frames for everyone.
        capacity: usize,
        /// What a full queue does.
        overflow: Overflow,
    },
}

impl std::fmt::Debug for ConsumerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConsumerSpec::Inline { name, .. } => f.debug_tuple("Inline").field(name).finish(),
            ConsumerSpec::Threaded {
                name,
                capacity,
                overflow,
                ..
            } => f
                .debug_struct("Threaded")
                .field("name", name)
                .field("capacity", capacity)
                .field("overflow", overflow)
                .finish(),
        }
    }
}

impl ConsumerSpec {
    fn name(&self) -> &str {
        match self {
            ConsumerSpec::Inline { name, .. } | ConsumerSpec::Threaded { name, .. } => name,
        }
    }
}

/// Counters a consumer shows in the live statistics (`--stats`), by name.
pub trait LiveCounters: Send + Sync {
    /// The counters now; zeros may be left out.
    fn counters(&self) -> Vec<(&'static str, u64)>;
}

/// What the consumer factory of [`run`] gets for each queue.
pub struct QueueContext<'a> {
    poller: &'a mut Poller<XskSocket>,
    live: Vec<Arc<dyn LiveCounters>>,
}

impl std::fmt::Debug for QueueContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueContext")
            .field("queue", &self.queue())
            .finish()
    }
}

impl QueueContext<'_> {
    /// The RX queue.
    pub fn queue(&self) -> u32 {
        self.poller.queue()
    }

    /// A transmitter for replies on this queue (see [`crate::tx`]). Queues whose
    /// consumers never ask for one run no transmit code at all.
    pub fn transmitter(&mut self) -> Transmitter {
        self.poller.transmitter()
    }

    /// Show `counters` in this queue's live statistics.
    pub fn show_live(&mut self, counters: Arc<dyn LiveCounters>) {
        self.live.push(counters);
    }
}

/// Errors that stop the stack before or while it runs.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// No such interface.
    #[error("interface {0} not found (see `ip link`)")]
    UnknownInterface(String),
    /// The interface is administratively down.
    #[error("interface {0} is down: bring it up (`ip link set dev {0} up`) and start again")]
    InterfaceDown(String),
    /// Bad `--queues`.
    #[error("{0}")]
    Queues(String),
    /// The MTU does not fit a UMEM frame.
    #[error(
        "MTU {mtu} of {iface} is too large for {frame_size}-byte AF_XDP frames (at most \
         {max}); lower it (`ip link set dev {iface} mtu {max}`) or use larger frames (--frame-size 4096)"
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
    /// The interface went down or disappeared while the stack ran.
    #[error(
        "interface {iface} {what} after {after_s:.1} s; stopped, nothing left attached{}",
        if *what == "went down" {
            format!(" (bring it up with `ip link set dev {iface} up` and start again)")
        } else {
            String::new()
        }
    )]
    InterfaceLost {
        /// The interface.
        iface: String,
        /// "went down" or "disappeared".
        what: &'static str,
        /// Seconds after attach.
        after_s: f64,
    },
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

/// One consumer's figures on one queue.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ConsumerSummary {
    /// Consumer name.
    pub name: String,
    /// Views handed to it.
    pub delivered: u64,
    /// Views dropped because its queue was full.
    pub dropped: u64,
    /// Views it held when the summary was taken.
    pub held: u64,
}

/// What one queue did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct QueueSummary {
    /// RX queue index.
    pub queue: u32,
    /// Frames received on the AF_XDP socket.
    pub packets: u64,
    /// Bytes of those frames.
    pub bytes: u64,
    /// Rounds that received frames.
    pub batches: u64,
    /// Rounds that found the RX ring empty.
    pub empty_polls: u64,
    /// Sleeps in poll(2).
    pub sleeps: u64,
    /// Syscalls made to wake the kernel.
    pub wakeups: u64,
    /// Batches given to the fill ring.
    pub fill_batches: u64,
    /// Frames in the free list at the end.
    pub frames_free: u64,
    /// Frames the kernel held at the end (fill and RX rings, and buffers it took
    /// off the fill ring).
    pub frames_in_kernel: u64,
    /// Of those, the frames on the RX ring and on the fill ring.
    pub rings: RingOccupancy,
    /// Frames on the TX and completion rings at the end.
    pub frames_in_tx: u64,
    /// The transmit side.
    pub tx: TxSummary,
    /// Per consumer.
    pub consumers: Vec<ConsumerSummary>,
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
    /// CPU time (user + system) the process spent over the same span, seconds.
    pub cpu_s: f64,
    /// Frames received, all queues.
    pub packets: u64,
    /// Bytes received, all queues.
    pub bytes: u64,
    /// Per queue.
    pub queues: Vec<QueueSummary>,
    /// The XDP program's counters over the run, by name.
    pub xdp: BTreeMap<&'static str, u64>,
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
            "xdpstack: {} packets, {} bytes in {:.2} s ({:.0} pkt/s, {:.2} s CPU) on {} ({} mode, {})",
            self.packets,
            self.bytes,
            self.seconds,
            rate,
            self.cpu_s,
            self.iface,
            self.xdp_mode,
            if self.zero_copy { "zero-copy" } else { "copy" },
        );
        for q in &self.queues {
            let _ = write!(
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
            for c in &q.consumers {
                let _ = write!(s, "; {} {} (dropped {})", c.name, c.delivered, c.dropped);
            }
            let t = &q.tx;
            if t.sent + t.queue_full + t.no_frame + t.reply_errors > 0 {
                let _ = write!(
                    s,
                    "; tx {} sent (echo: {} in place, {} copied; {} other replies), {} completed; \
                     not sent: queue_full {}, no_frame {}, reply_errors {}; tx_invalid {}",
                    t.sent,
                    t.in_place,
                    t.copied,
                    t.sent.saturating_sub(t.in_place + t.copied),
                    t.completed,
                    t.queue_full,
                    t.no_frame,
                    t.reply_errors,
                    q.xsk.tx_invalid_descs,
                );
            }
            s.push('\n');
        }
        write_xdp_counters(&mut s, &self.xdp);
        s
    }
}

/// `  xdp: seen N` and every other non-zero counter of the XDP program, a line.
fn write_xdp_counters(out: &mut String, xdp: &BTreeMap<&'static str, u64>) {
    use std::fmt::Write as _;
    let _ = write!(out, "  xdp:");
    for counter in Counter::ALL {
        let v = xdp.get(counter.name()).copied().unwrap_or(0);
        if v != 0 || counter == Counter::Seen {
            let _ = write!(out, " {} {v}", counter.name());
        }
    }
    out.push('\n');
}

fn counters_by_name(c: &XdpCounters) -> BTreeMap<&'static str, u64> {
    c.iter().map(|(k, v)| (k.name(), v)).collect()
}

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes one `rusage` into the zeroed value we pass.
    #[expect(unsafe_code, reason = "libc getrusage")]
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes within it;
    // sched_setaffinity(0, ...) applies to the calling thread only.
    #[expect(unsafe_code, reason = "libc CPU affinity")]
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        tracing::warn!(cpu, error = %std::io::Error::last_os_error(), "CPU pinning failed");
    }
}

/// Drain a threaded consumer until the poller is gone and the queue is empty.
fn consumer_thread(rx: ThreadedReceiver, mut consumer: Box<dyn Consumer>, done: &AtomicBool) {
    loop {
        let mut got = 0;
        while let Some(view) = rx.try_recv() {
            consumer.consume_owned(view);
            got += 1;
            if got == 256 {
                break;
            }
        }
        if got > 0 {
            consumer.flush();
            continue;
        }
        if done.load(Ordering::Acquire) && rx.is_empty() {
            consumer.flush();
            return;
        }
        rx.park(Duration::from_millis(10));
    }
}

struct QueueRun<R: XskRings> {
    poller: Poller<R>,
    names: Vec<String>,
    live: Vec<Arc<dyn LiveCounters>>,
}

/// Each consumer's figures: `held(id)` scans the pool's side table.
fn consumer_summaries(
    names: &[String],
    stats: &QueueStats,
    held: impl Fn(crate::frame::ConsumerId) -> u64,
) -> Vec<ConsumerSummary> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| ConsumerSummary {
            name: name.clone(),
            delivered: stats.consumers[i].delivered.load(Ordering::Relaxed),
            dropped: stats.consumers[i].dropped.load(Ordering::Relaxed),
            held: held(crate::frame::FramePool::consumer_id(i)),
        })
        .collect()
}

fn summarize<R: XskRings>(run: &mut QueueRun<R>) -> Result<QueueSummary, std::io::Error> {
    let rings = run.poller.ring_occupancy();
    let s = run.poller.stats();
    let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let consumers = consumer_summaries(&run.names, &s, |id| run.poller.pool().held_by(id));
    Ok(QueueSummary {
        queue: run.poller.queue(),
        packets: get(&s.rx_packets),
        bytes: get(&s.rx_bytes),
        batches: get(&s.batches),
        empty_polls: get(&s.empty_polls),
        sleeps: get(&s.sleeps),
        wakeups: get(&s.wakeups),
        fill_batches: get(&s.fill_batches),
        frames_free: run.poller.free_frames() as u64,
        frames_in_kernel: run.poller.frames_in_kernel(),
        rings,
        frames_in_tx: run.poller.frames_in_tx(),
        tx: s.tx.summary(),
        consumers,
        xsk: run.poller.rings().statistics()?,
    })
}

/// The interface exists and is up.
fn check_interface(opts: &StackOptions) -> Result<(), StackError> {
    if if_index(&opts.iface).is_none() {
        return Err(StackError::UnknownInterface(opts.iface.clone()));
    }
    if let Ok(false) = crate::ifinfo::is_up(&opts.iface) {
        return Err(StackError::InterfaceDown(opts.iface.clone()));
    }
    Ok(())
}

/// The RX queues `opts` asks for, checked against the interface.
pub fn resolve_queues(opts: &StackOptions) -> Result<Vec<u32>, StackError> {
    check_interface(opts)?;
    let available = crate::ifinfo::rx_queues(&opts.iface).unwrap_or(1);
    opts.queues.resolve(available).map_err(StackError::Queues)
}

/// Run the stack until `stop` is set, the duration passes or the count is reached.
/// `consumers` gives the consumers of each queue (the same for every queue,
/// typically; an empty list makes the stack an rxdrop counter); its
/// [`QueueContext`] names the queue and hands out transmitters for replies.
pub fn run(
    opts: &StackOptions,
    stop: Arc<AtomicBool>,
    consumers: &dyn Fn(&mut QueueContext<'_>) -> Vec<ConsumerSpec>,
) -> Result<Summary, StackError> {
    check_interface(opts)?;
    let available = crate::ifinfo::rx_queues(&opts.iface).unwrap_or(1);
    let queues = opts.queues.resolve(available).map_err(StackError::Queues)?;
    let max_mtu = opts
        .xsk
        .frame_size
        .saturating_sub(XDP_PACKET_HEADROOM + L2_OVERHEAD);
    if let Ok(mtu) = crate::ifinfo::mtu(&opts.iface)
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
    let mut runs = Vec::with_capacity(queues.len());
    let mut threaded = Vec::new();
    for &q in &queues {
        let (socket, pool) = XskSocket::open(&opts.iface, q, &opts.xsk)?;
        if opts.poller.busy_poll {
            socket
                .enable_busy_poll(opts.poller.budget)
                .map_err(|source| StackError::Receive {
                    iface: opts.iface.clone(),
                    queue: q,
                    source,
                })?;
        }
        program.register_socket(q, socket.raw_fd())?;
        let mut poller = Poller::new(socket, pool, q, opts.poller);
        let mut names = Vec::new();
        let mut ctx = QueueContext {
            poller: &mut poller,
            live: Vec::new(),
        };
        let specs = consumers(&mut ctx);
        let live = ctx.live;
        for spec in specs {
            names.push(spec.name().to_string());
            match spec {
                ConsumerSpec::Inline { consumer, .. } => {
                    poller.add_inline(consumer);
                }
                ConsumerSpec::Threaded {
                    consumer,
                    capacity,
                    overflow,
                    ..
                } => {
                    let bound = (opts.xsk.frame_count / 2).max(1) as usize;
                    let (id, rx) = poller.add_threaded(capacity.min(bound), overflow);
                    threaded.push((runs.len(), id, rx, consumer));
                }
            }
        }
        // The fill ring is full before the program is attached: the first
        // frames steered to this queue find buffers instead of being dropped
        // (rx_fill_ring_empty_descs) while the poller thread starts.
        poller.refill();
        runs.push(QueueRun {
            poller,
            names,
            live,
        });
    }
    let zero_copy = runs.iter().all(|r| r.poller.rings().zero_copy());
    let xdp_mode = program.attach(&opts.iface, opts.xdp_mode)?;
    tracing::info!(iface = %opts.iface, %xdp_mode, zero_copy, queues = ?queues, "attached");
    let before = program.counters()?;

    let started = Instant::now();
    let cpu_started = cpu_seconds();
    let deadline = opts.duration.map(|d| started + d);
    let consumers_done = AtomicBool::new(false);
    let probes: Vec<QueueProbe> = runs
        .iter()
        .map(|r| QueueProbe {
            queue: r.poller.queue(),
            stats: r.poller.stats(),
            pool: r.poller.pool().probe(),
            fd: r.poller.rings().raw_fd(),
            consumers: r.names.clone(),
            live: r.live.clone(),
        })
        .collect();
    let (results, lost): (Vec<Result<(), StackError>>, Option<LinkLost>) =
        std::thread::scope(|scope| {
            let mut consumer_handles = Vec::new();
            for (run_index, id, rx, consumer) in threaded {
                let done = &consumers_done;
                let handle = scope.spawn(move || consumer_thread(rx, consumer, done));
                runs[run_index]
                    .poller
                    .set_consumer_thread(id, handle.thread().clone());
                consumer_handles.push(handle);
            }
            let cpus = std::thread::available_parallelism().map_or(1, usize::from);
            let pollers: Vec<_> = runs
                .iter_mut()
                .enumerate()
                .map(|(i, run)| {
                    let stop = &stop;
                    let pin = opts.pin_cpus;
                    let iface = &opts.iface;
                    scope.spawn(move || {
                        if pin {
                            pin_to_cpu(i % cpus);
                        }
                        let result = run.poller.run(stop);
                        if result.is_err() {
                            stop.store(true, Ordering::Relaxed);
                        }
                        result.map_err(|source| StackError::Receive {
                            iface: iface.clone(),
                            queue: run.poller.queue(),
                            source,
                        })
                    })
                })
                .collect();
            let mode = Mode {
                iface: opts.iface.clone(),
                xdp_mode,
                zero_copy,
                max_mtu,
            };
            // The XDP program's verdicts since attach, for the live statistics.
            let xdp = || {
                program
                    .counters()
                    .map(|now| counters_by_name(&now.since(&before)))
                    .unwrap_or_default()
            };
            let lost = supervise(opts, &mode, &stop, &probes, &xdp, deadline, started);
            let results = pollers
                .into_iter()
                .map(|h| h.join().expect("poller thread panicked"))
                .collect();
            consumers_done.store(true, Ordering::Release);
            for h in &consumer_handles {
                h.thread().unpark();
            }
            for h in consumer_handles {
                h.join().expect("consumer thread panicked");
            }
            (results, lost)
        });
    let seconds = started.elapsed().as_secs_f64();
    let cpu_s = cpu_seconds() - cpu_started;
    let after = program.counters();
    program.detach();
    // A lost interface explains whatever the pollers said after it went.
    if let Some(LinkLost { what, after_s }) = lost {
        return Err(StackError::InterfaceLost {
            iface: opts.iface.clone(),
            what,
            after_s,
        });
    }
    let after = after?;
    for r in results {
        r?;
    }
    // Frames that consumers released at the end are reclaimed so the summary shows
    // where every frame is.
    for run in &mut runs {
        run.poller.refill();
    }
    let mut per_queue = Vec::with_capacity(runs.len());
    for run in &mut runs {
        per_queue.push(summarize(run).map_err(|source| StackError::Receive {
            iface: opts.iface.clone(),
            queue: run.poller.queue(),
            source,
        })?);
    }
    Ok(Summary {
        iface: opts.iface.clone(),
        xdp_mode,
        zero_copy,
        seconds,
        cpu_s,
        packets: per_queue.iter().map(|q| q.packets).sum(),
        bytes: per_queue.iter().map(|q| q.bytes).sum(),
        queues: per_queue,
        xdp: counters_by_name(&after.since(&before)),
    })
}

/// What the supervisor reads of a running queue.
struct QueueProbe {
    queue: u32,
    stats: Arc<QueueStats>,
    pool: PoolProbe,
    fd: std::os::fd::RawFd,
    consumers: Vec<String>,
    live: Vec<Arc<dyn LiveCounters>>,
}

/// How long the statistics wait for the pollers to sample their rings before
/// printing an interval: a busy poller answers within a round (once the
/// scheduler runs it: on a loaded machine that can take several milliseconds),
/// one sleeping on a busy queue within its 1 ms poll(2); an idle one (100 ms) is
/// left with its last sample, which an idle queue does not change.
const RING_SAMPLE_WAIT: Duration = Duration::from_millis(20);

/// One queue in a `--stats` interval.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct QueueInterval {
    /// RX queue.
    pub queue: u32,
    /// Packets per second over the interval.
    pub pps: f64,
    /// Megabits per second over the interval (frame bytes).
    pub mbps: f64,
    /// Packets since the start (monotonic).
    pub packets: u64,
    /// Bytes since the start (monotonic).
    pub bytes: u64,
    /// The kernel's drop counters since the start.
    pub xsk: XskStats,
    /// Frames the kernel holds (fill and RX rings, and buffers it took off the
    /// fill ring).
    pub frames_in_kernel: u64,
    /// Of those, the frames on the fill ring and on the RX ring, sampled by the
    /// poller when the interval is taken (a poller asleep on an idle queue
    /// answers later: its last sample stands, which an idle queue does not
    /// change).
    pub rings: RingOccupancy,
    /// Frames free in user space.
    pub frames_free: u64,
    /// Per consumer: views held now, delivered and dropped since the start.
    pub consumers: Vec<ConsumerSummary>,
    /// The transmit side since the start.
    pub tx: TxSummary,
    /// The consumers' own counters (the UDP consumer's datagrams and rejects by
    /// reason), by name.
    pub counters: BTreeMap<&'static str, u64>,
}

/// A `--stats` interval: every queue and the total.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Interval {
    /// Always "interval" (the final summary has no `type`).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Seconds since attach.
    pub t: f64,
    /// The interface.
    pub iface: String,
    /// XDP attach mode.
    pub xdp_mode: String,
    /// True when every socket is zero-copy.
    pub zero_copy: bool,
    /// Per queue.
    pub queues: Vec<QueueInterval>,
    /// Packets per second, all queues.
    pub pps: f64,
    /// Megabits per second, all queues.
    pub mbps: f64,
    /// The XDP program's counters since attach, by name (all queues): what was
    /// redirected, passed for each reason, and found malformed.
    pub xdp: BTreeMap<&'static str, u64>,
}

/// Read every queue's counters: rates since the last interval (`last` keeps
/// packets and bytes per queue), drops by cause, and where the frames are (the
/// kernel's rings, free, held by each consumer) - an `ss -m` for AF_XDP.
fn interval(
    mode: &Mode,
    probes: &[QueueProbe],
    xdp: BTreeMap<&'static str, u64>,
    last: &mut [(u64, u64)],
    secs: f64,
    t: f64,
) -> Interval {
    let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let secs = secs.max(1e-9);
    let queues: Vec<QueueInterval> = probes
        .iter()
        .zip(last.iter_mut())
        .map(|(probe, last)| {
            let s = &probe.stats;
            let (packets, bytes) = (get(&s.rx_packets), get(&s.rx_bytes));
            let pps = (packets - last.0) as f64 / secs;
            let mbps = (bytes - last.1) as f64 * 8.0 / secs / 1e6;
            *last = (packets, bytes);
            QueueInterval {
                queue: probe.queue,
                pps,
                mbps,
                packets,
                bytes,
                xsk: crate::xsk::read_statistics(probe.fd).unwrap_or_default(),
                frames_in_kernel: get(&s.in_kernel),
                rings: RingOccupancy {
                    rx_ring: get(&s.rx_ring) as u32,
                    fill_ring: get(&s.fill_ring) as u32,
                },
                frames_free: get(&s.free),
                consumers: consumer_summaries(&probe.consumers, s, |id| probe.pool.held_by(id)),
                tx: s.tx.summary(),
                counters: probe.live.iter().flat_map(|l| l.counters()).collect(),
            }
        })
        .collect();
    Interval {
        kind: "interval",
        t,
        iface: mode.iface.clone(),
        xdp_mode: mode.xdp_mode.to_string(),
        zero_copy: mode.zero_copy,
        pps: queues.iter().map(|q| q.pps).sum(),
        mbps: queues.iter().map(|q| q.mbps).sum(),
        queues,
        xdp,
    }
}

/// The text form of an interval: a line per queue and a total.
fn render_interval(iv: &Interval) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "xdpstack: {:.2} s on {} ({} mode, {})\n",
        iv.t,
        iv.iface,
        iv.xdp_mode,
        if iv.zero_copy { "zero-copy" } else { "copy" }
    );
    for q in &iv.queues {
        let _ = write!(
            out,
            "  q{:<3} {:>10.0} pkt/s {:>9.1} Mbit/s  drops: ring_full {} fill_empty {} rx_dropped {}  \
             frames: kernel {} (fill {} rx {}) free {}",
            q.queue,
            q.pps,
            q.mbps,
            q.xsk.rx_ring_full,
            q.xsk.rx_fill_ring_empty_descs,
            q.xsk.rx_dropped,
            q.frames_in_kernel,
            q.rings.fill_ring,
            q.rings.rx_ring,
            q.frames_free,
        );
        for c in &q.consumers {
            let _ = write!(out, " {}: held {} dropped {}", c.name, c.held, c.dropped);
        }
        for (name, n) in &q.counters {
            let _ = write!(out, " {name} {n}");
        }
        if q.tx.sent + q.tx.queue_full + q.tx.no_frame > 0 {
            let _ = write!(
                out,
                "  tx: sent {} queue_full {} no_frame {}",
                q.tx.sent, q.tx.queue_full, q.tx.no_frame,
            );
        }
        out.push('\n');
    }
    let _ = writeln!(out, "  all  {:>10.0} pkt/s {:>9.1} Mbit/s", iv.pps, iv.mbps);
    write_xdp_counters(&mut out, &iv.xdp);
    out
}

/// How the stack is attached, for the live statistics.
struct Mode {
    iface: String,
    xdp_mode: AttachedMode,
    zero_copy: bool,
    /// The largest MTU whose frames fit a UMEM frame.
    max_mtu: u32,
}

/// Ask every poller for a sample of its rings and wait (at most
/// [`RING_SAMPLE_WAIT`]) until they have answered, so that the figures printed
/// are of the same moment as the other counters.
fn sample_rings(probes: &[QueueProbe]) {
    for p in probes {
        p.stats.sample_rings.store(true, Ordering::Relaxed);
    }
    let deadline = Instant::now() + RING_SAMPLE_WAIT;
    while Instant::now() < deadline
        && probes
            .iter()
            .any(|p| p.stats.sample_rings.load(Ordering::Acquire))
    {
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// The interface went away under the stack: how, and when.
struct LinkLost {
    what: &'static str,
    after_s: f64,
}

/// Watch the pollers from the calling thread: enforce `-c` and `--duration`, print
/// `--stats` lines, until `stop` is set; stop, and say what happened, when the
/// interface goes down or disappears.
fn supervise(
    opts: &StackOptions,
    mode: &Mode,
    stop: &AtomicBool,
    probes: &[QueueProbe],
    xdp: &dyn Fn() -> BTreeMap<&'static str, u64>,
    deadline: Option<Instant>,
    started: Instant,
) -> Option<LinkLost> {
    use std::io::{IsTerminal as _, Write as _};
    let mut next_stats = opts.stats_interval.map(|i| started + i);
    let mut last = vec![(0u64, 0u64); probes.len()];
    let mut last_time = started;
    // On a terminal the text block is redrawn in place; piped, it is appended.
    let redraw = !opts.stats_json && std::io::stderr().is_terminal();
    let mut drawn_lines = 0;
    let mut mtu_warned = false;
    let mut next_link_check = started;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(5));
        let now = Instant::now();
        if now >= next_link_check {
            next_link_check = now + Duration::from_millis(100);
            // An MTU raised under the running stack: frames that no longer fit a
            // UMEM frame are dropped by the kernel (rx_dropped). Say why, once.
            if !mtu_warned
                && let Ok(mtu) = crate::ifinfo::mtu(&opts.iface)
                && mtu > mode.max_mtu
            {
                mtu_warned = true;
                tracing::warn!(
                    "the MTU of {} was raised to {mtu} while running: frames longer than \
                     {} bytes no longer fit a UMEM frame and are dropped by the kernel \
                     (counted in rx_dropped); restart with a larger --frame-size",
                    opts.iface,
                    mode.max_mtu + L2_OVERHEAD
                );
            }
            let what = match crate::ifinfo::is_up(&opts.iface) {
                Ok(true) => None,
                Ok(false) => Some("went down"),
                Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Some("disappeared"),
                Err(_) => None,
            };
            if let Some(what) = what {
                stop.store(true, Ordering::Relaxed);
                return Some(LinkLost {
                    what,
                    after_s: now.duration_since(started).as_secs_f64(),
                });
            }
        }
        let packets: u64 = probes
            .iter()
            .map(|p| p.stats.rx_packets.load(Ordering::Relaxed))
            .sum();
        if opts.count.is_some_and(|c| packets >= c) || deadline.is_some_and(|d| now >= d) {
            stop.store(true, Ordering::Relaxed);
        }
        if let (Some(at), Some(every)) = (next_stats, opts.stats_interval)
            && now >= at
        {
            sample_rings(probes);
            let now = Instant::now();
            let secs = now.duration_since(last_time).as_secs_f64();
            let iv = interval(
                mode,
                probes,
                xdp(),
                &mut last,
                secs,
                now.duration_since(started).as_secs_f64(),
            );
            if opts.stats_json {
                let line = serde_json::to_string(&iv).unwrap_or_default();
                if opts.stats_to_stdout {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{line}");
                    let _ = out.flush();
                } else {
                    eprintln!("{line}");
                }
            } else {
                let text = render_interval(&iv);
                if redraw && drawn_lines > 0 {
                    // Cursor up over the last block, clear to the end.
                    eprint!("\x1b[{drawn_lines}A\x1b[J");
                }
                drawn_lines = text.lines().count();
                eprint!("{text}");
            }
            last_time = now;
            next_stats = Some(at + every);
        }
    }
    None
}
