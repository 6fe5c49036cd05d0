//! Writer tests. Files are read back with an independent reader (`pcap-file`) and,
//! when installed, with Wireshark's `tshark` and `capinfos`.

use std::{
    collections::BTreeSet,
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
    process::Command,
};

use pcap_file::{
    DataLink, Endianness, TsResolution,
    pcap::PcapReader,
    pcapng::{
        Block, PcapNgReader,
        blocks::{
            enhanced_packet::EnhancedPacketOption,
            interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption},
            interface_statistics::InterfaceStatisticsOption,
            section_header::SectionHeaderOption,
        },
    },
};
use proptest::prelude::*;

use super::{
    engine::{Core, Files, Header},
    output::Sink,
    *,
};

const BASE_NS: u64 = 1_700_000_000_123_456_789;

/// An owned frame.
#[derive(Clone, Debug)]
struct Rec {
    data: Vec<u8>,
    ts: u64,
    queue: u32,
    direction: Direction,
}

impl CaptureRecord for Rec {
    fn bytes(&self) -> &[u8] {
        &self.data
    }
    fn timestamp_ns(&self) -> u64 {
        self.ts
    }
    fn queue(&self) -> u32 {
        self.queue
    }
    fn direction(&self) -> Direction {
        self.direction
    }
}

/// Frame `i`: its index in the first 8 bytes (when they fit), then a pattern.
fn rec(i: u64, len: usize, queue: u32) -> Rec {
    let mut data: Vec<u8> = (0..len).map(|b| (b as u64 * 31 + i) as u8).collect();
    let n = len.min(8);
    data[..n].copy_from_slice(&i.to_le_bytes()[..n]);
    Rec {
        data,
        ts: BASE_NS + i * 1_001,
        queue,
        direction: Direction::Inbound,
    }
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "xdpstack-pcap-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    fn names(&self) -> BTreeSet<String> {
        fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn config(path: &Path, format: Format) -> CaptureConfig {
    CaptureConfig {
        format,
        ..CaptureConfig::new(Output::File(path.to_path_buf()))
    }
}

/// One packet as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Packet {
    ts: u64,
    orig_len: u32,
    data: Vec<u8>,
    interface: u32,
}

/// Reads a pcap file with pcap-file; raw records, because its checked reader
/// rejects orig_len > snaplen, i.e. every frame cut by the snaplen.
fn read_pcap(path: &Path) -> (pcap_file::pcap::PcapHeader, Vec<Packet>) {
    let mut r = PcapReader::new(fs::File::open(path).unwrap()).unwrap();
    let header = r.header();
    let mut out = Vec::new();
    while let Some(p) = r.next_raw_packet() {
        let p = p.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(p.ts_frac < 1_000_000_000);
        assert_eq!(p.incl_len as usize, p.data.len());
        assert!(p.incl_len <= header.snaplen, "caplen <= snaplen");
        assert!(p.incl_len <= p.orig_len);
        out.push(Packet {
            ts: u64::from(p.ts_sec) * 1_000_000_000 + u64::from(p.ts_frac),
            orig_len: p.orig_len,
            data: p.data.into_owned(),
            interface: 0,
        });
    }
    (header, out)
}

