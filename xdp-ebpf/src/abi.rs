//! Names, constants and `#[repr(C)]` types that the XDP program and user space must
//! agree on. Nothing here may change layout without both sides being rebuilt, which
//! the workspace guarantees by embedding the object in the user-space binary.

/// Name of the XDP program function in the object file.
pub const PROGRAM_NAME: &str = "xdpstack";

/// `XSKMAP`: AF_XDP sockets, indexed by RX queue.
pub const XSKS_MAP: &str = "XSKS";
/// `ARRAY[1]` of [`Config`].
pub const CONFIG_MAP: &str = "CONFIG";
/// `ARRAY[PORT_BITMAP_WORDS]` of `u64`: bit `p` set when UDP port `p` is steered.
pub const PORTS_MAP: &str = "PORTS";
/// `PERCPU_ARRAY[COUNTER_COUNT]` of `u64`, indexed by [`Counter`].
pub const STATS_MAP: &str = "STATS";

/// Capacity of the XSKMAP: the highest RX queue index we can serve, plus one.
pub const MAX_QUEUES: u32 = 256;
/// Words of the port bitmap (65536 ports, 64 per word).
pub const PORT_BITMAP_WORDS: u32 = 65536 / 64;

/// Headers (Ethernet, VLAN, IP, extension headers) longer than this are not parsed:
/// the frame is passed and counted as [`Counter::MalformedTooManyHeaders`]. The bound
/// also keeps every packet offset provably small for the verifier.
pub const MAX_HEADER_BYTES: usize = 512;
/// VLAN tags we look through (802.1Q and 802.1ad); a third is "too many headers".
pub const MAX_VLAN_TAGS: usize = 2;
/// IPv6 extension headers we walk before giving up ("too many headers").
pub const MAX_IPV6_EXT_HEADERS: usize = 8;

/// What the XDP program steers into the AF_XDP sockets.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SteerMode {
    /// UDP datagrams (IPv4 and IPv6) whose destination port is in the port set.
    Udp = 0,
    /// Every frame, parsed or not (a capture/SPAN port).
    All = 1,
}

/// The program's configuration, element 0 of [`CONFIG_MAP`].
///
/// A zeroed `Config` (the state before user space writes it) is `Udp` mode with an
/// empty port set: nothing is steered until user space says so.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// A [`SteerMode`] as `u32`.
    pub mode: u32,
    /// Reserved, zero.
    pub reserved: u32,
}

impl Config {
    /// The configuration for `mode`.
    pub const fn new(mode: SteerMode) -> Self {
        Self {
            mode: mode as u32,
            reserved: 0,
        }
    }
}

#[cfg(feature = "user")]
#[expect(unsafe_code, reason = "aya::Pod is an unsafe marker trait")]
// SAFETY: `Config` is `repr(C)`, made of two `u32`s with no padding, and every bit
// pattern is a valid value.
unsafe impl aya::Pod for Config {}

/// Per-CPU counters of the XDP program, indexes into [`STATS_MAP`].
///
/// Every frame the program sees increments [`Counter::Seen`] and exactly one of the
/// verdict counters: [`Counter::Redirected`], or one of the `Pass*`/`Malformed*`
/// counters. So `seen == sum(verdict counters)` holds after every run.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Counter {
    /// Every frame the program ran on.
    Seen = 0,
    /// Redirected into an AF_XDP socket.
    Redirected = 1,
    /// Passed to the kernel: not UDP, or a port not in the set.
    PassNotSteered = 2,
    /// Steered, but no socket was bound on that RX queue, so passed to the kernel.
    PassNoSocket = 3,
    /// Passed: a non-first IP fragment (no UDP header to match on).
    PassFragment = 4,
    /// Passed: an IEEE 802.3 length field instead of an EtherType (LLC/SNAP, STP).
    PassIeee8023 = 5,
    /// Malformed, passed: a header ends beyond the frame.
    MalformedTruncated = 6,
    /// Malformed, passed: IPv4 IHL below 5 or larger than the total length.
    MalformedBadIhl = 7,
    /// Malformed, passed: IP version field disagrees with the EtherType.
    MalformedBadVersion = 8,
    /// Malformed, passed: IP total/payload length or UDP length inconsistent.
    MalformedBadLength = 9,
    /// Malformed, passed: more than two VLAN tags, more than
    /// [`MAX_IPV6_EXT_HEADERS`] IPv6 extension headers or a misplaced Hop-by-Hop
    /// header, or headers longer than [`MAX_HEADER_BYTES`].
    MalformedTooManyHeaders = 10,
}

/// Number of [`Counter`]s.
pub const COUNTER_COUNT: u32 = 11;

impl Counter {
    /// All counters, in index order.
    pub const ALL: [Counter; COUNTER_COUNT as usize] = [
        Counter::Seen,
        Counter::Redirected,
        Counter::PassNotSteered,
        Counter::PassNoSocket,
        Counter::PassFragment,
        Counter::PassIeee8023,
        Counter::MalformedTruncated,
        Counter::MalformedBadIhl,
        Counter::MalformedBadVersion,
        Counter::MalformedBadLength,
        Counter::MalformedTooManyHeaders,
    ];

    /// The index of this counter in [`STATS_MAP`].
    pub const fn index(self) -> u32 {
        self as u32
    }

    /// A stable snake_case name, used in statistics output and JSON.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::Seen => "seen",
            Counter::Redirected => "redirected",
            Counter::PassNotSteered => "pass_not_steered",
            Counter::PassNoSocket => "pass_no_socket",
            Counter::PassFragment => "pass_fragment",
            Counter::PassIeee8023 => "pass_ieee8023",
            Counter::MalformedTruncated => "malformed_truncated",
            Counter::MalformedBadIhl => "malformed_bad_ihl",
            Counter::MalformedBadVersion => "malformed_bad_version",
            Counter::MalformedBadLength => "malformed_bad_length",
            Counter::MalformedTooManyHeaders => "malformed_too_many_headers",
        }
    }

    /// True for the `Malformed*` counters.
    pub const fn is_malformed(self) -> bool {
        matches!(
            self,
            Counter::MalformedTruncated
                | Counter::MalformedBadIhl
                | Counter::MalformedBadVersion
                | Counter::MalformedBadLength
                | Counter::MalformedTooManyHeaders
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_indexes_are_dense_and_ordered() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(c.index() as usize, i, "{c:?}");
        }
    }

    #[test]
    fn counter_names_are_unique() {
        for (i, a) in Counter::ALL.iter().enumerate() {
            for b in &Counter::ALL[i + 1..] {
                assert_ne!(a.name(), b.name());
            }
        }
    }

    #[test]
    fn zeroed_config_steers_nothing_in_udp_mode() {
        assert_eq!(Config::default().mode, SteerMode::Udp as u32);
    }
}
