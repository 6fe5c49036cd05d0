//! `xdpstack-gen`: the project's own UDP traffic generator, for the benchmarks.
//!
//! Like xdp-trafficgen, it never builds a packet per send. The XDP program
//! `xdpstack_gen` (crate `xdpstack-bench-ebpf`) runs through
//! `BPF_PROG_TEST_RUN` with `BPF_F_TEST_XDP_LIVE_FRAMES` on one template frame:
//! the kernel copies the template into page-pool pages, runs the program on each
//! (it stamps the flow's UDP source port) and transmits every frame it returns
//! `XDP_TX` for out of the interface, as the driver's `ndo_xdp_xmit` would for a
//! redirect. One syscall sends up to millions of frames, in batches of
//! [`GenConfig::batch`] with a flush after each.
//!
//! What was really sent is read from the interface's own counters, not assumed:
//! on a veth, a frame counts in `tx_packets` once the peer's NAPI has taken it from
//! its ring, and in `tx_dropped` when the peer's ring was full
//! (`drivers/net/veth.c`). So for a run, `runs` (frames the program handled) =
//! `packets` + `dropped` + `dropped_in_program` + frames whose redirect failed
//! before reaching the driver (counted nowhere), give or take frames the kernel
//! sends on its own over the same interface (ARP, neighbour discovery):
//! [`GenReport::unaccounted`] shows the difference.
//!
//! veth specifics that shape a benchmark (kernel 6.x):
//! - A veth accepts XDP frames only when its *peer* (the receiving end) has NAPI
//!   enabled: an XDP program attached there, or GRO on (`ethtool -K PEER gro on`).
//!   Otherwise the veth lacks the `NDO_XMIT` XDP feature, the redirect fails before
//!   the driver and the frames vanish without a counter (older kernels counted
//!   them in `tx_dropped`). The generator sends a few probe frames first and fails
//!   with [`GenError::PeerNotReady`] when none was transmitted. If the receiver
//!   detaches its XDP program mid-run, the rest vanish the same way: `unaccounted`.
//! - The receiving RX queue is `sending CPU % RX queues`, not a flow hash: one
//!   sending CPU feeds one RX queue, whatever [`GenConfig::flows`] says. Sending
//!   from several CPUs ([`GenConfig::cpus`]) spreads the load over queues.
//! - The peer's NAPI is scheduled on the sending CPU, so the receiving side's
//!   softirq work (XDP program, AF_XDP copy, or the kernel's UDP receive path)
//!   runs on the generator's core, inside its syscall, after each batch: the
//!   generator then goes only as fast as that work, and the peer's ring never
//!   overflows. With threaded NAPI on the receiving veth
//!   (`echo 1 > /sys/class/net/PEER/threaded`, then pin the `napi/PEER-*`
//!   kthreads to the receiver's core) that work leaves the generator's core, the
//!   generator out-runs the receiver, and the excess shows as ring-full drops
//!   (`dropped` here, `rx_dropped` at the peer).

