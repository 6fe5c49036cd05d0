//! Rendering what the library reports: the summary at exit and the live
//! statistics, as text for people or as JSON lines for programs.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::{IsTerminal as _, Write as _},
    os::fd::AsFd as _,
};

use xdpstack::{
    CaptureCounter, Counter,
    app::UdpSummary,
    capture::CaptureEnd,
    stack::{
        Interval, Summary,
        doctor::{Check, Verdict},
        service::{CaptureReport, Report},
    },
};

/// `xdpstack doctor`: a line per finding (verdict, topic, finding), and its
/// fix on the next line when there is one.
pub fn render_doctor(iface: &str, checks: &[Check]) -> String {
    let mut s = format!("xdpstack doctor: {iface}\n");
    for c in checks {
        let verdict = match c.verdict {
            Verdict::Ok => "ok",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
            Verdict::Unknown => "??",
        };
        let _ = writeln!(s, "  {verdict:<5} {:<13} {}", c.topic, c.finding);
        if let Some(fix) = &c.fix {
            let _ = writeln!(s, "  {:<5} {:<13} fix: {fix}", "", "");
        }
    }
    s
}

/// The report at exit, several lines.
pub fn render_report(report: &Report, show_udp: bool) -> String {
    let mut s = render_summary(&report.summary);
    if show_udp {
        s.push_str(&render_udp(&report.udp));
    }
    if let Some(c) = &report.capture {
        s.push_str(&render_capture(c));
    }
    s
}

/// The capture's line of the report: what was written where, and why the
/// capture ended the run if it did.
pub fn render_capture(c: &CaptureReport) -> String {
    let where_ = c.path.as_ref().map_or_else(
        || "standard output".to_string(),
        |p| p.display().to_string(),
    );
    let mut s = format!(
        "  capture: {} frames, {} bytes written to {}; {} not written",
        c.stats.records_written, c.stats.bytes_written, where_, c.stats.records_dropped,
    );
    match c.end {
        None => {}
        Some(CaptureEnd::ReaderClosed) => {
            s.push_str("; ended: the reader of the capture went away");
        }
        Some(CaptureEnd::FileLimit { files }) => {
            let _ = write!(s, "; ended: maximum file limit reached: {files} (-W)");
        }
    }
    s.push('\n');
    if c.unselected_views + c.unselected_outbound + c.outbound_dropped > 0 {
        let _ = writeln!(
            s,
            "  capture: not selected by the expression: {} received, {} transmitted; \
             transmitted copies lost: {}",
            c.unselected_views, c.unselected_outbound, c.outbound_dropped,
        );
    }
    s
}

/// The stack's summary: a line for the run, one per queue, one for the XDP
/// program's verdicts.
pub fn render_summary(summary: &Summary) -> String {
    let mut s = String::new();
    let rate = if summary.seconds > 0.0 {
        summary.packets as f64 / summary.seconds
    } else {
        0.0
    };
    let _ = writeln!(
        s,
        "xdpstack: {} packets, {} bytes in {:.2} s ({:.0} pkt/s, {:.2} s CPU) on {} ({} mode, {})",
        summary.packets,
        summary.bytes,
        summary.seconds,
        rate,
        summary.cpu_s,
        summary.iface,
        summary.xdp_mode,
        if summary.zero_copy {
            "zero-copy"
        } else {
            "copy"
        },
    );
    for q in &summary.queues {
        let _ = write!(
            s,
            "  queue {}: {} packets, {} bytes; kernel drops:",
            q.queue, q.packets, q.bytes
        );
        write_named(&mut s, &q.xsk.rx_drops());
        for c in &q.consumers {
            let _ = write!(s, "; {} {} (dropped {}", c.name, c.delivered, c.dropped);
            if c.reclaimed > 0 {
                let _ = write!(s, ", {} of them taken back for the kernel", c.reclaimed);
            }
            s.push(')');
        }
        let t = &q.tx;
        if t.queued + t.queue_full + t.no_frame + t.reply_errors > 0 {
            let _ = write!(
                s,
                "; tx {} sent of {} queued (echo: {} in place, {} copied; {} other replies); \
                 not sent: kernel_dropped {}, in_flight {}, queue_full {}, no_frame {}, \
                 reply_errors {}, too_many_views {}; tx_invalid_descs {}",
                t.sent,
                t.queued,
                t.in_place,
                t.copied,
                t.queued.saturating_sub(t.in_place + t.copied),
                t.kernel_dropped,
                t.queued.saturating_sub(t.completed),
                t.queue_full,
                t.no_frame,
                t.reply_errors,
                t.too_many_views,
                q.xsk.tx_invalid_descs,
            );
        }
        if t.send_to + t.held + t.no_route + t.other_interface + t.unresolved + t.too_large > 0 {
            let _ = write!(
                s,
                "; send_to {} (held {}); not sent: no_route {}, other_interface {}, \
                 unresolved {}, too_large {}",
                t.send_to, t.held, t.no_route, t.other_interface, t.unresolved, t.too_large,
            );
        }
        s.push('\n');
    }
    write_xdp_counters(&mut s, &summary.xdp);
    s
}

