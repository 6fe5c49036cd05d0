//! `cargo xtask bench [--quick]`: every receiver against the same generator, on the
//! same veth testbed, in one run; ratios against the kernel socket path.
//!
//! Each (receiver, payload) pair gets a fresh testbed. The generator
//! (`xdpstack-gen`, XDP live frames out of the peer's veth) runs pinned to CPU 1;
//! the receiver's processes are confined to CPU 0 with `taskset`, so the receiver
//! has one core, like one RX queue's worth of a real machine. Every run reports what
//! was sent, what reached the application (and the capture file), every drop
//! counter on the way, and what is left unaccounted for.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::Read as _,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde::Serialize;
use serde_json::Value;
use xdpstack_testbed::Testbed;

const PORT: u16 = 9000;
/// Source ports the generator cycles through.
const FLOWS: u32 = 16;
/// Ethernet + IPv4 + UDP headers in front of the payload.
const HEADERS: u64 = 14 + 20 + 8;

/// The receivers, in the order they run and are reported.
const RECEIVERS: [&str; 6] = [
    "kernel-udp",
    "kernel-udp+tcpdump",
    "xdpstack-drop",
    "xdpstack-sink",
    "xdpstack-sink+pcap",
    "xdpstack-echo",
];

/// One measurement.
#[derive(Debug, Serialize)]
struct Run {
    receiver: String,
    payload: u64,
    /// Frames the generator offered (program runs).
    offered: u64,
    /// Offered frames the peer veth could not hand over because the receiving
    /// ring was full: the receiver did not keep up (not part of `sent`).
    veth_ring_full: u64,
    /// Frames the generator transmitted (the peer veth's TX counter).
    sent: u64,
    /// Datagrams (frames, for xdpstack-drop) that reached the application.
    delivered: u64,
    /// Frames in the capture file, where there is one.
    captured: Option<u64>,
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
    cpu_s: f64,
    /// Echo replies received back at the peer (xdpstack-echo).
    #[serde(skip_serializing_if = "Option::is_none")]
    echoed: Option<u64>,
    /// The generator's own rate, to show it is not the bottleneck.
    generator_mpps: f64,
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
    kernel_rx: PathBuf,
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

/// One receiver at one payload size, on a fresh testbed.
fn measure(bins: &Bins, receiver: &str, payload: u64, seconds: f64, dir: &Path) -> Result<Run> {
    let name = "xsbench";
    if Testbed::exists(name) {
        Testbed::remove(name)?;
    }
    let bed = Testbed::create(name, 1)?;
    let (ns_s, ns_p) = (bed.stack_ns(), bed.peer_ns());
    let (if_s, if_p) = (bed.stack_if(), bed.peer_if());
    let kernel = receiver.starts_with("kernel");
    // The receive path's kernel half runs in these threads: their CPU time is
    // the receiver's too.
    let napi = threaded_napi(&ns_s, &if_s, 0)?;
    if receiver == "xdpstack-echo" {
        // The peer's receive path for the replies runs on the generator's core,
        // as it would on another machine, not on the receiver's.
        threaded_napi(&ns_p, &if_p, 1)?;
    }
    let napi_cpu = || napi.iter().map(|p| cpu_of(p)).sum::<f64>();
    let on_cpu0 = |program: &Path| {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &ns_s, "taskset", "-c", "0"])
            .arg(program);
        c
    };
    let pcap = dir.join(format!("{receiver}-{payload}.pcap"));
    let _ = std::fs::remove_file(&pcap);
    let mut tcpdump = None;
    let rx = if kernel {
        if receiver.ends_with("tcpdump") {
            let p = Proc::spawn(
                on_cpu0(Path::new("tcpdump"))
                    .args(["-i", &if_s, "-n", "-s", "0", "-B", "16384", "-w"])
                    .arg(&pcap)
                    .args(["udp", "port", &PORT.to_string()]),
                "tcpdump",
            )?;
            // tcpdump says "listening on" once its socket is up.
            std::thread::sleep(Duration::from_millis(700));
            tcpdump = Some(p);
        }
        Proc::spawn(
            on_cpu0(&bins.kernel_rx).args(["--bind", &format!("198.18.0.1:{PORT}")]),
            "xdpstack-kernel-rx",
        )?
    } else {
        let app = match receiver {
            "xdpstack-drop" => "none",
            "xdpstack-echo" => "echo",
            _ => "sink",
        };
        let mut cmd = on_cpu0(&bins.xdpstack);
        cmd.args([
            "-i",
            &if_s,
            "--port",
            &PORT.to_string(),
            "--app",
            app,
            "--json",
        ]);
        if receiver.ends_with("+pcap") {
            cmd.arg("-w").arg(&pcap);
        }
        let p = Proc::spawn(&mut cmd, "xdpstack")?;
        if bed.wait_xdp_attached(Duration::from_secs(10))?.is_none() {
            let (out, err) = p.stop(Duration::from_secs(5))?;
            bail!("xdpstack did not attach:\n{out}\n{err}");
        }
        p
    };
    std::thread::sleep(Duration::from_millis(300));

    let napi_before = napi_cpu();
    let peer_before = link_stats(&ns_p, &if_p)?;
    let stack_before = link_stats(&ns_s, &if_s)?;
    let gen_out = Command::new("ip")
        .args(["netns", "exec", &ns_p])
        .arg(&bins.gen_)
        .args(["-i", &if_p, "--dst-mac", &mac_of(&ns_s, &if_s)?])
        .args([
            "--dst",
            &format!("198.18.0.1:{PORT}"),
            "--src",
            "198.18.0.2",
        ])
        .args(["--payload", &payload.to_string()])
        .args(["--flows", &FLOWS.to_string()])
        .args(["--duration", &seconds.to_string(), "--cpu", "1", "--json"])
        .output()
        .context("running xdpstack-gen")?;
    if !gen_out.status.success() {
        bail!(
            "xdpstack-gen failed: {}",
            String::from_utf8_lossy(&gen_out.stderr).trim()
        );
    }
    let generator = json_line(&String::from_utf8_lossy(&gen_out.stdout))?;
    // Let the receiver drain what is queued.
    std::thread::sleep(Duration::from_millis(500));
    let cpu_s = rx.cpu_s() + tcpdump.as_ref().map_or(0.0, Proc::cpu_s) + napi_cpu() - napi_before;
    let peer_after = link_stats(&ns_p, &if_p)?;
    let stack_after = link_stats(&ns_s, &if_s)?;
    let (out, err) = rx.stop(Duration::from_secs(10))?;
    let report = json_line(&out).with_context(|| format!("receiver said: {err}"))?;

    let delta = |a: &Value, b: &Value, dir: &str, n: &str| counter(b, dir, n) - counter(a, dir, n);
    let sent = delta(&peer_before, &peer_after, "tx", "packets");
    let gen_seconds = generator["seconds"].as_f64().unwrap_or(seconds).max(1e-9);
    // Receiver-side counters only: veth's own rx_dropped also counts the frames
    // the sender found the ring full for (`veth_ring_full`, never sent) and the
    // AF_XDP socket's drops (counted below), so it would count them twice.
    let mut drops = BTreeMap::new();
    let veth_rx = delta(&stack_before, &stack_after, "rx", "packets");
    let mut captured = None;
    let mut echoed = None;
    let mut capture_drops = BTreeMap::new();
    let delivered;
    let mut passed = 0;
    if kernel {
        delivered = report["datagrams"].as_u64().unwrap_or(0);
        for (k, v) in report["drops"].as_object().into_iter().flatten() {
            // InErrors includes RcvbufErrors and InCsumErrors: count it alone.
            if k != "udp_rcvbuf_errors" && k != "udp_in_csum_errors" {
                drops.insert(k.clone(), v.as_u64().unwrap_or(0));
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
            captured = stat("packets captured");
            capture_drops.insert(
                "tcpdump_dropped_by_kernel".into(),
                stat("dropped by kernel").unwrap_or(0),
            );
        }
    } else {
        delivered = if receiver == "xdpstack-drop" {
            report["packets"].as_u64().unwrap_or(0)
        } else {
            report["udp"]["datagrams"].as_u64().unwrap_or(0)
        };
        let queues = report["queues"].as_array().cloned().unwrap_or_default();
        let sum = |f: &dyn Fn(&Value) -> u64| queues.iter().map(f).sum::<u64>();
        // rx_dropped includes the frames lost to an empty fill ring.
        drops.insert(
            "xsk_rx_dropped".into(),
            sum(&|q| q["xsk"]["rx_dropped"].as_u64().unwrap_or(0)),
        );
        drops.insert(
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
        drops.insert("udp_queue_full".into(), consumer_drops("udp"));
        if receiver.ends_with("+pcap") {
            capture_drops.insert("pcap_queue_full".into(), consumer_drops("pcap"));
        }
        if receiver != "xdpstack-drop" {
            let rejected: u64 = report["udp"]["rejected"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(_, v)| v.as_u64().unwrap_or(0))
                .sum();
            drops.insert("udp_rejected".into(), rejected);
        }
        for (k, v) in report["xdp"].as_object().into_iter().flatten() {
            if k.starts_with("pass") || k.starts_with("malformed") {
                passed += v.as_u64().unwrap_or(0);
            }
        }
        drops.insert("xdp_passed_to_kernel".into(), passed);
        if receiver.ends_with("+pcap") {
            captured = report["capture"]["stats"]["records_written"].as_u64();
        }
        if receiver == "xdpstack-echo" {
            echoed = Some(delta(&peer_before, &peer_after, "rx", "packets"));
        }
    }
    drop(bed);
    let lost: u64 = drops.values().sum();
    let unaccounted = sent as i64 - delivered as i64 - lost as i64;
    let frame = payload + HEADERS;
    if veth_rx != sent {
        eprintln!("    note: the receiving veth counted {veth_rx} frames, the sender {sent}");
    }
    Ok(Run {
        receiver: receiver.to_string(),
        payload,
        offered: generator["runs"].as_u64().unwrap_or(0),
        veth_ring_full: generator["dropped"].as_u64().unwrap_or(0),
        sent,
        delivered,
        captured,
        drops,
        capture_drops,
        unaccounted,
        mpps: delivered as f64 / gen_seconds / 1e6,
        gbps: (delivered * frame * 8) as f64 / gen_seconds / 1e9,
        cpu_s,
        echoed,
        generator_mpps: generator["runs"].as_u64().unwrap_or(sent) as f64 / gen_seconds / 1e6,
    })
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    serde_json::json!({ "cpu": cpu, "cpus": cpus, "testbed": "veth pair in two network namespaces, 1 queue, copy mode" })
}

fn kernel_release() -> String {
    Command::new("uname")
        .arg("-r")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn ratios(runs: &[Run]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for base in ["kernel-udp", "kernel-udp+tcpdump"] {
        for r in runs.iter().filter(|r| r.receiver.starts_with("xdpstack")) {
            if let Some(b) = runs
                .iter()
                .find(|b| b.receiver == base && b.payload == r.payload && b.mpps > 0.0)
            {
                out.insert(
                    format!("{}/{base}@{}", r.receiver, r.payload),
                    r.mpps / b.mpps,
                );
            }
        }
    }
    out
}

fn table(runs: &[Run], ratios: &BTreeMap<String, f64>, markdown: bool) -> String {
    let head = [
        "receiver",
        "payload",
        "offered",
        "sent",
        "delivered",
        "captured",
        "drops",
        "unacc.",
        "Mpps",
        "Gbit/s",
        "CPU s",
        "x kernel-udp",
        "x +tcpdump",
    ];
    let mut rows: Vec<Vec<String>> = vec![head.iter().map(|h| h.to_string()).collect()];
    for r in runs {
        let ratio = |base: &str| {
            ratios
                .get(&format!("{}/{base}@{}", r.receiver, r.payload))
                .map_or("-".to_string(), |x| format!("{x:.2}"))
        };
        rows.push(vec![
            r.receiver.clone(),
            r.payload.to_string(),
            r.offered.to_string(),
            r.sent.to_string(),
            r.delivered.to_string(),
            r.captured.map_or("-".to_string(), |c| c.to_string()),
            r.drops.values().sum::<u64>().to_string(),
            r.unaccounted.to_string(),
            format!("{:.3}", r.mpps),
            format!("{:.2}", r.gbps),
            format!("{:.2}", r.cpu_s),
            ratio("kernel-udp"),
            ratio("kernel-udp+tcpdump"),
        ]);
    }
    let mut s = String::new();
    if markdown {
        for (i, row) in rows.iter().enumerate() {
            let _ = writeln!(s, "| {} |", row.join(" | "));
            if i == 0 {
                let _ = writeln!(s, "|{}", "---|".repeat(row.len()));
            }
        }
        return s;
    }
    let widths: Vec<usize> = (0..head.len())
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    for row in &rows {
        for (c, cell) in row.iter().enumerate() {
            if c == 0 {
                let _ = write!(s, "{cell:<w$}", w = widths[c]);
            } else {
                let _ = write!(s, "  {cell:>w$}", w = widths[c]);
            }
        }
        s.push('\n');
    }
    s
}

/// Mpps per receiver, grouped by payload, as an SVG bar chart.
fn plot(runs: &[Run], payloads: &[u64], path: &Path) -> Result<()> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let max = runs.iter().map(|r| r.mpps).fold(0.0, f64::max).max(0.1) * 1.15;
    let groups = payloads.len();
    let per = RECEIVERS.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Mpps delivered, veth testbed (copy mode)",
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..(groups * (per + 1)) as f64, 0f64..max)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("Mpps")
        .draw()?;
    for (g, payload) in payloads.iter().enumerate() {
        let x = (g * (per + 1)) as f64 + per as f64 / 2.0;
        chart.draw_series(std::iter::once(Text::new(
            format!("{payload}-byte payload"),
            (x - 1.0, -max * 0.04),
            ("sans-serif", 14),
        )))?;
    }
    for (i, receiver) in RECEIVERS.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let bars: Vec<_> = payloads
            .iter()
            .enumerate()
            .filter_map(|(g, p)| {
                let r = runs
                    .iter()
                    .find(|r| r.receiver == *receiver && r.payload == *p)?;
                let x = (g * (per + 1) + i) as f64;
                Some(Rectangle::new(
                    [(x, 0.0), (x + 0.9, r.mpps)],
                    color.filled(),
                ))
            })
            .collect();
        chart
            .draw_series(bars)?
            .label(*receiver)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Run the suite. `bins` are release builds.
pub fn bench(xdpstack: &Path, quick: bool, only: &[String], sizes: &[u64]) -> Result<()> {
    if let Some(unknown) = only.iter().find(|r| !RECEIVERS.contains(&r.as_str())) {
        bail!(
            "unknown receiver {unknown}: one of {}",
            RECEIVERS.join(", ")
        );
    }
    let dir = crate::root().join("target").join("bench");
    std::fs::create_dir_all(&dir)?;
    let bin_dir = xdpstack.parent().context("binary has a directory")?;
    let bins = Bins {
        xdpstack: xdpstack.to_path_buf(),
        gen_: bin_dir.join("xdpstack-gen"),
        kernel_rx: bin_dir.join("xdpstack-kernel-rx"),
    };
    let (payloads, seconds): (&[u64], f64) = if quick {
        (&[18], 1.0)
    } else {
        (&[18, 512, 1472], 5.0)
    };
    let payloads: Vec<u64> = if sizes.is_empty() {
        payloads.to_vec()
    } else {
        sizes.to_vec()
    };
    let mut runs = Vec::new();
    for &payload in &payloads {
        for receiver in RECEIVERS
            .into_iter()
            .filter(|r| only.is_empty() || only.iter().any(|o| o == r))
        {
            eprintln!("==> {receiver}, {payload}-byte payloads, {seconds} s");
            let run = measure(&bins, receiver, payload, seconds, &dir)
                .with_context(|| format!("{receiver} at {payload} bytes"))?;
            eprintln!(
                "    sent {} delivered {} ({:.3} Mpps, generator {:.3} Mpps), drops {}, unaccounted {}",
                run.sent,
                run.delivered,
                run.mpps,
                run.generator_mpps,
                run.drops.values().sum::<u64>(),
                run.unaccounted
            );
            runs.push(run);
        }
    }
    let ratios = ratios(&runs);
    let text = table(&runs, &ratios, false);
    println!("{text}");
    let results = serde_json::json!({
        "machine": machine(),
        "kernel": kernel_release(),
        "quick": quick,
        "seconds_per_run": seconds,
        "runs": runs,
        "ratios": ratios,
    });
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    let md = format!(
        "# xdpstack benchmark\n\nKernel {}, {}; {} s per run; generator on CPU 1, receiver on CPU 0.\n\n{}",
        kernel_release(),
        machine()["cpu"].as_str().unwrap_or(""),
        seconds,
        table(&runs, &ratios, true)
    );
    std::fs::write(dir.join("results.md"), md)?;
    plot(&runs, &payloads, &dir.join("results.svg"))?;
    for r in &runs {
        let _ = std::fs::remove_file(dir.join(format!("{}-{}.pcap", r.receiver, r.payload)));
    }
    eprintln!(
        "==> results: {0}/results.json, {0}/results.md, {0}/results.svg",
        dir.display()
    );
    Ok(())
}
