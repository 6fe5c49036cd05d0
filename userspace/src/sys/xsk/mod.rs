//! AF_XDP sockets: the only module that touches xsk-rs.
//!
//! One UMEM per RX queue, so each queue's poller owns its frames outright and no
//! ring is shared between threads. libxdp's own XDP program is inhibited: our program
//! (see `loader`) redirects into our XSKMAP, where [`XskSocket::raw_fd`] is inserted.

use std::{
    ffi::CString,
    io,
    num::NonZeroU32,
    os::fd::{AsRawFd, RawFd},
};

use xsk_rs::{
    Umem,
    config::{BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig},
};

use super::Kernel;

mod full;
mod rx_only;

use crate::{
    frame::FramePool,
    ring::{KickOutcome, RingOccupancy, Rings, RxDesc, TxDesc},
};
use full::{FullRings, XskMemory, bind_retrying};
use rx_only::{OpenError as RxOpenError, RxOnly};

/// `--zero-copy auto|on|off`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ZeroCopy {
    /// Zero-copy when the driver offers it, copy mode otherwise.
    #[default]
    Auto,
    /// Zero-copy or fail.
    On,
    /// Copy mode.
    Off,
}

/// Sizes of a socket's UMEM and rings.
#[derive(Clone, Copy, Debug)]
pub struct XskConfig {
    /// Frames in the UMEM.
    pub frame_count: u32,
    /// Bytes per frame: 2048 or 4096.
    pub frame_size: u32,
    /// Descriptors in the RX and TX rings (a power of two).
    pub ring_size: u32,
    /// Zero-copy policy.
    pub zero_copy: ZeroCopy,
    /// Bind a TX ring (and the completion ring's use): off for a queue that
    /// only receives, whose socket then has an RX ring alone, made with libxdp
    /// directly (`sys/xsk/rx_only.rs`: xsk-rs always binds a TX ring).
    pub tx_ring: bool,
    /// Bind with `XDP_USE_SG`: a packet larger than a frame arrives (and may be
    /// sent) as several descriptors, chained with `XDP_PKT_CONTD`. Without
    /// it the kernel drops such packets (`rx_dropped`).
    pub multi_buffer: bool,
}

impl Default for XskConfig {
    fn default() -> Self {
        Self {
            frame_count: 4096,
            frame_size: 2048,
            ring_size: 2048,
            zero_copy: ZeroCopy::Auto,
            tx_ring: true,
            multi_buffer: false,
        }
    }
}

/// Errors opening an AF_XDP socket.
#[derive(Debug, thiserror::Error)]
pub enum XskError {
    /// A size that xsk-rs or the kernel does not accept.
    #[error("invalid AF_XDP configuration: {0}")]
    Config(String),
    /// Creating the UMEM failed.
    #[error("creating a UMEM of {frames} frames of {frame_size} bytes failed: {source}{hint}")]
    Umem {
        /// Frames asked for.
        frames: u32,
        /// Bytes per frame.
        frame_size: u32,
        /// The underlying error.
        #[source]
        source: io::Error,
        /// What to do about it.
        hint: &'static str,
    },
    /// Creating or binding the socket failed.
    #[error("binding an AF_XDP socket to {iface} queue {queue} failed: {source}{hint}")]
    Bind {
        /// The interface.
        iface: String,
        /// The RX queue.
        queue: u32,
        /// The underlying error.
        #[source]
        source: io::Error,
        /// What to do about it.
        hint: &'static str,
    },
}

/// XDP_STATISTICS of one socket (`struct xdp_statistics`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct XskStats {
    /// Frames dropped for other reasons (e.g. frame too small for the packet).
    pub rx_dropped: u64,
    /// Invalid descriptors on the RX side.
    pub rx_invalid_descs: u64,
    /// Invalid descriptors on the TX ring.
    pub tx_invalid_descs: u64,
    /// Frames dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was empty when the kernel needed a frame.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the TX ring was empty when the kernel looked.
    pub tx_ring_empty_descs: u64,
}

