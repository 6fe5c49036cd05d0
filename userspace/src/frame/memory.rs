//! Where frames live: the UMEM (in `sys`) or, for tests, benchmarks and Miri, the
//! heap.

use std::{fmt, ptr::NonNull};

/// Bytes the kernel reserves in front of the packet in every AF_XDP frame
/// (`XDP_PACKET_HEADROOM`, include/uapi/linux/bpf.h): the usable region of a UMEM
/// frame starts here.
pub const XDP_PACKET_HEADROOM: u32 = 256;

/// The memory frames live in: the UMEM mmap, or a heap buffer in tests (so the
/// refcount code runs under Miri).
///
/// Each frame has a usable region that starts `headroom()` bytes into the frame
/// (the kernel's XDP headroom in a UMEM) and runs to the end of the frame.
///
/// # Safety
/// `frame_ptr(i)` must point to `frame_size - headroom()` bytes (for the pool's
/// frame size), preceded by the frame's `headroom()` bytes, that stay valid and
/// fixed in place for as long as the value lives, do not overlap other frames'
/// regions, and are accessed by nobody except through the frames' owners (the
/// kernel touches a frame only while it sits in a ring).
pub unsafe trait FrameMemory: Send + Sync + 'static {
    /// Start of the usable region of frame `index`.
    fn frame_ptr(&self, index: u32) -> NonNull<u8>;
    /// Offset of the usable region within each frame.
    fn headroom(&self) -> u32;
    /// Frames this memory holds.
    fn frame_count(&self) -> u32;
    /// Bytes per frame.
    fn frame_size(&self) -> u32;
    /// The `len` bytes of frame `index` that end at byte `end` (counted from
    /// the frame's start), when they lie within the frame: the XDP metadata in
    /// front of a received frame's data. Only the frame's owner may use them.
    fn before(&self, index: u32, end: u32, len: u32) -> Option<NonNull<u8>> {
        let _ = (index, end, len);
        None
    }
}

/// Heap-backed frame memory, for tests and benchmarks without a kernel.
pub struct HeapMemory {
    ptr: NonNull<u8>,
    frame_size: u32,
    frame_count: u32,
}

impl HeapMemory {
    /// `frame_count` zeroed frames of `frame_size` bytes.
    pub fn new(frame_size: u32, frame_count: u32) -> Self {
        let len = frame_size as usize * frame_count as usize;
        let boxed: Box<[u8]> = vec![0u8; len].into_boxed_slice();
        let ptr = NonNull::new(Box::into_raw(boxed).cast::<u8>()).expect("Box is non-null");
        Self {
            ptr,
            frame_size,
            frame_count,
        }
    }
}

/// (A missing or short free here is a leak, which `cargo test` cannot see and
/// Miri, run by `cargo xtask test`, reports.)
impl Drop for HeapMemory {
    fn drop(&mut self) {
        let len = self.frame_size as usize * self.frame_count as usize;
        let slice = std::ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), len);
        // SAFETY: `ptr`/`len` come from `Box::into_raw` of a boxed slice in `new`
        // and are freed exactly once, here.
        drop(unsafe { Box::from_raw(slice) });
    }
}

// SAFETY: HeapMemory owns its allocation like a Box<[u8]>; access to its bytes is
// governed by the frame ownership rules of this module.
unsafe impl Send for HeapMemory {}
// SAFETY: as above; shared access never creates overlapping `&mut` (see FrameView).
unsafe impl Sync for HeapMemory {}

// SAFETY: frame `i` is bytes [i * frame_size, (i + 1) * frame_size) of one live
// allocation, fixed in place until drop; frames do not overlap.
unsafe impl FrameMemory for HeapMemory {
    fn frame_ptr(&self, index: u32) -> NonNull<u8> {
        assert!(index < self.frame_count, "frame {index} out of range");
        // SAFETY: index < frame_count, so the offset stays inside the allocation.
        unsafe { self.ptr.add(index as usize * self.frame_size as usize) }
    }

    fn headroom(&self) -> u32 {
        0
    }

    fn frame_count(&self) -> u32 {
        self.frame_count
    }

    fn frame_size(&self) -> u32 {
        self.frame_size
    }

    fn before(&self, index: u32, end: u32, len: u32) -> Option<NonNull<u8>> {
        if index >= self.frame_count || end > self.frame_size || end < len {
            return None;
        }
        let at = index as usize * self.frame_size as usize + (end - len) as usize;
        // SAFETY: `at + len` <= (index + 1) * frame_size: inside the allocation.
        Some(unsafe { self.ptr.add(at) })
    }
}

impl fmt::Debug for HeapMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeapMemory")
            .field("frame_size", &self.frame_size)
            .field("frame_count", &self.frame_count)
            .finish()
    }
}
