//! The doctor's MTU findings: the MTU against one UMEM frame and AF_XDP
//! multi-buffer (how many frames a packet takes, what the driver's native XDP
//! takes), and for a veth the peer's MTU against native XDP without frags.

use super::{Check, Planned, Verdict, VethPeer, check, ifinfo, max_mtu, xdp_act};

pub(super) fn mtu_check(iface: &str, planned: Planned, f: &std::io::Result<Option<u64>>) -> Check {
    match ifinfo::mtu(iface) {
        Ok(mtu) => {
            let rx_sg = match f {
                Ok(Some(f)) if f & xdp_act::BASIC != 0 => Some(f & xdp_act::RX_SG != 0),
                _ => None,
            };
            mtu_finding(iface, mtu, planned.frame_size, rx_sg)
        }
        Err(e) => check(
            "mtu",
            Verdict::Unknown,
            format!("reading the MTU failed: {e}"),
            None,
        ),
    }
}

/// The most buffers the kernel chains for one packet (`MAX_SKB_FRAGS` + 1:
/// the head and 17 frags); AF_XDP drops a packet that needs more.
pub const MAX_BUFFERS_PER_PACKET: u32 = 18;

/// Packet bytes one UMEM frame holds: the frame less the kernel's XDP headroom
/// (every buffer of a chain has its own).
fn frame_capacity(frame_size: u32) -> u32 {
    frame_size.saturating_sub(crate::frame::XDP_PACKET_HEADROOM)
}

/// UMEM frames a packet of the largest frame at `mtu` takes (Ethernet header
/// and two VLAN tags included, as [`max_mtu`] counts them).
pub fn frames_per_packet(mtu: u32, frame_size: u32) -> u32 {
    (mtu + super::super::L2_OVERHEAD).div_ceil(frame_capacity(frame_size).max(1))
}

/// What an interface's MTU means for a run with `frame_size`-byte frames:
/// one frame a packet, or AF_XDP multi-buffer (`--multi-buffer auto`, the
/// default, binds the sockets with `XDP_USE_SG` when one frame is too small),
/// and what still cannot work. `rx_sg`: whether the driver's native XDP
/// takes multi-buffer packets (`rx-sg`), when the kernel says.
fn mtu_finding(iface: &str, mtu: u32, frame_size: u32, rx_sg: Option<bool>) -> Check {
    let max = max_mtu(frame_size);
    if mtu <= max {
        return check(
            "mtu",
            Verdict::Ok,
            format!(
                "MTU {mtu} fits one {frame_size}-byte frame (at most {max}): no multi-buffer \
                 needed"
            ),
            None,
        );
    }
    let n = frames_per_packet(mtu, frame_size);
    let larger = if frame_size < 4096 && mtu <= max_mtu(4096) {
        " (--frame-size 4096 holds a packet in one frame)"
    } else {
        ""
    };
    if n > MAX_BUFFERS_PER_PACKET {
        // The largest MTU whose packets fit the kernel's longest chain.
        let most = (MAX_BUFFERS_PER_PACKET * frame_capacity(frame_size))
            .saturating_sub(super::super::L2_OVERHEAD);
        let lower = format!("`ip link set dev {iface} mtu {most}`");
        let fix = if frame_size < 4096 && frames_per_packet(mtu, 4096) <= MAX_BUFFERS_PER_PACKET {
            format!("--frame-size 4096, or {lower}")
        } else {
            lower
        };
        return check(
            "mtu",
            Verdict::Fail,
            format!(
                "MTU {mtu} needs {n} {frame_size}-byte frames a packet, more than the \
                 {MAX_BUFFERS_PER_PACKET} buffers the kernel chains for one packet: the largest \
                 packets would be dropped"
            ),
            Some(fix),
        );
    }
    let common = format!(
        "MTU {mtu} is more than one {frame_size}-byte frame holds (at most {max}): with \
         --multi-buffer auto (the default) the sockets bind with XDP_USE_SG and a packet spans \
         up to {n} frames{larger}; --multi-buffer off refuses this MTU"
    );
    match rx_sg {
        Some(false) => check(
            "mtu",
            Verdict::Warn,
            format!(
                "{common}; but the driver's native XDP has no multi-buffer (no rx-sg among its \
                 XDP features), so native mode cannot take packets larger than one buffer"
            ),
            Some(format!(
                "run with --xdp-mode skb (generic XDP takes them), or lower the MTU to {max} \
                 (`ip link set dev {iface} mtu {max}`){}",
                if larger.is_empty() {
                    ""
                } else {
                    ", or use --frame-size 4096"
                }
            )),
        ),
        _ => check(
            "mtu",
            Verdict::Ok,
            format!(
                "{common}. In zero-copy mode the driver may allow fewer buffers a packet (its \
                 xdp-zc-max-segs)"
            ),
            (!larger.is_empty()).then(|| {
                "--frame-size 4096 keeps each packet in one frame (no chains to assemble)".into()
            }),
        ),
    }
}