impl XskStats {
    /// The kernel's receive-side drops by name: the names the JSON's fields
    /// have and the live line and the summary print, from this one list.
    pub fn rx_drops(&self) -> [(&'static str, u64); 4] {
        [
            ("rx_dropped", self.rx_dropped),
            ("rx_ring_full", self.rx_ring_full),
            ("rx_fill_ring_empty_descs", self.rx_fill_ring_empty_descs),
            ("rx_invalid_descs", self.rx_invalid_descs),
        ]
    }
}

/// XDP_STATISTICS of the AF_XDP socket `fd` (getsockopt is safe to call from any
/// thread, so live statistics read it beside the poller).
pub fn read_statistics(fd: RawFd) -> io::Result<XskStats> {
    const SOL_XDP: libc::c_int = 283;
    const XDP_STATISTICS: libc::c_int = 7;
    let mut raw = [0u64; 6];
    let mut len = std::mem::size_of_val(&raw) as libc::socklen_t;
    // SAFETY: `raw` is valid for writes of `len` bytes, the size of
    // `struct xdp_statistics` (six __u64) since Linux 5.9.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            SOL_XDP,
            XDP_STATISTICS,
            raw.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // struct xdp_statistics { rx_dropped, rx_invalid_descs, tx_invalid_descs,
    // rx_ring_full, rx_fill_ring_empty_descs, tx_ring_empty_descs }
    Ok(XskStats {
        rx_dropped: raw[0],
        rx_invalid_descs: raw[1],
        tx_invalid_descs: raw[2],
        rx_ring_full: raw[3],
        rx_fill_ring_empty_descs: raw[4],
        tx_ring_empty_descs: raw[5],
    })
}

/// One AF_XDP socket bound to one RX queue, with its own UMEM and its rings:
/// fill, completion, RX and TX, or without TX for a queue that only receives.
///
/// [`XskSocket::open`] returns it with the [`FramePool`] over its UMEM; the poller
/// owns both.
#[derive(Debug)]
pub struct XskSocket {
    zero_copy: bool,
    /// Slots in the fill ring.
    fill_size: u32,
    /// Slots in the TX ring (0 without one).
    tx_size: u32,
    rings: SocketRings,
    /// Polled beside the socket when set (see [`XskSocket::doorbell`]).
    bell: Option<std::sync::Arc<super::doorbell::EventFd>>,
}

/// Who made the rings.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "one per socket, made once; boxing would add a load to every ring operation"
)]
enum SocketRings {
    /// xsk-rs: all four.
    Full(FullRings),
    /// libxdp directly, no TX ring (see `rx_only`).
    RxOnly(RxOnly),
}

fn config_err(e: impl std::fmt::Display) -> XskError {
    XskError::Config(e.to_string())
}

fn io_error_of(e: &(dyn std::error::Error + 'static)) -> io::Error {
    let mut source = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            return match io.raw_os_error() {
                Some(code) => io::Error::from_raw_os_error(code),
                None => io::Error::new(io.kind(), io.to_string()),
            };
        }
        source = s.source();
    }
    io::Error::other(e.to_string())
}

fn errno_of(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut source = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            return io.raw_os_error();
        }
        source = s.source();
    }
    None
}

/// What to do about a failed UMEM creation.
fn umem_error(config: &XskConfig, source: io::Error) -> XskError {
    XskError::Umem {
        frames: config.frame_count,
        frame_size: config.frame_size,
        hint: match source.raw_os_error() {
            // socket(AF_XDP) itself.
            Some(libc::EPERM | libc::EACCES) => " (AF_XDP sockets need CAP_NET_RAW: run as root)",
            // Pinning the UMEM pages.
            Some(libc::ENOBUFS | libc::ENOMEM | libc::EAGAIN) => {
                " (RLIMIT_MEMLOCK too small for the UMEM: raise it with `ulimit -l`, \
                 run as root, or use fewer --frames)"
            }
            _ => "",
        },
        source,
    }
}

/// A bind that failed: `Ok(error)` when zero-copy is unsupported and copy mode
/// may be tried next, `Err(error)` otherwise.
fn bind_failed(
    iface: &str,
    queue: u32,
    source: io::Error,
    zero_copy: bool,
) -> Result<XskError, XskError> {
    let errno = source.raw_os_error();
    let err = XskError::Bind {
        iface: iface.to_string(),
        queue,
        source,
        hint: bind_hint(errno, zero_copy),
    };
    // Only "zero-copy unsupported" may fall through to copy mode.
    if zero_copy && errno == Some(libc::EOPNOTSUPP) {
        Ok(err)
    } else {
        Err(err)
    }
}

