//! The kernel's AF_XDP drop counters (XDP_STATISTICS), each provoked on purpose and
//! reconciled exactly against what was sent, as the kernel's own selftests do
//! (`test_xsk.c`: STAT_TEST_RX_DROPPED, STAT_TEST_RX_FULL, STAT_TEST_RX_FILL_EMPTY,
//! STAT_TEST_TX_INVALID):
//!
//! - `rx_dropped`: frames too big for a UMEM frame (MTU raised past it);
//! - `rx_ring_full`: a small RX ring that nobody drains;
//! - `rx_fill_ring_empty_descs`: a fill ring with fewer frames than arrive;
//! - `tx_invalid_descs`: TX descriptors beyond the UMEM, beyond a frame, empty.
//!
//! The RX cases use xdpstack's own loader, socket and statistics reader, so they
//! also check that `read_statistics` puts each kernel field where it belongs. The
//! last test checks that the binary's summary reconciles: sent = received + drops.
//! Needs root; run through `cargo xtask test`.

use std::time::{Duration, Instant};

use xdp_ebpf::SteerMode;
use xdpstack::{
    ring::{Rings, RxDesc},
    sys::{
        loader::{XdpModeChoice, XdpProgram},
        xsk::{XskConfig, XskSocket, XskStats, ZeroCopy},
    },
};
use xdpstack_tests::{PORT, StackProcess, link_counters, send_udp, testbed};
use xsk_rs::{
    CompQueue, FrameDesc, Socket, TxQueue, Umem,
    config::{BindFlags, FrameSize, LibxdpFlags, QueueSize, SocketConfig, UmemConfig},
};

/// What one socket saw: frames taken off its RX ring, and the kernel's counters.
#[derive(Debug)]
struct Seen {
    received: u64,
    stats: XskStats,
}

/// Attach the steering program (driver mode, copy mode socket) to the testbed's
/// interface, put `fill` frames of a `frame_count`-frame UMEM with `ring_size`-slot
/// rings on the fill ring, let `send` run in the peer namespace, and collect until
/// the kernel has accounted for `expect` frames (or 5 s pass). With `drain` false
/// the RX ring is read only at the end.
fn provoke(
    bed: &xdpstack_tests::Testbed,
    frame_count: u32,
    ring_size: u32,
    fill: usize,
    drain: bool,
    expect: u64,
    send: impl FnOnce() + Send,
) -> Seen {
    let iface = bed.stack_if();
    bed.in_stack(|| {
        let mut program = XdpProgram::load().expect("load");
        program
            .configure(SteerMode::Udp, &[PORT])
            .expect("configure");
        let config = XskConfig {
            frame_count,
            frame_size: 2048,
            ring_size,
            zero_copy: ZeroCopy::Off,
            tx_ring: true,
            multi_buffer: false,
        };
        let (mut socket, mut pool) = XskSocket::open(&iface, 0, &config).expect("socket");
        let addrs: Vec<u64> = pool
            .take_all()
            .into_iter()
            .take(fill)
            .map(|f| f.into_addr(&pool))
            .collect();
        assert!(socket.fill_capacity(addrs.len() as u32) >= addrs.len() as u32);
        socket.fill_produce(&addrs);
        program
            .register_socket(0, socket.raw_fd())
            .expect("register");
        program
            .attach(&iface, XdpModeChoice::Drv)
            .expect("attach in driver mode");

        send();

        let mut received = 0u64;
        let mut descs = vec![RxDesc::default(); 256];
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if drain {
                received += socket.rx_consume(&mut descs) as u64;
            }
            let s = socket.statistics().expect("XDP_STATISTICS");
            let dropped = s.rx_dropped + s.rx_ring_full;
            let accounted = if drain {
                received + dropped
            } else {
                // Undrained: the ring holds what was received.
                u64::from(ring_size).min(expect) + dropped
            };
            if accounted >= expect || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(50));
        loop {
            let n = socket.rx_consume(&mut descs) as u64;
            if n == 0 {
                break;
            }
            received += n;
        }
        let stats = socket.statistics().expect("XDP_STATISTICS");
        program.detach();
        Seen { received, stats }
    })
    .expect("entering the stack netns")
}

