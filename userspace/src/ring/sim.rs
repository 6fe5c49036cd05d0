//! An in-memory stand-in for the kernel side of an AF_XDP socket, for tests and
//! benchmarks of the poller without a kernel: a fill ring and an RX ring of fixed
//! capacity, and "arrivals" that move frames from one to the other like the
//! kernel's copy-mode receive path does; a TX ring whose frames the simulated
//! kernel "sends" (logs) and returns on a completion ring when kicked
//! ([`SimRings::kick`]).
//!
//! The syscalls a real socket answers (wakeups, waiting, statistics) are
//! inherent methods here; `sys` implements its kernel trait over them for the
//! run loop's tests.

use std::collections::VecDeque;

use super::{KickOutcome, RingOccupancy, Rings, RxDesc, TxDesc, XDP_PKT_CONTD};
use crate::frame::XDP_PACKET_HEADROOM;

/// Where the simulated kernel puts packet data in a frame, as the real one does.
pub const SIM_HEADROOM: u64 = XDP_PACKET_HEADROOM as u64;

/// The simulated kernel side of one socket.
#[derive(Debug)]
pub struct SimRings {
    frame_size: u32,
    fill: VecDeque<u64>,
    fill_cap: usize,
    rx: VecDeque<RxDesc>,
    rx_cap: usize,
    fill_empty: u64,
    rx_full: u64,
    wakeups: u64,
    tx: VecDeque<TxDesc>,
    tx_cap: usize,
    comp: VecDeque<u64>,
    sent: Vec<TxDesc>,
    tx_stalled: bool,
    /// Frames the next kicks refuse (complete unsent), and those refused.
    tx_refuse: u64,
    refused: Vec<TxDesc>,
    napi_id: u32,
    /// The last descriptors of the RX ring not published yet (see
    /// [`SimRings::rx_hold_last`]).
    rx_hidden: usize,
}

/// Frames one kick sends at most: the kernel's copy-mode budget per `sendto(2)`.
pub const SIM_KICK_BUDGET: usize = 32;

impl SimRings {
    /// Rings for frames of `frame_size` bytes with the given capacities.
    pub fn new(frame_size: u32, fill_cap: usize, rx_cap: usize) -> Self {
        Self {
            frame_size,
            fill: VecDeque::with_capacity(fill_cap),
            fill_cap,
            rx: VecDeque::with_capacity(rx_cap),
            rx_cap,
            fill_empty: 0,
            rx_full: 0,
            wakeups: 0,
            tx: VecDeque::with_capacity(rx_cap),
            tx_cap: rx_cap,
            comp: VecDeque::new(),
            sent: Vec::new(),
            tx_stalled: false,
            tx_refuse: 0,
            refused: Vec::new(),
            napi_id: 0,
            rx_hidden: 0,
        }
    }

    /// While stalled, kicks send nothing: the TX ring fills up, like a link that
    /// cannot keep up.
    pub fn stall_tx(&mut self, stalled: bool) {
        self.tx_stalled = stalled;
    }

    /// The next `n` frames kicks take off the TX ring are refused, like a
    /// driver that drops them: each ends its kick with
    /// [`KickOutcome::Dropped`] and goes to the completion ring unsent.
    pub fn refuse_tx(&mut self, n: u64) {
        self.tx_refuse = n;
    }

    /// The NAPI id the socket reports (0, none, unless set).
    pub fn set_napi_id(&mut self, id: u32) {
        self.napi_id = id;
    }

    /// The NAPI id the socket reports.
    pub fn napi_id(&self) -> u32 {
        self.napi_id
    }

    /// The frames refused so far, in order.
    pub fn refused(&self) -> &[TxDesc] {
        &self.refused
    }

    /// Everything sent so far, in order (the descriptors as the poller wrote
    /// them).
    pub fn sent(&self) -> &[TxDesc] {
        &self.sent
    }

    /// `n` packets of `len` bytes arrive. Like the kernel, a full RX ring drops
    /// (`rx_ring_full`) and an empty fill ring drops (`rx_fill_ring_empty_descs`).
    /// Returns how many were put on the RX ring.
    pub fn arrive(&mut self, n: usize, len: u32) -> usize {
        let mut delivered = 0;
        for _ in 0..n {
            if self.rx.len() == self.rx_cap {
                self.rx_full += 1;
                continue;
            }
            let Some(addr) = self.fill.pop_front() else {
                self.fill_empty += 1;
                continue;
            };
            self.rx.push_back(RxDesc {
                addr: addr + SIM_HEADROOM,
                len,
                options: 0,
            });
            delivered += 1;
        }
        delivered
    }

    /// One multi-buffer packet arrives, in buffers of `lens` bytes (each but
    /// the last flagged [`XDP_PKT_CONTD`]), as the kernel's copy mode hands a
    /// packet larger than a frame to a socket bound with `XDP_USE_SG`: all or
    /// nothing, so a packet that does not fit the RX ring (`rx_ring_full`) or
    /// finds too few frames on the fill ring (`rx_fill_ring_empty_descs`) is
    /// dropped whole. Returns whether it was put on the RX ring.
    pub fn arrive_split(&mut self, lens: &[u32]) -> bool {
        if self.rx.len() + lens.len() > self.rx_cap {
            self.rx_full += 1;
            return false;
        }
        if self.fill.len() < lens.len() {
            self.fill_empty += 1;
            return false;
        }
        for (i, &len) in lens.iter().enumerate() {
            let addr = self.fill.pop_front().expect("checked above");
            let last = i + 1 == lens.len();
            self.rx.push_back(RxDesc {
                addr: addr + SIM_HEADROOM,
                len,
                options: if last { 0 } else { XDP_PKT_CONTD },
            });
        }
        true
    }

