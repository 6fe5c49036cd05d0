//! `pcap_record`: the capture writer (`xdpstack::capture::CaptureWriter`, whose records
//! and blocks `userspace/src/pcap/format.rs` encodes) with arbitrary frames,
//! timestamps, RX queues, snapshot lengths and both formats, read back with the
//! independent `pcap-file` crate.
//!
//! The record builders are private to the writer, so the target drives them the
//! way the stack does: through the public writer, into a file on tmpfs
//! (`/dev/shm` where there is one), which it reads back, checks and removes.
//!
//! Input layout ([`Input::decode`]):
//! - byte 0, flags: bit 0 pcapng; bit 1 `-U` (a write per record); bits 2-3 the
//!   snapshot length's range (0: below 128, 1: below 2048, 2: up to `MAX_SNAPLEN`,
//!   3: 0, the default); bits 4-5 the number of queues named when the file is
//!   opened (0-3); bit 6 statistics at close for one more queue;
//! - bytes 1-4: the snapshot length (little-endian, reduced to its range);
//! - one byte per queue named at open, then one for the extra queue (bit 6);
//! - records until the input ends, at most [`MAX_RECORDS`]: timestamp (u64 LE, ns),
//!   queue (one byte, see [`queue`]), frame length (u16 LE), the frame (cut short
//!   by the end of the input).
//!
//! Properties, beyond "never panics":
//! 1. Every record comes back, in order: the captured bytes are the frame cut to
//!    the snapshot length, the original length is the frame's length, and the
//!    timestamp round-trips (pcap: seconds as a `u32`, so modulo 2^32 s, as in
//!    libpcap; pcapng: all 64 bits of nanoseconds).
//! 2. The headers say what was asked: pcap's magic (ns), version 2.4, snaplen and
//!    LINKTYPE_ETHERNET; pcapng's SHB (native byte order, 1.0, unknown length,
//!    shb_userappl), one IDB per RX queue in order of appearance (queues named at
//!    open first) with the snaplen, if_name `IFACE`, if_description
//!    `IFACE RX queue N` and if_tsresol 9, each EPB
//!    on its queue's interface with epb_flags inbound, and one ISB per interface
//!    at the end with the counters given for its queue.
//! 3. The writer's counters match the file: every record written, none buffered or
//!    dropped, no error, and `bytes_written` is the file's size, which is the sum
//!    of the headers and records as the formats define them.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::OnceLock,
};

use pcap_file::{
    DataLink, Endianness, TsResolution,
    pcap::PcapParser,
    pcapng::{
        Block, PcapNgParser,
        blocks::{
            enhanced_packet::EnhancedPacketOption,
            interface_description::InterfaceDescriptionOption,
            interface_statistics::InterfaceStatisticsOption, section_header::SectionHeaderOption,
        },
    },
};
use xdpstack::capture::{
    CaptureConfig, CaptureRecord, CaptureWriter, Format, MAX_SNAPLEN, Output, QueueStats,
};

/// Most records one input writes.
pub const MAX_RECORDS: usize = 32;
/// The interface name the writer gets: pcapng's if_name (if_description
/// `fuzz0 RX queue N`).
const IFACE: &str = "fuzz0";
const NANOS: u64 = 1_000_000_000;

/// One frame to capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Receive time, ns since the Unix epoch.
    pub ts: u64,
    /// Queue code (see [`queue`]).
    pub queue: u8,
    /// The frame.
    pub data: Vec<u8>,
}

/// The RX queue of a queue code: 0-127 as they are (the writer's table of
/// interface ids), then values from 4096 up (its linear search), 255 the largest.
pub fn queue(code: u8) -> u32 {
    match code {
        0..=127 => u32::from(code),
        255 => u32::MAX,
        _ => 4096 + u32::from(code - 128) * 977,
    }
}

struct Rec<'a> {
    r: &'a Record,
}

impl CaptureRecord for Rec<'_> {
    fn bytes(&self) -> &[u8] {
        &self.r.data
    }
    fn timestamp_ns(&self) -> u64 {
        self.r.ts
    }
    fn queue(&self) -> u32 {
        queue(self.r.queue)
    }
}

/// A cursor over the input.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    /// The next `n` bytes, or `None` (and nothing taken) when fewer are left.
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.0.split_at_checked(n)?;
        self.0 = tail;
        Some(head)
    }

    /// Everything left.
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }
}

