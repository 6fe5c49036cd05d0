//! Multi-buffer packets in the capture: one view of a chain of frames is one
//! record with its true length, in both formats and on both write paths, with
//! the snaplen cutting anywhere; and the filter decides on a chain as it does
//! on the whole packet.

use std::{fs, path::Path, process::Command, sync::Arc};

use pcap_file::{
    pcap::PcapReader,
    pcapng::{Block, PcapNgReader},
};

use super::*;
use crate::{
    filter::Filter,
    frame::{Frame, FramePool, HeapMemory, RxMeta, Segment},
};

/// Frames as a UMEM of 4096-byte frames has them: data from byte 256.
const FRAME_SIZE: u32 = 4096;
const OFFSET: usize = 256;
/// What a 2048-byte frame holds behind its headroom, the first buffer of a
/// jumbo frame on most drivers.
const FIRST: usize = 1792;

/// A heap-backed pool and its free frames: views of packets split into the
/// buffers the caller asks for.
pub(super) struct Chains {
    // Views drop before the pool (they are the caller's, gone by then).
    free: Vec<Frame>,
    pool: FramePool,
}

impl Chains {
    pub(super) fn new(frames: u32) -> Self {
        let mut pool = FramePool::new(Box::new(HeapMemory::new(FRAME_SIZE, frames)), 0);
        let free = pool.take_all();
        Self { free, pool }
    }

    /// One view of `packet` in buffers of `lens` bytes (in order, summing to
    /// its length), received at `ts` on queue 0.
    pub(super) fn view(&mut self, packet: &[u8], lens: &[usize], ts: u64) -> FrameView {
        self.recycle();
        assert_eq!(lens.iter().sum::<usize>(), packet.len());
        let mut segments = Vec::new();
        let mut at = 0;
        for &len in lens {
            let mut frame = self.free.pop().expect("enough frames");
            self.pool.bytes_mut(&mut frame)[OFFSET..OFFSET + len]
                .copy_from_slice(&packet[at..at + len]);
            at += len;
            segments.push(Segment {
                frame,
                offset: OFFSET as u32,
                len: len as u32,
            });
        }
        let meta = RxMeta {
            queue: 0,
            timestamp_ns: ts,
        };
        self.pool
            .into_dispatch_chain(&mut segments, meta, 0, |_| unreachable!("no consumer"))
    }

    /// Takes back the frames of the views dropped so far.
    fn recycle(&mut self) {
        while let Some(f) = self.pool.reclaim() {
            self.free.push(f);
        }
    }
}

/// An Ethernet, IPv4 and UDP packet of `total` bytes to port `dport`, its
/// payload a pattern with `udp[4000]` (when there) = `mark`.
pub(super) fn udp_packet(total: usize, dport: u16, mark: u8) -> Vec<u8> {
    let mut p: Vec<u8> = (0..total).map(|i| (i * 7 + 3) as u8).collect();
    p[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    p[14] = 0x45;
    p[16..18].copy_from_slice(&((total - 14) as u16).to_be_bytes());
    p[20..22].copy_from_slice(&0x4000u16.to_be_bytes()); // DF, offset 0
    p[23] = 17;
    p[34..36].copy_from_slice(&4321u16.to_be_bytes());
    p[36..38].copy_from_slice(&dport.to_be_bytes());
    p[38..40].copy_from_slice(&((total - 34) as u16).to_be_bytes());
    if let Some(b) = p.get_mut(34 + 4000) {
        *b = mark;
    }
    p
}

/// Buffer lengths of a packet in `n` buffers: `FIRST` bytes in each but the
/// last, which holds the rest (at most a 4096-byte frame's 3840).
pub(super) fn split(n: usize) -> Vec<usize> {
    let last = (9014 - FIRST * (n - 1)).min(FRAME_SIZE as usize - OFFSET);
    let mut lens = vec![FIRST; n - 1];
    lens.push(last);
    lens
}

/// A file name of its own (tests run in parallel).
pub(super) fn temp(name: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("xdpstack-chain-{}-{n}-{name}", std::process::id()))
}

/// (original length, data) of every record of a capture file.
pub(super) fn records(path: &Path, format: Format) -> Vec<(u32, Vec<u8>)> {
    let file = fs::File::open(path).unwrap();
    let mut out = Vec::new();
    match format {
        Format::Pcap => {
            let mut r = PcapReader::new(file).unwrap();
            while let Some(p) = r.next_raw_packet() {
                let p = p.unwrap();
                assert_eq!(p.incl_len as usize, p.data.len());
                out.push((p.orig_len, p.data.into_owned()));
            }
        }
        Format::PcapNg => {
            let mut r = PcapNgReader::new(file).unwrap();
            while let Some(b) = r.next_block() {
                if let Block::EnhancedPacket(p) = b.unwrap() {
                    out.push((p.original_len, p.data.into_owned()));
                }
            }
        }
    }
    out
}

