//! Capture: frame views in, records in a pcap/pcapng file out. [`Capture`] and
//! its per-queue [`CaptureConsumer`]s sit on the poller's consumer interface;
//! [`CaptureWriter`] (in `writer`) is the file format and output half, usable
//! on its own.
//!
//! One [`Capture`] owns the writer; each RX queue gets a [`CaptureConsumer`] that
//! runs on its own thread behind the poller's bounded queue. A consumer gathers
//! the views it is given and writes them as one batch (one lock of the shared
//! writer per batch), then drops them at once, so the fill ring gets the frames
//! back right after their bytes were copied into the write buffer.
//!
//! A multi-buffer packet (jumbo frames: one view of a chain of UMEM frames) is
//! one record with its true length. The filter decides on it as on the whole
//! packet: on its first buffer when that holds every byte the expression
//! reads ([`Selects::reads_at_most`]), else on a copy of the whole packet.
//!
//! Records of one queue are in receive order with non-decreasing timestamps.
//! Records of different queues interleave by batch. In pcapng each queue is an
//! interface of its own, so every record keeps its true time. Classic pcap has a
//! single interface and its readers expect time order, so there a record that is
//! earlier than the previous one (by at most the time between two batches of two
//! queues, microseconds) is written with the previous record's time.

use std::{
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use crate::{frame::FrameView, poller::Consumer};

mod copies;
mod writer;

pub use copies::{Copied, CopyWriter, OUTBOUND_QUEUE, Outbound};
pub use writer::{
    CaptureConfig, CaptureEnd, CaptureError, CaptureRecord, CaptureStats, CaptureSummary,
    CaptureWriter, Clock, Direction, Format, MAX_SNAPLEN, Output, QueueStats, SystemClock,
};

/// libpcap's own interpreter over the frame: what tcpdump would keep.
impl Selects for crate::filter::Filter {
    fn selects(&self, frame: &[u8]) -> bool {
        self.matches(frame)
    }
    fn reads_at_most(&self) -> Option<usize> {
        self.reach().map(|n| n as usize)
    }
}

/// A capture's selection: which frames it keeps (a compiled pcap-filter
/// expression, in practice). The XDP program applies the same expression to the
/// frames no app claims; this decides for the frames the stack receives for its
/// apps and for those it transmits.
pub trait Selects: Send + Sync + std::fmt::Debug {
    /// True when the capture keeps `frame` (Ethernet header first): all of
    /// it, which is also its length on the wire.
    fn selects(&self, frame: &[u8]) -> bool;
    /// How many leading bytes of a frame the selection reads at most, if it
    /// reads no more and not the frame's length: it then decides on any frame
    /// as on those bytes alone, and a multi-buffer frame whose first buffer
    /// holds them is not copied whole to be decided. `None` (the default):
    /// the selection may read anything, and gets every frame whole.
    fn reads_at_most(&self) -> Option<usize> {
        None
    }
}

/// Whether `filter`, which reads at most `reach` bytes of a frame, selects
/// `view`, as it would on the whole packet: a multi-buffer packet is decided
/// on its first buffer when that holds all the filter reads, or else copied
/// whole into `scratch` (reused) first.
fn selected(filter: &dyn Selects, reach: usize, view: &FrameView, scratch: &mut Vec<u8>) -> bool {
    let first = view.bytes();
    if !view.is_chained() || reach <= first.len() {
        return filter.selects(first);
    }
    filter.selects(view.contiguous(scratch))
}

/// The writer and the time of the last record written; before
/// [`Capture::open_output`], what the writer is to be opened with.
#[derive(Debug)]
struct Shared {
    writer: Option<CaptureWriter>,
    last_ns: u64,
    pending: Option<Pending>,
}

/// What a prepared capture's writer is opened with.
#[derive(Debug)]
struct Pending {
    config: CaptureConfig,
    iface: String,
    queues: Vec<u32>,
}

/// A view with the time it is written with.
#[derive(Debug)]
struct Stamped {
    view: FrameView,
    ns: u64,
}

impl CaptureRecord for Stamped {
    fn bytes(&self) -> &[u8] {
        self.view.bytes()
    }
    fn data_len(&self) -> usize {
        self.view.len()
    }
    fn for_each_segment<'a>(&'a self, f: &mut dyn FnMut(&'a [u8])) {
        CaptureRecord::for_each_segment(&self.view, f);
    }
    fn timestamp_ns(&self) -> u64 {
        self.ns
    }
    fn queue(&self) -> u32 {
        self.view.queue()
    }
    fn direction(&self) -> Direction {
        CaptureRecord::direction(&self.view)
    }
}

/// How often buffered records are pushed to the file while traffic trickles, so
/// that a reader following the file does not lag far behind.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Views gathered before a write.
const BATCH: usize = 256;

/// A capture file shared by the capture consumers of every queue.
#[derive(Debug, Clone)]
pub struct Capture {
    shared: Arc<Mutex<Shared>>,
    /// Keep times non-decreasing across queues (classic pcap, several queues).
    monotonic: bool,
    /// Records still wanted with `-c`; `u64::MAX` without a limit.
    remaining: Arc<AtomicU64>,
    /// Set once the first write error has been reported.
    reported: Arc<AtomicBool>,
    /// Set when the writer ends the capture on its own ([`CaptureEnd`]).
    stop: Option<Arc<AtomicBool>>,
    /// Which received views to keep (every one without).
    filter: Option<Arc<dyn Selects>>,
    /// The bytes of a frame `filter` reads ([`Selects::reads_at_most`];
    /// `usize::MAX`: all of them).
    filter_reach: usize,
    /// Keep received frames (`-Q in` or `inout`).
    inbound: bool,
    /// Views the filter did not select.
    unselected: Arc<AtomicU64>,
    /// Records offered before the output was opened (none when the stack
    /// opens it before its threads start, as the service does).
    unopened: Arc<AtomicU64>,
}

impl Capture {
    /// Open the capture output (before anything is attached, so a bad path fails
    /// early) for `iface` and its `queues`; `count` limits the records written.
    pub fn open(
        config: &CaptureConfig,
        iface: &str,
        queues: &[u32],
        count: Option<u64>,
    ) -> Result<Self, CaptureError> {
        let capture = Self::prepare(config, iface, queues, count)?;
        capture.open_output()?;
        Ok(capture)
    }

    /// Check the options now and open the output later, with
    /// [`Self::open_output`]: consumers can be made meanwhile. The service
    /// opens it once the stack is attached and the process has dropped its
    /// privileges (`-Z`), so that the file is the user's, and no file is left
    /// behind by a run that could not start.
    pub fn prepare(
        config: &CaptureConfig,
        iface: &str,
        queues: &[u32],
        count: Option<u64>,
    ) -> Result<Self, CaptureError> {
        CaptureWriter::check(config)?;
        let pending = Pending {
            config: config.clone(),
            iface: iface.to_owned(),
            queues: queues.to_vec(),
        };
        Ok(Self {
            shared: Arc::new(Mutex::new(Shared {
                writer: None,
                last_ns: 0,
                pending: Some(pending),
            })),
            monotonic: config.format == Format::Pcap && queues.len() > 1,
            remaining: Arc::new(AtomicU64::new(count.unwrap_or(u64::MAX))),
            reported: Arc::new(AtomicBool::new(false)),
            stop: None,
            filter: None,
            filter_reach: usize::MAX,
            inbound: true,
            unselected: Arc::new(AtomicU64::new(0)),
            unopened: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Open the output of a [`prepared`](Self::prepare) capture (the first
    /// file, or standard output); nothing to do once open.
    pub fn open_output(&self) -> Result<(), CaptureError> {
        let mut guard = self.lock();
        if let Some(p) = guard.pending.take() {
            match CaptureWriter::open(&p.config, &p.iface, &p.queues) {
                Ok(w) => guard.writer = Some(w),
                Err(e) => {
                    guard.pending = Some(p);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// The writer's counters so far (zeros before the output is open).
    pub fn stats(&self) -> CaptureStats {
        let mut stats = self
            .lock()
            .writer
            .as_ref()
            .map(CaptureWriter::stats)
            .unwrap_or_default();
        stats.records_dropped += self.unopened.load(Ordering::Relaxed);
        stats
    }

    /// Sets `stop` when the writer ends the capture on its own: the reader of
    /// its pipe went away, or `-G` with `-W` wrote its files
    /// ([`CaptureEnd`]). Give it the run's stop flag, and the run ends with
    /// the capture, as tcpdump's does. Consumers made before this call do not
    /// set it.
    pub fn stop_on_end(mut self, stop: Arc<AtomicBool>) -> Self {
        self.stop = Some(stop);
        self
    }

    /// Keep only the received frames `filter` selects (before any consumer is
    /// made).
    pub fn with_filter(mut self, filter: Arc<dyn Selects>) -> Self {
        self.filter_reach = filter.reads_at_most().unwrap_or(usize::MAX);
        self.filter = Some(filter);
        self
    }

    /// Keep no received frame at all (`-Q out`): the consumers release every
    /// view at once.
    pub fn outbound_only(mut self) -> Self {
        self.inbound = false;
        self
    }

    /// Received frames the filter did not select.
    pub fn unselected(&self) -> u64 {
        self.unselected.load(Ordering::Relaxed)
    }

    /// The writer of copies (the XDP program's, and those `outbound` gathers
    /// from the pollers), for the stack's copy thread.
    pub fn copy_writer(&self, outbound: Option<Arc<Outbound>>) -> CopyWriter {
        CopyWriter::new(self.clone(), outbound)
    }

    /// `-c`: take one of the remaining records, or false when none is left.
    fn take_slot(&self) -> bool {
        let remaining = &self.remaining;
        remaining.load(Ordering::Relaxed) == u64::MAX
            || remaining
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| r.checked_sub(1))
                .is_ok()
    }

    /// Say the first write error once (the run goes on: the UDP consumer is
    /// still served, frames keep being released, and the exit status says it);
    /// and stop the run when the writer ended the capture on its own.
    fn report_error(&self, writer: &CaptureWriter) {
        if let Some(err) = writer.error()
            && !self.reported.swap(true, Ordering::Relaxed)
        {
            tracing::error!("{err}; capture stopped, frames are still released and counted");
        }
        if let (Some(end), Some(stop)) = (writer.ended(), &self.stop)
            && !stop.swap(true, Ordering::Relaxed)
        {
            tracing::info!("capture ended ({end:?}): stopping the run");
        }
    }

    /// A consumer for one queue.
    pub fn consumer(&self) -> CaptureConsumer {
        CaptureConsumer {
            capture: self.clone(),
            batch: Vec::with_capacity(BATCH),
            stamped: Vec::with_capacity(BATCH),
            scratch: Vec::new(),
            last_flush: Instant::now(),
        }
    }

    /// True once `-c` records have been written (or offered).
    pub fn complete(&self) -> bool {
        self.remaining.load(Ordering::Relaxed) == 0
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A poisoned lock means a capture thread panicked, which aborts the
        // process (see main.rs); recover the guard regardless.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Flush and close the file with each queue's counters (for pcapng's
    /// interface statistics blocks). Call after every consumer is gone.
    pub fn close(self, stats: &[QueueStats]) -> CaptureSummary {
        let Capture {
            shared, unopened, ..
        } = self;
        let unopened = unopened.load(Ordering::Relaxed);
        let never_opened = |unopened| CaptureSummary {
            stats: CaptureStats {
                records_dropped: unopened,
                ..CaptureStats::default()
            },
            error: None,
            end: None,
            path: None,
        };
        let mut summary = match Arc::try_unwrap(shared) {
            Ok(m) => match m.into_inner().unwrap_or_else(|e| e.into_inner()).writer {
                Some(w) => w.close(stats),
                None => never_opened(0),
            },
            Err(shared) => {
                // A consumer still exists (a library user kept one): close what
                // we can through the lock; the file stays valid.
                let mut guard = shared.lock().unwrap_or_else(|e| e.into_inner());
                match &mut guard.writer {
                    Some(w) => {
                        w.flush();
                        CaptureSummary {
                            stats: w.stats(),
                            error: None,
                            end: w.ended(),
                            path: w.current_path().map(Into::into),
                        }
                    }
                    None => never_opened(0),
                }
            }
        };
        summary.stats.records_dropped += unopened;
        summary
    }
}

/// Writes one queue's views to the shared capture file.
#[derive(Debug)]
pub struct CaptureConsumer {
    capture: Capture,
    batch: Vec<FrameView>,
    /// The batch with its write times, while it is written.
    stamped: Vec<Stamped>,
    /// A multi-buffer packet made contiguous for the filter, when it reads
    /// beyond the first buffer.
    scratch: Vec<u8>,
    last_flush: Instant,
}

impl CaptureConsumer {
    fn write_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let monotonic = self.capture.monotonic;
        let mut guard = self.capture.lock();
        let Shared {
            writer, last_ns, ..
        } = &mut *guard;
        let Some(writer) = writer.as_mut() else {
            let n = self.batch.len() as u64;
            self.batch.clear();
            self.capture.unopened.fetch_add(n, Ordering::Relaxed);
            return;
        };
        self.stamped.extend(self.batch.drain(..).map(|view| {
            let mut ns = view.timestamp_ns();
            if monotonic {
                ns = ns.max(*last_ns);
                *last_ns = ns;
            }
            Stamped { view, ns }
        }));
        // Large frames go from the UMEM to the file with writev (one copy);
        // the views are released once the batch is written.
        writer.write_records(&self.stamped);
        self.stamped.clear();
        self.capture.report_error(writer);
    }
}

impl Consumer for CaptureConsumer {
    fn consume(&mut self, view: &FrameView) {
        // Inline use: keep the frame until the batch is written.
        self.consume_owned(view.clone());
    }

    fn consume_owned(&mut self, view: FrameView) {
        if !self.capture.inbound {
            return;
        }
        if let Some(f) = &self.capture.filter
            && !selected(&**f, self.capture.filter_reach, &view, &mut self.scratch)
        {
            self.capture.unselected.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // `-c`: take one of the remaining slots, or drop the view.
        if !self.capture.take_slot() {
            return;
        }
        self.batch.push(view);
        if self.batch.len() >= BATCH {
            self.write_batch();
        }
    }

    fn flush(&mut self) {
        self.write_batch();
        if self.last_flush.elapsed() >= FLUSH_EVERY {
            if let Some(w) = &mut self.capture.lock().writer {
                w.flush();
            }
            self.last_flush = Instant::now();
        }
    }
}

impl Drop for CaptureConsumer {
    fn drop(&mut self) {
        self.write_batch();
    }
}

#[cfg(test)]
mod chain_tests;
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prepared_capture_creates_nothing_until_opened() {
        let dir = std::env::temp_dir().join(format!("xdpstack-prepare-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cap.pcap");
        let config = CaptureConfig::new(Output::File(path.clone()));
        let capture = Capture::prepare(&config, "xs0", &[0], None).unwrap();
        assert!(!path.exists(), "nothing created before open_output");
        assert_eq!(capture.stats(), CaptureStats::default());
        capture.open_output().unwrap();
        assert!(path.exists());
        capture.open_output().unwrap();
        let summary = capture.close(&[]);
        assert_eq!(summary.path.as_deref(), Some(path.as_path()));
        std::fs::remove_dir_all(&dir).unwrap();

        // Bad options fail at once; a path that cannot be created fails at
        // open, and again if asked again.
        let mut bad = CaptureConfig::new(Output::File(dir.join("x")));
        bad.file_count = Some(3);
        assert!(matches!(
            Capture::prepare(&bad, "xs0", &[0], None),
            Err(CaptureError::Config(_))
        ));
        let missing = CaptureConfig::new(Output::File(dir.join("no/such/dir.pcap")));
        let capture = Capture::prepare(&missing, "xs0", &[0], None).unwrap();
        assert!(matches!(
            capture.open_output(),
            Err(CaptureError::Open { .. })
        ));
        assert!(capture.open_output().is_err());
        let summary = capture.close(&[]);
        assert_eq!(
            (summary.path, summary.stats),
            (None, CaptureStats::default())
        );
    }
}
