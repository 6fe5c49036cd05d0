//! The ABI of `xdpstack-gen`'s XDP program, and the one piece of its logic worth
//! testing on the host: which UDP source port the `n`-th frame gets.
//!
//! This crate is compiled twice, like `xdp-ebpf`: for `bpfel-unknown-none` as the
//! library of the XDP program (`src/main.rs`, feature `ebpf`), and for the host,
//! where the benchmark tooling (`xdpstack-bench`) reads the same constants and
//! `#[repr(C)]` types (feature `user` adds `aya::Pod`).
//!
//! The program (`xdpstack_gen`, in an object of its own, apart from the product's
//! steering program) is never attached to an interface. User space runs it through
//! `BPF_PROG_TEST_RUN` with `BPF_F_TEST_XDP_LIVE_FRAMES` on a template frame: the
//! kernel copies the template into a page-pool page once, runs the program on it
//! `repeat` times, and sends each frame the program returns `XDP_TX` for out of the
//! ingress interface named in the context (`net/bpf/test_run.c` turns `XDP_TX` into
//! a redirect to that interface). Pages are recycled without being re-initialised,
//! so the program rewrites the whole source port on every run rather than
//! incrementing it.
//!
//! The crate's second program, `xdpstack_xdp_drop` (`src/drop.rs`, object
//! `xdpstack-drop-xdp`), is the benchmark's in-kernel ceiling: attached in driver
//! mode to the receiving veth, it drops every frame and counts it per CPU in
//! [`DROP_STATS_MAP`]. Nothing in user space can take frames faster than the
//! kernel can hand them to an XDP program that does nothing. Its frags-aware
//! twin, [`DROP_FRAGS_PROGRAM_NAME`], is the ceiling for jumbo frames. The
//! generator needs none: `BPF_F_TEST_XDP_LIVE_FRAMES` takes no frame longer
//! than a page less headroom.
#![no_std]
#![deny(unsafe_code)]

/// Name of the generator's XDP program function in the object file.
pub const GEN_PROGRAM_NAME: &str = "xdpstack_gen";

/// `ARRAY[1]` of [`GenConfig`].
pub const GEN_CONFIG_MAP: &str = "GEN_CONFIG";
/// `PERCPU_ARRAY[GEN_COUNTER_COUNT]` of `u64`, indexed by [`GenCounter`].
pub const GEN_STATS_MAP: &str = "GEN_STATS";

/// Name of the drop ceiling's XDP program function in its object file.
pub const DROP_PROGRAM_NAME: &str = "xdpstack_xdp_drop";
/// The drop ceiling, frags-aware (section `xdp.frags`, loaded with
/// `BPF_F_XDP_HAS_FRAGS`): for jumbo frames. veth refuses to attach a program
/// without frags natively while either end's MTU is above what one page holds
/// (about 3500 bytes); this one it takes at MTU 9000, and it drops and counts
/// multi-buffer frames whole, like [`DROP_PROGRAM_NAME`] the others.
pub const DROP_FRAGS_PROGRAM_NAME: &str = "xdp_drop_frags";

/// `PERCPU_ARRAY[1]` of `u64`: the frames the drop ceiling's program dropped.
pub const DROP_STATS_MAP: &str = "DROP_STATS";

/// Byte offset of the UDP source port in the template frame: an untagged Ethernet
/// header (14 bytes) and an IPv4 header without options (20 bytes). User space builds
/// the template, so the layout is fixed.
pub const GEN_SRC_PORT_OFFSET: usize = 14 + 20;

/// The generator's configuration, element 0 of [`GEN_CONFIG_MAP`].
///
/// Frame `n` (counted per CPU) gets UDP source port `base_port + n % flows`. User
/// space keeps `base_port + flows - 1 <= 65535`; a zeroed config is one flow from
/// port 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GenConfig {
    /// The first UDP source port.
    pub base_port: u32,
    /// Number of source ports cycled through (0 counts as 1).
    pub flows: u32,
}

#[cfg(feature = "user")]
#[expect(unsafe_code, reason = "aya::Pod is an unsafe marker trait")]
// SAFETY: `GenConfig` is `repr(C)`, two `u32`s with no padding, and every bit pattern
// is a valid value.
unsafe impl aya::Pod for GenConfig {}

impl GenConfig {
    /// The UDP source port of the `n`-th frame a CPU sends: the flows in turn.
    #[inline(always)]
    pub const fn src_port(&self, n: u64) -> u16 {
        let flows = if self.flows == 0 { 1 } else { self.flows };
        // Truncation is the documented wrap for a config user space never writes.
        (self.base_port.wrapping_add((n % flows as u64) as u32)) as u16
    }
}

/// Per-CPU counters of the generator's program, indexes into [`GEN_STATS_MAP`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GenCounter {
    /// Every run of the program: one per frame the kernel handed it.
    Runs = 0,
    /// Runs that dropped the frame instead of sending it (no configuration, or a
    /// frame too short for the template's layout); zero when user space is right.
    Dropped = 1,
}

/// Number of [`GenCounter`]s.
pub const GEN_COUNTER_COUNT: u32 = 2;

impl GenCounter {
    /// The index of this counter in [`GEN_STATS_MAP`].
    pub const fn index(self) -> u32 {
        self as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_cycle_through_the_flows() {
        let cfg = GenConfig {
            base_port: 10_000,
            flows: 3,
        };
        let ports: [u16; 7] = core::array::from_fn(|n| cfg.src_port(n as u64));
        assert_eq!(
            ports,
            [10_000, 10_001, 10_002, 10_000, 10_001, 10_002, 10_000]
        );
    }

    #[test]
    fn zero_flows_is_one_flow() {
        let cfg = GenConfig {
            base_port: 7,
            flows: 0,
        };
        assert!((0..100).all(|n| cfg.src_port(n) == 7));
    }

    #[test]
    fn the_last_port_is_reachable_and_large_counters_stay_in_range() {
        let cfg = GenConfig {
            base_port: 65_535 - 9,
            flows: 10,
        };
        assert_eq!(cfg.src_port(9), 65_535);
        assert_eq!(cfg.src_port(u64::MAX), 65_535 - 9 + (u64::MAX % 10) as u16);
    }

    #[test]
    fn counter_indexes_are_dense() {
        assert_eq!(GenCounter::Runs.index(), 0);
        assert_eq!(GenCounter::Dropped.index(), GEN_COUNTER_COUNT - 1);
    }
}
