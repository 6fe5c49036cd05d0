//! The pool's ownership and refcount rules, also run under Miri.

use super::*;

fn pool(frames: u32) -> FramePool {
    FramePool::new(Box::new(HeapMemory::new(256, frames)), 3)
}

const A: ConsumerId = ConsumerId(0);
const B: ConsumerId = ConsumerId(1);

#[test]
fn last_view_returns_the_frame_once() {
    let mut pool = pool(4);
    let mut frames = pool.take_all();
    let f = frames.pop().unwrap();
    let v1 = pool.into_view(
        f,
        16,
        32,
        RxMeta {
            queue: 3,
            timestamp_ns: 7,
        },
        A,
    );
    let v2 = v1.share_with(B);
    assert_eq!(
        (v1.ref_count(), pool.held_by(A), pool.held_by(B)),
        (2, 1, 1)
    );
    drop(v1);
    assert!(
        pool.reclaim().is_none(),
        "frame returned while a view lives"
    );
    assert_eq!(v2.queue(), 3);
    assert_eq!(v2.timestamp_ns(), 7);
    drop(v2);
    assert_eq!(pool.reclaim().map(|f| f.index()), Some(3));
    assert!(pool.reclaim().is_none(), "returned twice");
    assert_eq!((pool.held_by(A), pool.held_by(B)), (0, 0));
    drop(frames);
}

#[test]
fn views_see_exactly_their_bytes() {
    let mut pool = pool(2);
    let mut frames = pool.take_all();
    let mut f = frames.pop().unwrap();
    pool.bytes_mut(&mut f)[10..14].copy_from_slice(b"abcd");
    let v = pool.into_view(f, 10, 4, RxMeta::default(), A);
    assert_eq!(v.as_ref(), b"abcd");
    assert_eq!(v.len(), 4);
    drop(v);
    let back = pool.reclaim().unwrap();
    assert_eq!(back.index(), 1);
    drop((frames, back));
}

#[test]
fn make_mut_is_in_place_only_when_unique() {
    let mut pool = pool(1);
    let f = pool.take_all().pop().unwrap();
    let mut v = pool.into_view(f, 0, 8, RxMeta::default(), A);
    let mut scratch = Vec::new();
    let other = v.share_with(B);
    let (bytes, how) = v.make_mut(&mut scratch);
    assert_eq!(how, CowOutcome::Copied);
    bytes[0] = 0xff;
    assert_eq!(
        other.as_ref()[0],
        0,
        "a copy must not change the shared frame"
    );
    drop(other);
    let (bytes, how) = v.make_mut(&mut scratch);
    assert_eq!(how, CowOutcome::InPlace);
    bytes[0] = 0xee;
    assert_eq!(v.as_ref()[0], 0xee);
}

#[test]
fn views_keep_the_memory_alive_after_the_pool_is_gone() {
    let mut pool = pool(2);
    let f = pool.take_all().remove(0);
    let v = pool.into_view(f, 0, 4, RxMeta::default(), A);
    drop(pool);
    assert_eq!(v.as_ref(), &[0, 0, 0, 0]);
    let v2 = v.clone();
    drop(v);
    drop(v2); // frees the memory; Miri checks there is no use after free
}

#[test]
fn concurrent_releases_return_each_frame_exactly_once() {
    const FRAMES: u32 = 64;
    let mut pool = pool(FRAMES);
    let frames = pool.take_all();
    let mut views_a = Vec::new();
    let mut views_b = Vec::new();
    for f in frames {
        let v = pool.into_view(f, 0, 1, RxMeta::default(), A);
        views_b.push(v.share_with(B));
        views_a.push(v);
    }
    let ta = std::thread::spawn(move || drop(views_a));
    let tb = std::thread::spawn(move || {
        while let Some(v) = views_b.pop() {
            drop(v);
        }
    });
    ta.join().unwrap();
    tb.join().unwrap();
    let mut seen = vec![false; FRAMES as usize];
    while let Some(f) = pool.reclaim() {
        assert!(
            !seen[f.index() as usize],
            "frame {} returned twice",
            f.index()
        );
        seen[f.index() as usize] = true;
        drop(f);
    }
    assert!(seen.iter().all(|&s| s), "a frame never came back");
    assert_eq!(pool.viewed_frames(), 0);
}