/// A small RX ring that is never drained: everything past its size is counted as
/// `rx_ring_full`, nothing else.
#[test]
fn rx_ring_full_counts_what_an_undrained_ring_refuses() {
    let bed = testbed("kfu", 1);
    let sent = 200u64;
    let seen = provoke(&bed, 512, 64, 512, false, sent, || {
        send_udp(&bed, false, PORT, sent as usize, &[32]);
    });
    assert_eq!(seen.received, 64, "the ring's size: {seen:?}");
    assert_eq!(
        seen.stats,
        XskStats {
            rx_ring_full: sent - 64,
            ..XskStats::default()
        },
        "{seen:?}"
    );
}

/// Fewer frames on the fill ring than arrive: the rest find the fill ring empty.
/// In copy mode the kernel counts each such frame twice: the fill ring's empty
/// read (`rx_fill_ring_empty_descs`) and the drop itself (`rx_dropped`).
#[test]
fn fill_ring_empty_counts_every_frame_without_a_buffer() {
    let bed = testbed("kfe", 1);
    let (sent, fill) = (100u64, 40usize);
    let seen = provoke(&bed, 64, 2048, fill, true, sent, || {
        send_udp(&bed, false, PORT, sent as usize, &[32]);
    });
    assert_eq!(seen.received, fill as u64, "{seen:?}");
    assert_eq!(
        seen.stats,
        XskStats {
            rx_dropped: sent - fill as u64,
            rx_fill_ring_empty_descs: sent - fill as u64,
            ..XskStats::default()
        },
        "{seen:?}"
    );
}

/// Frames longer than a UMEM frame's room (2048 - 256 bytes of XDP headroom) are
/// dropped by the socket and counted as `rx_dropped`; the small ones in between
/// arrive. The MTU is raised after the fact, as an operator might; xdpstack itself
/// refuses to start when the MTU is too large (tests/errors.rs).
#[test]
fn frames_too_big_for_a_umem_frame_count_as_rx_dropped() {
    let bed = testbed("kdr", 1);
    for (ns, dev) in [
        (bed.stack_ns(), bed.stack_if()),
        (bed.peer_ns(), bed.peer_if()),
    ] {
        let ok = std::process::Command::new("ip")
            .args(["-n", &ns, "link", "set", "dev", &dev, "mtu", "3000"])
            .status()
            .expect("ip link set mtu");
        assert!(ok.success(), "raising the MTU of {dev}");
    }
    let (small, big) = (50u64, 50u64);
    let seen = provoke(&bed, 512, 2048, 512, true, small + big, || {
        // Alternate 100-byte and 2900-byte payloads (a 2942-byte frame).
        send_udp(&bed, false, PORT, (small + big) as usize, &[100, 2900]);
    });
    assert_eq!(seen.received, small, "{seen:?}");
    assert_eq!(
        seen.stats,
        XskStats {
            rx_dropped: big,
            ..XskStats::default()
        },
        "{seen:?}"
    );
}

