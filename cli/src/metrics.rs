//! `--metrics ADDR:PORT`: the live statistics in the Prometheus text format
//! (version 0.0.4), encoded by prometheus-client, at `/metrics`.
//!
//! The figures are those of the last [`Interval`] the stack reported (every
//! `--stats` period, 1 s by default): a [`Collector`] turns that snapshot into
//! counters and gauges on each scrape, so a scrape never touches the data path
//! and costs the pollers nothing. Counters end in `_total` (the encoder adds
//! it), units are in the names (`_bytes`, `_seconds`), labels name the queue,
//! the cause or the consumer.
//!
//! The endpoint is a minimal HTTP/1.1 server on a `std::net::TcpListener`, one
//! connection at a time on a thread of its own: one GET and one answer, then
//! close. A scraper needs nothing more, and an HTTP crate would bring a thread
//! pool and syscalls the seccomp allow-list would have to admit for nothing.
//! The listener is bound before anything is attached (a privileged port
//! needs the privileges dropped afterwards; a taken one is a one-line error
//! at start), and served from the hook after the privileges are dropped.

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    sync::{Arc, Mutex},
    time::Duration,
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};
use xdpstack::{
    CaptureCounter, Counter,
    stack::{Interval, QueueInterval},
    wire::Reject,
};

/// The last interval, shared between the stack's callback and the endpoint.
#[derive(Clone, Debug, Default)]
pub struct Latest(Arc<Mutex<Option<Interval>>>);

impl Latest {
    /// Keep `iv` as what the next scrape shows.
    pub fn update(&self, iv: &Interval) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(iv.clone());
    }
}