/// A pcapng file as read back with pcap-file.
#[derive(Debug, Default)]
struct PcapNg {
    userappl: Option<String>,
    os: Option<String>,
    /// Each packet's epb_flags.
    flags: Vec<u32>,
    interfaces: Vec<InterfaceDescriptionBlock<'static>>,
    packets: Vec<Packet>,
    /// (interface id, timestamp, options) of each ISB.
    stats: Vec<(u32, u64, Vec<InterfaceStatisticsOption<'static>>)>,
}

fn read_pcapng(path: &Path) -> PcapNg {
    let mut r = PcapNgReader::new(fs::File::open(path).unwrap()).unwrap();
    let section = r.section().clone();
    assert_eq!(section.endianness, Endianness::native());
    assert_eq!((section.major_version, section.minor_version), (1, 0));
    assert_eq!(section.section_length, -1);
    let mut f = PcapNg {
        userappl: section.options.iter().find_map(|o| match o {
            SectionHeaderOption::UserApplication(s) => Some(s.to_string()),
            _ => None,
        }),
        os: section.options.iter().find_map(|o| match o {
            SectionHeaderOption::OS(s) => Some(s.to_string()),
            _ => None,
        }),
        ..PcapNg::default()
    };
    while let Some(block) = r.next_block() {
        match block.unwrap_or_else(|e| panic!("{}: {e}", path.display())) {
            Block::InterfaceDescription(i) => f.interfaces.push(i.into_owned()),
            Block::EnhancedPacket(p) => {
                let snaplen = f.interfaces[p.interface_id as usize].snaplen;
                assert!(p.data.len() <= snaplen as usize, "caplen <= snaplen");
                assert!(p.data.len() <= p.original_len as usize);
                let [EnhancedPacketOption::Flags(flags @ (1 | 2))] = p.options[..] else {
                    panic!(
                        "epb_flags inbound or outbound, nothing else: {:?}",
                        p.options
                    );
                };
                f.flags.push(flags);
                f.packets.push(Packet {
                    ts: u64::try_from(p.timestamp.as_nanos()).unwrap(),
                    orig_len: p.original_len,
                    data: p.data.into_owned(),
                    interface: p.interface_id,
                });
            }
            Block::InterfaceStatistics(s) => {
                // pcap-file reads the ISB's two 32-bit timestamp halves as one u64
                // in file order; put the upper half back on top.
                let ts = if cfg!(target_endian = "little") {
                    s.timestamp.rotate_left(32)
                } else {
                    s.timestamp
                };
                let opts = s.options.into_iter().map(|o| o.into_owned()).collect();
                f.stats.push((s.interface_id, ts, opts));
            }
            other => panic!("unexpected block {other:?}"),
        }
    }
    f
}

fn expect_packet(r: &Rec, snaplen: usize, interface: u32) -> Packet {
    Packet {
        ts: r.ts,
        orig_len: r.data.len() as u32,
        data: r.data[..r.data.len().min(snaplen)].to_vec(),
        interface,
    }
}

fn isb_value(opts: &[InterfaceStatisticsOption<'_>], want: u16) -> Option<u64> {
    opts.iter().find_map(|o| match (want, o) {
        (2, InterfaceStatisticsOption::IsbStartTime(v))
        | (3, InterfaceStatisticsOption::IsbEndTime(v)) => {
            // Two 32-bit halves, upper first (see read_pcapng).
            Some(if cfg!(target_endian = "little") {
                v.rotate_left(32)
            } else {
                *v
            })
        }
        (4, InterfaceStatisticsOption::IsbIfRecv(v))
        | (5, InterfaceStatisticsOption::IsbIfDrop(v))
        | (7, InterfaceStatisticsOption::IsbOsDrop(v)) => Some(*v),
        _ => None,
    })
}

fn assert_accounted(s: &CaptureStats, handed: u64) {
    assert_eq!(
        s.records_written + s.records_buffered + s.records_dropped,
        handed,
        "every record written, buffered or dropped: {s:?}"
    );
}

// ------------------------------------------------------------ pcap round trip

#[test]
fn pcap_round_trip() {
    let dir = TempDir::new("rt");
    let path = dir.path("a.pcap");
    let recs: Vec<Rec> = (0..2000u64)
        .map(|i| rec(i, (i as usize * 37) % 1600, (i % 3) as u32))
        .collect();
    let mut w = CaptureWriter::open(&config(&path, Format::Pcap), "eth0", &[0, 1, 2]).unwrap();
    assert_eq!(w.current_path(), Some(path.as_path()));
    // Batches of several sizes, by reference and by value.
    w.write_batch(recs[..100].iter());
    w.write_batch(recs[100..1000].iter().cloned());
    for r in &recs[1000..] {
        w.write(r);
    }
    assert_accounted(&w.stats(), 2000);
    let s = w.close(&[]);
    assert!(s.error.is_none());
    assert_eq!(s.path.as_deref(), Some(path.as_path()));
    let (header, packets) = read_pcap(&path);
    assert_eq!(header.ts_resolution, TsResolution::NanoSecond);
    assert_eq!(header.endianness, Endianness::native());
    assert_eq!((header.version_major, header.version_minor), (2, 4));
    assert_eq!((header.ts_correction, header.ts_accuracy), (0, 0));
    assert_eq!(header.snaplen, MAX_SNAPLEN);
    assert_eq!(header.datalink, DataLink::ETHERNET);
    let want: Vec<Packet> = recs.iter().map(|r| expect_packet(r, 1 << 20, 0)).collect();
    assert_eq!(packets, want);
    let len = fs::metadata(&path).unwrap().len();
    assert_eq!(
        s.stats,
        CaptureStats {
            records_written: 2000,
            bytes_written: len,
            ..CaptureStats::default()
        }
    );
}

#[test]
fn pcap_file_starts_with_exact_header() {
    let dir = TempDir::new("hdr");
    let path = dir.path("h.pcap");
    let c = CaptureConfig {
        snaplen: 1500,
        ..config(&path, Format::Pcap)
    };
    let w = CaptureWriter::open(&c, "eth0", &[]).unwrap();
    assert!(w.close(&[]).error.is_none());
    let mut want = Vec::new();
    want.extend_from_slice(&0xa1b2_3c4d_u32.to_ne_bytes());
    want.extend_from_slice(&2u16.to_ne_bytes());
    want.extend_from_slice(&4u16.to_ne_bytes());
    want.extend_from_slice(&[0; 8]);
    want.extend_from_slice(&1500u32.to_ne_bytes());
    want.extend_from_slice(&1u32.to_ne_bytes());
    assert_eq!(fs::read(&path).unwrap(), want);
}

// ---------------------------------------------------------- pcapng round trip

#[test]
fn pcapng_round_trip_interfaces_and_statistics() {
    let dir = TempDir::new("ng");
    let path = dir.path("a.pcapng");
    // Queues 4 and 2 listed (in that order), 9 shows up unannounced, 5 only has
    // statistics.
    let queues = [4u32, 2, 4, 9, 2];
    let recs: Vec<Rec> = (0..500u64)
        .map(|i| {
            rec(
                i,
                14 + (i as usize * 13) % 1500,
                queues[i as usize % queues.len()],
            )
        })
        .collect();
    let before = now_ns();
    let mut w = CaptureWriter::open(&config(&path, Format::PcapNg), "veth1", &[4, 2]).unwrap();
    w.write_batch(&recs);
    assert_eq!(w.interfaces(), &[4, 2, 9]);
    let qs = [
        QueueStats {
            queue: 2,
            received: 1000,
            kernel_drops: 7,
            consumer_drops: 3,
        },
        QueueStats {
            queue: 5,
            received: 1,
            kernel_drops: 2,
            consumer_drops: 0,
        },
    ];
    let s = w.close(&qs);
    let after = now_ns();
    assert!(s.error.is_none());
    assert_eq!(s.stats.records_written, 500);
    assert_eq!(s.stats.bytes_written, fs::metadata(&path).unwrap().len());

    let f = read_pcapng(&path);
    assert_eq!(
        f.userappl.as_deref(),
        Some(concat!("xdpstack ", env!("CARGO_PKG_VERSION")))
    );
    let names: Vec<_> = f
        .interfaces
        .iter()
        .map(|i| {
            assert_eq!(i.linktype, DataLink::ETHERNET);
            assert_eq!(i.snaplen, MAX_SNAPLEN);
            assert!(
                i.options
                    .contains(&InterfaceDescriptionOption::IfTsResol(9))
            );
            let text = |want: u16| {
                i.options
                    .iter()
                    .find_map(|o| match (want, o) {
                        (2, InterfaceDescriptionOption::IfName(n))
                        | (3, InterfaceDescriptionOption::IfDescription(n)) => Some(n.to_string()),
                        _ => None,
                    })
                    .unwrap()
            };
            assert!(
                !i.options
                    .iter()
                    .any(|o| matches!(o, InterfaceDescriptionOption::IfFilter(_))),
                "no filter, no if_filter"
            );
            (text(2), text(3))
        })
        .collect();
    assert_eq!(
        names,
        [
            ("veth1", "veth1 RX queue 4"),
            ("veth1", "veth1 RX queue 2"),
            ("veth1", "veth1 RX queue 9"),
            ("veth1", "veth1 RX queue 5")
        ]
        .map(|(n, d)| (n.to_string(), d.to_string()))
    );
    assert_eq!(f.os, Some(os_name()));
    assert!(f.flags.iter().all(|&x| x == 1), "every frame inbound");
    let id_of = |q: u32| [4, 2, 9, 5].iter().position(|&x| x == q).unwrap() as u32;
    let want: Vec<Packet> = recs
        .iter()
        .map(|r| expect_packet(r, 1 << 20, id_of(r.queue)))
        .collect();
    assert_eq!(f.packets, want);

    // One ISB per interface, in interface order, counters only where given.
    assert_eq!(f.stats.len(), 4);
    for (id, (if_id, ts, opts)) in f.stats.iter().enumerate() {
        assert_eq!(*if_id, id as u32);
        let start = isb_value(opts, 2).unwrap();
        let end = isb_value(opts, 3).unwrap();
        assert!(
            before <= start && start <= end && end <= after,
            "{start} {end}"
        );
        assert_eq!(*ts, end, "statistics taken at the end");
    }
    let counters = |id: usize| {
        let o = &f.stats[id].2;
        (isb_value(o, 4), isb_value(o, 5), isb_value(o, 7))
    };
    assert_eq!(counters(0), (None, None, None));
    assert_eq!(counters(1), (Some(1000), Some(7), Some(3)));
    assert_eq!(counters(2), (None, None, None));
    assert_eq!(counters(3), (Some(1), Some(2), Some(0)));
}

#[test]
fn pcapng_file_layout() {
    let dir = TempDir::new("layout");
    let path = dir.path("l.pcapng");
    let c = CaptureConfig {
        snaplen: 64,
        ..config(&path, Format::PcapNg)
    };
    let mut w = CaptureWriter::open(&c, "eth0", &[1]).unwrap();
    w.write(rec(0, 5, 1));
    assert!(w.close(&[]).error.is_none());
    let b = fs::read(&path).unwrap();
    let u32_at = |at: usize| u32::from_ne_bytes(b[at..at + 4].try_into().unwrap());
    // SHB, IDB, EPB, ISB, each a whole multiple of 4 with matching lengths.
    let mut at = 0;
    let mut kinds = Vec::new();
    while at < b.len() {
        let len = u32_at(at + 4) as usize;
        assert_eq!(len % 4, 0);
        assert_eq!(u32_at(at + len - 4) as usize, len, "trailing length");
        kinds.push(u32_at(at));
        at += len;
    }
    assert_eq!(at, b.len());
    assert_eq!(kinds, [0x0a0d_0d0a, 1, 6, 5]);
    let idb = u32_at(4) as usize;
    assert_eq!(u32_at(idb + 12), 64, "IDB snaplen");
    let epb = idb + u32_at(idb + 4) as usize;
    assert_eq!(u32_at(epb + 4), 44 + 8, "5 bytes of data padded to 8");
    assert_eq!(&b[epb + 28 + 5..epb + 28 + 8], &[0, 0, 0]);
}

// -------------------------------------------------------------------- snaplen

#[test]
fn snaplen_cuts_frames_and_keeps_original_length() {
    let dir = TempDir::new("snap");
    let lens = [0usize, 1, 59, 60, 61, 100, 1514, 9000];
    let recs: Vec<Rec> = lens
        .iter()
        .enumerate()
        .map(|(i, &l)| rec(i as u64, l, 0))
        .collect();
    for format in [Format::Pcap, Format::PcapNg] {
        let path = dir.path(&format!("{format:?}"));
        let c = CaptureConfig {
            snaplen: 60,
            ..config(&path, format)
        };
        let mut w = CaptureWriter::open(&c, "eth0", &[0]).unwrap();
        w.write_batch(&recs);
        let s = w.close(&[]);
        assert!(s.error.is_none());
        let packets = match format {
            Format::Pcap => {
                let (h, p) = read_pcap(&path);
                assert_eq!(h.snaplen, 60);
                p
            }
            Format::PcapNg => {
                let f = read_pcapng(&path);
                assert_eq!(f.interfaces[0].snaplen, 60);
                f.packets
            }
        };
        let caplens: Vec<usize> = packets.iter().map(|p| p.data.len()).collect();
        assert_eq!(caplens, [0, 1, 59, 60, 60, 60, 60, 60], "{format:?}");
        let origs: Vec<usize> = packets.iter().map(|p| p.orig_len as usize).collect();
        assert_eq!(origs, lens, "{format:?}");
        let want: Vec<Packet> = recs.iter().map(|r| expect_packet(r, 60, 0)).collect();
        assert_eq!(packets, want, "{format:?}");
    }
}

#[test]
fn snaplen_zero_means_default_and_too_large_is_refused() {
    let dir = TempDir::new("snap0");
    let path = dir.path("z.pcap");
    let c = CaptureConfig {
        snaplen: 0,
        ..config(&path, Format::Pcap)
    };
    assert!(
        CaptureWriter::open(&c, "eth0", &[])
            .unwrap()
            .close(&[])
            .error
            .is_none()
    );
    assert_eq!(read_pcap(&path).0.snaplen, 262_144);
    let c = CaptureConfig {
        snaplen: 262_145,
        ..config(&path, Format::Pcap)
    };
    let e = CaptureWriter::open(&c, "eth0", &[]).unwrap_err();
    assert!(matches!(e, CaptureError::Config(_)));
    assert!(e.to_string().contains("--snaplen 262145"), "{e}");
}

// ------------------------------------------------------------------- rotation

#[test]
fn file_names_follow_tcpdump() {
    let base = Path::new("/d/cap.pcap");
    let names = |size: Option<u64>, count: Option<u32>, n: u32| {
        let c = CaptureConfig {
            file_size_mb: size,
            file_count: count,
            ..CaptureConfig::new(Output::File(base.into()))
        };
        Settings::from_config(&c).unwrap().file_name(base, n, 0)
    };
    assert_eq!(names(None, None, 0), base);
    assert_eq!(
        names(Some(1), None, 0),
        base,
        "-C alone: first file unnumbered"
    );
    assert_eq!(names(Some(1), None, 1), Path::new("/d/cap.pcap1"));
    assert_eq!(names(Some(1), None, 12), Path::new("/d/cap.pcap12"));
    assert_eq!(names(Some(1), Some(1), 0), base, "-W 1: no digits");
    assert_eq!(names(Some(1), Some(3), 0), Path::new("/d/cap.pcap0"));
    assert_eq!(names(Some(1), Some(10), 9), Path::new("/d/cap.pcap9"));
    assert_eq!(names(Some(1), Some(11), 3), Path::new("/d/cap.pcap03"));
    assert_eq!(names(Some(1), Some(101), 7), Path::new("/d/cap.pcap007"));
    assert_eq!(
        [1, 2, 10, 11, 100, 101, 1000, 1001].map(wflag_chars),
        [0, 1, 1, 2, 2, 3, 3, 4]
    );
}

/// Every file but the last is larger than the limit, and was not yet larger
/// before its last record (tcpdump: "check whether the file is currently larger
/// than file_size" before writing).
fn assert_rotated_at_limit(path: &Path, last_record: usize, last_file: bool) {
    let len = fs::metadata(path).unwrap().len();
    if last_file {
        assert!(len <= 1_000_000 + last_record as u64, "{}", path.display());
    } else {
        assert!(len > 1_000_000, "{} is {len} bytes", path.display());
        assert!(
            len - last_record as u64 <= 1_000_000,
            "{} is {len}",
            path.display()
        );
    }
}

#[test]
fn rotation_ring_keeps_the_newest_files() {
    let dir = TempDir::new("ring");
    let base = dir.path("cap.pcap");
    let c = CaptureConfig {
        file_size_mb: Some(1),
        file_count: Some(3),
        ..config(&base, Format::Pcap)
    };
    let recs: Vec<Rec> = (0..4500u64).map(|i| rec(i, 1000, 0)).collect();
    let mut w = CaptureWriter::open(&c, "eth0", &[0]).unwrap();
    assert_eq!(w.current_path(), Some(dir.path("cap.pcap0").as_path()));
    for chunk in recs.chunks(64) {
        w.write_batch(chunk);
    }
    assert_eq!(w.current_path(), Some(dir.path("cap.pcap1").as_path()));
    let s = w.close(&[]);
    assert!(s.error.is_none());
    // A record takes 16 + 1000 bytes; a file rotates once it is larger than
    // 1,000,000 bytes: 24 + 984 * 1016 = 999,768 is not, 24 + 985 * 1016 =
    // 1,000,784 is. So files of 985 records: 0..985 -> pcap0, ..1970 -> pcap1,
    // ..2955 -> pcap2, ..3940 -> pcap0 again, ..4500 -> pcap1 again.
    assert_eq!(s.stats.files_rotated, 4);
    assert_eq!(s.stats.records_written, 4500);
    assert_eq!(s.path.as_deref(), Some(dir.path("cap.pcap1").as_path()));
    assert_eq!(
        dir.names(),
        ["cap.pcap0", "cap.pcap1", "cap.pcap2"]
            .map(String::from)
            .into()
    );
    let mut kept = Vec::new();
    for (name, first, count) in [
        ("cap.pcap2", 1970, 985),
        ("cap.pcap0", 2955, 985),
        ("cap.pcap1", 3940, 560),
    ] {
        let (h, packets) = read_pcap(&dir.path(name));
        assert_eq!(h.snaplen, MAX_SNAPLEN, "{name} has its own header");
        let want: Vec<Packet> = recs[first..first + count]
            .iter()
            .map(|r| expect_packet(r, 1 << 20, 0))
            .collect();
        assert_eq!(packets, want, "{name}");
        assert_rotated_at_limit(&dir.path(name), 1016, name == "cap.pcap1");
        kept.extend(packets);
    }
    // Together, the last 2530 records in order.
    assert_eq!(kept.len(), 4500 - 1970);
}

#[test]
fn rotation_waits_until_the_file_is_larger_than_the_limit() {
    let dir = TempDir::new("exact");
    let base = dir.path("x.pcap");
    let c = CaptureConfig {
        file_size_mb: Some(1),
        ..config(&base, Format::Pcap)
    };
    // 24 + 984 * (16 + 1000) + (16 + 216) = 1,000,000 exactly: not larger than
    // the limit, so the next record still goes into the first file, and the one
    // after that starts the second.
    let mut lens = vec![1000usize; 984];
    lens.extend([216, 10, 10]);
    let recs: Vec<Rec> = lens
        .iter()
        .enumerate()
        .map(|(i, &l)| rec(i as u64, l, 0))
        .collect();
    let mut w = CaptureWriter::open(&c, "eth0", &[]).unwrap();
    w.write_batch(&recs[..985]);
    w.flush();
    assert_eq!(fs::metadata(&base).unwrap().len(), 1_000_000);
    w.write_batch(&recs[985..]);
    let s = w.close(&[]);
    assert!(s.error.is_none());
    assert_eq!(s.stats.files_rotated, 1);
    assert_eq!(read_pcap(&base).1.len(), 986);
    assert_eq!(fs::metadata(&base).unwrap().len(), 1_000_026);
    let second = read_pcap(&dir.path("x.pcap1")).1;
    assert_eq!(second, vec![expect_packet(&recs[986], 1 << 20, 0)]);
}

#[test]
fn rotation_without_ring_keeps_every_record_pcapng() {
    let dir = TempDir::new("rot");
    let base = dir.path("cap.pcapng");
    let c = CaptureConfig {
        file_size_mb: Some(1),
        ..config(&base, Format::PcapNg)
    };
    let recs: Vec<Rec> = (0..3000u64).map(|i| rec(i, 1000, (i % 2) as u32)).collect();
    let mut w = CaptureWriter::open(&c, "eth0", &[0, 1]).unwrap();
    w.write_batch(&recs);
    let qs = [QueueStats {
        queue: 1,
        received: 1500,
        kernel_drops: 4,
        consumer_drops: 5,
    }];
    let s = w.close(&qs);
    assert!(s.error.is_none());
    // 3000 EPBs of 1044 bytes = 3.13 MB: four files.
    let names = ["cap.pcapng", "cap.pcapng1", "cap.pcapng2", "cap.pcapng3"];
    assert_eq!(dir.names(), names.map(String::from).into());
    assert_eq!(s.stats.files_rotated, 3);
    assert_eq!(s.path.as_deref(), Some(dir.path("cap.pcapng3").as_path()));
    let mut all = Vec::new();
    let mut total = 0;
    for (i, name) in names.iter().enumerate() {
        let f = read_pcapng(&dir.path(name));
        assert_eq!(f.interfaces.len(), 2, "{name}: its own IDBs");
        let last = i == names.len() - 1;
        assert_eq!(
            f.stats.len(),
            if last { 2 } else { 0 },
            "ISBs at close only"
        );
        if last {
            assert_eq!(isb_value(&f.stats[1].2, 5), Some(4));
        } else {
            assert_rotated_at_limit(&dir.path(name), 1044, false);
        }
        total += fs::metadata(dir.path(name)).unwrap().len();
        all.extend(f.packets);
    }
    let want: Vec<Packet> = recs
        .iter()
        .map(|r| expect_packet(r, 1 << 20, r.queue))
        .collect();
    assert_eq!(all, want);
    assert_eq!(s.stats.bytes_written, total);
}

#[test]
fn rotation_options_are_checked() {
    let file = Output::File("/tmp/x".into());
    let cases = [
        (file.clone(), None, Some(3), "-W needs -C"),
        (file.clone(), Some(0), None, "-C must be at least 1"),
        (file.clone(), Some(1), Some(0), "-W must be at least 1"),
        (file, Some(u64::MAX), None, "too large"),
        (Output::Stdout, Some(1), None, "not standard output"),
    ];
    for (output, size, count, msg) in cases {
        let c = CaptureConfig {
            file_size_mb: size,
            file_count: count,
            ..CaptureConfig::new(output)
        };
        let e = CaptureWriter::open(&c, "eth0", &[]).unwrap_err();
        assert!(e.to_string().starts_with("capture options: "), "{e}");
        assert!(e.to_string().contains(msg), "{e}");
    }
    assert_eq!(Output::from_arg("-"), Output::Stdout);
    assert_eq!(Output::from_arg("a.pcap"), Output::File("a.pcap".into()));
}

// ------------------------------------------------------------------ buffering

#[test]
fn packet_buffered_writes_every_record_at_once() {
    let dir = TempDir::new("u");
    let path = dir.path("u.pcap");
    let c = CaptureConfig {
        packet_buffered: true,
        ..config(&path, Format::Pcap)
    };
    let mut w = CaptureWriter::open(&c, "eth0", &[]).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), 24, "header out at open");
    for i in 0..5u64 {
        w.write(rec(i, 100, 0));
        assert_eq!(w.stats().records_buffered, 0);
        assert_eq!(fs::metadata(&path).unwrap().len(), 24 + (i + 1) * 116);
    }
    assert!(w.close(&[]).error.is_none());
}

