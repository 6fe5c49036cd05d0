//! The refcounted view of a frame.

use std::{
    fmt,
    ptr::NonNull,
    sync::atomic::{Ordering, fence},
};

use super::{ConsumerId, NO_FRAME, RxMeta, Segments, Shared};

/// A refcounted, zero-copy view of a received frame. `Send` and `Sync`; cloning
/// adds a reference; the last drop returns the frame to its poller.
///
/// A packet larger than one frame (AF_XDP multi-buffer) is one view of a chain
/// of frames, refcounted as a unit: [`FrameView::len`] is the whole packet's
/// length, [`FrameView::bytes`] its first buffer (which holds the headers),
/// [`FrameView::segments`] every buffer in order, and the last drop returns
/// every frame of the chain.
pub struct FrameView {
    /// Valid as long as any view exists: the pool frees `Shared` only when no
    /// frame is out, and leaks it otherwise (see `FramePool`'s Drop).
    pub(super) shared: NonNull<Shared>,
    pub(super) index: u32,
    pub(super) offset: u32,
    /// The whole packet's length (all of its frames).
    pub(super) len: u32,
    /// The chain's second frame, or `NO_FRAME` for a packet in one frame.
    pub(super) next: u32,
    pub(super) meta: RxMeta,
    pub(super) holder: ConsumerId,
}

// SAFETY: a view only reads the frame's bytes (shared access, the frame is not in
// any ring while views exist) and touches atomics; `make_mut` needs `&mut self` and
// the view to be the frame's only one, i.e. exclusive access.
unsafe impl Send for FrameView {}
// SAFETY: `&FrameView` allows reading the bytes and cloning (an atomic add).
unsafe impl Sync for FrameView {}

impl FrameView {
    #[inline]
    fn shared(&self) -> &Shared {
        // SAFETY: `Shared` outlives every view (see the field's comment).
        unsafe { self.shared.as_ref() }
    }

    /// Another view of the same frame for `holder`, without touching the reference
    /// word: the caller has already counted it there. (Never build views with
    /// struct-update syntax: the base view would be dropped, releasing a reference.)
    #[inline]
    pub(super) fn alias(&self, holder: ConsumerId) -> FrameView {
        FrameView {
            shared: self.shared,
            index: self.index,
            offset: self.offset,
            len: self.len,
            next: self.next,
            meta: self.meta,
            holder,
        }
    }

