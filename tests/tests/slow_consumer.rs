//! A capture writer throttled to a crawl: `-w` names a FIFO whose reader (a thread
//! of this test) takes 4 KiB at a time and then sleeps. With `--pcap-overflow
//! drop` (the default) the UDP consumer keeps being served, every datagram, while
//! the capture loses views, counted, and holds a bounded number of frames; with
//! `--pcap-overflow wait` the capture loses nothing and the kernel drops instead,
//! counted in the socket's XDP_STATISTICS. Either way the stack stops when told to.
//! Needs root; run through `cargo xtask test`.
//!
//! (udp.rs stalls a FIFO completely to force echo replies into fresh frames; here
//! the FIFO moves, slowly, for the whole run.)
#![deny(unsafe_code)]

use std::{
    fs::File,
    io::{ErrorKind, Read as _},
    os::unix::fs::OpenOptionsExt as _,
    path::Path,
    process::Command,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde_json::Value;
use xdpstack_tests::{
    PORT, StackProcess, TempDir, counter, link_counters, pcap_frames, send_udp, testbed,
    wait_detached,
};

/// Frames in the queue's UMEM (`--frames`).
const FRAMES: u64 = 4096;
/// Datagrams sent.
const SENT: usize = 20_000;
/// Payload sizes the datagrams cycle through (60- and 242-byte frames).
const SIZES: [usize; 2] = [18, 200];
/// The capture consumer writes the views it takes from its queue in batches of
/// at most this many, holding them until written (`BATCH` in
/// userspace/src/capture.rs; the consumer thread in stack.rs takes at most as
/// many from the queue before it writes).
const WRITER_BATCH: u64 = 256;
/// How long the stack may take to exit after SIGINT: the capture writer drains
/// its queue (and, with `wait`, its backlog) and its 256 KiB buffer through the
/// slow reader, a few seconds.
const EXIT_BOUND: Duration = Duration::from_secs(60);

/// How a test's reader of the capture FIFO behaves.
#[derive(Clone, Copy)]
struct Reader {
    /// Reads nothing for this long (the writer stalls once the pipe is full).
    stall: Duration,
    /// Then takes 4 KiB and sleeps this long, again and again.
    pause: Duration,
}

/// A reader of the FIFO at `path` that takes at most `chunk` bytes, then sleeps
/// `pause` (after reading nothing for `stall`); ends when the writer closes the
/// FIFO or after `limit`. Returns the bytes read and whether the writer closed it.
fn slow_reader(
    path: &Path,
    chunk: usize,
    Reader { stall, pause }: Reader,
    limit: Duration,
) -> JoinHandle<(Vec<u8>, bool)> {
    let out = Command::new("mkfifo").arg(path).output().expect("mkfifo");
    assert!(out.status.success(), "mkfifo: {out:?}");
    // Non-blocking, so that opening does not wait for the writer and no read
    // waits forever: xdpstack's open for writing finds a reader at once.
    let mut file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .expect("opening the FIFO");
    std::thread::spawn(move || {
        let deadline = Instant::now() + limit;
        std::thread::sleep(stall);
        let mut bytes = Vec::new();
        let mut buf = vec![0u8; chunk];
        while Instant::now() < deadline {
            match file.read(&mut buf) {
                // End of file: no writer. Before the first byte, not there yet.
                Ok(0) if !bytes.is_empty() => return (bytes, true),
                Ok(0) => std::thread::sleep(Duration::from_millis(5)),
                Ok(n) => {
                    bytes.extend_from_slice(&buf[..n]);
                    std::thread::sleep(pause);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("reading the FIFO: {e}"),
            }
        }
        (bytes, false)
    })
}

/// The consumer named `name` of the one queue in a summary or an interval.
fn consumer<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["queues"][0]["consumers"]
        .as_array()
        .unwrap_or_else(|| panic!("no consumers in {v}"))
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no consumer {name} in {v}"))
}

/// The one socket's XDP_STATISTICS counter `name`.
fn xsk(v: &Value, name: &str) -> u64 {
    counter(&v["queues"][0], &["xsk", name])
}

/// What a run left: the summary, the `--stats` intervals, the capture as read.
struct Outcome {
    summary: Value,
    intervals: Vec<Value>,
    records: Vec<Vec<u8>>,
    /// Frames the peer's veth end dropped (the stack side's ring was full).
    veth_drops: u64,
}

/// Run `xdpstack --app sink -w FIFO --frames 4096 --pcap-overflow OVERFLOW --json
/// --stats 0.2` on a one-queue testbed with a reader taking 4 KiB per `pause`;
/// send [`SENT`] datagrams, then SIGINT: the stack must exit, cleanly, within
/// [`EXIT_BOUND`], and the reader see the end of the file.
fn throttled_run(tag: &str, overflow: &str, frames: u64, read: Reader) -> Outcome {
    let bed = testbed(tag, 1);
    let dir = TempDir::new(tag);
    let fifo = dir.0.join("slow.pcap");
    let reader = slow_reader(&fifo, 4096, read, EXIT_BOUND + Duration::from_secs(60));
    let port = PORT.to_string();
    let frames = frames.to_string();
    let mut stack = StackProcess::start(
        &bed,
        &[
            "--port",
            &port,
            "--app",
            "sink",
            "-w",
            fifo.to_str().expect("UTF-8 path"),
            "--frames",
            &frames,
            "--pcap-overflow",
            overflow,
            "--json",
            "--stats",
            "0.2",
            "--duration",
            "300",
        ],
    );
    stack.wait_attached(&bed);
    let veth_before = link_counters(&bed.peer_ns(), &bed.peer_if()).tx_dropped;
    assert_eq!(send_udp(&bed, false, PORT, SENT, &SIZES), SENT);
    // The UDP consumer runs on the poller: let it take in the last datagrams.
    std::thread::sleep(Duration::from_millis(500));
    let veth_drops = link_counters(&bed.peer_ns(), &bed.peer_if()).tx_dropped - veth_before;
    stack.signal(libc::SIGINT);
    let done = stack.wait(EXIT_BOUND);
    assert!(done.status.success(), "{done:?}");
    assert_eq!(wait_detached(&bed), None, "still attached after exit");
    let (bytes, closed) = reader.join().expect("FIFO reader");
    assert!(
        closed,
        "the capture was not closed; {} bytes read",
        bytes.len()
    );
    let lines: Vec<Value> = done
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let (summary, intervals) = lines.split_last().expect("at least the summary");
    assert_eq!(summary["type"], "summary", "{summary}");
    assert!(
        !intervals.is_empty(),
        "no --stats intervals: {}",
        done.stdout
    );
    for iv in intervals {
        assert_eq!(iv["type"], "interval", "{iv}");
    }
    // Every record is a sound datagram to the port (the writer copies frames while
    // the kernel refills other ones: nothing torn).
    let records = pcap_frames(&bytes);
    for (i, r) in records.iter().enumerate() {
        let d = xdpstack::wire::parse(r).unwrap_or_else(|e| panic!("record {i}: {e}"));
        assert_eq!(d.dst.port(), PORT, "record {i}");
        assert!(SIZES.contains(&d.payload.len()), "record {i}");
    }
    Outcome {
        summary: summary.clone(),
        intervals: intervals.to_vec(),
        records,
        veth_drops,
    }
}

/// `--pcap-overflow drop` with a reader of 4 KiB per 20 ms (200 KiB/s, a few
/// thousand small records a second, against ~20 000 datagrams in a second or
/// two): the UDP consumer gets every datagram (no kernel drop anywhere); the
/// capture drops views, counted, and writes every view it kept, which is what the
/// reader finds in the FIFO; and the frames the capture holds stay bounded in
/// every interval: its queue (half the frames, the stack's bound), the batch its
/// thread is writing, and the one view the poller is handing over.
#[test]
fn dropping_capture_keeps_udp_served_and_holds_few_frames() {
    let read = Reader {
        stall: Duration::ZERO,
        pause: Duration::from_millis(20),
    };
    let out = throttled_run("sldr", "drop", FRAMES, read);
    let s = &out.summary;
    let sent = SENT as u64;
    assert_eq!(out.veth_drops, 0, "the veth dropped frames: {s}");
    assert_eq!(counter(s, &["xdp", "redirected"]), sent, "{s}");
    assert_eq!(counter(s, &["packets"]), sent, "{s}");
    for name in ["rx_dropped", "rx_ring_full"] {
        assert_eq!(xsk(s, name), 0, "xsk.{name}: {s}");
    }
    assert_eq!(counter(s, &["udp", "datagrams"]), sent, "{s}");
    assert_eq!(counter(s, &["udp", "ports", "9000", "datagrams"]), sent);

    let pcap = consumer(s, "pcap");
    let (delivered, dropped) = (counter(pcap, &["delivered"]), counter(pcap, &["dropped"]));
    assert!(
        dropped > 0,
        "the capture kept up with a crawling reader: {s}"
    );
    assert_eq!(delivered + dropped, sent, "{s}");
    assert_eq!(counter(pcap, &["held"]), 0, "views left at exit: {s}");
    assert_eq!(
        counter(s, &["capture", "stats", "records_written"]),
        delivered,
        "{s}"
    );
    assert_eq!(counter(s, &["capture", "stats", "records_dropped"]), 0);
    assert_eq!(
        out.records.len() as u64,
        delivered,
        "records read from the FIFO"
    );

    let bound = FRAMES / 2 + WRITER_BATCH + 1;
    let held: Vec<u64> = out
        .intervals
        .iter()
        .map(|iv| counter(consumer(iv, "pcap"), &["held"]))
        .collect();
    let max = held.iter().copied().max().unwrap_or(0);
    assert!(
        max <= bound,
        "the capture held {max} frames (bound {bound}): {held:?}"
    );
    // Dropping, never waiting: the kernel always found frames on the fill ring.
    for iv in &out.intervals {
        assert_eq!(xsk(iv, "rx_dropped"), 0, "{iv}");
    }
    eprintln!(
        "drop: {delivered} written, {dropped} dropped of {sent}; pcap held per interval {held:?}"
    );
}

/// `--pcap-overflow drop` with a reader that reads nothing while the datagrams
/// arrive, and a UMEM of only 512 frames: the writer is stuck in write(2) with
/// its buffer full, its queue holds 256 views (the stack's bound, half the
/// frames), and the UDP consumer still receives every datagram; what the
/// capture lost is counted. (Should the queue and the views the writer holds
/// ever come near the whole UMEM, the poller takes views back from the queue
/// before the fill ring runs dry, `reclaimed`: the poller's unit tests show it.)
#[test]
fn a_stalled_dropping_capture_leaves_every_datagram_to_udp() {
    const SMALL_UMEM: u64 = 512;
    let read = Reader {
        stall: Duration::from_secs(4),
        pause: Duration::ZERO,
    };
    let out = throttled_run("slst", "drop", SMALL_UMEM, read);
    let s = &out.summary;
    let sent = SENT as u64;
    assert_eq!(out.veth_drops, 0, "the veth dropped frames: {s}");
    for name in ["rx_dropped", "rx_ring_full"] {
        assert_eq!(xsk(s, name), 0, "xsk.{name}: {s}");
    }
    assert_eq!(counter(s, &["udp", "datagrams"]), sent, "{s}");
    let pcap = consumer(s, "pcap");
    let (delivered, dropped) = (counter(pcap, &["delivered"]), counter(pcap, &["dropped"]));
    assert_eq!(delivered + dropped, sent, "{s}");
    assert!(dropped > 0, "a stalled writer took everything: {s}");
    assert!(
        counter(pcap, &["reclaimed"]) <= dropped,
        "reclaimed views are counted among the drops: {s}"
    );
    assert_eq!(
        counter(s, &["capture", "stats", "records_written"]),
        delivered,
        "{s}"
    );
    assert_eq!(out.records.len() as u64, delivered, "records in the FIFO");
}

/// `--pcap-overflow wait` with a slower reader (4 KiB per 50 ms): the capture
/// drops nothing and the file holds every frame received; the pressure goes to the
/// kernel, which runs out of fill-ring frames and drops instead, counted: every
/// datagram sent was received, or dropped by the veth or the socket, exactly.
#[test]
fn waiting_capture_loses_nothing_and_the_kernel_drops_instead() {
    let read = Reader {
        stall: Duration::ZERO,
        pause: Duration::from_millis(50),
    };
    let out = throttled_run("slwt", "wait", FRAMES, read);
    let s = &out.summary;
    let sent = SENT as u64;
    let packets = counter(s, &["packets"]);
    // The UDP consumer saw every frame received.
    assert_eq!(counter(s, &["udp", "datagrams"]), packets, "{s}");

    // Where the rest went: the socket had no fill-ring frame (rx_dropped, with
    // rx_fill_ring_empty_descs) or no RX ring room (rx_ring_full), or, before
    // XDP, the veth's ring was full (the peer's tx_dropped).
    let (rx_dropped, ring_full) = (xsk(s, "rx_dropped"), xsk(s, "rx_ring_full"));
    let fill_empty = xsk(s, "rx_fill_ring_empty_descs");
    let redirected = counter(s, &["xdp", "redirected"]);
    assert_eq!(redirected, packets + rx_dropped + ring_full, "{s}");
    assert_eq!(sent, redirected + out.veth_drops, "{s}");
    assert!(packets < sent, "a crawling capture took everything: {s}");
    assert!(
        fill_empty > 0 || ring_full > 0,
        "the kernel's counters show no pressure: {s}"
    );
    let held: Vec<u64> = out
        .intervals
        .iter()
        .map(|iv| counter(consumer(iv, "pcap"), &["held"]))
        .collect();
    assert!(held.iter().all(|&h| h <= FRAMES), "{held:?}");
    eprintln!(
        "wait: {packets} received of {sent}; xsk rx_dropped {rx_dropped} \
         fill_ring_empty {fill_empty} rx_ring_full {ring_full}; veth drops {}; \
         pcap held per interval {held:?}",
        out.veth_drops
    );

    // Nothing lost on the way to the file.
    let pcap = consumer(s, "pcap");
    assert_eq!(counter(pcap, &["dropped"]), 0, "{s}");
    assert_eq!(counter(pcap, &["delivered"]), packets, "{s}");
    let written = counter(s, &["capture", "stats", "records_written"]);
    assert_eq!(
        out.records.len() as u64,
        written,
        "records read from the FIFO"
    );
    // Views still held when the summary was taken never reach the file: with
    // `wait`, those left in the poller's backlog when it stopped.
    assert_eq!(
        counter(pcap, &["held"]),
        0,
        "views held at exit, never written ({written} of {packets} written): {s}"
    );
    assert_eq!(written, packets, "{s}");
}
