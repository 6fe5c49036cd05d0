//! The zero-copy data path on a veth pair, through the library: every frame reaches
//! every consumer, frames all come back, a hoarding consumer costs counted drops
//! rather than a hang, and both pollers of a two-queue veth receive.
//! Needs root; run through `cargo xtask test`.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use xdp_ebpf::SteerMode;
use xdpstack::{
    app::{Datagram, UdpConsumer},
    frame::FrameView,
    poller::Overflow,
    stack::{self, ConsumerSpec, QueueContext, QueueSpec, StackOptions, Summary},
    sys::xsk::XskConfig,
    tx::Transmitter,
};

/// Builds each queue's consumers.
type ConsumerFactory = Arc<dyn Fn(&mut QueueContext<'_>) -> Vec<ConsumerSpec> + Send + Sync>;
use xdpstack_tests::{PORT, Testbed, testbed};

/// Counts views and bytes, releasing each at once.
fn counter(frames: Arc<AtomicU64>) -> Box<dyn FnMut(&FrameView) + Send> {
    Box::new(move |v: &FrameView| {
        assert!(!v.is_empty());
        frames.fetch_add(1, Ordering::Relaxed);
    })
}

fn options(bed: &Testbed) -> StackOptions {
    StackOptions {
        iface: bed.stack_if(),
        queues: QueueSpec::All,
        mode: SteerMode::Udp,
        ports: vec![PORT],
        duration: Some(Duration::from_secs(30)),
        ..StackOptions::default()
    }
}

/// Run the stack in the stack namespace on a thread; `drive` runs meanwhile (it
/// sends traffic) and returns once the stack may stop.
fn run_stack(
    bed: &Testbed,
    opts: StackOptions,
    consumers: ConsumerFactory,
    drive: impl FnOnce(&AtomicBool),
) -> Summary {
    let stop = Arc::new(AtomicBool::new(false));
    let summary = std::thread::scope(|s| {
        let stop2 = stop.clone();
        let handle = s.spawn(move || {
            bed.in_stack(move || stack::run(&opts, stop2, &*consumers, &mut |_| {}))
                .expect("netns")
        });
        bed.wait_xdp_attached(Duration::from_secs(15))
            .expect("ip link")
            .expect("the stack attached");
        drive(&stop);
        stop.store(true, Ordering::Relaxed);
        handle.join().expect("stack thread")
    });
    summary.expect("stack::run")
}

/// Send `per_socket` datagrams from each of `sockets` kernel UDP sockets (distinct
/// source ports, so the veth spreads them over its queues).
fn send_many(bed: &Testbed, sockets: usize, per_socket: usize) -> usize {
    (0..sockets)
        .map(|i| xdpstack_tests::send_udp(bed, i % 2 == 1, PORT, per_socket, &[18, 200, 1200]))
        .sum()
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    done()
}

/// N datagrams in: N views to an inline consumer and N to a threaded one, all
/// frames back after the drain, counters reconciled with the XDP program's.
#[test]
fn every_frame_reaches_both_consumers_and_comes_back() {
    let bed = testbed("two", 2);
    let inline = Arc::new(AtomicU64::new(0));
    let threaded = Arc::new(AtomicU64::new(0));
    let (i2, t2) = (inline.clone(), threaded.clone());
    let consumers: ConsumerFactory = Arc::new(move |_q: &mut QueueContext<'_>| {
        vec![
            ConsumerSpec::Inline {
                name: "inline".into(),
                consumer: Box::new(counter(i2.clone())),
            },
            ConsumerSpec::Threaded {
                name: "threaded".into(),
                consumer: Box::new(counter(t2.clone())),
                capacity: 4096,
                overflow: Overflow::Wait,
            },
        ]
    });
    let opts = options(&bed);
    let frames = opts.xsk.frame_count;
    let mut sent = 0;
    let summary = run_stack(&bed, opts, consumers, |_| {
        // 32 flows, so that the peer's TX hash leaves no queue empty but with
        // chance 2^-31 (8 flows gave 1/128, and CI met it).
        sent = send_many(&bed, 32, 63);
        let want = sent as u64;
        // Bounded wait; the assertions below say what went missing, and where.
        wait_until(Duration::from_secs(10), || {
            inline.load(Ordering::Relaxed) >= want && threaded.load(Ordering::Relaxed) >= want
        });
    });
    let sent = sent as u64;
    assert_eq!(
        summary.xdp["redirected"], sent,
        "frames lost before or in the XDP program (veth ring?): {summary:#?}"
    );
    assert_eq!(inline.load(Ordering::Relaxed), sent);
    assert_eq!(threaded.load(Ordering::Relaxed), sent);
    assert_eq!(summary.packets, sent, "{summary:#?}");
    assert_eq!(summary.xdp["redirected"], sent, "{summary:#?}");
    for q in &summary.queues {
        assert_eq!(
            q.frames_free + q.frames_in_kernel,
            u64::from(frames),
            "queue {}: every frame is free or in the fill ring after the drain",
            q.queue
        );
        for c in &q.consumers {
            assert_eq!(c.held, 0, "{} still holds views", c.name);
            assert_eq!(c.dropped, 0, "{} dropped", c.name);
            assert_eq!(c.delivered, q.packets, "{} on queue {}", c.name, q.queue);
        }
        assert_eq!(q.xsk.rx_dropped + q.xsk.rx_ring_full, 0, "{q:#?}");
    }
    assert_eq!(summary.queues.len(), 2);
    assert!(
        summary.queues.iter().all(|q| q.packets > 0),
        "both pollers receive traffic: {:?}",
        summary.queues.iter().map(|q| q.packets).collect::<Vec<_>>()
    );
}