/// What to do about a failed bind, by errno.
fn bind_hint(errno: Option<i32>, zero_copy: bool) -> &'static str {
    match errno {
        Some(libc::EOPNOTSUPP) if zero_copy => {
            " (the driver has no zero-copy AF_XDP, or none for packets in several frames \
             (multi-buffer); use --zero-copy off or auto)"
        }
        Some(libc::EBUSY) => {
            " (another AF_XDP socket is bound to this queue: still busy after 2 s)"
        }
        Some(libc::EINVAL) => " (no such RX queue? see `ethtool -l`; or MTU larger than the frame)",
        Some(libc::EPERM) => " (needs CAP_NET_RAW: run as root)",
        Some(libc::ENOMEM | libc::EAGAIN) => {
            " (RLIMIT_MEMLOCK too small for the UMEM: raise it or run as root)"
        }
        _ => "",
    }
}

/// How long a bind that finds its queue taken (EBUSY) is retried.
const BIND_BUSY_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

impl XskSocket {
    /// The doorbell that wakes this socket's run loop in [`Kernel::wait_rx`]
    /// (made on first use; see [`crate::ring::Doorbell`]).
    pub fn doorbell(&mut self) -> io::Result<std::sync::Arc<dyn crate::ring::Doorbell>> {
        if self.bell.is_none() {
            self.bell = Some(std::sync::Arc::new(super::doorbell::EventFd::new()?));
        }
        let bell = self.bell.clone().expect("made above");
        Ok(bell)
    }

    /// Create a UMEM and a socket bound to `iface` queue `queue`. Returns the
    /// socket and the pool of its frames (none of which is in a ring yet: the
    /// poller's first round fills). A queue that is busy (EBUSY) is retried for
    /// 2 s, the time the kernel may take to release a socket that was
    /// just closed.
    pub fn open(
        iface: &str,
        queue: u32,
        config: &XskConfig,
    ) -> Result<(Self, FramePool), XskError> {
        if config.tx_ring {
            Self::open_full(iface, queue, config)
        } else {
            Self::open_rx_only(iface, queue, config)
        }
    }

