//! The frame pool: refcounted, zero-copy views of UMEM frames.
//!
//! This is the user-space version of the kernel sharing one `sk_buff` data buffer
//! between a socket and a packet tap: one UMEM frame, any number of [`FrameView`]s
//! (the UDP consumer's, the pcap writer's), a per-frame atomic reference count in a
//! side table, and the last release hands the frame back to its poller through a
//! lock-free multi-producer return queue, from which the poller refills the fill
//! ring.
//!
//! Ownership is in the types:
//! - a [`Frame`] is the unique handle of a frame that user space owns (free, or just
//!   received). It is neither `Clone` nor `Copy`. Handing a frame to the kernel
//!   ([`Frame::into_addr`], used by the fill and TX paths) consumes it. A handle
//!   knows its pool: every entry point that takes one checks that it came from
//!   this pool and panics otherwise, so a frame of one queue's UMEM can never
//!   alias the bytes of another's.
//! - [`FramePool::into_view`] turns the handle into the first view; views are cloned
//!   and dropped freely; only the last drop gives the frame back, so a frame can
//!   never reach the fill ring while a view of it exists.
//! - A view can never outlive its UMEM: the pool knows how many frames are out
//!   (viewed and not reclaimed) and, if it is dropped while any are, leaks its
//!   memory instead of freeing it under them.
//!
//! The data path is built to avoid locked instructions (each costs several ns,
//! `benches/datapath.rs` shows how many a frame takes): a frame's views are counted in one 64-bit word (a byte per
//! consumer), set with a plain store when the views are made; a view's drop is one
//! atomic subtraction; and a last drop on the pool's own thread (inline consumers)
//! returns the frame through a thread-owned list instead of the lock-free queue,
//! which serves drops on other threads.

use std::{
    cell::{Cell, UnsafeCell},
    fmt,
    ptr::NonNull,
    sync::{
        Arc,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
};

use crossbeam_queue::ArrayQueue;

mod chain;
mod memory;
mod view;

use chain::{CHAINED, NO_FRAME};
pub use chain::{MAX_SEGMENTS, Segment, Segments};
pub use memory::{FrameMemory, HeapMemory, XDP_PACKET_HEADROOM};
pub use view::{CowOutcome, FrameView};

/// A process-unique id for each pool, carried by its [`Frame`] handles.
fn next_pool_id() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    // Relaxed: uniqueness is all that is needed, and fetch_add gives it.
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    assert!(id != 0, "more than 2^32 frame pools");
    id
}

/// Identifies a consumer within a pool, for per-consumer accounting of held views.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConsumerId(pub(crate) u8);

impl ConsumerId {
    /// The consumer's index (registration order).
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    /// This consumer's unit in a frame's reference word.
    #[inline]
    fn unit(self) -> u64 {
        1 << (8 * u32::from(self.0))
    }
}

/// The most consumers one pool accounts for: each has a byte in a frame's 64-bit
/// reference word, and the last byte is the poller's own reference.
pub const MAX_CONSUMERS: usize = 7;

/// The poller's own reference to a frame while it dispatches it.
pub const POLLER: ConsumerId = ConsumerId(MAX_CONSUMERS as u8);

/// A small, unique, non-zero id for the calling thread, cheaper than
/// `thread::current().id()` (which clones an `Arc`).
#[inline]
fn thread_id() -> u64 {
    thread_local!(static ID: Cell<u64> = const { Cell::new(0) });
    static NEXT: AtomicU64 = AtomicU64::new(1);
    ID.with(|id| match id.get() {
        0 => {
            let new = NEXT.fetch_add(1, Ordering::Relaxed);
            id.set(new);
            new
        }
        known => known,
    })
}

