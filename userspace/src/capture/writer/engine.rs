//! The writer proper: records into the buffer, the buffer into the sink,
//! rotation and write errors.

use std::{
    io,
    path::{Path, PathBuf},
};

use super::{
    BUFFER_BYTES, CaptureEnd, CaptureError, CaptureRecord, CaptureStats, Clock, Format,
    NO_INTERFACE, QUEUE_TABLE_MAX, QueueStats, Settings,
    format::{self, EpbHeader, IdbText},
    hint, open_hint,
    output::Sink,
};

/// The files of a capture: where it started, where it is.
#[derive(Debug, Default)]
pub(super) struct Files {
    /// `-w FILE` as given: the stem (or `-G` pattern) of rotated names. `None`
    /// for stdout.
    pub(super) base: Option<PathBuf>,
    /// The file being written. `None` for stdout.
    pub(super) path: Option<PathBuf>,
}

/// What pcapng's header blocks say, the same in every file.
#[derive(Debug, Default)]
pub(super) struct Header {
    /// The interface: every IDB's if_name.
    pub(super) iface: String,
    /// The capture's filter expression: every IDB's if_filter.
    pub(super) filter: Option<String>,
    /// The SHB's shb_os.
    pub(super) os: String,
}

/// Whole seconds since the epoch of a CLOCK_REALTIME time, as `time(2)` has it.
pub(super) fn seconds(ns: u64) -> i64 {
    i64::try_from(ns / 1_000_000_000).unwrap_or(i64::MAX)
}

/// The writer proper, generic over its sink so tests can fail writes on cue.
pub(super) struct Core<S: Sink> {
    pub(super) settings: Settings,
    pub(super) sink: S,
    /// `-w FILE` as given: the stem (or `-G` pattern) of rotated names. `None`
    /// for stdout.
    pub(super) base: Option<PathBuf>,
    /// The file being written. `None` for stdout.
    pub(super) path: Option<PathBuf>,
    /// Number of the current file in the rotation (tcpdump's `Cflag_count`).
    pub(super) file_no: u32,
    /// When the current `-G` interval started, in seconds since the epoch
    /// (tcpdump's `Gflag_time`): the time in its file names.
    pub(super) opened_s: i64,
    /// `-G` intervals ended so far (tcpdump's `Gflag_count`).
    pub(super) intervals: u32,
    /// `-G`: the time (s) of a new interval that the next record starts.
    pub(super) interval_due: Option<i64>,
    pub(super) header: Header,
    pub(super) clock: Box<dyn Clock>,
    /// Encoded bytes not yet handed to the kernel; never grows past `buf_cap`.
    pub(super) buf: Vec<u8>,
    pub(super) buf_cap: usize,
    /// Bytes at the start of `buf` that are a pcap file header, not records.
    pub(super) buf_prefix: usize,
    pub(super) buf_records: u64,
    /// Bytes of the current file the kernel accepted; always a record boundary.
    pub(super) file_len: u64,
    /// pcapng: the queue of each interface id.
    pub(super) interfaces: Vec<u32>,
    /// pcapng: interface id by queue, for queues below [`QUEUE_TABLE_MAX`].
    pub(super) if_table: Vec<u32>,
    pub(super) start_ns: u64,
    pub(super) stats: CaptureStats,
    pub(super) error: Option<CaptureError>,
    /// Set when the capture ended without an error; nothing more is written.
    pub(super) end: Option<CaptureEnd>,
    /// What the next flush writes beyond `buf` alone: large records' data,
    /// straight from their frames (see [`Core::write_direct`]). Empty outside
    /// `write_direct`.
    pub(super) pieces: Vec<Piece>,
    /// Bytes of frame data in `pieces`.
    pub(super) direct_bytes: usize,
    /// The iovecs `pieces` take: per piece, one for the buffer before it and
    /// one per buffer of its frame (a multi-buffer frame has several).
    pub(super) iovecs: usize,
}

/// A record's data at least this large is written from its frame (`writev`)
/// rather than copied into the buffer first: above it, the copy costs more than
/// the iovec. (tmpfs copies ~2 GB/s: a 1.5 KB frame's copy is ~0.7 us.)
pub(super) const DIRECT_MIN: usize = 512;

/// The most iovecs one flush hands the kernel (`IOV_MAX` is 1024 on Linux).
const MAX_IOVECS: usize = 1024;

