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
    CompQueue, FillQueue, FrameDesc, RxQueue, TxQueue, Umem,
    config::{BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig},
    socket::Socket,
};

/// `--zero-copy auto|on|off`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
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
}

impl Default for XskConfig {
    fn default() -> Self {
        Self {
            frame_count: 4096,
            frame_size: 2048,
            ring_size: 2048,
            zero_copy: ZeroCopy::Auto,
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
    #[error(
        "creating a UMEM of {frames} frames of {frame_size} bytes failed: {source} \
         (needs RLIMIT_MEMLOCK or CAP_IPC_LOCK for the memory)"
    )]
    Umem {
        /// Frames asked for.
        frames: u32,
        /// Bytes per frame.
        frame_size: u32,
        /// The underlying error.
        #[source]
        source: io::Error,
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

/// One AF_XDP socket bound to one RX queue, with its own UMEM and four rings.
#[derive(Debug)]
pub struct XskSocket {
    iface: String,
    queue: u32,
    zero_copy: bool,
    umem: Umem,
    fill: FillQueue,
    // Unused until the TX path exists; kept so the rings live as long as the socket.
    _comp: CompQueue,
    _tx: TxQueue,
    rx: RxQueue,
    descs: Vec<FrameDesc>,
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

impl XskSocket {
    /// Create a UMEM and a socket bound to `iface` queue `queue`, and give every
    /// frame to the fill ring.
    pub fn open(iface: &str, queue: u32, config: &XskConfig) -> Result<Self, XskError> {
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
        let (umem, descs) = Umem::new(umem_config, frames, false).map_err(|e| XskError::Umem {
            frames: config.frame_count,
            frame_size: config.frame_size,
            source: io_error_of(&e),
        })?;
        let if_name = Interface::new(
            CString::new(iface).map_err(|_| config_err("interface name contains NUL"))?,
        );

        let attempts: &[bool] = match config.zero_copy {
            ZeroCopy::Auto => &[true, false],
            ZeroCopy::On => &[true],
            ZeroCopy::Off => &[false],
        };
        let mut last_err = None;
        for &zc in attempts {
            let mode = if zc {
                BindFlags::XDP_ZEROCOPY
            } else {
                BindFlags::XDP_COPY
            };
            let socket_config = SocketConfig::builder()
                .rx_queue_size(ring_size)
                .tx_queue_size(ring_size)
                .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
                .bind_flags(mode | BindFlags::XDP_USE_NEED_WAKEUP)
                .build();
            // SAFETY: `umem` is a fresh UMEM used by this socket only, and its frames
            // are handed to the kernel only through this socket's fill ring below.
            match unsafe { Socket::new(socket_config, &umem, &if_name, queue) } {
                Ok((tx, rx, Some((fill, comp)))) => {
                    let mut socket = Self {
                        iface: iface.to_string(),
                        queue,
                        zero_copy: false,
                        umem,
                        fill,
                        _comp: comp,
                        _tx: tx,
                        rx,
                        descs,
                    };
                    socket.zero_copy = socket.read_zero_copy().unwrap_or(zc);
                    socket.fill_all();
                    return Ok(socket);
                }
                Ok((_, _, None)) => {
                    return Err(config_err("xsk-rs returned no fill/completion ring"));
                }
                Err(e) => {
                    let errno = errno_of(&e);
                    let hint = match errno {
                        Some(libc::EOPNOTSUPP) if zc => {
                            " (the driver has no zero-copy AF_XDP; use --zero-copy off or auto)"
                        }
                        Some(libc::EBUSY) => " (another AF_XDP socket is bound to this queue)",
                        Some(libc::EINVAL) => {
                            " (no such RX queue? see `ethtool -l`; or MTU larger than the frame)"
                        }
                        Some(libc::EPERM) => " (needs CAP_NET_RAW: run as root)",
                        Some(libc::ENOMEM | libc::EAGAIN) => {
                            " (RLIMIT_MEMLOCK too small for the UMEM: raise it or run as root)"
                        }
                        _ => "",
                    };
                    let err = XskError::Bind {
                        iface: iface.to_string(),
                        queue,
                        source: io_error_of(&e),
                        hint,
                    };
                    // Only "zero-copy unsupported" may fall through to copy mode.
                    if zc && errno == Some(libc::EOPNOTSUPP) {
                        last_err = Some(err);
                        continue;
                    }
                    return Err(err);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| config_err("no bind mode attempted")))
    }

    fn fill_all(&mut self) {
        // SAFETY: every descriptor in `descs` belongs to this socket's UMEM and none
        // is in a ring or read by us, so the kernel may own them all.
        let n = unsafe { self.fill.produce(&self.descs) };
        debug_assert_eq!(n, self.descs.len(), "fill ring sized to the UMEM");
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

    /// The socket's file descriptor, for the XSKMAP.
    pub fn raw_fd(&self) -> RawFd {
        self.rx.fd().as_raw_fd()
    }

    /// The interface.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// The RX queue.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// True when bound in zero-copy mode (read back from the kernel).
    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// The kernel's XDP_STATISTICS for this socket.
    pub fn statistics(&self) -> io::Result<XskStats> {
        let s = self.rx.fd().xdp_statistics()?;
        Ok(XskStats {
            rx_dropped: s.rx_dropped(),
            rx_invalid_descs: s.rx_invalid_descs(),
            tx_invalid_descs: s.tx_invalid_descs(),
            rx_ring_full: s.rx_ring_full(),
            rx_fill_ring_empty_descs: s.rx_fill_ring_empty_descs(),
            tx_ring_empty_descs: s.tx_ring_empty_descs(),
        })
    }

    /// Receive up to `budget` frames, show each to `each`, and give them straight
    /// back to the fill ring (rxdrop). Waits up to `timeout_ms` in poll(2) when the RX
    /// ring is empty. Returns the number of frames received.
    pub fn receive_batch(
        &mut self,
        budget: usize,
        timeout_ms: i32,
        mut each: impl FnMut(&[u8]),
    ) -> io::Result<usize> {
        let budget = budget.min(self.descs.len());
        let batch = &mut self.descs[..budget];
        // SAFETY: `batch` descriptors are overwritten with frames the kernel hands us
        // on this socket's RX ring; they belong to this socket's UMEM.
        let mut n = unsafe { self.rx.consume(batch) };
        if n == 0 {
            if self.fill.needs_wakeup() {
                // The kernel is asleep waiting for fill descriptors: a poll wakes it.
                self.rx.poll(0)?;
            }
            if !self.rx.poll(timeout_ms)? {
                return Ok(0);
            }
            // SAFETY: as above.
            n = unsafe { self.rx.consume(batch) };
        }
        for desc in &batch[..n] {
            // SAFETY: `desc` came from our RX ring, so it is a frame of our UMEM that
            // the kernel no longer writes; it goes back to the fill ring only below,
            // after `each` returned and the borrow ended.
            let data = unsafe { self.umem.data(desc) };
            each(data.contents());
        }
        // SAFETY: these frames are ours (received above) and nothing borrows them now.
        let filled = unsafe { self.fill.produce(&batch[..n]) };
        debug_assert_eq!(filled, n, "fill ring holds the whole UMEM");
        if self.fill.needs_wakeup() {
            self.rx.poll(0)?;
        }
        Ok(n)
    }
}
