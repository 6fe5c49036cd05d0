//! The benchmark's traffic generator and kernel baseline, end to end: what
//! `xdpstack-gen` says it sent is what the stack and the kernel socket account
//! for, frame by frame. Needs root; run through `cargo xtask test`.

use std::{
    path::PathBuf,
    process::{Command, Output, Stdio},
    time::Duration,
};

use serde_json::Value;
use xdpstack_tests::{
    PORT, StackProcess, Testbed, quiet_testbed, testbed, wait_detached, xdpstack_bin,
};

/// A binary built next to `xdpstack`.
fn sibling(name: &str) -> PathBuf {
    let path = xdpstack_bin().with_file_name(name);
    assert!(path.exists(), "{} not built", path.display());
    path
}

fn mac_of(ns: &str, dev: &str) -> String {
    let out = Command::new("ip")
        .args(["-n", ns, "-j", "link", "show", "dev", dev])
        .output()
        .expect("ip link");
    let v: Value = serde_json::from_slice(&out.stdout).expect("ip -j");
    v[0]["address"].as_str().expect("a MAC").to_string()
}

fn json(out: &Output, what: &str) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{what} failed: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{what} JSON ({e}): {text}"))
}

/// Frames of ours the generator put on the wire: its program's runs minus the
/// frames the veth refused (ring full) or the program dropped. (The interface's
/// TX counter, `packets`, also counts frames the peer's kernel sends itself.)
fn generated(report: &Value) -> u64 {
    let get = |k: &str| {
        report[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k}: {report}"))
    };
    get("runs") - get("dropped") - get("dropped_in_program")
}

/// Run the generator in the peer namespace: exactly `count` frames.
fn generate(bed: &Testbed, count: u64, payload: u32) -> Value {
    let out = bed
        .peer_command(sibling("xdpstack-gen"))
        .args(["-i", &bed.peer_if()])
        .args(["--dst-mac", &mac_of(&bed.stack_ns(), &bed.stack_if())])
        .args([
            "--dst",
            &format!("198.18.0.1:{PORT}"),
            "--src",
            "198.18.0.2",
        ])
        .args(["--payload", &payload.to_string(), "--flows", "8"])
        .args(["-c", &count.to_string(), "--duration", "20", "--json"])
        .output()
        .expect("running xdpstack-gen");
    json(&out, "xdpstack-gen")
}

fn sum_queues(summary: &Value, path: &[&str]) -> u64 {
    summary["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .map(|q| path.iter().fold(q, |v, k| &v[*k]).as_u64().unwrap_or(0))
        .sum()
}

#[test]
fn generated_frames_are_all_accounted_for_by_the_stack() {
    // The peer's own frames (IPv6 router solicitations, MLD) dropped by a full
    // veth ring would count as the generator's: keep the peer quiet.
    let bed = quiet_testbed("gen");
    let mut stack = StackProcess::start(&bed, &["--port", &PORT.to_string(), "--json"]);
    stack.wait_attached(&bed);
    let count = 200_000;
    let report = generate(&bed, count, 18);
    assert_eq!(report["runs"], count, "-c is exact: {report}");
    let transmitted = generated(&report);
    let ring_full = report["dropped"].as_u64().unwrap();
    // Frames the peer's kernel sent itself (neighbour discovery) make this
    // slightly negative; none may vanish.
    let unaccounted = report["unaccounted"].as_i64().unwrap();
    assert!((-8..=0).contains(&unaccounted), "{report}");
    assert!(transmitted > 0, "{report}");
    assert!(transmitted + ring_full <= count + 8, "{report}");
    std::thread::sleep(Duration::from_millis(300));
    stack.signal(libc::SIGTERM);
    let summary = stack.wait(Duration::from_secs(10)).json();
    // Every transmitted frame is a datagram delivered, or counted where it was
    // lost: the socket's RX ring, the fill ring, the UDP consumer's queue.
    let delivered = summary["udp"]["datagrams"].as_u64().unwrap();
    let lost = sum_queues(&summary, &["xsk", "rx_dropped"])
        + sum_queues(&summary, &["xsk", "rx_ring_full"]);
    let redirected = summary["xdp"]["redirected"].as_u64().unwrap();
    assert_eq!(
        redirected, transmitted,
        "the XDP program saw every frame sent: {summary}"
    );
    assert_eq!(delivered + lost, transmitted, "{summary}");
    let ports = summary["udp"]["ports"][PORT.to_string()]["datagrams"]
        .as_u64()
        .unwrap();
    assert_eq!(ports, delivered);
    assert_eq!(wait_detached(&bed), None);
}

#[test]
fn the_kernel_baseline_counts_what_it_receives_and_drops() {
    let bed = testbed("kbl", 1);
    // The kernel socket has no XDP program on its veth: GRO gives the veth the
    // NAPI context that frames from the peer's XDP need.
    let status = bed
        .stack_command("ethtool")
        .args(["-K", &bed.stack_if(), "gro", "on"])
        .status()
        .expect("ethtool");
    assert!(status.success());
    let rx = bed
        .stack_command(sibling("xdpstack-kernel-rx"))
        .args(["--bind", &format!("198.18.0.1:{PORT}"), "--duration", "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting xdpstack-kernel-rx");
    let rx = KillOnDrop(Some(rx));
    std::thread::sleep(Duration::from_millis(500));
    let count = 100_000;
    let report = generate(&bed, count, 64);
    let transmitted = generated(&report);
    std::thread::sleep(Duration::from_millis(300));
    let out = rx.stop();
    let got = json(&out, "xdpstack-kernel-rx");
    let delivered = got["datagrams"].as_u64().unwrap();
    let dropped = got["drops"]["udp_in_errors"].as_u64().unwrap();
    assert_eq!(got["payload_bytes"], delivered * 64, "{got}");
    assert_eq!(delivered + dropped, transmitted, "{got}\n{report}");
}

/// Ends the child by pid if the test fails before stopping it.
struct KillOnDrop(Option<std::process::Child>);

impl KillOnDrop {
    fn stop(mut self) -> Output {
        let child = self.0.take().expect("running");
        // SAFETY: kill(2) on our own unreaped child's pid.
        #[expect(unsafe_code, reason = "libc::kill")]
        let rc = unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        assert_eq!(rc, 0);
        child.wait_with_output().expect("waiting for the receiver")
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
