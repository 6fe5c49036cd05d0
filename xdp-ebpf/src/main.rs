//! xdpstack's XDP program: steer the chosen UDP traffic (or everything) into the
//! AF_XDP socket of the frame's RX queue, pass the rest to the kernel, count both.
//!
//! Built for `bpfel-unknown-none` by `userspace/build.rs` (aya-build) and embedded in
//! the `xdpstack` binary. The parsing lives in the library (`steer.rs`) so that the
//! host runs the same code in tests and fuzzing.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{xdp_action, xdp_md},
    macros::{map, xdp},
    maps::{Array, PerCpuArray, XskMap},
    programs::XdpContext,
};
use xdp_ebpf::{
    COUNTER_COUNT, Config, Counter, MAX_QUEUES, PORT_BITMAP_WORDS, PacketBytes, SteerMode, Verdict,
    classify,
};

// Map names must equal the constants in `abi.rs` (`XSKS_MAP`, ...); the loader looks
// them up by those constants and a user-space test checks that each one exists.
#[map(name = "XSKS")]
static XSKS: XskMap = XskMap::with_max_entries(MAX_QUEUES, 0);

#[map(name = "CONFIG")]
static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

#[map(name = "PORTS")]
static PORTS: Array<u64> = Array::with_max_entries(PORT_BITMAP_WORDS, 0);

#[map(name = "STATS")]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_COUNT, 0);

/// The frame as the verifier wants to see it: every read compares `data + off + n`
/// against `data_end` right before the load.
///
/// `data_end` is re-read (volatile) for each check. Otherwise LLVM proves later checks
/// redundant from earlier scalar comparisons (e.g. "UDP header ends before the IP
/// total length, which ends before the frame") and drops them; the verifier cannot
/// follow such reasoning and rejects the unchecked packet access.
///
/// The offset passes through `black_box` for the same reason: knowing its range,
/// LLVM rewrites `p + 1 > end` into `p >= end`, which the verifier cannot turn into a
/// packet range when the constant part of the offset is zero. The verifier still
/// knows the offset's bounds through the stack spill.
struct Frame {
    data: usize,
    ctx: *const xdp_md,
}

impl Frame {
    #[inline(always)]
    fn data_end(&self) -> usize {
        // SAFETY: `ctx` is the program's context pointer, valid for the whole run.
        unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*self.ctx).data_end)) as usize }
    }
}

impl PacketBytes for Frame {
    #[inline(always)]
    fn u8_at(&self, off: usize) -> Option<u8> {
        let p = self.data + core::hint::black_box(off);
        if p + 1 > self.data_end() {
            return None;
        }
        // SAFETY: [p, p + 1) lies within [data, data_end), the packet, which the
        // kernel keeps mapped for the whole run of the program.
        Some(unsafe { *(p as *const u8) })
    }

    #[inline(always)]
    fn be16_at(&self, off: usize) -> Option<u16> {
        let p = self.data + core::hint::black_box(off);
        if p + 2 > self.data_end() {
            return None;
        }
        // SAFETY: [p, p + 2) lies within the packet (checked above); the read is
        // unaligned because headers after VLAN tags or IP options are not aligned.
        Some(u16::from_be(unsafe { (p as *const u16).read_unaligned() }))
    }
}

#[inline(always)]
fn count(counter: Counter) {
    if let Some(slot) = STATS.get_ptr_mut(counter.index()) {
        // SAFETY: the slot is this CPU's value of a per-CPU array element; XDP runs
        // with preemption disabled, so nothing else writes it concurrently.
        unsafe { *slot += 1 };
    }
}

#[inline(always)]
fn port_steered(port: u16) -> bool {
    match PORTS.get(u32::from(port >> 6)) {
        Some(word) => word & (1u64 << (port & 63)) != 0,
        None => false,
    }
}

#[inline(always)]
fn steer_mode() -> SteerMode {
    match CONFIG.get(0) {
        Some(c) if c.mode == SteerMode::All as u32 => SteerMode::All,
        _ => SteerMode::Udp,
    }
}

#[xdp]
pub fn xdpstack(ctx: XdpContext) -> u32 {
    match try_xdpstack(&ctx) {
        Ok(action) => action,
        Err(action) => action,
    }
}

/// `Ok(XDP_REDIRECT)` when the frame went to a socket, `Err(XDP_PASS)` otherwise;
/// exactly one verdict counter is incremented either way.
#[inline(always)]
fn try_xdpstack(ctx: &XdpContext) -> Result<u32, u32> {
    count(Counter::Seen);
    let frame = Frame {
        data: ctx.data(),
        ctx: ctx.ctx,
    };
    match classify(&frame, steer_mode(), port_steered) {
        Verdict::Steer => {
            // The low bits of the flags are the action when no socket is bound on
            // this queue: pass, so nothing disappears.
            match XSKS.redirect(ctx.rx_queue_index(), u64::from(xdp_action::XDP_PASS)) {
                Ok(action) => {
                    count(Counter::Redirected);
                    Ok(action)
                }
                Err(_) => {
                    count(Counter::PassNoSocket);
                    Err(xdp_action::XDP_PASS)
                }
            }
        }
        Verdict::Pass(reason) => {
            count(reason);
            Err(xdp_action::XDP_PASS)
        }
    }
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