/// `-w -`: the test runs itself in a child whose standard output is a pipe; the
/// child writes a pcapng capture there (between libtest's own lines) and says on
/// stderr how many bytes it wrote.
#[test]
fn standard_output() {
    const CHILD: &str = "XDPSTACK_PCAP_STDOUT_CHILD";
    let recs: Vec<Rec> = (0..50u64).map(|i| rec(i, 100 + i as usize, 0)).collect();
    if std::env::var_os(CHILD).is_some() {
        let c = CaptureConfig {
            format: Format::PcapNg,
            packet_buffered: true,
            ..CaptureConfig::new(Output::Stdout)
        };
        let mut w = CaptureWriter::open(&c, "eth0", &[0]).unwrap();
        assert_eq!(w.current_path(), None);
        w.write_batch(&recs);
        let s = w.close(&[]);
        assert!(s.error.is_none(), "{:?}", s.error);
        assert_eq!(s.path, None);
        eprintln!("CAPTURE_BYTES={}", s.stats.bytes_written);
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "capture::writer::tests::standard_output",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let n: usize = stderr
        .lines()
        .find_map(|l| l.strip_prefix("CAPTURE_BYTES="))
        .expect("child reported its byte count")
        .parse()
        .unwrap();
    let start = out
        .stdout
        .windows(4)
        .position(|w| w == [0x0a, 0x0d, 0x0d, 0x0a])
        .expect("an SHB on standard output");
    let want: Vec<Packet> = recs.iter().map(|r| expect_packet(r, 1 << 20, 0)).collect();
    assert_eq!(
        parse_all(Format::PcapNg, &out.stdout[start..start + n]),
        want
    );
}

#[test]
fn buffered_until_flush_and_drop_flushes() {
    let dir = TempDir::new("drop");
    let path = dir.path("d.pcap");
    let mut w = CaptureWriter::open(&config(&path, Format::Pcap), "eth0", &[]).unwrap();
    w.write_batch((0..10).map(|i| rec(i, 60, 0)));
    assert_eq!(fs::metadata(&path).unwrap().len(), 0, "still buffered");
    assert_eq!(w.stats().records_buffered, 10);
    let debug = format!("{w:?}");
    assert!(
        debug.contains("records_buffered: 10") && debug.len() < 1000,
        "{debug}"
    );
    w.flush();
    assert_eq!(fs::metadata(&path).unwrap().len(), 24 + 10 * 76);
    assert_eq!(w.stats().records_written, 10);
    w.write_batch((10..20).map(|i| rec(i, 60, 0)));
    drop(w);
    assert_eq!(read_pcap(&path).1.len(), 20);
}

#[test]
fn frames_larger_than_the_buffer_target() {
    // Records bigger than the 256 KiB buffer target still go through (the
    // buffer is sized for the largest record the snaplen allows).
    let dir = TempDir::new("big");
    let path = dir.path("b.pcapng");
    let mut w = CaptureWriter::open(&config(&path, Format::PcapNg), "eth0", &[0]).unwrap();
    let recs: Vec<Rec> = (0..8u64).map(|i| rec(i, 300_000 - i as usize, 0)).collect();
    w.write_batch(&recs);
    assert!(w.close(&[]).error.is_none());
    let f = read_pcapng(&path);
    let want: Vec<Packet> = recs.iter().map(|r| expect_packet(r, 262_144, 0)).collect();
    assert_eq!(f.packets, want);
}

// --------------------------------------------------------------------- errors

#[test]
fn dev_full_reports_enospc_and_drops() {
    let c = CaptureConfig::new(Output::File("/dev/full".into()));
    let mut w = CaptureWriter::open(&c, "eth0", &[]).unwrap();
    w.write_batch((0..100).map(|i| rec(i, 100, 0)));
    assert!(w.error().is_none(), "buffered: nothing written yet");
    w.flush();
    let e = w.error().expect("ENOSPC");
    assert_eq!(e.io_error().unwrap().kind(), io::ErrorKind::StorageFull);
    assert_eq!(
        e.to_string(),
        "capture file /dev/full: write failed: No space left on device (the file \
         system is full: free space, or bound the capture with -C and -W); the file \
         ends at the last complete record"
    );
    // Still accepting, dropping, counting.
    w.write_batch((100..150).map(|i| rec(i, 1000, 0)));
    let s = w.close(&[]);
    assert!(matches!(s.error, Some(CaptureError::Write { .. })));
    assert_eq!(s.stats.records_written, 0);
    assert_eq!(s.stats.bytes_written, 0);
    assert_eq!(s.stats.records_dropped, 150);
    assert_eq!(s.stats.bytes_dropped, 100 * 100 + 50 * 1000);
    assert_accounted(&s.stats, 150);
}

#[test]
fn dev_full_with_packet_buffering_and_pcapng() {
    let c = CaptureConfig {
        packet_buffered: true,
        ..config(Path::new("/dev/full"), Format::PcapNg)
    };
    let mut w = CaptureWriter::open(&c, "eth0", &[0]).unwrap();
    assert!(w.error().is_some(), "-U: the header write already failed");
    w.write(rec(0, 64, 0));
    let s = w.close(&[QueueStats::default()]);
    assert_eq!(s.stats.records_dropped, 1);
    assert!(s.error.is_some());
}

#[test]
fn open_errors_name_the_file_and_the_fix() {
    let c = CaptureConfig::new(Output::File("/nonexistent-dir/x.pcap".into()));
    let e = CaptureWriter::open(&c, "eth0", &[]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "capture file /nonexistent-dir/x.pcap: No such file or directory (its \
         directory does not exist; create it or choose another path with -w)"
    );
    // /proc exists, and creates no files: not "its directory does not exist".
    let c = CaptureConfig::new(Output::File("/proc/x.pcap".into()));
    let e = CaptureWriter::open(&c, "eth0", &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("its directory exists, but its file system creates no files"),
        "{e}"
    );
    let dir = TempDir::new("isdir");
    let c = CaptureConfig::new(Output::File(dir.0.clone()));
    let e = CaptureWriter::open(&c, "eth0", &[]).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("(that is a directory; give a file name with -w)"),
        "{e}"
    );
    // Root ignores file modes, so EACCES is built rather than provoked.
    let source = io::Error::from_raw_os_error(libc::EACCES);
    let e = CaptureError::Open {
        hint: hint(&source, true),
        path: "/x/y.pcap".into(),
        source,
    };
    assert_eq!(
        e.to_string(),
        "capture file /x/y.pcap: Permission denied (choose a writable path with -w)"
    );
    assert!(std::error::Error::source(&e).is_some());
}

