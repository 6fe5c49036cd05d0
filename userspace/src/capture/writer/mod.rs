//! Capture file writer: classic pcap (nanosecond timestamps) and pcapng, with a
//! snapshot length, tcpdump-style rotation (`-C`, `-G`, `-W`), standard output (`-w -`),
//! and write errors that stop the capture cleanly instead of stalling the stack.
//!
//! # Data path
//! The writer copies each record (header and the first `snaplen` bytes of the
//! frame) into one reusable buffer and hands the buffer to the kernel with plain
//! `write(2)` calls when it is full, on [`CaptureWriter::flush`], at rotation and at
//! close, or after every record with `-U`. The frame bytes are copied exactly once,
//! nothing is allocated per packet, and a record is dropped (so its frame goes back
//! to the NIC) as soon as it has been copied, whatever the kernel does next.
//! Writing straight from the frames with `writev(2)` is measured beside it
//! (`benches/pcap_write.rs`, results in the README's benchmark section): it saves
//! the copy but costs the kernel one iovec per header and per frame, and it must
//! keep every frame of a batch until the syscall returns; for small frames the
//! copy wins, and for large ones the kernel's own copy into the page cache is
//! the limit either way.
//!
//! A frame in several buffers (an AF_XDP multi-buffer packet: see
//! [`CaptureRecord::for_each_segment`]) is one record all the same: its header
//! has the whole frame's length, and its data is copied, or handed to
//! `writev` (an iovec per buffer), buffer by buffer up to the snaplen.
//!
//! # Rotation (`-C`, `-G`, `-W`), as tcpdump does it
//! tcpdump(8): "-C file_size: Before writing a raw packet to a savefile, check
//! whether the file is currently larger than file_size and, if so, close the
//! current savefile and open a new one. Savefiles after the first savefile will
//! have the name specified with the -w flag, with a number after it, starting at 1
//! and continuing upward. The default unit of file_size is millions of bytes
//! (1,000,000 bytes, not 1,048,576 bytes)."; "-G rotate_seconds: If specified,
//! rotates the dump file specified with the -w option every rotate_seconds
//! seconds. Savefiles will have the name specified by -w which should include a
//! time format as defined by strftime(3). If no time format is specified, each
//! new file will overwrite the previous. [...] If used in conjunction with the -C
//! option, filenames will take the form of `file<count>`."; and "-W filecount:
//! Used in conjunction with the -C option, this will limit the number of files
//! created to the specified number, and begin overwriting files from the
//! beginning, thus creating a 'rotating' buffer. In addition, it will name the
//! files with enough leading 0s to support the maximum number of files [...]
//! Used in conjunction with the -G option, this will limit the number of rotated
//! dump files that get created, exiting with status 0 when reaching the limit.
//! If used in conjunction with both -C and -G, the -W option will currently be
//! ignored, and will only affect the file name."
//!
//! So, like tcpdump.c (`dump_packet_and_trunc`, `MakeFilename`, `getWflagChars`):
//! - before each record, the time check first, then the size check ("if a Gflag
//!   time boundary and a Cflag size boundary coincide, the time rotation will
//!   occur first");
//! - `-G S`: a new file before the first record once S seconds have passed
//!   since the current file was opened, in whole seconds of the wall clock as
//!   `time(2)` counts them (`t - Gflag_time >= Gflag`); no record, no new file.
//!   The name is the `-w` name formatted by strftime(3) in local time at the
//!   moment the file is opened (`-w 'cap-%Y%m%d-%H%M%S.pcap' -G 60`). The
//!   clock is read once per batch of records ([`Clock`]: the caller's);
//! - the size check runs on the bytes written so far (buffered ones included,
//!   as `ftell` counts stdio's buffer), and rotates when that size is *larger
//!   than* `MB * 1_000_000`: a file ends with the record that took it over the
//!   limit, so it exceeds the limit by less than one record;
//! - `-C` alone: `FILE`, `FILE1`, `FILE2`, ...;
//! - `-C` with `-W N`: `FILE0` .. `FILE{N-1}` with the number zero-padded to the
//!   digits of N-1 (`-W 3`: `FILE0`; `-W 11`: `FILE00`; `-W 1`: always `FILE`),
//!   wrapping to 0 and overwriting the oldest file;
//! - `-G` with `-C`: each interval starts a new name, unnumbered (or numbered 0,
//!   padded, with `-W`), and `-C` numbers from 1 within the interval;
//! - `-G` with `-W N` and no `-C`: when file N+1 is due the capture ends
//!   ([`CaptureEnd::FileLimit`]; tcpdump exits with status 0) and the record
//!   that was due to open it is not written. With `-C` too, `-W` is not a file
//!   limit: it pads the `-C` numbers and, as in tcpdump's code, wraps them;
//! - every file is complete on its own: its own pcap header, or its own SHB and
//!   IDBs (same interface order, so interface ids mean the same in every file).
//!
//! pcapng Interface Statistics Blocks are written once, at [`CaptureWriter::close`],
//! into the last file: the counters are the caller's, known only then.
//!
//! # pcapng: what the file says of itself
//! The Section Header Block names the application (`shb_userappl`,
//! "xdpstack VERSION") and the kernel (`shb_os`, as `uname -sr`). Each RX queue is
//! an interface: `if_name` is the interface (`eth0`), `if_description` the queue
//! (`eth0 RX queue 3`), `if_tsresol` 9 (nanoseconds), and `if_filter` the capture's
//! filter expression when it has one ([`CaptureConfig::filter`]). Each Enhanced
//! Packet Block carries `epb_flags` with the frame's [`Direction`]. Classic pcap
//! has no place for any of these.
//!
//! # Errors, and the end of the reader
//! The first write error (ENOSPC, EIO, ...) stops all writing: the file is cut back
//! (`ftruncate`) to the end of its last complete record, so it stays readable;
//! standard output is just no longer written. Records that come after are still
//! accepted and dropped at once (their frames must go back to the NIC), and
//! counted. [`CaptureWriter::error`] and [`CaptureSummary::error`] hold the first
//! error, worded for a one-line message.
//!
//! EPIPE is not an error: the reader of the pipe (`-w - | head -c 100`) or FIFO
//! went away, which ends the capture as tcpdump ends it on SIGPIPE, with status 0.
//! Writing stops the same way, and [`CaptureWriter::ended`] says
//! [`CaptureEnd::ReaderClosed`]; the caller ends the run.