/// One family's samples: labels and value.
type Samples = Vec<(Vec<(&'static str, String)>, f64)>;

/// The families of one snapshot, in order.
fn families(iv: &Interval) -> Vec<(&'static str, &'static str, bool, Samples)> {
    let q = |queue: u32| vec![("queue", queue.to_string())];
    let per_queue = |f: &dyn Fn(&xdpstack::stack::QueueInterval) -> u64| -> Samples {
        iv.queues
            .iter()
            .map(|x| (q(x.queue), f(x) as f64))
            .collect()
    };
    let mut out = vec![
        (
            "xdpstack_info",
            "The interface and how the stack is attached to it (always 1).",
            false,
            vec![(
                vec![
                    ("interface", iv.iface.clone()),
                    ("xdp_mode", iv.xdp_mode.clone()),
                    ("zero_copy", iv.zero_copy.to_string()),
                ],
                1.0,
            )],
        ),
        (
            "xdpstack_uptime_seconds",
            "Seconds since the XDP program was attached, at the last update.",
            false,
            vec![(vec![], iv.t)],
        ),
        (
            "xdpstack_rx_packets",
            "Frames received on the queue's AF_XDP socket.",
            true,
            per_queue(&|x| x.packets),
        ),
        (
            "xdpstack_rx_bytes",
            "Bytes of the frames received on the queue's AF_XDP socket.",
            true,
            per_queue(&|x| x.bytes),
        ),
        (
            "xdpstack_rx_multi_buffer_packets",
            "Packets received in several buffers (AF_XDP multi-buffer).",
            true,
            per_queue(&|x| x.multi_buffer),
        ),
        (
            "xdpstack_rx_malformed",
            "RX descriptors dropped that the kernel should never make (an address outside the UMEM, a packet of more than 32 buffers).",
            true,
            per_queue(&|x| x.malformed),
        ),
    ];
    xdp_families(iv, &mut out);
    frame_families(iv, &mut out);
    udp_families(iv, &mut out);
    capture_families(iv, &mut out);
    tx_families(iv, &mut out);
    out
}

/// A family: (name, help, counter?, samples).
type Family = (&'static str, &'static str, bool, Samples);

/// The samples of a per-queue figure.
fn per_queue(iv: &Interval, f: &dyn Fn(&QueueInterval) -> u64) -> Samples {
    iv.queues
        .iter()
        .map(|x| (vec![("queue", x.queue.to_string())], f(x) as f64))
        .collect()
}

/// The XDP program's verdicts and capture counters, and the kernel's drops.
fn xdp_families(iv: &Interval, out: &mut Vec<Family>) {
    let xdp = |name: &str| iv.xdp.get(name).copied().unwrap_or(0) as f64;
    out.push((
        "xdpstack_xdp_verdicts",
        "Frames the XDP program decided on, by verdict (all queues).",
        true,
        Counter::ALL
            .iter()
            .filter(|c| **c != Counter::Seen)
            .map(|c| (vec![("verdict", c.name().to_string())], xdp(c.name())))
            .collect(),
    ));
    if CaptureCounter::ALL
        .iter()
        .any(|c| iv.xdp.contains_key(c.name()))
    {
        out.push((
            "xdpstack_xdp_capture_frames",
            "Frames the XDP program's capture expression took, by outcome (all queues).",
            true,
            CaptureCounter::ALL
                .iter()
                .map(|c| (vec![("outcome", c.name().to_string())], xdp(c.name())))
                .collect(),
        ));
    }
    let mut drops = Samples::new();
    for x in &iv.queues {
        for (cause, n) in [
            ("rx_dropped", x.xsk.rx_dropped),
            ("rx_ring_full", x.xsk.rx_ring_full),
            ("fill_ring_empty", x.xsk.rx_fill_ring_empty_descs),
            ("rx_invalid_descs", x.xsk.rx_invalid_descs),
            ("tx_invalid_descs", x.xsk.tx_invalid_descs),
        ] {
            drops.push((
                vec![("queue", x.queue.to_string()), ("cause", cause.into())],
                n as f64,
            ));
        }
    }
    out.push((
        "xdpstack_kernel_drops",
        "Frames the kernel dropped or refused on the queue's socket, by cause (XDP_STATISTICS).",
        true,
        drops,
    ));
}

/// Where the UMEM frames are, and what each consumer got.
fn frame_families(iv: &Interval, out: &mut Vec<Family>) {
    let mut frames = Samples::new();
    let mut held = Samples::new();
    let mut delivered = Samples::new();
    let mut dropped = Samples::new();
    for x in &iv.queues {
        for (place, n) in [
            ("kernel", x.frames_in_kernel),
            ("fill_ring", u64::from(x.rings.fill_ring)),
            ("rx_ring", u64::from(x.rings.rx_ring)),
            ("free", x.frames_free),
        ] {
            frames.push((
                vec![("queue", x.queue.to_string()), ("place", place.into())],
                n as f64,
            ));
        }
        for c in &x.consumers {
            let labels = vec![("queue", x.queue.to_string()), ("consumer", c.name.clone())];
            held.push((labels.clone(), c.held as f64));
            delivered.push((labels.clone(), c.delivered as f64));
            dropped.push((labels, c.dropped as f64));
        }
    }
    out.push((
        "xdpstack_umem_frames",
        "UMEM frames by place: held by the kernel (of those, on the fill and RX rings), and free.",
        false,
        frames,
    ));
    out.push((
        "xdpstack_consumer_held_frames",
        "UMEM frames a consumer holds views of.",
        false,
        held,
    ));
    out.push((
        "xdpstack_consumer_delivered_frames",
        "Frames handed to a consumer.",
        true,
        delivered,
    ));
    out.push((
        "xdpstack_consumer_dropped_frames",
        "Frames a consumer lost: its queue was full, or the view was taken back for the kernel.",
        true,
        dropped,
    ));
}

/// The UDP consumer's datagrams and rejects, on queues that have one.
fn udp_families(iv: &Interval, out: &mut Vec<Family>) {
    let q = |queue: u32| vec![("queue", queue.to_string())];
    let udp_queues: Vec<_> = iv
        .queues
        .iter()
        .filter(|x| x.counters.contains_key("udp_datagrams"))
        .collect();
    if !udp_queues.is_empty() {
        let get = |x: &QueueInterval, n: &str| x.counters.get(n).copied().unwrap_or(0) as f64;
        out.push((
            "xdpstack_udp_datagrams",
            "UDP datagrams delivered to a handler.",
            true,
            udp_queues
                .iter()
                .map(|x| (q(x.queue), get(x, "udp_datagrams")))
                .collect(),
        ));
        out.push((
            "xdpstack_udp_unmatched_datagrams",
            "UDP datagrams to a port no handler serves.",
            true,
            udp_queues
                .iter()
                .map(|x| (q(x.queue), get(x, "udp_unmatched")))
                .collect(),
        ));
        out.push((
            "xdpstack_udp_rejected_frames",
            "Frames the UDP consumer rejected, by reason.",
            true,
            udp_queues
                .iter()
                .flat_map(|x| {
                    Reject::ALL.iter().map(|r| {
                        (
                            vec![("queue", x.queue.to_string()), ("reason", r.name().into())],
                            get(x, r.name()),
                        )
                    })
                })
                .collect(),
        ));
    }
}

/// The capture writer's counters, when capturing.
fn capture_families(iv: &Interval, out: &mut Vec<Family>) {
    if let Some(c) = &iv.capture {
        for (name, help, v) in [
            (
                "xdpstack_capture_written_records",
                "Records the capture handed to the file or pipe.",
                c.records_written,
            ),
            (
                "xdpstack_capture_written_bytes",
                "Bytes the capture handed to the file or pipe, headers included.",
                c.bytes_written,
            ),
            (
                "xdpstack_capture_dropped_records",
                "Records the capture lost to a write error.",
                c.records_dropped,
            ),
            (
                "xdpstack_capture_rotated_files",
                "Files the capture started by -C or -G.",
                c.files_rotated,
            ),
        ] {
            out.push((name, help, true, vec![(vec![], v as f64)]));
        }
    }
}

/// The transmit side.
fn tx_families(iv: &Interval, out: &mut Vec<Family>) {
    let per_queue = |f: &dyn Fn(&QueueInterval) -> u64| per_queue(iv, f);
    out.push((
        "xdpstack_tx_queued_frames",
        "Frames put on the queue's TX ring.",
        true,
        per_queue(&|x| x.tx.queued),
    ));
    out.push((
        "xdpstack_tx_sent_frames",
        "Frames the kernel transmitted.",
        true,
        per_queue(&|x| x.tx.sent),
    ));
    out.push((
        "xdpstack_tx_completed_frames",
        "Frames the kernel returned on the completion ring, sent or not.",
        true,
        per_queue(&|x| x.tx.completed),
    ));
    let mut refused = Samples::new();
    for x in &iv.queues {
        for (cause, n) in [
            ("kernel_dropped", x.tx.kernel_dropped),
            ("queue_full", x.tx.queue_full),
            ("no_frame", x.tx.no_frame),
            ("reply_error", x.tx.reply_errors),
            ("too_many_views", x.tx.too_many_views),
        ] {
            refused.push((
                vec![("queue", x.queue.to_string()), ("cause", cause.into())],
                n as f64,
            ));
        }
    }
    out.push((
        "xdpstack_tx_refused_frames",
        "Frames or requests not transmitted, by cause.",
        true,
        refused,
    ));
}

/// Turns the latest snapshot into metrics at each scrape.
#[derive(Debug)]
struct Snapshot(Latest);

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let latest = self.0.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(iv) = latest else {
            return Ok(());
        };
        for (name, help, counter, samples) in families(&iv) {
            let kind = if counter {
                MetricType::Counter
            } else {
                MetricType::Gauge
            };
            let mut family = encoder.encode_descriptor(name, help, None, kind)?;
            for (labels, v) in &samples {
                let sample = family.encode_family(labels)?;
                if counter {
                    ConstCounter::new(*v as u64).encode(sample)?;
                } else if v.fract() == 0.0 {
                    ConstGauge::new(*v as i64).encode(sample)?;
                } else {
                    ConstGauge::new(*v).encode(sample)?;
                }
            }
        }
        Ok(())
    }
}