/// What the pool and its views share.
struct Shared {
    /// Owns the memory; frames are reached through `ptrs`.
    memory: Box<dyn FrameMemory>,
    /// `memory.frame_ptr(i)` for every frame, read once at start so the data path
    /// makes no dynamic call per access.
    ptrs: Box<[NonNull<u8>]>,
    frame_size: u32,
    /// log2(frame_size): addresses map to frames with a shift, not a division.
    frame_shift: u32,
    frame_count: u32,
    headroom: u32,
    queue: u32,
    /// This pool's id, in every [`Frame`] it hands out.
    id: u32,
    /// Per frame, one byte per consumer: the views of the frame that consumer
    /// holds. The word is 0 when the frame has no view. One atomic word per frame
    /// means a view's drop is a single atomic subtraction that both releases the
    /// consumer's view and tells whether it was the frame's last.
    refs: Box<[AtomicU64]>,
    /// Per frame: the next frame of its packet when the packet spans several
    /// frames (a multi-buffer packet's chain, see `chain.rs`), else `NO_FRAME`.
    /// Written by the pool's owner while it holds the frames' handles, before
    /// the chain's views exist; read through views (published with them by the
    /// synchronising queues that carry views) and by `reclaim`.
    next: Box<[AtomicU32]>,
    /// Per frame of a chain: where its bytes are, `offset << 32 | len`.
    span: Box<[AtomicU64]>,
    /// Frames whose last view was dropped on another thread than the owner's
    /// (a chain's first frame tagged with `CHAINED`: the rest follow `next`).
    returns: ArrayQueue<u32>,
    /// The frames after the first of the chains in the return lists, which
    /// hold one entry per chain (for [`FramePool::returned_len`]).
    returned_tails: AtomicU64,
    /// The owner thread's id (see `thread_id`), or 0.
    owner: AtomicU64,
    /// Frames whose last view was dropped on the owner thread. Only the owner
    /// thread touches it (checked through `owner`), so no atomics: the inline
    /// consumers' frames come back without a locked instruction.
    local: UnsafeCell<Vec<u32>>,
}

// SAFETY: `ptrs` point into `memory`, which is Send + Sync (FrameMemory's bounds)
// and lives as long as `Shared`; every access through them follows the frame
// ownership rules of this module. `local` is only accessed on the thread whose id
// is in `owner`. The rest is atomics and a lock-free queue.
unsafe impl Send for Shared {}
// SAFETY: as above.
unsafe impl Sync for Shared {}

impl Shared {
    /// The handle of frame `index` of this pool. Only the pool's own paths call
    /// it, for a frame they know user space owns (see each caller).
    #[inline]
    fn frame(&self, index: u32) -> Frame {
        Frame {
            index,
            pool: self.id,
        }
    }

    /// Panic unless `frame` is of this pool: a handle of another pool would let
    /// safe code write into bytes that this pool's views are reading.
    #[inline]
    fn check(&self, frame: &Frame) {
        assert!(
            frame.pool == self.id,
            "frame {} of pool {} used with pool {} (queue {})",
            frame.index,
            frame.pool,
            self.id,
            self.queue
        );
    }

    /// # Safety
    /// The caller has exclusive access to frame `index` for the returned lifetime.
    #[expect(clippy::mut_from_ref, reason = "exclusivity is the caller's contract")]
    unsafe fn frame_bytes_mut(&self, index: u32) -> &mut [u8] {
        let len = (self.frame_size - self.headroom) as usize;
        // SAFETY: the FrameMemory contract: `ptrs[index]` points to `len` valid,
        // fixed bytes of this frame only; the caller guarantees nobody else
        // accesses them meanwhile.
        unsafe { std::slice::from_raw_parts_mut(self.ptrs[index as usize].as_ptr(), len) }
    }

    /// On the owner thread, run `f` on the owner-only list; `None` elsewhere.
    /// `f` must not drop views (which could re-enter here); the callers only
    /// push, pop and measure.
    #[inline]
    fn with_local<R>(&self, f: impl FnOnce(&mut Vec<u32>) -> R) -> Option<R> {
        if self.owner.load(Ordering::Relaxed) != thread_id() {
            return None;
        }
        // SAFETY: we are on the owner thread, the only one that touches `local`,
        // and the borrow ends with `f`, which does not re-enter (see above).
        Some(f(unsafe { &mut *self.local.get() }))
    }

    /// A frame's last view is gone: give the frame back to the pool (with the
    /// rest of its chain when `chained`).
    #[inline]
    fn release_frame(&self, index: u32, chained: bool) {
        let index = if chained {
            let tails = chain::chain_frames(self, index) as u64 - 1;
            self.returned_tails.fetch_add(tails, Ordering::Relaxed);
            index | CHAINED
        } else {
            index
        };
        match self.with_local(|local| local.push(index)) {
            Some(()) => {}
            None => {
                // Room for every frame, and each frame is in here at most once
                // (pushed only when its last view goes), so this cannot fail.
                let pushed = self.returns.push(index);
                debug_assert!(pushed.is_ok(), "return queue overflow");
            }
        }
    }
}

