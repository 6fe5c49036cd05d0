//! Multi-buffer packets: one packet in a chain of frames, viewed and refcounted
//! as a unit.
//!
//! With AF_XDP multi-buffer (`XDP_USE_SG`), the kernel hands a packet larger than
//! a frame over as several RX descriptors, each but the last flagged
//! `XDP_PKT_CONTD`. The poller collects them as [`Segment`]s and makes one view
//! of the chain ([`FramePool::into_dispatch_chain`]): the first frame carries the
//! reference word, as a single frame does, and a side table links it to the
//! others (`Shared::next`) and says where each one's bytes are
//! (`Shared::span`). The last drop of a view returns the first frame tagged
//! `CHAINED`, and [`FramePool::reclaim`] hands back every frame of the chain.
//!
//! The tables are written by the pool's owner while it holds the frames'
//! unique handles, before any view of the chain exists; views read them
//! afterwards (published with the views by the queues that carry them), and
//! `reclaim` unlinks them once the last view is gone. No frame is linked and
//! viewed at the same time by anyone else, so Relaxed atomics suffice: they are
//! atomics only so that `Shared` stays `Sync` without more `unsafe`.

use std::sync::atomic::Ordering;

use super::{Frame, FramePool, FrameView, RxMeta, Shared};

/// "No next frame": the end of a chain, or a packet in one frame.
pub(super) const NO_FRAME: u32 = u32::MAX;

/// The tag of a chain's first frame in the return lists.
pub(super) const CHAINED: u32 = 1 << 31;

/// The most buffers one packet may have. The kernel's copy mode makes at most
/// `MAX_SKB_FRAGS + 1` (18) and drivers fewer; a longer chain on the RX ring is
/// not something the kernel makes, and the poller drops it rather than hold an
/// unbounded number of frames for one packet.
pub const MAX_SEGMENTS: usize = 32;

/// One buffer of a multi-buffer packet: the frame and where its bytes are
/// (counted from the frame's start, as the kernel's addresses are).
#[derive(Debug)]
#[must_use = "a Segment holds a frame handle"]
pub struct Segment {
    /// The frame.
    pub frame: Frame,
    /// Where the bytes start in the frame.
    pub offset: u32,
    /// How many bytes.
    pub len: u32,
}

impl Shared {
    /// Where the bytes of chained frame `index` are: (offset, len).
    #[inline]
    pub(super) fn span_of(&self, index: u32) -> (u32, u32) {
        let span = self.span[index as usize].load(Ordering::Relaxed);
        ((span >> 32) as u32, span as u32)
    }

    /// Bytes `offset..offset + len` of frame `index`.
    ///
    /// # Safety
    /// The range lies in the frame's usable region, and the frame is viewed
    /// (in no ring, and nobody holds `&mut` to it) for the returned lifetime.
    #[inline]
    pub(super) unsafe fn segment(&self, index: u32, offset: u32, len: u32) -> &[u8] {
        let start = (offset - self.headroom) as usize;
        // SAFETY: the caller's contract; `ptrs[index]` points to the frame's
        // usable region (the FrameMemory contract).
        unsafe {
            std::slice::from_raw_parts(self.ptrs[index as usize].as_ptr().add(start), len as usize)
        }
    }
}

/// Frames in the chain that starts at `index` (1 for a frame alone).
pub(super) fn chain_frames(shared: &Shared, index: u32) -> usize {
    let mut n = 1;
    let mut i = shared.next[index as usize].load(Ordering::Relaxed);
    while i != NO_FRAME && n <= shared.frame_count as usize {
        n += 1;
        i = shared.next[i as usize].load(Ordering::Relaxed);
    }
    n
}

/// The buffers of a view, in order ([`FrameView::segments`]).
pub struct Segments<'a> {
    shared: &'a Shared,
    /// The first buffer, until it is yielded.
    first: Option<&'a [u8]>,
    next: u32,
}

impl<'a> Segments<'a> {
    pub(super) fn new(shared: &'a Shared, index: u32, offset: u32, len: usize, next: u32) -> Self {
        // SAFETY: the view that asks holds the frame (see `FrameView::bytes`,
        // which gave `len`), for as long as it lends `shared`.
        let first = unsafe { shared.segment(index, offset, len as u32) };
        Self {
            shared,
            first: Some(first),
            next,
        }
    }
}

impl std::fmt::Debug for Segments<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segments")
            .field("next", &self.next)
            .finish()
    }
}

