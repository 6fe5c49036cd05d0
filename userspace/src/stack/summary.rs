//! What a run reports: the summary at the end and the intervals of the live
//! statistics, as plain data (serializable); rendering them is the front end's.

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU64, Ordering},
};

use super::QueueRun;
use crate::{
    frame::{ConsumerId, FramePool},
    poller::QueueStats,
    ring::{RingOccupancy, Rings},
    sys::{
        Kernel, XskStats,
        loader::{AttachedMode, XdpCounters},
    },
    tx::TxSummary,
};

/// One consumer's figures on one queue.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ConsumerSummary {
    /// Consumer name.
    pub name: String,
    /// Views handed to it.
    pub delivered: u64,
    /// Views dropped because its queue was full, or taken back unconsumed.
    pub dropped: u64,
    /// Of `dropped`: views taken back from its queue unconsumed, so that the
    /// kernel's fill ring would not run dry (a dropping consumer that lags).
    pub reclaimed: u64,
    /// Views it held when the summary was taken.
    pub held: u64,
}

/// What one queue did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct QueueSummary {
    /// RX queue index.
    pub queue: u32,
    /// Packets received on the AF_XDP socket (one in several buffers counts
    /// once).
    pub packets: u64,
    /// Bytes of those packets.
    pub bytes: u64,
    /// Of `packets`: those that came in several buffers (AF_XDP multi-buffer).
    pub multi_buffer: u64,
    /// Descriptors dropped that the kernel should never make (an address
    /// outside the UMEM, a packet of more than 32 buffers).
    pub malformed: u64,
    /// Rounds that received frames.
    pub batches: u64,
    /// Rounds that found the RX ring empty.
    pub empty_polls: u64,
    /// Frames without the XDP program's receive stamp while capturing (they
    /// carry their round's time).
    pub unstamped: u64,
    /// Sleeps in poll(2).
    pub sleeps: u64,
    /// Syscalls made to wake the kernel.
    pub wakeups: u64,
    /// Batches given to the fill ring.
    pub fill_batches: u64,
    /// Frames in the free list at the end.
    pub frames_free: u64,
    /// Frames the kernel held at the end (fill and RX rings, and buffers it took
    /// off the fill ring).
    pub frames_in_kernel: u64,
    /// Of those, the frames on the RX ring and on the fill ring.
    pub rings: RingOccupancy,
    /// Frames on the TX and completion rings at the end.
    pub frames_in_tx: u64,
    /// The transmit side.
    pub tx: TxSummary,
    /// Per consumer.
    pub consumers: Vec<ConsumerSummary>,
    /// The kernel's XDP_STATISTICS for the socket.
    pub xsk: XskStats,
    /// The consumers' own counters at the end (the UDP consumer's datagrams and
    /// rejects by reason), by name, as in the live statistics.
    pub counters: BTreeMap<&'static str, u64>,
}

/// The outcome of a run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Summary {
    /// Always "summary" (an interval's is "interval").
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Interface.
    pub iface: String,
    /// XDP attach mode obtained.
    pub xdp_mode: AttachedMode,
    /// True when every socket is zero-copy.
    pub zero_copy: bool,
    /// Seconds from attach to detach.
    #[serde(serialize_with = "round_micros")]
    pub seconds: f64,
    /// CPU time (user + system) the process spent over the same span, seconds.
    #[serde(serialize_with = "round_micros")]
    pub cpu_s: f64,
    /// Frames received, all queues.
    pub packets: u64,
    /// Bytes received, all queues.
    pub bytes: u64,
    /// Per queue.
    pub queues: Vec<QueueSummary>,
    /// The XDP program's counters over the run, by name (`capture_*`: the
    /// capture's, with an expression or `--steal`).
    pub xdp: BTreeMap<&'static str, u64>,
    /// Copies the XDP program could not make because the ring was full, by RX
    /// queue (the pcapng interface statistics' ifdrop).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub capture_lost: BTreeMap<u32, u64>,
}