/// `  xdp: seen N` and every other non-zero counter of the XDP program, a line;
/// the capture's counters in the program (with an expression, `--capture all`
/// or `--steal`) on a line of their own.
fn write_xdp_counters(out: &mut String, xdp: &BTreeMap<&'static str, u64>) {
    let _ = write!(out, "  xdp:");
    for counter in Counter::ALL {
        let v = xdp.get(counter.name()).copied().unwrap_or(0);
        if v != 0 || counter == Counter::Seen {
            let _ = write!(out, " {} {v}", counter.name());
        }
    }
    out.push('\n');
    if CaptureCounter::ALL
        .iter()
        .any(|c| xdp.contains_key(c.name()))
    {
        let _ = write!(out, "  xdp capture:");
        for counter in CaptureCounter::ALL {
            let v = xdp.get(counter.name()).copied().unwrap_or(0);
            // The losses always, the rest when they happened.
            if v != 0 || counter == CaptureCounter::RingFull {
                let name = counter.name().trim_start_matches("capture_");
                let _ = write!(out, " {name} {v}");
            }
        }
        out.push('\n');
    }
}

/// The UDP consumers' lines of the report.
pub fn render_udp(udp: &UdpSummary) -> String {
    let mut s = format!(
        "  udp: udp_datagrams {}, {} payload bytes; udp_unmatched {} (to no handler); rejected {}",
        udp.datagrams,
        udp.payload_bytes,
        udp.unmatched,
        udp.rejected.total()
    );
    for (name, n) in udp.rejected.iter().filter(|(_, n)| *n > 0) {
        let _ = write!(s, ", {name} {n}");
    }
    s.push('\n');
    for (port, count) in &udp.ports {
        let _ = writeln!(
            s,
            "    port {port}: {} datagrams, {} bytes",
            count.datagrams, count.bytes
        );
    }
    s
}