/// Writes `views` into a new file (`direct`: by `write_records`, as the
/// capture consumer does; else copied, by `write_batch`) and reads it back.
fn round_trip(
    format: Format,
    direct: bool,
    snaplen: u32,
    views: &[FrameView],
) -> (CaptureStats, Vec<(u32, Vec<u8>)>) {
    let path = temp(&format!("{format:?}-{direct}-{snaplen}"));
    let config = CaptureConfig {
        format,
        snaplen,
        ..CaptureConfig::new(Output::File(path.clone()))
    };
    let mut w = CaptureWriter::open(&config, "eth0", &[0]).unwrap();
    if direct {
        w.write_records(views);
    } else {
        w.write_batch(views.iter());
    }
    let summary = w.close(&[]);
    assert!(summary.error.is_none(), "{:?}", summary.error);
    let got = records(&path, format);
    fs::remove_file(&path).unwrap();
    (summary.stats, got)
}

#[test]
fn a_chain_is_one_record_with_its_true_length_however_the_snaplen_cuts_it() {
    let mut chains = Chains::new(64);
    for n in 2..=5 {
        let lens = split(n);
        let total: usize = lens.iter().sum();
        let packet = udp_packet(total, 53, 0x41);
        let small = udp_packet(60, 53, 0);
        let single = udp_packet(1514, 53, 0);
        let views = vec![
            chains.view(&small, &[60], 1),
            chains.view(&packet, &lens, 2),
            chains.view(&single, &[1514], 3),
            chains.view(&packet, &lens, 4),
        ];
        assert!(views[1].is_chained() && !views[2].is_chained());
        // Whole; cut in the first buffer (copied, and from the frame); at its
        // end; in the second; in the last; just short of the end.
        let last_start = total - lens[n - 1];
        let snaplens = [
            MAX_SNAPLEN as usize,
            100,
            1000,
            FIRST,
            FIRST + 501,
            last_start + 7,
            total - 3,
            total,
        ];
        for snaplen in snaplens {
            for format in [Format::Pcap, Format::PcapNg] {
                for direct in [false, true] {
                    let (stats, got) = round_trip(format, direct, snaplen as u32, &views);
                    let want: Vec<(u32, Vec<u8>)> = [&small, &packet, &single, &packet]
                        .iter()
                        .map(|p| (p.len() as u32, p[..p.len().min(snaplen)].to_vec()))
                        .collect();
                    let case = format!("{n} buffers, snaplen {snaplen}, {format:?}, {direct}");
                    assert_eq!(got.len(), 4, "{case}");
                    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert_eq!(g.0, w.0, "original length of record {i}: {case}");
                        assert_eq!(g.1.len(), w.1.len(), "caplen of record {i}: {case}");
                        assert!(g.1 == w.1, "data of record {i}: {case}");
                    }
                    assert_eq!(stats.records_written, 4, "{case}");
                }
            }
        }
    }
}

#[test]
fn a_write_error_drops_and_counts_chains_as_whole_records() {
    let mut chains = Chains::new(64);
    let packet = udp_packet(9014, 53, 1);
    let views: Vec<FrameView> = (0..4).map(|i| chains.view(&packet, &split(5), i)).collect();
    for (format, direct) in [(Format::Pcap, true), (Format::PcapNg, false)] {
        let config = CaptureConfig {
            format,
            snaplen: 5000,
            ..CaptureConfig::new(Output::File("/dev/full".into()))
        };
        let mut w = CaptureWriter::open(&config, "eth0", &[0]).unwrap();
        if direct {
            w.write_records(&views);
        } else {
            w.write_batch(views.iter());
        }
        let s = w.close(&[]);
        assert!(s.error.is_some(), "ENOSPC");
        assert_eq!((s.stats.records_written, s.stats.records_dropped), (0, 4));
        assert_eq!(
            s.stats.bytes_dropped,
            4 * 5000,
            "{format:?}: caplen per record"
        );
    }
}

/// tshark reads a chain as one frame of its whole length.
#[test]
fn tshark_reads_a_chain_as_one_frame() {
    if Command::new("tshark").arg("--version").output().is_err() {
        eprintln!("tshark not installed: skipped");
        return;
    }
    let mut chains = Chains::new(16);
    let packet = udp_packet(9014, 53, 1);
    let views = vec![chains.view(&packet, &split(5), 1)];
    for format in [Format::Pcap, Format::PcapNg] {
        let path = temp(&format!("tshark-{format:?}"));
        let config = CaptureConfig {
            format,
            snaplen: 9000,
            ..CaptureConfig::new(Output::File(path.clone()))
        };
        let mut w = CaptureWriter::open(&config, "eth0", &[0]).unwrap();
        w.write_records(&views);
        assert!(w.close(&[]).error.is_none());
        let out = Command::new("tshark")
            .args(["-n", "-r"])
            .arg(&path)
            .args(["-T", "fields", "-e", "frame.len", "-e", "frame.cap_len"])
            .args(["-e", "udp.dstport"])
            .output()
            .unwrap();
        fs::remove_file(&path).unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(text.trim_end(), "9014\t9000\t53", "{format:?}");
    }
}

// ------------------------------------------------------------------ filter

