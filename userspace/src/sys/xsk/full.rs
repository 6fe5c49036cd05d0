//! The sockets xsk-rs makes: all four rings, for queues that transmit. Their
//! UMEM as frame memory, the ring operations, and binding with retries.

use std::{io, io::Write as _, ptr::NonNull};

use xsk_rs::{
    CompQueue, FillQueue, FrameDesc, RxQueue, TxQueue, Umem,
    config::{Interface, SocketConfig},
    socket::Socket,
};

use super::{BIND_BUSY_RETRY, errno_of};
use crate::{
    frame::FrameMemory,
    ring::{RxDesc, TxDesc},
};

/// xsk-rs's rings of a socket that can transmit.
#[derive(Debug)]
pub(super) struct FullRings {
    pub(super) frame_size: u32,
    pub(super) fill: FillQueue,
    pub(super) comp: CompQueue,
    pub(super) tx: TxQueue,
    pub(super) rx: RxQueue,
    /// For setting TX descriptors' lengths (xsk-rs sets them through the UMEM).
    pub(super) umem: Umem,
    /// The descriptor xsk-rs made for each frame (index -> desc), used to build
    /// fill-ring entries since xsk-rs has no public constructor.
    pub(super) template: Vec<FrameDesc>,
    /// Scratch for ring batches.
    pub(super) batch: Vec<FrameDesc>,
}

/// The UMEM as [`FrameMemory`]: a pointer per frame, taken from xsk-rs once at start.
pub(super) struct XskMemory {
    // Keeps the mmap alive as long as any frame view exists.
    _umem: Umem,
    ptrs: Box<[NonNull<u8>]>,
    frame_size: u32,
    headroom: u32,
}

// SAFETY: the pointers refer to the UMEM mmap, which `_umem` keeps mapped; the
// frame ownership rules of `frame.rs` govern access, from any thread.
unsafe impl Send for XskMemory {}
// SAFETY: as above.
unsafe impl Sync for XskMemory {}

// SAFETY: `ptrs[i]` points to the data region of frame i (XDP_PACKET_HEADROOM to the
// end of the frame, `frame_size - headroom` bytes), obtained from xsk-rs with the
// full capacity, in the mmap kept alive by `_umem`; regions of different frames do
// not overlap.
unsafe impl FrameMemory for XskMemory {
    fn frame_ptr(&self, index: u32) -> NonNull<u8> {
        self.ptrs[index as usize]
    }

    fn headroom(&self) -> u32 {
        self.headroom
    }

    fn before(&self, index: u32, end: u32, len: u32) -> Option<NonNull<u8>> {
        let data = *self.ptrs.get(index as usize)?;
        if end > self.frame_size || end < len || end - len > self.frame_size {
            return None;
        }
        // By hand: xsk-rs hands out no slice over the kernel's XDP headroom,
        // where the metadata lies. Every frame is `frame_size` bytes of the one
        // MAP_SHARED mapping libxdp made (no Rust allocation), its data
        // `headroom` bytes in; so the frame starts `headroom` bytes before
        // `data`, still inside the mapping.
        let start = data.as_ptr().wrapping_sub(self.headroom as usize);
        NonNull::new(start.wrapping_add((end - len) as usize))
    }

    fn frame_count(&self) -> u32 {
        self.ptrs.len() as u32
    }

    fn frame_size(&self) -> u32 {
        self.frame_size
    }
}

impl XskMemory {
    /// Take a full-capacity pointer to every frame's data region. Writing zeros
    /// through xsk-rs's cursor sets each frame's length to its capacity (so the
    /// slice, and the pointer's provenance, cover the whole region) and pre-faults
    /// the UMEM pages before the first packet.
    pub(super) fn new(umem: &Umem, template: &[FrameDesc], frame_size: u32) -> io::Result<Self> {
        let headroom = template
            .first()
            .map_or(0, |d| (d.addr() % frame_size as usize) as u32);
        let capacity = (frame_size - headroom) as usize;
        let zeros = vec![0u8; capacity];
        let mut ptrs = Vec::with_capacity(template.len());
        for desc in template {
            let mut d = *desc;
            // SAFETY: `d` describes a frame of `umem` that is in no ring yet (the
            // socket is not bound to the fill ring until after this), so we have
            // exclusive access to it.
            let mut data = unsafe { umem.data_mut(&mut d) };
            data.cursor().write_all(&zeros)?;
            let bytes = data.contents_mut();
            debug_assert_eq!(bytes.len(), capacity);
            ptrs.push(
                NonNull::new(bytes.as_mut_ptr()).ok_or_else(|| io::Error::other("null frame"))?,
            );
        }
        Ok(Self {
            _umem: umem.clone(),
            ptrs: ptrs.into_boxed_slice(),
            frame_size,
            headroom,
        })
    }
}

