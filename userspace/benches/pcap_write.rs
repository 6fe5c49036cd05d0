//! Capture writer throughput on one thread: 64-byte and 1514-byte frames, pcap and
//! pcapng, written to a file on tmpfs (`/dev/shm`, or `XDPSTACK_BENCH_DIR`) so the
//! numbers are the writer's and the kernel's copy, not a disk's.
//!
//! Reported twice: `records` (frames/s) and `bytes` (frame bytes/s, decimal
//! units). Targets: 14.88 M records/s at 64 bytes (10 GbE line rate) and 2 GB/s at
//! 1514 bytes.
//!
//! `writev` is the alternative the writer does not use: pcap headers in an array
//! and one `writev(2)` per 512 records straight from the frames (no copy), to
//! compare with the writer's copy into one buffer.
//!
//! `cargo bench -p xdpstack --bench pcap_write`

use std::{
    fs::{self, File},
    hint::black_box,
    io::{IoSlice, Write},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use xdpstack::capture::{CaptureConfig, CaptureRecord, CaptureWriter, Format, Output};

/// Records per `write_batch`, like one RX batch of the poller.
const BATCH: usize = 64;
/// Start a new file (outside the timed part) past this size, so tmpfs does not
/// fill the machine's memory.
const FILE_MAX: u64 = 256 << 20;

struct Frame {
    data: Vec<u8>,
    ts: u64,
}

impl CaptureRecord for Frame {
    fn bytes(&self) -> &[u8] {
        &self.data
    }
    fn timestamp_ns(&self) -> u64 {
        self.ts
    }
    fn queue(&self) -> u32 {
        0
    }
}

fn frames(len: usize) -> Vec<Frame> {
    (0..BATCH)
        .map(|i| Frame {
            data: (0..len).map(|b| (b + i) as u8).collect(),
            ts: 1_700_000_000_000_000_000 + i as u64,
        })
        .collect()
}

fn bench_dir() -> PathBuf {
    std::env::var_os("XDPSTACK_BENCH_DIR").map_or_else(|| PathBuf::from("/dev/shm"), PathBuf::from)
}

fn open(path: &Path, format: Format) -> CaptureWriter {
    let c = CaptureConfig {
        format,
        ..CaptureConfig::new(Output::File(path.to_path_buf()))
    };
    CaptureWriter::open(&c, "bench0", &[0]).expect("open the bench file")
}

/// `iters` batches through the writer; reopening past FILE_MAX is not timed.
fn run_writer(path: &Path, format: Format, batch: &[Frame], iters: u64, direct: bool) -> Duration {
    let mut w = open(path, format);
    let mut total = Duration::ZERO;
    let mut t = Instant::now();
    for _ in 0..iters {
        if direct {
            // What the stack's capture consumer calls: large frames by writev.
            w.write_records(batch);
        } else {
            w.write_batch(batch.iter());
        }
        if w.stats().bytes_written > FILE_MAX {
            total += t.elapsed();
            let s = w.close(&[]);
            assert!(s.error.is_none(), "{:?}", s.error);
            w = open(path, format);
            t = Instant::now();
        }
    }
    w.flush();
    total += t.elapsed();
    let s = w.close(&[]);
    assert!(s.error.is_none(), "{:?}", s.error);
    total
}

/// The writev alternative, classic pcap: headers in an array, frames in place.
fn run_writev(path: &Path, batch: &[Frame], iters: u64) -> Duration {
    const PER_CALL: usize = 512; // two iovecs per record; IOV_MAX is 1024
    let mut file = File::create(path).expect("create");
    let mut written = 0u64;
    let mut headers = vec![[0u8; 16]; PER_CALL];
    let mut total = Duration::ZERO;
    let mut t = Instant::now();
    let mut records = (0..iters).flat_map(|_| batch.iter()).peekable();
    while records.peek().is_some() {
        let group: Vec<&Frame> = records.by_ref().take(PER_CALL).collect();
        for (h, f) in headers.iter_mut().zip(&group) {
            h[0..4].copy_from_slice(&((f.ts / 1_000_000_000) as u32).to_ne_bytes());
            h[4..8].copy_from_slice(&((f.ts % 1_000_000_000) as u32).to_ne_bytes());
            h[8..12].copy_from_slice(&(f.data.len() as u32).to_ne_bytes());
            h[12..16].copy_from_slice(&(f.data.len() as u32).to_ne_bytes());
        }
        let mut iov: Vec<IoSlice<'_>> = Vec::with_capacity(2 * PER_CALL);
        for (h, f) in headers.iter().zip(&group) {
            iov.push(IoSlice::new(h));
            iov.push(IoSlice::new(&f.data));
        }
        let mut slices = &mut iov[..];
        while !slices.is_empty() {
            let n = file.write_vectored(slices).expect("writev");
            written += n as u64;
            IoSlice::advance_slices(&mut slices, n);
        }
        if written > FILE_MAX {
            total += t.elapsed();
            file = File::create(path).expect("create");
            written = 0;
            t = Instant::now();
        }
    }
    total += t.elapsed();
    black_box(written);
    total
}

fn bench(c: &mut Criterion) {
    let path = bench_dir().join(format!("xdpstack-pcap-bench-{}", std::process::id()));
    for (group, per_record) in [("pcap_write/records", true), ("pcap_write/bytes", false)] {
        let mut g = c.benchmark_group(group);
        g.measurement_time(Duration::from_secs(3));
        g.warm_up_time(Duration::from_secs(1));
        g.sample_size(20);
        for len in [64usize, 1514, 3800] {
            let batch = frames(len);
            g.throughput(if per_record {
                Throughput::Elements(BATCH as u64)
            } else {
                Throughput::BytesDecimal((BATCH * len) as u64)
            });
            for (name, format, direct) in [
                ("pcap", Format::Pcap, false),
                ("pcapng", Format::PcapNg, false),
                ("pcap-records", Format::Pcap, true),
                ("pcapng-records", Format::PcapNg, true),
            ] {
                g.bench_function(BenchmarkId::new(name, format!("{len}B")), |b| {
                    b.iter_custom(|iters| run_writer(&path, format, &batch, iters, direct))
                });
            }
            g.bench_function(BenchmarkId::new("writev", format!("{len}B")), |b| {
                b.iter_custom(|iters| run_writev(&path, &batch, iters))
            });
            if !per_record {
                continue;
            }
            // The writer's own cost: the same work into /dev/null, where write(2)
            // copies nothing.
            let null = PathBuf::from("/dev/null");
            for (name, format) in [("pcap-null", Format::Pcap), ("pcapng-null", Format::PcapNg)] {
                g.bench_function(BenchmarkId::new(name, format!("{len}B")), |b| {
                    b.iter_custom(|iters| run_writer(&null, format, &batch, iters, false))
                });
            }
        }
        g.finish();
    }
    let _ = fs::remove_file(&path);
}

criterion_group!(benches, bench);
criterion_main!(benches);
