//! The writer proper: records into the buffer, the buffer into the sink,
//! rotation and write errors.

use std::{
    io,
    path::{Path, PathBuf},
};

use super::{
    BUFFER_BYTES, CaptureError, CaptureRecord, CaptureStats, Format, NO_INTERFACE, QUEUE_TABLE_MAX,
    QueueStats, Settings, format, hint, now_ns, output::Sink,
};

/// The writer proper, generic over its sink so tests can fail writes on cue.
pub(super) struct Core<S: Sink> {
    pub(super) settings: Settings,
    pub(super) sink: S,
    /// `-w FILE` as given: the stem of rotated names. `None` for stdout.
    pub(super) base: Option<PathBuf>,
    /// The file being written. `None` for stdout.
    pub(super) path: Option<PathBuf>,
    /// Number of the current file in the rotation (tcpdump's `Cflag_count`).
    pub(super) file_no: u32,
    pub(super) iface: String,
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
}

impl<S: Sink> Core<S> {
    pub(super) fn new(
        settings: Settings,
        sink: S,
        base: Option<PathBuf>,
        path: Option<PathBuf>,
        iface: &str,
        queues: &[u32],
    ) -> Self {
        let snap = settings.snaplen as usize;
        let largest = format::pcap_record_len(snap).max(format::epb_len(snap));
        // Room for the largest record after a flush, so there is one code path.
        let buf_cap = BUFFER_BYTES.max(largest + 1024);
        let mut core = Self {
            settings,
            sink,
            base,
            path,
            file_no: 0,
            iface: iface.to_owned(),
            buf: Vec::with_capacity(buf_cap),
            buf_cap,
            buf_prefix: 0,
            buf_records: 0,
            file_len: 0,
            interfaces: Vec::with_capacity(queues.len()),
            if_table: Vec::new(),
            start_ns: now_ns(),
            stats: CaptureStats::default(),
            error: None,
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
        format::idb(
            &mut self.buf,
            self.settings.snaplen,
            &format!("{}:q{queue}", self.iface),
            &format!("{} RX queue {queue} (AF_XDP, xdpstack)", self.iface),
        );
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
        self.error.is_none()
    }

    pub(super) fn drop_record(&mut self, caplen: usize) {
        self.stats.records_dropped += 1;
        self.stats.bytes_dropped += caplen as u64;
    }

    #[inline]
    pub(super) fn write<R: CaptureRecord + ?Sized>(&mut self, record: &R) {
        let data = record.bytes();
        let caplen = data.len().min(self.settings.snaplen as usize);
        if self.error.is_some() {
            return self.drop_record(caplen);
        }
        if let Some(r) = self.settings.rotation
            && self.file_len + self.buf.len() as u64 > r.limit
        {
            self.rotate();
            if self.error.is_some() {
                return self.drop_record(caplen);
            }
        }
        match self.settings.format {
            Format::Pcap => {
                if !self.make_room(format::pcap_record_len(caplen)) {
                    return self.drop_record(caplen);
                }
                format::pcap_record(&mut self.buf, record.timestamp_ns(), data, caplen);
            }
            Format::PcapNg => {
                let Some(id) = self.interface_id(record.queue()) else {
                    return self.drop_record(caplen);
                };
                if !self.make_room(format::epb_len(caplen)) {
                    return self.drop_record(caplen);
                }
                format::epb(&mut self.buf, id, record.timestamp_ns(), data, caplen);
            }
        }
        self.buf_records += 1;
        if self.settings.packet_buffered {
            self.flush();
        }
    }

    /// Hands the buffer to the kernel, looping over short writes.
    pub(super) fn flush(&mut self) {
        if self.error.is_some() || self.buf.is_empty() {
            return;
        }
        let mut done = 0;
        while done < self.buf.len() {
            match self.sink.write(&self.buf[done..]) {
                Ok(0) => {
                    let e = io::Error::new(io::ErrorKind::WriteZero, "wrote 0 bytes");
                    return self.fail(e, done);
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(e, done),
            }
        }
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
        self.error = Some(self.write_error(e));
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

    /// Closes the current file and starts the next one of the rotation.
    #[cold]
    pub(super) fn rotate(&mut self) {
        self.flush();
        let (Some(rotation), Some(base)) = (self.settings.rotation, self.base.as_deref()) else {
            return;
        };
        if self.error.is_some() {
            return;
        }
        let mut next = self.file_no.wrapping_add(1);
        if rotation.count.is_some_and(|w| next >= w) {
            next = 0;
        }
        let path = self.settings.file_name(base, next);
        match S::create(&path) {
            Ok(sink) => {
                // Replacing the sink closes the previous file.
                self.sink = sink;
                self.path = Some(path);
                self.file_no = next;
                self.file_len = 0;
                self.stats.files_rotated += 1;
                self.start_file();
            }
            Err(source) => {
                self.error = Some(CaptureError::Open {
                    hint: hint(&source, true),
                    path,
                    source,
                });
            }
        }
    }

    /// pcapng: one ISB per interface; then flush.
    pub(super) fn finish(&mut self, queue_stats: &[QueueStats]) {
        if self.settings.format == Format::PcapNg && self.error.is_none() {
            for s in queue_stats {
                if self.interface_id(s.queue).is_none() {
                    break;
                }
            }
            let now = now_ns().max(self.start_ns);
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
        if self.error.is_none()
            && let Err(e) = self.sink.flush()
        {
            self.error = Some(self.write_error(e));
        }
    }
}
