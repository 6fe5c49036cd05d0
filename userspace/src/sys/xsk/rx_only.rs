//! A receive-only AF_XDP socket: a UMEM with its fill and completion rings, an
//! RX ring, and no TX ring, made with libxdp directly.
//!
//! Why not xsk-rs, which makes every other socket: its `Socket::new` always asks
//! libxdp for a TX ring, and a bound TX ring costs a receive-only run. In copy
//! mode every poll(2) on a socket with a TX ring runs the kernel's transmit loop
//! (`xsk_poll` calls `xsk_generic_xmit`, which finds the ring empty and counts
//! `tx_ring_empty_descs`): hundreds of thousands of times in a 5 s run of a
//! poller that sleeps between bursts. libxdp, which xsk-rs is built on
//! (`libxdp-sys`), makes a socket without one when given no TX ring; this module
//! is that call and the three rings' operations the poller needs, nothing more.

use std::{
    ffi::CStr,
    io,
    os::fd::RawFd,
    ptr::NonNull,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
};

use libxdp_sys::{
    xsk_ring_cons, xsk_ring_prod, xsk_socket, xsk_socket_config, xsk_socket_config__bindgen_ty_1,
    xsk_umem, xsk_umem_config,
};

use crate::{
    frame::{FrameMemory, XDP_PACKET_HEADROOM},
    ring::RxDesc,
};

/// `XDP_COPY`, `XDP_ZEROCOPY`, `XDP_USE_NEED_WAKEUP`, `XDP_USE_SG`
/// (`<linux/if_xdp.h>`).
const XDP_COPY: u16 = 1 << 1;
const XDP_ZEROCOPY: u16 = 1 << 2;
const XDP_USE_NEED_WAKEUP: u16 = 1 << 3;
const XDP_USE_SG: u16 = 1 << 4;
/// libxdp loads no XDP program of its own: ours steers (`XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD`).
const INHIBIT_PROG_LOAD: u32 = 1;