/// A sink that accepts at most `chunk` bytes per write and fails once `limit`
/// bytes are in: the short write before the failure leaves a partial record.
struct FailingSink {
    data: Vec<u8>,
    limit: usize,
    chunk: usize,
    truncated_to: Option<u64>,
    /// Every write fails with EPIPE: the reader went away.
    epipe: bool,
}

impl Write for FailingSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.epipe {
            return Err(io::Error::from_raw_os_error(libc::EPIPE));
        }
        let room = self.limit - self.data.len();
        if room == 0 {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let n = buf.len().min(room).min(self.chunk);
        self.data.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Sink for FailingSink {
    fn truncate(&mut self, len: u64) -> io::Result<bool> {
        self.data.truncate(len as usize);
        self.truncated_to = Some(len);
        Ok(true)
    }
    fn create(_: &Path) -> io::Result<Self> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}

fn core_over(sink: FailingSink, format: Format, snaplen: u32) -> Core<FailingSink> {
    let settings = Settings {
        format,
        snaplen,
        packet_buffered: false,
        rotation: None,
    };
    let files = Files {
        base: None,
        path: Some("t.cap".into()),
    };
    let header = Header {
        iface: "eth0".into(),
        filter: None,
        os: "Linux".into(),
    };
    Core::new(settings, sink, files, header, &[0], Box::new(SystemClock))
}

fn parse_all(format: Format, bytes: &[u8]) -> Vec<Packet> {
    let dir = TempDir::new("parse");
    let path = dir.path("p");
    fs::write(&path, bytes).unwrap();
    match format {
        Format::Pcap => read_pcap(&path).1,
        Format::PcapNg => read_pcapng(&path).packets,
    }
}

#[test]
fn write_error_cuts_the_file_at_the_last_complete_record() {
    let recs: Vec<Rec> = (0..40u64).map(|i| rec(i, 40 + i as usize * 3, 0)).collect();
    for format in [Format::Pcap, Format::PcapNg] {
        // Everything this capture would write, to pick failure points from.
        let mut full = core_over(
            FailingSink {
                data: Vec::new(),
                limit: usize::MAX,
                chunk: usize::MAX,
                truncated_to: None,
                epipe: false,
            },
            format,
            100,
        );
        for r in &recs {
            full.write(r);
        }
        full.flush();
        let total = full.sink.data.len();
        assert!(full.error.is_none());
        for limit in (0..total).step_by(7) {
            let sink = FailingSink {
                data: Vec::new(),
                limit,
                chunk: 50, // short writes: the last one stops mid-record
                truncated_to: None,
                epipe: false,
            };
            let mut core = core_over(sink, format, 100);
            for r in &recs[..20] {
                core.write(r);
            }
            core.flush();
            for r in &recs[20..] {
                core.write(r);
            }
            core.finish(&[]);
            let what = format!("{format:?} limit {limit}");
            let e = core.error.as_ref().expect(&what);
            assert!(
                e.to_string()
                    .starts_with("capture file t.cap: write failed: "),
                "{e}"
            );
            let data = &core.sink.data;
            assert!(data.len() <= limit, "{what}");
            assert_eq!(data[..], full.sink.data[..data.len()], "{what}: a prefix");
            let s = core.stats();
            assert_eq!(s.bytes_written, data.len() as u64, "{what}");
            assert_accounted(&s, 40);
            assert_eq!(s.records_buffered, 0);
            if data.is_empty() {
                continue; // the header itself did not make it
            }
            let packets = parse_all(format, data);
            assert_eq!(packets.len() as u64, s.records_written, "{what}");
            let want: Vec<Packet> = recs[..packets.len()]
                .iter()
                .map(|r| expect_packet(r, 100, 0))
                .collect();
            assert_eq!(packets, want, "{what}");
            let lost: u64 = recs[packets.len()..]
                .iter()
                .map(|r| r.data.len().min(100) as u64)
                .sum();
            assert_eq!(s.bytes_dropped, lost, "{what}");
            // Cut exactly when the failure left a partial record behind.
            // Before the cut the sink held `limit` bytes.
            assert_eq!(
                core.sink.truncated_to.is_some(),
                data.len() < limit,
                "{what}"
            );
        }
    }
}

#[test]
fn short_writes_without_errors_lose_nothing() {
    let recs: Vec<Rec> = (0..300u64)
        .map(|i| rec(i, (i as usize * 7) % 700, 0))
        .collect();
    for format in [Format::Pcap, Format::PcapNg] {
        let sink = FailingSink {
            data: Vec::new(),
            limit: usize::MAX,
            chunk: 3,
            truncated_to: None,
            epipe: false,
        };
        let mut core = core_over(sink, format, 500);
        for r in &recs {
            core.write(r);
        }
        core.finish(&[]);
        assert!(core.error.is_none());
        let want: Vec<Packet> = recs.iter().map(|r| expect_packet(r, 500, 0)).collect();
        assert_eq!(parse_all(format, &core.sink.data), want);
    }
}

#[test]
fn file_sink_truncate_cuts_and_repositions() {
    let dir = TempDir::new("cut");
    let path = dir.path("c");
    let mut s = output::FileSink::create(&path).unwrap();
    s.write_all(&[1; 100]).unwrap();
    assert!(s.truncate(40).unwrap());
    s.write_all(&[2; 10]).unwrap();
    let b = fs::read(&path).unwrap();
    assert_eq!(b.len(), 50, "no hole after the cut");
    assert_eq!(&b[40..], &[2; 10]);
    let mut dev = output::FileSink::create(Path::new("/dev/null")).unwrap();
    assert!(!dev.truncate(0).unwrap(), "devices are not cut");
}

// ----------------------------------------------------- Wireshark's own reader

/// Runs a Wireshark tool on `path`; `None` (with a notice) when not installed.
fn wireshark_tool(tool: &str, args: &[&str], path: &Path) -> Option<String> {
    let out = match Command::new(tool).args(args).arg(path).output() {
        Ok(out) => out,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            eprintln!(
                "NOTICE: {tool} not installed, check skipped (`cargo xtask setup` installs it)"
            );
            return None;
        }
        Err(e) => panic!("{tool}: {e}"),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    // tshark's greeting for root is not about the file.
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("Running as user \"root\""))
        .collect();
    assert!(out.status.success(), "{tool} {}: {stderr}", path.display());
    assert!(
        complaints.is_empty(),
        "{tool} {}: {complaints:?}",
        path.display()
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

fn capinfos_value<'a>(report: &'a str, key: &str) -> Vec<&'a str> {
    report
        .lines()
        .filter_map(|l| l.trim().strip_prefix(key))
        .map(|v| v.trim_start_matches([' ', ':', '=']).trim())
        .collect()
}

