//! The two references measured beside the kernel socket path, on the same
//! testbed and in the same run as xdpstack:
//!
//! - `xdp-drop-ceiling`: `xdpstack-xdp-drop`, an XDP program that drops every
//!   frame, attached in driver mode to the receiving veth. Nothing in user space
//!   can take frames faster than the kernel hands them to a program that does
//!   nothing, so xdpstack's rate over it says how much of the ceiling it reaches.
//!   Counted by the veth's own `rx_queue_N_xdp_drops` (`ethtool -S`), checked
//!   against the program's per-CPU counter.
//! - `dpdk-testpmd-rxonly` and `dpdk-testpmd-5tswap`: DPDK 22.11's testpmd on its
//!   AF_XDP PMD, a peer AF_XDP implementation, receiving only or swapping
//!   addresses and ports and sending every frame back (replies counted at the
//!   peer veth, like xdpstack-echo's). Its lcores run on CPU 0, the receiver's.

use std::{collections::BTreeMap, path::Path, process::Command, time::Duration};

use anyhow::{Context as _, Result, bail};
use xdpstack_testbed::Testbed;

use super::{Outcome, Proc, json_line};

/// The drop ceiling's receiver name.
pub(super) const CEILING: &str = "xdp-drop-ceiling";
/// testpmd receiving only.
pub(super) const TESTPMD_RXONLY: &str = "dpdk-testpmd-rxonly";
/// testpmd sending every frame back with MAC, IP addresses and ports swapped.
pub(super) const TESTPMD_5TSWAP: &str = "dpdk-testpmd-5tswap";