/// One input: the writer's options and the records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Input {
    /// The flags byte (see the module documentation).
    pub flags: u8,
    /// The raw snapshot length.
    pub snaplen: u32,
    /// Queue codes named when the file is opened (at most 3).
    pub open_queues: Vec<u8>,
    /// Queue code of the extra statistics at close (flag bit 6).
    pub extra_stats: Option<u8>,
    /// The records.
    pub records: Vec<Record>,
}

impl Input {
    /// Reads an input; any bytes are one.
    pub fn decode(data: &[u8]) -> Self {
        let mut bytes = Bytes(data);
        let flags = bytes.take(1).map_or(0, |b| b[0]);
        let snaplen = bytes
            .take(4)
            .map_or(0, |b| u32::from_le_bytes(b.try_into().unwrap()));
        let open_queues = (0..(flags >> 4) & 3)
            .map_while(|_| bytes.take(1).map(|b| b[0]))
            .collect();
        let extra_stats = if flags & 0x40 != 0 {
            bytes.take(1).map(|b| b[0])
        } else {
            None
        };
        let mut records = Vec::new();
        while records.len() < MAX_RECORDS {
            let Some(head) = bytes.take(11) else { break };
            let ts = u64::from_le_bytes(head[..8].try_into().unwrap());
            let len = usize::from(u16::from_le_bytes([head[9], head[10]]));
            // A frame cut short by the end of the input is the rest of it.
            let data = bytes.take(len).unwrap_or_else(|| bytes.rest());
            records.push(Record {
                ts,
                queue: head[8],
                data: data.to_vec(),
            });
        }
        Self {
            flags,
            snaplen,
            open_queues,
            extra_stats,
            records,
        }
    }

    /// The bytes [`Input::decode`] reads back as this input (the flags' queue
    /// count and bit 6 are set from `open_queues` and `extra_stats`).
    ///
    /// # Panics
    /// With more than 3 `open_queues`, more than [`MAX_RECORDS`] records or a
    /// frame longer than 65535 bytes.
    pub fn encode(&self) -> Vec<u8> {
        assert!(self.open_queues.len() <= 3 && self.records.len() <= MAX_RECORDS);
        let flags = (self.flags & 0x0f)
            | (self.open_queues.len() as u8) << 4
            | u8::from(self.extra_stats.is_some()) << 6;
        let mut out = vec![flags];
        out.extend_from_slice(&self.snaplen.to_le_bytes());
        out.extend_from_slice(&self.open_queues);
        out.extend(self.extra_stats);
        for r in &self.records {
            out.extend_from_slice(&r.ts.to_le_bytes());
            out.push(r.queue);
            let len = u16::try_from(r.data.len()).expect("frame longer than 65535 bytes");
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&r.data);
        }
        out
    }

    fn format(&self) -> Format {
        if self.flags & 1 != 0 {
            Format::PcapNg
        } else {
            Format::Pcap
        }
    }

    /// The `--snaplen` the writer gets: 0 (the default) or 1..=MAX_SNAPLEN.
    fn snaplen_option(&self) -> u32 {
        match (self.flags >> 2) & 3 {
            0 => self.snaplen % 128,
            1 => self.snaplen % 2048,
            2 => self.snaplen % (MAX_SNAPLEN + 1),
            _ => 0,
        }
    }
}

/// The capture file: one per process, on tmpfs when there is one.
fn path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("xdpstack-fuzz-pcap-{}", std::process::id()))
    })
}

/// A record as it should read back.
struct Expected<'a> {
    ts: u64,
    queue: u32,
    orig_len: u32,
    data: &'a [u8],
}