/// A consumer that keeps every view: the pool runs dry, the kernel drops and counts
/// it, the stack keeps running and stops when told. Every frame sent is accounted
/// for: delivered, or dropped by the kernel with a counter.
#[test]
fn a_hoarding_consumer_costs_counted_drops_not_a_hang() {
    let bed = testbed("hrd", 1);
    let hoard: Arc<Mutex<Vec<FrameView>>> = Arc::new(Mutex::new(Vec::new()));
    let h2 = hoard.clone();
    let consumers: ConsumerFactory = Arc::new(move |_q: &mut QueueContext<'_>| {
        let h = h2.clone();
        vec![ConsumerSpec::Inline {
            name: "hoarder".into(),
            consumer: Box::new(move |v: &FrameView| h.lock().unwrap().push(v.clone())),
        }]
    });
    let mut opts = options(&bed);
    opts.xsk = XskConfig {
        frame_count: 64,
        ..XskConfig::default()
    };
    let started = Instant::now();
    let mut sent = 0;
    let summary = run_stack(&bed, opts, consumers, |_| {
        sent = send_many(&bed, 2, 150);
        std::thread::sleep(Duration::from_millis(300));
    });
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the stack hung"
    );
    let q = &summary.queues[0];
    assert_eq!(
        q.packets, 64,
        "every frame delivered once, then none left: {q:#?}"
    );
    assert_eq!(hoard.lock().unwrap().len(), 64);
    assert_eq!(q.consumers[0].held, 64);
    let kernel_drops = q.xsk.rx_dropped + q.xsk.rx_ring_full;
    assert!(
        q.xsk.rx_fill_ring_empty_descs > 0,
        "fill ring ran dry: {q:#?}"
    );
    assert_eq!(
        summary.xdp["redirected"],
        q.packets + kernel_drops,
        "redirected = delivered + counted kernel drops: {summary:#?}"
    );
    assert_eq!(summary.xdp["redirected"], sent as u64, "{summary:#?}");
    // Releasing the hoard returns every frame.
    hoard.lock().unwrap().clear();
}

/// veth has no zero-copy AF_XDP: `--zero-copy on` fails before attaching with a
/// one-line error naming the fix; `auto` falls back to copy mode and says so.
#[test]
fn zero_copy_on_fails_clearly_on_veth_and_auto_reports_copy() {
    use xdpstack_tests::{StackProcess, wait_detached};
    let bed = testbed("zc", 1);
    let port = PORT.to_string();
    let done = StackProcess::start(&bed, &["--port", &port, "--zero-copy", "on"])
        .wait(Duration::from_secs(20));
    assert_eq!(done.status.code(), Some(1), "{done:?}");
    let err = done.stderr.trim();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("zero-copy") && err.contains("--zero-copy off"),
        "{err}"
    );
    assert_eq!(bed.stack_xdp_prog_id().unwrap(), None, "nothing attached");

    let mut stack = StackProcess::start(
        &bed,
        &[
            "--port",
            &port,
            "--zero-copy",
            "auto",
            "--duration",
            "0.5",
            "--json",
        ],
    );
    stack.wait_attached(&bed);
    let done = stack.wait(Duration::from_secs(20));
    assert!(done.status.success(), "{done:?}");
    assert_eq!(done.json()["zero_copy"], false);
    assert_eq!(wait_detached(&bed), None);
}