    /// The zero-copy modes to try, in order.
    fn attempts(config: &XskConfig) -> &'static [bool] {
        match config.zero_copy {
            ZeroCopy::Auto => &[true, false],
            ZeroCopy::On => &[true],
            ZeroCopy::Off => &[false],
        }
    }

    /// A receive-only socket (no TX ring), made with libxdp (`rx_only`).
    fn open_rx_only(
        iface: &str,
        queue: u32,
        config: &XskConfig,
    ) -> Result<(Self, FramePool), XskError> {
        if config.frame_count == 0 {
            return Err(config_err("--frames must be at least 1"));
        }
        if !config.ring_size.is_power_of_two() || !config.frame_size.is_power_of_two() {
            return Err(config_err("ring and frame sizes must be powers of two"));
        }
        let if_name = CString::new(iface).map_err(|_| config_err("interface name contains NUL"))?;
        let mut last_err = None;
        for &zc in Self::attempts(config) {
            let busy_until = std::time::Instant::now() + BIND_BUSY_RETRY;
            let opened = loop {
                let opened = RxOnly::open(
                    &if_name,
                    queue,
                    config.frame_count,
                    config.frame_size,
                    config.ring_size,
                    zc,
                    config.multi_buffer,
                );
                match &opened {
                    Err(RxOpenError::Bind(e))
                        if e.raw_os_error() == Some(libc::EBUSY)
                            && std::time::Instant::now() < busy_until =>
                    {
                        tracing::debug!(queue, "queue busy (a socket being torn down?), retrying");
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                    _ => break opened,
                }
            };
            match opened {
                Ok((rings, memory)) => {
                    let mut socket = Self {
                        zero_copy: zc,
                        fill_size: config.frame_count.next_power_of_two(),
                        tx_size: 0,
                        rings: SocketRings::RxOnly(rings),
                        bell: None,
                    };
                    socket.zero_copy = socket.read_zero_copy().unwrap_or(zc);
                    let pool = FramePool::new(Box::new(memory), queue);
                    return Ok((socket, pool));
                }
                Err(RxOpenError::Umem(source)) => return Err(umem_error(config, source)),
                Err(RxOpenError::Bind(source)) => {
                    last_err = Some(bind_failed(iface, queue, source, zc)?);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| config_err("no bind mode attempted")))
    }

    /// A socket with all four rings, made with xsk-rs.
    fn open_full(
        iface: &str,
        queue: u32,
        config: &XskConfig,
    ) -> Result<(Self, FramePool), XskError> {
        let frames = NonZeroU32::new(config.frame_count)
            .ok_or_else(|| config_err("--frames must be at least 1"))?;
        // The fill ring holds every frame at once, so size it to the UMEM.
        let fill_size =
            QueueSize::new(config.frame_count.next_power_of_two()).map_err(config_err)?;
        let ring_size = QueueSize::new(config.ring_size).map_err(config_err)?;
        let umem_config = UmemConfig::builder()
            .frame_size(FrameSize::new(config.frame_size).map_err(config_err)?)
            .fill_queue_size(fill_size)
            .comp_queue_size(ring_size)
            .build()
            .map_err(config_err)?;
        let umem_err = |source: io::Error| umem_error(config, source);
        let (umem, template) =
            Umem::new(umem_config, frames, false).map_err(|e| umem_err(io_error_of(&e)))?;
        let memory = XskMemory::new(&umem, &template, config.frame_size).map_err(umem_err)?;
        let if_name = Interface::new(
            CString::new(iface).map_err(|_| config_err("interface name contains NUL"))?,
        );

        let mut last_err = None;
        for &zc in Self::attempts(config) {
            let mut mode = if zc {
                BindFlags::XDP_ZEROCOPY
            } else {
                BindFlags::XDP_COPY
            };
            if config.multi_buffer {
                mode |= BindFlags::XDP_USE_SG;
            }
            let socket_config = SocketConfig::builder()
                .rx_queue_size(ring_size)
                .tx_queue_size(ring_size)
                .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
                .bind_flags(mode | BindFlags::XDP_USE_NEED_WAKEUP)
                .build();
            let bound = bind_retrying(socket_config, &umem, &if_name, queue);
            match bound {
                Ok((tx, rx, Some((fill, comp)))) => {
                    let batch = Vec::with_capacity(template.len());
                    let mut socket = Self {
                        zero_copy: false,
                        fill_size: config.frame_count.next_power_of_two(),
                        tx_size: config.ring_size,
                        rings: SocketRings::Full(FullRings {
                            frame_size: config.frame_size,
                            fill,
                            comp,
                            tx,
                            rx,
                            umem: umem.clone(),
                            template,
                            batch,
                        }),
                        bell: None,
                    };
                    socket.zero_copy = socket.read_zero_copy().unwrap_or(zc);
                    let pool = FramePool::new(Box::new(memory), queue);
                    return Ok((socket, pool));
                }
                Ok((_, _, None)) => {
                    return Err(config_err("xsk-rs returned no fill/completion ring"));
                }
                Err(e) => {
                    last_err = Some(bind_failed(iface, queue, io_error_of(&e), zc)?);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| config_err("no bind mode attempted")))
    }

    /// XDP_OPTIONS: did the kernel bind in zero-copy mode?
    fn read_zero_copy(&self) -> io::Result<bool> {
        const SOL_XDP: libc::c_int = 283;
        const XDP_OPTIONS: libc::c_int = 8;
        const XDP_OPTIONS_ZEROCOPY: u32 = 1;
        let mut flags: u32 = 0;
        let mut len = std::mem::size_of::<u32>() as libc::socklen_t;
        // SAFETY: `flags` and `len` are valid for writes of the sizes given; the
        // kernel writes at most `len` bytes of `struct xdp_options { __u32 flags; }`.
        let rc = unsafe {
            libc::getsockopt(
                self.raw_fd(),
                SOL_XDP,
                XDP_OPTIONS,
                (&raw mut flags).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(flags & XDP_OPTIONS_ZEROCOPY != 0)
    }

    /// Busy polling (`--busy-poll`): the socket prefers busy polling, spins up to
    /// 20 us in the syscall, and polls up to `budget` packets per busy-poll round.
    /// The application then drives the queue with non-blocking syscalls.
    pub fn enable_busy_poll(&self, budget: u32) -> io::Result<()> {
        // <asm-generic/socket.h>
        const SO_BUSY_POLL: libc::c_int = 46;
        const SO_PREFER_BUSY_POLL: libc::c_int = 69;
        const SO_BUSY_POLL_BUDGET: libc::c_int = 70;
        for (opt, value) in [
            (SO_PREFER_BUSY_POLL, 1i32),
            (SO_BUSY_POLL, 20),
            (
                SO_BUSY_POLL_BUDGET,
                i32::try_from(budget).unwrap_or(i32::MAX),
            ),
        ] {
            // SAFETY: `value` is a live c_int and the length matches it.
            let rc = unsafe {
                libc::setsockopt(
                    self.raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&raw const value).cast(),
                    std::mem::size_of::<i32>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// The socket's file descriptor, for the XSKMAP.
    pub fn raw_fd(&self) -> RawFd {
        match &self.rings {
            SocketRings::Full(r) => r.rx.fd().as_raw_fd(),
            SocketRings::RxOnly(r) => r.fd(),
        }
    }

    /// True when the socket has a TX ring.
    pub fn has_tx_ring(&self) -> bool {
        matches!(self.rings, SocketRings::Full(_))
    }

    /// True when bound in zero-copy mode (read back from the kernel).
    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// The kernel's XDP_STATISTICS for this socket.
    pub fn statistics(&self) -> io::Result<XskStats> {
        read_statistics(self.raw_fd())
    }
}

// SAFETY: `rx_consume` returns what the kernel put on our RX ring, which only ever
// holds frames we gave to the fill ring (the kernel's side of the AF_XDP contract),
// each once per trip; likewise the completion ring, for the TX ring. A socket
// without a TX ring takes no TX descriptor and completes nothing.
unsafe impl Rings for XskSocket {
    #[inline]
    fn rx_consume(&mut self, out: &mut [RxDesc]) -> usize {
        match &mut self.rings {
            SocketRings::Full(r) => r.rx_consume(out),
            SocketRings::RxOnly(r) => r.rx_consume(out),
        }
    }

    #[inline]
    fn fill_capacity(&mut self, want: u32) -> u32 {
        match &mut self.rings {
            SocketRings::Full(r) => r.fill.nb_free(want),
            SocketRings::RxOnly(r) => r.fill_capacity(want),
        }
    }

    #[inline]
    fn fill_produce(&mut self, addrs: &[u64]) {
        match &mut self.rings {
            SocketRings::Full(r) => r.fill_produce(addrs),
            SocketRings::RxOnly(r) => r.fill_produce(addrs),
        }
    }

    fn fill_needs_wakeup(&mut self) -> bool {
        match &mut self.rings {
            SocketRings::Full(r) => r.fill.needs_wakeup(),
            SocketRings::RxOnly(r) => r.fill_needs_wakeup(),
        }
    }

    fn tx_capacity(&mut self, want: u32) -> u32 {
        match &mut self.rings {
            SocketRings::Full(r) => r.tx.nb_free(want),
            SocketRings::RxOnly(_) => 0,
        }
    }

    fn tx_produce(&mut self, descs: &[TxDesc]) {
        match &mut self.rings {
            SocketRings::Full(r) => r.tx_produce(descs),
            // tx_capacity said 0: nothing comes here.
            SocketRings::RxOnly(_) => debug_assert!(descs.is_empty(), "no TX ring"),
        }
    }

    fn tx_needs_wakeup(&mut self) -> bool {
        match &mut self.rings {
            SocketRings::Full(r) => r.tx.needs_wakeup(),
            SocketRings::RxOnly(_) => false,
        }
    }

    fn tx_pending(&mut self) -> u32 {
        match &mut self.rings {
            SocketRings::Full(r) => self.tx_size - r.tx.nb_free_exact(),
            SocketRings::RxOnly(_) => 0,
        }
    }

    fn occupancy(&mut self) -> RingOccupancy {
        // RX first (see the trait): a frame moving to it meanwhile is missed, not
        // counted twice.
        let (rx_ring, fill_ring) = match &mut self.rings {
            SocketRings::Full(r) => {
                let rx = r.rx.nb_avail_exact();
                (rx, self.fill_size - r.fill.nb_free_exact())
            }
            SocketRings::RxOnly(r) => r.occupancy(),
        };
        RingOccupancy { rx_ring, fill_ring }
    }

    fn comp_consume(&mut self, out: &mut [u64]) -> usize {
        match &mut self.rings {
            SocketRings::Full(r) => r.comp_consume(out),
            SocketRings::RxOnly(_) => 0,
        }
    }
}

impl Kernel for XskSocket {
    fn wakeup(&mut self) -> io::Result<()> {
        // What libxdp's examples do to kick RX processing: a non-blocking
        // recvfrom(2) on the socket, which runs the driver's NAPI poll (and busy
        // polls when SO_PREFER_BUSY_POLL is set).
        // SAFETY: null buffer of length 0 and null address are valid for recvfrom.
        let rc = unsafe {
            libc::recvfrom(
                self.raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            let err = io::Error::last_os_error();
            // Nothing to receive, or the kernel is busy: the kick happened.
            if matches!(
                err.raw_os_error(),
                Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS | libc::ENETDOWN)
            ) {
                return Ok(());
            }
            return Err(err);
        }
        Ok(())
    }

    fn wait_rx(&mut self, timeout_ms: i32) -> io::Result<bool> {
        let pollfd = |fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let mut fds = [
            pollfd(self.raw_fd()),
            pollfd(self.bell.as_ref().map_or(-1, |b| b.as_raw_fd())),
        ];
        let n = if self.bell.is_some() { 2 } else { 1 };
        // SAFETY: `n` valid pollfds. (xsk-rs's `RxQueue::poll` does the same; a
        // socket without a TX ring has no xsk-rs queue to ask.)
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), n, timeout_ms) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        if let Some(bell) = &self.bell
            && fds[1].revents & libc::POLLIN != 0
        {
            bell.clear();
        }
        Ok(rc > 0 && fds[0].revents & libc::POLLIN != 0)
    }

    fn statistics(&self) -> io::Result<XskStats> {
        read_statistics(self.raw_fd())
    }

    fn napi_id(&self) -> io::Result<u32> {
        // <asm-generic/socket.h>
        const SO_INCOMING_NAPI_ID: libc::c_int = 56;
        let mut id: u32 = 0;
        let mut len = std::mem::size_of::<u32>() as libc::socklen_t;
        // SAFETY: `id` and `len` are valid for writes of the sizes given.
        let rc = unsafe {
            libc::getsockopt(
                self.raw_fd(),
                libc::SOL_SOCKET,
                SO_INCOMING_NAPI_ID,
                (&raw mut id).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(id)
    }

    fn tx_kick(&mut self) -> io::Result<KickOutcome> {
        if !self.has_tx_ring() {
            return Ok(KickOutcome::Accepted);
        }
        // By hand rather than xsk-rs's `TxQueue::wakeup`, which absorbs EBUSY
        // with EAGAIN; but EBUSY is not "try again": in copy mode the kernel
        // says it when the driver refused a frame (NET_XMIT_DROP), which it
        // then completes unsent (net/xdp/xsk.c, "SKB completed but not sent").
        // SAFETY: null buffer of length 0 and null address are valid for sendto.
        let rc = unsafe {
            libc::sendto(
                self.raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        if rc >= 0 {
            return Ok(KickOutcome::Accepted);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EBUSY) => Ok(KickOutcome::Dropped),
            // The driver's queue is full, memory is short, or the link is down:
            // the frames stay on the ring.
            Some(libc::EAGAIN | libc::ENOBUFS | libc::ENETDOWN) => Ok(KickOutcome::Busy),
            _ => Err(err),
        }
    }
}