#[test]
fn tshark_and_capinfos_read_both_formats() {
    let dir = TempDir::new("tshark");
    let lens = [42usize, 60, 61, 63, 64, 65, 1514, 3000];
    let recs: Vec<Rec> = (0..60u64)
        .map(|i| rec(i, lens[i as usize % 8], (i % 3) as u32))
        .collect();
    for format in [Format::Pcap, Format::PcapNg] {
        let path = dir.path(&format!("t-{format:?}"));
        let c = CaptureConfig {
            snaplen: 1600,
            ..config(&path, format)
        };
        let mut w = CaptureWriter::open(&c, "eth0", &[0, 1, 2]).unwrap();
        w.write_batch(&recs);
        let qs: Vec<QueueStats> = (0..3)
            .map(|q| QueueStats {
                queue: q,
                received: 100 + u64::from(q),
                kernel_drops: 10 + u64::from(q),
                consumer_drops: 20 + u64::from(q),
            })
            .collect();
        assert!(w.close(&qs).error.is_none());

        let Some(fields) = wireshark_tool(
            "tshark",
            &[
                "-T",
                "fields",
                "-e",
                "frame.len",
                "-e",
                "frame.cap_len",
                "-e",
                "frame.interface_name",
                "-e",
                "frame.packet_flags_direction",
                "-e",
                "frame.time_epoch",
                "-r",
            ],
            &path,
        ) else {
            return;
        };
        let rows: Vec<Vec<&str>> = fields.lines().map(|l| l.split('\t').collect()).collect();
        assert_eq!(rows.len(), recs.len(), "{format:?}");
        for (r, row) in recs.iter().zip(&rows) {
            assert_eq!(row[0], r.data.len().to_string());
            assert_eq!(row[1], r.data.len().min(1600).to_string());
            let secs = format!("{}.{:09}", r.ts / 1_000_000_000, r.ts % 1_000_000_000);
            assert_eq!(row[4], secs, "ns timestamps");
            if format == Format::PcapNg {
                assert_eq!(row[2], "eth0");
                assert_eq!(row[3], "0x00000001", "inbound");
            }
        }

        let Some(report) = wireshark_tool("capinfos", &["-M"], &path) else {
            return;
        };
        assert_eq!(capinfos_value(&report, "Number of packets:"), ["60"]);
        assert_eq!(
            capinfos_value(&report, "File timestamp precision:"),
            ["nanoseconds (9)"]
        );
        match format {
            Format::Pcap => {
                assert_eq!(capinfos_value(&report, "File type:"), ["nsecpcap"]);
                assert_eq!(
                    capinfos_value(&report, "Packet size limit:   file hdr:"),
                    ["1600 bytes"]
                );
            }
            Format::PcapNg => {
                assert_eq!(capinfos_value(&report, "File type:"), ["pcapng"]);
                assert_eq!(
                    capinfos_value(&report, "Number of interfaces in file:"),
                    ["3"]
                );
                assert_eq!(capinfos_value(&report, "Name ="), ["eth0"; 3]);
                assert_eq!(
                    capinfos_value(&report, "Description ="),
                    ["eth0 RX queue 0", "eth0 RX queue 1", "eth0 RX queue 2"]
                );
                assert_eq!(capinfos_value(&report, "Time resolution ="), ["0x09"; 3]);
                assert_eq!(capinfos_value(&report, "Capture length ="), ["1600"; 3]);
                // capinfos and tshark 4.0 show that each interface has its ISB but
                // not the counters in it; pcap-file checks those.
                assert_eq!(
                    capinfos_value(&report, "Number of stat entries ="),
                    ["1"; 3]
                );
                assert_eq!(capinfos_value(&report, "Number of packets ="), ["20"; 3]);
                let f = read_pcapng(&path);
                for (q, (_, _, opts)) in f.stats.iter().enumerate() {
                    let q = q as u64;
                    assert_eq!(isb_value(opts, 4), Some(100 + q));
                    assert_eq!(isb_value(opts, 5), Some(10 + q));
                    assert_eq!(isb_value(opts, 7), Some(20 + q));
                }
            }
        }
    }
}

#[test]
fn tshark_reads_a_file_cut_after_a_write_error() {
    let recs: Vec<Rec> = (0..50u64).map(|i| rec(i, 333, 0)).collect();
    let dir = TempDir::new("cut-tshark");
    for format in [Format::Pcap, Format::PcapNg] {
        let sink = FailingSink {
            data: Vec::new(),
            limit: 5000,
            chunk: 1000,
            truncated_to: None,
            epipe: false,
        };
        let mut core = core_over(sink, format, 1000);
        for r in &recs {
            core.write(r);
        }
        core.finish(&[]);
        assert!(core.error.is_some());
        let path = dir.path(&format!("{format:?}"));
        fs::write(&path, &core.sink.data).unwrap();
        let n = core.stats().records_written;
        assert!(n > 0 && n < 50);
        let Some(out) = wireshark_tool("tshark", &["-T", "fields", "-e", "frame.len", "-r"], &path)
        else {
            return;
        };
        assert_eq!(out.lines().count() as u64, n, "{format:?}");
    }
}

