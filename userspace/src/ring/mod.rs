//! The ring trait: what the poller does with an AF_XDP socket's fill, RX, TX and
//! completion rings, and nothing else.
//!
//! `sys::xsk` implements it over the kernel's rings (xsk-rs); [`sim::SimRings`]
//! over in-memory queues, for tests and benchmarks without a kernel.

pub mod sim;

/// Wakes a run loop asleep in its wait for the socket (`sys::Kernel::wait_rx`),
/// from any thread: a datagram sent from another thread then goes out at once,
/// not after the sleep's timeout. The socket implements it (an eventfd polled
/// beside the socket); a run loop that never sleeps needs none.
pub trait Doorbell: Send + Sync + std::fmt::Debug {
    /// Wake the run loop (it may be awake already: a spurious ring is harmless).
    fn ring(&self);
}

/// The descriptor option (`options` of `struct xdp_desc`) that says the packet
/// continues in the next descriptor: AF_XDP multi-buffer (`XDP_USE_SG`), on the
/// RX ring from the kernel and on the TX ring from us.
pub const XDP_PKT_CONTD: u32 = 1 << 0;

/// A descriptor from the RX ring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxDesc {
    /// UMEM address of the first byte of the buffer.
    pub addr: u64,
    /// Bytes in this buffer.
    pub len: u32,
    /// [`XDP_PKT_CONTD`] when the packet continues in the next descriptor.
    pub options: u32,
}

/// A descriptor for the TX ring: the frame's bytes start at the pool's headroom.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxDesc {
    /// UMEM address of the first byte to send (frame start + headroom).
    pub addr: u64,
    /// Bytes to send.
    pub len: u32,
    /// [`XDP_PKT_CONTD`] when the packet continues in the next descriptor.
    pub options: u32,
}

/// The four rings of one AF_XDP socket, as the poller needs them: operations on
/// ring memory only. Nothing here makes a syscall or sleeps; waking the kernel
/// and waiting for it are the run loop's (`sys::Kernel`), so the poller runs
/// deterministically over a fake ring ([`sim::SimRings`]).
///
/// Implementations read the kernel's producer index once per batch (Acquire) and
/// publish their own index once per batch (Release); see `sys::xsk` for the real
/// one.
///
/// # Safety
/// [`Rings::rx_consume`] must only return addresses that were given to
/// [`Rings::fill_produce`] and not returned since, each at most once per trip:
/// the poller turns them back into unique frame handles. Likewise
/// [`Rings::comp_consume`] only returns addresses given to [`Rings::tx_produce`],
/// each once per trip.
pub unsafe trait Rings {
    /// Move up to `out.len()` descriptors off the RX ring into `out`.
    fn rx_consume(&mut self, out: &mut [RxDesc]) -> usize;
    /// Free slots in the fill ring (at most `want`).
    fn fill_capacity(&mut self, want: u32) -> u32;
    /// Put the frames at `addrs` on the fill ring. `addrs.len()` never exceeds the
    /// last [`Rings::fill_capacity`], so all of them fit.
    fn fill_produce(&mut self, addrs: &[u64]);
    /// True when the kernel asked to be woken to look at the fill ring (the
    /// `need_wakeup` flag of the fill ring).
    fn fill_needs_wakeup(&mut self) -> bool;
    /// Free slots in the TX ring (at most `want`).
    fn tx_capacity(&mut self, want: u32) -> u32;
    /// Put `descs` on the TX ring; never more than the last
    /// [`Rings::tx_capacity`].
    fn tx_produce(&mut self, descs: &[TxDesc]);
    /// True when the kernel must be kicked to transmit what is on the TX ring
    /// (the `need_wakeup` flag of the TX ring; always set in copy mode).
    fn tx_needs_wakeup(&mut self) -> bool;
    /// Descriptors on the TX ring the kernel has not taken yet (read from its
    /// index, not a cached one).
    fn tx_pending(&mut self) -> u32;
    /// Move up to `out.len()` addresses off the completion ring: frames the
    /// kernel has sent.
    fn comp_consume(&mut self, out: &mut [u64]) -> usize;
    /// Descriptors on the RX ring and on the fill ring right now, read from the
    /// kernel's indexes (not the cached ones), in that order: a frame the kernel
    /// moves from the fill ring to the RX ring between the two reads is counted in
    /// neither, never twice.
    fn occupancy(&mut self) -> RingOccupancy;
}

/// What the kernel did with a request to transmit (one `sendto(2)` on the
/// socket), as the run loop tells the poller (`Poller::tx_kicked`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KickOutcome {
    /// The kernel took what it could (up to its per-call budget); anything
    /// left on the ring wants another kick.
    Accepted,
    /// The kernel could not take frames now (EAGAIN, ENOBUFS: the driver's
    /// queue is full, or memory is short): they stay on the ring.
    Busy,
    /// The driver refused one frame, which the kernel completed without
    /// sending it (copy mode: EBUSY, "SKB completed but not sent"): the frame
    /// comes back on the completion ring, and is counted as not sent.
    Dropped,
}

/// Where the frames a poller gave the kernel are, as far as the rings show; the
/// rest of the poller's frames in the kernel are in the kernel's hands between the two
/// (in copy mode, buffers it took off the fill ring and has not yet filled).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RingOccupancy {
    /// Frames on the RX ring, received and not yet taken by the poller.
    pub rx_ring: u32,
    /// Frames on the fill ring, waiting for packets.
    pub fill_ring: u32,
}
