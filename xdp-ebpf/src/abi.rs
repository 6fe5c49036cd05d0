//! Names, constants and `#[repr(C)]` types that the XDP program and user space must
//! agree on. Nothing here may change layout without both sides being rebuilt, which
//! the workspace guarantees by embedding the object in the user-space binary.

/// The names of one variant of the object's three programs: the steering
/// program and the two a capture filter continues in.
///
/// Each program is compiled twice from one body: for frames of one buffer
/// (section `xdp`), and frags-aware for multi-buffer frames (section
/// `xdp.frags`, loaded with `BPF_F_XDP_HAS_FRAGS`). The kernel wants every
/// program of a prog array to agree with its caller on frags, so one run loads
/// one variant, [`ProgramNames::FRAGS`] or [`ProgramNames::LINEAR`], whole. A
/// driver refuses the linear variant where its MTU needs multi-buffer frames
/// (veth: the peer's MTU above what one page holds).
///
/// Names fit the kernel's 15 characters (`BPF_OBJ_NAME_LEN`), so that
/// `bpftool prog` shows them whole and tells the variants apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgramNames {
    /// The steering program, the one attached to the interface.
    pub steer: &'static str,
    /// Where the capture filter continues when it selects the frame
    /// ([`JUMP_SELECTED`]).
    pub selected: &'static str,
    /// Where it continues when it does not ([`JUMP_UNSELECTED`]).
    pub unselected: &'static str,
}

impl ProgramNames {
    /// The variant for frames of one buffer (section `xdp`).
    pub const LINEAR: ProgramNames = ProgramNames {
        steer: "xdpstack",
        selected: "xdpstack_sel",
        unselected: "xdpstack_unsel",
    };
    /// The frags-aware variant (section `xdp.frags`).
    pub const FRAGS: ProgramNames = ProgramNames {
        steer: "xdpstack_frags",
        selected: "xdpstack_fsel",
        unselected: "xdpstack_funsel",
    };

    /// [`ProgramNames::FRAGS`] when `frags`, else [`ProgramNames::LINEAR`].
    pub const fn of(frags: bool) -> ProgramNames {
        if frags { Self::FRAGS } else { Self::LINEAR }
    }

    /// The three names, steering program first.
    pub const fn all(&self) -> [&'static str; 3] {
        [self.steer, self.selected, self.unselected]
    }
}

/// `XSKMAP`: AF_XDP sockets, indexed by RX queue.
pub const XSKS_MAP: &str = "XSKS";
/// `ARRAY[1]` of [`Config`].
pub const CONFIG_MAP: &str = "CONFIG";
/// `ARRAY[PORT_BITMAP_WORDS]` of `u64`: bit `p` set when UDP port `p` is steered.
pub const PORTS_MAP: &str = "PORTS";
/// `PERCPU_ARRAY[COUNTER_COUNT]` of `u64`, indexed by [`Counter`].
pub const STATS_MAP: &str = "STATS";

/// `PROG_ARRAY[JUMP_SLOTS]`: the capture filter and the two programs it continues
/// in (see [`JUMP_FILTER`]).
pub const JUMP_MAP: &str = "JUMP";
/// `PERCPU_ARRAY[1]` of `u32`: the [`Counter`] index of the frame's pass reason,
/// written before the tail call into the filter and read by the program the
/// filter continues in (a tail call keeps the CPU, and XDP does not migrate).
pub const SCRATCH_MAP: &str = "SCRATCH";
/// `RINGBUF`: copies of the frames a non-destructive capture selected, each a
/// [`CopyHeader`] and the frame's first `caplen` bytes.
pub const COPIES_MAP: &str = "COPIES";
/// `PERCPU_ARRAY[CAPTURE_COUNTER_COUNT * MAX_QUEUES]` of `u64`: for RX queue `q`
/// and [`CaptureCounter`] `c`, element `q * CAPTURE_COUNTER_COUNT + c`.
pub const CAPTURE_STATS_MAP: &str = "CAPTURE_STATS";

