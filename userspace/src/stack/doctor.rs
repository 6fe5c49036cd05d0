//! What an interface offers the stack, found out without changing anything
//! (`xdpstack doctor -i IF`), and the `--require`d features checked against it
//! before anything is loaded, so that a run never degrades without saying so
//! (to generic XDP, to copy mode, to sleeping instead of busy polling).
//!
//! Everything here asks the kernel (netlink, ethtool ioctls, rlimits,
//! `/proc/self/status`); nothing attaches a program or binds a socket, which
//! on many NICs would reset the rings.

use serde::Serialize;

mod mtu;

use super::max_mtu;
use crate::sys::{
    ifinfo,
    netlink::{self, LinkInfo, xdp_act},
};
use mtu::{mtu_check, veth_mtu_finding};

/// How a finding bears on running the stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// As it should be.
    Ok,
    /// Works, but not at its best, or a trap for the unwary.
    Warn,
    /// The stack cannot run as asked until it is fixed.
    Fail,
    /// The kernel could not say.
    Unknown,
}

/// One finding of the doctor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was looked at ("xdp", "zero-copy", "mtu", ...).
    pub topic: &'static str,
    /// How it stands.
    pub verdict: Verdict,
    /// What was found, in a sentence.
    pub finding: String,
    /// What to do about it, when something is to be done.
    pub fix: Option<String>,
}

fn check(topic: &'static str, verdict: Verdict, finding: String, fix: Option<String>) -> Check {
    Check {
        topic,
        verdict,
        finding,
        fix,
    }
}

/// What the doctor is told of the intended run.
#[derive(Clone, Copy, Debug)]
pub struct Planned {
    /// Bytes per UMEM frame (`--frame-size`).
    pub frame_size: u32,
    /// Frames per queue (`--frames`).
    pub frames: u32,
}

/// The doctor's error: only an interface that is not there stops it.
#[derive(Debug, thiserror::Error)]
#[error(
    "interface {0} not found (see `ip link`; in another namespace: `ip netns exec NS xdpstack doctor -i {0}`)"
)]
pub struct NoInterface(pub String);

/// Every finding about `iface`, in a fixed order.
pub fn diagnose(iface: &str, planned: Planned) -> Result<Vec<Check>, NoInterface> {
    let index = ifinfo::if_index(iface).ok_or_else(|| NoInterface(iface.to_string()))?;
    let link = netlink::link_info(index).ok();
    let driver = ifinfo::driver(iface).ok().filter(|d| !d.is_empty());
    let features = netlink::xdp_features(index);
    let mut out = Vec::new();
    let up = ifinfo::is_up(iface).unwrap_or(false);
    out.push(if up {
        check(
            "link",
            Verdict::Ok,
            format!(
                "{iface} is up (driver {}, link kind {})",
                driver.as_deref().unwrap_or("none reported"),
                link.as_ref()
                    .and_then(|l| l.kind.as_deref())
                    .unwrap_or("none: a device")
            ),
            None,
        )
    } else {
        check(
            "link",
            Verdict::Fail,
            format!("{iface} is down"),
            Some(format!("ip link set dev {iface} up")),
        )
    });
    out.push(xdp_mode_check(iface, driver.as_deref(), &features));
    out.push(zero_copy_check(iface, driver.as_deref(), &features));
    out.push(queues_check(iface));
    out.push(ntuple_check(iface));
    out.push(foreign_check(iface, link.as_ref()));
    out.push(mtu_check(iface, planned, &features));
    out.push(memlock_check(iface, planned));
    out.push(capabilities_check());
    out.push(busy_poll_check(iface, index));
    if let Some(c) = veth_checksum_check(iface, link.as_ref()) {
        out.push(c);
    }
    if let Some(peer) = link.as_ref().and_then(veth_peer_of) {
        out.push(veth_mtu_finding(iface, ifinfo::mtu(iface).ok(), &peer));
    }
    Ok(out)
}