/// Expressions that read beyond the first buffer, or the length, and some
/// that read the headers only.
const EXPRESSIONS: [&str; 9] = [
    "udp[4000] == 0x41",
    "len > 5000",
    "greater 4000",
    "less 6000",
    "udp[8000:2] == 0x4141",
    "ether[9000] != 0",
    "udp dst port 53",
    "udp and dst port 53 and udp[4000] == 0x41",
    "udp dst port 54",
];

#[test]
fn the_filter_decides_on_a_chain_as_on_the_whole_packet() {
    let mut chains = Chains::new(16);
    let mut scratch = Vec::new();
    for expression in EXPRESSIONS {
        let filter = Filter::new(expression).unwrap();
        let reach = filter.reads_at_most().unwrap_or(usize::MAX);
        let mut verdicts = Vec::new();
        let mut first_only_differs = false;
        // Chains shorter than the loads and the lengths tested, and longer.
        let shapes = (2..=5)
            .map(split)
            .chain([vec![FIRST, 1000], vec![FIRST, 8]]);
        for lens in shapes {
            let (n, total) = (lens.len(), lens.iter().sum());
            for (dport, mark) in [(53, 0x41), (53, 0x42), (54, 0x41)] {
                let mut packet = udp_packet(total, dport, mark);
                if let Some(b) = packet.get_mut(34 + 8000..34 + 8002) {
                    b.fill(mark);
                }
                let view = chains.view(&packet, &lens, 0);
                let whole = filter.matches(&packet);
                let case = format!("`{expression}`, {n} buffers, port {dport}, mark {mark}");
                assert_eq!(
                    selected(&filter, reach, &view, &mut scratch),
                    whole,
                    "{case}"
                );
                first_only_differs |= filter.matches(view.bytes()) != whole;
                verdicts.push(whole);
            }
        }
        assert!(
            verdicts.contains(&true) && verdicts.contains(&false),
            "`{expression}` tells the packets apart"
        );
        // The expressions that look beyond the first buffer would be
        // decided wrongly on it alone.
        let beyond = !expression.starts_with("udp dst");
        assert_eq!(first_only_differs, beyond, "`{expression}`");
    }
}

#[test]
fn a_chain_is_copied_for_the_filter_only_when_it_reads_past_the_first_buffer() {
    let mut chains = Chains::new(16);
    let packet = udp_packet(9014, 53, 0x41);
    let view = chains.view(&packet, &split(5), 0);
    for (expression, copies) in [
        ("udp dst port 53", false),
        ("udp", false),
        ("udp[4000] == 0x41", true),
        ("len > 5000", true),
    ] {
        let filter = Filter::new(expression).unwrap();
        let reach = filter.reads_at_most().unwrap_or(usize::MAX);
        let mut scratch = Vec::new();
        assert!(
            selected(&filter, reach, &view, &mut scratch),
            "{expression}"
        );
        assert_eq!(scratch.len(), if copies { 9014 } else { 0 }, "{expression}");
    }
    // A selection that does not say what it reads gets the whole packet.
    let exact = Exactly(packet.clone());
    let reach = exact.reads_at_most().unwrap_or(usize::MAX);
    let mut scratch = Vec::new();
    assert!(selected(&exact, reach, &view, &mut scratch));
    assert!(!selected(
        &exact,
        reach,
        &chains.view(&packet[..100], &[100], 0),
        &mut scratch
    ));
}

/// Selects one packet, all of it.
#[derive(Debug)]
struct Exactly(Vec<u8>);

impl Selects for Exactly {
    fn selects(&self, frame: &[u8]) -> bool {
        frame == self.0
    }
}

#[test]
fn the_consumer_writes_each_chain_it_selects_as_one_record() {
    let path = temp("consumer.pcapng");
    let config = CaptureConfig {
        format: Format::PcapNg,
        ..CaptureConfig::new(Output::File(path.clone()))
    };
    let filter = Arc::new(Filter::new("udp[4000] == 0x41").unwrap());
    let capture = Capture::open(&config, "eth0", &[0], None)
        .unwrap()
        .with_filter(filter);
    let mut chains = Chains::new(32);
    let (hit, miss) = (udp_packet(9014, 53, 0x41), udp_packet(9014, 53, 0x42));
    let mut consumer = capture.consumer();
    for (packet, n) in [(&hit, 5), (&miss, 5), (&hit, 4), (&miss, 2)] {
        let lens = split(n);
        let packet = &packet[..lens.iter().sum()];
        consumer.consume_owned(chains.view(packet, &lens, 0));
    }
    drop(consumer);
    assert_eq!(capture.unselected(), 2);
    let summary = capture.close(&[]);
    assert_eq!(summary.stats.records_written, 2);
    let got = records(&path, Format::PcapNg);
    fs::remove_file(&path).unwrap();
    let want = [&hit[..], &hit[..split(4).iter().sum()]];
    assert_eq!(got.len(), 2);
    for (g, w) in got.iter().zip(want) {
        assert!(
            g.0 as usize == w.len() && g.1 == w,
            "a selected chain, whole"
        );
    }
}
