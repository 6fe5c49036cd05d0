//! Foundation: the XDP program's verdicts in the kernel, delivery to AF_XDP sockets
//! on a veth pair, cleanup after every kind of exit, and refusal of foreign programs.
//! Needs root; run through `cargo xtask test`.

use std::time::Duration;

use xdp_ebpf::{
    Counter, SteerMode, Verdict,
    corpus::{self, STEERED_PORT},
};
use xdpstack::sys::{
    ifinfo::if_index,
    loader::{XdpModeChoice, XdpProgram},
    xsk::{XskConfig, XskSocket},
};
use xdpstack_tests::{
    PORT, StackProcess, counter_delta, expect_one, require_root, send_udp, testbed, wait_detached,
    xdpstack_bin,
};

const XDP_PASS: u32 = 2;
const XDP_REDIRECT: u32 = 4;
/// BPF_PROG_TEST_RUN refuses XDP input shorter than an Ethernet header (EINVAL);
/// such frames are covered by the host tests of the same code and on veth.
const ETH_HLEN: usize = 14;

/// Every corpus frame through the verified program with BPF_PROG_TEST_RUN: the
/// verdict and exactly the right counters, in `udp` and in `all` mode. No socket is
/// bound, so a steered frame must come back as XDP_PASS counted `pass_no_socket`.
#[test]
fn kernel_verdicts_match_the_corpus() {
    require_root();
    let mut program = XdpProgram::load().expect("load");
    program
        .configure(SteerMode::Udp, &[STEERED_PORT])
        .expect("configure");
    let mut failures = Vec::new();
    let mut run = 0;
    for case in corpus::cases() {
        if case.frame.len() < ETH_HLEN {
            continue;
        }
        let before = program.counters().expect("counters");
        let action = program.test_run(&case.frame, None).expect("test_run");
        let after = program.counters().expect("counters");
        let want = expect_one(match case.expected {
            Verdict::Steer => Counter::PassNoSocket,
            Verdict::Pass(reason) => reason,
        });
        let got = counter_delta(&after, &before);
        if action != XDP_PASS || got != want {
            failures.push(format!(
                "{}: action {action}, counters {got:?}, want {want:?}",
                case.name
            ));
        }
        run += 1;
    }
    assert!(run > 50, "the corpus ran only {run} frames");
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    program.configure(SteerMode::All, &[]).expect("configure");
    for case in corpus::cases()
        .into_iter()
        .filter(|c| c.frame.len() >= ETH_HLEN)
    {
        let before = program.counters().expect("counters");
        let action = program.test_run(&case.frame, None).expect("test_run");
        let got = counter_delta(&program.counters().expect("counters"), &before);
        assert_eq!(action, XDP_PASS, "{}", case.name);
        assert_eq!(
            got,
            expect_one(Counter::PassNoSocket),
            "all mode: {}",
            case.name
        );
    }
}

/// With an AF_XDP socket in the XSKMAP for the frame's RX queue, a steered frame is
/// redirected; on a queue without a socket it passes; removed from the XSKMAP and
/// restored at run time, the socket stops and starts receiving.
#[test]
fn steered_frames_redirect_only_where_a_socket_is_bound() {
    let bed = testbed("rdr", 2);
    let iface = bed.stack_if();
    let steered = corpus::cases()
        .into_iter()
        .find(|c| c.expected == Verdict::Steer && c.frame.len() >= 60)
        .expect("a steered case")
        .frame;
    bed.in_stack(|| {
        let mut program = XdpProgram::load().expect("load");
        program
            .configure(SteerMode::Udp, &[STEERED_PORT])
            .expect("configure");
        let (socket, _pool) = XskSocket::open(&iface, 0, &XskConfig::default()).expect("socket");
        program
            .register_socket(0, socket.raw_fd())
            .expect("register");
        let ifindex = if_index(&iface).expect("ifindex");

        let before = program.counters().unwrap();
        let action = program.test_run(&steered, Some((ifindex, 0))).unwrap();
        assert_eq!(
            action,
            XDP_REDIRECT,
            "{:?}",
            counter_delta(&program.counters().unwrap(), &before)
        );
        assert_eq!(
            counter_delta(&program.counters().unwrap(), &before),
            expect_one(Counter::Redirected)
        );

        let before = program.counters().unwrap();
        let action = program.test_run(&steered, Some((ifindex, 1))).unwrap();
        assert_eq!(action, XDP_PASS, "queue 1 has no socket");
        assert_eq!(
            counter_delta(&program.counters().unwrap(), &before),
            expect_one(Counter::PassNoSocket)
        );

        program.unregister_socket(0).expect("unregister");
        let action = program.test_run(&steered, Some((ifindex, 0))).unwrap();
        assert_eq!(action, XDP_PASS, "socket removed from the XSKMAP");

        program
            .register_socket(0, socket.raw_fd())
            .expect("register again");
        let action = program.test_run(&steered, Some((ifindex, 0))).unwrap();
        assert_eq!(action, XDP_REDIRECT, "socket restored in the XSKMAP");
    })
    .expect("netns");
}