#[cfg(test)]
mod chain_tests;
mod engine;
mod format;
mod output;
mod rotation;
#[cfg(test)]
mod tests;

use std::{
    ffi::OsStr,
    io,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use engine::{Core, Files, Header};
pub use format::MAX_SNAPLEN;
use output::{FileSink, Sink as _};
use rotation::Settings;
#[cfg(test)]
use rotation::wflag_chars;

/// A received frame, as the capture writer sees it. The stack's zero-copy
/// `FrameView` implements it; the writer drops each record right after copying
/// it, or after writing it from the frame itself
/// ([`CaptureWriter::write_records`]), which returns the frame to the NIC.
///
/// A frame may lie in several buffers (an AF_XDP multi-buffer packet, a chain
/// of UMEM frames): [`bytes`](Self::bytes) is then the first of them, and
/// [`for_each_segment`](Self::for_each_segment) and
/// [`data_len`](Self::data_len) say where the rest is. The writer makes one
/// record of all of them. A record in one buffer implements `bytes` alone.
pub trait CaptureRecord {
    /// The frame as received, Ethernet header first: all of it, or its first
    /// buffer when it lies in several.
    fn bytes(&self) -> &[u8];
    /// Receive time, CLOCK_REALTIME nanoseconds since the Unix epoch.
    fn timestamp_ns(&self) -> u64;
    /// RX queue the frame arrived on; one pcapng interface per queue.
    fn queue(&self) -> u32;
    /// Bytes of the frame the record holds, in all its buffers: the sum of the
    /// lengths [`for_each_segment`](Self::for_each_segment) gives.
    fn data_len(&self) -> usize {
        self.bytes().len()
    }
    /// Calls `f` with each buffer of the frame in order, the first being
    /// [`bytes`](Self::bytes), until [`data_len`](Self::data_len) bytes were
    /// given. The buffers borrow from the record, so that the writer can hand
    /// them to `writev` as they are.
    fn for_each_segment<'a>(&'a self, f: &mut dyn FnMut(&'a [u8])) {
        f(self.bytes());
    }
    /// The frame's length on the wire, the records' original length: more than
    /// the record holds ([`data_len`](Self::data_len)) when the frame was
    /// already cut short (a copy the XDP program made up to the snaplen).
    fn wire_len(&self) -> usize {
        self.data_len()
    }
    /// Which way the frame went: pcapng records it in each packet block's
    /// epb_flags; classic pcap has no field for it. Received, unless the
    /// record says otherwise.
    fn direction(&self) -> Direction {
        Direction::Inbound
    }
}

/// Which way a captured frame went through the interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Direction {
    /// Received.
    #[default]
    Inbound,
    /// Sent (a frame the stack transmitted).
    Outbound,
}

