//! Frames the capture gets as copies, not as views of the UMEM: those the XDP
//! program copied out of the kernel's own traffic (a non-destructive capture:
//! the frame went on to the kernel), and those the stack transmits (the
//! outbound direction). Both reach the file through a [`CopyWriter`] on the
//! stack's copy thread, batched into one lock of the shared writer.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use crossbeam_queue::ArrayQueue;

use super::{Capture, CaptureRecord, Direction, Selects, Shared};
use crate::poller::TxTap;

/// Transmitted frames that may wait for the copy thread, per capture.
pub const OUTBOUND_QUEUE: usize = 4096;

/// A copied frame, borrowed.
#[derive(Clone, Copy, Debug)]
pub struct Copied<'a> {
    /// The frame's bytes (at most the copy's length).
    pub bytes: &'a [u8],
    /// The frame's length on the wire (`bytes` may hold less).
    pub wire_len: usize,
    /// CLOCK_REALTIME ns since the Unix epoch.
    pub timestamp_ns: u64,
    /// The RX queue it arrived on, or whose TX ring sent it.
    pub queue: u32,
    /// Which way it went.
    pub direction: Direction,
}

impl CaptureRecord for Copied<'_> {
    fn bytes(&self) -> &[u8] {
        self.bytes
    }
    fn timestamp_ns(&self) -> u64 {
        self.timestamp_ns
    }
    fn queue(&self) -> u32 {
        self.queue
    }
    fn wire_len(&self) -> usize {
        self.wire_len.max(self.bytes.len())
    }
    fn direction(&self) -> Direction {
        self.direction
    }
}

/// A transmitted frame waiting for the copy thread.
#[derive(Debug)]
struct OutFrame {
    bytes: Vec<u8>,
    timestamp_ns: u64,
    queue: u32,
}

/// The outbound side of a capture: the pollers' [`TxTap`]. Each frame a poller
/// transmits that the expression selects is copied (the TX frame itself goes
/// back to the pool at completion, which must not wait for the file) into a
/// bounded queue the copy thread drains; a full queue drops the copy, counted.
#[derive(Debug)]
pub struct Outbound {
    frames: ArrayQueue<OutFrame>,
    filter: Option<Arc<dyn Selects>>,
    /// Copies the full queue refused.
    dropped: AtomicU64,
    /// Frames the expression did not select.
    unselected: AtomicU64,
}

impl Outbound {
    /// An outbound tap keeping the frames `filter` selects (every frame without).
    pub fn new(filter: Option<Arc<dyn Selects>>) -> Self {
        Self {
            frames: ArrayQueue::new(OUTBOUND_QUEUE),
            filter,
            dropped: AtomicU64::new(0),
            unselected: AtomicU64::new(0),
        }
    }

    /// Copies lost because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Transmitted frames the expression did not select.
    pub fn unselected(&self) -> u64 {
        self.unselected.load(Ordering::Relaxed)
    }
}