/// A run of the next flush: `buf` up to `buf_end`, then the first `len` bytes
/// of record `record`'s data (the records `write_direct` was given), from as
/// many of its buffers as they lie in.
#[derive(Clone, Copy, Debug)]
pub(super) struct Piece {
    buf_end: usize,
    record: usize,
    len: usize,
}

impl<S: Sink> Core<S> {
    pub(super) fn new(
        settings: Settings,
        sink: S,
        files: Files,
        header: Header,
        queues: &[u32],
        clock: Box<dyn Clock>,
    ) -> Self {
        let snap = settings.snaplen as usize;
        let largest = format::pcap_record_len(snap).max(format::epb_len(snap));
        // Room for the largest record after a flush, so there is one code path.
        let buf_cap = BUFFER_BYTES.max(largest + 1024);
        let start_ns = clock.now_ns();
        let mut core = Self {
            settings,
            sink,
            base: files.base,
            path: files.path,
            file_no: 0,
            opened_s: seconds(start_ns),
            intervals: 0,
            interval_due: None,
            header,
            clock,
            buf: Vec::with_capacity(buf_cap),
            buf_cap,
            buf_prefix: 0,
            buf_records: 0,
            file_len: 0,
            interfaces: Vec::with_capacity(queues.len()),
            if_table: Vec::new(),
            start_ns,
            stats: CaptureStats::default(),
            error: None,
            end: None,
            pieces: Vec::new(),
            direct_bytes: 0,
            iovecs: 0,
        };
        if settings.format == Format::PcapNg {
            for &q in queues {
                if core.lookup(q).is_none() {
                    core.register(q);
                }
            }
        }
        core.start_file();
        if settings.packet_buffered {
            // A reader on a pipe gets the header at once, not with the first frame.
            core.flush();
        }
        core
    }

    pub(super) fn stats(&self) -> CaptureStats {
        CaptureStats {
            records_buffered: self.buf_records,
            ..self.stats
        }
    }

    /// Puts the file header (pcap header, or SHB and every known IDB) into the
    /// empty buffer.
    pub(super) fn start_file(&mut self) {
        debug_assert!(self.buf.is_empty());
        match self.settings.format {
            Format::Pcap => {
                format::pcap_file_header(&mut self.buf, self.settings.snaplen);
                self.buf_prefix = self.buf.len();
            }
            Format::PcapNg => {
                format::shb(
                    &mut self.buf,
                    &self.header.os,
                    concat!("xdpstack ", env!("CARGO_PKG_VERSION")),
                );
                for i in 0..self.interfaces.len() {
                    let q = self.interfaces[i];
                    self.idb(q);
                }
                self.buf_prefix = 0; // pcapng blocks describe themselves
            }
        }
    }

    pub(super) fn idb(&mut self, queue: u32) {
        let description = format!("{} RX queue {queue}", self.header.iface);
        let text = IdbText {
            name: &self.header.iface,
            description: &description,
            filter: self.header.filter.as_deref(),
        };
        format::idb(&mut self.buf, self.settings.snaplen, &text);
    }

    /// True while records are written: no error, and the capture has not
    /// ended.
    #[inline]
    pub(super) fn accepting(&self) -> bool {
        self.error.is_none() && self.end.is_none()
    }

    /// True while the output can be written: no error, and a reader (the
    /// file limit of `-G -W` still lets the last file get its statistics).
    #[inline]
    fn sink_ok(&self) -> bool {
        self.error.is_none() && self.end != Some(CaptureEnd::ReaderClosed)
    }

    /// `-G`: reads the clock (once per batch) and, when the interval is over,
    /// makes the next record start a new file.
    pub(super) fn check_interval(&mut self) {
        let Some(every) = self.settings.rotation.and_then(|r| r.seconds) else {
            return;
        };
        if !self.accepting() {
            return; // no file will be opened again
        }
        let now = seconds(self.clock.now_ns());
        if now.saturating_sub(self.opened_s) >= i64::from(every) {
            self.interval_due = Some(now);
        }
    }

    /// What comes before each record: a new `-G` file if one is due, then a new
    /// `-C` file if this one is larger than the limit with `pending` bytes not
    /// yet written. False if the record cannot be written.
    #[inline]
    fn before_record(&mut self, pending: usize) -> bool {
        if let Some(now) = self.interval_due.take() {
            self.rotate_interval(now);
        }
        if !self.accepting() {
            return false;
        }
        if let Some(limit) = self.settings.rotation.and_then(|r| r.size_limit)
            && self.file_len + pending as u64 > limit
        {
            self.rotate_size();
        }
        self.accepting()
    }

