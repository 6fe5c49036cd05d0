//! `xdpstack-gen`'s XDP program: stamp the flow's UDP source port into the template
//! frame and send it with `XDP_TX`.
//!
//! Built for `bpfel-unknown-none` by `bench/build.rs` (aya-build) and embedded in
//! the `xdpstack-gen` binary. It is run only through `BPF_PROG_TEST_RUN` with live
//! frames, never attached; see the library (`src/lib.rs`) for the ABI and how the
//! kernel drives it. The template is IPv4/UDP with a UDP checksum of zero ("no
//! checksum", RFC 768), so changing the port needs no checksum update, and the IPv4
//! header checksum does not cover ports.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, PerCpuArray},
    programs::XdpContext,
};
use xdpstack_bench_ebpf::{GEN_COUNTER_COUNT, GEN_SRC_PORT_OFFSET, GenConfig, GenCounter};

// Map names must equal `GEN_CONFIG_MAP` and `GEN_STATS_MAP` in `lib.rs`; the loader
// looks them up by those constants.
#[map(name = "GEN_CONFIG")]
static GEN_CONFIG: Array<GenConfig> = Array::with_max_entries(1, 0);

#[map(name = "GEN_STATS")]
static GEN_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(GEN_COUNTER_COUNT, 0);

/// Add one to `counter` on this CPU and return its value before.
#[inline(always)]
fn bump(counter: GenCounter) -> u64 {
    match GEN_STATS.get_ptr_mut(counter.index()) {
        Some(slot) => {
            // SAFETY: the slot is this CPU's value of a per-CPU array element; XDP
            // runs with preemption disabled, so nothing else writes it concurrently.
            unsafe {
                let before = *slot;
                *slot = before + 1;
                before
            }
        }
        None => 0,
    }
}

#[xdp]
pub fn xdpstack_gen(ctx: XdpContext) -> u32 {
    match try_xdpstack_gen(&ctx) {
        Ok(action) => action,
        Err(action) => {
            bump(GenCounter::Dropped);
            action
        }
    }
}

/// `Ok(XDP_TX)` with the port written; `Err(XDP_DROP)` when there is no
/// configuration or the frame is too short for the template's layout.
#[inline(always)]
fn try_xdpstack_gen(ctx: &XdpContext) -> Result<u32, u32> {
    let n = bump(GenCounter::Runs);
    let config = GEN_CONFIG.get(0).ok_or(xdp_action::XDP_DROP)?;
    let port = ctx.data() + GEN_SRC_PORT_OFFSET;
    if port + 2 > ctx.data_end() {
        return Err(xdp_action::XDP_DROP);
    }
    // SAFETY: [port, port + 2) lies within [data, data_end) (checked above), the
    // frame's page, which the kernel keeps mapped and writable for the run. The
    // write is unaligned because nothing guarantees the alignment of `data`.
    unsafe { (port as *mut u16).write_unaligned(config.src_port(n).to_be()) };
    Ok(xdp_action::XDP_TX)
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
