//! The poller's rounds over the fake ring: fill, receive, dispatch, overflow,
//! and frame conservation under random schedules.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use proptest::prelude::*;

use super::*;
use crate::{
    frame::{FrameView, HeapMemory},
    ring::sim::SimRings,
};

const FRAME: u32 = 512;

/// The time the rounds run at (ns since the Unix epoch): the poller reads no
/// clock, so every view's timestamp is the one its round was given.
pub(crate) const NOW: u64 = 1_700_000_000_123_456_789;

type FakeRings = SimRings;

pub(crate) fn poller(
    frames: u32,
    fill_cap: usize,
    rx_cap: usize,
    budget: u32,
) -> Poller<FakeRings> {
    let pool = FramePool::new(Box::new(HeapMemory::new(FRAME, frames)), 0);
    Poller::new(
        SimRings::new(FRAME, fill_cap, rx_cap),
        pool,
        0,
        PollerConfig {
            budget,
            ..PollerConfig::default()
        },
    )
}

/// Every frame is in exactly one place: free list, kernel rings, return queue,
/// or viewed; no address is in the kernel twice; no viewed frame is in the
/// kernel.
pub(super) fn check_conservation(p: &Poller<FakeRings>, held: &[&Vec<FrameView>]) {
    let kernel = p.rings().kernel_frames();
    let unique: HashSet<u64> = kernel.iter().copied().collect();
    assert_eq!(unique.len(), kernel.len(), "a frame is in the kernel twice");
    assert_eq!(kernel.len() as u64, p.frames_in_kernel(), "in-kernel count");
    for views in held {
        for v in views.iter() {
            assert!(
                !unique.contains(&u64::from(v.frame_index())),
                "frame {} is in a kernel ring while viewed",
                v.frame_index()
            );
        }
    }
    let total = p.free_frames()
        + kernel.len()
        + p.pool().returned_len()
        + p.pool().viewed_frames()
        + p.spare_frames()
        + p.frames_in_chain();
    assert_eq!(total, p.pool().frame_count() as usize, "frame conservation");
}

/// The rings' occupancy is read only when a reader asks, and then matches
/// where the frames are.
#[test]
fn ring_occupancy_is_sampled_on_request() {
    let mut p = poller(64, 64, 64, 16);
    p.poll_once(NOW);
    assert_eq!(p.rings_mut().arrive(10, 100), 10);
    let stats = p.stats();
    let sample = |s: &QueueStats| {
        (
            s.rx_ring.load(Ordering::Relaxed),
            s.fill_ring.load(Ordering::Relaxed),
        )
    };
    p.answer_ring_sample();
    assert_eq!(sample(&stats), (0, 0), "nobody asked");
    stats.sample_rings.store(true, Ordering::Relaxed);
    p.answer_ring_sample();
    assert!(!stats.sample_rings.load(Ordering::Relaxed), "answered");
    assert_eq!(sample(&stats), (10, 54));
    assert_eq!(10 + 54, p.frames_in_kernel());
    assert_eq!(
        p.ring_occupancy(),
        RingOccupancy {
            rx_ring: 10,
            fill_ring: 54
        }
    );
}

#[test]
fn first_round_fills_and_frames_flow_back() {
    let mut p = poller(64, 64, 64, 16);
    assert_eq!(p.poll_once(NOW), 0);
    assert_eq!(p.frames_in_kernel(), 64);
    let held = Arc::new(Mutex::new(Vec::new()));
    let h = held.clone();
    p.add_inline(Box::new(move |v: &FrameView| {
        h.lock().unwrap().push(v.clone())
    }));
    assert_eq!(p.rings_mut().arrive(40, 100), 40);
    assert_eq!(p.poll_once(NOW), 16, "budget");
    assert_eq!(p.poll_once(NOW), 16);
    assert_eq!(p.poll_once(NOW), 8);
    {
        let views = held.lock().unwrap();
        assert_eq!(views.len(), 40);
        assert!(views.iter().all(|v| v.len() == 100));
        check_conservation(&p, &[&views]);
    }
    held.lock().unwrap().clear();
    p.poll_once(NOW);
    assert_eq!(p.frames_in_kernel(), 64, "all frames back in the fill ring");
    let s = p.stats();
    assert_eq!(s.rx_packets.load(Ordering::Relaxed), 40);
    assert_eq!(s.rx_bytes.load(Ordering::Relaxed), 4000);
    assert_eq!(s.consumers[0].delivered.load(Ordering::Relaxed), 40);
}