    pub(super) fn lookup(&self, queue: u32) -> Option<u32> {
        if queue < QUEUE_TABLE_MAX {
            match self.if_table.get(queue as usize) {
                Some(&id) if id != NO_INTERFACE => Some(id),
                _ => None,
            }
        } else {
            self.interfaces
                .iter()
                .position(|&q| q == queue)
                .and_then(|i| u32::try_from(i).ok())
        }
    }

    /// Gives `queue` the next interface id (without writing its IDB).
    pub(super) fn register(&mut self, queue: u32) -> u32 {
        let id = u32::try_from(self.interfaces.len()).unwrap_or(NO_INTERFACE);
        self.interfaces.push(queue);
        if queue < QUEUE_TABLE_MAX {
            let q = queue as usize;
            if self.if_table.len() <= q {
                self.if_table.resize(q + 1, NO_INTERFACE);
            }
            self.if_table[q] = id;
        }
        id
    }

    /// The interface id of `queue`, adding its IDB to the file if it is new.
    /// `None` if making room for the IDB failed.
    #[inline]
    pub(super) fn interface_id(&mut self, queue: u32) -> Option<u32> {
        if let Some(id) = self.lookup(queue) {
            return Some(id);
        }
        // An IDB is well under 1 KiB (interface names are at most 15 bytes).
        if !self.make_room(1024) {
            return None;
        }
        let id = self.register(queue);
        self.idb(queue);
        Some(id)
    }

    /// Flushes if `n` more bytes would not fit. False if writing has stopped.
    #[inline]
    pub(super) fn make_room(&mut self, n: usize) -> bool {
        if self.buf.len() + n > self.buf_cap {
            self.flush();
        }
        self.sink_ok()
    }

    pub(super) fn drop_record(&mut self, caplen: usize) {
        self.stats.records_dropped += 1;
        self.stats.bytes_dropped += caplen as u64;
    }

    #[inline]
    pub(super) fn write<R: CaptureRecord + ?Sized>(&mut self, record: &R) {
        let held = record.data_len();
        let caplen = held.min(self.settings.snaplen as usize);
        if !self.before_record(self.buf.len()) {
            return self.drop_record(caplen);
        }
        let wire = record.wire_len().max(held);
        match self.settings.format {
            Format::Pcap => {
                if !self.make_room(format::pcap_record_len(caplen)) {
                    return self.drop_record(caplen);
                }
                format::pcap_record_with(&mut self.buf, record.timestamp_ns(), wire, caplen, |b| {
                    put_data(b, record, caplen);
                });
            }
            Format::PcapNg => {
                let Some(id) = self.interface_id(record.queue()) else {
                    return self.drop_record(caplen);
                };
                if !self.make_room(format::epb_len(caplen)) {
                    return self.drop_record(caplen);
                }
                let h = EpbHeader {
                    interface_id: id,
                    ts_ns: record.timestamp_ns(),
                    len: wire,
                    caplen,
                    flags: format::epb_flags(record.direction()),
                };
                format::epb_with(&mut self.buf, &h, |b| put_data(b, record, caplen));
            }
        }
        self.buf_records += 1;
        if self.settings.packet_buffered {
            self.flush();
        }
    }

    /// Writes `records` in order, the data of those of at least [`DIRECT_MIN`]
    /// bytes (after the snaplen) from the records themselves with `writev`,
    /// the kernel's copy into the file being the only one; everything the
    /// records gave is written or counted before this returns, so the records
    /// (frame views) can go. Smaller records are copied into the buffer as by
    /// [`Core::write`]; so is everything with `packet_buffered`. A frame in
    /// several buffers is one record, its data an iovec per buffer.
    pub(super) fn write_direct<R: CaptureRecord>(&mut self, records: &[R]) {
        for (i, record) in records.iter().enumerate() {
            let caplen = record.data_len().min(self.settings.snaplen as usize);
            let buffers = if caplen >= DIRECT_MIN && !self.settings.packet_buffered {
                buffers_for(record, caplen).filter(|&n| n + 2 <= MAX_IOVECS)
            } else {
                None
            };
            let direct = buffers.is_some();
            let buffers = buffers.unwrap_or(1);
            if !self.pieces.is_empty() && self.would_flush(record, caplen, direct, buffers) {
                // What may flush or rotate runs with no piece pending.
                self.flush_with(records);
            }
            if !direct || !self.accepting() {
                self.write(record);
                continue;
            }
            self.write_header(i, record, caplen, buffers);
        }
        if !self.pieces.is_empty() {
            self.flush_with(records);
        }
    }