/// A handle of one pool is refused by every entry point of another: it would
/// otherwise give safe code `&mut` access to bytes the other pool's views read.
#[test]
fn a_frame_of_another_pool_is_refused_everywhere() {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    let mut a = pool(2);
    let mut b = pool(2);
    let mut frames_a = a.take_all();
    let _frames_b = b.take_all();
    let refused = |what: &str, r: std::thread::Result<()>| {
        let err = r.expect_err(what);
        let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains("used with pool"), "{what}: {msg}");
    };
    let mut f = frames_a.pop().unwrap();
    refused(
        "bytes_mut",
        catch_unwind(AssertUnwindSafe(|| {
            b.bytes_mut(&mut f)[0] = 1;
        })),
    );
    let writer = b.writer();
    refused(
        "writer",
        catch_unwind(AssertUnwindSafe(|| {
            writer.bytes_mut(&mut f)[0] = 1;
        })),
    );
    let f2 = frames_a.pop().unwrap();
    refused(
        "into_view",
        catch_unwind(AssertUnwindSafe(|| {
            drop(b.into_view(f2, 0, 4, RxMeta::default(), A));
        })),
    );
    refused(
        "into_addr",
        catch_unwind(AssertUnwindSafe(|| {
            let _ = f.into_addr(&b);
        })),
    );
    // Nothing of b was touched: no view, every frame still its own.
    assert_eq!((b.viewed_frames(), b.held_by(A)), (0, 0));
}

/// A pool's own handles pass the check, and handles know their pool through
/// `received` and `reclaim` as well as `take_all`.
#[test]
fn handles_come_back_with_their_pool() {
    let mut p = pool(2);
    let mut frames = p.take_all();
    let f = frames.pop().unwrap();
    let addr = f.into_addr(&p);
    // SAFETY: `addr` was just taken from its handle and is claimed once.
    let mut back = unsafe { p.received(addr) }.expect("our address");
    p.bytes_mut(&mut back)[0] = 7;
    let v = p.into_view(back, 0, 1, RxMeta::default(), A);
    drop(v);
    let again = p.reclaim().expect("returned");
    let _ = again.into_addr(&p);
    drop(frames);
}

/// Frames come back through the owner thread's list when their last view is
/// dropped there, and through the lock-free queue from any other thread.
#[test]
fn last_drops_return_by_the_owner_list_or_the_queue() {
    let mut p = pool(4);
    assert!(p.bind_to_current_thread(), "nothing is out yet");
    let mut frames = p.take_all();
    let here = p.into_view(frames.pop().unwrap(), 0, 1, RxMeta::default(), A);
    let there = p.into_view(frames.pop().unwrap(), 0, 1, RxMeta::default(), A);
    drop(here);
    assert_eq!(p.shared.returns.len(), 0, "dropped on the owner: its list");
    assert_eq!(p.shared.with_local(|l| l.len()), Some(1));
    std::thread::spawn(move || drop(there)).join().unwrap();
    assert_eq!(p.shared.returns.len(), 1, "dropped elsewhere: the queue");
    assert_eq!(p.returned_len(), 2);
    // Off the owner thread the owner's list is out of reach.
    let shared = p.shared.clone();
    let seen = std::thread::spawn(move || shared.with_local(|l| l.len()))
        .join()
        .unwrap();
    assert_eq!(seen, None);
    while let Some(f) = p.reclaim() {
        frames.push(f);
    }
    assert_eq!(frames.len(), 4);
}

/// The pool changes owner only while no frame is out: a view dropped meanwhile
/// would touch the owner's list from the old owner.
#[test]
fn the_owner_changes_only_while_no_frame_is_out() {
    let mut p = pool(2);
    let mut frames = p.take_all();
    let v = p.into_view(frames.pop().unwrap(), 0, 1, RxMeta::default(), A);
    assert!(!p.bind_to_current_thread(), "a frame is out");
    drop(v);
    frames.push(p.reclaim().unwrap());
    // Bound to another thread, drops here go through the queue.
    let p = std::thread::scope(|s| {
        s.spawn(move || {
            assert!(p.bind_to_current_thread());
            p
        })
        .join()
        .unwrap()
    });
    let mut p = p;
    let v = p.into_view(frames.pop().unwrap(), 0, 1, RxMeta::default(), A);
    drop(v);
    assert_eq!(p.shared.returns.len(), 1);
    frames.push(p.reclaim().unwrap());
    drop(frames);
}

/// Each thread has its own id, and keeps it.
#[test]
fn thread_ids_are_distinct_and_stable() {
    let mine = thread_id();
    assert_ne!(mine, 0);
    assert_eq!(thread_id(), mine);
    let other = std::thread::spawn(thread_id).join().unwrap();
    assert_ne!(other, mine);
}

/// Consumer ids are their registration index, each a byte of the word.
#[test]
fn consumer_ids_index_their_byte() {
    for n in 0..MAX_CONSUMERS {
        let id = FramePool::consumer_id(n);
        assert_eq!(id.index(), n);
        assert_eq!(id.unit(), 1 << (8 * n));
    }
    assert_eq!(POLLER.unit(), 1 << (8 * MAX_CONSUMERS));
}