#[test]
fn two_consumers_share_one_frame() {
    let mut p = poller(8, 8, 8, 8);
    let a = Arc::new(Mutex::new(Vec::new()));
    let b = Arc::new(Mutex::new(Vec::new()));
    let (a2, b2) = (a.clone(), b.clone());
    let ia = p.add_inline(Box::new(move |v: &FrameView| {
        a2.lock().unwrap().push(v.clone())
    }));
    let ib = p.add_inline(Box::new(move |v: &FrameView| {
        b2.lock().unwrap().push(v.clone())
    }));
    p.poll_once(NOW);
    p.rings_mut().arrive(3, 60);
    assert_eq!(p.poll_once(NOW), 3);
    {
        let (va, vb) = (a.lock().unwrap(), b.lock().unwrap());
        for (x, y) in va.iter().zip(vb.iter()) {
            assert_eq!(x.frame_index(), y.frame_index(), "same frame, two views");
            assert_eq!(x.ref_count(), 2);
            assert_eq!(x.bytes().as_ptr(), y.bytes().as_ptr(), "zero copy");
        }
    }
    assert_eq!((p.pool().held_by(ia), p.pool().held_by(ib)), (3, 3));
    a.lock().unwrap().clear();
    b.lock().unwrap().clear();
    p.poll_once(NOW);
    assert_eq!(p.frames_in_kernel(), 8, "every frame back");
}

#[test]
fn full_queue_drops_and_counts_without_blocking() {
    let mut p = poller(32, 32, 32, 32);
    let (id, rx) = p.add_threaded(4, Overflow::Drop);
    p.poll_once(NOW);
    p.rings_mut().arrive(10, 64);
    assert_eq!(p.poll_once(NOW), 10);
    let c = &p.stats().consumers[usize::from(id.0)];
    assert_eq!(c.delivered.load(Ordering::Relaxed), 4);
    assert_eq!(c.dropped.load(Ordering::Relaxed), 6);
    assert_eq!(rx.len(), 4);
    // Dropped views returned their frames at once.
    assert_eq!(p.pool().returned_len(), 6);
    while let Some(v) = rx.try_recv() {
        drop(v);
    }
    p.poll_once(NOW);
    assert_eq!(p.frames_in_kernel(), 32);
}

#[test]
fn lossless_consumer_holds_frames_back_and_the_kernel_counts() {
    let mut p = poller(16, 16, 16, 16);
    let (id, rx) = p.add_threaded(2, Overflow::Wait);
    p.poll_once(NOW);
    // More packets than frames: the backlog holds every frame, the fill ring
    // runs dry, the fake kernel counts fill-ring-empty drops.
    let delivered = p.rings_mut().arrive(16, 64);
    assert_eq!(delivered, 16);
    p.poll_once(NOW);
    assert_eq!(p.backlogged(), 14);
    assert_eq!(p.rings_mut().arrive(5, 64), 0);
    assert_eq!(p.rings().fill_empty(), 5);
    let c = &p.stats().consumers[usize::from(id.0)];
    assert_eq!(c.dropped.load(Ordering::Relaxed), 0, "lossless");
    // The consumer catches up; everything reaches it, in order.
    let mut got = Vec::new();
    for _ in 0..20 {
        while let Some(v) = rx.try_recv() {
            got.push(v.frame_index());
        }
        p.poll_once(NOW);
    }
    assert_eq!(got.len(), 16);
    assert_eq!(p.backlogged(), 0);
    assert_eq!(p.frames_in_kernel(), 16);
}