/// For a veth: the peer's MTU against what native XDP allows. A veth takes a
/// program without frags support natively only while its peer's MTU is at most
/// [`crate::stack::VETH_NATIVE_XDP_MAX_PEER_MTU`]; a frags-aware program (what
/// `--multi-buffer auto` and `on` load) has no such limit. And a frame larger
/// than our own MTU (`ours`) is dropped on receive, whatever the peer's.
pub(super) fn veth_mtu_finding(iface: &str, ours: Option<u32>, peer: &VethPeer) -> Check {
    const LIMIT: u32 = crate::stack::VETH_NATIVE_XDP_MAX_PEER_MTU;
    let dev = peer.ifname.as_deref().unwrap_or("PEER");
    let Some(peer_mtu) = peer.mtu else {
        return check(
            "veth-mtu",
            Verdict::Unknown,
            format!(
                "{iface} is a veth whose peer's MTU the kernel did not say: with --multi-buffer \
                 off, native XDP needs it to be at most {LIMIT}"
            ),
            None,
        );
    };
    let ip = match &peer.netns {
        Some(ns) => format!("ip -n {ns} link"),
        None => "ip link".to_string(),
    };
    let mismatch = ours.filter(|&m| m < peer_mtu).map(|m| {
        format!(
            "; frames from {dev} larger than {iface}'s own MTU {m} are dropped on receive (`ip \
             link set dev {iface} mtu {peer_mtu}` to take them)"
        )
    });
    if peer_mtu <= LIMIT {
        return check(
            "veth-mtu",
            if mismatch.is_some() {
                Verdict::Warn
            } else {
                Verdict::Ok
            },
            format!(
                "{iface} is a veth whose peer {dev} has MTU {peer_mtu} (at most {LIMIT}): native \
                 XDP attaches with any program{}",
                mismatch.clone().unwrap_or_default()
            ),
            mismatch.map(|_| format!("`ip link set dev {iface} mtu {peer_mtu}`")),
        );
    }
    check(
        "veth-mtu",
        if mismatch.is_some() {
            Verdict::Warn
        } else {
            Verdict::Ok
        },
        format!(
            "{iface} is a veth whose peer {dev} has MTU {peer_mtu}, above the {LIMIT} a veth \
             allows native XDP without frags: the frags-aware program of --multi-buffer auto \
             (the default) and on attaches natively; with --multi-buffer off the kernel refuses \
             native mode (\"Peer MTU is too large to set XDP\") and --xdp-mode auto falls back \
             to generic{}",
            mismatch.unwrap_or_default()
        ),
        Some(format!(
            "keep --multi-buffer auto; for --multi-buffer off in native mode lower the peer's \
             MTU (`{ip} set dev {dev} mtu {LIMIT}`)"
        )),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_a_packet_takes() {
        assert_eq!(frames_per_packet(1500, 2048), 1);
        assert_eq!(frames_per_packet(1770, 2048), 1, "max_mtu(2048)");
        assert_eq!(frames_per_packet(1771, 2048), 2);
        assert_eq!(frames_per_packet(3818, 4096), 1, "max_mtu(4096)");
        // 9000 + 22 bytes of L2 over 1792 (2048 less 256 of headroom) a frame.
        assert_eq!(frames_per_packet(9000, 2048), 6);
        assert_eq!(frames_per_packet(9000, 4096), 3);
        assert_eq!(frames_per_packet(65_535, 4096), MAX_BUFFERS_PER_PACKET);
        assert!(frames_per_packet(65_535, 2048) > MAX_BUFFERS_PER_PACKET);
    }

    #[test]
    fn mtu_against_one_frame_and_multi_buffer() {
        let fits = mtu_finding("xs0", 1770, 2048, Some(true));
        assert_eq!((fits.verdict, fits.fix.as_deref()), (Verdict::Ok, None));
        assert!(fits.finding.contains("no multi-buffer needed"), "{fits:?}");

        // One frame too small: multi-buffer in auto, or 4096-byte frames.
        let two = mtu_finding("xs0", 3000, 2048, Some(true));
        assert_eq!(two.verdict, Verdict::Ok, "{two:?}");
        for needle in ["XDP_USE_SG", "up to 2 frames", "--multi-buffer off refuses"] {
            assert!(two.finding.contains(needle), "`{needle}`: {two:?}");
        }
        assert!(two.fix.as_deref().unwrap().contains("--frame-size 4096"));

        // Jumbo: 4096-byte frames do not hold it either, so not advised.
        for (frame, n) in [(2048, 6), (4096, 3)] {
            let jumbo = mtu_finding("xs0", 9000, frame, None);
            assert_eq!(jumbo.verdict, Verdict::Ok, "{jumbo:?}");
            assert!(
                jumbo.finding.contains(&format!("up to {n} frames")),
                "{jumbo:?}"
            );
            assert!(!jumbo.finding.contains("--frame-size 4096"), "{jumbo:?}");
            assert_eq!(jumbo.fix, None);
            assert!(jumbo.finding.contains("xdp-zc-max-segs"), "{jumbo:?}");
        }

        // A driver whose native XDP has no multi-buffer: generic mode, or less.
        let no_sg = mtu_finding("eth7", 9000, 2048, Some(false));
        assert_eq!(no_sg.verdict, Verdict::Warn, "{no_sg:?}");
        assert!(no_sg.finding.contains("no rx-sg"), "{no_sg:?}");
        let fix = no_sg.fix.unwrap();
        assert!(fix.contains("--xdp-mode skb"), "{fix}");
        assert!(fix.contains("ip link set dev eth7 mtu 1770"), "{fix}");
        assert!(
            !fix.contains("--frame-size 4096"),
            "4096 does not hold 9000: {fix}"
        );
        let fix = mtu_finding("eth7", 3000, 2048, Some(false)).fix.unwrap();
        assert!(fix.contains("--frame-size 4096"), "{fix}");

        // More buffers than the kernel chains.
        let huge = mtu_finding("lo", 65_536, 2048, None);
        assert_eq!(huge.verdict, Verdict::Fail, "{huge:?}");
        let fix = huge.fix.unwrap();
        assert!(fix.starts_with("--frame-size 4096"), "{fix}");
        // 18 buffers of 1792 bytes, less Ethernet and two VLAN tags.
        assert!(fix.contains("ip link set dev lo mtu 32234"), "{fix}");
        assert_eq!(frames_per_packet(32_234, 2048), MAX_BUFFERS_PER_PACKET);
        assert!(frames_per_packet(32_235, 2048) > MAX_BUFFERS_PER_PACKET);
        let most = mtu_finding("lo", 65_536, 4096, None);
        assert_eq!(
            most.verdict,
            Verdict::Ok,
            "18 buffers of 3840 bytes: {most:?}"
        );
        assert!(most.finding.contains("up to 18 frames"), "{most:?}");
        for c in [fits, two] {
            assert!(!c.finding.contains('\n'));
        }
    }

    #[test]
    fn a_veth_peer_mtu_against_native_xdp_without_frags() {
        let peer = |mtu| VethPeer {
            name: "xs1 (in another network namespace)".into(),
            here: false,
            ifname: Some("xs1".into()),
            netns: Some("xsns".into()),
            tx_checksum: None,
            mtu,
        };
        let low = veth_mtu_finding("xs0", Some(1500), &peer(Some(1500)));
        assert_eq!((low.verdict, low.fix.as_deref()), (Verdict::Ok, None));
        let limit = veth_mtu_finding("xs0", Some(3506), &peer(Some(3506)));
        assert_eq!(limit.verdict, Verdict::Ok, "{limit:?}");

        let jumbo = veth_mtu_finding("xs0", Some(9000), &peer(Some(9000)));
        assert_eq!(jumbo.verdict, Verdict::Ok, "{jumbo:?}");
        for needle in [
            "above the 3506",
            "--multi-buffer off",
            "Peer MTU is too large",
        ] {
            assert!(jumbo.finding.contains(needle), "`{needle}`: {jumbo:?}");
        }
        assert!(
            jumbo
                .fix
                .unwrap()
                .contains("`ip -n xsns link set dev xs1 mtu 3506`")
        );

        // Our end smaller than the peer's: its large frames are dropped here.
        let mismatch = veth_mtu_finding("xs0", Some(1500), &peer(Some(9000)));
        assert_eq!(mismatch.verdict, Verdict::Warn, "{mismatch:?}");
        assert!(
            mismatch.finding.contains("dropped on receive"),
            "{mismatch:?}"
        );
        let unknown = veth_mtu_finding("xs0", None, &peer(None));
        assert_eq!(unknown.verdict, Verdict::Unknown);
    }
}
