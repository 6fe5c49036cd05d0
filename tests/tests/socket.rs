//! The socket API end to end on a routed testbed (stack -- router -- client):
//! `send_to` a host behind the router over IPv4 and IPv6 (the router's MAC
//! found through the kernel's tables), datagrams received from the client and
//! answered, destinations without a route or behind a gateway that never
//! answers counted by cause, a route changed mid-run followed, and several
//! threads sending while the receive side runs, every counter reconciled and
//! every frame back. The stack runs in this process, on a thread in the
//! stack's namespace. Needs root; run through `cargo xtask test`.

use std::{
    collections::HashSet,
    net::{IpAddr, SocketAddr, UdpSocket as KernelSocket},
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use xdpstack::{
    stack::{StackOptions, net::Network, service::Report},
    sys::route::{HOLD_PER_DESTINATION, Unreachable},
    tx::{TxError, TxSummary},
};
use xdpstack_testbed::{
    RoutedTestbed,
    routed::{CLIENT_V4, CLIENT_V6, STACK_V4, STACK_V6},
};
use xdpstack_tests::{require_root, unique_name};

const PORT: u16 = 9100;
const CLIENT_PORT: u16 = 7000;

fn bed() -> RoutedTestbed {
    require_root();
    RoutedTestbed::create(&unique_name("sk")).expect("creating the routed testbed")
}

/// A kernel UDP socket in the client's namespace, with a large receive buffer
/// and a read timeout.
fn client_socket(bed: &RoutedTestbed, addr: SocketAddr) -> KernelSocket {
    let s = bed
        .in_client(|| KernelSocket::bind(addr))
        .expect("entering the client's namespace")
        .expect("binding the client's socket");
    let size: libc::c_int = 8 << 20;
    // SAFETY: `size` is valid for reads of its size.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const size).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUFFORCE");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s
}

/// Up to `n` datagrams the client receives before `timeout` passes.
fn receive(s: &KernelSocket, n: usize, timeout: Duration) -> Vec<(Vec<u8>, SocketAddr)> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    while out.len() < n && Instant::now() < deadline {
        if let Ok((len, from)) = s.recv_from(&mut buf) {
            out.push((buf[..len].to_vec(), from));
        }
    }
    out
}

fn tx_total(report: &Report) -> TxSummary {
    let mut t = TxSummary::default();
    for q in &report.summary.queues {
        t.send_to += q.tx.send_to;
        t.sent += q.tx.sent;
        t.queued += q.tx.queued;
        t.completed += q.tx.completed;
        t.kernel_dropped += q.tx.kernel_dropped;
        t.no_route += q.tx.no_route;
        t.other_interface += q.tx.other_interface;
        t.unresolved += q.tx.unresolved;
        t.too_large += q.tx.too_large;
        t.held += q.tx.held;
        t.queue_full += q.tx.queue_full;
        t.no_frame += q.tx.no_frame;
    }
    t
}

/// Every frame of every queue is back where it belongs at the end.
fn frames_conserved(report: &Report, frames: u64) {
    for q in &report.summary.queues {
        let held: u64 = q.consumers.iter().map(|c| c.held).sum();
        assert_eq!(
            q.frames_free + q.frames_in_kernel + q.frames_in_tx + held,
            frames,
            "queue {} frames: {q:?}",
            q.queue
        );
        assert_eq!(q.frames_in_tx, 0, "nothing left on the TX ring");
    }
}

fn options(bed: &RoutedTestbed) -> StackOptions {
    StackOptions {
        iface: bed.stack_if(),
        ..StackOptions::default()
    }
}

