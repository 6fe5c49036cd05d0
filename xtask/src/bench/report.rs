//! The bench's results: ratios (against the kernel socket path and the two
//! references), the targets the issue states them in, and the table (text and
//! markdown), JSON and SVG plot they are written to.

use std::{collections::BTreeMap, fmt::Write as _, path::Path, process::Command};

use anyhow::Result;
use serde::Serialize;
use serde_json::Value;

use super::refs::{CEILING, TESTPMD_5TSWAP, TESTPMD_RXONLY};
use super::{COPY, RECEIVERS, Run, STEAL, Skipped};

/// What a ratio compares.
#[derive(Clone, Copy, Debug)]
enum Basis {
    /// Frames (datagrams) delivered per second.
    Delivered,
    /// Echo replies received back at the peer per second.
    Replies,
    /// Frames written to the capture file per second.
    Captured,
}

/// A ratio the benchmark has a target for: `num`'s rate over `den`'s.
struct Target {
    num: &'static str,
    den: &'static str,
    basis: Basis,
    /// Met when the ratio is at least `value` (`strict`: above it).
    value: f64,
    strict: bool,
    /// The payload the target is stated at; `None`: every payload.
    at: Option<u64>,
    /// Label in the plot.
    short: &'static str,
}

const TARGETS: [Target; 11] = [
    Target {
        num: COPY,
        den: "kernel-udp+tcpdump",
        basis: Basis::Captured,
        value: 1.5,
        strict: false,
        at: None,
        short: "capture/tcpdump",
    },
    Target {
        num: COPY,
        den: "kernel-udp",
        basis: Basis::Delivered,
        value: 0.95,
        strict: false,
        at: None,
        short: "socket under capture",
    },
    Target {
        num: STEAL,
        den: "kernel-udp+tcpdump",
        basis: Basis::Captured,
        value: 3.0,
        strict: false,
        at: None,
        short: "steal/tcpdump",
    },
    Target {
        num: "xdpstack-drop",
        den: CEILING,
        basis: Basis::Delivered,
        value: 0.5,
        strict: false,
        at: Some(18),
        short: "drop/ceiling",
    },
    Target {
        num: "xdpstack-sink",
        den: CEILING,
        basis: Basis::Delivered,
        value: 0.4,
        strict: false,
        at: None,
        short: "sink/ceiling",
    },
    Target {
        num: "xdpstack-sink+pcap",
        den: "kernel-udp+tcpdump",
        basis: Basis::Delivered,
        value: 3.0,
        strict: false,
        at: None,
        short: "pcap/tcpdump",
    },
    Target {
        num: "xdpstack-sink+pcap",
        den: "xdpstack-sink",
        basis: Basis::Delivered,
        value: 0.9,
        strict: false,
        at: None,
        short: "pcap/sink",
    },
    Target {
        num: "xdpstack-echo",
        den: TESTPMD_5TSWAP,
        basis: Basis::Replies,
        value: 2.0,
        strict: false,
        at: None,
        short: "echo/5tswap",
    },
    Target {
        num: "xdpstack-sink",
        den: TESTPMD_RXONLY,
        basis: Basis::Delivered,
        value: 1.0,
        strict: true,
        at: None,
        short: "sink/rxonly",
    },
    Target {
        num: "xdpstack-drop",
        den: TESTPMD_RXONLY,
        basis: Basis::Delivered,
        value: 1.0,
        strict: true,
        at: None,
        short: "drop/rxonly",
    },
    Target {
        num: "xdpstack-socket-echo",
        den: "kernel-udp-echo",
        basis: Basis::Replies,
        value: 2.0,
        strict: false,
        at: None,
        short: "socket/kernel echo",
    },
];

impl Target {
    fn rate(&self, r: &Run) -> f64 {
        match self.basis {
            Basis::Delivered => r.mpps,
            Basis::Replies => r.reply_mpps.unwrap_or(0.0),
            Basis::Captured => r.captured_mpps.unwrap_or(0.0),
        }
    }

    fn name(&self) -> String {
        format!("{}/{}", self.num, self.den)
    }

    fn basis(&self) -> &'static str {
        match self.basis {
            Basis::Delivered => "delivered",
            Basis::Replies => "replies at the peer",
            Basis::Captured => "frames in the file",
        }
    }

    fn label(&self) -> String {
        let op = if self.strict { ">" } else { ">=" };
        match self.at {
            Some(p) => format!("{op} {} at {p} B", self.value),
            None => format!("{op} {}", self.value),
        }
    }

    /// The ratio at `payload`, if both runs are there (and the base moved).
    fn ratio(&self, runs: &[Run], payload: u64) -> Option<f64> {
        let find = |name: &str| {
            runs.iter()
                .find(|r| r.receiver == name && r.payload == payload)
        };
        let (n, d) = (find(self.num)?, find(self.den)?);
        let base = self.rate(d);
        (base > 0.0).then(|| self.rate(n) / base)
    }

    /// Whether `ratio` meets the target at `payload`; `None` where it does not apply.
    fn met(&self, payload: u64, ratio: f64) -> Option<bool> {
        if self.at.is_some_and(|p| p != payload) {
            return None;
        }
        Some(if self.strict {
            ratio > self.value
        } else {
            ratio >= self.value
        })
    }
}