#[derive(Clone, Debug)]
enum Op {
    Arrive(usize),
    Poll,
    ReleaseInline(usize),
    DrainThreaded(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..80).prop_map(Op::Arrive),
        Just(Op::Poll),
        (0usize..40).prop_map(Op::ReleaseInline),
        (0usize..40).prop_map(Op::DrainThreaded),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Random arrivals, polls, release orders and queue-full events: frames are
    /// conserved at every step, never reused while viewed, and after draining
    /// every frame is free or in the fill ring once; counters add up.
    #[test]
    fn frames_are_conserved(
        ops in proptest::collection::vec(op(), 1..120),
        frames in 8u32..64,
        budget in 1u32..32,
        queue_cap in 1usize..16,
        lossless in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut p = poller(frames, frames as usize, 32, budget);
        let inline_held = Arc::new(Mutex::new(Vec::new()));
        let h = inline_held.clone();
        p.add_inline(Box::new(move |v: &FrameView| h.lock().unwrap().push(v.clone())));
        let overflow = if lossless { Overflow::Wait } else { Overflow::Drop };
        let (tid, rx) = p.add_threaded(queue_cap, overflow);
        let mut threaded_held: Vec<FrameView> = Vec::new();
        let mut arrived = 0u64;
        let mut rng = seed;
        let mut next = move |n: usize| {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((rng >> 33) as usize) % n.max(1)
        };
        for op in ops {
            match op {
                Op::Arrive(n) => arrived += p.rings_mut().arrive(n, 60) as u64,
                Op::Poll => { p.poll_once(NOW); }
                Op::ReleaseInline(n) => {
                    let mut held = inline_held.lock().unwrap();
                    for _ in 0..n.min(held.len()) {
                        let i = next(held.len());
                        held.swap_remove(i);
                    }
                }
                Op::DrainThreaded(n) => {
                    for _ in 0..n {
                        match rx.try_recv() { Some(v) => threaded_held.push(v), None => break }
                    }
                    for _ in 0..next(threaded_held.len() + 1) {
                        if threaded_held.is_empty() { break; }
                        let i = next(threaded_held.len());
                        threaded_held.swap_remove(i);
                    }
                }
            }
            let held = inline_held.lock().unwrap();
            check_conservation(&p, &[&held, &threaded_held]);
        }
        // Drain: consumers let go of everything, the poller catches up.
        for _ in 0..(frames as usize * 4) {
            inline_held.lock().unwrap().clear();
            threaded_held.clear();
            while rx.try_recv().is_some() {}
            p.poll_once(NOW);
        }
        check_conservation(&p, &[]);
        prop_assert_eq!(p.frames_in_kernel() + p.free_frames() as u64, u64::from(frames));
        prop_assert_eq!(p.frames_in_kernel(), u64::from(frames), "fill ring takes every frame");
        let s = p.stats();
        let received = s.rx_packets.load(Ordering::Relaxed);
        prop_assert_eq!(received, arrived, "every arrival received");
        let c0 = &s.consumers[0];
        prop_assert_eq!(c0.delivered.load(Ordering::Relaxed), received);
        let c1 = &s.consumers[usize::from(tid.0)];
        prop_assert_eq!(
            c1.delivered.load(Ordering::Relaxed) + c1.dropped.load(Ordering::Relaxed),
            received,
            "threaded: delivered + dropped = received"
        );
        if lossless {
            prop_assert_eq!(c1.dropped.load(Ordering::Relaxed), 0);
        }
    }
}

/// Views carry the time their round was given and their queue: the poller reads
/// no clock of its own.
#[test]
fn views_carry_the_round_time_and_queue() {
    let pool = FramePool::new(Box::new(HeapMemory::new(FRAME, 8)), 5);
    let mut p = Poller::new(SimRings::new(FRAME, 8, 8), pool, 5, PollerConfig::default());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    p.add_inline(Box::new(move |v: &FrameView| {
        s.lock()
            .unwrap()
            .push((v.timestamp_ns(), v.queue(), v.len()))
    }));
    p.poll_once(NOW);
    p.rings_mut().arrive(2, 60);
    p.poll_once(NOW + 1);
    p.rings_mut().arrive(1, 70);
    p.poll_once(NOW + 2);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![(NOW + 1, 5, 60), (NOW + 1, 5, 60), (NOW + 2, 5, 70)]
    );
}