    /// Keep the last `n` descriptors of the RX ring from the poller, as if
    /// the kernel had not published them yet (a packet's tail that comes in
    /// a later round); 0 publishes everything.
    pub fn rx_hold_last(&mut self, n: usize) {
        self.rx_hidden = n;
    }

    /// The fill-ring addresses the next `n` arrivals will use, in order.
    pub fn next_fill_addrs(&self, n: usize) -> Vec<u64> {
        self.fill.iter().take(n).copied().collect()
    }

    /// The fill-ring address the next arrival will use (so a test can write the
    /// packet into that frame first, as a NIC would).
    pub fn next_fill_addr(&self) -> Option<u64> {
        self.fill.front().copied()
    }

    /// Frame indexes the simulated kernel holds (fill ring, RX ring, TX ring,
    /// completion ring).
    pub fn kernel_frames(&self) -> Vec<u64> {
        let fs = u64::from(self.frame_size);
        self.fill
            .iter()
            .map(|a| a / fs)
            .chain(self.rx.iter().map(|d| d.addr / fs))
            .chain(self.tx.iter().map(|d| d.addr / fs))
            .chain(self.comp.iter().map(|a| a / fs))
            .collect()
    }

    /// Arrivals dropped for an empty fill ring.
    pub fn fill_empty(&self) -> u64 {
        self.fill_empty
    }

    /// Arrivals dropped for a full RX ring.
    pub fn rx_full(&self) -> u64 {
        self.rx_full
    }

    /// Wakeups the poller asked for.
    pub fn wakeups(&self) -> u64 {
        self.wakeups
    }

    /// A wakeup syscall (`recvfrom(MSG_DONTWAIT)` on a real socket): counted.
    pub fn wake(&mut self) {
        self.wakeups += 1;
    }

    /// True when the RX ring has descriptors (what poll(2) would say).
    pub fn readable(&self) -> bool {
        !self.rx.is_empty()
    }

    /// A TX kick (`sendto(MSG_DONTWAIT)`): unless stalled ([`KickOutcome::Busy`]),
    /// up to [`SIM_KICK_BUDGET`] frames of the TX ring are sent and go to the
    /// completion ring; a refused frame (see [`SimRings::refuse_tx`]) goes there
    /// too, unsent, and ends the kick ([`KickOutcome::Dropped`]), as in the
    /// kernel's copy mode.
    pub fn kick(&mut self) -> KickOutcome {
        if self.tx_stalled {
            return KickOutcome::Busy;
        }
        for _ in 0..SIM_KICK_BUDGET {
            let Some(desc) = self.tx.pop_front() else {
                break;
            };
            self.comp.push_back(desc.addr);
            if self.tx_refuse > 0 {
                self.tx_refuse -= 1;
                self.refused.push(desc);
                return KickOutcome::Dropped;
            }
            self.sent.push(desc);
        }
        KickOutcome::Accepted
    }
}

// SAFETY: `rx` only ever holds addresses taken from `fill`, and `comp` only
// addresses taken from `tx`, each once.
unsafe impl Rings for SimRings {
    fn rx_consume(&mut self, out: &mut [RxDesc]) -> usize {
        let n = out.len().min(self.rx.len().saturating_sub(self.rx_hidden));
        for (slot, desc) in out.iter_mut().zip(self.rx.drain(..n)) {
            *slot = desc;
        }
        n
    }

    fn fill_capacity(&mut self, want: u32) -> u32 {
        let free = self.fill_cap - self.fill.len();
        u32::try_from(free).unwrap_or(u32::MAX).min(want)
    }

    fn fill_produce(&mut self, addrs: &[u64]) {
        assert!(
            self.fill.len() + addrs.len() <= self.fill_cap,
            "fill ring overrun"
        );
        self.fill.extend(addrs);
    }

    fn fill_needs_wakeup(&mut self) -> bool {
        true
    }

    fn tx_capacity(&mut self, want: u32) -> u32 {
        let free = self.tx_cap - self.tx.len();
        u32::try_from(free).unwrap_or(u32::MAX).min(want)
    }

    fn tx_produce(&mut self, descs: &[TxDesc]) {
        assert!(
            self.tx.len() + descs.len() <= self.tx_cap,
            "TX ring overrun"
        );
        self.tx.extend(descs);
    }

    fn tx_needs_wakeup(&mut self) -> bool {
        true
    }

    fn tx_pending(&mut self) -> u32 {
        u32::try_from(self.tx.len()).unwrap_or(u32::MAX)
    }

    fn comp_consume(&mut self, out: &mut [u64]) -> usize {
        let n = out.len().min(self.comp.len());
        for (slot, addr) in out.iter_mut().zip(self.comp.drain(..n)) {
            *slot = addr;
        }
        n
    }

    fn occupancy(&mut self) -> RingOccupancy {
        RingOccupancy {
            rx_ring: self.rx.len() as u32,
            fill_ring: self.fill.len() as u32,
        }
    }
}
