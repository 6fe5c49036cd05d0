//! The run loop's end-of-run steps over the fake ring.

use std::{sync::atomic::Ordering, time::Duration};

use super::{BusyPoll, flush_backlogs};
use crate::poller::{
    Overflow,
    tests::{NOW, poller},
};

/// At stop, a lossless backlog goes to its consumer, still running, in full;
/// a consumer that takes nothing has it dropped and counted.
#[test]
fn backlogs_are_flushed_at_stop() {
    for reads in [true, false] {
        let mut p = poller(16, 16, 16, 16);
        let (id, rx) = p.add_threaded(2, Overflow::Wait);
        p.poll_once(NOW);
        assert_eq!(p.rings_mut().arrive(16, 64), 16);
        p.poll_once(NOW);
        assert_eq!(p.backlogged(), 14);
        let mut flushed = 0;
        let got = std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let mut got = 0;
                let deadline = std::time::Instant::now() + Duration::from_secs(5);
                while reads && got < 16 && std::time::Instant::now() < deadline {
                    match rx.try_recv() {
                        Some(_) => got += 1,
                        None => std::thread::yield_now(),
                    }
                }
                got
            });
            flushed = flush_backlogs(&mut p, Duration::from_millis(if reads { 2000 } else { 50 }));
            reader.join().unwrap()
        });
        assert_eq!(p.backlogged(), 0);
        let c = &p.stats().consumers[usize::from(id.0)];
        let (delivered, dropped) = (
            c.delivered.load(Ordering::Relaxed),
            c.dropped.load(Ordering::Relaxed),
        );
        if reads {
            assert_eq!((got, delivered, dropped, flushed), (16, 16, 0, 0));
        } else {
            // The two in its queue stay delivered; the backlog is dropped.
            assert_eq!((got, delivered, dropped, flushed), (0, 2, 14, 14));
        }
    }
}

/// `--busy-poll` holds while the socket has a NAPI id to busy poll, and falls
/// back to sleeping once packets show it has none; the id is asked once, after
/// the first packet.
#[test]
fn busy_polling_falls_back_without_a_napi_id() {
    let mut asked = 0;
    let mut busy = BusyPoll::new(true);
    assert!(busy.keep(0, || unreachable!("no packet yet"), 0));
    assert!(
        !busy.keep(
            5,
            || {
                asked += 1;
                Ok(0)
            },
            0
        ),
        "no NAPI id"
    );
    assert!(
        !busy.keep(
            9,
            || {
                asked += 1;
                Ok(8193)
            },
            0
        ),
        "decided"
    );
    assert_eq!(asked, 1);

    let mut busy = BusyPoll::new(true);
    assert!(busy.keep(1, || Ok(8193), 0));
    assert!(busy.keep(2, || unreachable!("asked once"), 0));
    let mut busy = BusyPoll::new(true);
    assert!(
        busy.keep(1, || Err(std::io::Error::other("old kernel")), 0),
        "unknown: kept"
    );

    let mut off = BusyPoll::new(false);
    assert!(!off.keep(1, || unreachable!("not busy polling"), 0));
}

/// `--require busy-poll`: where the fallback would happen, the run fails,
/// naming the requirement; a NAPI id, or an unknown one, goes on.
#[test]
fn required_busy_polling_fails_instead_of_falling_back() {
    let mut busy = BusyPoll::new(true).required(true);
    assert!(
        busy.keep_or_fail(0, || unreachable!("no packet yet"), 0)
            .unwrap()
    );
    let err = busy.keep_or_fail(3, || Ok(0), 0).unwrap_err();
    assert!(
        err.to_string().starts_with("--require busy-poll: "),
        "{err}"
    );
    let mut busy = BusyPoll::new(true).required(true);
    assert!(busy.keep_or_fail(3, || Ok(77), 0).unwrap());
    let mut busy = BusyPoll::new(true).required(true);
    assert!(
        busy.keep_or_fail(3, || Err(std::io::Error::other("old")), 0)
            .unwrap()
    );
    let mut busy = BusyPoll::new(true);
    assert!(
        !busy.keep_or_fail(3, || Ok(0), 0).unwrap(),
        "not required: falls back"
    );
}
