//! `cargo xtask bench [--quick]`: every receiver against the same generator, on the
//! same veth testbed, in one run; ratios against the kernel socket path and against
//! two references (`refs`): an XDP program that drops every frame (the in-kernel
//! ceiling) and DPDK's testpmd on its AF_XDP PMD (a peer AF_XDP implementation).
//!
//! Each (receiver, payload) pair gets a fresh testbed. The generator
//! (`xdpstack-gen`, XDP live frames out of the peer's veth) runs pinned to CPU 1;
//! the receiver's processes and the receiving veth's threaded NAPI are confined to
//! CPU 0, so the receiver has one core, like one RX queue's worth of a real
//! machine, and its CPU time (processes and NAPI threads) is accounted. Every run
//! reports what was sent, what reached the application (and the capture file),
//! every drop counter on the way, and what is left unaccounted for.

mod refs;
mod report;

use std::{
    collections::BTreeMap,
    io::Read as _,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde::Serialize;
use serde_json::Value;
use xdpstack_testbed::Testbed;

use refs::{CEILING, EthtoolWindow, TESTPMD_5TSWAP, TESTPMD_RXONLY};

const PORT: u16 = 9000;
/// Source ports the generator cycles through.
const FLOWS: u32 = 16;
/// The smallest payload `xdpstack-gen` sends: a 60-byte frame.
const MIN_PAYLOAD: u64 = 18;
/// Ethernet + IPv4 + UDP headers in front of the payload.
const HEADERS: u64 = 14 + 20 + 8;

/// The largest payload `xdpstack-gen` sends (`xdpstack_bench::trafficgen::MAX_PAYLOAD`,
/// a 1500-byte IPv4 packet): larger payloads are the jumbo case.
const GEN_MAX_PAYLOAD: u64 = 1472;
/// The jumbo case's veth MTU, on both ends.
const JUMBO_MTU: u32 = 9000;
/// The jumbo case's payload: the largest IPv4 UDP payload at [`JUMBO_MTU`].
const JUMBO_PAYLOAD: u64 = JUMBO_MTU as u64 - 28;
/// The receivers of the jumbo case: xdpstack through AF_XDP multi-buffer,
/// with and without its capture, against the kernel socket.
const JUMBO_RECEIVERS: [&str; 3] = ["kernel-udp", "xdpstack-sink", "xdpstack-sink+pcap"];

/// Whether `payload` is the jumbo case: too large for `xdpstack-gen` and for a
/// 1500-byte MTU, so sent by `xdpstack-kernel-tx` on a testbed at [`JUMBO_MTU`].
fn is_jumbo(payload: u64) -> bool {
    payload > GEN_MAX_PAYLOAD
}

/// The receivers, in the order they run and are reported: the references first,
/// so that a machine that cannot run one says so before the long part.
const RECEIVERS: [&str; 13] = [
    "kernel-udp",
    "kernel-udp+tcpdump",
    KERNEL_ECHO,
    CEILING,
    TESTPMD_RXONLY,
    TESTPMD_5TSWAP,
    "xdpstack-drop",
    "xdpstack-sink",
    "xdpstack-sink+pcap",
    "xdpstack-echo",
    COPY,
    STEAL,
    SOCKET_ECHO,
];

/// The kernel's socket answering every datagram (recvmmsg + sendmmsg), against
/// the socket API's echo.
const KERNEL_ECHO: &str = "kernel-udp-echo";
/// The library's socket API answering every datagram (`recv_batch` +
/// `send_to`, routed through the kernel's tables): `xdpstack-socket-echo`.
const SOCKET_ECHO: &str = "xdpstack-socket-echo";

/// The kernel's socket receiving, and xdpstack capturing the same datagrams
/// beside it without taking them (`-w FILE udp port 9000`): against
/// kernel-udp+tcpdump.
const COPY: &str = "kernel-udp+xdpstack-capture";
/// xdpstack taking the datagrams from the kernel into its capture (`--steal -w
/// FILE udp port 9000`, a mirror port): against kernel-udp+tcpdump.
const STEAL: &str = "xdpstack-steal";
/// The expression of both, tcpdump's in kernel-udp+tcpdump.
const EXPRESSION: [&str; 3] = ["udp", "port", "9000"];

/// Receivers that send every frame back: their replies are counted at the peer.
fn is_echo(receiver: &str) -> bool {
    receiver == "xdpstack-echo"
        || receiver == TESTPMD_5TSWAP
        || receiver == KERNEL_ECHO
        || receiver == SOCKET_ECHO
}

/// One measurement.
#[derive(Debug, Serialize)]
struct Run {
    receiver: String,
    payload: u64,
    /// The veth MTU of both ends.
    mtu: u32,
    /// What sent the frames: `xdpstack-gen` (XDP live frames), or for the
    /// jumbo case `xdpstack-kernel-tx` (kernel UDP sockets, sendmmsg).
    sender: &'static str,
    /// Frames the generator offered (program runs).
    offered: u64,
    /// Offered frames the peer veth could not hand over because the receiving
    /// ring was full: the receiver did not keep up (not part of `sent`).
    veth_ring_full: u64,
    /// Frames the generator transmitted (the peer veth's TX counter).
    sent: u64,
    /// Datagrams (frames, for xdpstack-drop, testpmd and the ceiling) that reached
    /// the application; for the ceiling, the veth's XDP drop counter.
    delivered: u64,
    /// Frames in the capture file, where there is one.
    captured: Option<u64>,
    /// `captured` per second of the run, in millions.
    #[serde(skip_serializing_if = "Option::is_none")]
    captured_mpps: Option<f64>,
    /// Every counter that explains a frame sent but not delivered.
    drops: BTreeMap<String, u64>,
    /// Frames the application got but the capture did not (tcpdump's "dropped
    /// by kernel", the pcap writer's full queue): not part of `drops`.
    capture_drops: BTreeMap<String, u64>,
    /// sent - delivered - every drop: should be 0 (neighbour discovery and other
    /// frames the kernel sends itself can make it off by a few).
    unaccounted: i64,
    mpps: f64,
    gbps: f64,
    /// CPU seconds of the receiver's processes and of the receiving veth's NAPI
    /// threads, from the generator's start to the end of the drain.
    cpu_s: f64,
    /// Echo replies received back at the peer (xdpstack-echo, testpmd 5tswap).
    #[serde(skip_serializing_if = "Option::is_none")]
    echoed: Option<u64>,
    /// `echoed` per second of the run, in millions.
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_mpps: Option<f64>,
    /// Frames the receiver says it transmitted: xdpstack's `tx.sent` summed over
    /// queues (frames the kernel really transmitted), testpmd's TX-packets.
    #[serde(skip_serializing_if = "Option::is_none")]
    tx_sent: Option<u64>,
    /// The stack veth's TX packet counter over the run, to reconcile `tx_sent`
    /// with (the kernel's own ARP replies can make it a few higher).
    #[serde(skip_serializing_if = "Option::is_none")]
    iface_tx: Option<u64>,
    /// The stack veth's TX drop counter over the run: frames handed to it that it
    /// could not pass to its peer (the peer's ring full).
    #[serde(skip_serializing_if = "Option::is_none")]
    iface_tx_dropped: Option<u64>,
    /// xdpstack's `tx.kernel_dropped` summed over queues (0 when it has none).
    #[serde(skip_serializing_if = "Option::is_none")]
    tx_kernel_dropped: Option<u64>,
    /// The drop ceiling program's own count, from attach to detach (a cross-check
    /// of `delivered`, which is the veth's).
    #[serde(skip_serializing_if = "Option::is_none")]
    program_dropped: Option<u64>,
    /// What the bench noticed about this run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    notes: Vec<String>,
    /// The generator's own rate, to show it is not the bottleneck.
    generator_mpps: f64,
}

/// A receiver that was not run, and why.
#[derive(Debug, Serialize)]
struct Skipped {
    receiver: String,
    reason: String,
}

/// What a receiver's own counters say about a run, whatever the receiver.
#[derive(Debug, Default)]
struct Outcome {
    delivered: u64,
    captured: Option<u64>,
    drops: BTreeMap<String, u64>,
    capture_drops: BTreeMap<String, u64>,
    tx_sent: Option<u64>,
    iface_tx: Option<u64>,
    tx_kernel_dropped: Option<u64>,
    program_dropped: Option<u64>,
    notes: Vec<String>,
}

/// A child process, ended by pid if still running when dropped.
pub(crate) struct Proc {
    pub(crate) child: Child,
    what: String,
}

impl Proc {
    pub(crate) fn spawn(cmd: &mut Command, what: &str) -> Result<Self> {
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        Ok(Proc {
            child,
            what: what.to_string(),
        })
    }

    pub(crate) fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits i32")
    }

    /// User + system CPU seconds so far, from /proc/PID/stat (read before the
    /// process is told to stop, so nearly all of its work is in).
    fn cpu_s(&self) -> f64 {
        cpu_of(&self.pid().to_string())
    }

    /// SIGTERM, then collect stdout and stderr (at most `timeout`).
    fn stop(self, timeout: Duration) -> Result<(String, String)> {
        self.stop_with("-TERM", timeout)
            .map(|(_, out, err)| (out, err))
    }

    /// Send `signal` (`kill`'s spelling, e.g. `-INT`) to the running process, then
    /// wait for it (at most `timeout`) and collect its exit status and whatever
    /// stdout and stderr were not taken already.
    pub(crate) fn stop_with(
        mut self,
        signal: &str,
        timeout: Duration,
    ) -> Result<(ExitStatus, String, String)> {
        let _ = Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                bail!("{} did not stop within {timeout:?}", self.what);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let (mut out, mut err) = (String::new(), String::new());
        if let Some(mut o) = self.child.stdout.take() {
            o.read_to_string(&mut out)?;
        }
        if let Some(mut e) = self.child.stderr.take() {
            e.read_to_string(&mut err)?;
        }
        Ok((status, out, err))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// User + system CPU seconds of process or thread `pid` so far (/proc/PID/stat).
fn cpu_of(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may contain spaces): state is 3,
    // utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(14) + ticks(15)) / clock_ticks()
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The interface's counters (`ip -s -j link`), inside its namespace.
pub(crate) fn link_stats(ns: &str, dev: &str) -> Result<Value> {
    let out = Command::new("ip")
        .args(["-n", ns, "-s", "-j", "link", "show", "dev", dev])
        .output()
        .context("ip -s link")?;
    let v: Value = serde_json::from_slice(&out.stdout).context("ip -j output")?;
    Ok(v[0]["stats64"].clone())
}

pub(crate) fn counter(stats: &Value, dir: &str, name: &str) -> u64 {
    stats[dir][name].as_u64().unwrap_or(0)
}

pub(crate) fn mac_of(ns: &str, dev: &str) -> Result<String> {
    let out = Command::new("ip")
        .args(["-n", ns, "-j", "link", "show", "dev", dev])
        .output()
        .context("ip link")?;
    let v: Value = serde_json::from_slice(&out.stdout).context("ip -j output")?;
    v[0]["address"]
        .as_str()
        .map(str::to_string)
        .context("no MAC address")
}

pub(crate) fn json_line(text: &str) -> Result<Value> {
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .with_context(|| format!("no JSON report in:\n{text}"))?;
    serde_json::from_str(line).context("parsing a JSON report")
}

struct Bins {
    xdpstack: PathBuf,
    gen_: PathBuf,
    kernel_tx: PathBuf,
    kernel_rx: PathBuf,
    xdp_drop: PathBuf,
    socket_echo: PathBuf,
}

/// Give veth end `dev` a NAPI context of its own, run by a kernel thread pinned
/// to `cpu` (the receiver's, 0).
///
/// A veth accepts XDP frames from its peer only with NAPI on (an XDP program, or
/// GRO): GRO turns it on for every receiver alike. By default that NAPI poll runs
/// in the softirq of the *sending* CPU, inside the generator's syscall, so the
/// receiver's kernel work would be charged to the generator's core and would pace
/// it. Threaded NAPI pinned to CPU 0 puts the whole receive path (kernel and user
/// space) on the receiver's core, and the generator on CPU 1 out-runs it: what the
/// receiver cannot take is counted (veth ring full).
pub(crate) fn threaded_napi(ns: &str, dev: &str, cpu: u32) -> Result<Vec<String>> {
    let ok = |c: &mut Command, what: &str| -> Result<()> {
        let status = c.status().with_context(|| what.to_string())?;
        if !status.success() {
            bail!("{what} failed");
        }
        Ok(())
    };
    ok(
        Command::new("ip").args(["netns", "exec", ns, "ethtool", "-K", dev, "gro", "on"]),
        "ethtool -K gro on",
    )?;
    ok(
        Command::new("ip").args([
            "netns",
            "exec",
            ns,
            "sh",
            "-c",
            &format!("echo 1 > /sys/class/net/{dev}/threaded"),
        ]),
        "enabling threaded NAPI",
    )?;
    let prefix = format!("napi/{dev}-");
    let mut pinned = Vec::new();
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim_end().starts_with(&prefix) {
            let pid = entry.file_name().to_string_lossy().to_string();
            ok(
                Command::new("taskset")
                    .args(["-p", "-c", &cpu.to_string(), &pid])
                    .stdout(Stdio::null()),
                "pinning the NAPI thread",
            )?;
            pinned.push(pid);
        }
    }
    if pinned.is_empty() {
        bail!("no NAPI thread named {prefix}* after enabling threaded NAPI");
    }
    Ok(pinned)
}

/// A receiver, running.
enum Receiver {
    /// `xdpstack-kernel-rx`, with tcpdump beside it for kernel-udp+tcpdump, or
    /// a capturing xdpstack for kernel-udp+xdpstack-capture.
    Kernel {
        rx: Proc,
        tcpdump: Option<Proc>,
        capture: Option<Proc>,
    },
    /// `xdpstack` with one of its apps.
    Xdpstack(Proc),
    /// One of the references: the drop ceiling or testpmd.
    Reference(Proc),
}

impl Receiver {
    /// CPU seconds of the receiver's processes so far.
    fn cpu_s(&self) -> f64 {
        match self {
            Receiver::Kernel {
                rx,
                tcpdump,
                capture,
            } => {
                rx.cpu_s()
                    + tcpdump.as_ref().map_or(0.0, Proc::cpu_s)
                    + capture.as_ref().map_or(0.0, Proc::cpu_s)
            }
            Receiver::Xdpstack(p) | Receiver::Reference(p) => p.cpu_s(),
        }
    }
}

/// The testbed's counters at one moment: both veths' (`ip -s link`) and the stack
/// veth's per-queue ones (`ethtool -S`).
struct Snapshot {
    peer: Value,
    stack: Value,
    ethtool: BTreeMap<String, u64>,
}

fn snapshot(bed: &Testbed) -> Result<Snapshot> {
    Ok(Snapshot {
        peer: link_stats(&bed.peer_ns(), &bed.peer_if())?,
        stack: link_stats(&bed.stack_ns(), &bed.stack_if())?,
        ethtool: refs::ethtool_stats(&bed.stack_ns(), &bed.stack_if())?,
    })
}

/// Counter `dir`/`name` of `side` (peer or stack) over the run.
fn delta(before: &Value, after: &Value, dir: &str, name: &str) -> u64 {
    counter(after, dir, name).saturating_sub(counter(before, dir, name))
}

/// Start `receiver` on the stack side of `bed`, ready to receive.
fn start_receiver(
    bins: &Bins,
    receiver: &str,
    bed: &Testbed,
    pcap: &Path,
    payload: u64,
) -> Result<Receiver> {
    let ns_s = bed.stack_ns();
    let on_cpu0 = |program: &Path| {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &ns_s, "taskset", "-c", "0"])
            .arg(program);
        c
    };
    if receiver.starts_with("kernel") {
        let mut tcpdump = None;
        if receiver.ends_with("tcpdump") {
            let p = Proc::spawn(
                on_cpu0(Path::new("tcpdump"))
                    .args(["-i", &bed.stack_if(), "-n", "-s", "0", "-B", "16384", "-w"])
                    .arg(pcap)
                    .args(EXPRESSION),
                "tcpdump",
            )?;
            // tcpdump says "listening on" once its socket is up.
            std::thread::sleep(Duration::from_millis(700));
            tcpdump = Some(p);
        }
        let mut capture = None;
        if receiver == COPY {
            let mut cmd = on_cpu0(&bins.xdpstack);
            cmd.args(["-i", &bed.stack_if(), "--app", "none", "--json", "-w"])
                .arg(pcap)
                .args(EXPRESSION);
            let p = Proc::spawn(&mut cmd, "xdpstack")?;
            if bed.wait_xdp_attached(Duration::from_secs(10))?.is_none() {
                let (out, err) = p.stop(Duration::from_secs(5))?;
                bail!("xdpstack did not attach:\n{out}\n{err}");
            }
            capture = Some(p);
        }
        let mut cmd = on_cpu0(&bins.kernel_rx);
        cmd.args(["--bind", &format!("198.18.0.1:{PORT}")]);
        if payload > 2048 {
            // Room for the whole datagram: the copy out of the kernel is part
            // of what a socket costs.
            cmd.args(["--buffer", &payload.to_string()]);
        }
        if receiver == KERNEL_ECHO {
            cmd.arg("--echo");
        }
        let rx = Proc::spawn(&mut cmd, "xdpstack-kernel-rx")?;
        return Ok(Receiver::Kernel {
            rx,
            tcpdump,
            capture,
        });
    }
    if !receiver.starts_with("xdpstack") {
        return refs::start(receiver, bed, &bins.xdp_drop, &on_cpu0).map(Receiver::Reference);
    }
    if receiver == SOCKET_ECHO {
        let mut cmd = on_cpu0(&bins.socket_echo);
        cmd.args(["-i", &bed.stack_if(), "--port", &PORT.to_string()]);
        let p = Proc::spawn(&mut cmd, "xdpstack-socket-echo")?;
        if bed.wait_xdp_attached(Duration::from_secs(10))?.is_none() {
            let (out, err) = p.stop(Duration::from_secs(5))?;
            bail!("xdpstack-socket-echo did not attach:\n{out}\n{err}");
        }
        return Ok(Receiver::Xdpstack(p));
    }
    let app = match receiver {
        "xdpstack-drop" => "none",
        "xdpstack-echo" => "echo",
        _ => "sink",
    };
    let mut cmd = on_cpu0(&bins.xdpstack);
    cmd.args(["-i", &bed.stack_if()]);
    if receiver == STEAL {
        cmd.args(["--app", "none", "--json", "--steal", "-w"])
            .arg(pcap)
            .args(EXPRESSION);
    } else {
        cmd.args(["--port", &PORT.to_string()])
            .args(["--app", app, "--json"]);
    }
    if receiver.ends_with("+pcap") {
        cmd.arg("-w").arg(pcap);
    }
    // Extra flags for every xdpstack receiver, for trying a tuning in the same
    // method (`XDPSTACK_BENCH_ARGS="--busy-poll --budget 128"`).
    if let Ok(extra) = std::env::var("XDPSTACK_BENCH_ARGS") {
        cmd.args(extra.split_whitespace());
    }
    let p = Proc::spawn(&mut cmd, "xdpstack")?;
    if bed.wait_xdp_attached(Duration::from_secs(10))?.is_none() {
        let (out, err) = p.stop(Duration::from_secs(5))?;
        bail!("xdpstack did not attach:\n{out}\n{err}");
    }
    Ok(Receiver::Xdpstack(p))
}

