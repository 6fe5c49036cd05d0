//! Every way a start or a run can go wrong for a user: one line on stderr naming
//! the thing and the fix, a non-zero exit status, and nothing left attached to the
//! interface. Needs root (it drops capabilities from a root process); run through
//! `cargo xtask test`.

use std::{
    process::{Command, Output},
    time::{Duration, Instant},
};

use xdpstack_tests::{PORT, StackProcess, Testbed, testbed, wait_detached, xdpstack_bin};

/// `xdpstack -i <stack interface> ARGS` in the stack namespace, under `wrap`
/// (e.g. setpriv), waited for at most 20 s.
fn run_wrapped(bed: &Testbed, wrap: &[&str], args: &[&str]) -> Output {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &bed.stack_ns()])
        .args(wrap)
        .arg(xdpstack_bin())
        .args(["-i", &bed.stack_if()])
        .args(args);
    output_within(cmd, Duration::from_secs(20))
}

fn output_within(mut cmd: Command, timeout: Duration) -> Output {
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let deadline = Instant::now() + timeout;
    let waiter = std::thread::spawn(move || child.wait_with_output().expect("wait"));
    while !waiter.is_finished() {
        if Instant::now() >= deadline {
            // Our own child, by pid.
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("xdpstack did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    waiter.join().expect("waiter")
}

/// The run failed with status `code`, one line on stderr containing every one of
/// `needles`, and nothing is attached.
fn assert_fails(bed: &Testbed, out: &Output, code: i32, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr}");
    for n in needles {
        assert!(stderr.contains(n), "`{n}` missing from: {stderr}");
    }
    assert_eq!(
        bed.stack_xdp_prog_id().expect("ip link"),
        None,
        "an XDP program was left attached"
    );
}

#[test]
fn missing_privileges_are_named() {
    let bed = testbed("priv", 1);
    let port = PORT.to_string();
    let args = ["--port", port.as_str(), "--duration", "1"];
    // Capabilities leave the bounding set, so the exec'ed binary never has them.
    let out = run_wrapped(
        &bed,
        &[
            "setpriv",
            "--bounding-set=-bpf,-net_admin,-sys_admin,-perfmon",
        ],
        &args,
    );
    assert_fails(&bed, &out, 1, &["CAP_BPF", "CAP_NET_ADMIN"]);
    let out = run_wrapped(&bed, &["setpriv", "--bounding-set=-net_raw"], &args);
    assert_fails(&bed, &out, 1, &["CAP_NET_RAW"]);
    // Without CAP_IPC_LOCK the UMEM counts against RLIMIT_MEMLOCK (64 KiB here).
    let script = format!(
        "ulimit -l 64; exec {} -i {} --port {PORT} --duration 1",
        xdpstack_bin().display(),
        bed.stack_if()
    );
    let out = run_wrapped(
        &bed,
        &["setpriv", "--bounding-set=-ipc_lock", "sh", "-c", &script],
        &[],
    );
    // `run_wrapped` appended `-i IFACE` after the script: sh takes it as $0/$1.
    assert_fails(&bed, &out, 1, &["RLIMIT_MEMLOCK", "ulimit -l"]);
}

#[test]
fn bad_input_fails_before_anything_is_attached() {
    let bed = testbed("barg", 2);
    let port = PORT.to_string();
    let cases: &[(&[&str], i32, &[&str])] = &[
        (&["--port", "0"], 2, &["port 0"]),
        (&["--port", "70000"], 2, &["70000", "see xdpstack --help"]),
        (
            &["--port", &port, "--no-such-option"],
            2,
            &["--no-such-option"],
        ),
        (
            &["--port", &port, "--duration", "-1"],
            2,
            &["positive number of seconds"],
        ),
        (
            &["--port", &port, "-U"],
            2,
            &["-U shapes a capture file", "-w FILE"],
        ),
        (&["--port", &port, "--frames", "1000"], 2, &["power of two"]),
        (
            &["--port", &port, "--queues", "5"],
            1,
            &["queue 5 does not exist", "ethtool -l"],
        ),
        (
            &["--port", &port, "-w", "/nonexistent-xdpstack-dir/x.pcap"],
            1,
            &["/nonexistent-xdpstack-dir/x.pcap", "does not exist"],
        ),
        (&["--capture", "udp"], 2, &["--port"]),
        (
            &["--port", &port, "--zero-copy", "on"],
            1,
            &["zero-copy", "--zero-copy off"],
        ),
    ];
    for (args, code, needles) in cases {
        let out = run_wrapped(&bed, &[], args);
        assert_fails(&bed, &out, *code, needles);
    }
    // An interface that is down.
    let link = |args: &[&str]| {
        let status = Command::new("ip")
            .args(["-n", &bed.stack_ns(), "link", "set", "dev", &bed.stack_if()])
            .args(args)
            .status()
            .expect("ip link set");
        assert!(status.success());
    };
    link(&["down"]);
    let out = run_wrapped(&bed, &[], &["--port", &port]);
    assert_fails(&bed, &out, 1, &["is down", "ip link set dev"]);
    link(&["up"]);
    // An MTU beyond what a 2048-byte frame holds, without multi-buffer (with
    // it, the default, such an MTU runs: tests/tests/jumbo.rs).
    link(&["mtu", "3000"]);
    let out = run_wrapped(&bed, &[], &["--port", &port, "--multi-buffer", "off"]);
    assert_fails(
        &bed,
        &out,
        1,
        &[
            "MTU 3000",
            "mtu 1770",
            "--frame-size 4096",
            "--multi-buffer",
        ],
    );
    // ... which 4096-byte frames do hold.
    let out = run_wrapped(
        &bed,
        &[],
        &[
            "--port",
            &port,
            "--multi-buffer",
            "off",
            "--frame-size",
            "4096",
            "--duration",
            "0.5",
        ],
    );
    assert!(out.status.success(), "{out:?}");
}

/// A driver without native XDP: the namespace's loopback device (veth has native
/// XDP, and this kernel has no dummy driver). `--xdp-mode drv` names the driver's
/// lack and the fix; `auto` falls back to generic (skb) mode and runs.
#[test]
fn driver_without_native_xdp_is_named() {
    let bed = testbed("nodr", 1);
    let ip_lo = |args: &[&str]| {
        let out = Command::new("ip")
            .args(["-n", &bed.stack_ns()])
            .args(args)
            .output()
            .expect("ip");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Up, and an MTU that 2048-byte frames hold.
    ip_lo(&["link", "set", "dev", "lo", "up", "mtu", "1500"]);
    let run = |mode: &str| {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &bed.stack_ns()])
            .arg(xdpstack_bin())
            .args(["-i", "lo", "--port", &PORT.to_string(), "--xdp-mode", mode])
            .args(["--duration", "0.3", "--json"]);
        output_within(cmd, Duration::from_secs(20))
    };
    let out = run("drv");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    for needle in ["lo", "no native XDP", "--xdp-mode skb"] {
        assert!(stderr.contains(needle), "`{needle}` missing from: {stderr}");
    }
    let attached = |show: &str| xdpstack_testbed::parse_xdp_prog_id(show);
    assert_eq!(attached(&ip_lo(&["link", "show", "dev", "lo"])), None);

    let out = run("auto");
    assert!(out.status.success(), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("summary");
    assert_eq!(json["xdp_mode"], "skb", "{json}");
    assert_eq!(attached(&ip_lo(&["link", "show", "dev", "lo"])), None);
}

/// The MTU raised under a running stack (veth allows it with XDP attached): the
/// stack says once why the frames that no longer fit a UMEM frame are dropped,
/// and the kernel's rx_dropped counts them; the rest keeps flowing.
#[test]
fn mtu_raised_mid_run_is_reported() {
    let bed = testbed("mtur", 1);
    let mut stack = StackProcess::start(
        &bed,
        &["--port", &PORT.to_string(), "--duration", "30", "--json"],
    );
    stack.wait_attached(&bed);
    for (ns, dev) in [
        (bed.stack_ns(), bed.stack_if()),
        (bed.peer_ns(), bed.peer_if()),
    ] {
        let status = Command::new("ip")
            .args(["-n", &ns, "link", "set", "dev", &dev, "mtu", "3000"])
            .status()
            .expect("ip link set mtu");
        assert!(status.success(), "raising the MTU of {dev}");
    }
    // The supervisor looks every 100 ms.
    std::thread::sleep(Duration::from_millis(300));
    // 100-byte and 2900-byte payloads, alternately: the large ones do not fit.
    xdpstack_tests::send_udp(&bed, false, PORT, 20, &[100, 2900]);
    std::thread::sleep(Duration::from_millis(200));
    stack.signal(libc::SIGINT);
    let done = stack.wait(Duration::from_secs(20));
    assert!(done.status.success(), "{done:?}");
    assert_eq!(
        done.stderr.matches("was raised to 3000").count(),
        1,
        "{}",
        done.stderr
    );
    // The way out is now multi-buffer (a larger frame size was, before it).
    assert!(done.stderr.contains("--multi-buffer"), "{}", done.stderr);
    let json = done.json();
    assert_eq!(json["packets"].as_u64(), Some(10), "{json}");
    assert_eq!(
        json["queues"][0]["xsk"]["rx_dropped"].as_u64(),
        Some(10),
        "{json}"
    );
    assert_eq!(json["xdp"]["redirected"].as_u64(), Some(20), "{json}");
}

fn stops_cleanly_when(tag: &str, action: &[&str], what: &str) {
    let bed = testbed(tag, 2);
    let mut stack = StackProcess::start(&bed, &["--port", &PORT.to_string(), "--app", "echo"]);
    stack.wait_attached(&bed);
    std::thread::sleep(Duration::from_millis(300));
    let status = Command::new("ip")
        .args(["-n", &bed.stack_ns(), "link"])
        .args(action)
        .arg(bed.stack_if())
        .status()
        .expect("ip link");
    assert!(status.success());
    let out = stack.wait(Duration::from_secs(5));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("interface {} {what}", bed.stack_if())),
        "{out:?}"
    );
    assert!(out.stderr.contains("nothing left attached"), "{out:?}");
    assert!(!out.stderr.contains("panicked"), "{out:?}");
    if what == "went down" {
        assert_eq!(wait_detached(&bed), None);
    }
}