/// [`JUMP_MAP`] slot of the capture filter (a translated pcap-filter expression),
/// which tail-calls [`JUMP_SELECTED`] or [`JUMP_UNSELECTED`].
pub const JUMP_FILTER: u32 = 0;
/// [`JUMP_MAP`] slot of [`ProgramNames::selected`].
pub const JUMP_SELECTED: u32 = 1;
/// [`JUMP_MAP`] slot of [`ProgramNames::unselected`].
pub const JUMP_UNSELECTED: u32 = 2;
/// Slots of [`JUMP_MAP`].
pub const JUMP_SLOTS: u32 = 3;

/// Bytes of the [`COPIES_MAP`] ring: 16 MiB, about 8000 full-size frames, or 40
/// ms at 200 000 copies a second before the reader must have caught up.
pub const COPY_RING_BYTES: u32 = 16 << 20;
/// The most bytes copied of one frame: the largest size class of a copy record.
pub const MAX_COPY: u32 = 16384;

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

/// What the capture does with a frame no app claims (one [`SteerMode::Udp`] does
/// not steer) when its expression selects it.
#[repr(u32)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CaptureMode {
    /// No capture of such frames: they pass to the kernel.
    #[default]
    Off = 0,
    /// Copy the frame into [`COPIES_MAP`] and pass it to the kernel: the host's
    /// traffic carries on untouched.
    Copy = 1,
    /// Redirect the frame into the AF_XDP socket (`--steal`): it never reaches
    /// the kernel.
    Steal = 2,
}

/// The program's configuration, element 0 of [`CONFIG_MAP`].
///
/// A zeroed `Config` (the state before user space writes it) is `Udp` mode with an
/// empty port set and no capture: nothing is steered or copied until user space
/// says so.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// A [`SteerMode`] as `u32`.
    pub mode: u32,
    /// A [`CaptureMode`] as `u32`.
    pub capture: u32,
    /// Non-zero when [`JUMP_FILTER`] holds a filter; zero selects every frame.
    pub filter: u32,
    /// Bytes copied of a frame in [`CaptureMode::Copy`], at most [`MAX_COPY`].
    pub snaplen: u32,
    /// Non-zero: stamp every frame redirected into a socket with
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC ns) in the [`STAMP_LEN`] bytes of
    /// XDP metadata right before its data, for the capture's per-packet times.
    pub stamp: u32,
    /// Reserved, zero.
    pub reserved: u32,
}

/// Bytes of XDP metadata the program writes before a redirected frame's data
/// when [`Config::stamp`] is set: a native-endian `u64` receive time.
pub const STAMP_LEN: u32 = 8;

impl Config {
    /// The configuration for `mode`, without capture.
    pub const fn new(mode: SteerMode) -> Self {
        Self {
            mode: mode as u32,
            capture: CaptureMode::Off as u32,
            filter: 0,
            snaplen: 0,
            stamp: 0,
            reserved: 0,
        }
    }

    /// With every redirected frame stamped (see [`Config::stamp`]).
    pub const fn with_stamps(mut self, stamp: bool) -> Self {
        self.stamp = stamp as u32;
        self
    }

    /// With frames no app claims captured as `capture` says, through the filter
    /// in [`JUMP_FILTER`] when `filter`, keeping `snaplen` bytes of copies.
    pub const fn with_capture(mut self, capture: CaptureMode, filter: bool, snaplen: u32) -> Self {
        self.capture = capture as u32;
        self.filter = filter as u32;
        self.snaplen = if snaplen == 0 || snaplen > MAX_COPY {
            MAX_COPY
        } else {
            snaplen
        };
        self
    }
}

#[cfg(feature = "user")]
#[expect(unsafe_code, reason = "aya::Pod is an unsafe marker trait")]
// SAFETY: `Config` is `repr(C)`, made of six `u32`s with no padding, and every bit
// pattern is a valid value.
unsafe impl aya::Pod for Config {}

