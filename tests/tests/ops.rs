//! Running it safely: every privilege dropped once attached (`-Z` as tcpdump),
//! the seccomp allow-list on and what a syscall outside it does, `--require`
//! failing in one line instead of degrading, `doctor`'s verdicts, the
//! explanation of a veth's checksum rejects, and the Prometheus endpoint read
//! by `promtool` and scraped by a real Prometheus server. Needs root; run
//! through `cargo xtask test`.

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    os::unix::{fs::MetadataExt as _, fs::PermissionsExt as _, process::ExitStatusExt as _},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use xdpstack_tests::{PORT, StackProcess, TempDir, Testbed, testbed, wait_detached, xdpstack_bin};

/// The fields of `/proc/PID/status` this file checks.
fn proc_status(pid: i32) -> std::collections::BTreeMap<String, String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("/proc/PID/status")
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// `xdpstack ARGS` (no `-i` added) in the stack namespace, at most 20 s.
fn run_in_stack(bed: &Testbed, args: &[&str], env: &[(&str, &str)]) -> Output {
    let child = bed
        .stack_command(xdpstack_bin())
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let waiter = std::thread::spawn(move || child.wait_with_output().expect("wait"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !waiter.is_finished() {
        if Instant::now() >= deadline {
            // Our own child, by pid.
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("xdpstack did not exit within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    waiter.join().expect("waiter")
}

/// Exit status 1, one line on stderr with every needle, nothing attached.
fn assert_one_line_failure(bed: &Testbed, out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    for n in needles {
        assert!(stderr.contains(n), "`{n}` missing from: {stderr}");
    }
    assert_eq!(bed.stack_xdp_prog_id().expect("ip link"), None);
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// While receiving: no capability in any set, no_new_privs, the seccomp
/// filter, on every thread; with `-Z nobody` the uid, gid and groups are
/// nobody's and every capture file, the first and those `-C` rotates to, is
/// created as nobody; SIGKILL leaves nothing attached.
#[test]
fn privileges_are_dropped_while_receiving() {
    let bed = testbed("priv", 1);
    let dir = TempDir::new("ops-priv");
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let file = dir.0.join("cap.pcap");
    let mut stack = StackProcess::start(
        &bed,
        &[
            "--port",
            &PORT.to_string(),
            "-w",
            file.to_str().expect("utf-8"),
            "-C",
            "1",
            "-Z",
            "nobody",
            "--duration",
            "60",
        ],
    );
    stack.wait_attached(&bed);
    // About 1.3 MB of frames: the first file passes 1 MB and -C rotates.
    let sent = xdpstack_tests::send_udp(&bed, false, PORT, 1300, &[1000]);
    assert_eq!(sent, 1300);
    let rotated = dir.0.join("cap.pcap1");
    wait_for("the rotated file", Duration::from_secs(10), || {
        rotated.exists()
    });
    let pid = stack.pid();
    let status = proc_status(pid);
    for key in ["CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"] {
        assert_eq!(status[key], "0000000000000000", "{key}: {status:?}");
    }
    assert_eq!(status["NoNewPrivs"], "1");
    assert_eq!(status["Seccomp"], "2", "filter mode");
    assert!(
        status["Uid"].split_whitespace().all(|u| u == "65534"),
        "{status:?}"
    );
    assert!(
        status["Gid"].split_whitespace().all(|g| g == "65534"),
        "{status:?}"
    );
    assert_eq!(status["Groups"], "65534");
    // Every thread, not only the first (credentials are per thread).
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks");
    let mut threads = 0;
    for task in tasks {
        let path = task.expect("task").path().join("status");
        let text = std::fs::read_to_string(path).expect("task status");
        assert!(text.contains("CapEff:\t0000000000000000"), "{text}");
        assert!(text.contains("Seccomp:\t2"), "{text}");
        threads += 1;
    }
    assert!(
        threads >= 3,
        "poller, writer and supervisor at least: {threads}"
    );
    for f in [&file, &rotated] {
        let meta = std::fs::metadata(f).expect("capture file");
        assert_eq!((meta.uid(), meta.gid()), (65534, 65534), "{}", f.display());
    }
    stack.signal(libc::SIGKILL);
    let done = stack.wait(Duration::from_secs(10));
    assert_eq!(done.status.signal(), Some(libc::SIGKILL));
    assert_eq!(wait_detached(&bed), None, "SIGKILL left XDP attached");
}

/// Without -Z the process stays root but holds no capability, and a clean
/// exit reports and detaches as before.
#[test]
fn without_a_user_root_keeps_no_capability() {
    let bed = testbed("root", 1);
    let mut stack = StackProcess::start(&bed, &["--port", &PORT.to_string(), "--json"]);
    stack.wait_attached(&bed);
    let sent = xdpstack_tests::send_udp(&bed, false, PORT, 50, &[64]);
    wait_for("the stack's threads", Duration::from_secs(5), || {
        proc_status(stack.pid())["Seccomp"] == "2"
    });
    let status = proc_status(stack.pid());
    assert!(status["Uid"].split_whitespace().all(|u| u == "0"));
    for key in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(status[key], "0000000000000000", "{key}");
    }
    assert_eq!(status["NoNewPrivs"], "1");
    stack.signal(libc::SIGINT);
    let done = stack.wait(Duration::from_secs(20));
    assert!(done.status.success(), "{done:?}");
    let json = done.json();
    assert_eq!(json["packets"].as_u64(), Some(sent as u64), "{json}");
    assert_eq!(
        json["udp"]["datagrams"].as_u64(),
        Some(sent as u64),
        "{json}"
    );
    assert_eq!(wait_detached(&bed), None);
}

/// A capture file `-Z`'s user may not create: one line, naming the file and
/// the user, nothing attached and no file left behind.
#[test]
fn a_file_the_user_may_not_write_is_one_line() {
    let bed = testbed("perm", 1);
    let dir = TempDir::new("ops-perm");
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let file = dir.0.join("cap.pcap");
    let path = file.to_str().expect("utf-8");
    let out = run_in_stack(
        &bed,
        &[
            "-i",
            &bed.stack_if(),
            "--port",
            &PORT.to_string(),
            "-w",
            path,
            "-Z",
            "nobody",
        ],
        &[],
    );
    assert_one_line_failure(&bed, &out, &[path, "Permission denied", "-Z nobody"]);
    assert!(!file.exists(), "no file left behind");
    // An unknown user fails before anything is loaded.
    let out = run_in_stack(
        &bed,
        &[
            "-i",
            &bed.stack_if(),
            "--port",
            "9000",
            "-Z",
            "xs-no-such-user",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such user"));
}

/// A syscall outside the allow-list (linkat, through the test-only hook)
/// kills the process with SIGSYS, as designed, and nothing stays attached;
/// with --no-seccomp the same hook is harmless and the run ends normally.
#[test]
fn a_syscall_outside_the_allow_list_kills_the_process() {
    let bed = testbed("sysc", 1);
    let env = [("XDPSTACK_TEST_SECCOMP_VIOLATION_AFTER_MS", "300")];
    let mut stack = StackProcess::start_with_env(
        &bed,
        &["--port", &PORT.to_string(), "--duration", "30"],
        &env,
    );
    stack.wait_attached(&bed);
    let done = stack.wait(Duration::from_secs(15));
    assert_eq!(done.status.signal(), Some(libc::SIGSYS), "{done:?}");
    assert_eq!(
        wait_detached(&bed),
        None,
        "the killed process left XDP attached"
    );

    let mut stack = StackProcess::start_with_env(
        &bed,
        &[
            "--port",
            &PORT.to_string(),
            "--duration",
            "1.5",
            "--no-seccomp",
        ],
        &env,
    );
    stack.wait_attached(&bed);
    wait_for("the hook", Duration::from_secs(5), || {
        proc_status(stack.pid())["NoNewPrivs"] == "1"
    });
    assert_eq!(proc_status(stack.pid())["Seccomp"], "0");
    let done = stack.wait(Duration::from_secs(15));
    assert!(done.status.success(), "{done:?}");
    assert!(
        done.stderr.contains("linkat returned Err"),
        "{}",
        done.stderr
    );
}

/// `--require` on veth and lo: one line naming the feature, the interface
/// and why, status 1, nothing attached.
#[test]
fn requirements_that_cannot_be_had_fail_in_one_line() {
    let bed = testbed("req", 1);
    let iface = bed.stack_if();
    let port = PORT.to_string();
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            &iface,
            &["--require", "zero-copy"],
            &[
                "--require zero-copy",
                "driver veth",
                "no AF_XDP zero-copy",
                "copy mode",
            ],
        ),
        (
            &iface,
            &["--require", "busy-poll"],
            &["--require busy-poll", "no NAPI id"],
        ),
        (
            "lo",
            &["--require", "drv"],
            &["--require drv: lo", "no native XDP", "generic (skb) mode"],
        ),
        (
            &iface,
            &["--require", "drv", "--require", "zero-copy"],
            &["--require zero-copy"],
        ),
    ];
    for (dev, extra, needles) in cases {
        let mut args = vec!["-i", dev, "--port", &port, "--duration", "1"];
        args.extend_from_slice(extra);
        let out = run_in_stack(&bed, &args, &[]);
        assert_one_line_failure(&bed, &out, needles);
    }
    // veth has native XDP: --require drv alone runs, in driver mode.
    let out = run_in_stack(
        &bed,
        &[
            "-i",
            &iface,
            "--port",
            &port,
            "--duration",
            "0.5",
            "--require",
            "drv",
            "--json",
        ],
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("summary");
    assert_eq!(json["xdp_mode"], "drv");
}

/// The doctor's lines for a topic: (verdict, the finding and its fix).
fn doctor(bed: &Testbed, iface: &str) -> std::collections::BTreeMap<String, (String, String)> {
    let out = run_in_stack(bed, &["doctor", "-i", iface], &[]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut topics = std::collections::BTreeMap::new();
    let mut last = String::new();
    for line in text.lines().skip(1) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"fix:") {
            let entry: &mut (String, String) = topics.get_mut(&last).expect("a topic first");
            entry.1.push_str(line.trim());
            continue;
        }
        last = words[1].to_string();
        topics.insert(last.clone(), (words[0].to_string(), words[2..].join(" ")));
    }
    topics
}

/// `doctor` on the testbed's veth and on the namespace's lo, and on the veth
/// while xdpstack holds it (a program is attached: the doctor names it).
#[test]
fn doctor_gives_the_right_verdicts() {
    let bed = testbed("doc", 2);
    let veth = doctor(&bed, &bed.stack_if());
    assert_eq!(veth["link"].0, "ok", "{veth:?}");
    assert!(veth["link"].1.contains("driver veth"));
    assert_eq!(veth["xdp"].0, "ok", "veth has native XDP: {veth:?}");
    assert_eq!(veth["zero-copy"].0, "WARN");
    assert!(veth["zero-copy"].1.contains("fix:"), "{veth:?}");
    assert!(veth["queues"].1.starts_with("2 RX queue(s)"), "{veth:?}");
    assert_eq!(veth["program"].0, "ok");
    assert_eq!(veth["mtu"].0, "ok");
    assert_eq!(veth["capabilities"].0, "ok");
    assert_eq!(veth["busy-poll"].0, "WARN");
    assert_eq!(veth["checksum"].0, "WARN", "a veth: {veth:?}");
    let fix = format!(
        "ip netns exec {} ethtool -K {} tx off",
        bed.peer_ns(),
        bed.peer_if()
    );
    assert!(veth["checksum"].1.contains(&fix), "{veth:?}");

    let lo = doctor(&bed, "lo");
    assert_eq!(lo["xdp"].0, "WARN", "{lo:?}");
    assert!(lo["xdp"].1.contains("generic (skb) XDP only"));
    assert_eq!(lo["zero-copy"].0, "WARN");
    // 65536 needs more 2048-byte frames than the kernel chains for a packet.
    assert_eq!(lo["mtu"].0, "FAIL", "{lo:?}");
    assert!(lo["mtu"].1.contains("--frame-size 4096"), "{lo:?}");
    assert!(
        lo["mtu"].1.contains("ip link set dev lo mtu 32234"),
        "{lo:?}"
    );
    assert_eq!(
        lo["queues"].1,
        "1 RX queue(s): --queues all opens 1 socket(s) and poller(s)"
    );
    assert!(!lo.contains_key("checksum"), "not a veth");

    let mut stack = StackProcess::start(&bed, &["--port", &PORT.to_string()]);
    let id = stack.wait_attached(&bed);
    let held = doctor(&bed, &bed.stack_if());
    assert_eq!(held["program"].0, "FAIL", "{held:?}");
    assert!(held["program"].1.contains(&format!("id {id}")), "{held:?}");
    assert!(held["program"].1.contains("xdp off"), "{held:?}");
    stack.signal(libc::SIGINT);
    assert!(stack.wait(Duration::from_secs(20)).status.success());

    let out = run_in_stack(&bed, &["doctor", "-i", "xs-no-such-if"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("xs-no-such-if not found"));
}

/// A veth pair as a new user makes it: the peer keeps TX checksum offload on,
/// so a kernel socket's UDP arrives with a partial checksum. Every datagram is
/// rejected as bad_udp_checksum, and the stack says once what is going on and
/// the fix.
#[test]
fn checksum_offload_on_the_peer_is_explained_once() {
    let bed = testbed("csum", 1);
    let out = bed
        .peer_command("ethtool")
        .args(["-K", &bed.peer_if(), "tx", "on"])
        .output()
        .expect("ethtool");
    assert!(out.status.success(), "{out:?}");
    let mut stack = StackProcess::start(&bed, &["--port", &PORT.to_string(), "--json"]);
    stack.wait_attached(&bed);
    let sent = xdpstack_tests::send_udp(&bed, false, PORT, 40, &[100]);
    // The supervisor looks every 100 ms; a second burst must not repeat it.
    std::thread::sleep(Duration::from_millis(400));
    xdpstack_tests::send_udp(&bed, false, PORT, 40, &[100]);
    std::thread::sleep(Duration::from_millis(400));
    stack.signal(libc::SIGINT);
    let done = stack.wait(Duration::from_secs(20));
    assert!(done.status.success(), "{done:?}");
    let json = done.json();
    assert_eq!(
        json["udp"]["rejected"]["bad_udp_checksum"].as_u64(),
        Some(2 * sent as u64),
        "{json}"
    );
    let said = done
        .stderr
        .lines()
        .filter(|l| l.contains("rejected as bad_udp_checksum, and nothing else"))
        .collect::<Vec<_>>();
    assert_eq!(said.len(), 1, "once: {}", done.stderr);
    let fix = format!(
        "Fix: `ip netns exec {} ethtool -K {} tx off`",
        bed.peer_ns(),
        bed.peer_if()
    );
    for needle in [
        "is a veth",
        "TX checksum offload",
        "CHECKSUM_PARTIAL",
        fix.as_str(),
    ] {
        assert!(said[0].contains(needle), "`{needle}` missing: {}", said[0]);
    }
}

/// One HTTP GET inside the stack namespace: (status line, body).
fn http_get(bed: &Testbed, port: u16, path: &str) -> Option<(String, String)> {
    let path = path.to_string();
    bed.in_stack(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        Some((head.lines().next()?.to_string(), body.to_string()))
    })
    .expect("entering the stack namespace")
}

/// The value of the sample `line` starts with, in a text exposition.
fn sample(text: &str, line: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(line)?.strip_prefix(' ')?.parse().ok())
}

/// A Prometheus server of the test's, in the stack namespace, killed (by
/// pid) on drop.
struct Prometheus(std::process::Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `--metrics`: `promtool check metrics` accepts the endpoint's text, and a
/// real Prometheus server, started on loopback in the test's namespace,
/// scrapes it: its query API returns the counters the run reports.
#[test]
fn prometheus_scrapes_the_metrics() {
    for tool in ["promtool", "prometheus"] {
        assert!(
            Command::new(tool).arg("--version").output().is_ok(),
            "{tool} missing: `cargo xtask setup` installs Debian's prometheus package"
        );
    }
    let bed = testbed("prom", 1);
    let dir = TempDir::new("ops-prom");
    const METRICS: u16 = 9464;
    const SERVER: u16 = 9490;
    let mut stack = StackProcess::start(
        &bed,
        &[
            "--port",
            &PORT.to_string(),
            "--metrics",
            &format!("127.0.0.1:{METRICS}"),
            "--stats",
            "0.2",
            "--json",
            "-w",
            dir.0.join("cap.pcap").to_str().expect("utf-8"),
        ],
    );
    stack.wait_attached(&bed);
    let sent = xdpstack_tests::send_udp(&bed, false, PORT, 300, &[200]) as f64;
    let mut text = String::new();
    wait_for("the endpoint's counters", Duration::from_secs(10), || {
        if let Some((status, body)) = http_get(&bed, METRICS, "/metrics") {
            assert_eq!(status, "HTTP/1.1 200 OK");
            text = body;
        }
        sample(&text, "xdpstack_udp_datagrams_total{queue=\"0\"}") == Some(sent)
    });
    assert_eq!(
        sample(&text, "xdpstack_rx_packets_total{queue=\"0\"}"),
        Some(sent)
    );
    assert_eq!(
        sample(&text, "xdpstack_xdp_verdicts_total{verdict=\"redirected\"}"),
        Some(sent)
    );
    assert_eq!(
        sample(
            &text,
            "xdpstack_consumer_delivered_frames_total{queue=\"0\",consumer=\"pcap\"}"
        ),
        Some(sent)
    );
    assert_eq!(
        sample(
            &text,
            "xdpstack_kernel_drops_total{queue=\"0\",cause=\"rx_ring_full\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        http_get(&bed, METRICS, "/nope").map(|r| r.0).as_deref(),
        Some("HTTP/1.1 404 Not Found")
    );

    // promtool's own linter over the text.
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("to promtool");
    let checked = check.wait_with_output().expect("promtool");
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // A real server scraping it every second, on loopback in the namespace.
    let config = dir.0.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: xdpstack\n    \
             static_configs:\n      - targets: ['127.0.0.1:{METRICS}']\n"
        ),
    )
    .expect("config");
    let server = Prometheus(
        bed.stack_command("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.0.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{SERVER}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus"),
    );
    let query = "/api/v1/query?query=xdpstack_udp_datagrams_total";
    let mut answer = String::new();
    wait_for("Prometheus's query answer", Duration::from_secs(60), || {
        if let Some((_, body)) = http_get(&bed, SERVER, query) {
            answer = body;
        }
        answer.contains(&format!("\"{sent}\"]"))
    });
    let json: serde_json::Value = serde_json::from_str(&answer).expect("query JSON");
    assert_eq!(json["status"], "success", "{json}");
    let result = &json["data"]["result"][0];
    assert_eq!(result["metric"]["queue"], "0", "{json}");
    assert_eq!(result["metric"]["job"], "xdpstack", "{json}");
    assert_eq!(result["value"][1], sent.to_string(), "{json}");
    let up = "/api/v1/query?query=up";
    let (_, body) = http_get(&bed, SERVER, up).expect("up");
    assert!(body.contains("\"1\"]"), "the target is up: {body}");
    drop(server);
    stack.signal(libc::SIGINT);
    let done = stack.wait(Duration::from_secs(20));
    assert!(done.status.success(), "{done:?}");
}