/// What the XDP program costs a frame with the capture's pieces, measured by the
/// kernel (BPF_PROG_TEST_RUN, `xdpstack-filter-cost`): one object per case.
fn xdp_costs(bin: &Path, quick: bool) -> Result<Vec<Value>> {
    eprintln!("==> the XDP program's cost per frame (BPF_PROG_TEST_RUN)");
    let repeat = if quick { "200000" } else { "1000000" };
    let out = Command::new(bin)
        .args(["--repeat", repeat])
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        bail!(
            "xdpstack-filter-cost failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).context("xdpstack-filter-cost printed no JSON"))
        .collect()
}

/// Stop xdpstack-kernel-rx (and tcpdump) and read their counters.
fn finish_kernel(rx: Proc, tcpdump: Option<Proc>, capture: Option<Proc>) -> Result<Outcome> {
    let (out, err) = rx.stop(Duration::from_secs(10))?;
    let report = json_line(&out).with_context(|| format!("receiver said: {err}"))?;
    let mut o = Outcome {
        delivered: report["datagrams"].as_u64().unwrap_or(0),
        ..Outcome::default()
    };
    for (k, v) in report["drops"].as_object().into_iter().flatten() {
        // InErrors includes RcvbufErrors and InCsumErrors: count it alone.
        if k != "udp_rcvbuf_errors" && k != "udp_in_csum_errors" {
            o.drops.insert(k.clone(), v.as_u64().unwrap_or(0));
        }
    }
    if let Some(t) = tcpdump {
        let (_, err) = t.stop(Duration::from_secs(10))?;
        // "N packets captured", "N packets dropped by kernel".
        let stat = |what: &str| {
            err.lines()
                .find(|l| l.contains(what))
                .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        };
        o.captured = stat("packets captured");
        o.capture_drops.insert(
            "tcpdump_dropped_by_kernel".into(),
            stat("dropped by kernel").unwrap_or(0),
        );
    }
    if let Some(c) = capture {
        let (out, err) = c.stop(Duration::from_secs(10))?;
        let report = json_line(&out).with_context(|| format!("xdpstack said: {err}"))?;
        capture_outcome(&mut o, &report);
    }
    Ok(o)
}

/// What a capture by xdpstack kept and lost: the file's records, the copies the
/// XDP program's ring had no room for, and what the writer could not write.
fn capture_outcome(o: &mut Outcome, report: &Value) {
    o.captured = report["capture"]["stats"]["records_written"].as_u64();
    o.capture_drops.insert(
        "copy_ring_full".into(),
        report["xdp"]["capture_copy_ring_full"]
            .as_u64()
            .unwrap_or(0),
    );
    o.capture_drops.insert(
        "pcap_not_written".into(),
        report["capture"]["stats"]["records_dropped"]
            .as_u64()
            .unwrap_or(0),
    );
}

/// Stop xdpstack and read its report; for xdpstack-echo, reconcile what it says
/// it transmitted with the stack veth's TX counter (`iface_tx`).
fn finish_xdpstack(p: Proc, receiver: &str, iface_tx: u64) -> Result<Outcome> {
    let (out, err) = p.stop(Duration::from_secs(10))?;
    let report = json_line(&out).with_context(|| format!("receiver said: {err}"))?;
    let mut o = Outcome {
        delivered: match receiver {
            "xdpstack-drop" => report["packets"].as_u64().unwrap_or(0),
            // No app: what it delivers is its capture.
            STEAL => report["capture"]["stats"]["records_written"]
                .as_u64()
                .unwrap_or(0),
            // What reached the socket (the rest: `socket_full`).
            SOCKET_ECHO => report["sockets"][0]["received"].as_u64().unwrap_or(0),
            _ => report["udp"]["datagrams"].as_u64().unwrap_or(0),
        },
        ..Outcome::default()
    };
    if receiver == STEAL {
        capture_outcome(&mut o, &report);
        o.drops.insert(
            "pcap_queue_full".into(),
            report["queues"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|q| q["consumers"].as_array().cloned().unwrap_or_default())
                .map(|c| c["dropped"].as_u64().unwrap_or(0))
                .sum(),
        );
    }
    let queues = report["queues"].as_array().cloned().unwrap_or_default();
    let sum = |f: &dyn Fn(&Value) -> u64| queues.iter().map(f).sum::<u64>();
    // rx_dropped includes the frames lost to an empty fill ring.
    o.drops.insert(
        "xsk_rx_dropped".into(),
        sum(&|q| q["xsk"]["rx_dropped"].as_u64().unwrap_or(0)),
    );
    o.drops.insert(
        "xsk_rx_ring_full".into(),
        sum(&|q| q["xsk"]["rx_ring_full"].as_u64().unwrap_or(0)),
    );
    let consumer_drops = |c: &str| {
        sum(&|q| {
            q["consumers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|x| x["name"] == c)
                .map(|x| x["dropped"].as_u64().unwrap_or(0))
                .sum()
        })
    };
    o.drops
        .insert("udp_queue_full".into(), consumer_drops("udp"));
    if receiver.ends_with("+pcap") {
        o.capture_drops
            .insert("pcap_queue_full".into(), consumer_drops("pcap"));
        o.captured = report["capture"]["stats"]["records_written"].as_u64();
    }
    if receiver != "xdpstack-drop" {
        let rejected: u64 = report["udp"]["rejected"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(_, v)| v.as_u64().unwrap_or(0))
            .sum();
        o.drops.insert("udp_rejected".into(), rejected);
    }
    let passed: u64 = report["xdp"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with("pass") || k.starts_with("malformed"))
        .map(|(_, v)| v.as_u64().unwrap_or(0))
        .sum();
    o.drops.insert("xdp_passed_to_kernel".into(), passed);
    if receiver == SOCKET_ECHO {
        // Datagrams the socket's queue had no room for, and replies refused.
        o.drops.insert(
            "socket_full".into(),
            report["sockets"][0]["full"].as_u64().unwrap_or(0),
        );
    }
    if receiver == "xdpstack-echo" || receiver == SOCKET_ECHO {
        o.tx_sent = Some(sum(&|q| q["tx"]["sent"].as_u64().unwrap_or(0)));
        // Absent from reports of builds that do not count it yet: 0.
        o.tx_kernel_dropped = Some(sum(&|q| q["tx"]["kernel_dropped"].as_u64().unwrap_or(0)));
        o.iface_tx = Some(iface_tx);
    }
    Ok(o)
}

/// Notes on a run whose transmit counters do not agree; `iface_dropped` is the
/// stack veth's TX drop counter over the run. xdpstack's `tx.sent` counts what
/// the kernel transmitted and `tx.kernel_dropped` what it refused, so they are
/// compared with the veth's TX and TX-drop counters one to one; testpmd reports
/// its TX-packets, which include what the veth then dropped.
fn tx_notes(o: &Outcome, iface_dropped: u64) -> Vec<String> {
    let mut notes = Vec::new();
    let Some((sent, iface)) = o.tx_sent.zip(o.iface_tx) else {
        return notes;
    };
    match o.tx_kernel_dropped {
        Some(dropped) if sent != iface || dropped != iface_dropped => {
            notes.push(format!(
                "tx.sent {sent} against the stack veth's {iface} transmitted ({:+}), \
                 tx.kernel_dropped {dropped} against its {iface_dropped} dropped on \
                 transmit ({:+}); the kernel's own frames on that veth (ARP replies, \
                 neighbour discovery) explain a handful in the veth's counts",
                iface as i64 - sent as i64,
                iface_dropped as i64 - dropped as i64,
            ));
        }
        Some(_) => {}
        None if sent != iface => {
            let left = (iface + iface_dropped) as i64 - sent as i64;
            notes.push(format!(
                "the receiver counted {sent} frames transmitted, the stack veth transmitted \
                 {iface} and dropped {iface_dropped} on transmit (its peer's ring full): \
                 {left:+} left over, which the kernel's own frames on that veth (ARP \
                 replies, neighbour discovery) explain when it is a handful"
            ));
        }
        None => {}
    }
    notes
}

/// One receiver at one payload size, on a fresh testbed.
fn measure(bins: &Bins, receiver: &str, payload: u64, seconds: f64, dir: &Path) -> Result<Run> {
    let name = "xsbench";
    if Testbed::exists(name) {
        Testbed::remove(name)?;
    }
    let jumbo = is_jumbo(payload);
    let mtu = if jumbo {
        JUMBO_MTU
    } else {
        xdpstack_testbed::DEFAULT_MTU
    };
    let bed = Testbed::create_with(name, 1, xdpstack_testbed::Options { mtu })?;
    let (ns_s, ns_p) = (bed.stack_ns(), bed.peer_ns());
    let (if_s, if_p) = (bed.stack_if(), bed.peer_if());
    // The receive path's kernel half runs in these threads: their CPU time is
    // the receiver's too.
    let napi = threaded_napi(&ns_s, &if_s, 0)?;
    if is_echo(receiver) {
        // The peer's receive path for the replies runs on the generator's core,
        // as it would on another machine, not on the receiver's.
        threaded_napi(&ns_p, &if_p, 1)?;
    }
    let napi_cpu = || napi.iter().map(|p| cpu_of(p)).sum::<f64>();
    let pcap = dir.join(format!("{receiver}-{payload}.pcap"));
    let _ = std::fs::remove_file(&pcap);
    let rx = start_receiver(bins, receiver, &bed, &pcap, payload)?;
    std::thread::sleep(Duration::from_millis(300));

    let cpu_before = rx.cpu_s() + napi_cpu();
    let before = snapshot(&bed)?;
    let sender = if jumbo {
        "xdpstack-kernel-tx"
    } else {
        "xdpstack-gen"
    };
    let mut gen_cmd = Command::new("ip");
    gen_cmd.args(["netns", "exec", &ns_p]);
    if jumbo {
        // The stack's MAC as a permanent neighbour: no ARP exchange (which
        // the receivers would count as frames passed to the kernel) and no
        // datagrams queued or dropped while it resolves.
        let status = Command::new("ip")
            .args(["-n", &ns_p, "neigh", "replace", "198.18.0.1", "lladdr"])
            .arg(mac_of(&ns_s, &if_s)?)
            .args(["dev", &if_p, "nud", "permanent"])
            .status()
            .context("ip neigh replace")?;
        if !status.success() {
            bail!("ip neigh replace 198.18.0.1 in {ns_p} failed");
        }
        gen_cmd.arg(&bins.kernel_tx).args([
            "--dst",
            &format!("198.18.0.1:{PORT}"),
            "--src",
            "198.18.0.2",
        ]);
    } else {
        gen_cmd
            .arg(&bins.gen_)
            .args(["-i", &if_p, "--dst-mac", &mac_of(&ns_s, &if_s)?])
            .args([
                "--dst",
                &format!("198.18.0.1:{PORT}"),
                "--src",
                "198.18.0.2",
            ]);
    }
    let gen_out = gen_cmd
        .args(["--payload", &payload.to_string()])
        .args(["--flows", &FLOWS.to_string()])
        .args(["--duration", &seconds.to_string(), "--cpu", "1", "--json"])
        .output()
        .with_context(|| format!("running {sender}"))?;
    if !gen_out.status.success() {
        bail!(
            "{sender} failed: {}",
            String::from_utf8_lossy(&gen_out.stderr).trim()
        );
    }
    let generator = json_line(&String::from_utf8_lossy(&gen_out.stdout))?;
    // Let the receiver drain what is queued.
    std::thread::sleep(Duration::from_millis(500));
    let cpu_s = rx.cpu_s() + napi_cpu() - cpu_before;
    let after = snapshot(&bed)?;
    let iface_tx = delta(&before.stack, &after.stack, "tx", "packets");
    let iface_tx_dropped = delta(&before.stack, &after.stack, "tx", "dropped");
    let eth = EthtoolWindow {
        before: before.ethtool,
        after: after.ethtool,
    };
    let mut o = match rx {
        Receiver::Kernel {
            rx,
            tcpdump,
            capture,
        } => finish_kernel(rx, tcpdump, capture)?,
        Receiver::Xdpstack(p) => finish_xdpstack(p, receiver, iface_tx)?,
        Receiver::Reference(p) if receiver == CEILING => refs::finish_ceiling(p, &eth)?,
        Receiver::Reference(p) => refs::finish_testpmd(p, receiver, &eth, iface_tx)?,
    };
    drop(bed);

    let sent = delta(&before.peer, &after.peer, "tx", "packets");
    // Receiver-side counters only: veth's own rx_dropped also counts the frames
    // the sender found the ring full for (`veth_ring_full`, never sent) and the
    // AF_XDP socket's drops (counted by the receivers), so it would count them
    // twice.
    let veth_rx = delta(&before.stack, &after.stack, "rx", "packets");
    if veth_rx != sent {
        o.notes.push(format!(
            "the receiving veth counted {veth_rx} frames, the sender {sent}"
        ));
    }
    let echoed = is_echo(receiver).then(|| delta(&before.peer, &after.peer, "rx", "packets"));
    o.notes.extend(tx_notes(&o, iface_tx_dropped));
    let gen_seconds = generator["seconds"].as_f64().unwrap_or(seconds).max(1e-9);
    let lost: u64 = o.drops.values().sum();
    let frame = payload + HEADERS;
    // xdpstack-gen counts the frames the peer veth refused for a full ring
    // itself; behind a kernel socket the veth counts them (`tx_dropped`).
    let veth_ring_full = if jumbo {
        delta(&before.peer, &after.peer, "tx", "dropped")
    } else {
        generator["dropped"].as_u64().unwrap_or(0)
    };
    Ok(Run {
        receiver: receiver.to_string(),
        payload,
        mtu,
        sender,
        offered: generator["runs"].as_u64().unwrap_or(0),
        veth_ring_full,
        sent,
        delivered: o.delivered,
        captured: o.captured,
        captured_mpps: o.captured.map(|c| c as f64 / gen_seconds / 1e6),
        unaccounted: sent as i64 - o.delivered as i64 - lost as i64,
        drops: o.drops,
        capture_drops: o.capture_drops,
        mpps: o.delivered as f64 / gen_seconds / 1e6,
        gbps: (o.delivered * frame * 8) as f64 / gen_seconds / 1e9,
        cpu_s,
        echoed,
        reply_mpps: echoed.map(|e| e as f64 / gen_seconds / 1e6),
        tx_sent: o.tx_sent,
        iface_tx: o.iface_tx,
        iface_tx_dropped: o.iface_tx.map(|_| iface_tx_dropped),
        tx_kernel_dropped: o.tx_kernel_dropped,
        program_dropped: o.program_dropped,
        notes: o.notes,
        generator_mpps: generator["runs"].as_u64().unwrap_or(sent) as f64 / gen_seconds / 1e6,
    })
}

/// The receivers to run (all, or those of `only`), with the ones this machine
/// cannot run set aside with the reason: testpmd when apt cannot install it.
fn plan(only: &[String]) -> Result<(Vec<&'static str>, Vec<Skipped>)> {
    if let Some(unknown) = only.iter().find(|r| !RECEIVERS.contains(&r.as_str())) {
        bail!(
            "unknown receiver {unknown}: one of {}",
            RECEIVERS.join(", ")
        );
    }
    let mut chosen: Vec<&str> = RECEIVERS
        .into_iter()
        .filter(|r| only.is_empty() || only.iter().any(|o| o == r))
        .collect();
    let mut skipped = Vec::new();
    let testpmd = |r: &&str| *r == TESTPMD_RXONLY || *r == TESTPMD_5TSWAP;
    if chosen.iter().any(testpmd)
        && let Err(reason) = refs::testpmd_available()
    {
        eprintln!("==> skipping {TESTPMD_RXONLY} and {TESTPMD_5TSWAP}: {reason}");
        for r in chosen.iter().filter(|r| testpmd(r)) {
            skipped.push(Skipped {
                receiver: r.to_string(),
                reason: reason.clone(),
            });
        }
        chosen.retain(|r| !testpmd(r));
    }
    Ok((chosen, skipped))
}

/// Run the suite. `xdpstack` is the release build; the bench tooling is next to it.
pub fn bench(xdpstack: &Path, quick: bool, only: &[String], sizes: &[u64]) -> Result<()> {
    let (receivers, skipped) = plan(only)?;
    let dir = crate::root().join("target").join("bench");
    std::fs::create_dir_all(&dir)?;
    let bin_dir = xdpstack.parent().context("binary has a directory")?;
    let bins = Bins {
        xdpstack: xdpstack.to_path_buf(),
        gen_: bin_dir.join("xdpstack-gen"),
        kernel_tx: bin_dir.join("xdpstack-kernel-tx"),
        kernel_rx: bin_dir.join("xdpstack-kernel-rx"),
        xdp_drop: bin_dir.join("xdpstack-xdp-drop"),
        socket_echo: bin_dir.join("xdpstack-socket-echo"),
    };
    let (payloads, seconds): (&[u64], f64) = if quick {
        (&[18, JUMBO_PAYLOAD], 1.0)
    } else {
        (&[18, 512, 1472, JUMBO_PAYLOAD], 5.0)
    };
    let payloads: Vec<u64> = if sizes.is_empty() {
        payloads.to_vec()
    } else {
        sizes.to_vec()
    };
    if let Some(p) = payloads
        .iter()
        .find(|&&p| !(MIN_PAYLOAD..=JUMBO_PAYLOAD).contains(&p))
    {
        bail!(
            "payload {p}: the bench sends {MIN_PAYLOAD}..={GEN_MAX_PAYLOAD} bytes with \
             xdpstack-gen, and up to {JUMBO_PAYLOAD} (MTU {JUMBO_MTU}) with xdpstack-kernel-tx"
        );
    }
    let mut runs = Vec::new();
    for &payload in &payloads {
        let receivers: Vec<&str> = if is_jumbo(payload) {
            let chosen: Vec<&str> = receivers
                .iter()
                .copied()
                .filter(|r| JUMBO_RECEIVERS.contains(r))
                .collect();
            eprintln!(
                "==> {payload}-byte payloads: the jumbo case (veth MTU {JUMBO_MTU}, AF_XDP \
                 multi-buffer; sent by xdpstack-kernel-tx, kernel UDP sockets): {}",
                if chosen.is_empty() {
                    format!("none of the chosen receivers is one of {JUMBO_RECEIVERS:?}")
                } else {
                    chosen.join(", ")
                }
            );
            chosen
        } else {
            receivers.clone()
        };
        for &receiver in &receivers {
            eprintln!("==> {receiver}, {payload}-byte payloads, {seconds} s");
            let run = measure(&bins, receiver, payload, seconds, &dir)
                .with_context(|| format!("{receiver} at {payload} bytes"))?;
            eprintln!(
                "    sent {} delivered {} ({:.3} Mpps, generator {:.3} Mpps), drops {}, unaccounted {}{}",
                run.sent,
                run.delivered,
                run.mpps,
                run.generator_mpps,
                run.drops.values().sum::<u64>(),
                run.unaccounted,
                run.echoed
                    .map_or(String::new(), |e| format!(", replies at the peer {e}")),
            );
            if let (Some(sent), Some(iface)) = (run.tx_sent, run.iface_tx) {
                eprintln!(
                    "    transmitted: receiver says {sent}, stack veth {iface} (dropped {}), kernel dropped {}",
                    run.iface_tx_dropped.unwrap_or(0),
                    run.tx_kernel_dropped
                        .map_or("-".to_string(), |d| d.to_string())
                );
            }
            for note in &run.notes {
                eprintln!("    note: {note}");
            }
            runs.push(run);
        }
    }
    let costs = xdp_costs(&bin_dir.join("xdpstack-filter-cost"), quick)?;
    report::write(&dir, &runs, &skipped, &payloads, quick, seconds, &costs)?;
    for r in &runs {
        let _ = std::fs::remove_file(dir.join(format!("{}-{}.pcap", r.receiver, r.payload)));
    }
    eprintln!(
        "==> results: {0}/results.json, {0}/results.md, {0}/results.svg",
        dir.display()
    );
    Ok(())
}