/// The MAC address of `dev` in namespace `ns`.
fn mac_of(ns: &str, dev: &str) -> String {
    let v = xdpstack_tests::link_json(ns, dev, false);
    v["address"].as_str().expect("address").to_string()
}

/// Replies the kernel refuses are counted as not sent, and `tx.sent` equals the
/// interface's TX packet counter. The peer's MTU is 1000: the stack's replies
/// with a 1400-byte payload do not fit it, so the veth drops them (its
/// `tx_dropped`), and in copy mode the kernel completes them unsent (EBUSY from
/// `sendto(2)`). The stack side's kernel sends nothing meanwhile (IPv6 off, and
/// the peer has a permanent neighbour entry, so it never asks for ARP).
#[test]
fn replies_the_kernel_drops_are_not_counted_as_sent() {
    const SMALL: usize = 150;
    const BIG: usize = 50;
    let bed = testbed("txdr", 1);
    let (ns_s, ns_p) = (bed.stack_ns(), bed.peer_ns());
    let (if_s, if_p) = (bed.stack_if(), bed.peer_if());
    let sysctl = format!("net.ipv6.conf.{if_s}.disable_ipv6=1");
    xdpstack_tests::run(bed.stack_command("sysctl").args(["-qw", &sysctl]));
    xdpstack_tests::ip(&ns_p, &["link", "set", "dev", &if_p, "mtu", "1000"]);
    let stack_v4 = Testbed::stack_addr(false).to_string();
    let mac = mac_of(&ns_s, &if_s);
    xdpstack_tests::ip(
        &ns_p,
        &[
            "neigh",
            "replace",
            &stack_v4,
            "lladdr",
            &mac,
            "dev",
            &if_p,
            "nud",
            "permanent",
        ],
    );
    let consumers: ConsumerFactory = Arc::new(move |q: &mut QueueContext<'_>| {
        let big = vec![0x42u8; 1400];
        let udp = UdpConsumer::new(q.transmitter()).route(
            [PORT],
            move |d: &Datagram<'_>, tx: &Transmitter| {
                let queued = if d.payload.first() == Some(&b'B') {
                    d.reply(tx, &big)
                } else {
                    d.echo(tx)
                };
                queued.expect("the reply is queued");
            },
        );
        vec![ConsumerSpec::Inline {
            name: "udp".into(),
            consumer: Box::new(udp),
        }]
    });
    std::thread::sleep(Duration::from_millis(200));
    let before = xdpstack_tests::link_counters(&ns_s, &if_s);
    let summary = run_stack(&bed, options(&bed), consumers, |_| {
        bed.in_peer(|| {
            let sock = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind");
            let to = std::net::SocketAddr::new(Testbed::stack_addr(false), PORT);
            for i in 0..SMALL + BIG {
                let payload: &[u8] = if i % 4 == 3 { b"BIG please" } else { b"small" };
                sock.send_to(payload, to).expect("send_to");
                std::thread::sleep(Duration::from_micros(200));
            }
        })
        .expect("peer netns");
        std::thread::sleep(Duration::from_millis(300));
    });
    let after = xdpstack_tests::link_counters(&ns_s, &if_s);
    let tx = summary.queues[0].tx;
    assert_eq!(summary.packets, (SMALL + BIG) as u64, "{summary:#?}");
    assert_eq!(tx.queued, (SMALL + BIG) as u64, "{tx:?}");
    assert_eq!(tx.completed, tx.queued, "every reply came back: {tx:?}");
    assert_eq!(tx.kernel_dropped, BIG as u64, "{tx:?}");
    assert_eq!(tx.sent, SMALL as u64, "{tx:?}");
    assert_eq!(
        after.tx_packets - before.tx_packets,
        tx.sent,
        "tx.sent is what the interface sent: {before:?} {after:?}"
    );
    assert_eq!(after.tx_dropped - before.tx_dropped, tx.kernel_dropped);
}