/// The rings xsk-rs hands back for a bound socket.
pub(super) type Bound = (TxQueue, RxQueue, Option<(FillQueue, CompQueue)>);

/// Bind a socket on `queue`. A socket on this queue that was just closed (the
/// previous run's, killed a moment ago) is torn down by the kernel in deferred
/// work, and until then binding says EBUSY: retry for [`BIND_BUSY_RETRY`] before
/// calling the queue taken.
pub(super) fn bind_retrying(
    config: SocketConfig,
    umem: &Umem,
    if_name: &Interface,
    queue: u32,
) -> Result<Bound, xsk_rs::socket::SocketCreateError> {
    let busy_until = std::time::Instant::now() + BIND_BUSY_RETRY;
    loop {
        // SAFETY: `umem` is a fresh UMEM used by this socket only, and its
        // frames are handed to the kernel only through this socket's fill
        // ring, by the poller.
        let result = unsafe { Socket::new(config, umem, if_name, queue) };
        match &result {
            Err(e)
                if errno_of(e) == Some(libc::EBUSY) && std::time::Instant::now() < busy_until =>
            {
                tracing::debug!(queue, "queue busy (a socket being torn down?), retrying");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            _ => return result,
        }
    }
}

impl FullRings {
    pub(super) fn rx_consume(&mut self, out: &mut [RxDesc]) -> usize {
        self.batch.clear();
        self.batch.resize(out.len(), FrameDesc::default());
        // SAFETY: the descriptors are overwritten with what the kernel hands us on
        // this socket's RX ring; xsk-rs peeks the producer index once (Acquire) and
        // releases the consumer index once (Release) for the whole batch.
        let n = unsafe { self.rx.consume(&mut self.batch) };
        for (slot, desc) in out.iter_mut().zip(&self.batch[..n]) {
            *slot = RxDesc {
                addr: desc.addr() as u64,
                len: desc.lengths().data() as u32,
                options: desc.options(),
            };
        }
        n
    }

    pub(super) fn fill_produce(&mut self, addrs: &[u64]) {
        self.batch.clear();
        for &addr in addrs {
            let index = (addr / u64::from(self.frame_size)) as usize;
            self.batch.push(self.template[index]);
        }
        // SAFETY: the frames were consumed from the pool (`Frame::into_addr`), so
        // user space holds no view or handle of them; the kernel owns them now.
        // One Release store of the producer index publishes the batch.
        let n = unsafe { self.fill.produce(&self.batch) };
        debug_assert_eq!(n, addrs.len(), "fill_capacity said they fit");
    }

    pub(super) fn tx_produce(&mut self, descs: &[TxDesc]) {
        self.batch.clear();
        for d in descs {
            let index = (d.addr / u64::from(self.frame_size)) as usize;
            let mut desc = self.template[index];
            debug_assert_eq!(desc.addr() as u64, d.addr, "TX data starts at the headroom");
            // SAFETY: the frame's handle was consumed (`Frame::into_addr`) for this
            // descriptor: nobody else touches the frame until the completion ring
            // returns it. Only the descriptor's length is set; no byte is written.
            unsafe { self.umem.data_mut(&mut desc) }
                .cursor()
                .set_pos(d.len as usize);
            desc.set_options(d.options);
            self.batch.push(desc);
        }
        // SAFETY: as above, the frames are ours to hand to the kernel, and of this
        // socket's UMEM. One Release store of the producer index publishes them.
        let n = unsafe { self.tx.produce(&self.batch) };
        debug_assert_eq!(n, descs.len(), "tx_capacity said they fit");
    }

    pub(super) fn comp_consume(&mut self, out: &mut [u64]) -> usize {
        self.batch.clear();
        self.batch.resize(out.len(), FrameDesc::default());
        // SAFETY: the completion ring of this socket's UMEM only returns frames we
        // put on its TX ring; the descriptors are overwritten with them.
        let n = unsafe { self.comp.consume(&mut self.batch) };
        for (slot, desc) in out.iter_mut().zip(&self.batch[..n]) {
            *slot = desc.addr() as u64;
        }
        n
    }
}
