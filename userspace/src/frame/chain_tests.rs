//! Multi-buffer chains: one view of several frames, refcounted as a unit; also
//! run under Miri.

use std::collections::BTreeSet;

use super::*;

const A: ConsumerId = ConsumerId(0);
const B: ConsumerId = ConsumerId(1);

fn pool(frames: u32) -> FramePool {
    FramePool::new(Box::new(HeapMemory::new(64, frames)), 0)
}

/// A chain of the frames in `frames` (popped in order), each holding `lens[i]`
/// bytes of the pattern `i * 16 + byte offset`, from offset 8.
fn chain_of(pool: &FramePool, frames: &mut Vec<Frame>, lens: &[u32]) -> (Vec<Segment>, Vec<u8>) {
    let mut segs = Vec::new();
    let mut whole = Vec::new();
    for (i, &len) in lens.iter().enumerate() {
        let mut frame = frames.pop().expect("enough frames");
        let bytes = pool.bytes_mut(&mut frame);
        for b in 0..len as usize {
            bytes[8 + b] = (i * 16 + b) as u8;
            whole.push((i * 16 + b) as u8);
        }
        segs.push(Segment {
            frame,
            offset: 8,
            len,
        });
    }
    (segs, whole)
}

#[test]
fn a_chain_is_one_view_of_all_its_bytes() {
    for n in 2..=5 {
        let mut pool = pool(8);
        let mut frames = pool.take_all();
        let lens: Vec<u32> = (0..n).map(|i| 56 - i).collect();
        let (mut segs, whole) = chain_of(&pool, &mut frames, &lens);
        let mut seen = Vec::new();
        let own = pool.into_dispatch_chain(&mut segs, RxMeta::default(), 0b1, |v| seen.push(v));
        assert!(segs.is_empty(), "the chain's handles are consumed");
        assert_eq!(seen.len(), 1);
        let v = &seen[0];
        assert!(v.is_chained());
        assert_eq!(v.len(), whole.len());
        assert_eq!(
            v.bytes(),
            &whole[..lens[0] as usize],
            "bytes() is the first buffer"
        );
        let got: Vec<u32> = v.segments().map(|s| s.len() as u32).collect();
        assert_eq!(got, lens);
        let mut scratch = Vec::new();
        assert_eq!(v.contiguous(&mut scratch), &whole[..]);
        // Every range, across every boundary, reads back the same bytes.
        // Every start natively; under Miri, a sample that still crosses
        // every boundary (the interpreter is slow).
        let step = if cfg!(miri) { 7 } else { 1 };
        for start in (0..whole.len()).step_by(step) {
            for len in [0, 1, 7, 56, 57, 200] {
                let joined: Vec<u8> = v.slices(start, len).flatten().copied().collect();
                let end = (start + len).min(whole.len());
                assert_eq!(joined, &whole[start..end], "n {n} start {start} len {len}");
                assert!(v.slices(start, len).all(|s| !s.is_empty()));
            }
        }
        assert_eq!(pool.viewed_frames(), n as usize);
        drop(own);
        assert!(pool.reclaim().is_none(), "back while a view lives");
        drop(seen);
        let back: Vec<u32> = std::iter::from_fn(|| pool.reclaim().map(|f| f.index())).collect();
        assert_eq!(
            back.len(),
            n as usize,
            "every frame of the chain comes back"
        );
        assert_eq!(
            back.iter().collect::<BTreeSet<_>>().len(),
            n as usize,
            "once each"
        );
        assert_eq!(pool.viewed_frames(), 0);
        // Reused as single frames, they are no longer chained.
        // SAFETY: frame back[1] was just reclaimed and this is its only handle
        // (the reclaimed ones were dropped); `received` is how a frame back
        // from the kernel gets one.
        let f = unsafe { pool.received(u64::from(back[1]) * 64) }.unwrap();
        let v = pool.into_view(f, 8, 4, RxMeta::default(), A);
        assert!(!v.is_chained());
        assert_eq!(v.segments().count(), 1);
        drop(v);
        assert!(pool.reclaim().is_some());
        assert!(pool.reclaim().is_none());
    }
}

#[test]
fn a_chain_dropped_on_other_threads_comes_back_once() {
    let mut pool = pool(16);
    let mut frames = pool.take_all();
    let mut views = Vec::new();
    for _ in 0..3 {
        let (mut segs, _) = chain_of(&pool, &mut frames, &[40, 40, 10]);
        let own = pool.into_dispatch_chain(&mut segs, RxMeta::default(), 0b11, |v| views.push(v));
        drop(own);
    }
    let handles: Vec<_> = views
        .into_iter()
        .map(|v| std::thread::spawn(move || drop(v)))
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let back: BTreeSet<u32> = std::iter::from_fn(|| pool.reclaim().map(|f| f.index())).collect();
    assert_eq!(back.len(), 9);
    assert_eq!(pool.held_by(A) + pool.held_by(B), 0);
    drop(frames);
}

#[test]
fn a_unique_chain_is_taken_back_whole_and_a_shared_one_is_not() {
    let mut pool = pool(8);
    let mut frames = pool.take_all();
    let (mut segs, _) = chain_of(&pool, &mut frames, &[50, 30, 20]);
    let indexes: Vec<u32> = segs.iter().map(|s| s.frame.index()).collect();
    let own = pool.into_dispatch_chain(&mut segs, RxMeta::default(), 0, |_| {});
    let other = own.share_with(A);
    let mut out = Vec::new();
    let own = pool.take_unique_segments(own, &mut out).unwrap_err();
    assert!(out.is_empty());
    drop(other);
    pool.take_unique_segments(own, &mut out).unwrap();
    let got: Vec<(u32, u32, u32)> = out
        .iter()
        .map(|s| (s.frame.index(), s.offset, s.len))
        .collect();
    assert_eq!(
        got,
        vec![
            (indexes[0], 8, 50),
            (indexes[1], 8, 30),
            (indexes[2], 8, 20)
        ]
    );
    assert!(pool.reclaim().is_none(), "taken, not returned");
    // The frames are single again: a view of the first is not chained.
    let first = out.remove(0).frame;
    let v = pool.into_view(first, 8, 1, RxMeta::default(), A);
    assert!(!v.is_chained());
    drop(v);
    assert!(pool.reclaim().is_some());
    drop((out, frames));
}

#[test]
fn take_unique_refuses_a_chain() {
    let mut pool = pool(4);
    let mut frames = pool.take_all();
    let (mut segs, _) = chain_of(&pool, &mut frames, &[10, 10]);
    let own = pool.into_dispatch_chain(&mut segs, RxMeta::default(), 0, |_| {});
    let own = pool.take_unique(own).unwrap_err();
    drop(own);
    assert_eq!(std::iter::from_fn(|| pool.reclaim()).count(), 2);
    drop(frames);
}

#[test]
#[should_panic(expected = "outside the usable region")]
fn a_segment_outside_its_frame_is_refused() {
    let mut pool = pool(4);
    let mut frames = pool.take_all();
    let (mut segs, _) = chain_of(&pool, &mut frames, &[10, 10]);
    segs[1].len = 60;
    let _ = pool.into_dispatch_chain(&mut segs, RxMeta::default(), 0, |_| {});
}