fn feature_text(f: u64) -> String {
    let names = xdp_act::names(f);
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

fn xdp_mode_check(iface: &str, driver: Option<&str>, f: &std::io::Result<Option<u64>>) -> Check {
    let driver = driver.unwrap_or("(none reported)");
    match f {
        Ok(Some(f)) if f & xdp_act::BASIC != 0 && f & xdp_act::REDIRECT != 0 => check(
            "xdp",
            Verdict::Ok,
            format!(
                "native (driver) XDP with redirect: the driver {driver} declares {}",
                feature_text(*f)
            ),
            None,
        ),
        Ok(Some(f)) => check(
            "xdp",
            Verdict::Warn,
            format!(
                "generic (skb) XDP only: the driver {driver} declares no native XDP with \
                 redirect ({}); xdpstack runs, slower, in generic mode",
                feature_text(*f)
            ),
            Some(format!(
                "use an interface whose driver has native XDP; on {iface} run with \
                 --xdp-mode skb (or auto); --require drv refuses it"
            )),
        ),
        Ok(None) => check(
            "xdp",
            Verdict::Unknown,
            "the kernel has no netdev netlink family (Linux 6.3+) to say which XDP the \
             driver has"
                .into(),
            Some("--xdp-mode drv fails at start when there is no native XDP".into()),
        ),
        Err(e) => check(
            "xdp",
            Verdict::Unknown,
            format!("asking the kernel for the XDP features failed: {e}"),
            None,
        ),
    }
}

fn zero_copy_check(iface: &str, driver: Option<&str>, f: &std::io::Result<Option<u64>>) -> Check {
    let driver = driver.unwrap_or("(none reported)");
    match f {
        Ok(Some(f)) if f & xdp_act::XSK_ZEROCOPY != 0 => check(
            "zero-copy",
            Verdict::Ok,
            format!("AF_XDP zero-copy available (driver {driver})"),
            None,
        ),
        Ok(Some(_)) => check(
            "zero-copy",
            Verdict::Warn,
            format!(
                "no AF_XDP zero-copy: the driver {driver} lacks xsk-zerocopy, so every \
                 frame is copied into the UMEM (copy mode)"
            ),
            Some(format!(
                "for zero-copy use a NIC whose driver has it (i40e, ice, ixgbe, mlx5, igc, \
                 ...); on {iface} run with --zero-copy auto or off; --require zero-copy \
                 refuses it"
            )),
        ),
        Ok(None) | Err(_) => check(
            "zero-copy",
            Verdict::Unknown,
            "the kernel cannot say (no netdev netlink family, Linux 6.3+)".into(),
            Some("--zero-copy on fails at start when there is none".into()),
        ),
    }
}

fn queues_check(iface: &str) -> Check {
    match ifinfo::rx_queues(iface) {
        Ok(n) => check(
            "queues",
            Verdict::Ok,
            format!("{n} RX queue(s): --queues all opens {n} socket(s) and poller(s)"),
            (n > 1).then(|| {
                format!(
                    "flows land on queues by RSS; steer yours with ntuple rules \
                     (`ethtool -N {iface} flow-type udp4 dst-port P action Q`) or serve every queue"
                )
            }),
        ),
        Err(e) => check(
            "queues",
            Verdict::Unknown,
            format!("ethtool -l failed: {e}"),
            None,
        ),
    }
}

fn ntuple_check(iface: &str) -> Check {
    if ifinfo::rx_queues(iface).unwrap_or(1) == 1 {
        return check(
            "ntuple",
            Verdict::Ok,
            "one RX queue: every flow lands on it, there is nothing to steer".into(),
            None,
        );
    }
    match ifinfo::ntuple(iface) {
        Ok(true) => check(
            "ntuple",
            Verdict::Ok,
            "ntuple filters on: flows can be steered to a queue".into(),
            None,
        ),
        Ok(false) => check(
            "ntuple",
            Verdict::Warn,
            "ntuple filters off: flows go to queues by RSS only".into(),
            Some(format!("ethtool -K {iface} ntuple on")),
        ),
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => check(
            "ntuple",
            Verdict::Ok,
            "the driver has no ntuple filters (nothing to steer with; serve every queue)".into(),
            None,
        ),
        Err(e) => check(
            "ntuple",
            Verdict::Unknown,
            format!("ethtool -k failed: {e}"),
            None,
        ),
    }
}

fn foreign_check(iface: &str, link: Option<&LinkInfo>) -> Check {
    let Some(link) = link else {
        return check(
            "program",
            Verdict::Unknown,
            "rtnetlink did not answer".into(),
            None,
        );
    };
    let mode = match link.xdp_attached {
        0 => {
            return check(
                "program",
                Verdict::Ok,
                "no XDP program attached".into(),
                None,
            );
        }
        1 => "driver",
        2 => "generic",
        3 => "offloaded",
        _ => "several modes",
    };
    check(
        "program",
        Verdict::Fail,
        format!(
            "an XDP program (id {}) is attached in {mode} mode: xdpstack refuses to replace it",
            link.xdp_prog_id
        ),
        Some(format!(
            "see it with `bpftool net show dev {iface}`; if it is not needed, `ip link set dev \
             {iface} xdp off`"
        )),
    )
}

/// The effective capability set of this process (`CapEff`).
fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;
const CAP_IPC_LOCK: u32 = 14;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

fn memlock_check(iface: &str, planned: Planned) -> Check {
    let queues = u64::from(ifinfo::rx_queues(iface).unwrap_or(1));
    let need = queues * u64::from(planned.frames) * u64::from(planned.frame_size);
    let ipc_lock = effective_caps().is_some_and(|c| c & (1 << CAP_IPC_LOCK) != 0);
    let limit = crate::sys::process::memlock_limit();
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    match limit {
        Some(libc::RLIM_INFINITY) => check(
            "memlock",
            Verdict::Ok,
            "locked-memory limit unlimited".into(),
            None,
        ),
        Some(_) if ipc_lock => check(
            "memlock",
            Verdict::Ok,
            "CAP_IPC_LOCK: the locked-memory limit does not apply".into(),
            None,
        ),
        Some(l) if l >= need => check(
            "memlock",
            Verdict::Ok,
            format!(
                "locked-memory limit {:.1} MiB covers {queues} UMEM(s) of {:.1} MiB",
                mib(l),
                mib(need / queues)
            ),
            None,
        ),
        Some(l) => check(
            "memlock",
            Verdict::Fail,
            format!(
                "locked-memory limit {:.1} MiB is less than the {:.1} MiB of {queues} UMEM(s)",
                mib(l),
                mib(need)
            ),
            Some("`ulimit -l unlimited`, run as root, or fewer --frames".into()),
        ),
        None => check("memlock", Verdict::Unknown, "getrlimit failed".into(), None),
    }
}

fn capabilities_check() -> Check {
    let Some(caps) = effective_caps() else {
        return check(
            "capabilities",
            Verdict::Unknown,
            "/proc/self/status unreadable".into(),
            None,
        );
    };
    let has = |c: u32| caps & (1u64 << c) != 0;
    let mut missing = Vec::new();
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    if !has(CAP_NET_RAW) {
        missing.push("CAP_NET_RAW");
    }
    if missing.is_empty() {
        check(
            "capabilities",
            Verdict::Ok,
            "CAP_BPF, CAP_NET_ADMIN and CAP_NET_RAW present (dropped after setup)".into(),
            None,
        )
    } else {
        check(
            "capabilities",
            Verdict::Fail,
            format!("missing {}", missing.join(", ")),
            Some("run as root (or grant CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW)".into()),
        )
    }
}

fn busy_poll_check(iface: &str, index: u32) -> Check {
    match netlink::rx_queue_napi_id(index, 0) {
        Ok(Some(0)) => check(
            "busy-poll",
            Verdict::Warn,
            "RX queue 0 has no NAPI id, so --busy-poll has nothing to run (it falls back to \
             sleeping in poll(2); --require busy-poll refuses it)"
                .into(),
            Some(format!(
                "busy polling needs a NIC driver with NAPI per queue; on {iface} leave --busy-poll off"
            )),
        ),
        Ok(Some(id)) => check(
            "busy-poll",
            Verdict::Ok,
            format!("RX queue 0 has NAPI id {id}: --busy-poll can run its NAPI poll"),
            None,
        ),
        Ok(None) | Err(_) => check(
            "busy-poll",
            Verdict::Unknown,
            "the kernel cannot say which NAPI serves the queues (netdev queue-get, Linux 6.8+)"
                .into(),
            None,
        ),
    }
}

/// For a veth: how its peer is named, and whether the peer is known to keep
/// TX checksum offload on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VethPeer {
    /// The peer's name, or how to find it when it is in another namespace.
    pub name: String,
    /// Whether the peer's name is one `ethtool` takes in this namespace.
    pub here: bool,
    /// The peer's interface name, wherever it is, when known.
    pub ifname: Option<String>,
    /// The name of the peer's network namespace (`ip netns`), when it is in
    /// another one that has a name.
    pub netns: Option<String>,
    /// The peer's TX checksum offload, when the peer is in this namespace.
    pub tx_checksum: Option<bool>,
    /// The peer's MTU, when rtnetlink says it (in this namespace or another).
    pub mtu: Option<u32>,
}

