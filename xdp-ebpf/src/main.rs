//! xdpstack's XDP program: steer the chosen UDP traffic (or everything) into the
//! AF_XDP socket of the frame's RX queue, pass the rest to the kernel, count both.
//!
//! Built for `bpfel-unknown-none` by `userspace/build.rs` (aya-build) and embedded in
//! the `xdpstack` binary. The parsing lives in the library (`steer.rs`) so that the
//! host runs the same code in tests and fuzzing.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{BPF_RB_NO_WAKEUP, xdp_action, xdp_md},
    helpers::generated::{
        bpf_ktime_get_ns, bpf_xdp_adjust_meta, bpf_xdp_get_buff_len, bpf_xdp_load_bytes,
    },
    macros::{map, xdp},
    maps::{Array, PerCpuArray, ProgramArray, RingBuf, XskMap},
    programs::XdpContext,
};
use xdp_ebpf::{
    CAPTURE_COUNTER_COUNT, COPY_RING_BYTES, COUNTER_COUNT, CaptureCounter, CaptureMode, Config,
    CopyHeader, Counter, JUMP_FILTER, JUMP_SLOTS, MAX_QUEUES, PORT_BITMAP_WORDS, PacketBytes,
    STAMP_LEN, SteerMode, Verdict, classify,
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

#[map(name = "JUMP")]
static JUMP: ProgramArray = ProgramArray::with_max_entries(JUMP_SLOTS, 0);

#[map(name = "SCRATCH")]
static SCRATCH: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

#[map(name = "COPIES")]
static COPIES: RingBuf = RingBuf::with_byte_size(COPY_RING_BYTES, 0);

#[map(name = "CAPTURE_STATS")]
static CAPTURE_STATS: PerCpuArray<u64> =
    PerCpuArray::with_max_entries(CAPTURE_COUNTER_COUNT * MAX_QUEUES, 0);

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
///
/// A multi-buffer frame (in the `_frags` programs) is read in its first buffer
/// only, `[data, data_end)`; `len` is the length of the whole packet.
struct Frame {
    data: usize,
    ctx: *const xdp_md,
    len: usize,
}

impl Frame {
    #[inline(always)]
    fn new(ctx: &XdpContext) -> Self {
        Self {
            data: ctx.data(),
            ctx: ctx.ctx,
            len: packet_len(ctx) as usize,
        }
    }

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

    #[inline(always)]
    fn packet_len(&self) -> usize {
        self.len
    }
}

/// The length of the whole packet: `data_end - data` for a frame of one buffer
/// (every frame of a program without frags), the first buffer and all its
/// fragments for a multi-buffer one.
#[inline(always)]
fn packet_len(ctx: &XdpContext) -> u32 {
    // SAFETY: the helper reads the length of the program's own context.
    unsafe { bpf_xdp_get_buff_len(ctx.ctx) as u32 }
}

#[inline(always)]
fn count(counter: Counter) {
    count_index(counter.index());
}

/// Count the verdict counter at `index` (a [`Counter`] index, or nothing when out
/// of range).
#[inline(always)]
fn count_index(index: u32) {
    if let Some(slot) = STATS.get_ptr_mut(index) {
        // SAFETY: the slot is this CPU's value of a per-CPU array element; XDP runs
        // with preemption disabled, so nothing else writes it concurrently.
        unsafe { *slot += 1 };
    }
}

/// Count `counter` for the frame's RX queue.
#[inline(always)]
fn count_capture(ctx: &XdpContext, counter: CaptureCounter) {
    let queue = ctx.rx_queue_index() % MAX_QUEUES;
    if let Some(slot) = CAPTURE_STATS.get_ptr_mut(queue * CAPTURE_COUNTER_COUNT + counter.index()) {
        // SAFETY: as in `count_index`: this CPU's slot, no concurrent writer.
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
fn config() -> Config {
    CONFIG.get(0).copied().unwrap_or_default()
}

// Every entry point comes twice, one body each: without frags (section `xdp`)
// and frags-aware (`xdp.frags`), as `ProgramNames` in `abi.rs` names them. The
// function names must equal those names.

/// The steering program, for frames of one buffer.
#[xdp]
pub fn xdpstack(ctx: XdpContext) -> u32 {
    steer(&ctx)
}

/// The steering program, frags-aware: multi-buffer frames are parsed in their
/// first buffer and copied whole.
#[xdp(frags)]
pub fn xdpstack_frags(ctx: XdpContext) -> u32 {
    steer(&ctx)
}

#[inline(always)]
fn steer(ctx: &XdpContext) -> u32 {
    match try_xdpstack(ctx) {
        Ok(action) | Err(action) => action,
    }
}

/// `Ok(XDP_REDIRECT)` when the frame went to a socket, `Err(XDP_PASS)` otherwise;
/// exactly one verdict counter is incremented either way.
#[inline(always)]
fn try_xdpstack(ctx: &XdpContext) -> Result<u32, u32> {
    count(Counter::Seen);
    let frame = Frame::new(ctx);
    let config = config();
    let mode = if config.mode == SteerMode::All as u32 {
        SteerMode::All
    } else {
        SteerMode::Udp
    };
    match classify(&frame, mode, port_steered) {
        Verdict::Steer => redirect(ctx, &config),
        Verdict::Pass(reason) if config.capture == CaptureMode::Off as u32 => {
            count(reason);
            Err(xdp_action::XDP_PASS)
        }
        Verdict::Pass(reason) if config.filter != 0 => {
            // The filter continues in `xdpstack_sel` or `xdpstack_unsel` (or
            // their frags variants), which count the pass reason left here.
            if let Some(slot) = SCRATCH.get_ptr_mut(0) {
                // SAFETY: this CPU's slot; nothing runs between here and the
                // program the filter continues in on this CPU.
                unsafe { *slot = reason.index() };
            }
            // SAFETY: a tail call into a program of the same type; on success it
            // does not return.
            unsafe { JUMP.tail_call(ctx, JUMP_FILTER) };
            count_capture(ctx, CaptureCounter::NoFilter);
            count(reason);
            Err(xdp_action::XDP_PASS)
        }
        // The empty expression selects every frame.
        Verdict::Pass(reason) => selected(ctx, &config, reason.index()),
    }
}

/// Into the AF_XDP socket of the frame's RX queue, or to the kernel when none is
/// bound there.
#[inline(always)]
fn redirect(ctx: &XdpContext, config: &Config) -> Result<u32, u32> {
    if config.stamp != 0 {
        stamp(ctx);
    }
    // The low bits of the flags are the action when no socket is bound on this
    // queue: pass, so nothing disappears.
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

/// A frame no app claimed that the capture's expression selected, whose pass
/// reason is the [`Counter`] at `reason`: stolen into the socket, or copied
/// and passed.
#[inline(always)]
fn selected(ctx: &XdpContext, config: &Config, reason: u32) -> Result<u32, u32> {
    count_capture(ctx, CaptureCounter::Selected);
    if config.capture == CaptureMode::Steal as u32 {
        return redirect(ctx, config);
    }
    count_capture(
        ctx,
        if copy(ctx, config.snaplen) {
            CaptureCounter::Copied
        } else {
            CaptureCounter::RingFull
        },
    );
    count_index(reason);
    Err(xdp_action::XDP_PASS)
}

/// The receive time in the frame's metadata, where AF_XDP hands it to user
/// space (right before the data, in the frame's headroom). A driver without
/// metadata refuses the room: the frame goes unstamped, and user space, which
/// clears the stamp of every frame it receives, stamps it itself.
#[inline(always)]
fn stamp(ctx: &XdpContext) {
    // SAFETY: the helper grows the metadata area of the program's own context.
    if unsafe { bpf_xdp_adjust_meta(ctx.ctx, -(STAMP_LEN as i32)) } != 0 {
        return;
    }
    // SAFETY: reading the context's fields, valid for the whole run.
    let (meta, data) = unsafe { ((*ctx.ctx).data_meta as usize, (*ctx.ctx).data as usize) };
    if meta + STAMP_LEN as usize > data {
        return;
    }
    // SAFETY: [meta, meta + 8) lies within the metadata area (checked against
    // data just above); the write is unaligned-safe.
    unsafe { (meta as *mut u64).write_unaligned(bpf_ktime_get_ns()) };
}

/// A record of [`COPIES`]: the header and room for `N` bytes of the frame.
#[repr(C)]
struct Record<const N: usize> {
    header: CopyHeader,
    data: [u8; N],
}

/// Copy the first `snaplen` bytes of the frame into [`COPIES`]; false when the
/// ring is full. Records come in size classes because the verifier needs the
/// size of a reservation to be a constant.
#[inline(always)]
fn copy(ctx: &XdpContext, snaplen: u32) -> bool {
    // The whole packet, every buffer of a multi-buffer frame: the record's
    // length, and what `bpf_xdp_load_bytes` copies from.
    let len = packet_len(ctx);
    let caplen = if len < snaplen { len } else { snaplen };
    match caplen {
        0..=128 => copy_as::<128>(ctx, len, caplen),
        129..=256 => copy_as::<256>(ctx, len, caplen),
        257..=512 => copy_as::<512>(ctx, len, caplen),
        513..=1024 => copy_as::<1024>(ctx, len, caplen),
        1025..=2048 => copy_as::<2048>(ctx, len, caplen),
        2049..=4096 => copy_as::<4096>(ctx, len, caplen),
        4097..=8192 => copy_as::<8192>(ctx, len, caplen),
        _ => copy_as::<16384>(ctx, len, caplen),
    }
}

#[inline(always)]
fn copy_as<const N: usize>(ctx: &XdpContext, len: u32, caplen: u32) -> bool {
    let Some(mut entry) = COPIES.reserve::<Record<N>>(0) else {
        return false;
    };
    let record = entry.as_mut_ptr();
    // The verifier must see the copy's length in [1, N] (N is a power of two,
    // and `copy` chose N >= caplen >= 1, so this is caplen): a mask it can follow,
    // on a value LLVM cannot reason away.
    let caplen = core::hint::black_box(caplen);
    let n = (caplen.wrapping_sub(1) & (N as u32 - 1)) + 1;
    // SAFETY: `record` is a reservation of size_of::<Record<N>>() bytes in the
    // ring, ours until submitted or discarded; the header fields are plain
    // integers, and the helper writes at most `n <= N` bytes into `data`.
    let loaded = unsafe {
        (*record).header = CopyHeader {
            timestamp_ns: bpf_ktime_get_ns(),
            len,
            caplen: n,
            queue: (*ctx.ctx).rx_queue_index,
            reserved: 0,
        };
        caplen > 0
            && bpf_xdp_load_bytes(
                ctx.ctx,
                0,
                core::ptr::addr_of_mut!((*record).data).cast(),
                n,
            ) == 0
    };
    if loaded {
        // No wakeup: the reader polls the ring on a timer of its own (a
        // wakeup is an irq_work and a context switch per batch on the
        // receiving CPU, the one the kernel's own traffic needs).
        entry.submit(u64::from(BPF_RB_NO_WAKEUP));
    } else {
        entry.discard(u64::from(BPF_RB_NO_WAKEUP));
    }
    loaded
}

/// Where the capture filter continues when it selects the frame.
#[xdp]
pub fn xdpstack_sel(ctx: XdpContext) -> u32 {
    on_selected(&ctx)
}

/// [`xdpstack_sel`], frags-aware.
#[xdp(frags)]
pub fn xdpstack_fsel(ctx: XdpContext) -> u32 {
    on_selected(&ctx)
}

#[inline(always)]
fn on_selected(ctx: &XdpContext) -> u32 {
    let config = config();
    match selected(ctx, &config, scratch_reason()) {
        Ok(action) | Err(action) => action,
    }
}

/// Where the capture filter continues when it does not select the frame.
#[xdp]
pub fn xdpstack_unsel(ctx: XdpContext) -> u32 {
    on_unselected(&ctx)
}

/// [`xdpstack_unsel`], frags-aware.
#[xdp(frags)]
pub fn xdpstack_funsel(ctx: XdpContext) -> u32 {
    on_unselected(&ctx)
}

#[inline(always)]
fn on_unselected(ctx: &XdpContext) -> u32 {
    count_capture(ctx, CaptureCounter::Unselected);
    count_index(scratch_reason());
    xdp_action::XDP_PASS
}

/// The pass reason `xdpstack` left before the tail call into the filter.
#[inline(always)]
fn scratch_reason() -> u32 {
    SCRATCH
        .get(0)
        .copied()
        .unwrap_or(Counter::PassNotSteered.index())
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
