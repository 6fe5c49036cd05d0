//! Per-packet user-space cost of the data path over the simulated kernel ring:
//! RX descriptor -> FrameView -> two consumers -> release -> return queue -> fill
//! ring. The simulated ring's own work (moving descriptors between two VecDeques)
//! is included; the real rings cost about the same (a few ns per descriptor).
//!
//! `cargo bench -p xdpstack --bench datapath`

use std::{
    hint::black_box,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use xdpstack::{
    frame::{FramePool, FrameView, HeapMemory},
    poller::{Consumer, Overflow, Poller, PollerConfig},
    ring::sim::SimRings,
};

const FRAME: u32 = 2048;
const FRAMES: u32 = 4096;
const BUDGET: u32 = 64;
const LEN: u32 = 64;
/// The rounds' timestamp: the poller takes the time from its caller.
const NOW: u64 = 1_700_000_000_000_000_000;

fn poller() -> Poller<SimRings> {
    let pool = FramePool::new(Box::new(HeapMemory::new(FRAME, FRAMES)), 0);
    let mut p = Poller::new(
        SimRings::new(FRAME, FRAMES as usize, 2048),
        pool,
        0,
        PollerConfig {
            budget: BUDGET,
            ..PollerConfig::default()
        },
    );
    p.poll_once(NOW); // first fill
    p
}

/// A consumer that looks at the view (length, and the first byte when `touch`)
/// and drops it. Without `touch` this measures the data path alone; with it, also
/// the cache misses of reading frames that, in the benchmark, nobody wrote first
/// (the kernel's copy leaves them in cache in real life).
fn reader(sum: Arc<AtomicU64>, touch: bool) -> Box<dyn Consumer> {
    let mut local = 0u64;
    Box::new(move |v: &FrameView| {
        let first = if touch { u64::from(v.bytes()[0]) } else { 0 };
        local = local.wrapping_add(first + v.len() as u64);
        if local & 0xffff == 0 {
            sum.store(local, Ordering::Relaxed);
        }
    })
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("datapath");
    group.throughput(Throughput::Elements(u64::from(BUDGET)));
    group.measurement_time(Duration::from_secs(3));

    // Run-to-completion: both consumers on the poller's thread.
    for (name, touch) in [
        ("inline_two_consumers", false),
        ("inline_two_consumers_reading_cold_frames", true),
    ] {
        group.bench_function(name, |b| {
            let mut p = poller();
            let sum = Arc::new(AtomicU64::new(0));
            p.add_inline(reader(sum.clone(), touch));
            p.add_inline(reader(sum.clone(), touch));
            b.iter(|| {
                p.rings_mut().arrive(BUDGET as usize, LEN);
                black_box(p.poll_once(NOW));
            });
        });
    }

    // One consumer inline, one on its own thread behind a bounded queue (the UDP
    // consumer + pcap writer arrangement). Measured on the poller thread, per
    // packet received; the consumer thread drains concurrently on the other core.
    group.bench_function("inline_plus_threaded", |b| {
        b.iter_custom(|iters| {
            let mut p = poller();
            let sum = Arc::new(AtomicU64::new(0));
            p.add_inline(reader(sum.clone(), false));
            let (id, rx) = p.add_threaded(4096, Overflow::Wait);
            let done = Arc::new(AtomicBool::new(false));
            let d = done.clone();
            let handle = std::thread::spawn(move || {
                let mut n = 0u64;
                // Spins like a consumer with a core of its own; parking would
                // measure the scheduler's wake-up latency instead.
                while !d.load(Ordering::Relaxed) {
                    match rx.try_recv() {
                        Some(v) => n += v.len() as u64,
                        None => std::hint::spin_loop(),
                    }
                }
                n
            });
            p.set_consumer_thread(id, handle.thread().clone());
            let start = Instant::now();
            let mut received = 0u64;
            for _ in 0..iters {
                p.rings_mut().arrive(BUDGET as usize, LEN);
                received += p.poll_once(NOW) as u64;
            }
            let elapsed = start.elapsed();
            done.store(true, Ordering::Relaxed);
            handle.thread().unpark();
            black_box(handle.join().expect("consumer"));
            // Scale to the packets actually received (an empty fill ring drops
            // arrivals while the consumer thread holds frames).
            let expected = iters * u64::from(BUDGET);
            elapsed.mul_f64(expected as f64 / received.max(1) as f64)
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