// ---------------------------------------------------------- record builders

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn pcap_record_round_trip(
        len in 0usize..9000,
        snaplen in 1u32..10_000,
        ts in 0u64..(u64::from(u32::MAX) * 1_000_000_000),
        seed in any::<u8>(),
    ) {
        let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(seed)).collect();
        let caplen = len.min(snaplen as usize);
        let mut b = Vec::new();
        format::pcap_file_header(&mut b, snaplen);
        format::pcap_record(&mut b, ts, &data, caplen);
        prop_assert_eq!(b.len(), 24 + format::pcap_record_len(caplen));
        let packets = parse_all(Format::Pcap, &b);
        prop_assert_eq!(packets, vec![Packet {
            ts,
            orig_len: len as u32,
            data: data[..caplen].to_vec(),
            interface: 0,
        }]);
    }

    #[test]
    fn epb_round_trip(
        len in 0usize..9000,
        snaplen in 1u32..10_000,
        ts in any::<u64>(),
        seed in any::<u8>(),
    ) {
        let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(seed)).collect();
        let caplen = len.min(snaplen as usize);
        let mut b = Vec::new();
        format::shb(&mut b, "o", "p");
        format::idb(&mut b, snaplen, &format::IdbText { name: "e", description: "d", filter: None });
        let before = b.len();
        let h = format::EpbHeader { interface_id: 0, ts_ns: ts, len, caplen, flags: 1 };
        format::epb(&mut b, &h, &data);
        prop_assert_eq!(b.len() - before, format::epb_len(caplen));
        prop_assert_eq!((b.len() - before) % 4, 0);
        let packets = parse_all(Format::PcapNg, &b);
        prop_assert_eq!(packets, vec![Packet {
            ts,
            orig_len: len as u32,
            data: data[..caplen].to_vec(),
            interface: 0,
        }]);
    }
}

// ----------------------------------------------------- one-copy (writev) writes

/// Records of every size around the direct threshold, on three queues (pcapng
/// interfaces appear mid-batch).
fn mixed_records(n: u64) -> Vec<Rec> {
    (0..n)
        .map(|i| {
            rec(
                i,
                [60, 511, 512, 513, 1514, 3000, 100][i as usize % 7],
                (i % 3) as u32,
            )
        })
        .collect()
}

fn unlimited() -> FailingSink {
    FailingSink {
        data: Vec::new(),
        limit: usize::MAX,
        chunk: usize::MAX,
        truncated_to: None,
        epipe: false,
    }
}

/// Writing large records from the records themselves (writev) makes the very
/// bytes the copying path makes, in both formats, with and without a snaplen
/// below the threshold, in batches of any size; short writes lose nothing.
#[test]
fn direct_writes_make_the_same_file_as_copied_ones() {
    let recs = mixed_records(500);
    for format in [Format::Pcap, Format::PcapNg] {
        for snaplen in [MAX_SNAPLEN, 1000, 300] {
            let mut copied = core_over(unlimited(), format, snaplen);
            for r in &recs {
                copied.write(r);
            }
            // flush, not finish: pcapng's statistics blocks carry the time.
            copied.flush();
            for (batch, chunk) in [(1, usize::MAX), (37, usize::MAX), (256, 700), (500, 3)] {
                let sink = FailingSink {
                    chunk,
                    ..unlimited()
                };
                let mut direct = core_over(sink, format, snaplen);
                for b in recs.chunks(batch) {
                    direct.write_direct(b);
                }
                direct.flush();
                let what = format!("{format:?} snaplen {snaplen} batch {batch} chunk {chunk}");
                assert!(direct.error.is_none(), "{what}");
                assert!(direct.sink.data == copied.sink.data, "{what}: bytes differ");
                let (a, b) = (direct.stats(), copied.stats());
                assert_eq!(
                    (a.records_written, a.bytes_written),
                    (b.records_written, b.bytes_written),
                    "{what}"
                );
            }
        }
    }
}

/// A write error in the middle of a writev of headers and frame data cuts the
/// file back to its last whole record, and every record is accounted for, as
/// with copied writes.
#[test]
fn direct_write_error_cuts_the_file_at_the_last_complete_record() {
    let recs: Vec<Rec> = (0..40u64)
        .map(|i| rec(i, 400 + i as usize * 37, 0))
        .collect();
    for format in [Format::Pcap, Format::PcapNg] {
        let mut full = core_over(unlimited(), format, MAX_SNAPLEN);
        full.write_direct(&recs);
        full.finish(&[]);
        let total = full.sink.data.len();
        for limit in (0..total).step_by(509) {
            let sink = FailingSink {
                limit,
                chunk: 700,
                ..unlimited()
            };
            let mut core = core_over(sink, format, MAX_SNAPLEN);
            for b in recs.chunks(16) {
                core.write_direct(b);
            }
            core.finish(&[]);
            let what = format!("{format:?} limit {limit}");
            assert!(core.error.is_some(), "{what}");
            let data = &core.sink.data;
            assert_eq!(data[..], full.sink.data[..data.len()], "{what}: a prefix");
            let s = core.stats();
            assert_eq!(s.bytes_written, data.len() as u64, "{what}");
            assert_accounted(&s, 40);
            if data.is_empty() {
                continue;
            }
            let packets = parse_all(format, data);
            assert_eq!(packets.len() as u64, s.records_written, "{what}");
            let want: Vec<Packet> = recs[..packets.len()]
                .iter()
                .map(|r| expect_packet(r, MAX_SNAPLEN as usize, 0))
                .collect();
            assert_eq!(packets, want, "{what}");
            assert_eq!(
                core.sink.truncated_to.is_some(),
                data.len() < limit,
                "{what}"
            );
        }
    }
}

/// Rotation with direct writes: the same files, byte for byte, as with copies
/// (pcap: pcapng's statistics blocks at the end carry the time).
#[test]
fn direct_writes_rotate_like_copied_ones() {
    let recs: Vec<Rec> = (0..3000u64).map(|i| rec(i, 1000, 0)).collect();
    let run = |direct: bool| {
        let dir = TempDir::new(if direct { "rotd" } else { "rotc" });
        let c = CaptureConfig {
            file_size_mb: Some(1),
            file_count: Some(3),
            ..config(&dir.path("cap.pcap"), Format::Pcap)
        };
        let mut w = CaptureWriter::open(&c, "eth0", &[0]).unwrap();
        for chunk in recs.chunks(64) {
            if direct {
                w.write_records(chunk);
            } else {
                w.write_batch(chunk);
            }
        }
        let s = w.close(&[]);
        assert!(s.error.is_none());
        let files: Vec<(String, Vec<u8>)> = dir
            .names()
            .into_iter()
            .map(|n| {
                let bytes = fs::read(dir.path(&n)).unwrap();
                (n, bytes)
            })
            .collect();
        (s.stats.files_rotated, s.stats.records_written, files)
    };
    let (copied, direct) = (run(false), run(true));
    assert_eq!((direct.0, direct.1), (copied.0, copied.1));
    assert!(copied.0 > 0, "the test rotates");
    assert_eq!(direct.2.len(), copied.2.len());
    for ((dn, db), (cn, cb)) in direct.2.iter().zip(&copied.2) {
        assert_eq!(dn, cn);
        assert!(db == cb, "{dn} differs");
    }
}

// ------------------------------------------- pcapng metadata, direction (tshark)

fn outbound(mut r: Rec) -> Rec {
    r.direction = Direction::Outbound;
    r
}