/// The head of a record in [`COPIES_MAP`]; `caplen` bytes of the frame follow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyHeader {
    /// `bpf_ktime_get_ns()` when the program ran: CLOCK_MONOTONIC nanoseconds.
    pub timestamp_ns: u64,
    /// The frame's length on the wire (all its buffers).
    pub len: u32,
    /// Bytes of the frame in the record.
    pub caplen: u32,
    /// The RX queue the frame arrived on.
    pub queue: u32,
    /// Reserved, zero.
    pub reserved: u32,
}

/// Bytes of a [`CopyHeader`].
pub const COPY_HEADER_LEN: usize = core::mem::size_of::<CopyHeader>();

/// Per-CPU counters of the capture's side of the XDP program, indexes into
/// [`CAPTURE_STATS_MAP`]. They count beside the verdict counters: a frame copied
/// for the capture is still counted by its pass reason.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CaptureCounter {
    /// Frames no app claimed that the expression selected.
    Selected = 0,
    /// Frames no app claimed that the expression did not select.
    Unselected = 1,
    /// Selected frames copied into [`COPIES_MAP`].
    Copied = 2,
    /// Selected frames not copied because the ring was full (the reader is
    /// behind): lost to the capture, passed to the kernel all the same.
    RingFull = 3,
    /// The filter's slot in [`JUMP_MAP`] was empty: the frame passed, uncaptured.
    NoFilter = 4,
}

/// Number of [`CaptureCounter`]s.
pub const CAPTURE_COUNTER_COUNT: u32 = 5;

impl CaptureCounter {
    /// All capture counters, in index order.
    pub const ALL: [CaptureCounter; CAPTURE_COUNTER_COUNT as usize] = [
        CaptureCounter::Selected,
        CaptureCounter::Unselected,
        CaptureCounter::Copied,
        CaptureCounter::RingFull,
        CaptureCounter::NoFilter,
    ];

    /// The index of this counter in [`CAPTURE_STATS_MAP`].
    pub const fn index(self) -> u32 {
        self as u32
    }

    /// A stable snake_case name, used in statistics output and JSON.
    pub const fn name(self) -> &'static str {
        match self {
            CaptureCounter::Selected => "capture_selected",
            CaptureCounter::Unselected => "capture_unselected",
            CaptureCounter::Copied => "capture_copied",
            CaptureCounter::RingFull => "capture_copy_ring_full",
            CaptureCounter::NoFilter => "capture_no_filter",
        }
    }
}

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
    fn program_names_are_distinct_and_fit_the_kernel() {
        let names = [ProgramNames::LINEAR.all(), ProgramNames::FRAGS.all()];
        let names = names.as_flattened();
        for (i, a) in names.iter().enumerate() {
            // BPF_OBJ_NAME_LEN is 16 with the NUL.
            assert!(a.len() <= 15, "{a}");
            for b in &names[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(ProgramNames::of(true), ProgramNames::FRAGS);
        assert_eq!(ProgramNames::of(false), ProgramNames::LINEAR);
    }

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
    fn capture_counter_indexes_are_dense_and_ordered() {
        for (i, c) in CaptureCounter::ALL.iter().enumerate() {
            assert_eq!(c.index() as usize, i, "{c:?}");
        }
    }

    #[test]
    fn snaplen_is_bounded_by_the_largest_copy() {
        let c = Config::new(SteerMode::Udp);
        assert_eq!(
            c.with_capture(CaptureMode::Copy, false, 0).snaplen,
            MAX_COPY
        );
        assert_eq!(
            c.with_capture(CaptureMode::Copy, false, 1 << 20).snaplen,
            MAX_COPY
        );
        assert_eq!(c.with_capture(CaptureMode::Copy, true, 96).snaplen, 96);
        assert_eq!(core::mem::size_of::<CopyHeader>() % 8, 0);
    }

    #[test]
    fn zeroed_config_steers_nothing_in_udp_mode() {
        assert_eq!(Config::default().mode, SteerMode::Udp as u32);
        assert_eq!(Config::default().capture, CaptureMode::Off as u32);
    }
}
