//! The stack on one interface: load and attach the XDP program, open one AF_XDP
//! socket and one [`Poller`] thread per RX queue, hand frames to the consumers,
//! stop on request, on `--duration` or after `-c` packets, then detach and report.
//!
//! Everything that can be checked is checked before the program is attached, and
//! the program is detached (by dropping its bpf_link) before [`run`] returns.
//! This is the top layer of the library: it imports every layer below and none
//! imports it. It reports through data ([`Summary`], [`Interval`]) and a
//! callback; printing them is the front end's.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::ScopedJoinHandle,
    time::Instant,
};

use crate::{
    capture::CopyWriter,
    frame::{ConsumerId, XDP_PACKET_HEADROOM},
    poller::{Consumer, LiveCounters, Poller, ThreadedReceiver, TxTap},
    sys::{
        ifinfo,
        loader::{
            AttachedMode, CaptureCounters, LoadOptions, LoaderError, XdpCounters, XdpProgram,
        },
        process::{cpu_seconds, pin_to_cpu},
        xsk::{XskError, XskSocket},
    },
    tx::Transmitter,
};

mod copies;
pub use copies::load_filter;

mod config;
pub mod doctor;
pub mod net;
pub(crate) mod queue;
pub mod service;
mod summary;
mod supervise;

pub use config::{
    CaptureMode, ConsumerSpec, KernelCapture, MultiBuffer, QueueSpec, StackOptions, parse_range,
};
pub use summary::{ConsumerSummary, Interval, QueueInterval, QueueSummary, Summary};
use summary::{counters_by_name, summarize};
use supervise::{LinkLost, Mode, QueueProbe, supervise};

/// Ethernet header plus two VLAN tags: what a frame carries beyond the MTU.
const L2_OVERHEAD: u32 = 14 + 2 * 4;

/// The largest MTU whose frames fit a UMEM frame of `frame_size` bytes.
pub fn max_mtu(frame_size: u32) -> u32 {
    frame_size.saturating_sub(XDP_PACKET_HEADROOM + L2_OVERHEAD)
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
        if !self.poller.rings().has_tx_ring() {
            tracing::warn!(
                queue = self.queue(),
                "a consumer asked for a transmitter on a socket bound without a TX ring \
                 (XskConfig::tx_ring off): its replies fail with TxError::Disconnected"
            );
            return Transmitter::disconnected();
        }
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
    /// The capture's expression could not be put into the XDP program.
    #[error("the capture filter: {0}")]
    Filter(String),
    /// No such interface.
    #[error("interface {0} not found (see `ip link`)")]
    UnknownInterface(String),
    /// The interface is administratively down.
    #[error("interface {0} is down: bring it up (`ip link set dev {0} up`) and start again")]
    InterfaceDown(String),
    /// Bad `--queues`.
    #[error("{0}")]
    Queues(String),
    /// The MTU does not fit a UMEM frame, and multi-buffer is off.
    #[error(
        "MTU {mtu} of {iface} is too large for {frame_size}-byte AF_XDP frames (at most \
         {max}) with --multi-buffer off: let packets span several frames \
         (--multi-buffer auto){}, or lower the MTU (`ip link set dev {iface} mtu {max}`)",
        if *frame_size < 4096 && *mtu <= max_mtu(4096) {
            ", use larger frames (--frame-size 4096)"
        } else {
            ""
        }
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
    /// Another AF_XDP socket is bound to the queue.
    #[error(
        "queue {queue} of {iface} is held by {holder}, with an AF_XDP socket of its own: stop \
         it, or take other queues with --queues"
    )]
    QueueBusy {
        /// The interface.
        iface: String,
        /// The queue.
        queue: u32,
        /// Who holds it ("xdpstack (pid 1234)", or "another program").
        holder: String,
    },
    /// The driver refused native XDP for a limit it names only in an extack
    /// message, which bpf(2) does not carry: told here, with the fix.
    #[error("{0}")]
    NativeXdpRefused(String),
    /// A socket cannot be bound.
    #[error("binding a socket: {0}")]
    Bind(String),
    /// The kernel's routing and neighbour tables cannot be followed.
    #[error("following the kernel's routes and neighbours (netlink): {0}")]
    Route(String),
    /// The caller's [`Taps::ready`] hook refused to go on.
    #[error("{0}")]
    Ready(Box<dyn std::error::Error + Send + Sync>),
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