impl<'a> Iterator for Segments<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        if self.next == NO_FRAME {
            return None;
        }
        let index = self.next;
        self.next = self.shared.next[index as usize].load(Ordering::Relaxed);
        let (offset, len) = self.shared.span_of(index);
        // SAFETY: the frame is in the chain of a view that lives for 'a (so in
        // no ring), and its range was checked when the chain was linked.
        Some(unsafe { self.shared.segment(index, offset, len) })
    }
}

impl FramePool {
    /// [`FramePool::into_dispatch`] for a packet in several frames: one view
    /// (per consumer, and the poller's) of the chain `segments` (in order, the
    /// first holding the headers), which it empties. The frames come back
    /// together, by [`FramePool::reclaim`], when the last view is dropped.
    ///
    /// # Panics
    /// If `segments` is empty or longer than [`MAX_SEGMENTS`], a range does not
    /// lie within its frame's usable region, a frame is not of this pool, or
    /// `owners` names a consumer at or above `MAX_CONSUMERS`.
    pub fn into_dispatch_chain(
        &mut self,
        segments: &mut Vec<Segment>,
        meta: RxMeta,
        owners: u8,
        each: impl FnMut(FrameView),
    ) -> FrameView {
        assert!(
            (1..=MAX_SEGMENTS).contains(&segments.len()),
            "a chain of {} buffers",
            segments.len()
        );
        let mut total = 0u32;
        for s in segments.iter() {
            self.shared.check(&s.frame);
            self.check_range(s.offset, s.len);
            total = total.saturating_add(s.len);
        }
        let mut drained = segments.drain(..);
        let head = drained.next().expect("checked non-empty");
        if drained.len() == 0 {
            drop(drained);
            return self.into_dispatch(head.frame, head.offset, head.len, meta, owners, each);
        }
        let shared = &self.shared;
        let span = |s: &Segment| u64::from(s.offset) << 32 | u64::from(s.len);
        shared.span[head.frame.index as usize].store(span(&head), Ordering::Relaxed);
        let mut prev = head.frame.index;
        let mut tails = 0u64;
        let mut second = NO_FRAME;
        for s in drained {
            // The handle ends here: the chain's first frame owns this one now.
            let index = s.frame.index;
            shared.span[index as usize].store(span(&s), Ordering::Relaxed);
            shared.next[prev as usize].store(index, Ordering::Relaxed);
            if second == NO_FRAME {
                second = index;
            }
            prev = index;
            tails += 1;
        }
        shared.next[prev as usize].store(NO_FRAME, Ordering::Relaxed);
        self.out += tails;
        self.dispatch(head.frame, head.offset, total, second, meta, owners, each)
    }

    /// The unique view `view` back as the handles of its frames, in order, in
    /// `out` (the transmit path: a reply built in the received packet itself,
    /// one frame or a chain). Returns the view when other views exist or it is
    /// of another pool.
    pub fn take_unique_segments(
        &mut self,
        view: FrameView,
        out: &mut Vec<Segment>,
    ) -> Result<(), FrameView> {
        if !view.is_chained() {
            let (frame, offset, len) = self.take_unique(view)?;
            out.push(Segment { frame, offset, len });
            return Ok(());
        }
        if !self.owns(&view) || !view.is_unique() {
            return Err(view);
        }
        let view = std::mem::ManuallyDrop::new(view);
        // Unique (checked with Acquire above) and held by value: no other view
        // can appear or be dropped concurrently; the frames are ours again.
        self.shared.refs[view.index as usize].store(0, Ordering::Relaxed);
        let head_len = self.shared.span_of(view.index).1;
        out.push(Segment {
            frame: self.shared.frame(view.index),
            offset: view.offset,
            len: head_len,
        });
        self.out -= 1;
        self.cursor_take(view.index, out);
        Ok(())
    }

    /// Unlink the chain after `head`, pushing its frames to `out`.
    fn cursor_take(&mut self, head: u32, out: &mut Vec<Segment>) {
        let shared = &self.shared;
        let mut i = shared.next[head as usize].swap(NO_FRAME, Ordering::Relaxed);
        while i != NO_FRAME {
            let (offset, len) = shared.span_of(i);
            out.push(Segment {
                frame: shared.frame(i),
                offset,
                len,
            });
            self.out -= 1;
            i = shared.next[i as usize].swap(NO_FRAME, Ordering::Relaxed);
        }
    }

    /// The frame at the reclaim cursor, unlinked; the cursor moves on.
    #[inline]
    pub(super) fn unlink_next(&mut self) -> u32 {
        let index = self.cursor;
        self.cursor = self.shared.next[index as usize].swap(NO_FRAME, Ordering::Relaxed);
        index
    }
}