#[test]
fn interface_set_down_mid_run_stops_the_stack() {
    stops_cleanly_when("down", &["set", "down", "dev"], "went down");
}

#[test]
fn interface_deleted_mid_run_stops_the_stack() {
    stops_cleanly_when("gone", &["del", "dev"], "disappeared");
}

/// `xdpstack -vv ... 2>&1 | head -3`: logging and reports to streams whose
/// reader has gone never panic (the panic hook would abort the run, status
/// 134); the run goes on to its end and exits 0.
#[test]
fn closed_output_streams_do_not_abort_the_run() {
    use std::io::{BufRead as _, BufReader};
    let bed = testbed("epip", 1);
    let port = PORT.to_string();
    let mut child = bed
        .stack_command(xdpstack_bin())
        .args(["-i", &bed.stack_if(), "--port", &port, "-vv", "--json"])
        .args(["--stats", "0.1", "--duration", "2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let stdout = child.stdout.take().expect("stdout");
    // Three lines of the log, then both readers go.
    let lines: Vec<String> = BufReader::new(stderr)
        .lines()
        .take(3)
        .map_while(Result::ok)
        .collect();
    assert_eq!(lines.len(), 3, "the log started: {lines:?}");
    drop(stdout);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "xdpstack still running");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status} (134 is the abort of a panic)");
    assert_eq!(wait_detached(&bed), None);
}