    /// True when writing `record` could flush or rotate (which must not happen
    /// with pieces pending), or its `buffers` iovecs would not fit into the
    /// flush with the pieces pending (and the buffer's last run).
    fn would_flush<R: CaptureRecord>(
        &self,
        record: &R,
        caplen: usize,
        direct: bool,
        buffers: usize,
    ) -> bool {
        let buffered = if direct {
            64
        } else {
            1024 + format::epb_len(caplen)
        };
        let new_interface =
            self.settings.format == Format::PcapNg && self.lookup(record.queue()).is_none();
        let rotate = self.interval_due.is_some()
            || self
                .settings
                .rotation
                .and_then(|r| r.size_limit)
                .is_some_and(|limit| {
                    self.file_len + (self.buf.len() + self.direct_bytes) as u64 > limit
                });
        self.iovecs + buffers + 2 > MAX_IOVECS
            || self.buf.len() + buffered > self.buf_cap
            || new_interface
            || rotate
    }

    /// A direct record: its header (and pcapng trailer) into the buffer, its
    /// data (in `buffers` buffers) as a piece.
    fn write_header<R: CaptureRecord>(
        &mut self,
        index: usize,
        record: &R,
        caplen: usize,
        buffers: usize,
    ) {
        // Rotation happens with no piece pending (see `would_flush`).
        if !self.before_record(self.buf.len() + self.direct_bytes) {
            return self.drop_record(caplen);
        }
        let len = record.wire_len().max(record.data_len());
        let ts = record.timestamp_ns();
        let piece = |buf: &mut Vec<u8>| Piece {
            buf_end: buf.len(),
            record: index,
            len: caplen,
        };
        let mut made = None;
        match self.settings.format {
            Format::Pcap => format::pcap_record_with(&mut self.buf, ts, len, caplen, |b| {
                made = Some(piece(b));
            }),
            Format::PcapNg => {
                let Some(id) = self.interface_id(record.queue()) else {
                    return self.drop_record(caplen);
                };
                let h = EpbHeader {
                    interface_id: id,
                    ts_ns: ts,
                    len,
                    caplen,
                    flags: format::epb_flags(record.direction()),
                };
                format::epb_with(&mut self.buf, &h, |b| made = Some(piece(b)));
            }
        }
        if let Some(p) = made {
            self.pieces.push(p);
            self.direct_bytes += caplen;
            self.iovecs += 1 + buffers;
        }
        self.buf_records += 1;
    }

    /// Hands the buffer and the pieces to the kernel with `writev`, looping
    /// over short writes; on an error, as [`Core::flush`] does, over the bytes
    /// the file would have held.
    fn flush_with<R: CaptureRecord>(&mut self, records: &[R]) {
        let pieces = std::mem::take(&mut self.pieces);
        let direct = std::mem::take(&mut self.direct_bytes);
        let iovecs = std::mem::take(&mut self.iovecs);
        if !self.sink_ok() {
            // Pieces are only made while writing works, and flushed before
            // anything else can fail.
            debug_assert!(pieces.is_empty());
            return;
        }
        let mut slices = Vec::with_capacity(iovecs + 1);
        let mut at = 0;
        for p in &pieces {
            slices.push(io::IoSlice::new(&self.buf[at..p.buf_end]));
            let record = &records[p.record];
            match record.bytes().get(..p.len) {
                Some(data) => slices.push(io::IoSlice::new(data)),
                None => {
                    walk(record, p.len, &mut |s| slices.push(io::IoSlice::new(s)));
                }
            }
            at = p.buf_end;
        }
        debug_assert!(slices.len() == iovecs, "iovecs counted as made");
        slices.push(io::IoSlice::new(&self.buf[at..]));
        let total = self.buf.len() + direct;
        let (done, failed) = write_all(&mut self.sink, &mut slices, total);
        if let Some(e) = failed {
            // Cold: the bytes the file would have held, for the cut-back logic
            // that reads the records' headers out of them.
            let mut whole = Vec::with_capacity(total);
            let mut at = 0;
            for p in &pieces {
                whole.extend_from_slice(&self.buf[at..p.buf_end]);
                put_data(&mut whole, &records[p.record], p.len);
                at = p.buf_end;
            }
            whole.extend_from_slice(&self.buf[at..]);
            self.buf = whole;
            return self.fail(e, done);
        }
        self.wrote(done);
    }

