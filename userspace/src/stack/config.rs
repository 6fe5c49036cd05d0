//! What the stack is asked to do: the interface, queues, program, sockets,
//! poller tuning and stop conditions, and the consumers of each queue.

use std::{ops::RangeInclusive, str::FromStr, sync::Arc, time::Duration};

pub use xdp_ebpf::CaptureMode;
use xdp_ebpf::SteerMode;

use crate::{
    filter::Filter,
    poller::{Consumer, Overflow, PollerConfig},
    sys::{loader::XdpModeChoice, xsk::XskConfig},
};

/// The capture's part in the XDP program: what happens to the frames no app
/// claims that the expression selects.
#[derive(Clone, Debug)]
pub struct KernelCapture {
    /// Copied and passed on to the kernel ([`CaptureMode::Copy`]), or stolen
    /// into the sockets ([`CaptureMode::Steal`]).
    pub mode: CaptureMode,
    /// The expression, run in the XDP program; `None` selects every frame.
    pub filter: Option<Arc<Filter>>,
    /// Bytes copied of each frame.
    pub snaplen: u32,
}

/// Everything the stack needs to run.
#[derive(Clone, Debug)]
pub struct StackOptions {
    /// Interface.
    pub iface: String,
    /// RX queues.
    pub queues: QueueSpec,
    /// What the XDP program steers.
    pub mode: SteerMode,
    /// UDP destination ports (in `Udp` mode).
    pub ports: Vec<u16>,
    /// XDP attach mode.
    pub xdp_mode: XdpModeChoice,
    /// UMEM and rings.
    pub xsk: XskConfig,
    /// Poller tuning (budget, spinning, busy polling).
    pub poller: PollerConfig,
    /// Pin queue i's poller to CPU i (modulo the CPU count).
    pub pin_cpus: bool,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Stop after this many packets (all queues).
    pub count: Option<u64>,
    /// Report an [`super::Interval`] this often, if set (to the callback of
    /// [`super::run`]).
    pub stats_interval: Option<Duration>,
    /// Capture in the XDP program, if any.
    pub kernel_capture: Option<KernelCapture>,
    /// Give each received frame its own receive time, stamped by the XDP
    /// program (for a capture), instead of its poll round's.
    pub stamps: bool,
    /// Packets larger than a UMEM frame (AF_XDP multi-buffer).
    pub multi_buffer: MultiBuffer,
}

/// `--multi-buffer auto|on|off`: packets larger than one UMEM frame, carried
/// as chains of frames (AF_XDP multi-buffer: an `xdp.frags` program and
/// sockets bound with `XDP_USE_SG`, Linux 6.6 and later).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MultiBuffer {
    /// A frags-aware program; sockets bound for multi-buffer when the MTU
    /// does not fit one frame (binding it when it is not needed could cost a
    /// driver's zero-copy mode).
    #[default]
    Auto,
    /// A frags-aware program, and sockets bound for multi-buffer whatever the
    /// MTU (an MTU that may be raised while the stack runs).
    On,
    /// Neither: an MTU that does not fit one frame is refused, and the XDP
    /// program is one that drivers without multi-buffer support accept.
    Off,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            iface: String::new(),
            queues: QueueSpec::All,
            mode: SteerMode::Udp,
            ports: Vec::new(),
            xdp_mode: XdpModeChoice::Auto,
            xsk: XskConfig::default(),
            poller: PollerConfig::default(),
            pin_cpus: false,
            duration: None,
            count: None,
            stats_interval: None,
            kernel_capture: None,
            stamps: false,
            multi_buffer: MultiBuffer::Auto,
        }
    }
}

/// `--queues all|N|A-B`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueSpec {
    /// Every RX queue of the interface.
    All,
    /// The queues in this inclusive range.
    Range(RangeInclusive<u32>),
}