/// Poll `f` until it is true, at most `timeout`.
fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn send_to_reaches_a_host_behind_the_router_and_counts_what_it_cannot() {
    let bed = bed();
    let client4 = client_socket(&bed, SocketAddr::new(CLIENT_V4.into(), CLIENT_PORT));
    let client6 = client_socket(&bed, SocketAddr::new(CLIENT_V6.into(), CLIENT_PORT));
    // A destination without a route, and one behind a gateway that never
    // answers neighbour discovery.
    bed.ip_stack(&["route", "add", "blackhole", "198.19.99.0/24"])
        .unwrap();
    bed.ip_stack(&["route", "add", "198.19.50.0/24", "via", "198.18.0.77"])
        .unwrap();
    bed.ip_stack(&["-6", "route", "add", "fd00:50::/64", "via", "fd00::77"])
        .unwrap();
    let opts = options(&bed);
    let frames = u64::from(opts.xsk.frame_count);
    let report = bed
        .in_stack(|| {
            let mut net = Network::open(opts).expect("opening the network");
            let sock = net.bind(PORT).expect("binding");
            let running = net.start().expect("starting the stack");

            // 1. To the client, both families: the first datagrams wait for the
            // router's MAC, the rest go at once; all arrive, byte-exact, from
            // the stack's address.
            for (client, dst, src) in [
                (&client4, CLIENT_V4.into(), IpAddr::from(STACK_V4)),
                (&client6, CLIENT_V6.into(), IpAddr::from(STACK_V6)),
            ] {
                let dst = SocketAddr::new(dst, CLIENT_PORT);
                // As many as a destination may hold while it resolves, then as
                // many again once it has.
                for round in 0..2 {
                    let sent: HashSet<Vec<u8>> = (0..HOLD_PER_DESTINATION)
                        .map(|i| format!("datagram {round}.{i} to {dst}").into_bytes())
                        .collect();
                    for p in &sent {
                        sock.send_to(p, dst).expect("send_to the client");
                    }
                    let n = sent.len();
                    let got = receive(client, n, Duration::from_secs(10));
                    assert_eq!(got.len(), n, "to {dst}: {} of {n} arrived", got.len());
                    assert!(
                        got.iter()
                            .all(|(_, from)| *from == SocketAddr::new(src, PORT))
                    );
                    let got: HashSet<Vec<u8>> = got.into_iter().map(|(p, _)| p).collect();
                    assert_eq!(got, sent, "byte-exact");
                }
            }

            // 2. From the client and back: the socket receives, `send_to`
            // answers the sender.
            for (client, stack) in [
                (&client4, IpAddr::from(STACK_V4)),
                (&client6, IpAddr::from(STACK_V6)),
            ] {
                client
                    .send_to(b"ping", SocketAddr::new(stack, PORT))
                    .unwrap();
                let mut batch = Vec::new();
                assert_eq!(
                    sock.recv_batch_timeout(&mut batch, 8, Duration::from_secs(5)),
                    1
                );
                let d = &batch[0];
                assert_eq!(d.payload(), b"ping");
                assert_eq!(d.src(), client.local_addr().unwrap());
                sock.send_to(b"pong", d.src()).unwrap();
                let got = receive(client, 1, Duration::from_secs(5));
                assert_eq!(got.first().map(|g| &g.0[..]), Some(&b"pong"[..]));
            }

            // 3. No route: the first datagram is held while the kernel is
            // asked (or refused at once, when the answer came in the meantime),
            // then counted; the next ones are refused at once.
            let none = SocketAddr::from(([198, 19, 99, 1], 9));
            let first = sock.send_to(b"x", none);
            assert!(
                first.is_ok() || first == Err(TxError::Unreachable(Unreachable::NoRoute)),
                "{first:?}"
            );
            assert!(
                eventually(Duration::from_secs(5), || sock.send_to(b"x", none)
                    == Err(TxError::Unreachable(Unreachable::NoRoute))),
                "no route was not found"
            );

            // 4. A gateway that never answers: held, then counted unresolved.
            for dst in ["198.19.50.1:9", "[fd00:50::1]:9"] {
                for _ in 0..3 {
                    sock.send_to(b"lost", dst.parse().unwrap()).unwrap();
                }
            }

            // 5. A route changed mid-run is followed: the client's subnet
            // blackholed, then routed through the router again.
            bed.ip_stack(&["route", "replace", "blackhole", "198.19.0.0/24"])
                .unwrap();
            let to_client = SocketAddr::new(CLIENT_V4.into(), CLIENT_PORT);
            assert!(
                eventually(Duration::from_secs(5), || {
                    sock.send_to(b"x", to_client) == Err(TxError::Unreachable(Unreachable::NoRoute))
                }),
                "the blackhole route was not followed"
            );
            bed.ip_stack(&["route", "replace", "198.19.0.0/24", "via", "198.18.0.2"])
                .unwrap();
            assert!(
                eventually(Duration::from_secs(5), || sock
                    .send_to(b"back", to_client)
                    .is_ok()),
                "the restored route was not followed"
            );
            let got = receive(&client4, 1, Duration::from_secs(5));
            assert_eq!(got.first().map(|g| &g.0[..]), Some(&b"back"[..]));
            // Let the unresolved holds time out (3 s from when they were held).
            std::thread::sleep(Duration::from_secs(4));
            running.stop().expect("the stack's report")
        })
        .expect("entering the stack's namespace");

    let t = tx_total(&report);
    assert_eq!(t.unresolved, 6, "{t:?}");
    assert!(t.no_route >= 2, "{t:?}");
    assert_eq!(t.other_interface, 0);
    // Everything queued was sent: the datagrams to the client (both families,
    // two rounds each, the two pongs, `back`) and nothing else.
    assert_eq!(t.send_to, 4 * HOLD_PER_DESTINATION as u64 + 3, "{t:?}");
    assert_eq!(t.queued, t.send_to);
    assert_eq!(t.sent, t.queued);
    assert_eq!(t.kernel_dropped, 0);
    // Held: the first datagrams of each family (until the router's MAC was
    // known) and the six that never resolved.
    assert!(t.held >= 6, "{t:?}");
    assert_eq!(report.sockets[0].received, 2);
    assert_eq!(report.sockets[0].full, 0);
    frames_conserved(&report, frames);
}