/// One queue of a run: its poller, its consumers' names and live counters.
pub(crate) struct QueueRun<R: crate::ring::Rings> {
    pub(crate) poller: Poller<R>,
    pub(crate) names: Vec<String>,
    pub(crate) live: Vec<Arc<dyn LiveCounters>>,
}

/// A threaded consumer waiting for its thread: (run index, id, queue, consumer).
type Pending = (usize, ConsumerId, ThreadedReceiver, Box<dyn Consumer>);

/// The interface exists and is up.
fn check_interface(opts: &StackOptions) -> Result<(), StackError> {
    if ifinfo::if_index(&opts.iface).is_none() {
        return Err(StackError::UnknownInterface(opts.iface.clone()));
    }
    if let Ok(false) = ifinfo::is_up(&opts.iface) {
        return Err(StackError::InterfaceDown(opts.iface.clone()));
    }
    Ok(())
}

/// The RX queues `opts` asks for, checked against the interface.
pub fn resolve_queues(opts: &StackOptions) -> Result<Vec<u32>, StackError> {
    check_interface(opts)?;
    let available = ifinfo::rx_queues(&opts.iface).unwrap_or(1);
    opts.queues.resolve(available).map_err(StackError::Queues)
}

/// Whether the sockets bind for multi-buffer: with `--multi-buffer auto`,
/// when the MTU does not fit one frame; with `off`, such an MTU is refused.
fn multi_buffer_sockets(opts: &StackOptions) -> Result<bool, StackError> {
    let max = max_mtu(opts.xsk.frame_size);
    let mtu = ifinfo::mtu(&opts.iface).ok();
    let too_large = mtu.is_some_and(|mtu| mtu > max);
    match opts.multi_buffer {
        MultiBuffer::On => Ok(true),
        MultiBuffer::Auto => {
            if too_large {
                tracing::info!(
                    iface = opts.iface,
                    mtu,
                    max,
                    "the MTU does not fit one {}-byte frame: larger packets arrive in \
                     several (AF_XDP multi-buffer)",
                    opts.xsk.frame_size
                );
            }
            Ok(too_large)
        }
        MultiBuffer::Off if too_large => Err(StackError::Mtu {
            iface: opts.iface.clone(),
            mtu: mtu.unwrap_or_default(),
            frame_size: opts.xsk.frame_size,
            max,
        }),
        MultiBuffer::Off => Ok(false),
    }
}

/// Open queue `q`'s socket, register it, give it its consumers and fill its fill
/// ring (before the program is attached: the first frames steered to the queue
/// find buffers instead of being dropped while the poller thread starts).
fn open_queue(
    opts: &StackOptions,
    program: &mut XdpProgram,
    q: u32,
    consumers: &dyn Fn(&mut QueueContext<'_>) -> Vec<ConsumerSpec>,
    threaded: &mut Vec<Pending>,
    run_index: usize,
    tx_tap: Option<&Arc<dyn TxTap>>,
) -> Result<QueueRun<XskSocket>, StackError> {
    let (mut socket, pool) = XskSocket::open(&opts.iface, q, &opts.xsk)?;
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
    // Transmitters may be used from other threads (the socket API's sends):
    // they wake the poller through the socket's doorbell.
    let doorbell = if opts.xsk.tx_ring {
        Some(socket.doorbell().map_err(|source| StackError::Receive {
            iface: opts.iface.clone(),
            queue: q,
            source,
        })?)
    } else {
        None
    };
    let mut poller = Poller::new(socket, pool, q, opts.poller);
    if let Some(bell) = doorbell {
        poller.set_doorbell(bell);
    }
    if let Some(tap) = tx_tap {
        poller.set_tx_tap(tap.clone());
    }
    if opts.stamps {
        poller.set_stamps(Some(crate::sys::process::realtime_offset_ns()));
    }
    let mut ctx = QueueContext {
        poller: &mut poller,
        live: Vec::new(),
    };
    let specs = consumers(&mut ctx);
    let live = ctx.live;
    let mut names = Vec::new();
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
                threaded.push((run_index, id, rx, consumer));
            }
        }
    }
    poller.refill();
    Ok(QueueRun {
        poller,
        names,
        live,
    })
}