use std::{
    ffi::CStr,
    fmt, io,
    net::Ipv4Addr,
    str::FromStr,
    sync::{
        Barrier,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use xdpstack::{ifinfo, loader::if_index};

use crate::loader::{LiveRunError, LoadError, TrafficGenCounters, TrafficGenProgram};

/// The smallest UDP payload: 18 bytes make a 60-byte frame (64 on the wire with
/// the FCS), the Ethernet minimum, so no frame needs padding.
pub const MIN_PAYLOAD: usize = 18;
/// The largest UDP payload in a 1500-byte IPv4 packet (1514-byte frame).
pub const MAX_PAYLOAD: usize = 1472;
/// Ethernet, IPv4 (no options) and UDP headers.
pub const HEADERS_LEN: usize = 14 + 20 + 8;
/// The kernel's limit on frames per live-frames batch (`TEST_XDP_MAX_BATCH`).
pub const MAX_BATCH: u32 = 256;
/// Frames per batch by default: NAPI's weight, a quarter of a veth's 256-entry
/// ring, so one batch never fills the peer's ring on its own.
pub const DEFAULT_BATCH: u32 = 64;
/// Frames the generator sends first to check that the interface takes them.
pub const PROBE_FRAMES: u32 = 64;

/// Wall time one `BPF_PROG_TEST_RUN` call aims at. Each call costs two RCU grace
/// periods on top of the frames (the kernel adds the program to the XDP dispatcher
/// and removes it again, `bpf_dispatcher_change_prog`), about 25 ms measured here
/// and spent asleep: calls of 50 ms left the CPU idle a third of the time. A second
/// per call keeps that near 2%; Ctrl-C may then take up to a second.
const CHUNK_TARGET: Duration = Duration::from_secs(1);
/// The first call measures the rate.
const FIRST_CHUNK: u32 = 1 << 16;
const MIN_CHUNK: u32 = 1 << 10;
const MAX_CHUNK: u32 = 1 << 28;

/// An Ethernet (MAC) address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl FromStr for MacAddr {
    type Err = GenError;

    /// Six hex bytes separated by `:` or `-`, as `ip link` prints them.
    fn from_str(s: &str) -> Result<Self, GenError> {
        let bad = || GenError::BadMac(s.to_string());
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in &mut out {
            let part = parts.next().ok_or_else(bad)?;
            if part.is_empty() || part.len() > 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(MacAddr(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl serde::Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Every field of the template frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameSpec {
    /// Destination MAC: the receiving interface's own address, or the kernel
    /// there drops the frames as `PACKET_OTHERHOST`.
    pub dst_mac: MacAddr,
    /// Source MAC.
    pub src_mac: MacAddr,
    /// Source IPv4 address.
    pub src_ip: Ipv4Addr,
    /// Destination IPv4 address.
    pub dst_ip: Ipv4Addr,
    /// UDP source port of the template (the program overwrites it per flow).
    pub src_port: u16,
    /// UDP destination port.
    pub dst_port: u16,
    /// UDP payload length in bytes.
    pub payload: usize,
}

/// The RFC 1071 Internet checksum of `bytes` (an even number of them).
fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Build the template frame: Ethernet II, IPv4 (no options, DF, TTL 64, a correct
/// header checksum) and UDP with checksum 0, then `spec.payload` bytes counting up
/// from 0.
///
/// RFC 768: "An all zero transmitted checksum value means that the transmitter
/// generated no checksum". That is what lets the XDP program change the source
/// port without touching any checksum; the IPv4 header checksum does not cover the
/// ports, so it is computed here once.
///
/// Fails only for a payload outside [`MIN_PAYLOAD`]..=[`MAX_PAYLOAD`].
pub fn template(spec: &FrameSpec) -> Result<Vec<u8>, GenError> {
    if !(MIN_PAYLOAD..=MAX_PAYLOAD).contains(&spec.payload) {
        return Err(GenError::Payload(spec.payload));
    }
    // Both fit in 16 bits: the payload is at most 1472.
    let ip_len = (20 + 8 + spec.payload) as u16;
    let udp_len = (8 + spec.payload) as u16;
    let mut f = Vec::with_capacity(HEADERS_LEN + spec.payload);
    f.extend_from_slice(&spec.dst_mac.0);
    f.extend_from_slice(&spec.src_mac.0);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    // IPv4: version 4, IHL 5; DSCP/ECN 0; total length; identification 0 (RFC
    // 6864: atomic datagrams, DF set, need no unique ID); DF; TTL 64; UDP.
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&ip_len.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&spec.src_ip.octets());
    f.extend_from_slice(&spec.dst_ip.octets());
    let checksum = internet_checksum(&f[14..34]);
    f[24..26].copy_from_slice(&checksum.to_be_bytes());
    // UDP: ports, length, checksum 0 ("none").
    f.extend_from_slice(&spec.src_port.to_be_bytes());
    f.extend_from_slice(&spec.dst_port.to_be_bytes());
    f.extend_from_slice(&udp_len.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend((0..spec.payload).map(|i| i as u8));
    Ok(f)
}

/// What to send, where, and for how long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenConfig {
    /// The interface to send out of (in the calling thread's network namespace).
    pub iface: String,
    /// Destination MAC: the receiving interface's address.
    pub dst_mac: MacAddr,
    /// Source MAC; `None` takes the interface's own.
    pub src_mac: Option<MacAddr>,
    /// Source IPv4 address; `None` takes the interface's first IPv4 address.
    pub src_ip: Option<Ipv4Addr>,
    /// Destination IPv4 address.
    pub dst_ip: Ipv4Addr,
    /// Destination UDP port.
    pub dst_port: u16,
    /// First UDP source port; flow `i` uses `src_port + i`.
    pub src_port: u16,
    /// UDP payload length, [`MIN_PAYLOAD`]..=[`MAX_PAYLOAD`].
    pub payload: usize,
    /// Number of flows (source ports), used in turn frame by frame on each CPU.
    pub flows: u16,
    /// Stop after this many frames (over all CPUs).
    pub count: Option<u64>,
    /// Stop after this long. At least one of `count` and `duration` is required.
    pub duration: Option<Duration>,
    /// One sending thread pinned to each of these CPUs; empty: send from the
    /// calling thread, wherever the scheduler runs it.
    pub cpus: Vec<usize>,
    /// Frames per live-frames batch (1..=[`MAX_BATCH`]); the kernel flushes the
    /// interface's transmit queue after each batch.
    pub batch: u32,
}

impl GenConfig {
    /// A configuration with the defaults: source port 10000, one flow, an 18-byte
    /// payload, batches of [`DEFAULT_BATCH`], the interface's own MAC and IPv4
    /// address, from the calling thread. Set `count` or `duration` before running.
    pub fn new(iface: &str, dst_mac: MacAddr, dst_ip: Ipv4Addr, dst_port: u16) -> Self {
        Self {
            iface: iface.to_string(),
            dst_mac,
            src_mac: None,
            src_ip: None,
            dst_ip,
            dst_port,
            src_port: 10_000,
            payload: MIN_PAYLOAD,
            flows: 1,
            count: None,
            duration: None,
            cpus: Vec::new(),
            batch: DEFAULT_BATCH,
        }
    }

    /// Check everything that does not need the interface.
    pub fn validate(&self) -> Result<(), GenError> {
        if !(MIN_PAYLOAD..=MAX_PAYLOAD).contains(&self.payload) {
            return Err(GenError::Payload(self.payload));
        }
        if self.flows == 0 || u32::from(self.src_port) + u32::from(self.flows) - 1 > 65_535 {
            return Err(GenError::Flows {
                flows: self.flows,
                src_port: self.src_port,
            });
        }
        if self.count.is_none() && self.duration.is_none() {
            return Err(GenError::Unbounded);
        }
        if !(1..=MAX_BATCH).contains(&self.batch) {
            return Err(GenError::Batch(self.batch));
        }
        for (i, cpu) in self.cpus.iter().enumerate() {
            if self.cpus[..i].contains(cpu) {
                return Err(GenError::DuplicateCpu(*cpu));
            }
        }
        Ok(())
    }
}

/// What a run sent, from the program's and the interface's counters.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct GenReport {
    /// The interface sent out of.
    pub iface: String,
    /// Source MAC used.
    pub src_mac: MacAddr,
    /// Destination MAC used.
    pub dst_mac: MacAddr,
    /// Source IPv4 address used.
    pub src_ip: Ipv4Addr,
    /// Destination `address:port`.
    pub dst: String,
    /// UDP payload bytes per frame.
    pub payload: usize,
    /// Frame length without the FCS (payload + 42).
    pub frame_len: usize,
    /// Number of flows (source ports).
    pub flows: u16,
    /// CPUs the sending threads were pinned to (empty: not pinned).
    pub cpus: Vec<usize>,
    /// Frames the XDP program ran on: what was offered to the interface.
    pub runs: u64,
    /// Frames the interface transmitted (its `tx_packets` grew by this much): on a
    /// veth, taken from the ring by the peer's NAPI.
    pub packets: u64,
    /// Bytes the interface transmitted (`tx_bytes`).
    pub bytes: u64,
    /// Frames the interface dropped (`tx_dropped`): on a veth, the peer's ring was
    /// full. The counter is the interface's, so a frame the kernel sent on its
    /// own meanwhile (a router solicitation, an MLD report) and dropped for the
    /// same reason counts here too: exact figures need a quiet interface.
    pub dropped: u64,
    /// Frames the program dropped itself (a template it could not handle; zero).
    pub dropped_in_program: u64,
    /// `runs - dropped_in_program - packets - dropped`: frames no counter saw
    /// (failed redirects) when positive; frames the kernel sent on its own over
    /// the interface meanwhile (ARP, neighbour discovery) when negative.
    pub unaccounted: i64,
    /// Seconds from the first frame to the last.
    pub seconds: f64,
    /// Transmitted frames per second.
    pub pps: f64,
    /// Transmitted bits per second / 1e9 (frame bytes, without FCS and preamble).
    pub gbps: f64,
    /// Offered frames (`runs`) per second.
    pub offered_pps: f64,
    /// CPU time of the process (user + system) during the run. On a veth this
    /// includes the receiving end's softirq work that ran in the generator's
    /// syscalls, unless the kernel accounts softirq time separately.
    pub cpu_seconds: f64,
    /// The run ended early on the caller's stop flag (Ctrl-C).
    pub interrupted: bool,
}

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

/// Transmit counters of an interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct TxCounters {
    packets: u64,
    bytes: u64,
    dropped: u64,
}

impl TxCounters {
    fn since(&self, earlier: &TxCounters) -> TxCounters {
        TxCounters {
            packets: self.packets.wrapping_sub(earlier.packets),
            bytes: self.bytes.wrapping_sub(earlier.bytes),
            dropped: self.dropped.wrapping_sub(earlier.dropped),
        }
    }
}

/// The interface's counters from `/sys/class/net/IF/statistics` (64-bit, unlike
/// the `rtnl_link_stats` that `getifaddrs` gives).
///
/// sysfs shows the namespace of whoever mounted it, so the interface index there
/// is compared with the one the calling thread's namespace gives;
/// `ip netns exec` mounts the right one.
struct SysfsCounters {
    iface: String,
}

impl SysfsCounters {
    /// Check that sysfs shows `iface` as the calling thread's namespace knows it:
    /// same index and, when it has one, same MAC address. (Interface indexes
    /// repeat across namespaces; both ends of the testbed's veth are index 2.)
    fn open(iface: &str, ifindex: u32, mac: Option<MacAddr>) -> Result<Self, GenError> {
        let this = Self {
            iface: iface.to_string(),
        };
        let foreign = || GenError::ForeignSysfs(iface.to_string());
        let index = this.read_attr("ifindex")?.ok_or_else(foreign)?;
        if index.trim().parse::<u32>().ok() != Some(ifindex) {
            return Err(foreign());
        }
        if let Some(mac) = mac {
            let address = this.read_attr("address")?.ok_or_else(foreign)?;
            if address.trim().parse::<MacAddr>().ok() != Some(mac) {
                return Err(foreign());
            }
        }
        Ok(this)
    }

    /// `/sys/class/net/IF/{name}`, or `None` when there is no such file.
    fn read_attr(&self, name: &str) -> Result<Option<String>, GenError> {
        let path = format!("/sys/class/net/{}/{name}", self.iface);
        match std::fs::read_to_string(&path) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(GenError::Counters {
                iface: self.iface.clone(),
                path,
                source,
            }),
        }
    }

    fn read_one(&self, name: &str) -> Result<u64, GenError> {
        let path = format!("/sys/class/net/{}/statistics/{name}", self.iface);
        let err = |source| GenError::Counters {
            iface: self.iface.clone(),
            path: path.clone(),
            source,
        };
        std::fs::read_to_string(&path)
            .map_err(err)?
            .trim()
            .parse()
            .map_err(|_| err(io::Error::from(io::ErrorKind::InvalidData)))
    }

    fn read(&self) -> Result<TxCounters, GenError> {
        Ok(TxCounters {
            packets: self.read_one("tx_packets")?,
            bytes: self.read_one("tx_bytes")?,
            dropped: self.read_one("tx_dropped")?,
        })
    }

    /// Read until the counters account for `expected` frames or stop moving: a
    /// veth counts a frame when the peer's NAPI takes it off the ring, which may
    /// trail the syscall that queued it.
    fn settle(&self, since: &TxCounters, expected: u64) -> Result<TxCounters, GenError> {
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut last = self.read()?;
        loop {
            let d = last.since(since);
            if d.packets + d.dropped >= expected || Instant::now() >= deadline {
                return Ok(last);
            }
            std::thread::sleep(Duration::from_millis(10));
            let now = self.read()?;
            if now == last {
                return Ok(now);
            }
            last = now;
        }
    }
}

/// The interface's MAC and first IPv4 address, from `getifaddrs` (netlink in the
/// calling thread's network namespace).
fn iface_addresses(iface: &str) -> io::Result<(Option<MacAddr>, Option<Ipv4Addr>)> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `head` is a valid out-pointer; on success the list is ours until
    // `freeifaddrs` below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let (mut mac, mut ipv4) = (None, None);
    let mut node = head;
    while !node.is_null() {
        // SAFETY: `node` is an element of the list getifaddrs returned, not freed.
        let ifa = unsafe { &*node };
        node = ifa.ifa_next;
        if ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: `ifa_name` is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) };
        if name.to_bytes() != iface.as_bytes() {
            continue;
        }
        // SAFETY: a non-null `ifa_addr` points to a sockaddr of the list.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        match family {
            libc::AF_INET if ipv4.is_none() => {
                // SAFETY: the family says this is a `sockaddr_in`.
                let sin = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in>() };
                ipv4 = Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            }
            libc::AF_PACKET => {
                // SAFETY: the family says this is a `sockaddr_ll`.
                let sll = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_ll>() };
                if sll.sll_halen == 6 {
                    let mut m = [0u8; 6];
                    m.copy_from_slice(&sll.sll_addr[..6]);
                    mac = Some(MacAddr(m));
                }
            }
            _ => {}
        }
    }
    // SAFETY: `head` came from getifaddrs and is freed once; no reference into the
    // list outlives this point.
    unsafe { libc::freeifaddrs(head) };
    Ok((mac, ipv4))
}