/// The peer of `iface` when `iface` is a veth; `None` otherwise.
pub fn veth_peer(iface: &str) -> Option<VethPeer> {
    let link = netlink::link_info(ifinfo::if_index(iface)?).ok()?;
    veth_peer_of(&link)
}

fn veth_peer_of(link: &LinkInfo) -> Option<VethPeer> {
    if link.kind.as_deref() != Some("veth") {
        return None;
    }
    let peer = link.link.filter(|&i| i != 0);
    Some(match (peer, link.link_netnsid) {
        (Some(i), None) => match ifinfo::if_name(i) {
            Some(name) => VethPeer {
                tx_checksum: ifinfo::tx_checksum_offload(&name).ok(),
                mtu: ifinfo::mtu(&name).ok(),
                ifname: Some(name.clone()),
                netns: None,
                name,
                here: true,
            },
            None => VethPeer {
                name: format!("PEER (ifindex {i})"),
                here: false,
                ifname: None,
                netns: None,
                tx_checksum: None,
                mtu: None,
            },
        },
        (Some(i), Some(ns)) => {
            let info = netlink::link_info_in(i, Some(ns)).ok();
            let ifname = info
                .as_ref()
                .map(|peer| peer.name.clone())
                .filter(|n| !n.is_empty());
            VethPeer {
                name: match &ifname {
                    Some(n) => format!("{n} (in another network namespace)"),
                    None => format!("(ifindex {i} in another network namespace)"),
                },
                here: false,
                ifname,
                netns: netlink::netns_name(ns),
                tx_checksum: None,
                mtu: info.and_then(|peer| peer.mtu),
            }
        }
        (None, _) => VethPeer {
            name: "PEER".into(),
            here: false,
            ifname: None,
            netns: None,
            tx_checksum: None,
            mtu: None,
        },
    })
}