/// N datagrams from a kernel UDP socket in the peer namespace, IPv4 and IPv6, all
/// reach the AF_XDP sockets; ping (ARP/ICMP, not steered) keeps working meanwhile;
/// the counters reconcile; nothing is attached afterwards.
#[test]
fn udp_reaches_the_sockets_while_ping_passes() {
    const PER_FAMILY: usize = 500;
    let bed = testbed("udp", 2);
    let total = (2 * PER_FAMILY).to_string();
    let mut stack = StackProcess::start(
        &bed,
        &[
            "--port",
            &PORT.to_string(),
            "-c",
            &total,
            "--duration",
            "30",
            "--json",
        ],
    );
    stack.wait_attached(&bed);
    // Sizes up to the largest unfragmented payload for a 1500-byte MTU.
    assert_eq!(
        send_udp(&bed, false, PORT, PER_FAMILY, &[18, 100, 512, 1472]),
        PER_FAMILY
    );
    assert_eq!(
        send_udp(&bed, true, PORT, PER_FAMILY, &[18, 100, 512, 1452]),
        PER_FAMILY
    );
    let ping = bed
        .peer_command("ping")
        .args(["-c", "3", "-i", "0.2", "-W", "2", "198.18.0.1"])
        .output()
        .expect("ping");
    assert!(
        ping.status.success(),
        "ping failed while the stack ran: {ping:?}"
    );

    let done = stack.wait(Duration::from_secs(40));
    assert!(done.status.success(), "{done:?}");
    let json = done.json();
    let packets = json["packets"].as_u64().unwrap();
    assert_eq!(packets, 2 * PER_FAMILY as u64, "{json}");
    let per_queue: u64 = json["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["packets"].as_u64().unwrap())
        .sum();
    assert_eq!(per_queue, packets);
    assert_eq!(json["xdp"]["redirected"].as_u64(), Some(packets), "{json}");
    let xdp = json["xdp"].as_object().unwrap();
    let verdicts: u64 = xdp
        .iter()
        .filter(|(k, _)| *k != "seen")
        .map(|(_, v)| v.as_u64().unwrap())
        .sum();
    assert_eq!(
        xdp["seen"].as_u64(),
        Some(verdicts),
        "one verdict per frame: {json}"
    );
    assert!(
        xdp["pass_not_steered"].as_u64().unwrap() >= 3,
        "the pings passed through the program: {json}"
    );
    assert_eq!(wait_detached(&bed), None);
}

#[derive(Clone, Copy, Debug)]
enum Ending {
    Clean,
    SigTerm,
    SigKill,
    Panic,
}

fn ends_and_leaves_nothing(ending: Ending, mode: &str) {
    let bed = testbed("end", 1);
    let port = PORT.to_string();
    let mut args = vec!["--port", port.as_str(), "--xdp-mode", mode];
    match ending {
        Ending::Clean => args.extend(["--duration", "1"]),
        _ => args.extend(["--duration", "30"]),
    }
    let env: &[(&str, &str)] = match ending {
        // Late enough that a debug build has attached (it loads and verifies
        // three programs first), early enough to fall in the run.
        Ending::Panic => &[("XDPSTACK_TEST_PANIC_AFTER_MS", "2000")],
        _ => &[],
    };
    let mut stack = StackProcess::start_with_env(&bed, &args, env);
    stack.wait_attached(&bed);
    // Traffic in flight while it ends.
    send_udp(&bed, false, PORT, 64, &[64]);
    match ending {
        Ending::SigTerm => stack.signal(libc::SIGTERM),
        Ending::SigKill => stack.signal(libc::SIGKILL),
        Ending::Clean | Ending::Panic => {}
    }
    let done = stack.wait(Duration::from_secs(20));
    use std::os::unix::process::ExitStatusExt as _;
    match ending {
        Ending::Clean | Ending::SigTerm => assert!(done.status.success(), "{done:?}"),
        Ending::SigKill => assert_eq!(done.status.signal(), Some(libc::SIGKILL), "{done:?}"),
        Ending::Panic => {
            assert_eq!(done.status.signal(), Some(libc::SIGABRT), "{done:?}");
            assert!(done.stderr.contains("deliberate panic"), "{done:?}");
        }
    }
    assert_eq!(
        wait_detached(&bed),
        None,
        "{ending:?} in {mode} mode left the program attached"
    );
    // The next start succeeds on the same interface and queue.
    let mut again = StackProcess::start(
        &bed,
        &["--port", &port, "--duration", "0.5", "--xdp-mode", mode],
    );
    again.wait_attached(&bed);
    let done = again.wait(Duration::from_secs(20));
    assert!(done.status.success(), "restart after {ending:?}: {done:?}");
    assert_eq!(wait_detached(&bed), None);
}

#[test]
fn nothing_attached_after_a_clean_exit() {
    ends_and_leaves_nothing(Ending::Clean, "drv");
}

#[test]
fn nothing_attached_after_sigterm() {
    ends_and_leaves_nothing(Ending::SigTerm, "drv");
}

#[test]
fn nothing_attached_after_sigkill_drv() {
    ends_and_leaves_nothing(Ending::SigKill, "drv");
}

#[test]
fn nothing_attached_after_sigkill_skb() {
    ends_and_leaves_nothing(Ending::SigKill, "skb");
}

#[test]
fn nothing_attached_after_a_panic() {
    ends_and_leaves_nothing(Ending::Panic, "drv");
}

/// A program someone else attached (here: through a bpf_link held by this test
/// process) is never replaced: xdpstack exits non-zero with a clear message and the
/// program stays attached.
fn foreign_program_is_refused(foreign_mode: XdpModeChoice, our_mode: &str) {
    let bed = testbed("frn", 1);
    let iface = bed.stack_if();
    let foreign = bed
        .in_stack(|| {
            let mut p = XdpProgram::load().expect("load");
            p.attach(&iface, foreign_mode)
                .expect("attach the foreign program");
            p
        })
        .expect("netns");
    let foreign_id = bed.stack_xdp_prog_id().unwrap().expect("foreign attached");

    let stack = StackProcess::start(
        &bed,
        &["--port", "9000", "--duration", "5", "--xdp-mode", our_mode],
    );
    let done = stack.wait(Duration::from_secs(20));
    assert!(!done.status.success(), "{done:?}");
    assert!(
        done.stderr.contains(&format!(
            "interface {iface} already has an XDP program attached"
        )),
        "{done:?}"
    );
    assert_eq!(
        done.stderr.trim().lines().count(),
        1,
        "one-line error: {done:?}"
    );
    assert_eq!(
        bed.stack_xdp_prog_id().unwrap(),
        Some(foreign_id),
        "foreign program replaced"
    );
    drop(foreign);
    assert_eq!(wait_detached(&bed), None);
}

#[test]
fn foreign_drv_program_is_refused_in_auto_mode() {
    foreign_program_is_refused(XdpModeChoice::Drv, "auto");
}

#[test]
fn foreign_skb_program_is_refused_in_drv_mode() {
    foreign_program_is_refused(XdpModeChoice::Skb, "drv");
}

/// Bad input fails before anything is attached, with one line naming the problem.
#[test]
fn bad_arguments_fail_clearly() {
    require_root();
    let bin = xdpstack_bin();
    let run = |args: &[&str]| {
        std::process::Command::new(&bin)
            .args(args)
            .output()
            .expect("run xdpstack")
    };
    let out = run(&["-i", "xsnosuch0", "--port", "9000"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "xdpstack: interface xsnosuch0 not found (see `ip link`)"
    );
    let out = run(&["-i", "lo"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs at least one --port"));
    let out = run(&["-i", "lo", "--port", "9000", "--queues", "7"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("queue 7 does not exist"));
}

/// Send `count` datagrams to the stack's `port` from a peer thread pinned to `cpu`.
/// With [`xps_by_cpu`], the peer transmits on queue `cpu`, which a veth delivers on
/// the same RX queue of the stack side.
fn send_from_cpu(bed: &xdpstack_tests::Testbed, cpu: usize, count: usize) {
    let to = std::net::SocketAddr::new(xdpstack_tests::Testbed::stack_addr(false), PORT);
    bed.in_peer(|| {
        // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and
        // sched_setaffinity(0, ...) act on this thread only.
        #[expect(unsafe_code, reason = "libc::sched_setaffinity")]
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            assert_eq!(
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
                0,
                "pinning the sender to CPU {cpu}"
            );
        }
        let sock = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind in peer netns");
        for i in 0..count {
            sock.send_to(&[0x5a; 32], to).expect("send_to");
            if i % 32 == 31 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    })
    .expect("entering the peer netns");
}

/// Transmit Packet Steering on the peer: CPU i sends on TX queue i (otherwise the
/// queue follows the flow's hash).
fn xps_by_cpu(bed: &xdpstack_tests::Testbed) {
    for (queue, mask) in [(0, "1"), (1, "2")] {
        let path = format!(
            "/sys/class/net/{}/queues/tx-{queue}/xps_cpus",
            bed.peer_if()
        );
        let out = bed
            .peer_command("sh")
            .args(["-c", &format!("echo {mask} > {path}")])
            .output()
            .expect("sh");
        assert!(out.status.success(), "setting {path}: {out:?}");
    }
}

/// xdpstack on queue 0 only of a 2-queue veth: what arrives on queue 1 has no
/// socket in the XSKMAP and falls back to the kernel (`pass_no_socket`), where a
/// kernel UDP socket on the same port receives it. Nothing vanishes: every frame
/// is either redirected and received, or passed and delivered by the kernel.
#[test]
fn traffic_on_a_queue_without_a_socket_reaches_the_kernel() {
    let bed = testbed("qmm", 2);
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    if cpus < 2 {
        eprintln!("skipped: one CPU, so a veth uses one RX queue");
        return;
    }
    const EACH: usize = 200;
    let kernel_socket = bed
        .in_stack(|| std::net::UdpSocket::bind(("0.0.0.0", PORT)).expect("kernel socket"))
        .expect("entering the stack netns");
    kernel_socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut stack = StackProcess::start(
        &bed,
        &[
            "--port",
            &PORT.to_string(),
            "--queues",
            "0",
            "--duration",
            "30",
            "--json",
        ],
    );
    stack.wait_attached(&bed);
    xps_by_cpu(&bed);
    // Read the kernel socket while sending, so that its buffer never overflows.
    let kernel_got = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut buf = [0u8; 64];
            let mut got = 0;
            while got < EACH && kernel_socket.recv(&mut buf).is_ok() {
                got += 1;
            }
            got
        });
        send_from_cpu(&bed, 0, EACH);
        send_from_cpu(&bed, 1, EACH);
        reader.join().expect("reader")
    });
    stack.signal(libc::SIGINT);
    let done = stack.wait(Duration::from_secs(20));
    assert!(done.status.success(), "{done:?}");
    let json = done.json();
    let xdp = &json["xdp"];
    assert_eq!(json["queues"].as_array().map(Vec::len), Some(1), "{json}");
    assert_eq!(
        json["packets"].as_u64(),
        Some(EACH as u64),
        "queue 0's: {json}"
    );
    assert_eq!(xdp["redirected"].as_u64(), Some(EACH as u64), "{json}");
    assert_eq!(xdp["pass_no_socket"].as_u64(), Some(EACH as u64), "{json}");
    assert_eq!(kernel_got, EACH, "queue 1's, through the kernel: {json}");
}