    /// Hands the buffer to the kernel, looping over short writes.
    pub(super) fn flush(&mut self) {
        debug_assert!(
            self.pieces.is_empty(),
            "pieces are flushed with their records"
        );
        if !self.sink_ok() || self.buf.is_empty() {
            return;
        }
        let total = self.buf.len();
        let (done, failed) = write_all(&mut self.sink, &mut [io::IoSlice::new(&self.buf)], total);
        match failed {
            Some(e) => self.fail(e, done),
            None => self.wrote(done),
        }
    }

    /// The whole buffer (and the pieces with it) went out: `done` bytes.
    fn wrote(&mut self, done: usize) {
        self.file_len += done as u64;
        self.stats.bytes_written += done as u64;
        self.stats.records_written += self.buf_records;
        self.buf.clear();
        self.buf_records = 0;
        self.buf_prefix = 0;
    }

    /// Stops writing after `e`, when `written` bytes of the buffer had gone out:
    /// cuts the file to the last complete record and accounts for every record.
    #[cold]
    pub(super) fn fail(&mut self, e: io::Error, written: usize) {
        let split = match self.settings.format {
            Format::Pcap => format::split_pcap(&self.buf, self.buf_prefix, written),
            Format::PcapNg => format::split_pcapng(&self.buf, written),
        };
        let good = self.file_len + split.keep as u64;
        if split.keep < written {
            match self.sink.truncate(good) {
                Ok(_) => {}
                // The write error is the one to report; the file may now end in a
                // partial record, which readers report as a cut-short file.
                Err(te) => tracing::warn!(
                    "capture file {}: cutting back to {good} bytes failed: {te}",
                    self.path.as_deref().unwrap_or(Path::new("-")).display()
                ),
            }
        }
        self.file_len = good;
        self.stats.bytes_written += split.keep as u64;
        self.stats.records_written += split.records_kept;
        self.stats.records_dropped += split.records_lost;
        self.stats.bytes_dropped += split.bytes_lost;
        self.buf.clear();
        self.buf_records = 0;
        self.buf_prefix = 0;
        self.stop_with(e);
    }

    /// Stops writing after `e`: EPIPE ends the capture (the reader went away,
    /// tcpdump's SIGPIPE), anything else is the error to report.
    fn stop_with(&mut self, e: io::Error) {
        if e.kind() == io::ErrorKind::BrokenPipe {
            self.end = Some(CaptureEnd::ReaderClosed);
        } else {
            self.error = Some(self.write_error(e));
        }
    }

    pub(super) fn write_error(&self, source: io::Error) -> CaptureError {
        let hint = hint(&source, false);
        match &self.path {
            Some(path) => CaptureError::Write {
                path: path.clone(),
                source,
                hint,
            },
            None => CaptureError::Stdout { source, hint },
        }
    }

    /// `-C`: the current file is over the limit; the next number (wrapping at
    /// `-W`, as tcpdump's `Cflag_count` does whether or not `-G` is given).
    #[cold]
    fn rotate_size(&mut self) {
        let mut next = self.file_no.wrapping_add(1);
        if self
            .settings
            .rotation
            .and_then(|r| r.count)
            .is_some_and(|w| next >= w)
        {
            next = 0;
        }
        self.open_next(next);
    }

    /// `-G`: an interval is over at `now` (s): the file of the next one, or, with
    /// `-W N` and no `-C`, the end after N files.
    #[cold]
    fn rotate_interval(&mut self, now: i64) {
        self.flush();
        if !self.sink_ok() {
            return;
        }
        self.intervals = self.intervals.saturating_add(1);
        if let Some(files) = self.settings.rotation.and_then(|r| r.file_limit())
            && self.intervals >= files
        {
            // The last file stays the sink: pcapng's statistics go into it at close.
            self.end = Some(CaptureEnd::FileLimit { files });
            return;
        }
        self.opened_s = now;
        // "Reset the count so multiple files would end with 1,2,3 in the filename."
        self.open_next(0);
    }