/// The explanation for a veth whose UDP rejects are all bad checksums: a
/// sentence, the fix at its end.
pub fn veth_checksum_explanation(iface: &str, peer: &VethPeer) -> String {
    format!(
        "{iface} is a veth, and its peer {} keeps TX checksum offload on (the default): a \
         kernel socket there sends UDP with a checksum left for the hardware to finish \
         (CHECKSUM_PARTIAL), which nothing on a veth ever finishes, so XDP and xdpstack see \
         it unfinished and reject the datagrams as bad_udp_checksum; a real NIC puts full \
         checksums on the wire. Fix: {}",
        peer.name,
        checksum_fix(peer)
    )
}

/// The command that turns the peer's TX checksum offload off.
fn checksum_fix(peer: &VethPeer) -> String {
    let name = peer.ifname.as_deref().unwrap_or("PEER");
    match (&peer.netns, peer.here) {
        (_, true) => format!("`ethtool -K {name} tx off`"),
        (Some(ns), false) => format!("`ip netns exec {ns} ethtool -K {name} tx off`"),
        (None, false) => format!(
            "`ethtool -K {name} tx off` in the peer's namespace (`ip netns exec NS ethtool -K \
             {name} tx off`)"
        ),
    }
}

fn veth_checksum_check(iface: &str, link: Option<&LinkInfo>) -> Option<Check> {
    let peer = veth_peer_of(link?)?;
    Some(match peer.tx_checksum {
        Some(false) => check(
            "checksum",
            Verdict::Ok,
            format!(
                "{iface} is a veth whose peer {} has TX checksum offload off: kernel \
                 sockets there send finished UDP checksums",
                peer.name
            ),
            None,
        ),
        Some(true) => check(
            "checksum",
            Verdict::Warn,
            veth_checksum_explanation(iface, &peer),
            Some(checksum_fix(&peer)),
        ),
        None => check(
            "checksum",
            Verdict::Warn,
            format!(
                "{iface} is a veth whose peer {} is in another network namespace: if the peer \
                 keeps TX checksum offload on (the default), UDP from a kernel socket there \
                 arrives with an unfinished checksum and is rejected as bad_udp_checksum",
                peer.ifname.as_deref().unwrap_or("PEER")
            ),
            Some(checksum_fix(&peer)),
        ),
    })
}

/// A feature a run must have, or fail at start (`--require`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Requirement {
    /// AF_XDP zero-copy, not copy mode.
    ZeroCopy,
    /// Native (driver) XDP, not generic mode.
    Drv,
    /// Busy polling that runs the driver's NAPI poll.
    BusyPoll,
}

impl Requirement {
    /// Its `--require` name.
    pub fn name(self) -> &'static str {
        match self {
            Requirement::ZeroCopy => "zero-copy",
            Requirement::Drv => "drv",
            Requirement::BusyPoll => "busy-poll",
        }
    }
}

/// A `--require`d feature the interface cannot give: the message names it,
/// says why, and what to do.
#[derive(Debug, thiserror::Error)]
#[error("--require {}: {why}", .what.name())]
pub struct Unmet {
    /// The requirement.
    pub what: Requirement,
    /// Why it cannot be had, and the fix.
    pub why: String,
}