/// A pool of equal-sized frames over one memory region, owned by one poller.
///
/// The pool is the only source of [`Frame`] handles: [`FramePool::take_all`] once at
/// start (every frame), then [`FramePool::reclaim`] for frames whose views are gone,
/// and [`FramePool::received`] for frames the kernel hands back.
///
/// Dropping the pool frees the memory, unless views are still alive somewhere:
/// then the memory is deliberately leaked (with a warning), so those views stay
/// valid. The stack drops every view before its pools.
pub struct FramePool {
    shared: Arc<Shared>,
    taken: bool,
    /// Frames turned into views and not reclaimed yet.
    out: u64,
    /// The next frame of a chain being reclaimed (see [`FramePool::reclaim`]),
    /// or `NO_FRAME`.
    cursor: u32,
}

impl fmt::Debug for FramePool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FramePool")
            .field("frame_size", &self.shared.frame_size)
            .field("frame_count", &self.shared.frame_count)
            .field("queue", &self.shared.queue)
            .field("out", &self.out)
            .finish()
    }
}

/// Reads a pool's per-consumer held-view counts from any thread.
#[derive(Clone)]
pub struct PoolProbe {
    shared: Arc<Shared>,
}

impl fmt::Debug for PoolProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolProbe")
            .field("queue", &self.shared.queue)
            .finish()
    }
}

impl PoolProbe {
    /// Views held right now by consumer `id` (a scan of the side table).
    pub fn held_by(&self, id: ConsumerId) -> u64 {
        held_by(&self.shared, id)
    }

    /// Frames with live views right now.
    pub fn viewed_frames(&self) -> usize {
        viewed_frames(&self.shared)
    }
}

fn held_by(shared: &Shared, id: ConsumerId) -> u64 {
    let shift = 8 * u32::from(id.0);
    shared
        .refs
        .iter()
        .map(|r| (r.load(Ordering::Relaxed) >> shift) & 0xff)
        .sum()
}

/// Frames with live views: a chain's frames count with its first (which
/// alone has a reference word).
fn viewed_frames(shared: &Shared) -> usize {
    shared
        .refs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.load(Ordering::Relaxed) != 0)
        .map(|(i, _)| chain::chain_frames(shared, i as u32))
        .sum()
}

/// The unique handle of a frame that user space owns.
///
/// Dropping a `Frame` without giving it back leaks it from the pool until the pool
/// is gone; the poller never does (its tests check frame conservation).
#[must_use = "a Frame must be filled, transmitted, viewed or kept; dropping it leaks the frame"]
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    index: u32,
    /// The id of the pool the frame belongs to.
    pool: u32,
}

impl Frame {
    /// The frame's index in the pool.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The frame's UMEM address (offset of its first byte), consuming the handle:
    /// whoever takes the address (fill or TX ring) now owns the frame.
    ///
    /// # Panics
    /// If the frame is not of `pool`.
    #[inline]
    pub fn into_addr(self, pool: &FramePool) -> u64 {
        pool.shared.check(&self);
        u64::from(self.index) << pool.shared.frame_shift
    }
}

/// Metadata of a received frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxMeta {
    /// RX queue.
    pub queue: u32,
    /// Receive time, ns since the Unix epoch (CLOCK_REALTIME, taken per batch).
    pub timestamp_ns: u64,
}

impl FramePool {
    /// A pool over every frame of `memory`, for RX queue `queue`, owned by the
    /// calling thread (see [`FramePool::bind_to_current_thread`]).
    ///
    /// # Panics
    /// If the memory has no frames, the frame size is not a power of two (AF_XDP's
    /// aligned mode requires it too), or the headroom leaves no usable bytes.
    pub fn new(memory: Box<dyn FrameMemory>, queue: u32) -> Self {
        let (frame_size, frame_count, headroom) =
            (memory.frame_size(), memory.frame_count(), memory.headroom());
        assert!(frame_count > 0, "empty pool");
        assert!(
            frame_size.is_power_of_two(),
            "frame size {frame_size} is not a power of two"
        );
        assert!(headroom < frame_size, "headroom fills the frame");
        assert!(frame_count < CHAINED, "more than 2^31 frames");
        let refs = (0..frame_count).map(|_| AtomicU64::new(0)).collect();
        let ptrs = (0..frame_count).map(|i| memory.frame_ptr(i)).collect();
        Self {
            shared: Arc::new(Shared {
                memory,
                ptrs,
                frame_size,
                frame_shift: frame_size.trailing_zeros(),
                frame_count,
                headroom,
                queue,
                id: next_pool_id(),
                refs,
                next: (0..frame_count).map(|_| AtomicU32::new(NO_FRAME)).collect(),
                span: (0..frame_count).map(|_| AtomicU64::new(0)).collect(),
                returns: ArrayQueue::new(frame_count as usize),
                returned_tails: AtomicU64::new(0),
                owner: AtomicU64::new(thread_id()),
                local: UnsafeCell::new(Vec::with_capacity(frame_count as usize)),
            }),
            taken: false,
            out: 0,
            cursor: NO_FRAME,
        }
    }