/// TX descriptors the kernel must refuse: an address beyond the UMEM, a length
/// running past the end of its frame, and a zero length. Each is counted in
/// `tx_invalid_descs` and not sent; the valid one between them is sent. The
/// kernel (6.x) hands every descriptor back on the completion ring, refused ones
/// too, so that user space gets its frames back: xdpstack's transmit path relies
/// on that to free them.
///
/// xsk-rs hands out only descriptors of the socket's own UMEM (as xdpstack's
/// transmit path does), so the invalid ones come from a second, larger UMEM whose
/// addresses and lengths the socket's UMEM does not have; the kernel only reads
/// the descriptors, so nothing unsound happens.
#[test]
fn invalid_tx_descriptors_are_counted_and_skipped() {
    let bed = testbed("kti", 1);
    let iface = bed.stack_if();
    let tx_before = link_counters(&bed.stack_ns(), &bed.stack_if()).tx_packets;
    let (seen, completed) = bed
        .in_stack(|| {
            let umem_config = |size: u32| {
                UmemConfig::builder()
                    .frame_size(FrameSize::new(size).expect("frame size"))
                    .fill_queue_size(QueueSize::new(16).expect("size"))
                    .comp_queue_size(QueueSize::new(16).expect("size"))
                    .build()
                    .expect("umem config")
            };
            // The socket's UMEM: 16 frames of 2048 bytes (32 KiB).
            let (umem, frames) =
                Umem::new(umem_config(2048), 16.try_into().unwrap(), false).expect("umem");
            // Descriptors the kernel must refuse, taken from a 64 x 4096 UMEM.
            let (other, other_frames) =
                Umem::new(umem_config(4096), 64.try_into().unwrap(), false).expect("other umem");
            let socket_config = SocketConfig::builder()
                .rx_queue_size(QueueSize::new(16).unwrap())
                .tx_queue_size(QueueSize::new(16).unwrap())
                .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
                .bind_flags(BindFlags::XDP_COPY)
                .build();
            let name = xsk_rs::config::Interface::new(
                std::ffi::CString::new(iface.clone()).expect("name"),
            );
            // SAFETY: a fresh UMEM used by this socket only.
            let (mut tx, _rx, fq_cq) =
                unsafe { Socket::new(socket_config, &umem, &name, 0) }.expect("socket");
            let (_fill, mut comp): (_, CompQueue) = fq_cq.expect("fill and completion rings");

            let frame = |umem: &Umem, mut desc: FrameDesc, len: usize| {
                // SAFETY: no ring holds this frame yet.
                let mut data = unsafe { umem.data_mut(&mut desc) };
                let mut cursor = data.cursor();
                std::io::Write::write_all(&mut cursor, &vec![0xab; len]).expect("frame bytes");
                desc
            };
            let beyond_umem = frame(&other, other_frames[20], 64); // address 81920 > 32768
            let beyond_frame = frame(&other, other_frames[1], 3000); // 4096 + 3000 > 6144
            let empty = frame(&other, other_frames[2], 0);
            let valid = frame(&umem, frames[3], 64);
            let descs = [beyond_umem, valid, beyond_frame, empty];
            send_all(&mut tx, &descs);

            let mut done = vec![FrameDesc::default(); 16];
            let mut completed = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(5);
            while completed.len() < descs.len() && Instant::now() < deadline {
                // SAFETY: the completion ring returns frames of this UMEM we sent.
                let n = unsafe { comp.consume(&mut done) };
                completed.extend(done[..n].iter().map(|d| d.addr()));
                std::thread::sleep(Duration::from_millis(10));
            }
            let stats =
                xdpstack::sys::xsk::read_statistics(std::os::fd::AsRawFd::as_raw_fd(tx.fd()))
                    .expect("XDP_STATISTICS");
            (stats, completed)
        })
        .expect("entering the stack netns");
    // xsk-rs puts packet data after XDP_PACKET_HEADROOM.
    let headroom = xdpstack::frame::XDP_PACKET_HEADROOM as usize;
    assert_eq!(
        completed,
        [20 * 4096, 3 * 2048, 4096, 2 * 4096].map(|a| a + headroom),
        "every descriptor comes back, in ring order: {seen:?}"
    );
    assert_eq!(seen.tx_invalid_descs, 3, "{seen:?}");
    // The valid frame went out (the kernel may send a neighbour solicitation of
    // its own meanwhile, so at least one).
    assert!(
        link_counters(&bed.stack_ns(), &bed.stack_if()).tx_packets > tx_before,
        "the valid frame was sent"
    );
}

