//! `steer`: the XDP program's `classify` and `udp_destination` (xdp-ebpf/src/steer.rs,
//! compiled for the host: the very code the kernel runs) on arbitrary frames, under
//! a mode and a port set taken from the input.
//!
//! Input layout ([`Input::decode`]): one flags byte (bit 0: `SteerMode::All`; bits
//! 1-3: the number of ports, 0-7), the ports (big-endian `u16` each), then the
//! frame, destination MAC first.
//!
//! Properties, beyond "never panics":
//! 1. The rules of `classify`: in `All` mode every frame is steered; in `Udp` mode a
//!    frame is steered exactly when `udp_destination` finds a UDP destination port
//!    that is in the set, passed as `pass_not_steered` when it finds none or one not
//!    in the set, and otherwise passed with the counter `udp_destination` names,
//!    which is a verdict counter (never `seen`, `redirected`, `pass_no_socket`).
//! 2. What is steered is UDP to the set: in `Udp` mode, etherparse finds in every
//!    steered frame a UDP datagram to a port in the set, or the first fragment of
//!    one (steer.rs steers first fragments by their UDP header; etherparse slices
//!    no transport layer of a fragment, so the port is read from the fragment's
//!    first bytes). The divergences the corpus once found (a Hop-by-Hop header not
//!    first, an 8-octet AH) are fixed in steer.rs, so they are not allowed here.
//! 3. What must be steered is: a frame etherparse parses as a whole, well-formed UDP
//!    datagram (strict lengths, not a fragment) to a port in the set is steered in
//!    `Udp` mode, unless it is one of steer.rs's documented exclusions: a third VLAN
//!    tag or MACsec, UDP behind an AH (the kernel's to authenticate), an IPv6
//!    payload length of 0 (jumbograms), more than `MAX_IPV6_EXT_HEADERS` extension
//!    headers or headers beyond `MAX_HEADER_BYTES`, a UDP length of 0 (etherparse
//!    reads the rest of the IP payload).
//! 4. Padding is not packet: a frame that holds its whole IP packet gets the same
//!    `udp_destination` with the bytes after the packet cut off or inverted.

use etherparse::{Ipv6ExtensionSlice, LinkExtSlice, NetSlice, SlicedPacket, TransportSlice};
use xdp_ebpf::steer::udp_destination;
use xdp_ebpf::{
    Counter, MAX_HEADER_BYTES, MAX_IPV6_EXT_HEADERS, MAX_VLAN_TAGS, SteerMode, Verdict, classify,
};

use crate::{be16, ip_end, padding_variants};

/// Most ports an input names: enough for "in the set" and "next to one in the set".
pub const MAX_PORTS: usize = 7;

/// One input: a mode, a port set and a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Input<'a> {
    /// `SteerMode::All` instead of `SteerMode::Udp`.
    pub all: bool,
    /// The port set (at most [`MAX_PORTS`]).
    pub ports: Vec<u16>,
    /// The frame.
    pub frame: &'a [u8],
}

impl<'a> Input<'a> {
    /// Reads an input; any bytes are one (short inputs have fewer ports and an
    /// empty frame).
    pub fn decode(data: &'a [u8]) -> Self {
        let Some((&flags, mut rest)) = data.split_first() else {
            return Self {
                all: false,
                ports: Vec::new(),
                frame: &[],
            };
        };
        let wanted = usize::from(flags >> 1) & 7;
        let mut ports = Vec::with_capacity(wanted);
        while ports.len() < wanted
            && let Some(p) = be16(rest, 0)
        {
            ports.push(p);
            rest = &rest[2..];
        }
        Self {
            all: flags & 1 != 0,
            ports,
            frame: rest,
        }
    }

    /// The bytes [`Input::decode`] reads back as this input.
    ///
    /// # Panics
    /// With more than [`MAX_PORTS`] ports.
    pub fn encode(&self) -> Vec<u8> {
        assert!(self.ports.len() <= MAX_PORTS);
        let mut out = vec![u8::from(self.all) | (self.ports.len() as u8) << 1];
        for p in &self.ports {
            out.extend_from_slice(&p.to_be_bytes());
        }
        out.extend_from_slice(self.frame);
        out
    }
}