    /// Make the calling thread the pool's owner: views dropped on it return their
    /// frames without atomics. Only possible while no frame is out (viewed or
    /// returned but not reclaimed); returns whether it happened. The poller calls
    /// it when its thread starts.
    pub fn bind_to_current_thread(&mut self) -> bool {
        if self.out != 0 {
            return false;
        }
        // No view exists, so no drop can be touching `local` or reading `owner`.
        self.shared.owner.store(thread_id(), Ordering::Relaxed);
        true
    }

    /// Frames in the pool.
    pub fn frame_count(&self) -> u32 {
        self.shared.frame_count
    }

    /// Bytes per frame.
    pub fn frame_size(&self) -> u32 {
        self.shared.frame_size
    }

    /// Offset of the usable region in each frame (where the kernel puts packets).
    pub fn headroom(&self) -> u32 {
        self.shared.headroom
    }

    /// Every frame, once: the initial owner of all frames is whoever calls this.
    ///
    /// # Panics
    /// On a second call: handles are unique.
    pub fn take_all(&mut self) -> Vec<Frame> {
        assert!(!self.taken, "FramePool::take_all called twice");
        self.taken = true;
        (0..self.shared.frame_count)
            .map(|index| self.shared.frame(index))
            .collect()
    }

    /// The handle of the frame at UMEM address `addr`, which the kernel just handed
    /// back on the RX or completion ring.
    ///
    /// # Safety
    /// `addr` must lie in a frame that the kernel owned (given to it through
    /// [`Frame::into_addr`]) and has now returned: each such frame may be claimed
    /// once per trip through the kernel. Violating this creates two handles.
    #[inline]
    pub unsafe fn received(&self, addr: u64) -> Option<Frame> {
        let index = addr >> self.shared.frame_shift;
        let index = u32::try_from(index).ok()?;
        (index < self.shared.frame_count).then(|| self.shared.frame(index))
    }

    /// A frame whose last view was dropped, if any: every frame of a chain
    /// comes back, one call each.
    #[inline]
    pub fn reclaim(&mut self) -> Option<Frame> {
        let index = if self.cursor != NO_FRAME {
            self.unlink_next()
        } else {
            let index = match self.shared.with_local(Vec::pop).flatten() {
                Some(index) => index,
                None => self.shared.returns.pop()?,
            };
            if index & CHAINED != 0 {
                self.cursor = index & !CHAINED;
                let tails = chain::chain_frames(&self.shared, self.cursor) as u64 - 1;
                self.shared
                    .returned_tails
                    .fetch_sub(tails, Ordering::Relaxed);
                self.unlink_next()
            } else {
                index
            }
        };
        self.out -= 1;
        Some(self.shared.frame(index))
    }

    /// Frames whose last view was dropped and that wait to be reclaimed.
    pub fn returned_len(&self) -> usize {
        let tails = self.shared.returned_tails.load(Ordering::Relaxed) as usize;
        self.shared.returns.len() + self.shared.with_local(|l| l.len()).unwrap_or(0) + tails
    }

    /// Frames that have live views right now (a scan of the side table).
    pub fn viewed_frames(&self) -> usize {
        viewed_frames(&self.shared)
    }

    /// Views held right now by consumer `id` (a scan of the side table: meant for
    /// statistics, not the data path).
    pub fn held_by(&self, id: ConsumerId) -> u64 {
        held_by(&self.shared, id)
    }

    /// A handle for reading this pool's held-view counts from another thread (for
    /// live statistics). It keeps the pool's memory alive while it exists.
    pub fn probe(&self) -> PoolProbe {
        PoolProbe {
            shared: self.shared.clone(),
        }
    }

    /// Consumer ids are small integers; `n` must be below [`MAX_CONSUMERS`].
    /// ([`POLLER`] is the poller's own.)
    #[inline]
    pub fn consumer_id(n: usize) -> ConsumerId {
        assert!(n < MAX_CONSUMERS, "at most {MAX_CONSUMERS} consumers");
        ConsumerId(n as u8)
    }