/// One target's ratio at one payload, as the JSON has it.
#[derive(Debug, Serialize)]
struct TargetResult {
    ratio: String,
    basis: &'static str,
    payload: u64,
    value: f64,
    target: String,
    /// `null` where the target is stated for another payload.
    met: Option<bool>,
}

fn target_results(runs: &[Run], payloads: &[u64]) -> Vec<TargetResult> {
    let mut out = Vec::new();
    for t in &TARGETS {
        for &p in payloads {
            if let Some(value) = t.ratio(runs, p) {
                out.push(TargetResult {
                    ratio: t.name(),
                    basis: t.basis(),
                    payload: p,
                    value,
                    target: t.label(),
                    met: t.met(p, value),
                });
            }
        }
    }
    out
}

/// Every ratio, by `NUM/DEN@PAYLOAD`: each xdpstack receiver against both kernel
/// baselines (delivered rates), and the ratios of [`TARGETS`] (the echo one on
/// replies at the peer).
fn ratios(runs: &[Run], payloads: &[u64]) -> BTreeMap<String, f64> {
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
    for t in &TARGETS {
        for &p in payloads {
            if let Some(x) = t.ratio(runs, p) {
                out.insert(format!("{}@{p}", t.name()), x);
            }
        }
    }
    out
}

/// Rows as an aligned text table or a markdown one; the first row is the header.
fn render(rows: &[Vec<String>], markdown: bool) -> String {
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
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
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

fn table(runs: &[Run], ratios: &BTreeMap<String, f64>, skipped: &[Skipped], md: bool) -> String {
    let head = [
        "receiver",
        "payload",
        "offered",
        "sent",
        "delivered",
        "replies",
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
    let opt = |v: Option<u64>| v.map_or("-".to_string(), |c| c.to_string());
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
            opt(r.echoed),
            opt(r.captured),
            r.drops.values().sum::<u64>().to_string(),
            r.unaccounted.to_string(),
            format!("{:.3}", r.mpps),
            format!("{:.2}", r.gbps),
            format!("{:.2}", r.cpu_s),
            ratio("kernel-udp"),
            ratio("kernel-udp+tcpdump"),
        ]);
    }
    for s in skipped {
        let mut row = vec![s.receiver.clone(), "skipped".to_string()];
        row.resize(head.len(), "-".to_string());
        rows.push(row);
    }
    let mut s = render(&rows, md);
    // One line per reason: the testpmd receivers share theirs.
    let mut reasons: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for sk in skipped {
        reasons.entry(&sk.reason).or_default().push(&sk.receiver);
    }
    for (reason, receivers) in reasons {
        let _ = writeln!(s, "\nskipped {}: {reason}", receivers.join(", "));
    }
    s
}