impl TxTap for Outbound {
    fn transmitted(&self, queue: u32, frame: &[u8]) {
        if let Some(f) = &self.filter
            && !f.selects(frame)
        {
            self.unselected.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let copy = OutFrame {
            bytes: frame.to_vec(),
            timestamp_ns: now_ns(),
            queue,
        };
        if self.frames.push(copy).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Writes copies into the capture, each straight from where it lies (the XDP
/// program's ring, the outbound queue) into the writer's buffer, under one
/// lock of the shared writer per batch ([`CopyWriter::write_from`]). Counts
/// against `-c` like the views do.
#[derive(Debug)]
pub struct CopyWriter {
    capture: Capture,
    outbound: Option<Arc<Outbound>>,
    last_flush: Instant,
}

impl CopyWriter {
    pub(super) fn new(capture: Capture, outbound: Option<Arc<Outbound>>) -> Self {
        Self {
            capture,
            outbound,
            last_flush: Instant::now(),
        }
    }

    /// Write the copies `source` hands to the sink it is given, all under one
    /// lock of the writer (the source drains a ring that wants its space back
    /// at once: each copy is written from the ring itself, never gathered);
    /// returns what `source` returns.
    pub fn write_from<T>(&mut self, source: impl FnOnce(&mut dyn FnMut(&Copied<'_>)) -> T) -> T {
        let capture = &self.capture;
        let monotonic = capture.monotonic;
        let mut guard = capture.lock();
        let Shared {
            writer, last_ns, ..
        } = &mut *guard;
        let out = source(&mut |copy: &Copied<'_>| {
            if !capture.take_slot() {
                return;
            }
            let Some(writer) = writer.as_mut() else {
                capture
                    .unopened
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return;
            };
            let mut ts = copy.timestamp_ns;
            if monotonic {
                ts = ts.max(*last_ns);
                *last_ns = ts;
            }
            writer.write(Copied {
                timestamp_ns: ts,
                ..*copy
            });
        });
        if let Some(writer) = writer {
            capture.report_error(writer);
        }
        out
    }

    /// Write one copy.
    pub fn push(&mut self, copy: &Copied<'_>) {
        self.write_from(|sink| sink(copy));
    }

    /// Write what the pollers transmitted since the last call; and hand the
    /// file what it holds once a second, so that a reader following it does
    /// not lag while traffic trickles.
    pub fn flush(&mut self) {
        if let Some(out) = self.outbound.clone() {
            self.write_from(|sink| {
                while let Some(f) = out.frames.pop() {
                    sink(&Copied {
                        bytes: &f.bytes,
                        wire_len: f.bytes.len(),
                        timestamp_ns: f.timestamp_ns,
                        queue: f.queue,
                        direction: Direction::Outbound,
                    });
                }
            });
        }
        if self.last_flush.elapsed() >= super::FLUSH_EVERY {
            if let Some(w) = &mut self.capture.lock().writer {
                w.flush();
            }
            self.last_flush = Instant::now();
        }
    }
}

impl Drop for CopyWriter {
    fn drop(&mut self) {
        self.flush();
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct FirstByte(u8);

    impl Selects for FirstByte {
        fn selects(&self, frame: &[u8]) -> bool {
            frame.first() == Some(&self.0)
        }
    }

    #[test]
    fn the_tap_keeps_what_the_expression_selects_and_counts_the_rest() {
        let tap = Outbound::new(Some(Arc::new(FirstByte(7))));
        tap.transmitted(0, &[7, 1, 2]);
        tap.transmitted(1, &[8, 1, 2]);
        tap.transmitted(1, &[7, 9]);
        assert_eq!(tap.unselected(), 1);
        let got: Vec<(u32, Vec<u8>)> = std::iter::from_fn(|| tap.frames.pop())
            .map(|f| (f.queue, f.bytes))
            .collect();
        assert_eq!(got, vec![(0, vec![7, 1, 2]), (1, vec![7, 9])]);
    }

    /// The epb_flags, time, original length and data of every packet of a
    /// pcapng file.
    fn packets(path: &std::path::Path) -> Vec<(u32, u64, u32, Vec<u8>)> {
        use pcap_file::pcapng::{
            Block, PcapNgReader, blocks::enhanced_packet::EnhancedPacketOption,
        };
        let mut r = PcapNgReader::new(std::fs::File::open(path).unwrap()).unwrap();
        let mut out = Vec::new();
        while let Some(b) = r.next_block() {
            if let Block::EnhancedPacket(p) = b.unwrap() {
                let flags = p
                    .options
                    .iter()
                    .find_map(|o| match o {
                        EnhancedPacketOption::Flags(f) => Some(*f),
                        _ => None,
                    })
                    .unwrap_or(0);
                out.push((
                    flags,
                    p.timestamp.as_nanos() as u64,
                    p.original_len,
                    p.data.into_owned(),
                ));
            }
        }
        out
    }

    #[test]
    fn copies_and_transmitted_frames_reach_the_file_marked_by_direction() {
        use crate::capture::{CaptureConfig, Format, Output};
        let path =
            std::env::temp_dir().join(format!("xdpstack-copies-{}.pcapng", std::process::id()));
        let config = CaptureConfig {
            format: Format::PcapNg,
            ..CaptureConfig::new(Output::File(path.clone()))
        };
        let capture = Capture::open(&config, "eth9", &[0], Some(3)).unwrap();
        let out = Arc::new(Outbound::new(None));
        let mut w = capture.copy_writer(Some(out.clone()));
        let (a, b) = ([1u8; 60], [2u8; 70]);
        w.push(&Copied {
            bytes: &a,
            wire_len: 60,
            timestamp_ns: 10,
            queue: 3,
            direction: Direction::Inbound,
        });
        out.transmitted(0, &[3u8; 64]);
        w.push(&Copied {
            bytes: &b,
            wire_len: 1500,
            timestamp_ns: 20,
            queue: 0,
            direction: Direction::Inbound,
        });
        w.flush();
        // `-c 3`: the fourth is not written.
        w.push(&Copied {
            bytes: &b,
            wire_len: 70,
            timestamp_ns: 30,
            queue: 0,
            direction: Direction::Inbound,
        });
        drop(w);
        let summary = capture.close(&[]);
        assert_eq!(summary.stats.records_written, 3);
        let got = packets(&path);
        let _ = std::fs::remove_file(&path);
        let view: Vec<(u32, u64, u32, usize, u8)> = got
            .iter()
            .map(|(f, t, orig, d)| (*f & 3, *t, *orig, d.len(), d[0]))
            .collect();
        assert_eq!(view[0], (1, 10, 60, 60, 1));
        assert_eq!(
            view[1],
            (1, 20, 1500, 70, 2),
            "a copy cut short keeps its wire length"
        );
        assert_eq!(
            (view[2].0, view[2].2, view[2].3, view[2].4),
            (2, 64, 64, 3),
            "outbound, stamped when sent"
        );
        assert_eq!(view.len(), 3);
    }

    #[test]
    fn a_full_tap_drops_and_counts() {
        let tap = Outbound::new(None);
        for i in 0..OUTBOUND_QUEUE + 5 {
            tap.transmitted(0, &[i as u8]);
        }
        assert_eq!(tap.dropped(), 5);
        assert_eq!(tap.frames.len(), OUTBOUND_QUEUE);
    }
}