/// A second instance on a queue the first holds says who holds it (the
/// first's pid, found through the interface's XDP program) and the way out,
/// in one line; the first runs on, attached.
#[test]
fn a_queue_held_by_another_instance_names_it() {
    let bed = testbed("bsy", 1);
    let port = PORT.to_string();
    let mut first = StackProcess::start(&bed, &["--port", &port, "--duration", "30"]);
    let id = first.wait_attached(&bed);
    // With a capture file: a start that fails leaves none behind.
    let file = std::env::temp_dir().join(format!("xdpstack-busy-{}.pcap", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let out = run_wrapped(
        &bed,
        &[],
        &[
            "--port",
            &port,
            "--duration",
            "1",
            "-w",
            file.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        !file.exists(),
        "a failed start left {} behind",
        file.display()
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    for needle in [
        &format!(
            "queue 0 of {} is held by xdpstack (pid {})",
            bed.stack_if(),
            first.pid()
        )[..],
        "--queues",
    ] {
        assert!(stderr.contains(needle), "`{needle}` missing from: {stderr}");
    }
    assert_eq!(
        bed.stack_xdp_prog_id().unwrap(),
        Some(id),
        "the first runs on"
    );
    first.signal(libc::SIGTERM);
    let done = first.wait(Duration::from_secs(10));
    assert!(done.status.success(), "{done:?}");
}

/// A veth whose peer's MTU is above what native XDP allows a program without
/// frags support, tried as a new user would (`ip link set dev PEER mtu 9000`),
/// with `--multi-buffer off` (which loads such a program; the frags-aware one
/// of `auto` and `on` attaches natively whatever the peer's MTU): `drv` fails
/// in one line with the kernel's reason (which bpf(2) does not carry) and the
/// fix naming the peer and its namespace; `auto` runs in generic mode and says
/// so.
#[test]
fn a_veth_peer_mtu_too_large_for_native_xdp_is_explained() {
    let bed = testbed("pmtu", 1);
    let out = Command::new("ip")
        .args([
            "-n",
            &bed.peer_ns(),
            "link",
            "set",
            "dev",
            &bed.peer_if(),
            "mtu",
            "9000",
        ])
        .output()
        .expect("ip link set mtu");
    assert!(out.status.success(), "{out:?}");
    let port = PORT.to_string();
    let out = run_wrapped(
        &bed,
        &[],
        &[
            "--port",
            &port,
            "--multi-buffer",
            "off",
            "--xdp-mode",
            "drv",
            "--duration",
            "1",
        ],
    );
    let fix = format!(
        "ip -n {} link set dev {} mtu 3506",
        bed.peer_ns(),
        bed.peer_if()
    );
    assert_fails(
        &bed,
        &out,
        1,
        &["Peer MTU is too large to set XDP", &fix, "--xdp-mode skb"],
    );
    let out = run_wrapped(
        &bed,
        &[],
        &[
            "--port",
            &port,
            "--multi-buffer",
            "off",
            "--duration",
            "0.5",
            "--json",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("running in generic (skb) mode instead"),
        "{stderr}"
    );
    assert!(stderr.contains(&fix), "{stderr}");
    let json: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).expect("the report");
    assert_eq!(json["xdp_mode"], "skb");
    assert_eq!(wait_detached(&bed), None);
    // The frags-aware program (`--multi-buffer auto`, the default) is not held
    // to the peer's MTU: native mode attaches.
    let out = run_wrapped(
        &bed,
        &[],
        &[
            "--port",
            &port,
            "--xdp-mode",
            "drv",
            "--duration",
            "0.5",
            "--json",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let json: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).expect("the report");
    assert_eq!(json["xdp_mode"], "drv", "{json}");
    assert_eq!(wait_detached(&bed), None);
}
