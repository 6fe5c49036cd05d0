//! The generator's errors; each names the thing and the fix.

use std::io;

use super::limits::{MAX_BATCH, MAX_PAYLOAD, MIN_PAYLOAD};
use crate::loader::{LiveRunError, LoadError};

/// Errors of the generator; each names the thing and the fix.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// A MAC address that does not parse.
    #[error("bad MAC address {0:?}: expected six hex bytes such as 02:00:00:00:00:01")]
    BadMac(String),
    /// Payload out of range.
    #[error(
        "a UDP payload of {0} bytes is out of range: {MIN_PAYLOAD}..={MAX_PAYLOAD} bytes \
         (64- to 1514-byte frames on the wire)"
    )]
    Payload(usize),
    /// The frame does not fit the interface's MTU.
    #[error(
        "a UDP payload of {payload} bytes does not fit the MTU of {iface} ({mtu}): \
         at most {} bytes", mtu.saturating_sub(28)
    )]
    Mtu {
        /// The interface.
        iface: String,
        /// The payload asked for.
        payload: usize,
        /// The interface's MTU.
        mtu: u32,
    },
    /// No flows, or flows past port 65535.
    #[error(
        "{flows} flows from source port {src_port}: at least one is needed, and the last port is 65535"
    )]
    Flows {
        /// Flows asked for.
        flows: u16,
        /// First source port.
        src_port: u16,
    },
    /// Neither a count nor a duration.
    #[error("the generator needs a bound: a count (-c N), a duration (--duration S), or both")]
    Unbounded,
    /// Batch size out of range.
    #[error("a batch of {0} frames is out of range: 1..={MAX_BATCH}")]
    Batch(u32),
    /// The same CPU twice.
    #[error("CPU {0} is listed twice; one sending thread per CPU")]
    DuplicateCpu(usize),
    /// No such interface.
    #[error("interface {0} not found in this network namespace (see `ip link`)")]
    UnknownInterface(String),
    /// The interface has no address to send from.
    #[error("interface {0} has no IPv4 address: give the source address (--src)")]
    NoSourceAddress(String),
    /// The interface has no MAC address.
    #[error("interface {0} has no Ethernet address: give the source MAC (--src-mac)")]
    NoSourceMac(String),
    /// Reading the interface's addresses or MTU failed.
    #[error("reading the addresses and MTU of {iface}: {source}")]
    Interface {
        /// The interface.
        iface: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Reading the interface's counters failed.
    #[error("reading the counters of {iface} ({path}): {source}")]
    Counters {
        /// The interface.
        iface: String,
        /// The file read.
        path: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// `/sys` shows another network namespace than the calling thread's.
    #[error(
        "/sys/class/net/{0} belongs to another network namespace than this process: \
         run the generator with `ip netns exec NS`, which mounts that namespace's /sys"
    )]
    ForeignSysfs(String),
    /// Pinning a thread failed.
    #[error("pinning a sending thread to CPU {cpu}: {source}")]
    Pin {
        /// The CPU.
        cpu: usize,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Loading or reading the XDP program failed (privileges, verifier, maps).
    #[error(transparent)]
    Loader(#[from] LoadError),
    /// The kernel refused a live-frames run.
    #[error(transparent)]
    Run(#[from] LiveRunError),
    /// The interface transmitted none of the probe frames.
    #[error(
        "{iface} transmitted none of the {runs} probe frames ({dropped} counted as dropped): \
         a veth takes XDP frames only when its peer has NAPI, i.e. an XDP program attached \
         there (start the receiver first) or GRO on (`ethtool -K PEER gro on` in the peer's \
         namespace); other drivers need XDP redirect support (ndo_xdp_xmit); and the \
         interface must be up, with an MTU that takes {frame_len}-byte frames"
    )]
    PeerNotReady {
        /// The interface.
        iface: String,
        /// Probe frames sent.
        runs: u64,
        /// Probe frames the interface counted as dropped.
        dropped: u64,
        /// Frame length.
        frame_len: usize,
    },
}