/// Inline consumers are lent the poller's view; threaded ones get views of
/// their own, whatever their place in the list: the set of owned views is the
/// threaded consumers'.
#[test]
fn threaded_consumers_own_their_views_wherever_registered() {
    let mut p = poller(16, 16, 16, 16);
    assert!(!p.has_threaded());
    let kept = Arc::new(Mutex::new(Vec::new()));
    let k = kept.clone();
    let inline = p.add_inline(Box::new(move |v: &FrameView| {
        assert_eq!(v.holder().index(), 0, "lent as the inline consumer's");
        k.lock().unwrap().push(v.clone())
    }));
    let (threaded, rx) = p.add_threaded(16, Overflow::Drop);
    assert!(p.has_threaded());
    assert_eq!((inline.index(), threaded.index()), (0, 1));
    p.poll_once(NOW);
    p.rings_mut().arrive(3, 60);
    assert_eq!(p.poll_once(NOW), 3);
    assert_eq!((rx.len(), rx.is_empty()), (3, false));
    assert_eq!(
        (p.pool().held_by(inline), p.pool().held_by(threaded)),
        (3, 3)
    );
    let v = rx.try_recv().unwrap();
    assert_eq!(v.holder(), threaded);
    drop(v);
    while rx.try_recv().is_some() {}
    assert!(rx.is_empty());
    assert_eq!(p.pool().held_by(threaded), 0);
}

/// A threaded consumer asleep is woken at the end of the batch that gave it
/// views (its `sleeping` flag taken, its thread unparked), once.
#[test]
fn a_sleeping_consumer_is_woken_once_per_batch() {
    let mut p = poller(16, 16, 16, 16);
    let (id, rx) = p.add_threaded(16, Overflow::Drop);
    p.set_consumer_thread(id, std::thread::current());
    assert!(
        matches!(&p.sinks[id.index()], Sink::Threaded { thread: Some(t), .. }
            if t.id() == std::thread::current().id()),
        "the poller knows whom to wake"
    );
    p.poll_once(NOW);
    rx.sleeping.store(true, Ordering::SeqCst);
    p.poll_once(NOW);
    assert!(rx.sleeping.load(Ordering::SeqCst), "no views, no wakeup");
    p.rings_mut().arrive(2, 60);
    p.poll_once(NOW);
    assert!(!rx.sleeping.load(Ordering::SeqCst), "woken");
    // The unpark token is there (parking returns at once; bounded all the same).
    std::thread::park_timeout(Duration::from_secs(30));
    // `park` announces sleep, sees the queue not empty and returns.
    rx.park(Duration::from_secs(30));
    assert!(!rx.sleeping.load(Ordering::SeqCst));
    assert_eq!(rx.len(), 2);
}

/// The poller knows its queue and what it holds on the TX ring.
#[test]
fn queue_and_tx_figures() {
    let pool = FramePool::new(Box::new(HeapMemory::new(FRAME, 8)), 3);
    let p = Poller::new(SimRings::new(FRAME, 8, 8), pool, 3, PollerConfig::default());
    let mut p = p;
    assert_eq!(p.queue(), 3);
    assert_eq!(poller(8, 8, 8, 7).config().budget, 7, "the tuning given");
    assert_eq!(p.frames_in_tx(), 0);
    assert!(!p.has_tx());
    assert!(p.tx_idle());
    let _tx = p.transmitter();
    assert!(p.has_tx(), "a transmitter was handed out");
}

/// The pool binds to the poller's thread before any frame is viewed, not after.
#[test]
fn the_poller_binds_its_pool_before_frames_are_out() {
    let mut p = poller(8, 8, 8, 8);
    let held = Arc::new(Mutex::new(Vec::new()));
    let h = held.clone();
    p.add_inline(Box::new(move |v: &FrameView| {
        h.lock().unwrap().push(v.clone())
    }));
    assert!(p.bind_to_current_thread());
    p.poll_once(NOW);
    p.rings_mut().arrive(1, 60);
    p.poll_once(NOW);
    assert!(!p.bind_to_current_thread(), "a frame is held");
    held.lock().unwrap().clear();
}