/// The wall clock the writer reads: when a file is opened (the time a `-G`
/// name is made of, and from which the next `-G` file is due) and the times of
/// pcapng's statistics blocks. A trait so that the caller decides what time
/// it is, and tests run on a clock of their own.
pub trait Clock: Send {
    /// CLOCK_REALTIME nanoseconds since the Unix epoch.
    fn now_ns(&self) -> u64;
}

/// The system's CLOCK_REALTIME, the clock of the frames' timestamps.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ns(&self) -> u64 {
        now_ns()
    }
}

impl<T: CaptureRecord + ?Sized> CaptureRecord for &T {
    fn bytes(&self) -> &[u8] {
        (**self).bytes()
    }
    fn timestamp_ns(&self) -> u64 {
        (**self).timestamp_ns()
    }
    fn queue(&self) -> u32 {
        (**self).queue()
    }
    fn data_len(&self) -> usize {
        (**self).data_len()
    }
    fn for_each_segment<'a>(&'a self, f: &mut dyn FnMut(&'a [u8])) {
        (**self).for_each_segment(f);
    }
    fn wire_len(&self) -> usize {
        (**self).wire_len()
    }
    fn direction(&self) -> Direction {
        (**self).direction()
    }
}

/// Frames go to the writer as the views the poller made: no copy until the
/// write. A multi-buffer packet is one view of its chain of frames, and one
/// record.
impl CaptureRecord for crate::frame::FrameView {
    fn bytes(&self) -> &[u8] {
        crate::frame::FrameView::bytes(self)
    }
    fn timestamp_ns(&self) -> u64 {
        crate::frame::FrameView::timestamp_ns(self)
    }
    fn queue(&self) -> u32 {
        crate::frame::FrameView::queue(self)
    }
    fn data_len(&self) -> usize {
        self.len()
    }
    fn for_each_segment<'a>(&'a self, f: &mut dyn FnMut(&'a [u8])) {
        self.segments().for_each(f);
    }
}

/// Capture file format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// Classic pcap with nanosecond timestamps (magic 0xa1b23c4d), as
    /// `tcpdump --nano -w` writes.
    #[default]
    Pcap,
    /// pcapng (`--pcapng`): one interface per RX queue, each frame's direction,
    /// drop statistics at the end.
    PcapNg,
}

/// Where the capture goes (`-w FILE|-`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Standard output (`-w -`).
    Stdout,
    /// A file, created or overwritten.
    File(PathBuf),
}

impl Output {
    /// `-w` argument: `-` is standard output, anything else a path.
    pub fn from_arg(arg: impl AsRef<OsStr>) -> Self {
        let arg = arg.as_ref();
        if arg == "-" {
            Self::Stdout
        } else {
            Self::File(PathBuf::from(arg))
        }
    }
}

/// Capture options, named after the command-line flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureConfig {
    /// `-w FILE|-`.
    pub output: Output,
    /// `--pcapng` selects [`Format::PcapNg`].
    pub format: Format,
    /// `--snaplen N`: bytes kept of each frame; longer frames are cut, their
    /// original length is recorded. 0 means the default, [`MAX_SNAPLEN`], as in
    /// tcpdump.
    pub snaplen: u32,
    /// `-U`: hand every record to the kernel as soon as it is written, for a
    /// reader following the file or pipe live. Costs one syscall per frame.
    pub packet_buffered: bool,
    /// `-C MB`: rotate once the file is larger than MB * 1,000,000 bytes.
    pub file_size_mb: Option<u64>,
    /// `-G SECONDS`: a new file once SECONDS have passed since the current one
    /// was opened; the `-w` name is then a strftime(3) pattern.
    pub rotate_seconds: Option<u32>,
    /// `-W N`: with `-C`, a ring of N files; with `-G` alone, N files and the
    /// capture ends ([`CaptureEnd::FileLimit`]).
    pub file_count: Option<u32>,
    /// The capture's filter expression, if any: pcapng's `if_filter` (a libpcap
    /// filter string) in every interface block.
    pub filter: Option<String>,
}