/// Pin the calling thread to `cpu`.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: an all-zero `cpu_set_t` is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is below CPU_SETSIZE, the capacity of `set`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; `set` is a valid set of the size given.
    let rc = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// CPU time (user + system) of the whole process.
fn process_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The share of `count` that sender `i` of `n` sends: as even as can be.
fn share(count: u64, i: usize, n: usize) -> u64 {
    let (n, i) = (n as u64, i as u64);
    count / n + u64::from(i < count % n)
}

/// Frames for the next call at `rate` frames/s: [`CHUNK_TARGET`] worth, or what
/// is `left` of the duration if less, within [`MIN_CHUNK`]..=[`MAX_CHUNK`].
fn next_chunk(rate: f64, left: Option<Duration>) -> u32 {
    let secs = left.map_or(CHUNK_TARGET, |l| l.min(CHUNK_TARGET));
    (rate * secs.as_secs_f64()).clamp(f64::from(MIN_CHUNK), f64::from(MAX_CHUNK)) as u32
}

/// How one sending thread counts its frames: its CPU's slot of the program's
/// per-CPU counter when pinned, the total when it is the only sender.
#[derive(Clone, Copy)]
enum Tally {
    Cpu(usize),
    Total,
}

impl Tally {
    fn runs(self, program: &TrafficGenProgram) -> Result<u64, GenError> {
        Ok(match self {
            Tally::Cpu(cpu) => program.runs_per_cpu()?.get(cpu).copied().unwrap_or(0),
            Tally::Total => program.counters()?.runs,
        })
    }
}