/// `uname -sr`, the independent oracle of shb_os.
fn uname_sr() -> String {
    let out = Command::new("uname").arg("-sr").output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn pcapng_names_the_os_the_application_the_queue_and_the_filter() {
    let dir = TempDir::new("meta");
    let path = dir.path("m.pcapng");
    let c = CaptureConfig {
        filter: Some("udp port 9000".into()),
        ..config(&path, Format::PcapNg)
    };
    let mut w = CaptureWriter::open(&c, "eth7", &[0, 3]).unwrap();
    w.write_batch([rec(0, 100, 0), outbound(rec(1, 100, 3)), rec(2, 60, 3)]);
    assert!(w.close(&[]).error.is_none());

    let f = read_pcapng(&path);
    assert_eq!(f.os.as_deref(), Some(uname_sr().as_str()), "shb_os");
    assert_eq!(
        f.userappl.as_deref(),
        Some(concat!("xdpstack ", env!("CARGO_PKG_VERSION")))
    );
    for (i, q) in [0, 3].into_iter().enumerate() {
        let opts = &f.interfaces[i].options;
        let description = format!("eth7 RX queue {q}");
        assert!(opts.contains(&InterfaceDescriptionOption::IfName("eth7".into())));
        assert!(opts.contains(&InterfaceDescriptionOption::IfDescription(
            description.into()
        )));
        assert!(opts.contains(&InterfaceDescriptionOption::IfTsResol(9)));
        // pcap-file keeps if_filter's value whole: the type octet, then the text.
        assert!(
            opts.contains(&InterfaceDescriptionOption::IfFilter(
                b"\0udp port 9000"[..].into()
            )),
            "{opts:?}"
        );
    }
    assert_eq!(f.flags, [1, 2, 1], "epb_flags: inbound, outbound, inbound");

    let Some(report) = wireshark_tool("capinfos", &["-M"], &path) else {
        return;
    };
    assert_eq!(capinfos_value(&report, "Capture oper-sys:"), [uname_sr()]);
    assert_eq!(
        capinfos_value(&report, "Capture application:"),
        [concat!("xdpstack ", env!("CARGO_PKG_VERSION"))]
    );
    assert_eq!(capinfos_value(&report, "Name ="), ["eth7"; 2]);
    assert_eq!(
        capinfos_value(&report, "Description ="),
        ["eth7 RX queue 0", "eth7 RX queue 3"]
    );
    assert_eq!(
        capinfos_value(&report, "Filter string ="),
        ["udp port 9000"; 2]
    );
    let Some(fields) = wireshark_tool(
        "tshark",
        &[
            "-T",
            "fields",
            "-e",
            "frame.interface_name",
            "-e",
            "frame.interface_description",
            "-e",
            "frame.packet_flags_direction",
            "-r",
        ],
        &path,
    ) else {
        return;
    };
    assert_eq!(
        fields.lines().collect::<Vec<_>>(),
        [
            "eth7\teth7 RX queue 0\t0x00000001",
            "eth7\teth7 RX queue 3\t0x00000002",
            "eth7\teth7 RX queue 3\t0x00000001",
        ]
    );
    let Some(verbose) = wireshark_tool("tshark", &["-V", "-r"], &path) else {
        return;
    };
    let directions: Vec<&str> = verbose
        .lines()
        .filter_map(|l| l.split(" = Direction: ").nth(1))
        .collect();
    assert_eq!(
        directions,
        ["Inbound (0x1)", "Outbound (0x2)", "Inbound (0x1)"]
    );
}

/// Both paths of the writer (copied and writev) write each record's direction.
#[test]
fn direction_on_both_write_paths() {
    let recs: Vec<Rec> = (0..40u64)
        .map(|i| {
            let r = rec(i, [60, 1514][i as usize % 2], 0);
            if i % 3 == 0 { outbound(r) } else { r }
        })
        .collect();
    let want: Vec<u32> = (0..40).map(|i| if i % 3 == 0 { 2 } else { 1 }).collect();
    for direct in [false, true] {
        let dir = TempDir::new("dir");
        let path = dir.path("d.pcapng");
        let mut w = CaptureWriter::open(&config(&path, Format::PcapNg), "eth0", &[0]).unwrap();
        if direct {
            w.write_records(&recs);
        } else {
            w.write_batch(&recs);
        }
        assert!(w.close(&[]).error.is_none());
        assert_eq!(read_pcapng(&path).flags, want, "direct {direct}");
    }
}

// ------------------------------------------------------------- -G, on a clock

/// A clock the test sets.
#[derive(Clone, Debug, Default)]
struct FakeClock(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl FakeClock {
    fn at(secs: f64) -> Self {
        let c = Self::default();
        c.set(secs);
        c
    }
    fn set(&self, secs: f64) {
        let ns = (secs * 1e9).round() as u64;
        self.0.store(ns, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Clock for FakeClock {
    fn now_ns(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

const T0: i64 = 1_700_000_000;

/// `-G` options over `base`.
fn g_config(base: &Path, format: Format, g: u32, c: Option<u64>, w: Option<u32>) -> CaptureConfig {
    CaptureConfig {
        rotate_seconds: Some(g),
        file_size_mb: c,
        file_count: w,
        ..config(base, format)
    }
}

/// The records of each file, by name.
fn records_by_file(dir: &TempDir) -> Vec<(String, Vec<Packet>)> {
    dir.names()
        .into_iter()
        .map(|n| {
            let packets = if n.ends_with(".pcapng") {
                read_pcapng(&dir.path(&n)).packets
            } else {
                read_pcap(&dir.path(&n)).1
            };
            (n, packets)
        })
        .collect()
}

fn packets(recs: &[Rec]) -> Vec<Packet> {
    recs.iter().map(|r| expect_packet(r, 1 << 20, 0)).collect()
}

/// `-G 60 -w 'cap-%s.pcap'`: a new file, named by strftime at its opening,
/// before the first record once 60 whole seconds (as `time(2)` counts them)
/// have passed since the current file was opened; none while no record comes.
/// The same files by both write paths.
#[test]
fn rotation_by_time_names_each_file_by_its_opening() {
    let recs: Vec<Rec> = (0..12u64)
        .map(|i| rec(i, [80, 1400][i as usize % 2], 0))
        .collect();
    for direct in [false, true] {
        let dir = TempDir::new("g");
        let clock = FakeClock::at(T0 as f64 + 0.9);
        let c = g_config(&dir.path("cap-%s.pcap"), Format::Pcap, 60, None, None);
        let mut w = CaptureWriter::open_with_clock(&c, "eth0", &[0], clock.clone()).unwrap();
        let name = |t: i64| format!("cap-{t}.pcap");
        assert_eq!(w.current_path(), Some(dir.path(&name(T0)).as_path()));
        let write = |w: &mut CaptureWriter, recs: &[Rec]| {
            if direct {
                w.write_records(recs);
            } else {
                w.write_batch(recs);
            }
        };
        // 59.9 s after opening, but second 59 of the interval: no new file.
        clock.set(T0 as f64 + 59.99);
        write(&mut w, &recs[0..3]);
        assert_eq!(w.stats().files_rotated, 0);
        // Second 60 (59.1 s after the opening): the next file, named by now.
        clock.set(T0 as f64 + 60.0);
        write(&mut w, &recs[3..6]);
        assert_eq!(w.current_path(), Some(dir.path(&name(T0 + 60)).as_path()));
        // No record for 200 s: no file. Then one: a file named by its time,
        // 200 s after the last opening (not at a multiple of 60).
        clock.set(T0 as f64 + 260.5);
        write(&mut w, &[]);
        assert_eq!(w.stats().files_rotated, 1, "no record, no new file");
        write(&mut w, &recs[6..9]);
        clock.set(T0 as f64 + 319.0);
        write(&mut w, &recs[9..12]);
        let s = w.close(&[]);
        assert!(s.error.is_none() && s.end.is_none(), "{s:?}");
        assert_eq!(s.stats.files_rotated, 2);
        assert_eq!(s.stats.records_written, 12);
        assert_eq!(s.path, Some(dir.path(&name(T0 + 260))));
        assert_eq!(
            records_by_file(&dir),
            [
                (name(T0), packets(&recs[0..3])),
                (name(T0 + 60), packets(&recs[3..6])),
                (name(T0 + 260), packets(&recs[6..12])),
            ],
            "direct {direct}"
        );
    }
}

/// "If no time format is specified, each new file will overwrite the previous."
#[test]
fn rotation_by_time_without_a_time_format_overwrites() {
    let dir = TempDir::new("gsame");
    let clock = FakeClock::at(T0 as f64);
    let c = g_config(&dir.path("same.pcap"), Format::Pcap, 10, None, None);
    let mut w = CaptureWriter::open_with_clock(&c, "eth0", &[0], clock.clone()).unwrap();
    let recs: Vec<Rec> = (0..4u64).map(|i| rec(i, 100, 0)).collect();
    w.write_batch(&recs[..2]);
    clock.set(T0 as f64 + 10.0);
    w.write_batch(&recs[2..]);
    let s = w.close(&[]);
    assert_eq!(s.stats.files_rotated, 1);
    assert_eq!(
        records_by_file(&dir),
        [("same.pcap".into(), packets(&recs[2..]))]
    );
}

/// `-G` with `-W 2` (no `-C`): two files, then the capture ends when the third
/// is due; that record and the later ones are dropped, counted; the last file
/// still gets pcapng's statistics.
#[test]
fn rotation_by_time_with_a_file_count_ends_the_capture() {
    let dir = TempDir::new("gw");
    let clock = FakeClock::at(T0 as f64);
    let c = g_config(&dir.path("g-%s.pcapng"), Format::PcapNg, 5, None, Some(2));
    let mut w = CaptureWriter::open_with_clock(&c, "eth0", &[0], clock.clone()).unwrap();
    let recs: Vec<Rec> = (0..6u64).map(|i| rec(i, 100, 0)).collect();
    w.write_batch(&recs[0..2]);
    clock.set(T0 as f64 + 5.0);
    w.write_batch(&recs[2..4]);
    assert_eq!(w.ended(), None);
    clock.set(T0 as f64 + 10.0);
    w.write(&recs[4]);
    assert_eq!(w.ended(), Some(CaptureEnd::FileLimit { files: 2 }));
    assert!(w.error().is_none());
    w.write(&recs[5]);
    let qs = [QueueStats {
        queue: 0,
        received: 6,
        ..QueueStats::default()
    }];
    let s = w.close(&qs);
    assert!(s.error.is_none());
    assert_eq!(s.end, Some(CaptureEnd::FileLimit { files: 2 }));
    assert_eq!(
        (
            s.stats.records_written,
            s.stats.records_dropped,
            s.stats.bytes_dropped
        ),
        (4, 2, 200)
    );
    assert_accounted(&s.stats, 6);
    let last = format!("g-{}.pcapng", T0 + 5);
    assert_eq!(s.path, Some(dir.path(&last)));
    assert_eq!(
        records_by_file(&dir),
        [
            (format!("g-{T0}.pcapng"), packets(&recs[0..2])),
            (last.clone(), packets(&recs[2..4])),
        ]
    );
    let f = read_pcapng(&dir.path(&last));
    assert_eq!(f.stats.len(), 1, "the last file has its statistics");
    assert_eq!(isb_value(&f.stats[0].2, 4), Some(6));
}

/// `-G` with `-C`: each interval starts an unnumbered name, `-C` numbers from 1
/// within it ("filenames will take the form of `file<count>`").
#[test]
fn rotation_by_time_and_size_numbers_within_the_interval() {
    let dir = TempDir::new("gc");
    let clock = FakeClock::at(T0 as f64);
    let c = g_config(&dir.path("c-%s.pcap"), Format::Pcap, 60, Some(1), None);
    let mut w = CaptureWriter::open_with_clock(&c, "eth0", &[0], clock.clone()).unwrap();
    // 985 records of 1016 bytes fill a file past 1,000,000 bytes (see
    // `rotation_ring_keeps_the_newest_files`).
    let recs: Vec<Rec> = (0..2500u64).map(|i| rec(i, 1000, 0)).collect();
    for chunk in recs[..2000].chunks(64) {
        w.write_records(chunk);
    }
    clock.set(T0 as f64 + 61.0);
    for chunk in recs[2000..].chunks(64) {
        w.write_batch(chunk);
    }
    let s = w.close(&[]);
    assert!(s.error.is_none());
    assert_eq!(s.stats.files_rotated, 3);
    let (a, b) = (format!("c-{T0}.pcap"), format!("c-{}.pcap", T0 + 61));
    assert_eq!(
        records_by_file(&dir),
        [
            (a.clone(), packets(&recs[0..985])),
            (format!("{a}1"), packets(&recs[985..1970])),
            (format!("{a}2"), packets(&recs[1970..2000])),
            (b, packets(&recs[2000..])),
        ]
    );
}

/// `-G` with `-C` and `-W 3`: `-W` pads the numbers (0 included) and, as in
/// tcpdump's code, wraps them; it does not end the capture.
#[test]
fn rotation_by_time_size_and_count_pads_and_wraps() {
    let dir = TempDir::new("gcw");
    let clock = FakeClock::at(T0 as f64);
    let c = g_config(&dir.path("w-%s.pcap"), Format::Pcap, 60, Some(1), Some(3));
    let mut w = CaptureWriter::open_with_clock(&c, "eth0", &[0], clock.clone()).unwrap();
    let a = format!("w-{T0}.pcap");
    assert_eq!(w.current_path(), Some(dir.path(&format!("{a}0")).as_path()));
    let recs: Vec<Rec> = (0..3500u64).map(|i| rec(i, 1000, 0)).collect();
    for chunk in recs[..3000].chunks(64) {
        w.write_batch(chunk);
    }
    clock.set(T0 as f64 + 60.0);
    w.write_batch(&recs[3000..]);
    let s = w.close(&[]);
    assert!(s.error.is_none() && s.end.is_none());
    // 0..985 in a0, ..1970 in a1, ..2955 in a2, ..3000 in a0 again; then b0.
    let b = format!("w-{}.pcap", T0 + 60);
    assert_eq!(
        records_by_file(&dir),
        [
            (format!("{a}0"), packets(&recs[2955..3000])),
            (format!("{a}1"), packets(&recs[985..1970])),
            (format!("{a}2"), packets(&recs[1970..2955])),
            (format!("{b}0"), packets(&recs[3000..])),
        ]
    );
}

/// The `-G` name is strftime(3) in local time: the same as `date` makes of the
/// same second, in the same time zone.
#[test]
fn rotation_names_are_strftime_in_local_time() {
    let pattern = "/d/cap-%Y%m%d-%H%M%S-%j-%a-%%.pcap";
    let c = g_config(Path::new(pattern), Format::Pcap, 60, None, None);
    let settings = Settings::from_config(&c).unwrap();
    for t in [T0, T0 + 86_399, 1_720_000_000] {
        let out = Command::new("date")
            .arg("-d")
            .arg(format!("@{t}"))
            .arg(format!("+{pattern}"))
            .output()
            .unwrap();
        assert!(out.status.success());
        let want = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            settings.file_name(Path::new(pattern), 0, t),
            Path::new(want.trim())
        );
    }
    // Without -G the name is taken as it is, % and all (as tcpdump).
    let plain = Settings::from_config(&config(Path::new(pattern), Format::Pcap)).unwrap();
    assert_eq!(
        plain.file_name(Path::new(pattern), 0, T0),
        Path::new(pattern)
    );
}

#[test]
fn rotation_by_time_options_are_checked() {
    let file = |p: &str| Output::File(p.into());
    let cases = [
        (file("/tmp/x"), Some(0), None, None, "-G must be at least 1"),
        (file("/tmp/x"), None, None, Some(2), "-W needs -C or -G"),
        (
            file("/tmp/x-%Q"),
            Some(60),
            None,
            None,
            "not a strftime(3) pattern",
        ),
        (file("/tmp/x-%"), Some(60), None, None, "write %% for a %"),
        (Output::Stdout, Some(60), None, None, "not standard output"),
        (
            file("/tmp/x"),
            Some(60),
            None,
            Some(0),
            "-W must be at least 1",
        ),
    ];
    for (output, g, c, w, msg) in cases {
        let config = CaptureConfig {
            rotate_seconds: g,
            file_size_mb: c,
            file_count: w,
            ..CaptureConfig::new(output)
        };
        let e = CaptureWriter::open(&config, "eth0", &[]).unwrap_err();
        assert!(e.to_string().starts_with("capture options: "), "{e}");
        assert!(e.to_string().contains(msg), "{e} (want {msg})");
    }
    // Without -G, a % in the name is just a character.
    let dir = TempDir::new("pct");
    let path = dir.path("x-%Q");
    let w = CaptureWriter::open(&config(&path, Format::Pcap), "eth0", &[]).unwrap();
    assert_eq!(w.current_path(), Some(path.as_path()));
}

// ---------------------------------------------- the reader of the pipe goes away

/// A sink whose reader has gone: every write fails with EPIPE.
fn broken_pipe() -> FailingSink {
    FailingSink {
        epipe: true,
        ..unlimited()
    }
}

/// EPIPE ends the capture (tcpdump's SIGPIPE: status 0), it is not a write
/// error; anything else is one.
#[test]
fn epipe_is_the_end_of_the_reader_not_an_error() {
    for format in [Format::Pcap, Format::PcapNg] {
        let mut core = core_over(broken_pipe(), format, MAX_SNAPLEN);
        for i in 0..10 {
            core.write(&rec(i, 100, 0));
        }
        core.flush();
        assert!(core.error.is_none(), "{format:?}: {:?}", core.error);
        assert_eq!(core.end, Some(CaptureEnd::ReaderClosed));
        assert!(!core.accepting());
        core.write(&rec(10, 100, 0));
        core.finish(&[QueueStats::default()]);
        assert!(core.error.is_none());
        let s = core.stats();
        assert_eq!((s.records_written, s.records_dropped), (0, 11));
        assert_accounted(&s, 11);
    }
    // The same sink failing with EIO: an error, no end.
    let mut core = core_over(
        FailingSink {
            limit: 0,
            ..unlimited()
        },
        Format::Pcap,
        100,
    );
    core.write(&rec(0, 10, 0));
    core.flush();
    assert!(core.end.is_none());
    let os_error = core.error.as_ref().and_then(CaptureError::io_error);
    assert_eq!(os_error.and_then(io::Error::raw_os_error), Some(libc::EIO));
}

/// A real FIFO whose reader closes it: the writer says the reader went away,
/// keeps what the reader read whole, reports no error, and drops the rest.
#[test]
fn a_fifo_whose_reader_closes_ends_the_capture() {
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = TempDir::new("fifo");
    let fifo = dir.path("f");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    // Non-blocking, so that opening the read end does not wait for a writer.
    let mut reader = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let c = CaptureConfig {
        packet_buffered: true,
        ..config(&fifo, Format::Pcap)
    };
    let mut w = CaptureWriter::open(&c, "eth0", &[0]).unwrap();
    w.write(rec(0, 100, 0));
    let mut got = vec![0u8; 4096];
    let n = io::Read::read(&mut reader, &mut got).unwrap();
    assert_eq!(n, 24 + 116, "header and one record");
    drop(reader);
    w.write(rec(1, 100, 0));
    assert!(w.error().is_none(), "{:?}", w.error());
    assert_eq!(w.ended(), Some(CaptureEnd::ReaderClosed));
    w.write(rec(2, 100, 0));
    let s = w.close(&[]);
    assert!(s.error.is_none());
    assert_eq!(s.end, Some(CaptureEnd::ReaderClosed));
    assert_eq!((s.stats.records_written, s.stats.records_dropped), (1, 2));
}