impl CaptureConfig {
    /// Defaults for everything but the output: pcap, snaplen 262144, buffered,
    /// no rotation.
    pub fn new(output: Output) -> Self {
        Self {
            output,
            format: Format::Pcap,
            snaplen: MAX_SNAPLEN,
            packet_buffered: false,
            file_size_mb: None,
            rotate_seconds: None,
            file_count: None,
            filter: None,
        }
    }
}

/// Per-queue counters the caller hands to [`CaptureWriter::close`]; pcapng writes
/// them into the queue's Interface Statistics Block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// RX queue.
    pub queue: u32,
    /// Frames the stack received on the queue (isb_ifrecv).
    pub received: u64,
    /// Frames the kernel dropped on the queue, from XDP_STATISTICS (isb_ifdrop).
    pub kernel_drops: u64,
    /// Frames our consumers dropped, e.g. a full capture queue (isb_osdrop).
    pub consumer_drops: u64,
}

/// Writer counters. Every record handed to the writer is in exactly one of
/// `records_written`, `records_buffered` or `records_dropped`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CaptureStats {
    /// Records handed to the kernel (in the file or pipe), across all files.
    pub records_written: u64,
    /// File bytes handed to the kernel (headers included), across all files.
    pub bytes_written: u64,
    /// Records copied into the writer's buffer, not yet written.
    pub records_buffered: u64,
    /// Records lost to a write error (the error is in [`CaptureWriter::error`]).
    pub records_dropped: u64,
    /// Captured frame bytes (after snaplen) of the dropped records.
    pub bytes_dropped: u64,
    /// Times a new file was started by `-C` or `-G`.
    pub files_rotated: u64,
}

/// Why the writer stopped taking records without an error: the capture is
/// over, and the caller should end the run (as tcpdump exits, with status 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum CaptureEnd {
    /// Every reader of the pipe (or FIFO) went away: a write failed with EPIPE.
    /// tcpdump ends its capture on the SIGPIPE, prints its statistics and
    /// exits with status 0.
    ReaderClosed,
    /// `-G` with `-W N` (and no `-C`): N files were written, and file N+1
    /// was due ("Maximum file limit reached" in tcpdump).
    FileLimit {
        /// N.
        files: u32,
    },
}

/// What [`CaptureWriter::close`] returns.
#[derive(Debug)]
#[must_use = "the summary carries the first write error, if any"]
pub struct CaptureSummary {
    /// Final counters.
    pub stats: CaptureStats,
    /// The first error, if writing stopped; the capture then lacks
    /// `stats.records_dropped` records.
    pub error: Option<CaptureError>,
    /// Why the capture ended on its own, if it did (not an error; records
    /// offered after it are in `stats.records_dropped`).
    pub end: Option<CaptureEnd>,
    /// The last file written (`None` for standard output).
    pub path: Option<PathBuf>,
}

/// Capture output errors. Each one names the file and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// A capture option is out of range or contradicts another.
    #[error("capture options: {0}")]
    Config(String),
    /// Creating a capture file (the first, or the next of a rotation) failed.
    #[error("capture file {}: {}{hint}", path.display(), os_text(source))]
    Open {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
        /// What to do about it.
        hint: &'static str,
    },
    /// Writing a capture file failed; it was cut at its last complete record.
    #[error(
        "capture file {}: write failed: {}{hint}; the file ends at the last complete record",
        path.display(),
        os_text(source)
    )]
    Write {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
        /// What to do about it.
        hint: &'static str,
    },
    /// Writing the capture to standard output failed.
    #[error("capture to standard output: write failed: {}{hint}", os_text(source))]
    Stdout {
        /// The underlying error.
        #[source]
        source: io::Error,
        /// What to do about it.
        hint: &'static str,
    },
}