/// The testpmd command line for `forward_mode` on `iface`, after `taskset -c 0`
/// (so that DPDK's own service threads stay on the receiver's core too).
///
/// `--no-huge -m 1024`: no hugepages on the machines this runs on; `--no-pci`:
/// only the AF_XDP virtual device; `--lcores=(0,1)@0`: the main lcore and the
/// forwarding lcore, both on CPU 0; `--file-prefix`: a runtime directory of its
/// own, apart from any other DPDK process. Non-interactive testpmd starts
/// forwarding at once and waits for a line on stdin; SIGINT stops it, and it
/// prints its forward statistics on the way out.
pub(super) fn testpmd_args(iface: &str, forward_mode: &str) -> Vec<String> {
    [
        "dpdk-testpmd",
        "--no-huge",
        "-m",
        "1024",
        "--no-pci",
        "--file-prefix=xdpstack-bench",
        "--lcores=(0,1)@0",
        "--vdev",
        &format!("net_af_xdp0,iface={iface},start_queue=0,queue_count=1"),
        "--",
        "--auto-start",
        &format!("--forward-mode={forward_mode}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Start the reference `receiver` on the testbed's stack side and wait until it
/// is attached. `on_cpu0` builds `ip netns exec STACK taskset -c 0 PROGRAM`.
pub(super) fn start(
    receiver: &str,
    bed: &Testbed,
    xdp_drop: &Path,
    on_cpu0: &dyn Fn(&Path) -> Command,
) -> Result<Proc> {
    let if_s = bed.stack_if();
    let (mut cmd, what) = if receiver == CEILING {
        let mut c = on_cpu0(xdp_drop);
        c.args(["-i", &if_s]);
        (c, "xdpstack-xdp-drop")
    } else {
        let mode = if receiver == TESTPMD_5TSWAP {
            "5tswap"
        } else {
            "rxonly"
        };
        let args = testpmd_args(&if_s, mode);
        let mut c = on_cpu0(Path::new(&args[0]));
        c.args(&args[1..]);
        // testpmd exits when stdin reaches its end: keep it open, write nothing.
        c.stdin(std::process::Stdio::piped());
        (c, "dpdk-testpmd")
    };
    let p = Proc::spawn(&mut cmd, what)?;
    if bed.wait_xdp_attached(Duration::from_secs(20))?.is_none() {
        let (out, err) = p.stop(Duration::from_secs(10))?;
        bail!(
            "{what} attached no XDP program to {if_s} within 20 s:\n{}\n{}",
            tail(&out),
            tail(&err)
        );
    }
    if what == "dpdk-testpmd" {
        // libxdp attaches the program while it creates the socket; the port and
        // forwarding start after that.
        std::thread::sleep(Duration::from_millis(1500));
    }
    Ok(p)
}

/// The last lines of a process's output, for error messages.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// `ethtool -S DEV` inside `ns`, by counter name.
pub(super) fn ethtool_stats(ns: &str, dev: &str) -> Result<BTreeMap<String, u64>> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "ethtool", "-S", dev])
        .output()
        .context("running ethtool -S")?;
    if !out.status.success() {
        bail!(
            "ethtool -S {dev} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(parse_ethtool(&String::from_utf8_lossy(&out.stdout)))
}

fn parse_ethtool(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// The sum over RX queues of veth's per-queue counter `rx_queue_N_{what}`.
pub(super) fn per_queue_sum(stats: &BTreeMap<String, u64>, what: &str) -> u64 {
    stats
        .iter()
        .filter(|(k, _)| {
            k.strip_prefix("rx_queue_")
                .and_then(|rest| rest.split_once('_'))
                .is_some_and(|(q, name)| q.bytes().all(|b| b.is_ascii_digit()) && name == what)
        })
        .map(|(_, v)| v)
        .sum()
}

/// The counters of a run's window that the references need: the stack veth's
/// `ethtool -S` before and after.
pub(super) struct EthtoolWindow {
    pub(super) before: BTreeMap<String, u64>,
    pub(super) after: BTreeMap<String, u64>,
}

impl EthtoolWindow {
    fn delta(&self, what: &str) -> u64 {
        per_queue_sum(&self.after, what).saturating_sub(per_queue_sum(&self.before, what))
    }
}

/// Stop the drop ceiling and say what it counted: delivered = the veth's XDP
/// drops over the run, cross-checked against the program's own counter.
pub(super) fn finish_ceiling(p: Proc, eth: &EthtoolWindow) -> Result<Outcome> {
    let (status, out, err) = p.stop_with("-TERM", Duration::from_secs(10))?;
    let report = json_line(&out).with_context(|| format!("xdpstack-xdp-drop ({status}): {err}"))?;
    let delivered = eth.delta("xdp_drops");
    let program = report["dropped"].as_u64().unwrap_or(0);
    let mut o = Outcome {
        delivered,
        program_dropped: Some(program),
        ..Outcome::default()
    };
    // Frames the veth could not hand to XDP (its per-queue `drops`).
    o.drops.insert("veth_rx_drops".into(), eth.delta("drops"));
    // The program runs from attach to detach, the veth window is the run's only:
    // the program may count a few more (ARP, neighbour discovery before the run).
    if program < delivered {
        o.notes.push(format!(
            "the veth counted {delivered} XDP drops but the program only {program}: \
             the veth's counter is taken as the truth"
        ));
    } else if program - delivered > 64 {
        o.notes.push(format!(
            "the program dropped {program} frames, the veth counted {delivered} in the \
             run's window"
        ));
    }
    Ok(o)
}

/// testpmd's "Forward statistics for port 0" block (`RX-packets`, `RX-dropped`
/// (the PMD's imissed: XDP_STATISTICS rx_dropped), `TX-packets`, ...), from the
/// statistics it prints when it stops.
fn forward_stats(out: &str) -> Option<BTreeMap<String, u64>> {
    let start = out.rfind("Forward statistics for port 0")?;
    let block = &out[start..];
    let block = &block[..block.find("Accumulated").unwrap_or(block.len())];
    let words: Vec<&str> = block.split_whitespace().collect();
    let stats: BTreeMap<String, u64> = words
        .windows(2)
        .filter_map(|w| Some((w[0].strip_suffix(':')?.to_string(), w[1].parse().ok()?)))
        .collect();
    (!stats.is_empty()).then_some(stats)
}

/// Stop testpmd (SIGINT: it stops forwarding and prints its statistics) and say
/// what it counted: delivered = its RX-packets; for 5tswap, its TX-packets next
/// to the veth's TX counter.
pub(super) fn finish_testpmd(
    p: Proc,
    receiver: &str,
    eth: &EthtoolWindow,
    iface_tx: u64,
) -> Result<Outcome> {
    let (status, out, err) = p.stop_with("-INT", Duration::from_secs(20))?;
    let Some(stats) = forward_stats(&out) else {
        bail!(
            "dpdk-testpmd ({status}) printed no forward statistics:\n{}\n{}",
            tail(&out),
            tail(&err)
        );
    };
    let get = |k: &str| stats.get(k).copied().unwrap_or(0);
    let mut o = Outcome {
        delivered: get("RX-packets"),
        ..Outcome::default()
    };
    // The PMD's imissed: frames the kernel could not put in the socket's RX ring.
    // veth counts the same failed redirects in its per-queue `drops`: a
    // cross-check, not a second count.
    let missed = get("RX-dropped");
    o.drops.insert("testpmd_rx_dropped".into(), missed);
    o.drops
        .insert("veth_xdp_drops".into(), eth.delta("xdp_drops"));
    let veth_drops = eth.delta("drops");
    if veth_drops != missed {
        o.notes.push(format!(
            "testpmd counted {missed} frames missed (RX-dropped), the veth {veth_drops} \
             failed redirects (rx_queue_N_drops)"
        ));
    }
    if receiver == TESTPMD_5TSWAP {
        o.tx_sent = Some(get("TX-packets"));
        o.iface_tx = Some(iface_tx);
        o.drops
            .insert("testpmd_tx_dropped".into(), get("TX-dropped"));
    }
    Ok(o)
}

/// Whether testpmd is installed (installing it when missing); `Err` is why not.
pub(super) fn testpmd_available() -> Result<(), String> {
    crate::setup::bench_dpdk_testpmd()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TESTPMD_OUT: &str = "\
Telling cores to stop...
Waiting for lcores to finish...

  ---------------------- Forward statistics for port 0  ----------------------
  RX-packets: 10             RX-dropped: 3             RX-total: 13
  TX-packets: 7              TX-dropped: 1             TX-total: 8
  ----------------------------------------------------------------------------

  +++++++++++++++ Accumulated forward statistics for all ports+++++++++++++++
  RX-packets: 99             RX-dropped: 0             RX-total: 99
  TX-packets: 0              TX-dropped: 0             TX-total: 0
  ++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++

Done.
";

    #[test]
    fn testpmd_forward_stats_of_port_0() {
        let s = forward_stats(TESTPMD_OUT).unwrap();
        assert_eq!(s["RX-packets"], 10);
        assert_eq!(s["RX-dropped"], 3);
        assert_eq!(s["TX-packets"], 7);
        assert_eq!(s["TX-dropped"], 1);
        assert_eq!(s["RX-total"], 13);
        assert!(forward_stats("EAL: Detected CPU lcores: 2\n").is_none());
    }

    #[test]
    fn veth_per_queue_counters_are_summed_by_name() {
        let s = parse_ethtool(
            "NIC statistics:\n     peer_ifindex: 2\n     rx_queue_0_xdp_drops: 5\n     \
             rx_queue_1_xdp_drops: 7\n     rx_queue_0_drops: 1\n     tx_queue_0_xdp_xmit: 9\n",
        );
        assert_eq!(per_queue_sum(&s, "xdp_drops"), 12);
        assert_eq!(per_queue_sum(&s, "drops"), 1);
        assert_eq!(per_queue_sum(&s, "xdp_xmit"), 0);
    }

    #[test]
    fn testpmd_runs_on_cpu_0_with_the_af_xdp_pmd() {
        let a = testpmd_args("xsbenchs", "5tswap").join(" ");
        assert!(a.contains("--lcores=(0,1)@0"), "{a}");
        assert!(
            a.contains("--vdev net_af_xdp0,iface=xsbenchs,start_queue=0,queue_count=1"),
            "{a}"
        );
        assert!(a.ends_with("--forward-mode=5tswap"), "{a}");
    }
}