struct Sender<'a> {
    program: &'a TrafficGenProgram,
    frame: &'a [u8],
    ifindex: u32,
    batch: u32,
    stop: &'a AtomicBool,
    deadline: Option<Instant>,
}

impl Sender<'_> {
    /// Send up to `limit` frames (or until the deadline or the stop flag),
    /// counting with `tally`. Returns when this sender is done.
    fn send(&self, limit: Option<u64>, tally: Tally) -> Result<(), GenError> {
        let start = tally.runs(self.program)?;
        // Frames per second of wall time, the calls' fixed cost included.
        let mut rate = None;
        loop {
            let now = Instant::now();
            if self.stop.load(Ordering::Relaxed) || self.deadline.is_some_and(|d| now >= d) {
                return Ok(());
            }
            let left = self.deadline.map(|d| d - now);
            let mut frames = rate.map_or(FIRST_CHUNK, |r| next_chunk(r, left));
            if let Some(limit) = limit {
                let done = tally.runs(self.program)? - start;
                if done >= limit {
                    return Ok(());
                }
                frames = frames.min(u32::try_from(limit - done).unwrap_or(u32::MAX));
            }
            let t0 = Instant::now();
            match self
                .program
                .send_live(self.frame, self.ifindex, frames, self.batch)
            {
                Ok(_) => {
                    let took = t0.elapsed().as_secs_f64();
                    if took > 0.0 {
                        rate = Some(f64::from(frames) / took);
                    }
                }
                // A signal cut the run short; the program counted what it sent.
                Err(e) if e.source.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Run the generator until `config`'s count or duration is reached.
pub fn run(config: &GenConfig) -> Result<GenReport, GenError> {
    run_until(config, &AtomicBool::new(false))
}

/// [`run`], also ending early (and reporting what was sent) once `stop` is set.
pub fn run_until(config: &GenConfig, stop: &AtomicBool) -> Result<GenReport, GenError> {
    config.validate()?;
    let iface = config.iface.as_str();
    let ifindex = if_index(iface).ok_or_else(|| GenError::UnknownInterface(iface.to_string()))?;
    let if_err = |source| GenError::Interface {
        iface: iface.to_string(),
        source,
    };
    let mtu = ifinfo::mtu(iface).map_err(if_err)?;
    if config.payload + 28 > mtu as usize {
        return Err(GenError::Mtu {
            iface: iface.to_string(),
            payload: config.payload,
            mtu,
        });
    }
    let (own_mac, own_ipv4) = iface_addresses(iface).map_err(if_err)?;
    let spec = FrameSpec {
        dst_mac: config.dst_mac,
        src_mac: config
            .src_mac
            .or(own_mac)
            .ok_or_else(|| GenError::NoSourceMac(iface.to_string()))?,
        src_ip: config
            .src_ip
            .or(own_ipv4)
            .ok_or_else(|| GenError::NoSourceAddress(iface.to_string()))?,
        dst_ip: config.dst_ip,
        src_port: config.src_port,
        dst_port: config.dst_port,
        payload: config.payload,
    };
    let frame = template(&spec)?;
    let counters = SysfsCounters::open(iface, ifindex, own_mac)?;

    let mut program = TrafficGenProgram::load()?;
    program.configure(xdpstack_bench_ebpf::GenConfig {
        base_port: u32::from(config.src_port),
        flows: u32::from(config.flows),
    })?;

    let cpu0 = process_cpu_time();
    let before = counters.read()?;
    let t0 = Instant::now();

    // Probe: a few frames first, so that a receiver that cannot take them is a
    // clear error rather than a run of drops.
    let probe = u32::try_from(
        config
            .count
            .unwrap_or(u64::MAX)
            .min(u64::from(PROBE_FRAMES)),
    )
    .unwrap_or(PROBE_FRAMES);
    if probe > 0 {
        let send_probe = || -> Result<(), GenError> {
            program.send_live(&frame, ifindex, probe, config.batch.min(probe))?;
            Ok(())
        };
        match config.cpus.first() {
            // From the first sender's CPU: the RX queue of a veth peer is picked by
            // the sending CPU, so the probe lands where the run will.
            Some(&cpu) => std::thread::scope(|scope| {
                scope
                    .spawn(|| {
                        pin_current_thread(cpu).map_err(|source| GenError::Pin { cpu, source })?;
                        send_probe()
                    })
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p))
            })?,
            None => send_probe()?,
        }
        let runs = program.counters()?.runs;
        let seen = counters.settle(&before, runs)?.since(&before);
        // Without NAPI at the peer, a veth drops the frames: counted (ENXIO from
        // its ndo_xdp_xmit) on older kernels; uncounted on 6.x, where the redirect
        // fails earlier because the veth lacks the NDO_XMIT XDP feature.
        if seen.packets == 0 {
            return Err(GenError::PeerNotReady {
                iface: iface.to_string(),
                runs,
                dropped: seen.dropped,
                frame_len: frame.len(),
            });
        }
    }

    let sender = Sender {
        program: &program,
        frame: &frame,
        ifindex,
        batch: config.batch,
        stop,
        deadline: config.duration.map(|d| t0 + d),
    };
    let remaining = config.count.map(|c| c.saturating_sub(u64::from(probe)));
    if config.cpus.is_empty() {
        sender.send(remaining, Tally::Total)?;
    } else {
        let n = config.cpus.len();
        let ready = Barrier::new(n);
        std::thread::scope(|scope| -> Result<(), GenError> {
            let handles: Vec<_> = config
                .cpus
                .iter()
                .enumerate()
                .map(|(i, &cpu)| {
                    let (sender, ready) = (&sender, &ready);
                    scope.spawn(move || {
                        let pinned = pin_current_thread(cpu);
                        // Everyone waits for everyone, pinned or not, so that no
                        // thread is left waiting on one that failed.
                        ready.wait();
                        pinned.map_err(|source| GenError::Pin { cpu, source })?;
                        sender.send(remaining.map(|c| share(c, i, n)), Tally::Cpu(cpu))
                    })
                })
                .collect();
            let mut result = Ok(());
            for h in handles {
                let r = h.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
                if let Err(e) = r {
                    // Stop the others at once; report the first error.
                    stop.store(true, Ordering::Relaxed);
                    if result.is_ok() {
                        result = Err(e);
                    }
                }
            }
            result
        })?;
    }
    let seconds = t0.elapsed().as_secs_f64();
    let prog = program.counters()?;
    let after = counters.settle(&before, prog.runs - prog.dropped)?;
    let cpu_seconds = (process_cpu_time().saturating_sub(cpu0)).as_secs_f64();
    Ok(report(
        config,
        &spec,
        frame.len(),
        prog,
        after.since(&before),
        seconds,
        cpu_seconds,
        stop.load(Ordering::Relaxed),
    ))
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call site, all plain numbers"
)]
fn report(
    config: &GenConfig,
    spec: &FrameSpec,
    frame_len: usize,
    prog: TrafficGenCounters,
    tx: TxCounters,
    seconds: f64,
    cpu_seconds: f64,
    interrupted: bool,
) -> GenReport {
    let per_second = |n: u64| {
        if seconds > 0.0 {
            n as f64 / seconds
        } else {
            0.0
        }
    };
    let accounted = i128::from(prog.dropped) + i128::from(tx.packets) + i128::from(tx.dropped);
    GenReport {
        iface: config.iface.clone(),
        src_mac: spec.src_mac,
        dst_mac: spec.dst_mac,
        src_ip: spec.src_ip,
        dst: format!("{}:{}", spec.dst_ip, spec.dst_port),
        payload: spec.payload,
        frame_len,
        flows: config.flows,
        cpus: config.cpus.clone(),
        runs: prog.runs,
        packets: tx.packets,
        bytes: tx.bytes,
        dropped: tx.dropped,
        dropped_in_program: prog.dropped,
        unaccounted: i64::try_from(i128::from(prog.runs) - accounted).unwrap_or(i64::MIN),
        seconds,
        pps: per_second(tx.packets),
        gbps: per_second(tx.bytes) * 8.0 / 1e9,
        offered_pps: per_second(prog.runs),
        cpu_seconds,
        interrupted,
    }
}