/// Runs every check on one input.
pub fn check(data: &[u8]) {
    let input = Input::decode(data);
    let format = input.format();
    let snaplen_option = input.snaplen_option();
    let snaplen = if snaplen_option == 0 {
        MAX_SNAPLEN
    } else {
        snaplen_option
    };
    let open_queues: Vec<u32> = input.open_queues.iter().map(|&c| queue(c)).collect();
    let config = CaptureConfig {
        format,
        snaplen: snaplen_option,
        packet_buffered: input.flags & 2 != 0,
        ..CaptureConfig::new(Output::File(path().to_path_buf()))
    };
    let mut writer = CaptureWriter::open(&config, IFACE, &open_queues)
        .unwrap_or_else(|e| panic!("open {}: {e}", path().display()));
    writer.write_batch(input.records.iter().map(|r| Rec { r }));

    // The interfaces, in the order the writer must number them, and the
    // statistics handed to close: for every queue with records, and the extra one.
    let mut interfaces: Vec<u32> = Vec::new();
    let record_queues = input.records.iter().map(|r| queue(r.queue));
    for q in open_queues.iter().copied().chain(record_queues) {
        if !interfaces.contains(&q) {
            interfaces.push(q);
        }
    }
    let mut stats: Vec<QueueStats> = Vec::new();
    let stat_queues = input
        .records
        .iter()
        .map(|r| r.queue)
        .chain(input.extra_stats);
    for (i, q) in stat_queues.map(queue).enumerate() {
        if !stats.iter().any(|s| s.queue == q) {
            stats.push(QueueStats {
                queue: q,
                received: input.records.len() as u64,
                kernel_drops: i as u64,
                consumer_drops: u64::MAX - i as u64,
            });
        }
    }
    if format == Format::PcapNg {
        assert_eq!(
            writer.interfaces(),
            &interfaces[..],
            "interface ids before close"
        );
        if let Some(q) = input.extra_stats.map(queue)
            && !interfaces.contains(&q)
        {
            interfaces.push(q);
        }
    }
    let summary = writer.close(&stats);
    let file = fs::read(path()).unwrap_or_else(|e| panic!("read {}: {e}", path().display()));
    let _ = fs::remove_file(path());

    // Property 3.
    assert!(summary.error.is_none(), "{:?}", summary.error);
    let s = summary.stats;
    let n = input.records.len() as u64;
    assert_eq!(
        (
            s.records_written,
            s.records_buffered,
            s.records_dropped,
            s.bytes_dropped
        ),
        (n, 0, 0, 0),
        "{s:?}"
    );
    assert_eq!(s.bytes_written, file.len() as u64, "bytes_written");
    assert_eq!(s.files_rotated, 0);

    let expected: Vec<Expected<'_>> = input
        .records
        .iter()
        .map(|r| Expected {
            ts: r.ts,
            queue: queue(r.queue),
            orig_len: r.data.len() as u32,
            data: &r.data[..r.data.len().min(snaplen as usize)],
        })
        .collect();
    match format {
        Format::Pcap => check_pcap(&file, snaplen, &expected),
        Format::PcapNg => check_pcapng(&file, snaplen, &expected, &interfaces, &stats),
    }
}