/// A descriptor longer than its frame (which the kernel never sends) is cut to
/// the frame's end rather than trusted.
#[test]
fn a_descriptor_past_its_frame_is_cut_to_the_frame() {
    let mut p = poller(8, 8, 8, 8);
    let lens = Arc::new(Mutex::new(Vec::new()));
    let l = lens.clone();
    p.add_inline(Box::new(move |v: &FrameView| {
        l.lock().unwrap().push(v.len())
    }));
    p.poll_once(NOW);
    p.rings_mut().arrive(1, 10 * FRAME);
    p.poll_once(NOW);
    let room = (FRAME as u64 - crate::ring::sim::SIM_HEADROOM) as usize;
    assert_eq!(*lens.lock().unwrap(), vec![room]);
}

/// A consumer without a `consume_owned` of its own is lent each owned view.
#[test]
fn owned_views_are_lent_to_consume_by_default() {
    let mut pool = FramePool::new(Box::new(HeapMemory::new(FRAME, 1)), 0);
    let f = pool.take_all().pop().unwrap();
    let view = pool.into_view(
        f,
        0,
        42,
        crate::frame::RxMeta::default(),
        FramePool::consumer_id(0),
    );
    let mut seen = 0;
    let mut consumer = |v: &FrameView| seen += v.len();
    Consumer::consume_owned(&mut consumer, view);
    assert_eq!(seen, 42);
    assert_eq!(pool.viewed_frames(), 0, "the owned view was dropped");
}

/// A dropping consumer that stalls (a capture writer stuck on a slow disk) may
/// have a queue as large as the pool. The poller takes views back from it
/// before the fill ring runs dry: the inline consumer still gets every packet,
/// and the views taken back are counted as the stalled consumer's drops.
#[test]
fn a_stalled_dropping_consumer_cannot_starve_the_others() {
    let mut p = poller(256, 256, 256, 64);
    let inline = Arc::new(Mutex::new(0u64));
    let i2 = inline.clone();
    p.add_inline(Box::new(move |_: &FrameView| *i2.lock().unwrap() += 1));
    // Never drained: the thread behind it is stuck.
    let (id, rx) = p.add_threaded(256, Overflow::Drop);
    p.poll_once(NOW);
    let mut arrived = 0;
    for _ in 0..50 {
        arrived += p.rings_mut().arrive(64, 64);
        p.poll_once(NOW);
    }
    assert_eq!(arrived, 50 * 64, "the fill ring never ran dry");
    assert_eq!(p.rings().fill_empty(), 0);
    assert_eq!(*inline.lock().unwrap(), arrived as u64);
    let c = &p.stats().consumers[usize::from(id.0)];
    let (delivered, dropped, reclaimed) = (
        c.delivered.load(Ordering::Relaxed),
        c.dropped.load(Ordering::Relaxed),
        c.reclaimed.load(Ordering::Relaxed),
    );
    assert_eq!(delivered + dropped, arrived as u64);
    assert!(
        reclaimed > 0 && reclaimed <= dropped,
        "{reclaimed} of {dropped}"
    );
    assert_eq!(delivered, rx.len() as u64, "delivered = still queued");
    check_conservation(&p, &[]);
}

/// A consumer that waits is never robbed: the kernel drops instead (counted).
#[test]
fn a_waiting_consumer_keeps_its_views_when_the_fill_ring_is_low() {
    let mut p = poller(64, 64, 64, 16);
    let (id, rx) = p.add_threaded(64, Overflow::Wait);
    p.poll_once(NOW);
    for _ in 0..8 {
        p.rings_mut().arrive(16, 64);
        p.poll_once(NOW);
    }
    let c = &p.stats().consumers[usize::from(id.0)];
    assert_eq!(c.reclaimed.load(Ordering::Relaxed), 0);
    assert_eq!(c.dropped.load(Ordering::Relaxed), 0);
    assert_eq!(rx.len(), 64, "every frame held by the waiting consumer");
    assert!(p.rings().fill_empty() > 0, "the kernel counted its drops");
}