/// Check each of `required` on `iface` (and its RX `queues`, for busy
/// polling), before anything is loaded. A feature the kernel cannot tell
/// about passes here; the strict options the caller sets with it
/// (`--zero-copy on`, `--xdp-mode drv`) still fail at start without it.
pub fn check_requirements(
    iface: &str,
    queues: &[u32],
    required: &[Requirement],
) -> Result<(), Unmet> {
    let Some(index) = ifinfo::if_index(iface) else {
        return Ok(()); // the stack says "not found" itself
    };
    let driver = ifinfo::driver(iface).unwrap_or_else(|_| "unknown".into());
    let features = netlink::xdp_features(index).ok().flatten();
    for &what in required {
        let unmet = |why: String| Err(Unmet { what, why });
        match what {
            Requirement::ZeroCopy => {
                if let Some(f) = features
                    && f & xdp_act::XSK_ZEROCOPY == 0
                {
                    return unmet(format!(
                        "{iface} (driver {driver}) has no AF_XDP zero-copy (its XDP features: \
                         {}), so it would run in copy mode; use a NIC whose driver has it \
                         (i40e, ice, ixgbe, mlx5, igc, ...) or drop --require zero-copy",
                        feature_text(f)
                    ));
                }
            }
            Requirement::Drv => {
                if let Some(f) = features
                    && (f & xdp_act::BASIC == 0 || f & xdp_act::REDIRECT == 0)
                {
                    return unmet(format!(
                        "{iface} (driver {driver}) has no native XDP with redirect (its XDP \
                         features: {}), so it would run in generic (skb) mode; use a NIC \
                         whose driver has it or drop --require drv",
                        feature_text(f)
                    ));
                }
            }
            Requirement::BusyPoll => {
                for &q in queues {
                    if let Ok(Some(0)) = netlink::rx_queue_napi_id(index, q) {
                        return unmet(format!(
                            "RX queue {q} of {iface} (driver {driver}) has no NAPI id, so busy \
                             polling would have no NAPI poll to run and xdpstack would sleep \
                             in poll(2) instead; busy polling needs a NIC driver with NAPI \
                             per queue: drop --require busy-poll here"
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_generic_xdp_only_and_no_program() {
        let checks = diagnose(
            "lo",
            Planned {
                frame_size: 2048,
                frames: 4096,
            },
        )
        .unwrap();
        let get = |t| checks.iter().find(|c| c.topic == t).unwrap();
        assert_eq!(get("program").verdict, Verdict::Ok);
        assert_eq!(
            get("mtu").verdict,
            Verdict::Fail,
            "65536 needs more 2048-byte frames than the kernel chains for a packet"
        );
        assert!(get("mtu").fix.is_some());
        assert!(checks.iter().all(|c| c.topic != "checksum"), "not a veth");
        if get("xdp").verdict != Verdict::Unknown {
            assert_eq!(get("xdp").verdict, Verdict::Warn);
            assert_eq!(get("zero-copy").verdict, Verdict::Warn);
        }
        assert!(
            diagnose(
                "xs-no-such-if",
                Planned {
                    frame_size: 2048,
                    frames: 64
                }
            )
            .is_err()
        );
    }

    #[test]
    fn a_veth_peer_is_named_when_it_is_here() {
        let other_ns = LinkInfo {
            kind: Some("veth".into()),
            link: Some(7),
            link_netnsid: Some(0),
            ..LinkInfo::default()
        };
        let mut peer = veth_peer_of(&other_ns).unwrap();
        assert!(!peer.here);
        // Whatever this machine's namespaces are: the text for each case.
        peer.ifname = None;
        peer.netns = None;
        let text = veth_checksum_explanation("xs0", &peer);
        assert!(text.contains("ethtool -K PEER tx off"), "{text}");
        peer.ifname = Some("xs1".into());
        let text = veth_checksum_explanation("xs0", &peer);
        assert!(
            text.contains("`ip netns exec NS ethtool -K xs1 tx off`"),
            "{text}"
        );
        peer.netns = Some("xsns".into());
        let text = veth_checksum_explanation("xs0", &peer);
        assert!(
            text.contains("Fix: `ip netns exec xsns ethtool -K xs1 tx off`"),
            "{text}"
        );
        assert!(!text.contains('\n'));
        assert_eq!(veth_peer_of(&LinkInfo::default()), None, "not a veth");
    }

    #[test]
    fn requirements_on_loopback() {
        let err = check_requirements("lo", &[0], &[Requirement::ZeroCopy]);
        if netlink::xdp_features(1).ok().flatten().is_some() {
            let msg = err.unwrap_err().to_string();
            assert!(msg.starts_with("--require zero-copy: lo "), "{msg}");
            assert!(!msg.contains('\n'));
        }
        assert!(check_requirements("lo", &[0], &[]).is_ok());
    }
}