/// ` name value` for each counter of `named` (one list of names: the
/// library's, which are the JSON's).
fn write_named(s: &mut String, named: &[(&'static str, u64)]) {
    for (name, n) in named {
        let _ = write!(s, " {name} {n}");
    }
}

/// The text form of an interval: a line per queue and a total.
pub fn render_interval(iv: &Interval) -> String {
    let mut out = format!(
        "xdpstack: {:.2} s on {} ({} mode, {})\n",
        iv.t,
        iv.iface,
        iv.xdp_mode,
        if iv.zero_copy { "zero-copy" } else { "copy" }
    );
    for q in &iv.queues {
        // Rates first, then totals since attach, named as in the JSON. The
        // frames are the poller's own counts of one moment (the rings'
        // occupancy, sampled at another, is in the JSON only: side by side,
        // a part could show larger than the whole).
        let _ = write!(
            out,
            "  q{:<3} {:>10.0} pkt/s {:>9.1} Mbit/s | totals: packets {}",
            q.queue, q.pps, q.mbps, q.packets,
        );
        write_named(&mut out, &q.xsk.rx_drops());
        let _ = write!(
            out,
            " frames_in_kernel {} frames_free {}",
            q.frames_in_kernel, q.frames_free,
        );
        for c in &q.consumers {
            let _ = write!(out, " {}: held {} dropped {}", c.name, c.held, c.dropped);
        }
        for (name, n) in &q.counters {
            let _ = write!(out, " {name} {n}");
        }
        if q.tx.queued + q.tx.queue_full + q.tx.no_frame > 0 {
            let _ = write!(
                out,
                "  tx: sent {} kernel_dropped {} queue_full {} no_frame {}",
                q.tx.sent, q.tx.kernel_dropped, q.tx.queue_full, q.tx.no_frame,
            );
        }
        let t = &q.tx;
        if t.send_to + t.no_route + t.other_interface + t.unresolved + t.too_large > 0 {
            let _ = write!(
                out,
                " send_to {} held {} no_route {} other_interface {} unresolved {} too_large {}",
                t.send_to, t.held, t.no_route, t.other_interface, t.unresolved, t.too_large,
            );
        }
        out.push('\n');
    }
    let _ = writeln!(out, "  all  {:>10.0} pkt/s {:>9.1} Mbit/s", iv.pps, iv.mbps);
    write_xdp_counters(&mut out, &iv.xdp);
    out
}

/// Where and how the live statistics are printed.
#[derive(Debug)]
pub struct LiveOutput {
    /// One JSON object per interval (NDJSON) instead of text.
    json: bool,
    /// JSON to standard output (else standard error: `-w -` owns stdout).
    to_stdout: bool,
    /// On a terminal the text block is redrawn in place; piped, it is appended.
    redraw: bool,
    /// Lines of the block drawn last.
    drawn_lines: usize,
}

impl LiveOutput {
    /// Live statistics as JSON or text; JSON to stdout unless `-w -` has it.
    pub fn new(json: bool, to_stdout: bool) -> Self {
        Self {
            json,
            to_stdout,
            redraw: !json && std::io::stderr().is_terminal(),
            drawn_lines: 0,
        }
    }

    /// Print one interval.
    pub fn show(&mut self, iv: &Interval) {
        if self.json {
            let line = serde_json::to_string(iv).unwrap_or_default();
            if self.to_stdout {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            } else {
                let _ = writeln!(std::io::stderr(), "{line}");
            }
            return;
        }
        let text = render_interval(iv);
        let mut err = std::io::stderr().lock();
        if self.redraw && self.drawn_lines > 0 {
            // Cursor up over the last block, clear to the end.
            let _ = write!(err, "\x1b[{}A\x1b[J", self.drawn_lines);
        }
        // The rows it takes, wrapped at the terminal's width (taken anew each
        // time: the window may have been resized), so that the next redraw
        // moves up over all of it and leaves no debris.
        self.drawn_lines = match xdpstack::sys::process::terminal_columns(err.as_fd()) {
            Some(columns) => xdpstack::sys::process::terminal_rows(&text, columns),
            None => text.lines().count(),
        };
        let _ = write!(err, "{text}");
    }
}

#[cfg(test)]
mod tests {
    use xdpstack::capture::CaptureStats;

    use super::*;

    /// One name per counter: the kernel's drops are printed by the live line
    /// and the summary, and serialized in the JSON, under the names of one
    /// list (`XskStats::rx_drops`).
    #[test]
    fn a_counter_has_one_name_in_the_live_line_the_summary_and_the_json() {
        use xdpstack::{
            stack::{QueueInterval, QueueSummary},
            sys::{XskStats, loader::AttachedMode},
        };
        let summary = Summary {
            kind: "summary",
            iface: "veth0".into(),
            xdp_mode: AttachedMode::Drv,
            zero_copy: false,
            seconds: 1.0,
            cpu_s: 0.5,
            packets: 0,
            bytes: 0,
            queues: vec![QueueSummary::default()],
            xdp: BTreeMap::new(),
            capture_lost: BTreeMap::new(),
        };
        let interval = Interval {
            queues: vec![QueueInterval::default()],
            ..Interval::default()
        };
        let (text, live) = (render_summary(&summary), render_interval(&interval));
        let json = serde_json::to_value(&summary).unwrap();
        let live_json = serde_json::to_value(&interval).unwrap();
        for (name, _) in XskStats::default().rx_drops() {
            assert!(
                text.contains(&format!(" {name} ")),
                "summary lacks {name}: {text}"
            );
            assert!(
                live.contains(&format!(" {name} ")),
                "live line lacks {name}: {live}"
            );
            assert!(
                json["queues"][0]["xsk"].get(name).is_some(),
                "JSON lacks {name}"
            );
            assert!(
                live_json["queues"][0]["xsk"].get(name).is_some(),
                "JSON lacks {name}"
            );
        }
        // And the names they replaced are gone.
        for old in [
            "fill_empty",
            "fill_ring_empty ",
            " ring_full",
            "rx_invalid ",
            "(fill ",
        ] {
            assert!(
                !text.contains(old) && !live.contains(old),
                "{old} still printed"
            );
        }
    }

    #[test]
    fn the_capture_line_says_why_the_capture_ended() {
        let mut c = CaptureReport {
            path: None,
            stats: CaptureStats {
                records_written: 7,
                bytes_written: 800,
                records_dropped: 2,
                ..CaptureStats::default()
            },
            error: None,
            end: None,
            unselected_views: 0,
            unselected_outbound: 0,
            outbound_dropped: 0,
        };
        let line = "  capture: 7 frames, 800 bytes written to standard output; 2 not written";
        assert_eq!(render_capture(&c), format!("{line}\n"));
        c.end = Some(CaptureEnd::ReaderClosed);
        assert_eq!(
            render_capture(&c),
            format!("{line}; ended: the reader of the capture went away\n")
        );
        c.end = Some(CaptureEnd::FileLimit { files: 3 });
        c.path = Some("/d/cap-120000.pcap".into());
        assert!(
            render_capture(&c).ends_with(
                "written to /d/cap-120000.pcap; 2 not written; ended: maximum file limit \
                 reached: 3 (-W)\n"
            ),
            "{}",
            render_capture(&c)
        );
    }
}