    /// Closes the current file and starts file `n` of the rotation.
    fn open_next(&mut self, n: u32) {
        self.flush();
        let Some(base) = self.base.as_deref() else {
            return;
        };
        if !self.sink_ok() {
            return;
        }
        let path = self.settings.file_name(base, n, self.opened_s);
        match S::create(&path) {
            Ok(sink) => {
                // Replacing the sink closes the previous file.
                self.sink = sink;
                self.path = Some(path);
                self.file_no = n;
                self.file_len = 0;
                self.stats.files_rotated += 1;
                self.start_file();
            }
            Err(source) => {
                self.error = Some(CaptureError::Open {
                    hint: open_hint(&source, &path),
                    path,
                    source,
                });
            }
        }
    }

    /// pcapng: one ISB per interface; then flush.
    pub(super) fn finish(&mut self, queue_stats: &[QueueStats]) {
        if self.settings.format == Format::PcapNg && self.sink_ok() {
            for s in queue_stats {
                if self.interface_id(s.queue).is_none() {
                    break;
                }
            }
            let now = self.clock.now_ns().max(self.start_ns);
            for id in 0..self.interfaces.len() {
                let q = self.interfaces[id];
                let counters =
                    queue_stats
                        .iter()
                        .find(|s| s.queue == q)
                        .map(|s| format::IsbCounters {
                            ifrecv: s.received,
                            ifdrop: s.kernel_drops,
                            osdrop: s.consumer_drops,
                        });
                if !self.make_room(256) {
                    break;
                }
                let id = u32::try_from(id).unwrap_or(NO_INTERFACE);
                format::isb(&mut self.buf, id, self.start_ns, now, counters);
            }
        }
        self.flush();
        if self.sink_ok()
            && let Err(e) = self.sink.flush()
        {
            self.stop_with(e);
        }
    }
}

/// Appends the first `len` bytes of `record`'s data to `out`: a copy from the
/// first buffer when they are all there (the frame is in one buffer, or the
/// snaplen cuts it within the first), else from each buffer in turn. A record
/// whose buffers hold less than `len` (it breaks `data_len`'s contract) gets
/// zeroes for the rest, so the file still holds the record its header says.
#[inline]
fn put_data<R: CaptureRecord + ?Sized>(out: &mut Vec<u8>, record: &R, len: usize) {
    match record.bytes().get(..len) {
        Some(data) => out.extend_from_slice(data),
        None => put_buffers(out, record, len),
    }
}

/// [`put_data`] from several buffers: out of line, so that the one-buffer
/// case inlines small into the per-record loop.
#[inline(never)]
fn put_buffers<R: CaptureRecord + ?Sized>(out: &mut Vec<u8>, record: &R, len: usize) {
    let start = out.len();
    walk(record, len, &mut |s| out.extend_from_slice(s));
    out.resize(start + len, 0);
}

/// How many buffers the first `len` bytes of `record`'s data lie in; `None`
/// if its buffers hold less than `len`.
#[inline]
fn buffers_for<R: CaptureRecord + ?Sized>(record: &R, len: usize) -> Option<usize> {
    if record.bytes().len() >= len {
        return Some(1);
    }
    let mut n = 0;
    (walk(record, len, &mut |_| n += 1) == len).then_some(n)
}

/// Calls `f` with `record`'s data, buffer by buffer, up to `len` bytes,
/// skipping empty pieces; returns the bytes given.
fn walk<'a, R: CaptureRecord + ?Sized>(
    record: &'a R,
    len: usize,
    f: &mut dyn FnMut(&'a [u8]),
) -> usize {
    let mut have = 0;
    record.for_each_segment(&mut |seg| {
        let take = (len - have).min(seg.len());
        if take > 0 {
            f(&seg[..take]);
            have += take;
        }
    });
    have
}

/// Hands `slices` (`total` bytes) to `sink`, looping over short writes and
/// EINTR: the bytes written, and the error that stopped it, if any.
fn write_all<S: Sink>(
    sink: &mut S,
    slices: &mut [io::IoSlice<'_>],
    total: usize,
) -> (usize, Option<io::Error>) {
    let mut left = slices;
    let mut done = 0;
    while done < total {
        match sink.write_vectored(left) {
            Ok(0) => {
                return (
                    done,
                    Some(io::Error::new(io::ErrorKind::WriteZero, "wrote 0 bytes")),
                );
            }
            Ok(n) => {
                done += n;
                io::IoSlice::advance_slices(&mut left, n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (done, Some(e)),
        }
    }
    (done, None)
}