/// How the pollers ended and whether the interface went away meanwhile.
type Ended = (Vec<Result<(), StackError>>, Option<LinkLost>);

/// The threads of a run: a thread per threaded consumer, a poller thread per
/// queue, and the calling thread supervising until they stop.
fn run_threads(
    opts: &StackOptions,
    runs: &mut [QueueRun<XskSocket>],
    threaded: Vec<Pending>,
    copier: Option<copies::Copier>,
    stop: &AtomicBool,
    supervisor: impl FnOnce(&AtomicBool) -> Option<LinkLost>,
) -> Ended {
    let consumers_done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let copy_thread = copier.map(|c| {
            let done = &consumers_done;
            scope.spawn(move || c.run(done))
        });
        let mut consumer_handles = Vec::new();
        for (run_index, id, rx, consumer) in threaded {
            let done = &consumers_done;
            let handle = scope.spawn(move || queue::consumer_thread(rx, consumer, done));
            runs[run_index]
                .poller
                .set_consumer_thread(id, handle.thread().clone());
            consumer_handles.push(handle);
        }
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let pollers: Vec<ScopedJoinHandle<'_, Result<(), StackError>>> = runs
            .iter_mut()
            .enumerate()
            .map(|(i, run)| {
                let (pin, iface) = (opts.pin_cpus, &opts.iface);
                scope.spawn(move || {
                    if pin && let Err(e) = pin_to_cpu(i % cpus) {
                        tracing::warn!(cpu = i % cpus, error = %e, "CPU pinning failed");
                    }
                    let result = queue::run(&mut run.poller, stop);
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
        let lost = supervisor(stop);
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
        if let Some(h) = copy_thread {
            h.join().expect("copy thread panicked");
        }
        (results, lost)
    })
}

/// Run the stack until `stop` is set, the duration passes or the count is reached.
/// `consumers` gives the consumers of each queue (the same for every queue,
/// typically; an empty list makes the stack an rxdrop counter); its
/// [`QueueContext`] names the queue and hands out transmitters for replies.
/// With `opts.stats_interval`, `on_interval` gets the live statistics that often,
/// on the calling thread.
pub fn run(
    opts: &StackOptions,
    stop: Arc<AtomicBool>,
    consumers: &dyn Fn(&mut QueueContext<'_>) -> Vec<ConsumerSpec>,
    on_interval: &mut dyn FnMut(Interval),
) -> Result<Summary, StackError> {
    run_with(opts, stop, consumers, Taps::default(), on_interval)
}

/// What [`run_with`] calls once, after the program is attached, every socket
/// is bound and the counters' starting values are read, and before any thread
/// of the run starts: the place to drop privileges and confine the process
/// (the rules then hold for every thread of the run from its first
/// instruction), and to open what must be opened as the user it runs as. An
/// error ends the run at once, detached, as [`StackError::Ready`].
pub type ReadyHook = Box<dyn FnOnce() -> Result<(), Box<dyn std::error::Error + Send + Sync>>>;

/// Where copies go: the XDP program's copies of the kernel's traffic
/// (`opts.kernel_capture` in [`CaptureMode::Copy`]) and the frames the
/// pollers transmit; and the caller's hook before the run's threads start.
#[derive(Default)]
pub struct Taps {
    /// Writes the copies, on the stack's copy thread.
    pub copies: Option<CopyWriter>,
    /// Shown every transmitted frame.
    pub outbound: Option<Arc<dyn TxTap>>,
    /// Called once before the run's threads start (see [`ReadyHook`]).
    pub ready: Option<ReadyHook>,
}

impl std::fmt::Debug for Taps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Taps")
            .field("copies", &self.copies)
            .field("outbound", &self.outbound)
            .field("ready", &self.ready.is_some())
            .finish()
    }
}

/// [`run`], with the capture's copies, its outbound tap and the caller's
/// hook before the run's threads start ([`Taps`]).
pub fn run_with(
    opts: &StackOptions,
    stop: Arc<AtomicBool>,
    consumers: &dyn Fn(&mut QueueContext<'_>) -> Vec<ConsumerSpec>,
    taps: Taps,
    on_interval: &mut dyn FnMut(Interval),
) -> Result<Summary, StackError> {
    let queues = resolve_queues(opts)?;
    let resolved = with_multi_buffer(opts)?;
    let opts = &resolved;
    // A veth, for the explanation of its checksum rejects (see supervise).
    let veth = doctor::veth_peer(&opts.iface);
    let mut program = load_program(opts)?;
    // Keeps the filter program alive (the jump table holds it too) until the
    // program is detached.
    let (_filter, ring) = copies::configure(opts, &mut program)?;
    let copier = match (ring, taps.copies) {
        (Some(ring), Some(writer)) => Some(copies::Copier::new(Some(ring), writer)),
        (None, Some(writer)) if taps.outbound.is_some() => Some(copies::Copier::new(None, writer)),
        _ => None,
    };
    let (mut runs, threaded) = open_queues(
        opts,
        &mut program,
        &queues,
        consumers,
        taps.outbound.as_ref(),
    )?;
    let zero_copy = runs.iter().all(|r| r.poller.rings().zero_copy());
    let xdp_mode = program
        .attach(&opts.iface, opts.xdp_mode)
        .map_err(|e| native_refused(&opts.iface, e))?;
    if let Some(why) = program.fell_back() {
        // `auto`: generic mode works where native mode was refused; say so.
        match refusal_text(&opts.iface, why) {
            Some(why) => tracing::warn!("{why}; running in generic (skb) mode instead"),
            None => tracing::info!("{why}; running in generic (skb) mode instead"),
        }
    }
    tracing::info!(iface = %opts.iface, %xdp_mode, zero_copy, queues = ?queues, "attached");
    let before = program.counters()?;
    let rx_queues = ifinfo::rx_queues(&opts.iface).unwrap_or(1);
    let capturing = opts.kernel_capture.is_some();
    let capture_before = if capturing {
        program.capture_counters(rx_queues)?
    } else {
        CaptureCounters::default()
    };

    let started = Instant::now();
    let cpu_started = cpu_seconds();
    let probes = probes(&runs);
    let mode = Mode {
        iface: opts.iface.clone(),
        xdp_mode,
        zero_copy,
        max_mtu: if opts.xsk.multi_buffer {
            u32::MAX
        } else {
            max_mtu(opts.xsk.frame_size)
        },
        veth,
    };
    // The XDP program's verdicts since attach, for the live statistics.
    let xdp = || {
        let mut by_name = program
            .counters()
            .map(|now| counters_by_name(&now.since(&before)))
            .unwrap_or_default();
        if capturing && let Ok(now) = program.capture_counters(rx_queues) {
            by_name.extend(capture_by_name(&now.since(&capture_before)));
        }
        by_name
    };
    if let Some(ready) = taps.ready {
        // Dropping the program on the way out detaches it.
        ready().map_err(StackError::Ready)?;
    }
    let (results, lost) = run_threads(opts, &mut runs, threaded, copier, &stop, |stop| {
        supervise(opts, &mode, stop, &probes, &xdp, on_interval, started)
    });
    let seconds = started.elapsed().as_secs_f64();
    let cpu_s = cpu_seconds() - cpu_started;
    let after = program.counters();
    let capture_after = if capturing {
        program
            .capture_counters(rx_queues)
            .map(|c| c.since(&capture_before))
            .ok()
    } else {
        None
    };
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
    let attached = Attached {
        xdp_mode,
        zero_copy,
        seconds,
        cpu_s,
    };
    let mut summary = finish(opts, &mut runs, &attached, &after.since(&before))?;
    if let Some(c) = capture_after {
        add_capture(&mut summary, &c);
    }
    Ok(summary)
}

/// The XDP program, loaded and configured (nothing attached yet): a
/// frags-aware one unless multi-buffer is off, which takes packets in
/// several buffers, and which veth takes natively whatever its peer's MTU.
fn load_program(opts: &StackOptions) -> Result<XdpProgram, StackError> {
    let frags = opts.multi_buffer != MultiBuffer::Off;
    let mut program = XdpProgram::load_with(LoadOptions { frags })?;
    program.configure(opts.mode, &opts.ports)?;
    program.set_stamps(opts.stamps)?;
    Ok(program)
}

/// The capture's counters over the run, in the summary.
fn add_capture(summary: &mut Summary, c: &CaptureCounters) {
    summary.xdp.extend(capture_by_name(c));
    summary.capture_lost = c
        .queues
        .iter()
        .map(|(q, _)| (*q, c.on_queue(*q, xdp_ebpf::CaptureCounter::RingFull)))
        .filter(|(_, n)| *n > 0)
        .collect();
}

/// `opts` with the sockets' multi-buffer binding decided (see
/// [`multi_buffer_sockets`]).
fn with_multi_buffer(opts: &StackOptions) -> Result<StackOptions, StackError> {
    let sg = multi_buffer_sockets(opts)?;
    let mut resolved = opts.clone();
    resolved.xsk.multi_buffer = sg;
    resolved.poller.multi_buffer = sg;
    Ok(resolved)
}

/// Open every queue of `queues` (see [`open_queue`]).
fn open_queues(
    opts: &StackOptions,
    program: &mut XdpProgram,
    queues: &[u32],
    consumers: &dyn Fn(&mut QueueContext<'_>) -> Vec<ConsumerSpec>,
    tx_tap: Option<&Arc<dyn TxTap>>,
) -> Result<(Vec<QueueRun<XskSocket>>, Vec<Pending>), StackError> {
    let mut runs = Vec::with_capacity(queues.len());
    let mut threaded = Vec::new();
    for &q in queues {
        let run = open_queue(
            opts,
            program,
            q,
            consumers,
            &mut threaded,
            runs.len(),
            tx_tap,
        )
        .map_err(|e| queue_busy(opts, q, e))?;
        runs.push(run);
    }
    Ok((runs, threaded))
}

/// The largest peer MTU with which a veth takes native XDP: a 4 KiB page
/// less the 256 bytes of XDP headroom, the kernel's `skb_shared_info` (320
/// bytes on x86_64) and the Ethernet header (`veth_xdp_set`: "Peer MTU is too
/// large to set XDP"; measured on Linux 6.18: 3506 attaches, 3507 does not).
pub const VETH_NATIVE_XDP_MAX_PEER_MTU: u32 = 3506;

/// A native-mode refusal told with its cause and fix, where the kernel's
/// reason is known (a veth's peer MTU, its queue counts); other errors pass
/// unchanged.
fn native_refused(iface: &str, e: LoaderError) -> StackError {
    match refusal_text(iface, &e) {
        Some(text) => StackError::NativeXdpRefused(text),
        None => e.into(),
    }
}

/// What [`native_refused`] says of `e`, when it knows the cause.
fn refusal_text(iface: &str, e: &LoaderError) -> Option<String> {
    let LoaderError::NativeRefused { errno, .. } = e else {
        return None;
    };
    let peer = doctor::veth_peer(iface)?;
    let (ns, dev) = (peer.netns, peer.ifname.unwrap_or(peer.name));
    let ip = match &ns {
        Some(ns) => format!("ip -n {ns} link"),
        None => "ip link".to_string(),
    };
    let generic = "or run in generic mode (--xdp-mode skb; --xdp-mode auto falls back to it)";
    let text = match *errno {
        libc::ERANGE => format!(
            "native XDP on {iface} refused: a veth takes a program without multi-buffer \
             support only while its peer's MTU is at most {VETH_NATIVE_XDP_MAX_PEER_MTU} (the \
             kernel: \"Peer MTU is too large to set XDP\"), and its peer {dev} has more: let \
             packets span several frames (--multi-buffer auto, which veth takes at any peer \
             MTU), lower it (`{ip} set dev {dev} mtu {VETH_NATIVE_XDP_MAX_PEER_MTU}`), {generic}"
        ),
        libc::ENOSPC => format!(
            "native XDP on {iface} refused: a veth takes it only with at least as many RX \
             queues as its peer {dev} has TX queues (the kernel: \"XDP expects number of rx \
             queues not less than peer tx queues\"): recreate the pair with numrxqueues \
             on {iface} at least numtxqueues on {dev} (`ip link add ... numrxqueues N ... \
             peer ... numtxqueues N`), {generic}"
        ),
        _ => return None,
    };
    Some(text)
}

/// A queue another AF_XDP socket holds (EBUSY), told as such: which program
/// holds it, when the interface's XDP program says (its holders' pids), and
/// the way out. Other errors pass unchanged.
fn queue_busy(opts: &StackOptions, queue: u32, e: StackError) -> StackError {
    let StackError::Xsk(XskError::Bind { source, .. }) = &e else {
        return e;
    };
    if source.raw_os_error() != Some(libc::EBUSY) {
        return e;
    }
    let holders = ifinfo::if_index(&opts.iface)
        .and_then(|i| crate::sys::netlink::link_info(i).ok())
        .filter(|l| l.xdp_prog_id != 0)
        .map(|l| crate::sys::process::holders_of_bpf_prog(l.xdp_prog_id))
        .unwrap_or_default();
    let holder = match holders.as_slice() {
        [] => "another program".to_string(),
        h => h
            .iter()
            .map(|(pid, comm)| format!("{comm} (pid {pid})"))
            .collect::<Vec<_>>()
            .join(", "),
    };
    StackError::QueueBusy {
        iface: opts.iface.clone(),
        queue,
        holder,
    }
}

/// What the supervisor reads of each queue while the run goes on.
fn probes(runs: &[QueueRun<XskSocket>]) -> Vec<QueueProbe> {
    runs.iter()
        .map(|r| QueueProbe {
            queue: r.poller.queue(),
            stats: r.poller.stats(),
            pool: r.poller.pool().probe(),
            fd: r.poller.rings().raw_fd(),
            consumers: r.names.clone(),
            live: r.live.clone(),
        })
        .collect()
}

/// The capture's counters in the XDP program, by name.
fn capture_by_name(c: &CaptureCounters) -> std::collections::BTreeMap<&'static str, u64> {
    c.iter().map(|(k, v)| (k.name(), v)).collect()
}

/// How the run went, for its summary.
struct Attached {
    xdp_mode: AttachedMode,
    zero_copy: bool,
    seconds: f64,
    cpu_s: f64,
}

/// The summary of a run that ended: frames that consumers released at the end
/// are reclaimed first, so that it shows where every frame is.
fn finish(
    opts: &StackOptions,
    runs: &mut [QueueRun<XskSocket>],
    attached: &Attached,
    xdp: &XdpCounters,
) -> Result<Summary, StackError> {
    for run in runs.iter_mut() {
        run.poller.refill();
    }
    let mut per_queue = Vec::with_capacity(runs.len());
    for run in runs.iter_mut() {
        per_queue.push(summarize(run).map_err(|source| StackError::Receive {
            iface: opts.iface.clone(),
            queue: run.poller.queue(),
            source,
        })?);
    }
    Ok(Summary {
        kind: "summary",
        iface: opts.iface.clone(),
        xdp_mode: attached.xdp_mode,
        zero_copy: attached.zero_copy,
        seconds: attached.seconds,
        cpu_s: attached.cpu_s,
        packets: per_queue.iter().map(|q| q.packets).sum(),
        bytes: per_queue.iter().map(|q| q.bytes).sum(),
        queues: per_queue,
        xdp: counters_by_name(xdp),
        capture_lost: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::StackError;

    #[test]
    fn an_mtu_error_advises_larger_frames_only_where_there_are_some() {
        let mtu = |frame_size| {
            StackError::Mtu {
                iface: "eth0".into(),
                mtu: 9000,
                frame_size,
                max: super::max_mtu(frame_size),
            }
            .to_string()
        };
        // 9000 fits neither frame size: larger frames are no advice.
        assert!(!mtu(2048).contains("--frame-size 4096"), "{}", mtu(2048));
        assert!(!mtu(4096).contains("--frame-size 4096"), "{}", mtu(4096));
        assert!(mtu(2048).contains("--multi-buffer auto"), "{}", mtu(2048));
        assert!(
            mtu(4096).contains("ip link set dev eth0 mtu 3818"),
            "{}",
            mtu(4096)
        );
        let fits_4096 = StackError::Mtu {
            iface: "eth0".into(),
            mtu: 3000,
            frame_size: 2048,
            max: super::max_mtu(2048),
        }
        .to_string();
        assert!(fits_4096.contains("--frame-size 4096"), "{fits_4096}");
    }
}