    /// The frame's bytes: the whole packet, or for a multi-buffer packet
    /// ([`FrameView::is_chained`]) its first buffer, which holds the headers.
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        let len = if self.next == NO_FRAME {
            self.len
        } else {
            self.shared().span_of(self.index).1
        };
        // SAFETY: [offset, offset + len) lies within the frame's usable region
        // (checked when the view, or its chain, was made), and while views
        // exist the frame is in no ring and nobody holds `&mut` to it
        // (`make_mut` requires uniqueness).
        unsafe { self.shared().segment(self.index, self.offset, len) }
    }

    /// The packet's length in bytes (all of its buffers).
    #[inline]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// True when the packet spans several frames (multi-buffer).
    #[inline]
    pub fn is_chained(&self) -> bool {
        self.next != NO_FRAME
    }

    /// The packet's buffers in order, the first ([`FrameView::bytes`]) first:
    /// one for a packet in one frame.
    pub fn segments(&self) -> Segments<'_> {
        Segments::new(
            self.shared(),
            self.index,
            self.offset,
            self.bytes().len(),
            self.next,
        )
    }

    /// The packet's bytes `start..start + len` as slices of its buffers, in
    /// order, without a copy (a datagram's payload that crosses buffers).
    /// Bytes past the packet's end are left out.
    pub fn slices(&self, start: usize, len: usize) -> impl Iterator<Item = &[u8]> + '_ {
        let mut skip = start;
        let mut left = len;
        self.segments().filter_map(move |seg| {
            if skip >= seg.len() {
                skip -= seg.len();
                return None;
            }
            let take = left.min(seg.len() - skip);
            let out = &seg[skip..skip + take];
            skip = 0;
            left -= take;
            (!out.is_empty()).then_some(out)
        })
    }

    /// The whole packet in one slice: borrowed when it is in one frame, else
    /// copied into `scratch` (reused across calls).
    pub fn contiguous<'a>(&'a self, scratch: &'a mut Vec<u8>) -> &'a [u8] {
        if !self.is_chained() {
            return self.bytes();
        }
        scratch.clear();
        for seg in self.segments() {
            scratch.extend_from_slice(seg);
        }
        scratch
    }

    /// True for an empty frame.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// RX queue the frame arrived on.
    #[inline]
    pub fn queue(&self) -> u32 {
        self.meta.queue
    }

    /// Receive timestamp, ns since the Unix epoch.
    #[inline]
    pub fn timestamp_ns(&self) -> u64 {
        self.meta.timestamp_ns
    }

    /// The frame's index in its pool.
    pub fn frame_index(&self) -> u32 {
        self.index
    }

    /// Views of this frame alive right now, all consumers (a snapshot).
    pub fn ref_count(&self) -> u32 {
        let word = self.shared().refs[self.index as usize].load(Ordering::Relaxed);
        word.to_le_bytes().iter().map(|&b| u32::from(b)).sum()
    }

    /// True when this is the only view of its frame.
    pub fn is_unique(&self) -> bool {
        // Acquire pairs with the Release subtraction of other views' drops, so
        // their reads of the bytes happen before any write we make after this.
        self.shared().refs[self.index as usize].load(Ordering::Acquire) == self.holder.unit()
    }

    /// Mutable bytes ([`FrameView::bytes`]: a multi-buffer packet's first
    /// buffer), copy-on-write: in place when this is the only view, else the
    /// bytes are copied into `scratch` (reused across calls) and returned from
    /// there. Says which happened.
    pub fn make_mut<'a>(&'a mut self, scratch: &'a mut Vec<u8>) -> (&'a mut [u8], CowOutcome) {
        if self.is_unique() {
            let len = self.bytes().len();
            let shared = self.shared();
            let start = (self.offset - shared.headroom) as usize;
            // SAFETY: this view is the frame's only one and we hold it by `&mut`:
            // the only access path to the frame, which is in no kernel ring.
            let frame = unsafe { shared.frame_bytes_mut(self.index) };
            (&mut frame[start..start + len], CowOutcome::InPlace)
        } else {
            scratch.clear();
            scratch.extend_from_slice(self.bytes());
            (scratch.as_mut_slice(), CowOutcome::Copied)
        }
    }

    /// The consumer this view is accounted to.
    #[inline]
    pub fn holder(&self) -> ConsumerId {
        self.holder
    }

    /// Run `f` with this view presented as held by `holder`, without taking a
    /// reference: what an inline consumer sees. If it keeps the frame (clones the
    /// view), the clone is accounted to `holder`.
    #[inline]
    pub fn lend<R>(&self, holder: ConsumerId, f: impl FnOnce(&FrameView) -> R) -> R {
        // Not dropped, so it releases nothing: it borrows `self`'s reference.
        let lent = std::mem::ManuallyDrop::new(self.alias(holder));
        f(&lent)
    }

    /// Another view of the frame for the same holder, or `None` when the holder
    /// already has 255 (the most its byte of the reference word counts): what a
    /// caller that may keep many views of one frame uses instead of `clone`,
    /// which aborts there.
    pub fn try_clone(&self) -> Option<FrameView> {
        let unit = self.holder.unit();
        let shift = 8 * u32::from(self.holder.0);
        let refs = &self.shared().refs[self.index as usize];
        // Relaxed, as in `share_with`; a loop so that a concurrent clone by the
        // same holder on another thread cannot take the byte past 255.
        let mut old = refs.load(Ordering::Relaxed);
        loop {
            if (old >> shift) & 0xff == 0xff {
                return None;
            }
            match refs.compare_exchange_weak(old, old + unit, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Some(self.alias(self.holder)),
                Err(now) => old = now,
            }
        }
    }

    /// A new view of the same frame accounted to consumer `holder`.
    ///
    /// Aborts the process if one consumer would hold more than 255 views of one
    /// frame (the byte would overflow into the next consumer's).
    #[inline]
    pub fn share_with(&self, holder: ConsumerId) -> FrameView {
        // Relaxed, like Arc::clone: we already hold a view, so the frame cannot be
        // released concurrently.
        let old =
            self.shared().refs[self.index as usize].fetch_add(holder.unit(), Ordering::Relaxed);
        if (old >> (8 * u32::from(holder.0))) & 0xff == 0xff {
            // Like Arc's overflow check: continuing would corrupt the accounting
            // and could free a frame that is still viewed.
            std::process::abort();
        }
        self.alias(holder)
    }
}

/// Whether [`FrameView::make_mut`] wrote in place or copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CowOutcome {
    /// The view was unique: the frame itself is writable.
    InPlace,
    /// The frame was shared: the bytes were copied.
    Copied,
}

impl Clone for FrameView {
    #[inline]
    fn clone(&self) -> Self {
        self.share_with(self.holder)
    }
}

impl Drop for FrameView {
    #[inline]
    fn drop(&mut self) {
        let unit = self.holder.unit();
        let shared = self.shared();
        let refs = &shared.refs[self.index as usize];
        // The last view, and known to be: nobody else holds a view, so nobody can
        // clone or drop one concurrently, and a plain store releases the frame
        // without a locked instruction (the common case: the poller's own view
        // after run-to-completion consumers). Acquire pairs with the Release
        // subtraction of every view dropped before, so their reads of the bytes
        // happen before the frame is reused.
        if refs.load(Ordering::Acquire) == unit {
            refs.store(0, Ordering::Relaxed);
            shared.release_frame(self.index, self.next != NO_FRAME);
            return;
        }
        // Release so that our reads of the bytes happen before the frame is reused;
        // the Acquire fence on the last drop pairs with every other view's Release.
        if refs.fetch_sub(unit, Ordering::Release) != unit {
            return;
        }
        fence(Ordering::Acquire);
        shared.release_frame(self.index, self.next != NO_FRAME);
    }
}

impl AsRef<[u8]> for FrameView {
    fn as_ref(&self) -> &[u8] {
        self.bytes()
    }
}

impl fmt::Debug for FrameView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameView")
            .field("frame", &self.index)
            .field("offset", &self.offset)
            .field("len", &self.len)
            .field("chained", &self.is_chained())
            .field("meta", &self.meta)
            .field("holder", &self.holder)
            .finish()
    }
}
