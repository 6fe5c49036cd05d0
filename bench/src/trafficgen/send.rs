//! The sending loop: `BPF_PROG_TEST_RUN` calls sized to the measured rate, from
//! the calling thread or one pinned thread per CPU.

use std::{
    sync::{
        Barrier,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use super::error::GenError;
use xdpstack::sys::process::pin_to_cpu;

use crate::loader::TrafficGenProgram;

/// Wall time one `BPF_PROG_TEST_RUN` call aims at. Each call costs two RCU grace
/// periods on top of the frames (the kernel adds the program to the XDP dispatcher
/// and removes it again, `bpf_dispatcher_change_prog`), about 25 ms measured here
/// and spent asleep: calls of 50 ms left the CPU idle a third of the time. A second
/// per call keeps that near 2%; Ctrl-C may then take up to a second.
const CHUNK_TARGET: Duration = Duration::from_secs(1);
/// The first call measures the rate.
const FIRST_CHUNK: u32 = 1 << 16;
const MIN_CHUNK: u32 = 1 << 10;
const MAX_CHUNK: u32 = 1 << 28;

/// The share of `count` that sender `i` of `n` sends: as even as can be.
fn share(count: u64, i: usize, n: usize) -> u64 {
    let (n, i) = (n as u64, i as u64);
    count / n + u64::from(i < count % n)
}

/// Frames for the next call at `rate` frames/s: [`CHUNK_TARGET`] worth, or what
/// is `left` of the duration if less, within [`MIN_CHUNK`]..=[`MAX_CHUNK`].
fn next_chunk(rate: f64, left: Option<Duration>) -> u32 {
    let secs = left.map_or(CHUNK_TARGET, |l| l.min(CHUNK_TARGET));
    (rate * secs.as_secs_f64()).clamp(f64::from(MIN_CHUNK), f64::from(MAX_CHUNK)) as u32
}

/// How one sending thread counts its frames: its CPU's slot of the program's
/// per-CPU counter when pinned, the total when it is the only sender.
#[derive(Clone, Copy)]
enum Tally {
    Cpu(usize),
    Total,
}

impl Tally {
    fn runs(self, program: &TrafficGenProgram) -> Result<u64, GenError> {
        Ok(match self {
            Tally::Cpu(cpu) => program.runs_per_cpu()?.get(cpu).copied().unwrap_or(0),
            Tally::Total => program.counters()?.runs,
        })
    }
}

/// What every sending thread sends, and when it stops.
pub(super) struct Sender<'a> {
    /// The loaded and configured program.
    pub(super) program: &'a TrafficGenProgram,
    /// The template frame.
    pub(super) frame: &'a [u8],
    /// The interface to send out of.
    pub(super) ifindex: u32,
    /// Frames per live-frames batch.
    pub(super) batch: u32,
    /// Set by the caller (Ctrl-C), or by a failing sender to stop the others.
    pub(super) stop: &'a AtomicBool,
    /// The end of the run's duration, if it has one.
    pub(super) deadline: Option<Instant>,
}

impl Sender<'_> {
    /// Send `remaining` frames in all (or until the deadline or the stop flag):
    /// from the calling thread when `cpus` is empty, otherwise from one thread
    /// pinned to each CPU of `cpus`, each sending its [`share`]. The first error
    /// stops the other threads and is returned.
    pub(super) fn send_on(&self, cpus: &[usize], remaining: Option<u64>) -> Result<(), GenError> {
        if cpus.is_empty() {
            return self.send(remaining, Tally::Total);
        }
        let n = cpus.len();
        let ready = Barrier::new(n);
        std::thread::scope(|scope| -> Result<(), GenError> {
            let handles: Vec<_> = cpus
                .iter()
                .enumerate()
                .map(|(i, &cpu)| {
                    let ready = &ready;
                    scope.spawn(move || {
                        let pinned = pin_to_cpu(cpu);
                        // Everyone waits for everyone, pinned or not, so that no
                        // thread is left waiting on one that failed.
                        ready.wait();
                        pinned.map_err(|source| GenError::Pin { cpu, source })?;
                        self.send(remaining.map(|c| share(c, i, n)), Tally::Cpu(cpu))
                    })
                })
                .collect();
            let mut result = Ok(());
            for h in handles {
                let r = h.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
                if let Err(e) = r {
                    // Stop the others at once; report the first error.
                    self.stop.store(true, Ordering::Relaxed);
                    if result.is_ok() {
                        result = Err(e);
                    }
                }
            }
            result
        })
    }

    /// Send up to `limit` frames (or until the deadline or the stop flag),
    /// counting with `tally`. Returns when this sender is done.
    fn send(&self, limit: Option<u64>, tally: Tally) -> Result<(), GenError> {
        let start = tally.runs(self.program)?;
        // Frames per second of wall time, the calls' fixed cost included.
        let mut rate = None;
        loop {
            let now = Instant::now();
            if self.stop.load(Ordering::Relaxed) || self.deadline.is_some_and(|d| now >= d) {
                return Ok(());
            }
            let left = self.deadline.map(|d| d - now);
            let mut frames = rate.map_or(FIRST_CHUNK, |r| next_chunk(r, left));
            if let Some(limit) = limit {
                let done = tally.runs(self.program)? - start;
                if done >= limit {
                    return Ok(());
                }
                frames = frames.min(u32::try_from(limit - done).unwrap_or(u32::MAX));
            }
            let t0 = Instant::now();
            match self
                .program
                .send_live(self.frame, self.ifindex, frames, self.batch)
            {
                Ok(_) => {
                    let took = t0.elapsed().as_secs_f64();
                    if took > 0.0 {
                        rate = Some(f64::from(frames) / took);
                    }
                }
                // A signal cut the run short; the program counted what it sent.
                Err(e) if e.source.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_shared_evenly_and_completely() {
        for (count, n) in [(10, 3), (2, 3), (0, 2), (1_000_001, 2), (7, 1)] {
            let shares: Vec<u64> = (0..n).map(|i| share(count, i, n)).collect();
            assert_eq!(shares.iter().sum::<u64>(), count);
            let (min, max) = (shares.iter().min().unwrap(), shares.iter().max().unwrap());
            assert!(max - min <= 1, "{shares:?}");
        }
    }

    #[test]
    fn chunks_aim_at_the_target_time_within_bounds() {
        assert_eq!(CHUNK_TARGET, Duration::from_secs(1));
        assert_eq!(next_chunk(3e6, None), 3_000_000);
        // The end of the duration comes first.
        assert_eq!(next_chunk(3e6, Some(Duration::from_millis(100))), 300_000);
        assert_eq!(next_chunk(3e6, Some(Duration::from_secs(5))), 3_000_000);
        assert_eq!(next_chunk(10.0, None), MIN_CHUNK);
        assert_eq!(next_chunk(3e6, Some(Duration::ZERO)), MIN_CHUNK);
        assert_eq!(next_chunk(1e12, None), MAX_CHUNK);
    }
}