    /// The usable bytes of `frame` (from the headroom to the end of the frame), for
    /// writing before the frame goes to the TX ring.
    ///
    /// # Panics
    /// If the frame is not of this pool.
    pub fn bytes_mut<'a>(&'a self, frame: &'a mut Frame) -> &'a mut [u8] {
        self.shared.check(frame);
        // SAFETY: `frame` is the unique handle of a frame of this pool (checked
        // above) that user space owns, borrowed mutably for 'a, so no view and no
        // kernel ring refers to these bytes.
        unsafe { self.shared.frame_bytes_mut(frame.index) }
    }

    /// The receive time the XDP program wrote into the metadata right before
    /// `offset` (where the received data starts) of `frame`, and clear it, so
    /// that a later packet in the frame that arrives unstamped reads 0, not this
    /// one's time. 0 when there is none.
    ///
    /// # Panics
    /// If the frame is not of this pool.
    pub fn take_stamp(&self, frame: &mut Frame, offset: u32) -> u64 {
        self.shared.check(frame);
        let len = xdp_ebpf::STAMP_LEN;
        let Some(p) = self.shared.memory.before(frame.index, offset, len) else {
            return 0;
        };
        let p = p.as_ptr().cast::<[u8; 8]>();
        // SAFETY: `frame` is the unique handle of a frame of this pool (checked
        // above), borrowed mutably: no view and no ring refers to it, and
        // `before` gave 8 bytes of this frame (the FrameMemory contract).
        unsafe {
            let stamp = u64::from_ne_bytes(p.read_unaligned());
            p.write_unaligned([0; 8]);
            stamp
        }
    }

    /// Turn `view` back into its frame's unique handle when it is the frame's only
    /// view (the transmit path: a reply built in the received frame itself).
    /// Returns the handle with the view's offset and length, or the view when
    /// other views exist or it belongs to another pool.
    /// A multi-buffer view is refused too (see [`FramePool::take_unique_segments`]).
    pub fn take_unique(&mut self, view: FrameView) -> Result<(Frame, u32, u32), FrameView> {
        if !self.owns(&view) || !view.is_unique() || view.is_chained() {
            return Err(view);
        }
        let view = std::mem::ManuallyDrop::new(view);
        // Unique (checked with Acquire above) and we hold it by value: no other
        // view can appear (clones need a view) or be dropped concurrently.
        self.shared.refs[view.index as usize].store(0, Ordering::Relaxed);
        self.out -= 1;
        Ok((self.shared.frame(view.index), view.offset, view.len))
    }

    /// True when `view` is of this pool.
    fn owns(&self, view: &FrameView) -> bool {
        std::ptr::eq(view.shared.as_ptr(), Arc::as_ptr(&self.shared))
    }

    /// A writer for frames of this pool, for threads other than the pool's (the
    /// reply path of handlers, which fills spare frames).
    pub fn writer(&self) -> FrameWriter {
        FrameWriter {
            shared: self.shared.clone(),
        }
    }

    /// Make a view of `frame`, bytes `offset..offset + len` of it (counted from the
    /// start of the frame, as the kernel's addresses are), received with `meta`,
    /// held by consumer `holder`. More views come from `clone` or
    /// [`FrameView::share_with`].
    ///
    /// # Panics
    /// If the range does not lie within the frame's usable region.
    pub fn into_view(
        &mut self,
        frame: Frame,
        offset: u32,
        len: u32,
        meta: RxMeta,
        holder: ConsumerId,
    ) -> FrameView {
        let mut view = self.make_views(frame, offset, len, NO_FRAME, meta, holder.unit());
        view.holder = holder;
        view
    }

    /// The data path: make the poller's own view of `frame` plus one owned view
    /// for each consumer in `owners` (a bit set of consumer indexes), with a single
    /// plain store of the frame's reference word. `each` gets the owned views.
    ///
    /// # Panics
    /// If the range does not lie within the frame's usable region, or `owners`
    /// names a consumer at or above [`MAX_CONSUMERS`].
    #[inline]
    pub fn into_dispatch(
        &mut self,
        frame: Frame,
        offset: u32,
        len: u32,
        meta: RxMeta,
        owners: u8,
        each: impl FnMut(FrameView),
    ) -> FrameView {
        self.dispatch(frame, offset, len, NO_FRAME, meta, owners, each)
    }