/// The probe reads the same per-consumer counts as the pool, from any thread.
#[test]
fn the_probe_counts_views_per_consumer() {
    let mut p = pool(4);
    let mut frames = p.take_all();
    let probe = p.probe();
    let v1 = p.into_view(frames.pop().unwrap(), 0, 1, RxMeta::default(), A);
    let v2 = v1.share_with(B);
    let v3 = v2.clone();
    let v4 = p.into_view(frames.pop().unwrap(), 0, 1, RxMeta::default(), B);
    let counts =
        std::thread::spawn(move || (probe.held_by(A), probe.held_by(B), probe.viewed_frames()))
            .join()
            .unwrap();
    assert_eq!(counts, (1, 3, 2));
    assert_eq!((p.held_by(A), p.held_by(B), p.viewed_frames()), (1, 3, 2));
    assert_eq!(v1.ref_count(), 3);
    drop((v1, v2, v3, v4));
    while let Some(f) = p.reclaim() {
        frames.push(f);
    }
}

/// Memory whose frames start after a headroom, like a UMEM's.
struct WithHeadroom(HeapMemory);

// SAFETY: frame `i`'s usable region is the heap frame's bytes from the headroom
// on: inside frame `i`, which does not overlap the others.
unsafe impl FrameMemory for WithHeadroom {
    fn frame_ptr(&self, index: u32) -> std::ptr::NonNull<u8> {
        // SAFETY: 64 < frame size, so the offset stays inside frame `index`.
        unsafe { self.0.frame_ptr(index).add(64) }
    }
    fn headroom(&self) -> u32 {
        64
    }
    fn frame_count(&self) -> u32 {
        self.0.frame_count()
    }
    fn frame_size(&self) -> u32 {
        self.0.frame_size()
    }
}

/// Offsets count from the frame's start, as the kernel's addresses do; the
/// usable region starts at the headroom.
#[test]
fn views_start_after_the_headroom() {
    let mut p = FramePool::new(Box::new(WithHeadroom(HeapMemory::new(256, 2))), 0);
    assert_eq!(p.headroom(), 64);
    let mut frames = p.take_all();
    let mut f = frames.pop().unwrap();
    let bytes = p.bytes_mut(&mut f);
    assert_eq!(bytes.len(), 256 - 64);
    bytes[10] = 0xab;
    let mut v = p.into_view(f, 64 + 10, 1, RxMeta::default(), A);
    assert_eq!(v.bytes(), &[0xab]);
    assert!(!v.is_empty());
    let mut scratch = Vec::new();
    let (bytes, how) = v.make_mut(&mut scratch);
    assert_eq!((&*bytes, how), (&[0xab][..], CowOutcome::InPlace));
    bytes[0] = 0xcd;
    assert_eq!(v.bytes(), &[0xcd]);
    drop(v);
    let f = p.reclaim().unwrap();
    let below = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        drop(p.into_view(f, 10, 1, RxMeta::default(), A));
    }));
    assert!(below.is_err(), "a view below the headroom is refused");
    drop(frames);
}

/// A view turned back into its frame's handle (`take_unique`, the in-place
/// reply) no longer counts as out: the pool may change owner and frees its
/// memory when dropped.
#[test]
fn take_unique_ends_the_frames_time_out() {
    let mut p = pool(2);
    let mut frames = p.take_all();
    let v = p.into_view(frames.pop().unwrap(), 0, 4, RxMeta::default(), A);
    let shared = v.share_with(B);
    let v = p.take_unique(v).expect_err("shared: not unique");
    drop(shared);
    let (f, offset, len) = p.take_unique(v).expect("unique now");
    assert_eq!((offset, len), (0, 4));
    assert_eq!(p.viewed_frames(), 0);
    assert!(p.bind_to_current_thread(), "nothing is out");
    frames.push(f);
}

#[test]
fn an_empty_view_is_empty() {
    let mut p = pool(1);
    let f = p.take_all().pop().unwrap();
    let v = p.into_view(f, 8, 0, RxMeta::default(), A);
    assert!(v.is_empty());
    assert_eq!(v.len(), 0);
}

/// Like `Arc`, a consumer's 256th view of one frame aborts the process rather
/// than carry into the next consumer's byte of the reference word; 255 are
/// fine. Run in a child process (the abort would end the test binary).
#[test]
#[cfg_attr(miri, ignore = "spawns a child process")]
fn a_consumers_view_count_cannot_overflow_its_byte() {
    const CHILD: &str = "XDPSTACK_VIEW_OVERFLOW_CHILD";
    if let Ok(n) = std::env::var(CHILD) {
        let n: usize = n.parse().unwrap();
        let mut p = pool(1);
        let f = p.take_all().pop().unwrap();
        // Consumer B: its byte is the second of the word.
        let first = p.into_view(f, 0, 1, RxMeta::default(), B);
        let views: Vec<FrameView> = (1..n).map(|_| first.clone()).collect();
        assert_eq!(p.held_by(B), n as u64);
        drop((views, first));
        return;
    }
    let run = |n: usize| {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "frame::tests::a_consumers_view_count_cannot_overflow_its_byte",
            ])
            .env(CHILD, n.to_string())
            .output()
            .unwrap()
    };
    let ok = run(255);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let over = run(256);
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(over.status.signal(), Some(libc::SIGABRT), "{over:?}");
}