/// Put `descs` on the TX ring and kick until the kernel has taken them all.
fn send_all(tx: &mut TxQueue, descs: &[FrameDesc]) {
    // SAFETY: the kernel only reads the descriptors; the frames behind the valid
    // ones belong to this socket's UMEM and are not touched until completion.
    let n = unsafe { tx.produce_and_wakeup(descs) }.expect("sendto");
    assert_eq!(n, descs.len(), "the TX ring has room");
    for _ in 0..10 {
        tx.wakeup().expect("sendto");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The binary's summary reconciles with what was sent: a stopped stack (SIGSTOP)
/// lets the RX ring fill; every datagram sent meanwhile is either received later or
/// counted by the kernel, and the summary shows the kernel's figure.
#[test]
fn summary_reconciles_sent_with_received_and_kernel_drops() {
    let bed = testbed("krc", 1);
    let port = PORT.to_string();
    let mut stack = StackProcess::start(
        &bed,
        &[
            "--port",
            &port,
            "--app",
            "sink",
            "--duration",
            "30",
            "--json",
        ],
    );
    stack.wait_attached(&bed);
    // The fill ring was filled before attach; give the poller its first round.
    std::thread::sleep(Duration::from_millis(300));
    stack.signal(libc::SIGSTOP);
    wait_stopped(stack.pid());
    let sent = 3000u64;
    send_udp(&bed, false, PORT, sent as usize, &[32]);
    stack.signal(libc::SIGCONT);
    std::thread::sleep(Duration::from_millis(500));
    stack.signal(libc::SIGINT);
    let done = stack.wait(Duration::from_secs(20));
    assert!(done.status.success(), "{done:?}");
    let json = done.json();
    let q = &json["queues"][0];
    let xsk = &q["xsk"];
    let packets = q["packets"].as_u64().unwrap();
    let ring_full = xsk["rx_ring_full"].as_u64().unwrap();
    let dropped = xsk["rx_dropped"].as_u64().unwrap();
    // The RX ring holds 2048 descriptors; the fill ring more than that.
    assert_eq!(packets, 2048, "{json}");
    assert_eq!(ring_full, sent - 2048, "{json}");
    assert_eq!(dropped, 0, "{json}");
    assert_eq!(packets + ring_full + dropped, sent, "{json}");
    assert_eq!(json["udp"]["datagrams"].as_u64(), Some(packets), "{json}");
}

/// Wait (at most 5 s) until every thread of process `pid` is stopped: kill(2)
/// returns before a thread running on another CPU has noticed SIGSTOP.
fn wait_stopped(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc/PID/task");
        let all_stopped = tasks.filter_map(Result::ok).all(|t| {
            std::fs::read_to_string(t.path().join("stat"))
                // The state follows the parenthesised command name.
                .map(|stat| {
                    stat.rsplit_once(") ")
                        .is_some_and(|(_, rest)| rest.starts_with('T'))
                })
                .unwrap_or(true)
        });
        if all_stopped {
            return;
        }
        assert!(Instant::now() < deadline, "process {pid} did not stop");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `xdpstack --app APP` on a one-queue testbed while datagrams arrive in
/// bursts (the poller sleeps in poll(2) between them): the summary.
fn bursts_through(tag: &str, app: &str) -> serde_json::Value {
    let bed = testbed(tag, 1);
    let port = PORT.to_string();
    let mut stack = StackProcess::start(
        &bed,
        &["--port", &port, "--app", app, "--duration", "30", "--json"],
    );
    stack.wait_attached(&bed);
    for _ in 0..20 {
        send_udp(&bed, false, PORT, 50, &[32]);
        std::thread::sleep(Duration::from_millis(20));
    }
    stack.signal(libc::SIGINT);
    let done = stack.wait(Duration::from_secs(20));
    assert!(done.status.success(), "{done:?}");
    done.json()
}

/// A receive-only run (`--app sink`) binds no TX ring: the kernel's TX counters
/// stay at zero although the poller slept in poll(2) between bursts, where with
/// a TX ring copy mode runs the transmit loop on every poll and counts
/// `tx_ring_empty_descs`, as the echo run shows. (teardown_loop.rs asks the
/// kernel itself whether each socket has a TX ring.)
#[test]
fn a_receive_only_run_binds_no_tx_ring() {
    let json = bursts_through("krx", "sink");
    let q = &json["queues"][0];
    assert_eq!(q["packets"], 1000, "{json}");
    assert!(
        q["sleeps"].as_u64().unwrap() > 0,
        "the poller never slept: {json}"
    );
    assert_eq!(q["xsk"]["tx_ring_empty_descs"], 0, "{json}");
    assert_eq!(q["xsk"]["tx_invalid_descs"], 0, "{json}");
    assert_eq!(q["tx"]["kicks"], 0, "{json}");

    let json = bursts_through("ktx", "echo");
    let q = &json["queues"][0];
    assert_eq!(q["tx"]["sent"], 1000, "{json}");
    assert!(
        q["xsk"]["tx_ring_empty_descs"].as_u64().unwrap() > 0,
        "a TX ring the kernel never found empty? {json}"
    );
}