impl CaptureError {
    /// The underlying I/O error, if any.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Self::Config(_) => None,
            Self::Open { source, .. }
            | Self::Write { source, .. }
            | Self::Stdout { source, .. } => Some(source),
        }
    }
}

/// "Permission denied" rather than "Permission denied (os error 13)": the message
/// is for people, and the hint follows.
fn os_text(e: &io::Error) -> String {
    let text = e.to_string();
    match e.raw_os_error() {
        Some(code) => text
            .strip_suffix(&format!(" (os error {code})"))
            .map_or_else(|| text.clone(), str::to_owned),
        None => text,
    }
}

/// [`hint`] for a file that could not be created at `path`: "not found" with
/// a directory that exists is a file system that creates no files (/proc,
/// /sys), not a missing directory.
fn open_hint(e: &io::Error, path: &std::path::Path) -> &'static str {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    if e.kind() == io::ErrorKind::NotFound && parent.is_dir() {
        return " (its directory exists, but its file system creates no files there, as /proc \
                and /sys do not; choose another path with -w)";
    }
    hint(e, true)
}

fn hint(e: &io::Error, opening: bool) -> &'static str {
    use io::ErrorKind as K;
    match e.kind() {
        K::PermissionDenied | K::ReadOnlyFilesystem => " (choose a writable path with -w)",
        K::NotFound if opening => {
            " (its directory does not exist; create it or choose another path with -w)"
        }
        K::IsADirectory => " (that is a directory; give a file name with -w)",
        K::StorageFull | K::QuotaExceeded | K::FileTooLarge => {
            " (the file system is full: free space, or bound the capture with -C and -W)"
        }
        // EPIPE is no error: it ends the capture (`CaptureEnd::ReaderClosed`).
        _ => "",
    }
}

/// Nanoseconds since the Unix epoch on CLOCK_REALTIME, the clock of the frames'
/// timestamps.
fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Bytes the buffer holds before a write: one syscall per ~3000 64-byte records
/// or ~170 1514-byte ones, so its cost vanishes per record; 1 MiB measured no
/// faster. (The buffer is made larger when the snaplen allows larger records.)
const BUFFER_BYTES: usize = 256 * 1024;

/// Queue ids below this are looked up in a table, above it by a linear search.
const QUEUE_TABLE_MAX: u32 = 4096;
const NO_INTERFACE: u32 = u32::MAX;

/// The capture writer. One thread owns it (the capture consumer).
pub struct CaptureWriter {
    core: Core<FileSink>,
    closed: bool,
}

impl CaptureWriter {
    /// Opens the output. `interface` and `queues` name the pcapng interfaces: one
    /// per queue, in this order (interface id = index), written up front; a frame
    /// from an unlisted queue adds its interface when it first shows up.
    pub fn open(
        config: &CaptureConfig,
        interface: &str,
        queues: &[u32],
    ) -> Result<Self, CaptureError> {
        Self::open_with_clock(config, interface, queues, SystemClock)
    }

    /// Check `config` as [`Self::open`] would, without opening anything.
    pub fn check(config: &CaptureConfig) -> Result<(), CaptureError> {
        Settings::from_config(config).map(|_| ())
    }

    /// [`Self::open`] on the caller's clock.
    pub fn open_with_clock(
        config: &CaptureConfig,
        interface: &str,
        queues: &[u32],
        clock: impl Clock + 'static,
    ) -> Result<Self, CaptureError> {
        let settings = Settings::from_config(config)?;
        let opened_ns = clock.now_ns();
        let (sink, path) = match &config.output {
            Output::Stdout => {
                let sink = FileSink::stdout().map_err(|source| CaptureError::Stdout {
                    hint: hint(&source, true),
                    source,
                })?;
                (sink, None)
            }
            Output::File(base) => {
                let path = settings.file_name(base, 0, engine::seconds(opened_ns));
                let sink = FileSink::create(&path).map_err(|source| CaptureError::Open {
                    hint: open_hint(&source, &path),
                    path: path.clone(),
                    source,
                })?;
                (sink, Some(path))
            }
        };
        let base = match &config.output {
            Output::Stdout => None,
            Output::File(base) => Some(base.clone()),
        };
        let header = Header {
            iface: interface.to_owned(),
            filter: config.filter.clone(),
            os: os_name(),
        };
        let files = Files { base, path };
        Ok(Self {
            core: Core::new(settings, sink, files, header, queues, Box::new(clock)),
            closed: false,
        })
    }