/// The UMEM's memory: one anonymous mapping, unmapped when the socket and the
/// last frame view are gone.
#[derive(Debug)]
struct Area {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory; who may touch which frame is the frame
// pool's business (see `frame`), from any thread.
unsafe impl Send for Area {}
// SAFETY: as above.
unsafe impl Sync for Area {}

impl Area {
    fn map(len: usize) -> io::Result<Self> {
        // SAFETY: a fresh anonymous private mapping; no existing memory is
        // touched. MAP_POPULATE faults the pages in before the first packet.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(addr.cast()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(Self { base, len })
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are exactly the mapping made in `map`, and nothing
        // refers to it any more (the socket and every frame view hold the `Arc`).
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// The UMEM as [`FrameMemory`]: frame `i` is `frame_size` bytes at
/// `i * frame_size`, its data `XDP_PACKET_HEADROOM` bytes in (where the kernel
/// writes the packet in copy mode, and the driver in zero-copy mode).
#[derive(Debug)]
pub(crate) struct RxMemory {
    area: Arc<Area>,
    frames: u32,
    frame_size: u32,
}

// SAFETY: frame `index` < `frames` is the region [index * frame_size +
// XDP_PACKET_HEADROOM, (index + 1) * frame_size) of the mapping that `area` keeps
// alive; regions of different frames do not overlap.
unsafe impl FrameMemory for RxMemory {
    fn frame_ptr(&self, index: u32) -> NonNull<u8> {
        assert!(index < self.frames, "frame {index} of {}", self.frames);
        let offset = index as usize * self.frame_size as usize + XDP_PACKET_HEADROOM as usize;
        // SAFETY: within the mapping (checked above: index < frames, and the
        // mapping is frames * frame_size bytes).
        unsafe { self.area.base.add(offset) }
    }

    fn headroom(&self) -> u32 {
        XDP_PACKET_HEADROOM
    }

    fn before(&self, index: u32, end: u32, len: u32) -> Option<NonNull<u8>> {
        if index >= self.frames || end > self.frame_size || end < len {
            return None;
        }
        let offset = index as usize * self.frame_size as usize + (end - len) as usize;
        // SAFETY: within frame `index` of the mapping (checked above).
        Some(unsafe { self.area.base.add(offset) })
    }

    fn frame_count(&self) -> u32 {
        self.frames
    }

    fn frame_size(&self) -> u32 {
        self.frame_size
    }
}

/// What a failed step of [`RxOnly::open`] was.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// Mapping or registering the UMEM.
    Umem(io::Error),
    /// Creating or binding the socket.
    Bind(io::Error),
}

/// A bound receive-only socket and its rings.
#[derive(Debug)]
pub(crate) struct RxOnly {
    // libxdp keeps pointers to these ring structs (to unmap the rings on
    // delete): boxed, so that they never move.
    fill: Box<xsk_ring_prod>,
    /// Never used: nothing is transmitted, but the kernel wants one.
    _comp: Box<xsk_ring_cons>,
    rx: Box<xsk_ring_cons>,
    socket: NonNull<xsk_socket>,
    umem: NonNull<xsk_umem>,
    fd: RawFd,
    frame_mask: u64,
    /// Kept until the socket is deleted (the kernel has the pages pinned).
    _area: Arc<Area>,
}

// SAFETY: libxdp's socket and UMEM objects are plain heap data and file
// descriptors, used by one thread at a time (`&mut self`); moving them to another
// thread is sound.
unsafe impl Send for RxOnly {}

/// An all-zero ring struct, for libxdp to fill in.
fn empty_prod() -> Box<xsk_ring_prod> {
    // SAFETY: xsk_ring_prod is integers and raw pointers: all zeros is valid.
    Box::new(unsafe { std::mem::zeroed() })
}

fn empty_cons() -> Box<xsk_ring_cons> {
    // SAFETY: as for `empty_prod`.
    Box::new(unsafe { std::mem::zeroed() })
}

impl RxOnly {
    /// A UMEM of `frames` frames of `frame_size` bytes and a socket bound to
    /// `iface` queue `queue` with an RX ring of `rx_size` and no TX ring
    /// (`multi_buffer`: bound with `XDP_USE_SG`).
    /// Returns the socket and the UMEM as frame memory (no frame is in a ring).
    pub(crate) fn open(
        iface: &CStr,
        queue: u32,
        frames: u32,
        frame_size: u32,
        rx_size: u32,
        zero_copy: bool,
        multi_buffer: bool,
    ) -> Result<(Self, RxMemory), OpenError> {
        let len = frames as usize * frame_size as usize;
        let area = Arc::new(Area::map(len).map_err(OpenError::Umem)?);
        let mut fill = empty_prod();
        let mut comp = empty_cons();
        let umem_config = xsk_umem_config {
            fill_size: frames.next_power_of_two(),
            // Nothing is ever transmitted; the kernel wants a completion ring
            // all the same.
            comp_size: 64,
            frame_size,
            frame_headroom: 0,
            flags: 0,
        };
        let mut umem = std::ptr::null_mut();
        // SAFETY: `area` is a mapping of `len` bytes that outlives the UMEM (kept
        // in the returned socket and memory); the ring structs are boxed and
        // outlive it too (they are dropped after `xsk_umem__delete`).
        let rc = unsafe {
            libxdp_sys::xsk_umem__create(
                &mut umem,
                area.base.as_ptr().cast(),
                len as u64,
                &mut *fill,
                &mut *comp,
                &umem_config,
            )
        };
        if rc != 0 {
            return Err(OpenError::Umem(io::Error::from_raw_os_error(-rc)));
        }
        let umem = NonNull::new(umem).ok_or_else(|| OpenError::Umem(io::Error::other("null")))?;
        let mut rx = empty_cons();
        let mode = if zero_copy { XDP_ZEROCOPY } else { XDP_COPY };
        let sg = if multi_buffer { XDP_USE_SG } else { 0 };
        let config = xsk_socket_config {
            rx_size,
            tx_size: 0,
            __bindgen_anon_1: xsk_socket_config__bindgen_ty_1 {
                libxdp_flags: INHIBIT_PROG_LOAD,
            },
            xdp_flags: 0,
            bind_flags: mode | XDP_USE_NEED_WAKEUP | sg,
        };
        let mut socket = std::ptr::null_mut();
        // SAFETY: `umem` is the fresh UMEM above, used by this socket only; `rx`
        // is boxed and outlives the socket; a null TX ring asks for none.
        let rc = unsafe {
            libxdp_sys::xsk_socket__create(
                &mut socket,
                iface.as_ptr(),
                queue,
                umem.as_ptr(),
                &mut *rx,
                std::ptr::null_mut(),
                &config,
            )
        };
        let Some(socket) = NonNull::new(socket).filter(|_| rc == 0) else {
            // SAFETY: the UMEM has no socket; deleting it unmaps its rings.
            unsafe { libxdp_sys::xsk_umem__delete(umem.as_ptr()) };
            let err = if rc != 0 {
                io::Error::from_raw_os_error(-rc)
            } else {
                io::Error::other("libxdp returned no socket")
            };
            return Err(OpenError::Bind(err));
        };
        // SAFETY: a live socket.
        let fd = unsafe { libxdp_sys::xsk_socket__fd(socket.as_ptr()) };
        let memory = RxMemory {
            area: area.clone(),
            frames,
            frame_size,
        };
        let socket = Self {
            fill,
            _comp: comp,
            rx,
            socket,
            umem,
            fd,
            frame_mask: !(u64::from(frame_size) - 1),
            _area: area,
        };
        Ok((socket, memory))
    }

