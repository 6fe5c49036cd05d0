//! The capture's side of a run in the XDP program: the expression's program
//! in the jump table, and the copy thread that drains the program's ring of
//! copies (and the pollers' outbound frames) into the capture.

use std::{
    os::fd::{AsFd as _, OwnedFd},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use xdp_ebpf::{COPY_HEADER_LEN, CaptureMode, JUMP_SELECTED, JUMP_UNSELECTED};

use super::{StackError, StackOptions};
use crate::{
    capture::{Copied, CopyWriter, Direction},
    filter::{
        Filter,
        ebpf::{Then, translate},
    },
    sys::{
        loader::{CopyRing, XdpProgram},
        process::realtime_offset_ns,
    },
};

/// How long the copy thread sleeps when the ring and the outbound queue were
/// empty. The XDP program submits its copies without waking the reader (see
/// its `copy_as`), so this is the capture's latency when idle; at 1 Mpps of
/// 60-byte frames 2 ms fill 300 KB of the 16 MiB ring.
const WAIT: Duration = Duration::from_millis(2);
/// How often the monotonic-to-Unix offset is taken anew (NTP slews the clock).
const RESYNC: Duration = Duration::from_secs(1);
/// Copies taken from the ring before the batch is written.
const DRAIN: usize = 4096;

/// Put `opts.kernel_capture` in place: the expression's program in the jump
/// table (kept alive by the returned fd) and the configuration; the ring of
/// copies in copy mode.
pub(super) fn configure(
    opts: &StackOptions,
    program: &mut XdpProgram,
) -> Result<(Option<OwnedFd>, Option<CopyRing>), StackError> {
    let Some(kc) = &opts.kernel_capture else {
        return Ok((None, None));
    };
    let filter = match &kc.filter {
        Some(f) => Some(load_filter(program, f)?),
        None => None,
    };
    program.configure_capture(kc.mode, filter.as_ref().map(|f| f.as_fd()), kc.snaplen)?;
    let ring = match kc.mode {
        CaptureMode::Copy => Some(program.take_copies()?),
        _ => None,
    };
    Ok((filter, ring))
}

/// `filter` as an XDP program of its own, translated to eBPF and verified by
/// the kernel, which continues in `program`'s `xdpstack_sel` or
/// `xdpstack_unsel` (or their frags variants) through its jump table; for
/// [`XdpProgram::configure_capture`].
pub fn load_filter(program: &XdpProgram, filter: &Filter) -> Result<OwnedFd, StackError> {
    let then = Then::TailCall {
        prog_array_fd: program.jump_table_fd()?,
        selected: JUMP_SELECTED,
        unselected: JUMP_UNSELECTED,
    };
    let failed =
        |e: &dyn std::fmt::Display| StackError::Filter(format!("`{}`: {e}", filter.expression()));
    let insns = translate(filter.instructions(), then).map_err(|e| failed(&e))?;
    // Frags-aware exactly when `program` is: the jump table refuses a mismatch.
    program
        .load_filter_program("xdpstack_filter", &insns)
        .map_err(|e| failed(&e))
}

/// The copy thread's work.
#[derive(Debug)]
pub(super) struct Copier {
    ring: Option<CopyRing>,
    writer: CopyWriter,
}

impl Copier {
    pub(super) fn new(ring: Option<CopyRing>, writer: CopyWriter) -> Self {
        Self { ring, writer }
    }

    /// Until `done` (the pollers and consumers have stopped): take copies from
    /// the ring and the outbound queue and write them; then drain both once
    /// more.
    pub(super) fn run(mut self, done: &AtomicBool) {
        let mut offset = realtime_offset_ns();
        let mut synced = Instant::now();
        loop {
            let finished = done.load(Ordering::Acquire);
            let got = self.drain(offset);
            self.writer.flush();
            if finished {
                break;
            }
            if synced.elapsed() >= RESYNC {
                offset = realtime_offset_ns();
                synced = Instant::now();
            }
            if got == 0 {
                std::thread::sleep(WAIT);
            }
        }
    }

    /// Copies taken from the ring, at most [`DRAIN`].
    fn drain(&mut self, offset: i64) -> usize {
        let Some(ring) = &mut self.ring else {
            return 0;
        };
        self.writer.write_from(|sink| {
            ring.drain(DRAIN, |record| {
                if let Some(copy) = parse(record, offset) {
                    sink(&copy);
                }
            })
        })
    }
}

/// A record of the ring: its [`xdp_ebpf::CopyHeader`], then the frame.
fn parse(record: &[u8], offset: i64) -> Option<Copied<'_>> {
    let header = record.get(..COPY_HEADER_LEN)?;
    let u32_at = |at: usize| u32::from_ne_bytes(header[at..at + 4].try_into().unwrap_or([0; 4]));
    let mono = u64::from_ne_bytes(header[0..8].try_into().ok()?);
    let wire_len = u32_at(8) as usize;
    let caplen = u32_at(12) as usize;
    let queue = u32_at(16);
    let bytes = record.get(COPY_HEADER_LEN..COPY_HEADER_LEN + caplen)?;
    Some(Copied {
        bytes,
        wire_len,
        timestamp_ns: (mono as i64).saturating_add(offset).max(0) as u64,
        queue,
        direction: Direction::Inbound,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_into_unix_time_and_their_bytes() {
        let mut r = Vec::new();
        r.extend_from_slice(&1_000u64.to_ne_bytes());
        r.extend_from_slice(&100u32.to_ne_bytes()); // len
        r.extend_from_slice(&3u32.to_ne_bytes()); // caplen
        r.extend_from_slice(&5u32.to_ne_bytes()); // queue
        r.extend_from_slice(&0u32.to_ne_bytes());
        r.extend_from_slice(&[1, 2, 3, 0, 0, 0]); // the size class's slack
        let c = parse(&r, 500).unwrap();
        assert_eq!(
            (c.bytes, c.timestamp_ns, c.queue),
            (&[1u8, 2, 3][..], 1500, 5)
        );
        assert!(parse(&r[..10], 0).is_none(), "a short header");
        r[12..16].copy_from_slice(&100u32.to_ne_bytes());
        assert!(parse(&r, 0).is_none(), "caplen beyond the record");
    }
}