/// Runs every check on one input.
pub fn check(data: &[u8]) {
    let input = Input::decode(data);
    let frame = input.frame;
    let in_set = |p: u16| input.ports.contains(&p);
    let ctx = || format!("\n  ports {:?}, frame: {frame:02x?}", input.ports);

    // Property 1.
    let dest = udp_destination(frame);
    let verdict = classify(frame, SteerMode::Udp, in_set);
    let expected = match dest {
        Ok(Some(port)) if in_set(port) => Verdict::Steer,
        Ok(_) => Verdict::Pass(Counter::PassNotSteered),
        Err(counter) => {
            assert!(
                !matches!(
                    counter,
                    Counter::Seen
                        | Counter::Redirected
                        | Counter::PassNoSocket
                        | Counter::PassNotSteered
                ),
                "udp_destination gave {counter:?}{}",
                ctx()
            );
            Verdict::Pass(counter)
        }
    };
    assert_eq!(
        verdict,
        expected,
        "classify vs udp_destination {dest:?}{}",
        ctx()
    );
    if input.all {
        assert_eq!(
            classify(frame, SteerMode::All, in_set),
            Verdict::Steer,
            "All mode{}",
            ctx()
        );
    }

    // Properties 2 and 3.
    if verdict == Verdict::Steer
        && let Err(e) = etherparse_finds_udp_to(frame, in_set)
    {
        panic!("classify steers, etherparse disagrees: {e}{}", ctx());
    }
    if let Some(port) = etherparse_whole_udp(frame)
        && in_set(port)
    {
        assert_eq!(
            verdict,
            Verdict::Steer,
            "etherparse finds well-formed UDP to port {port}{}",
            ctx()
        );
    }

    // Property 4.
    if let Some(end) = ip_end(frame) {
        for variant in padding_variants(frame, end) {
            assert_eq!(
                udp_destination(&variant[..]),
                dest,
                "the padding after byte {end} changed the result{}",
                ctx()
            );
        }
    }
}

/// Property 2's oracle: `Ok` when etherparse finds UDP to a port in the set in
/// `frame`, or the first fragment of one.
fn etherparse_finds_udp_to(frame: &[u8], in_set: impl Fn(u16) -> bool) -> Result<(), String> {
    let p = SlicedPacket::from_ethernet(frame).map_err(|e| format!("etherparse: {e:?}"))?;
    match &p.transport {
        Some(TransportSlice::Udp(u)) if in_set(u.destination_port()) => Ok(()),
        None => match p.ip_payload() {
            Some(ip)
                if ip.fragmented
                    && ip.ip_number == etherparse::IpNumber::UDP
                    && ip.payload.len() >= 8
                    && be16(ip.payload, 2).is_some_and(&in_set) =>
            {
                Ok(())
            }
            other => Err(format!("no UDP to the port set, IP payload {other:?}")),
        },
        Some(other) => Err(format!("transport {other:?}")),
    }
}

/// Property 3's oracle: the destination port of the whole, well-formed UDP datagram
/// etherparse finds in `frame`, unless steer.rs excludes it by design.
fn etherparse_whole_udp(frame: &[u8]) -> Option<u16> {
    let p = SlicedPacket::from_ethernet(frame).ok()?;
    let Some(TransportSlice::Udp(u)) = &p.transport else {
        return None;
    };
    if p.link_exts.len() > MAX_VLAN_TAGS
        || p.link_exts
            .iter()
            .any(|e| !matches!(e, LinkExtSlice::Vlan(_)))
        || u.length() == 0
    {
        return None;
    }
    let l3 = 14 + 4 * p.link_exts.len();
    match &p.net {
        Some(NetSlice::Ipv4(ip)) if ip.extensions().auth.is_none() => {}
        Some(NetSlice::Ipv6(ip)) => {
            let exts = ip.extensions();
            let mut count = 0;
            for ext in exts.clone() {
                count += 1;
                if matches!(ext, Ipv6ExtensionSlice::Authentication(_)) {
                    return None;
                }
            }
            if ip.header().payload_length() == 0
                || count > MAX_IPV6_EXT_HEADERS
                || l3 + 40 + exts.slice().len() > MAX_HEADER_BYTES
            {
                return None;
            }
        }
        _ => return None,
    }
    Some(u.destination_port())
}