    /// The socket's file descriptor.
    pub(crate) fn fd(&self) -> RawFd {
        self.fd
    }

    /// Up to `out.len()` descriptors off the RX ring.
    pub(crate) fn rx_consume(&mut self, out: &mut [RxDesc]) -> usize {
        let mut idx = 0;
        let want = u32::try_from(out.len()).unwrap_or(u32::MAX);
        // SAFETY: a live RX ring of this socket; `idx` is written by libxdp.
        let n = unsafe { libxdp_sys::xsk_ring_cons__peek(&mut *self.rx, want, &mut idx) };
        for (i, slot) in out.iter_mut().take(n as usize).enumerate() {
            // SAFETY: entries idx..idx+n were published by the kernel (peek read
            // the producer index with Acquire) and are ours until released.
            let desc = unsafe { *libxdp_sys::xsk_ring_cons__rx_desc(&*self.rx, idx + i as u32) };
            *slot = RxDesc {
                addr: desc.addr,
                len: desc.len,
                options: desc.options,
            };
        }
        if n > 0 {
            // SAFETY: releases exactly the n entries peeked.
            unsafe { libxdp_sys::xsk_ring_cons__release(&mut *self.rx, n) };
        }
        n as usize
    }

    /// Free slots in the fill ring (at least `want` when there are that many).
    pub(crate) fn fill_capacity(&mut self, want: u32) -> u32 {
        // SAFETY: a live fill ring.
        unsafe { libxdp_sys::xsk_prod_nb_free(&mut *self.fill, want) }
    }

    /// Put the frames at `addrs` on the fill ring (all fit: see the caller).
    pub(crate) fn fill_produce(&mut self, addrs: &[u64]) {
        let n = u32::try_from(addrs.len()).unwrap_or(u32::MAX);
        let mut idx = 0;
        // SAFETY: a live fill ring; `idx` is written by libxdp.
        let got = unsafe { libxdp_sys::xsk_ring_prod__reserve(&mut *self.fill, n, &mut idx) };
        assert_eq!(got, n, "fill_capacity said they fit");
        for (i, &addr) in addrs.iter().enumerate() {
            // SAFETY: entries idx..idx+n are reserved for us; each address is a
            // frame of this UMEM that user space gave up (`Frame::into_addr`).
            unsafe {
                *libxdp_sys::xsk_ring_prod__fill_addr(&mut *self.fill, idx + i as u32) =
                    addr & self.frame_mask;
            }
        }
        // SAFETY: submits exactly the n entries reserved (a Release store).
        unsafe { libxdp_sys::xsk_ring_prod__submit(&mut *self.fill, n) };
    }

    /// The fill ring's need_wakeup flag.
    pub(crate) fn fill_needs_wakeup(&self) -> bool {
        // SAFETY: a live fill ring.
        unsafe { libxdp_sys::xsk_ring_prod__needs_wakeup(&*self.fill) != 0 }
    }

    /// Descriptors on the RX ring and the fill ring, from the kernel's indexes,
    /// RX first (see `Rings::occupancy`).
    pub(crate) fn occupancy(&self) -> (u32, u32) {
        // SAFETY: both rings are live and mapped.
        unsafe {
            let rx = load(self.rx.producer).wrapping_sub(self.rx.cached_cons);
            let fill = self.fill.cached_prod.wrapping_sub(load(self.fill.consumer));
            (rx, fill)
        }
    }
}

/// The kernel's side of a ring index: an Acquire load, as libxdp does it.
///
/// # Safety
/// `index` points into a live ring mapping.
unsafe fn load(index: *mut u32) -> u32 {
    // SAFETY: the caller's promise; AtomicU32 has the layout of u32, and the
    // kernel writes the index concurrently, hence the atomic load.
    unsafe { (*index.cast::<AtomicU32>()).load(Ordering::Acquire) }
}

impl Drop for RxOnly {
    fn drop(&mut self) {
        // SAFETY: the socket, then its UMEM, each deleted once; the ring structs
        // and the area outlive both (fields drop after this).
        unsafe {
            libxdp_sys::xsk_socket__delete(self.socket.as_ptr());
            libxdp_sys::xsk_umem__delete(self.umem.as_ptr());
        }
    }
}