/// The ratios of [`TARGETS`], one row each, one column per payload.
fn targets_table(runs: &[Run], skipped: &[Skipped], payloads: &[u64], md: bool) -> String {
    let was_skipped = |t: &Target| {
        skipped
            .iter()
            .any(|s| s.receiver == t.num || s.receiver == t.den)
    };
    let mut head = vec!["ratio".to_string(), "of".to_string()];
    head.extend(payloads.iter().map(|p| format!("{p} B")));
    head.push("target".to_string());
    let mut rows = vec![head];
    for t in &TARGETS {
        let mut row = vec![t.name(), t.basis().to_string()];
        let missing = if was_skipped(t) { "skipped" } else { "-" };
        for &p in payloads {
            row.push(
                t.ratio(runs, p)
                    .map_or(missing.to_string(), |x| match t.met(p, x) {
                        Some(true) => format!("{x:.2} (met)"),
                        Some(false) => format!("{x:.2} (MISSED)"),
                        None => format!("{x:.2}"),
                    }),
            );
        }
        row.push(t.label());
        rows.push(row);
    }
    render(&rows, md)
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

/// Print the tables and write results.json, results.md and results.svg to `dir`.
pub(super) fn write(
    dir: &Path,
    runs: &[Run],
    skipped: &[Skipped],
    payloads: &[u64],
    quick: bool,
    seconds: f64,
    costs: &[Value],
) -> Result<()> {
    let ratios = ratios(runs, payloads);
    println!(
        "{}\n{}\n{}",
        table(runs, &ratios, skipped, false),
        targets_table(runs, skipped, payloads, false),
        costs_table(costs, false)
    );
    let results = serde_json::json!({
        "machine": machine(),
        "kernel": kernel_release(),
        "quick": quick,
        "seconds_per_run": seconds,
        "runs": runs,
        "skipped": skipped,
        "ratios": ratios,
        "targets": target_results(runs, payloads),
        "xdp_cost_per_frame": costs,
    });
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    let md = format!(
        "# xdpstack benchmark\n\nKernel {}, {}; {} s per run; generator on CPU 1, receiver \
         on CPU 0.{}\n\n{}\n## Against the references\n\n{}\n## The XDP program's cost per frame\n\n{}",
        kernel_release(),
        machine()["cpu"].as_str().unwrap_or(""),
        seconds,
        jumbo_note(runs),
        table(runs, &ratios, skipped, true),
        targets_table(runs, skipped, payloads, true),
        costs_table(costs, true)
    );
    std::fs::write(dir.join("results.md"), md)?;
    plot(runs, payloads, &dir.join("results.svg"))
}

/// What the jumbo rows are, when there are any: another MTU and another sender.
fn jumbo_note(runs: &[Run]) -> String {
    let Some(j) = runs.iter().find(|r| r.sender != "xdpstack-gen") else {
        return String::new();
    };
    format!(
        " Rows at payloads above 1472 bytes are the jumbo case: veth MTU {} on both ends, \
         AF_XDP multi-buffer, sent by {} (kernel UDP sockets with sendmmsg: xdpstack-gen's \
         live frames cannot exceed a page); compare them with each other, and mind CPU s \
         when the sender, not the receiver, sets the rate.",
        j.mtu, j.sender
    )
}

/// The XDP program's cost per frame in each capture configuration, and what a
/// capture expression adds (target: at most 25 ns for a 10-20 instruction one).
fn costs_table(costs: &[Value], md: bool) -> String {
    let ns = |c: &Value| c["ns_per_frame"].as_f64().unwrap_or(0.0);
    let mut out = String::new();
    if md {
        out.push_str("| case | ns/frame |\n|---|---:|\n");
    } else {
        out.push_str("The XDP program's cost per frame (BPF_PROG_TEST_RUN):\n");
    }
    for c in costs {
        let case = c["case"].as_str().unwrap_or("?");
        if md {
            let _ = writeln!(out, "| {case} | {:.1} |", ns(c));
        } else {
            let _ = writeln!(out, "  {:>7.1} ns  {case}", ns(c));
        }
    }
    if let (Some(base), Some(filtered)) = (costs.first(), costs.get(1)) {
        let added = ns(filtered) - ns(base);
        let n = filtered["cbpf_instructions"].as_u64().unwrap_or(0);
        let _ = writeln!(
            out,
            "{}a capture expression of {n} classic BPF instructions adds {added:.1} ns a frame \
             (target: at most 25 ns): {}",
            if md { "\n" } else { "  " },
            if added <= 25.0 { "met" } else { "missed" }
        );
    }
    out
}

/// Mpps per receiver grouped by payload (top), and the ratios of [`TARGETS`]
/// with their targets (bottom), as an SVG.
fn plot(runs: &[Run], payloads: &[u64], path: &Path) -> Result<()> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (1100, 960)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(540);
    let max = runs.iter().map(|r| r.mpps).fold(0.0, f64::max).max(0.1) * 1.15;
    let groups = payloads.len();
    let per = RECEIVERS.len();
    let mut chart = ChartBuilder::on(&top)
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
    plot_targets(runs, payloads, &bottom)?;
    root.present()?;
    Ok(())
}

/// The bottom panel: one group per target ratio, one bar per payload, the target
/// as a black line across the group.
fn plot_targets<DB: plotters::prelude::DrawingBackend>(
    runs: &[Run],
    payloads: &[u64],
    area: &plotters::prelude::DrawingArea<DB, plotters::coord::Shift>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    use plotters::prelude::*;
    let per = payloads.len().max(1);
    let max = TARGETS
        .iter()
        .flat_map(|t| {
            payloads
                .iter()
                .filter_map(|&p| t.ratio(runs, p))
                .chain(std::iter::once(t.value))
        })
        .fold(0.0, f64::max)
        * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(
            "Ratios against the references (black line: target)",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..(TARGETS.len() * (per + 1)) as f64, 0f64..max)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("ratio")
        .draw()?;
    for (g, t) in TARGETS.iter().enumerate() {
        let x0 = (g * (per + 1)) as f64;
        chart.draw_series(std::iter::once(Text::new(
            t.short.to_string(),
            (x0, -max * 0.05),
            ("sans-serif", 13),
        )))?;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(x0 - 0.1, t.value), (x0 + per as f64, t.value)],
            BLACK.stroke_width(2),
        )))?;
    }
    for (i, &p) in payloads.iter().enumerate() {
        let color = Palette99::pick(i + RECEIVERS.len()).to_rgba();
        let bars: Vec<_> = TARGETS
            .iter()
            .enumerate()
            .filter_map(|(g, t)| {
                let x = (g * (per + 1) + i) as f64;
                let v = t.ratio(runs, p)?;
                Some(Rectangle::new([(x, 0.0), (x + 0.9, v)], color.filled()))
            })
            .collect();
        chart
            .draw_series(bars)?
            .label(format!("{p}-byte payload"))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    Ok(())
}