/// Properties 1 and 2 for classic pcap.
fn check_pcap(file: &[u8], snaplen: u32, expected: &[Expected<'_>]) {
    let (mut rest, parser) = PcapParser::new(file).expect("pcap file header");
    let h = parser.header();
    assert_eq!((h.version_major, h.version_minor), (2, 4));
    assert_eq!(h.ts_resolution, TsResolution::NanoSecond);
    assert_eq!(h.endianness, Endianness::native());
    assert_eq!(h.datalink, DataLink::ETHERNET);
    assert_eq!(h.snaplen, snaplen);
    assert_eq!((h.ts_correction, h.ts_accuracy), (0, 0));
    let mut size = 24;
    for (i, e) in expected.iter().enumerate() {
        // Raw packets: the checked reader refuses orig_len > snaplen, i.e. every
        // frame the snaplen cut.
        let (next, p) = parser
            .next_raw_packet(rest)
            .unwrap_or_else(|err| panic!("record {i}: {err}"));
        rest = next;
        let ts = (e.ts / NANOS) % (1 << 32) * NANOS + e.ts % NANOS;
        let got = u64::from(p.ts_sec) * NANOS + u64::from(p.ts_frac);
        assert_eq!(got, ts, "record {i}: timestamp {}", e.ts);
        assert_eq!(p.incl_len as usize, e.data.len(), "record {i}: incl_len");
        assert_eq!(p.orig_len, e.orig_len, "record {i}: orig_len");
        assert!(&p.data[..] == e.data, "record {i}: data");
        size += 16 + e.data.len();
    }
    assert!(
        rest.is_empty(),
        "{} bytes after the last record",
        rest.len()
    );
    assert_eq!(file.len(), size);
}

/// Properties 1 and 2 for pcapng.
fn check_pcapng(
    file: &[u8],
    snaplen: u32,
    expected: &[Expected<'_>],
    interfaces: &[u32],
    stats: &[QueueStats],
) {
    let (mut rest, mut parser) = PcapNgParser::new(file).expect("pcapng section header");
    let shb = parser.section().clone();
    assert_eq!(shb.endianness, Endianness::native());
    assert_eq!((shb.major_version, shb.minor_version), (1, 0));
    assert_eq!(shb.section_length, -1);
    assert!(
        shb.options.iter().any(
            |o| matches!(o, SectionHeaderOption::UserApplication(a) if a.starts_with("xdpstack "))
        ),
        "shb_userappl: {:?}",
        shb.options
    );
    let mut idbs = Vec::new();
    let mut packets = 0;
    let mut isbs = 0;
    while !rest.is_empty() {
        let (next, block) = parser
            .next_block(rest)
            .unwrap_or_else(|e| panic!("block after {} bytes: {e}", file.len() - rest.len()));
        rest = next;
        match block {
            Block::InterfaceDescription(idb) => {
                assert_eq!(isbs, 0, "an IDB after the statistics");
                let q = *interfaces
                    .get(idbs.len())
                    .unwrap_or_else(|| panic!("IDB {} of {interfaces:?}", idbs.len()));
                assert_eq!(idb.linktype, DataLink::ETHERNET);
                assert_eq!(idb.snaplen, snaplen);
                let description = format!("{IFACE} RX queue {q}");
                assert!(
                    idb.options
                        .iter()
                        .any(|o| matches!(o, InterfaceDescriptionOption::IfName(n) if *n == IFACE)),
                    "IDB {}: {:?}",
                    idbs.len(),
                    idb.options
                );
                assert!(
                    idb.options.iter().any(|o| matches!(
                        o,
                        InterfaceDescriptionOption::IfDescription(d) if *d == description
                    )),
                    "IDB {}: {:?}",
                    idbs.len(),
                    idb.options
                );
                assert!(
                    idb.options
                        .contains(&InterfaceDescriptionOption::IfTsResol(9)),
                    "if_tsresol"
                );
                idbs.push(q);
            }
            Block::EnhancedPacket(p) => {
                assert_eq!(isbs, 0, "a packet after the statistics");
                let e = expected.get(packets).expect("more packets than records");
                let i = packets;
                assert_eq!(
                    idbs.get(p.interface_id as usize),
                    Some(&e.queue),
                    "record {i}: interface {} of {idbs:?}",
                    p.interface_id
                );
                assert_eq!(p.timestamp.as_nanos(), u128::from(e.ts), "record {i}: ts");
                assert_eq!(p.original_len, e.orig_len, "record {i}: orig_len");
                assert!(&p.data[..] == e.data, "record {i}: data");
                assert_eq!(
                    p.options,
                    vec![EnhancedPacketOption::Flags(1)],
                    "record {i}: epb_flags inbound, nothing else"
                );
                packets += 1;
            }
            Block::InterfaceStatistics(s) => {
                assert_eq!(s.interface_id as usize, isbs, "ISBs in interface order");
                let q = idbs[isbs];
                let want = stats.iter().find(|st| st.queue == q);
                let value = |f: fn(&InterfaceStatisticsOption<'_>) -> Option<u64>| {
                    s.options.iter().find_map(f)
                };
                let got = (
                    value(|o| match o {
                        InterfaceStatisticsOption::IsbIfRecv(v) => Some(*v),
                        _ => None,
                    }),
                    value(|o| match o {
                        InterfaceStatisticsOption::IsbIfDrop(v) => Some(*v),
                        _ => None,
                    }),
                    value(|o| match o {
                        InterfaceStatisticsOption::IsbOsDrop(v) => Some(*v),
                        _ => None,
                    }),
                );
                let want = (
                    want.map(|w| w.received),
                    want.map(|w| w.kernel_drops),
                    want.map(|w| w.consumer_drops),
                );
                assert_eq!(got, want, "ISB of queue {q}");
                isbs += 1;
            }
            other => panic!("unexpected block {other:?}"),
        }
    }
    assert_eq!(packets, expected.len(), "packets");
    assert_eq!(idbs, interfaces, "interfaces");
    assert_eq!(isbs, interfaces.len(), "one ISB per interface");
}