/// `N` or `A-B` (inclusive, A <= B) of any integer type; `what` names the value in
/// errors (the syntax of `--queues` and `--port`).
pub fn parse_range<T>(s: &str, what: &str) -> Result<RangeInclusive<T>, String>
where
    T: FromStr + PartialOrd + Copy,
{
    let parse = |x: &str| {
        x.trim()
            .parse::<T>()
            .map_err(|_| format!("`{s}` is not {what}"))
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (parse(a)?, parse(b)?);
            if a > b {
                return Err(format!("range `{s}` is empty"));
            }
            Ok(a..=b)
        }
        None => {
            let n = parse(s)?;
            Ok(n..=n)
        }
    }
}

impl FromStr for QueueSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "all" {
            return Ok(QueueSpec::All);
        }
        parse_range(s, "all, a queue N or a range A-B").map(QueueSpec::Range)
    }
}

impl QueueSpec {
    /// The queue indexes, given the interface's RX queue count.
    pub fn resolve(&self, available: u32) -> Result<Vec<u32>, String> {
        match self {
            QueueSpec::All => Ok((0..available).collect()),
            QueueSpec::Range(r) => {
                if *r.end() >= available {
                    // The first queue asked for that is missing, and what there is.
                    let first = (*r.start()).max(available);
                    let missing = if first == *r.end() {
                        format!("queue {first} does not exist")
                    } else {
                        format!("queues {first}-{} do not exist", r.end())
                    };
                    let has = match available {
                        1 => "1 RX queue (queue 0)".to_string(),
                        n => format!("{n} RX queues (0-{})", n - 1),
                    };
                    return Err(format!(
                        "{missing}: the interface has {has} (see `ethtool -l`)"
                    ));
                }
                Ok(r.clone().collect())
            }
        }
    }
}

/// How a consumer receives frames.
pub enum ConsumerSpec {
    /// On the poller's thread, run to completion.
    Inline {
        /// Name in statistics.
        name: String,
        /// The consumer.
        consumer: Box<dyn Consumer>,
    },
    /// On a thread of its own, behind a bounded queue.
    Threaded {
        /// Name in statistics.
        name: String,
        /// The consumer, moved to its thread.
        consumer: Box<dyn Consumer>,
        /// Queue capacity in views, at most half the queue's frames: a consumer
        /// that falls behind then loses views (counted) while the other half keeps
        /// the fill ring going for the other consumers, instead of the kernel
        /// dropping frames for everyone.
        capacity: usize,
        /// What a full queue does.
        overflow: Overflow,
    },
}

impl std::fmt::Debug for ConsumerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConsumerSpec::Inline { name, .. } => f.debug_tuple("Inline").field(name).finish(),
            ConsumerSpec::Threaded {
                name,
                capacity,
                overflow,
                ..
            } => f
                .debug_struct("Threaded")
                .field("name", name)
                .field("capacity", capacity)
                .field("overflow", overflow)
                .finish(),
        }
    }
}

impl ConsumerSpec {
    pub(crate) fn name(&self) -> &str {
        match self {
            ConsumerSpec::Inline { name, .. } | ConsumerSpec::Threaded { name, .. } => name,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_queues_are_named_from_the_first() {
        let err = |r: RangeInclusive<u32>, n| QueueSpec::Range(r).resolve(n).unwrap_err();
        assert_eq!(
            err(0..=3, 1),
            "queues 1-3 do not exist: the interface has 1 RX queue (queue 0) (see `ethtool -l`)"
        );
        assert_eq!(
            err(5..=5, 2),
            "queue 5 does not exist: the interface has 2 RX queues (0-1) (see `ethtool -l`)"
        );
        assert_eq!(
            err(2..=5, 4),
            "queues 4-5 do not exist: the interface has 4 RX queues (0-3) (see `ethtool -l`)"
        );
        assert_eq!(QueueSpec::Range(1..=2).resolve(4).unwrap(), vec![1, 2]);
        assert_eq!(QueueSpec::All.resolve(3).unwrap(), vec![0, 1, 2]);
    }
}
