//! The XDP program's counters and its ring of copies, as user space reads them.

use std::os::fd::{AsFd, AsRawFd};

use aya::maps::{MapData, RingBuf};
use xdp_ebpf::{CAPTURE_COUNTER_COUNT, COUNTER_COUNT, CaptureCounter, Counter};

/// Totals of the XDP program's per-CPU counters, indexed by [`Counter`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpCounters(pub(super) [u64; COUNTER_COUNT as usize]);

impl XdpCounters {
    /// The value of `counter`.
    pub fn get(&self, counter: Counter) -> u64 {
        self.0[counter.index() as usize]
    }

    /// Sum of the malformed counters.
    pub fn malformed(&self) -> u64 {
        Counter::ALL
            .iter()
            .filter(|c| c.is_malformed())
            .map(|&c| self.get(c))
            .sum()
    }

    /// Every counter with its name, in index order.
    pub fn iter(&self) -> impl Iterator<Item = (Counter, u64)> + '_ {
        Counter::ALL.iter().map(|&c| (c, self.get(c)))
    }

    /// The difference `self - earlier`, counter by counter.
    pub fn since(&self, earlier: &XdpCounters) -> XdpCounters {
        let mut out = [0; COUNTER_COUNT as usize];
        for (o, (a, b)) in out.iter_mut().zip(self.0.iter().zip(earlier.0.iter())) {
            *o = a.wrapping_sub(*b);
        }
        XdpCounters(out)
    }
}

/// The capture's per-CPU counters in the XDP program, summed over CPUs, per RX
/// queue.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaptureCounters {
    /// `(queue, counters indexed by CaptureCounter)`, for the queues with any
    /// non-zero counter, by queue.
    pub queues: Vec<(u32, [u64; CAPTURE_COUNTER_COUNT as usize])>,
}

impl CaptureCounters {
    /// The total of `counter` over every queue.
    pub fn get(&self, counter: CaptureCounter) -> u64 {
        self.queues
            .iter()
            .map(|(_, c)| c[counter.index() as usize])
            .sum()
    }

    /// `counter` on `queue`.
    pub fn on_queue(&self, queue: u32, counter: CaptureCounter) -> u64 {
        self.queues
            .iter()
            .find(|(q, _)| *q == queue)
            .map_or(0, |(_, c)| c[counter.index() as usize])
    }

    /// Every counter with its total over queues, in index order.
    pub fn iter(&self) -> impl Iterator<Item = (CaptureCounter, u64)> + '_ {
        CaptureCounter::ALL.iter().map(|&c| (c, self.get(c)))
    }

    /// What happened since `earlier`, per queue.
    pub fn since(&self, earlier: &CaptureCounters) -> CaptureCounters {
        let queues = self
            .queues
            .iter()
            .map(|(q, now)| {
                let mut d = *now;
                if let Some((_, before)) = earlier.queues.iter().find(|(e, _)| e == q) {
                    for (d, b) in d.iter_mut().zip(before) {
                        *d = d.saturating_sub(*b);
                    }
                }
                (*q, d)
            })
            .filter(|(_, d)| d.iter().any(|&v| v != 0))
            .collect();
        CaptureCounters { queues }
    }
}

/// The XDP program's ring of copies ([`xdp_ebpf::COPIES_MAP`]), user space's end.
pub struct CopyRing(pub(super) RingBuf<MapData>);

impl std::fmt::Debug for CopyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyRing")
            .field("fd", &self.0.as_fd().as_raw_fd())
            .finish()
    }
}

impl CopyRing {
    /// Hand `f` up to `max` records (a [`xdp_ebpf::CopyHeader`] and the frame),
    /// oldest first, each given back to the ring when `f` returns; the count.
    pub fn drain(&mut self, max: usize, mut f: impl FnMut(&[u8])) -> usize {
        let mut n = 0;
        while n < max {
            let Some(item) = self.0.next() else { break };
            f(&item);
            n += 1;
        }
        n
    }
}