#[cfg(test)]
mod tests {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    use xdpstack_bench_ebpf::GEN_SRC_PORT_OFFSET;

    use super::*;

    fn spec(payload: usize) -> FrameSpec {
        FrameSpec {
            dst_mac: "02:00:00:00:00:01".parse().unwrap(),
            src_mac: "02:00:00:00:00:02".parse().unwrap(),
            src_ip: Ipv4Addr::new(198, 18, 0, 2),
            dst_ip: Ipv4Addr::new(198, 18, 0, 1),
            src_port: 10_000,
            dst_port: 9000,
            payload,
        }
    }

    /// Parse `frame` as Ethernet/IPv4/UDP and return (IPv4 header checksum as sent,
    /// as computed, source port, destination port, UDP checksum, payload).
    fn parse(frame: &[u8]) -> (u16, u16, u16, u16, u16, Vec<u8>) {
        let p = SlicedPacket::from_ethernet(frame).expect("parses");
        let Some(NetSlice::Ipv4(ip)) = p.net else {
            panic!("not IPv4: {:?}", p.net)
        };
        let Some(TransportSlice::Udp(udp)) = p.transport else {
            panic!("not UDP")
        };
        let h = ip.header();
        assert_eq!(h.source_addr(), Ipv4Addr::new(198, 18, 0, 2));
        assert_eq!(h.destination_addr(), Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(h.ttl(), 64);
        assert!(h.dont_fragment());
        assert_eq!(usize::from(h.total_len()), frame.len() - 14);
        assert_eq!(usize::from(udp.length()), frame.len() - 34);
        (
            h.header_checksum(),
            h.to_header().calc_header_checksum(),
            udp.source_port(),
            udp.destination_port(),
            udp.checksum(),
            udp.payload().to_vec(),
        )
    }

    #[test]
    fn template_is_the_udp_datagram_asked_for() {
        for (payload, frame_len) in [(18, 60), (512, 554), (1472, 1514)] {
            let frame = template(&spec(payload)).unwrap();
            assert_eq!(frame.len(), frame_len, "payload {payload}");
            assert_eq!(frame.len(), HEADERS_LEN + payload);
            let (sent, computed, sport, dport, udp_sum, data) = parse(&frame);
            assert_eq!(sent, computed, "IPv4 header checksum, payload {payload}");
            assert_ne!(sent, 0);
            assert_eq!((sport, dport), (10_000, 9000));
            assert_eq!(udp_sum, 0, "UDP checksum 0: none (RFC 768)");
            assert_eq!(data.len(), payload);
            assert!(data.iter().enumerate().all(|(i, &b)| b == i as u8));
            assert_eq!(&frame[..6], &[2, 0, 0, 0, 0, 1]);
            assert_eq!(&frame[6..12], &[2, 0, 0, 0, 0, 2]);
        }
    }

    #[test]
    fn header_checksum_verifies_to_zero() {
        let frame = template(&spec(512)).unwrap();
        // RFC 1071: the sum over a header including its checksum is all ones.
        assert_eq!(internet_checksum(&frame[14..34]), 0);
    }

    #[test]
    fn the_program_writes_the_source_port_where_the_template_has_it() {
        // What the XDP program does, on the host: a port written at
        // GEN_SRC_PORT_OFFSET is the UDP source port, and no checksum breaks.
        let mut frame = template(&spec(18)).unwrap();
        let cfg = xdpstack_bench_ebpf::GenConfig {
            base_port: 10_000,
            flows: 4,
        };
        for n in 0..8 {
            let port = cfg.src_port(n);
            frame[GEN_SRC_PORT_OFFSET..GEN_SRC_PORT_OFFSET + 2]
                .copy_from_slice(&port.to_be_bytes());
            let (sent, computed, sport, dport, udp_sum, _) = parse(&frame);
            assert_eq!(sport, 10_000 + (n % 4) as u16);
            assert_eq!(dport, 9000);
            assert_eq!((sent, udp_sum), (computed, 0));
        }
    }

    #[test]
    fn mac_addresses_parse_and_print() {
        let mac: MacAddr = "02:0A:ff:00:10:9".parse().unwrap();
        assert_eq!(mac.0, [0x02, 0x0a, 0xff, 0x00, 0x10, 0x09]);
        assert_eq!(mac.to_string(), "02:0a:ff:00:10:09");
        assert_eq!("02-0a-ff-00-10-09".parse::<MacAddr>().unwrap(), mac);
        for bad in [
            "",
            "02:0a:ff:00:10",
            "02:0a:ff:00:10:09:01",
            "02:0a:ff:00:10:zz",
            "02:0a:ff:00:10:123",
            "02:0a:ff::10:09",
        ] {
            let err = bad.parse::<MacAddr>().unwrap_err();
            assert!(matches!(err, GenError::BadMac(_)), "{bad:?}");
            assert!(err.to_string().starts_with("bad MAC address"));
        }
        assert_eq!(
            serde_json::to_string(&mac).unwrap(),
            "\"02:0a:ff:00:10:09\""
        );
    }

    fn config() -> GenConfig {
        let mut c = GenConfig::new(
            "veth0",
            "02:00:00:00:00:01".parse().unwrap(),
            Ipv4Addr::new(198, 18, 0, 1),
            9000,
        );
        c.count = Some(1000);
        c
    }

    #[test]
    fn validation_names_what_is_wrong() {
        assert!(config().validate().is_ok());
        type Mutation = fn(&mut GenConfig);
        let cases: [(Mutation, &str); 8] = [
            (|c| c.payload = 17, "payload of 17 bytes"),
            (|c| c.payload = 1473, "payload of 1473 bytes"),
            (|c| c.flows = 0, "0 flows"),
            (
                |c| {
                    c.src_port = 65_000;
                    c.flows = 537;
                },
                "537 flows from source port 65000",
            ),
            (|c| c.count = None, "needs a bound"),
            (|c| c.batch = 0, "batch of 0"),
            (|c| c.batch = 257, "batch of 257"),
            (|c| c.cpus = vec![1, 0, 1], "CPU 1 is listed twice"),
        ];
        for (mutate, message) in cases {
            let mut c = config();
            mutate(&mut c);
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(message), "{err:?} lacks {message:?}");
        }
        let mut c = config();
        c.src_port = 65_000;
        c.flows = 536;
        c.count = None;
        c.duration = Some(Duration::from_secs(1));
        assert!(c.validate().is_ok(), "ports up to 65535 inclusive");
    }