/// One queue in a `--stats` interval.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct QueueInterval {
    /// RX queue.
    pub queue: u32,
    /// Packets per second over the interval.
    #[serde(serialize_with = "round_tenths")]
    pub pps: f64,
    /// Megabits per second over the interval (frame bytes).
    #[serde(serialize_with = "round_thousandths")]
    pub mbps: f64,
    /// Packets since the start (monotonic).
    pub packets: u64,
    /// Bytes since the start (monotonic).
    pub bytes: u64,
    /// Of `packets`: those that came in several buffers (multi-buffer).
    pub multi_buffer: u64,
    /// Descriptors dropped that the kernel should never make, since the start.
    pub malformed: u64,
    /// The kernel's drop counters since the start.
    pub xsk: XskStats,
    /// Frames the kernel holds (fill and RX rings, and buffers it took off the
    /// fill ring).
    pub frames_in_kernel: u64,
    /// Of those, the frames on the fill ring and on the RX ring, sampled by the
    /// poller when the interval is taken (a poller asleep on an idle queue
    /// answers later: its last sample stands, which an idle queue does not
    /// change).
    pub rings: RingOccupancy,
    /// Frames free in user space.
    pub frames_free: u64,
    /// Per consumer: views held now, delivered and dropped since the start.
    pub consumers: Vec<ConsumerSummary>,
    /// The transmit side since the start.
    pub tx: TxSummary,
    /// The consumers' own counters (the UDP consumer's datagrams and rejects by
    /// reason), by name.
    pub counters: BTreeMap<&'static str, u64>,
}

/// A `--stats` interval: every queue and the total.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Interval {
    /// Always "interval" (the summary's is "summary").
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Seconds since attach.
    #[serde(serialize_with = "round_micros")]
    pub t: f64,
    /// The interface.
    pub iface: String,
    /// XDP attach mode.
    pub xdp_mode: String,
    /// True when every socket is zero-copy.
    pub zero_copy: bool,
    /// Per queue.
    pub queues: Vec<QueueInterval>,
    /// Packets per second, all queues.
    #[serde(serialize_with = "round_tenths")]
    pub pps: f64,
    /// Megabits per second, all queues.
    #[serde(serialize_with = "round_thousandths")]
    pub mbps: f64,
    /// The XDP program's counters since attach, by name (all queues): what was
    /// redirected, passed for each reason, and found malformed.
    pub xdp: BTreeMap<&'static str, u64>,
    /// The capture writer's counters so far, when the service captures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture: Option<crate::capture::CaptureStats>,
}

pub(super) fn counters_by_name(c: &XdpCounters) -> BTreeMap<&'static str, u64> {
    c.iter().map(|(k, v)| (k.name(), v)).collect()
}

/// Each consumer's figures: `held(id)` scans the pool's side table.
pub(super) fn consumer_summaries(
    names: &[String],
    stats: &QueueStats,
    held: impl Fn(ConsumerId) -> u64,
) -> Vec<ConsumerSummary> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| ConsumerSummary {
            name: name.clone(),
            delivered: stats.consumers[i].delivered.load(Ordering::Relaxed),
            dropped: stats.consumers[i].dropped.load(Ordering::Relaxed),
            reclaimed: stats.consumers[i].reclaimed.load(Ordering::Relaxed),
            held: held(FramePool::consumer_id(i)),
        })
        .collect()
}

pub(super) fn summarize<R: Rings + Kernel>(
    run: &mut QueueRun<R>,
) -> Result<QueueSummary, std::io::Error> {
    let rings = run.poller.ring_occupancy();
    let s = run.poller.stats();
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let consumers = consumer_summaries(&run.names, &s, |id| run.poller.pool().held_by(id));
    Ok(QueueSummary {
        queue: run.poller.queue(),
        packets: get(&s.rx_packets),
        bytes: get(&s.rx_bytes),
        multi_buffer: get(&s.rx_multi_buffer),
        malformed: get(&s.rx_malformed),
        batches: get(&s.batches),
        empty_polls: get(&s.empty_polls),
        unstamped: get(&s.unstamped),
        sleeps: get(&s.sleeps),
        wakeups: get(&s.wakeups),
        fill_batches: get(&s.fill_batches),
        frames_free: run.poller.free_frames() as u64,
        frames_in_kernel: run.poller.frames_in_kernel(),
        rings,
        frames_in_tx: run.poller.frames_in_tx(),
        tx: s.tx.summary(),
        consumers,
        xsk: run.poller.rings().statistics()?,
        counters: run.live.iter().flat_map(|l| l.counters()).collect(),
    })
}

/// Seconds in the JSON to the microsecond (`0.074978`, not
/// `0.07497799999999999`): more digits than the clocks give say nothing.
fn round_micros<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((v * 1e6).round() / 1e6)
}

/// A rate of packets a second to a tenth.
fn round_tenths<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((v * 10.0).round() / 10.0)
}

/// Megabits a second to the kilobit.
fn round_thousandths<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((v * 1e3).round() / 1e3)
}