    /// [`FramePool::into_dispatch`] of a view of `len` bytes that starts in
    /// `frame` at `offset` and continues in the chain from `next` (`NO_FRAME`:
    /// none), already linked.
    #[inline]
    #[expect(
        clippy::too_many_arguments,
        reason = "the data path's one call, inlined"
    )]
    fn dispatch(
        &mut self,
        frame: Frame,
        offset: u32,
        len: u32,
        next: u32,
        meta: RxMeta,
        owners: u8,
        mut each: impl FnMut(FrameView),
    ) -> FrameView {
        assert!(
            u32::from(owners) < 1 << MAX_CONSUMERS,
            "consumer index out of range"
        );
        let mut word = POLLER.unit();
        for i in 0..MAX_CONSUMERS {
            if owners & (1 << i) != 0 {
                word |= ConsumerId(i as u8).unit();
            }
        }
        let mut own = self.make_views(frame, offset, len, next, meta, word);
        own.holder = POLLER;
        for i in 0..MAX_CONSUMERS {
            if owners & (1 << i) != 0 {
                each(own.alias(ConsumerId(i as u8)));
            }
        }
        own
    }

    /// Set frame `frame`'s reference word to `word` and return a view of it held by
    /// consumer 0 (callers adjust `holder`); the word must account for every view
    /// the caller then makes with `alias`. With a chain (`next` is its second
    /// frame, linked already) `len` is the whole packet's and the first frame's
    /// own range was checked when the chain was linked.
    #[inline]
    fn make_views(
        &mut self,
        frame: Frame,
        offset: u32,
        len: u32,
        next: u32,
        meta: RxMeta,
        word: u64,
    ) -> FrameView {
        if next == NO_FRAME {
            self.check_range(offset, len);
        }
        // The handle ends here; from now on the reference word owns the frame.
        self.shared.check(&frame);
        let Frame { index, .. } = frame;
        let refs = &self.shared.refs[index as usize];
        debug_assert_eq!(
            refs.load(Ordering::Relaxed),
            0,
            "a Frame handle existed while views of it were live"
        );
        // Relaxed store: the frame is unshared (we held its unique handle), and
        // views reach other threads only through synchronising queues, which
        // publish this store with them.
        refs.store(word, Ordering::Relaxed);
        self.out += 1;
        FrameView {
            // `Arc::as_ptr` keeps the provenance of the whole allocation.
            shared: NonNull::new(Arc::as_ptr(&self.shared).cast_mut()).expect("Arc is non-null"),
            index,
            offset,
            len,
            next,
            meta,
            holder: ConsumerId(0),
        }
    }

    /// Panic unless bytes `offset..offset + len` lie in a frame's usable region.
    #[inline]
    fn check_range(&self, offset: u32, len: u32) {
        let end = u64::from(offset) + u64::from(len);
        assert!(
            offset >= self.shared.headroom && end <= u64::from(self.shared.frame_size),
            "view {offset}+{len} outside the usable region of a {}-byte frame",
            self.shared.frame_size
        );
    }
}

/// Writes frames of one pool from any thread: the handle proves the frame is
/// ours (and of this pool: checked), the writer brings the memory.
pub struct FrameWriter {
    shared: Arc<Shared>,
}

impl fmt::Debug for FrameWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameWriter")
            .field("queue", &self.shared.queue)
            .finish()
    }
}

impl FrameWriter {
    /// Usable bytes per frame (from the headroom to the frame's end).
    pub fn capacity(&self) -> usize {
        (self.shared.frame_size - self.shared.headroom) as usize
    }

    /// The usable bytes of `frame`.
    ///
    /// # Panics
    /// If the frame is not of this writer's pool.
    pub fn bytes_mut<'a>(&'a self, frame: &'a mut Frame) -> &'a mut [u8] {
        self.shared.check(frame);
        // SAFETY: `frame` is the unique handle of a frame of this pool (checked
        // above), borrowed mutably for 'a: no view and no kernel ring refers to
        // its bytes meanwhile.
        unsafe { self.shared.frame_bytes_mut(frame.index) }
    }
}

impl Drop for FramePool {
    fn drop(&mut self) {
        // Frames released on this thread or through the queue are not "out".
        while self.reclaim().is_some() {}
        if self.out == 0 {
            // No view exists and none is being dropped (a drop's last access to
            // `Shared` is its push, and every push has been popped): free.
            return;
        }
        // Views are alive: keep their memory valid for as long as the process
        // lives rather than free it under them.
        tracing::warn!(
            queue = self.shared.queue,
            frames = self.out,
            "frame pool dropped while views of its frames are alive; leaking its memory"
        );
        std::mem::forget(self.shared.clone());
    }
}

#[cfg(test)]
mod chain_tests;
#[cfg(test)]
mod tests;