    #[test]
    fn unknown_interface_is_reported_before_anything_loads() {
        let mut c = config();
        c.iface = "xg-no-such-if".into();
        let err = run(&c).unwrap_err();
        assert!(matches!(err, GenError::UnknownInterface(_)), "{err}");
        assert_eq!(
            err.to_string(),
            "interface xg-no-such-if not found in this network namespace (see `ip link`)"
        );
    }

    #[test]
    fn counts_are_shared_evenly_and_completely() {
        for (count, n) in [(10, 3), (2, 3), (0, 2), (1_000_001, 2), (7, 1)] {
            let shares: Vec<u64> = (0..n).map(|i| share(count, i, n)).collect();
            assert_eq!(shares.iter().sum::<u64>(), count);
            let (min, max) = (shares.iter().min().unwrap(), shares.iter().max().unwrap());
            assert!(max - min <= 1, "{shares:?}");
        }
    }

    #[test]
    fn chunks_aim_at_the_target_time_within_bounds() {
        assert_eq!(CHUNK_TARGET, Duration::from_secs(1));
        assert_eq!(next_chunk(3e6, None), 3_000_000);
        // The end of the duration comes first.
        assert_eq!(next_chunk(3e6, Some(Duration::from_millis(100))), 300_000);
        assert_eq!(next_chunk(3e6, Some(Duration::from_secs(5))), 3_000_000);
        assert_eq!(next_chunk(10.0, None), MIN_CHUNK);
        assert_eq!(next_chunk(3e6, Some(Duration::ZERO)), MIN_CHUNK);
        assert_eq!(next_chunk(1e12, None), MAX_CHUNK);
    }

    #[test]
    fn report_reconciles_runs_with_the_counters() {
        let c = config();
        let s = spec(18);
        let prog = TrafficGenCounters {
            runs: 1000,
            dropped: 0,
        };
        let tx = TxCounters {
            packets: 900,
            bytes: 900 * 60,
            dropped: 98,
        };
        let r = report(&c, &s, 60, prog, tx, 2.0, 1.5, false);
        assert_eq!(r.unaccounted, 2);
        assert_eq!(r.pps, 450.0);
        assert_eq!(r.offered_pps, 500.0);
        assert!((r.gbps - 900.0 * 60.0 * 8.0 / 2.0 / 1e9).abs() < 1e-12);
        // The kernel's own frames (ARP) make it negative.
        let tx = TxCounters {
            packets: 1003,
            bytes: 0,
            dropped: 0,
        };
        assert_eq!(
            report(&c, &s, 60, prog, tx, 1.0, 0.0, false).unaccounted,
            -3
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["dst"], "198.18.0.1:9000");
        assert_eq!(json["src_mac"], "02:00:00:00:00:02");
        assert_eq!(json["runs"], 1000);
    }
}