    /// Writes a batch of records (see the module docs for when bytes reach the
    /// kernel). Each record is dropped as soon as it is copied. After a write
    /// error the records are dropped and counted; see [`Self::error`].
    pub fn write_batch<R: CaptureRecord>(&mut self, records: impl IntoIterator<Item = R>) {
        self.core.check_interval();
        for record in records {
            self.core.write(&record);
        }
    }

    /// Writes `records` in order, the data of large ones (512 bytes or more
    /// after the snaplen) straight from the records with `writev`: the only
    /// copy is the kernel's into the file. Everything is written (or counted
    /// as dropped after a write error) before this returns, so the records can
    /// go at once; small records are buffered as by [`Self::write_batch`].
    pub fn write_records<R: CaptureRecord>(&mut self, records: &[R]) {
        self.core.check_interval();
        self.core.write_direct(records);
    }

    /// Writes one record; [`Self::write_batch`] for one.
    pub fn write(&mut self, record: impl CaptureRecord) {
        self.core.check_interval();
        self.core.write(&record);
    }

    /// Hands everything buffered to the kernel (e.g. on a timer, so a file being
    /// followed does not lag while traffic is slow).
    pub fn flush(&mut self) {
        self.core.flush();
    }

    /// Counters so far.
    pub fn stats(&self) -> CaptureStats {
        self.core.stats()
    }

    /// The first write error; once set, nothing more is written.
    pub fn error(&self) -> Option<&CaptureError> {
        self.core.error.as_ref()
    }

    /// Why the capture ended without an error, if it did: the reader of the
    /// pipe went away, or `-G`'s `-W` files are written. Nothing more is
    /// written then; the caller should end the run.
    pub fn ended(&self) -> Option<CaptureEnd> {
        self.core.end
    }

    /// The file being written (`None` for standard output).
    pub fn current_path(&self) -> Option<&Path> {
        self.core.path.as_deref()
    }

    /// pcapng: the RX queue of each interface id, in order.
    pub fn interfaces(&self) -> &[u32] {
        &self.core.interfaces
    }

    /// Flushes, writes one pcapng Interface Statistics Block per interface with
    /// the caller's per-queue counters (a queue without an interface gets one
    /// first), and returns the final counters and the first error.
    pub fn close(mut self, queue_stats: &[QueueStats]) -> CaptureSummary {
        self.core.finish(queue_stats);
        self.closed = true;
        CaptureSummary {
            stats: self.core.stats(),
            error: self.core.error.take(),
            end: self.core.end,
            path: self.core.path.clone(),
        }
    }
}

impl std::fmt::Debug for CaptureWriter {
    // Not derived: the buffer holds up to hundreds of KiB of frames.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureWriter")
            .field("settings", &self.core.settings)
            .field("path", &self.core.path)
            .field("interfaces", &self.core.interfaces)
            .field("stats", &self.core.stats())
            .field("error", &self.core.error)
            .field("end", &self.core.end)
            .finish_non_exhaustive()
    }
}

impl Drop for CaptureWriter {
    /// Best effort: flush what is buffered (no statistics blocks). Errors have
    /// nowhere to go here; call [`CaptureWriter::close`] to see them.
    fn drop(&mut self) {
        if !self.closed {
            self.core.flush();
        }
    }
}

/// shb_os: the kernel's name and release, as `uname -sr` prints them (the
/// `sysname` and `release` of uname(2), which procfs shows for the caller's UTS
/// namespace).
fn os_name() -> String {
    let read = |what: &str| {
        std::fs::read_to_string(format!("/proc/sys/kernel/{what}"))
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    match (read("ostype"), read("osrelease")) {
        (Some(name), Some(release)) => format!("{name} {release}"),
        (Some(name), None) => name,
        _ => std::env::consts::OS.to_owned(),
    }
}