#[test]
fn several_threads_send_while_the_receive_side_runs() {
    const THREADS: usize = 4;
    const EACH: usize = 2500;
    const INBOUND: usize = 2000;
    let bed = bed();
    let client = client_socket(&bed, SocketAddr::new(CLIENT_V4.into(), CLIENT_PORT));
    let opts = StackOptions {
        queues: xdpstack::stack::QueueSpec::All,
        ..options(&bed)
    };
    let frames = u64::from(opts.xsk.frame_count);
    let to_client = SocketAddr::new(CLIENT_V4.into(), CLIENT_PORT);
    let (report, inbound_taken) = bed
        .in_stack(|| {
            let mut net = Network::open(opts).expect("opening the network");
            let sock = net.bind(PORT).expect("binding");
            let running = net.start().expect("starting the stack");
            // Resolve the route and the router's MAC first.
            sock.send_to(b"warm", to_client).unwrap();
            if receive(&client, 1, Duration::from_secs(5)).len() != 1 {
                let report = running.stop().expect("the stack's report");
                panic!("the first datagram did not arrive: {:?}", tx_total(&report));
            }
            let taken = std::thread::scope(|s| {
                // The receive side: datagrams from the client, taken by a
                // thread of their own.
                let receiver = s.spawn(|| {
                    let mut taken = 0;
                    let mut batch = Vec::new();
                    let deadline = Instant::now() + Duration::from_secs(30);
                    while taken < INBOUND && Instant::now() < deadline {
                        taken +=
                            sock.recv_batch_timeout(&mut batch, 64, Duration::from_millis(100));
                        batch.clear();
                    }
                    taken
                });
                let sender = s.spawn(|| {
                    let to = SocketAddr::new(STACK_V4.into(), PORT);
                    for i in 0..INBOUND {
                        client.send_to(&(i as u32).to_be_bytes(), to).unwrap();
                        if i % 64 == 63 {
                            std::thread::sleep(Duration::from_micros(500));
                        }
                    }
                });
                for t in 0..THREADS {
                    let sock = &sock;
                    s.spawn(move || {
                        let deadline = Instant::now() + Duration::from_secs(30);
                        for i in 0..EACH {
                            let payload = [t as u8, (i >> 8) as u8, i as u8];
                            // Backpressure: wait for room, never give up silently.
                            loop {
                                match sock.send_to(&payload, to_client) {
                                    Ok(()) => break,
                                    Err(e) if e.is_backpressure() => {
                                        assert!(Instant::now() < deadline, "stuck");
                                        std::thread::sleep(Duration::from_micros(100));
                                    }
                                    Err(e) => panic!("send_to: {e}"),
                                }
                            }
                            if i % 32 == 31 {
                                std::thread::sleep(Duration::from_micros(200));
                            }
                        }
                    });
                }
                sender.join().unwrap();
                receiver.join().unwrap()
            });
            // The last datagrams reach the client before the stack stops.
            std::thread::sleep(Duration::from_millis(500));
            (running.stop().expect("the stack's report"), taken)
        })
        .expect("entering the stack's namespace");
    let got = receive(&client, THREADS * EACH + 1, Duration::from_secs(5));
    let t = tx_total(&report);
    let sent = (THREADS * EACH + 1) as u64;
    assert_eq!(t.send_to, sent, "{t:?}");
    assert_eq!(t.queued, t.send_to);
    assert_eq!(t.completed, t.queued);
    assert_eq!(t.sent + t.kernel_dropped, t.completed);
    // The refusals the senders retried are counted, not lost: every datagram
    // a sender gave was queued once.
    assert_eq!(
        t.no_route + t.unresolved + t.other_interface + t.too_large,
        0
    );
    // What left arrived (the warm-up one was received above).
    assert_eq!(got.len() as u64 + 1, t.sent, "{t:?}");
    let s = &report.sockets[0];
    assert_eq!(s.received + s.full, INBOUND as u64, "{s:?}");
    assert_eq!(inbound_taken as u64, s.received);
    assert_eq!(s.taken, s.received);
    frames_conserved(&report, frames);
}