/// The text the endpoint serves for `latest`.
pub fn render(latest: &Latest) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot(latest.clone())));
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
    text
}

/// Serve `latest` on `listener` from a thread of its own, until the process
/// ends.
pub fn spawn(listener: TcpListener, latest: Latest) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(stream) => {
                        if let Err(e) = answer(stream, &latest) {
                            tracing::debug!(error = %e, "metrics: a scrape failed");
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "metrics: accept failed");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })
        .map(|_| ())
}

/// Read one request (its head, at most 8 KiB, within 2 s) and answer it.
fn answer(mut stream: TcpStream, latest: &Latest) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let (status, ctype, body) = respond(&head, latest);
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(reply.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

/// Status line, content type and body for a request head.
fn respond(head: &[u8], latest: &Latest) -> (&'static str, &'static str, String) {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    const TEXT: &str = "text/plain; charset=utf-8";
    match (method, path) {
        ("GET", "/metrics") => (
            "200 OK",
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            render(latest),
        ),
        ("GET", "/") => ("200 OK", TEXT, "xdpstack: metrics at /metrics\n".into()),
        ("GET", _) => ("404 Not Found", TEXT, "not found: try /metrics\n".into()),
        _ => (
            "405 Method Not Allowed",
            TEXT,
            "only GET is served\n".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use xdpstack::{capture::CaptureStats, stack::ConsumerSummary};

    use super::*;

    fn interval() -> Interval {
        let mut counters = BTreeMap::new();
        counters.insert("udp_datagrams", 7);
        counters.insert("bad_udp_checksum", 2);
        let mut q = QueueInterval {
            queue: 0,
            packets: 9,
            bytes: 900,
            frames_free: 100,
            consumers: vec![ConsumerSummary {
                name: "udp".into(),
                delivered: 9,
                ..ConsumerSummary::default()
            }],
            counters,
            ..QueueInterval::default()
        };
        q.xsk.rx_ring_full = 3;
        q.tx.sent = 5;
        let mut xdp = BTreeMap::new();
        xdp.insert("redirected", 9);
        Interval {
            kind: "interval",
            t: 1.5,
            iface: "xs0".into(),
            xdp_mode: "drv".into(),
            queues: vec![q],
            xdp,
            capture: Some(CaptureStats {
                records_written: 4,
                ..CaptureStats::default()
            }),
            ..Interval::default()
        }
    }

    #[test]
    fn nothing_before_the_first_interval() {
        assert_eq!(render(&Latest::default()), "");
    }

    #[test]
    fn counters_end_in_total_and_carry_their_labels() {
        let latest = Latest::default();
        latest.update(&interval());
        let text = render(&latest);
        for line in [
            "# TYPE xdpstack_rx_packets_total counter",
            "xdpstack_rx_packets_total{queue=\"0\"} 9",
            "xdpstack_rx_bytes_total{queue=\"0\"} 900",
            "xdpstack_xdp_verdicts_total{verdict=\"redirected\"} 9",
            "xdpstack_kernel_drops_total{queue=\"0\",cause=\"rx_ring_full\"} 3",
            "xdpstack_umem_frames{queue=\"0\",place=\"free\"} 100",
            "xdpstack_consumer_delivered_frames_total{queue=\"0\",consumer=\"udp\"} 9",
            "xdpstack_udp_datagrams_total{queue=\"0\"} 7",
            "xdpstack_udp_rejected_frames_total{queue=\"0\",reason=\"bad_udp_checksum\"} 2",
            "xdpstack_udp_rejected_frames_total{queue=\"0\",reason=\"fragment\"} 0",
            "xdpstack_capture_written_records_total 4",
            "xdpstack_tx_sent_frames_total{queue=\"0\"} 5",
            "xdpstack_uptime_seconds 1.5",
            "xdpstack_info{interface=\"xs0\",xdp_mode=\"drv\",zero_copy=\"false\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        for l in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let w: Vec<_> = l.split(' ').collect();
            assert_eq!(w[3] == "counter", w[2].ends_with("_total"), "{l}");
        }
        assert!(
            text.lines()
                .all(|l| !l.starts_with("# HELP") || l.len() > 20)
        );
    }

    #[test]
    fn http_requests_are_answered_by_path() {
        let latest = Latest::default();
        latest.update(&interval());
        let (status, ctype, body) = respond(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &latest);
        assert_eq!(status, "200 OK");
        assert!(ctype.starts_with("text/plain; version=0.0.4"));
        assert!(body.contains("xdpstack_rx_packets_total"));
        assert_eq!(
            respond(b"GET /x HTTP/1.1\r\n\r\n", &latest).0,
            "404 Not Found"
        );
        assert_eq!(
            respond(b"POST /metrics HTTP/1.1\r\n\r\n", &latest).0,
            "405 Method Not Allowed"
        );
        assert_eq!(respond(b"", &latest).0, "405 Method Not Allowed");
    }
}
