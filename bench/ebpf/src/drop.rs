//! The benchmark's in-kernel ceiling: `XDP_DROP` for every frame, counted.
//!
//! Built for `bpfel-unknown-none` by `bench/build.rs` (aya-build) and embedded in
//! the `xdpstack-xdp-drop` binary, which attaches it in driver mode to the
//! receiving veth for one run. The kernel's own count (the veth's
//! `rx_queue_N_xdp_drops`) is the source of truth; this per-CPU counter checks it.
//!
//! Two programs, one body: `xdpstack_xdp_drop` for frames of one buffer and
//! `xdp_drop_frags`, frags-aware, for jumbo frames (see `lib.rs`). A run loads
//! one of them; they share the counter's map.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::PerCpuArray,
    programs::XdpContext,
};

// The name must equal `DROP_STATS_MAP` in `lib.rs`; the loader looks it up by it.
#[map(name = "DROP_STATS")]
static DROP_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// The ceiling for frames of one buffer.
#[xdp]
pub fn xdpstack_xdp_drop(_ctx: XdpContext) -> u32 {
    drop_and_count()
}

/// The same, frags-aware (section `xdp.frags`): what veth attaches natively
/// when either end's MTU is above what one page holds (jumbo frames), where it
/// refuses the other one.
#[xdp(frags)]
pub fn xdp_drop_frags(_ctx: XdpContext) -> u32 {
    drop_and_count()
}

#[inline(always)]
fn drop_and_count() -> u32 {
    if let Some(slot) = DROP_STATS.get_ptr_mut(0) {
        // SAFETY: the slot is this CPU's value of a per-CPU array element; XDP runs
        // with preemption disabled, so nothing else writes it concurrently.
        unsafe { *slot += 1 };
    }
    xdp_action::XDP_DROP
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable in a verified program: the verifier rejects any path to a panic.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
