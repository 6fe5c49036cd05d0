//! Loading, configuring and attaching the XDP program (aya).
//!
//! The program is attached through a `bpf_link` only: the link belongs to this
//! process's file descriptor, so the kernel detaches the program when the process
//! exits, panics or is killed with SIGKILL, and nothing is ever pinned. A program
//! already on the interface (ours from another process, or anyone's) makes the
//! attach fail with EBUSY/EEXIST; we report it and never replace it.
//!
//! The object holds each program twice, frags-aware (multi-buffer frames) and
//! not ([`ProgramNames`]); one [`XdpProgram`] loads one variant whole
//! ([`LoadOptions`]), and the capture filters it runs follow it
//! ([`XdpProgram::load_filter_program`]).

use std::{
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd},
};

use aya::{
    Ebpf, EbpfError,
    maps::{Array, Map, MapData, MapError, PerCpuArray, ProgramArray, RingBuf, XskMap},
    programs::{ProgramError, TestRun, TestRunOptions, Xdp, XdpMode, links::FdLink},
};
use xdp_ebpf::{
    CAPTURE_COUNTER_COUNT, CAPTURE_STATS_MAP, CONFIG_MAP, COPIES_MAP, COUNTER_COUNT, CaptureMode,
    Config, JUMP_FILTER, JUMP_MAP, JUMP_SELECTED, JUMP_UNSELECTED, MAX_QUEUES, PORT_BITMAP_WORDS,
    PORTS_MAP, ProgramNames, STATS_MAP, SteerMode, XSKS_MAP,
};

use super::{
    bpf_prog::{self, BpfLoadError},
    ifinfo::if_index,
};
use crate::filter::ebpf::EbpfInsn;

mod counters;

pub use counters::{CaptureCounters, CopyRing, XdpCounters};

/// The XDP object, built by `build.rs` from the `xdp-ebpf` crate.
static XDP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdpstack-xdp"));

/// How to attach: `--xdp-mode auto|drv|skb`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum XdpModeChoice {
    /// Native (driver) mode, falling back to generic mode when the driver has no XDP.
    #[default]
    Auto,
    /// Native (driver) mode only.
    Drv,
    /// Generic (SKB) mode only: works on any interface, slower.
    Skb,
}

/// The mode the program was attached in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachedMode {
    /// Native XDP in the driver.
    Drv,
    /// Generic XDP in the kernel's receive path.
    Skb,
}

impl std::fmt::Display for AttachedMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AttachedMode::Drv => "drv",
            AttachedMode::Skb => "skb",
        })
    }
}

/// Errors from loading, configuring or attaching the XDP program.
#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    /// The kernel refused the `bpf()` syscall for lack of privileges.
    // The source names the first map or program the kernel refused, which
    // changes from run to run and says nothing a user can act on: not shown.
    #[error(
        "loading the XDP program needs CAP_BPF and CAP_NET_ADMIN: run as root (bpf(2) said \
         Operation not permitted)"
    )]
    Privileges {
        /// The underlying error.
        #[source]
        source: EbpfError,
    },
    /// Any other failure to load the object (verifier, missing map...).
    #[error("loading the XDP program failed: {source}")]
    Load {
        /// The underlying error.
        #[source]
        source: EbpfError,
    },
    /// The program did not pass the verifier or could not be loaded.
    #[error("the kernel refused the XDP program: {source}")]
    Program {
        /// The underlying error.
        #[source]
        source: ProgramError,
    },
    /// A map of the ABI is missing or has the wrong type.
    #[error("XDP map {name}: {source}")]
    Map {
        /// The map's name.
        name: &'static str,
        /// The underlying error.
        #[source]
        source: MapError,
    },
    /// No such interface.
    #[error("interface {0} not found (see `ip link`)")]
    UnknownInterface(String),
    /// An XDP program is already attached; we never replace it.
    #[error(
        "interface {iface} already has an XDP program attached; xdpstack never replaces it: \
         detach it first (`ip link set dev {iface} xdp off`) or use another interface"
    )]
    ForeignProgram {
        /// The interface.
        iface: String,
    },
    /// `--xdp-mode drv` on a driver without native XDP.
    #[error("the driver of {iface} has no native XDP support; use `--xdp-mode skb` (or `auto`)")]
    NoNativeXdp {
        /// The interface.
        iface: String,
    },
    /// The driver has native XDP but refused it for a limit of the moment
    /// (veth: ERANGE, its peer's MTU is too large; ENOSPC, fewer RX queues
    /// than the peer has TX queues). bpf(2) carries no extack message: the
    /// stack names the cause (`stack::StackError::NativeXdpRefused`).
    #[error("attaching XDP to {iface} in drv mode failed: {}", io::Error::from_raw_os_error(*errno))]
    NativeRefused {
        /// The interface.
        iface: String,
        /// The kernel's errno.
        errno: i32,
    },
    /// Attaching needs CAP_NET_ADMIN.
    #[error("attaching XDP to {iface} needs CAP_NET_ADMIN and CAP_BPF (run as root)")]
    AttachPrivileges {
        /// The interface.
        iface: String,
    },
    /// The kernel gave no bpf_link for XDP, so a crash would leave the program attached.
    #[error(
        "the kernel attached XDP to {iface} without a bpf_link (kernel older than 5.9?); \
         refusing, because the program would stay attached after a crash"
    )]
    NoBpfLink {
        /// The interface.
        iface: String,
    },
    /// Any other attach failure.
    #[error("attaching XDP to {iface} in {mode} mode failed: {source}")]
    Attach {
        /// The interface.
        iface: String,
        /// The mode tried.
        mode: AttachedMode,
        /// The underlying error.
        #[source]
        source: ProgramError,
    },
}

/// How to load the XDP program ([`XdpProgram::load_with`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    /// Load the frags-aware variant of the programs (section `xdp.frags`,
    /// `BPF_F_XDP_HAS_FRAGS`; [`ProgramNames::FRAGS`]), which takes multi-buffer
    /// frames and which drivers attach whatever the MTU. Without frags
    /// ([`ProgramNames::LINEAR`]) a driver whose MTU needs multi-buffer frames
    /// refuses the program (veth: its peer's MTU above one page's worth).
    ///
    /// The capture filter programs follow ([`XdpProgram::load_filter_program`]).
    pub frags: bool,
}

impl Default for LoadOptions {
    /// Frags-aware, as [`XdpProgram::load`].
    fn default() -> Self {
        Self { frags: true }
    }
}

/// The loaded XDP program and its maps, attached to at most one interface.
///
/// Dropping it detaches the program (the link's fd is closed) and frees the maps.
#[derive(Debug)]
pub struct XdpProgram {
    // Field order matters for drop: the link goes before the object.
    link: Option<FdLink>,
    attached: Option<(String, AttachedMode)>,
    /// Why auto mode fell back to generic mode (see [`XdpProgram::fell_back`]).
    fell_back: Option<LoaderError>,
    /// What was last written to the configuration map.
    config: Config,
    /// The variant loaded: frags-aware or not.
    names: ProgramNames,
    ebpf: Ebpf,
}

/// EPERM is what the kernel says without CAP_BPF/CAP_NET_ADMIN. (EACCES is the
/// verifier's answer to a program it rejects, not a privilege problem.)
pub fn is_permission_error(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::EPERM)
}

/// The errno of a failed program operation, found anywhere in the error chain.
pub fn program_error_errno(err: &ProgramError) -> Option<i32> {
    match err {
        ProgramError::SyscallError(e) => e.io_error.raw_os_error(),
        ProgramError::LoadError { io_error, .. } => io_error.raw_os_error(),
        _ => {
            // The netlink fallback reports errno inside its own error type; find an
            // io::Error anywhere in the chain.
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
            while let Some(e) = source {
                if let Some(io) = e.downcast_ref::<io::Error>() {
                    return io.raw_os_error();
                }
                source = e.source();
            }
            None
        }
    }
}

/// True when loading failed for want of privileges (see [`is_permission_error`]),
/// anywhere in the error chain.
pub fn ebpf_error_is_permission(err: &EbpfError) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<io::Error>()
            && is_permission_error(io)
        {
            return true;
        }
        if let Some(ProgramError::LoadError { io_error, .. }) = e.downcast_ref::<ProgramError>()
            && is_permission_error(io_error)
        {
            return true;
        }
        source = e.source();
    }
    false
}

fn missing_map(name: &'static str) -> LoaderError {
    LoaderError::Map {
        name,
        source: MapError::InvalidName {
            name: name.to_string(),
        },
    }
}

/// The XDP program `name` of `ebpf`.
fn xdp_program_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp, LoaderError> {
    let program = ebpf.program_mut(name).ok_or(LoaderError::Program {
        source: ProgramError::UnexpectedProgramType,
    })?;
    program
        .try_into()
        .map_err(|source| LoaderError::Program { source })
}

/// Load the embedded object and its program `name` into the kernel (this runs the
/// verifier); missing privileges become [`LoaderError::Privileges`].
fn load_object_program(name: &str) -> Result<Ebpf, LoaderError> {
    let mut ebpf = Ebpf::load(XDP_OBJECT).map_err(|source| {
        if ebpf_error_is_permission(&source) {
            LoaderError::Privileges { source }
        } else {
            LoaderError::Load { source }
        }
    })?;
    xdp_program_mut(&mut ebpf, name)?
        .load()
        .map_err(|source| match &source {
            ProgramError::LoadError { io_error, .. } if is_permission_error(io_error) => {
                LoaderError::Privileges {
                    source: EbpfError::ProgramError(source),
                }
            }
            _ => LoaderError::Program { source },
        })?;
    Ok(ebpf)
}

impl XdpProgram {
    /// Load the embedded object and the frags-aware program into the kernel
    /// (this runs the verifier): [`load_with`](Self::load_with) with the
    /// default [`LoadOptions`].
    pub fn load() -> Result<Self, LoaderError> {
        Self::load_with(LoadOptions::default())
    }

    /// Load the embedded object and the variant of the program `opts` asks for
    /// into the kernel (this runs the verifier); nothing is attached yet. The
    /// configuration starts as "steer nothing".
    pub fn load_with(opts: LoadOptions) -> Result<Self, LoaderError> {
        let names = ProgramNames::of(opts.frags);
        // Only the variant asked for: the first program loaded that uses the
        // jump table makes it frags-aware or not for good, and the kernel then
        // refuses programs of the other kind in it, or tail-calling through it.
        let mut ebpf = load_object_program(names.steer)?;
        // The programs a capture filter continues in, in their slots of the jump
        // table; the filter's own slot stays empty until a capture sets one.
        for (name, slot) in [
            (names.selected, JUMP_SELECTED),
            (names.unselected, JUMP_UNSELECTED),
        ] {
            let program = xdp_program_mut(&mut ebpf, name)?;
            program
                .load()
                .map_err(|source| LoaderError::Program { source })?;
            let fd = program
                .fd()
                .map_err(|source| LoaderError::Program { source })?
                .try_clone()
                .map_err(|e| LoaderError::Program {
                    source: ProgramError::IOError(e),
                })?;
            let map = ebpf.map_mut(JUMP_MAP).ok_or(missing_map(JUMP_MAP))?;
            let mut jump = ProgramArray::try_from(map).map_err(|source| LoaderError::Map {
                name: JUMP_MAP,
                source,
            })?;
            jump.set(slot, &fd, 0).map_err(|source| LoaderError::Map {
                name: JUMP_MAP,
                source,
            })?;
        }
        Ok(Self {
            link: None,
            attached: None,
            fell_back: None,
            config: Config::default(),
            names,
            ebpf,
        })
    }

    /// True for the frags-aware variant ([`LoadOptions::frags`]).
    pub fn frags(&self) -> bool {
        self.names == ProgramNames::FRAGS
    }

    /// The names of the programs loaded.
    pub fn names(&self) -> ProgramNames {
        self.names
    }

    /// The steering program.
    fn program_mut(&mut self) -> Result<&mut Xdp, LoaderError> {
        xdp_program_mut(&mut self.ebpf, self.names.steer)
    }

    /// Load `insns` as an XDP program named `name` that the jump table can
    /// hold: a capture filter for [`configure_capture`](Self::configure_capture),
    /// translated to tail-call into the table ([`jump_table_fd`](Self::jump_table_fd)).
    /// It is frags-aware exactly when this program is, which the kernel demands
    /// of every program in a prog array and of every caller through it.
    ///
    /// # Errors
    ///
    /// As [`bpf_prog::load_xdp_with`].
    pub fn load_filter_program(
        &self,
        name: &str,
        insns: &[EbpfInsn],
    ) -> Result<OwnedFd, BpfLoadError> {
        bpf_prog::load_xdp_with(name, insns, self.frags())
    }

    fn map_mut(&mut self, name: &'static str) -> Result<&mut Map, LoaderError> {
        self.ebpf.map_mut(name).ok_or(missing_map(name))
    }

    fn map_data(&self, name: &'static str) -> Result<&MapData, LoaderError> {
        match self.ebpf.map(name).ok_or(missing_map(name))? {
            Map::ProgramArray(data) | Map::RingBuf(data) | Map::PerCpuArray(data) => Ok(data),
            _ => Err(LoaderError::Map {
                name,
                source: MapError::InvalidName { name: name.into() },
            }),
        }
    }

    /// The jump table's fd, which a translated filter refers to for its tail calls
    /// (valid while `self` lives).
    pub fn jump_table_fd(&self) -> Result<RawFd, LoaderError> {
        Ok(self.map_data(JUMP_MAP)?.fd().as_fd().as_raw_fd())
    }

    /// Capture the frames no app claims, as `capture` says: all of them, or those
    /// the program `filter` (a translated expression that continues through the
    /// jump table, see [`jump_table_fd`](Self::jump_table_fd)) selects; copies keep
    /// `snaplen` bytes. The filter is in place before the configuration says to
    /// use it, and the configuration stops using it before it is removed.
    pub fn configure_capture(
        &mut self,
        capture: CaptureMode,
        filter: Option<BorrowedFd<'_>>,
        snaplen: u32,
    ) -> Result<(), LoaderError> {
        let map_fd = self.jump_table_fd()?;
        let jump_err = |errno: i32| LoaderError::Map {
            name: JUMP_MAP,
            source: MapError::SyscallError(aya::sys::SyscallError {
                call: "bpf_map_update_elem",
                io_error: io::Error::from_raw_os_error(errno),
            }),
        };
        if let Some(fd) = filter {
            let key = JUMP_FILTER;
            let value: u32 = fd.as_raw_fd() as u32;
            // SAFETY: map_fd is our prog array's fd (4-byte keys and values), and
            // both pointers point to live u32s for the call's duration. By hand:
            // aya's ProgramArray takes only programs aya loaded itself.
            let rc = unsafe {
                libxdp_sys::bpf_map_update_elem(
                    map_fd,
                    (&raw const key).cast(),
                    (&raw const value).cast(),
                    0,
                )
            };
            if rc != 0 {
                return Err(jump_err(-rc));
            }
        }
        let config = self.config.with_capture(capture, filter.is_some(), snaplen);
        self.write_config(config)?;
        if filter.is_none() {
            let key = JUMP_FILTER;
            // SAFETY: as above; deleting a slot that is empty fails with ENOENT,
            // which is fine.
            unsafe { libxdp_sys::bpf_map_delete_elem(map_fd, (&raw const key).cast()) };
        }
        Ok(())
    }

    /// Stamp every frame redirected into a socket with its receive time, in
    /// the frame's XDP metadata (see [`xdp_ebpf::Config::stamp`]).
    pub fn set_stamps(&mut self, on: bool) -> Result<(), LoaderError> {
        self.write_config(self.config.with_stamps(on))
    }

    fn write_config(&mut self, config: Config) -> Result<(), LoaderError> {
        let map_err = |source| LoaderError::Map {
            name: CONFIG_MAP,
            source,
        };
        let mut map: Array<_, Config> =
            Array::try_from(self.map_mut(CONFIG_MAP)?).map_err(map_err)?;
        map.set(0, config, 0).map_err(map_err)?;
        self.config = config;
        Ok(())
    }

    /// The ring of the capture's copies, to read from; taken once (later calls
    /// fail).
    pub fn take_copies(&mut self) -> Result<CopyRing, LoaderError> {
        let map = self
            .ebpf
            .take_map(COPIES_MAP)
            .ok_or(missing_map(COPIES_MAP))?;
        RingBuf::try_from(map)
            .map(CopyRing)
            .map_err(|source| LoaderError::Map {
                name: COPIES_MAP,
                source,
            })
    }

    /// The capture's counters in the program, summed over CPUs, for RX queues
    /// `0..rx_queues` (the interface's queues).
    pub fn capture_counters(&self, rx_queues: u32) -> Result<CaptureCounters, LoaderError> {
        let map_err = |source| LoaderError::Map {
            name: CAPTURE_STATS_MAP,
            source,
        };
        let map = self
            .ebpf
            .map(CAPTURE_STATS_MAP)
            .ok_or(missing_map(CAPTURE_STATS_MAP))?;
        let stats: PerCpuArray<_, u64> = PerCpuArray::try_from(map).map_err(map_err)?;
        let mut queues = Vec::new();
        // One lookup per element and queue, summed over CPUs; a run reads this
        // once a second and at the end.
        for q in 0..rx_queues.min(MAX_QUEUES) {
            let mut out = [0u64; CAPTURE_COUNTER_COUNT as usize];
            for (i, slot) in out.iter_mut().enumerate() {
                let index = q * CAPTURE_COUNTER_COUNT + i as u32;
                *slot = stats.get(&index, 0).map_err(map_err)?.iter().sum();
            }
            if out.iter().any(|&v| v != 0) {
                queues.push((q, out));
            }
        }
        Ok(CaptureCounters { queues })
    }

    /// Set the steering policy: `mode`, and in `Udp` mode the destination ports.
    ///
    /// Ports are written before the mode so that a running program never steers a
    /// half-written set.
    pub fn configure(&mut self, mode: SteerMode, ports: &[u16]) -> Result<(), LoaderError> {
        let mut words = vec![0u64; PORT_BITMAP_WORDS as usize];
        for &p in ports {
            words[usize::from(p >> 6)] |= 1 << (p & 63);
        }
        let map_err = |name| move |source| LoaderError::Map { name, source };
        let mut bitmap: Array<_, u64> =
            Array::try_from(self.map_mut(PORTS_MAP)?).map_err(map_err(PORTS_MAP))?;
        for (i, w) in words.iter().enumerate() {
            bitmap.set(i as u32, *w, 0).map_err(map_err(PORTS_MAP))?;
        }
        self.write_config(Config {
            mode: mode as u32,
            ..self.config
        })
    }

    /// Attach to `iface` through a bpf_link. `Auto` tries driver mode and falls back
    /// to generic mode only when the driver has no native XDP.
    pub fn attach(
        &mut self,
        iface: &str,
        choice: XdpModeChoice,
    ) -> Result<AttachedMode, LoaderError> {
        let index = if_index(iface).ok_or_else(|| LoaderError::UnknownInterface(iface.into()))?;
        let modes: &[AttachedMode] = match choice {
            XdpModeChoice::Auto => &[AttachedMode::Drv, AttachedMode::Skb],
            XdpModeChoice::Drv => &[AttachedMode::Drv],
            XdpModeChoice::Skb => &[AttachedMode::Skb],
        };
        let mut last = None;
        for &mode in modes {
            match self.attach_mode(iface, index, mode) {
                Ok(()) => {
                    self.attached = Some((iface.to_string(), mode));
                    if mode == AttachedMode::Skb && choice == XdpModeChoice::Auto {
                        self.fell_back = last.take();
                    }
                    return Ok(mode);
                }
                Err(e @ (LoaderError::NoNativeXdp { .. } | LoaderError::NativeRefused { .. })) => {
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| LoaderError::NoNativeXdp {
            iface: iface.into(),
        }))
    }

    fn attach_mode(
        &mut self,
        iface: &str,
        index: u32,
        mode: AttachedMode,
    ) -> Result<(), LoaderError> {
        let xdp_mode = match mode {
            AttachedMode::Drv => XdpMode::Driver,
            AttachedMode::Skb => XdpMode::Skb,
        };
        let program = xdp_program_mut(&mut self.ebpf, self.names.steer)?;
        let id = program
            .attach_to_if_index(index, xdp_mode)
            .map_err(|source| match program_error_errno(&source) {
                Some(libc::EBUSY | libc::EEXIST) => LoaderError::ForeignProgram {
                    iface: iface.into(),
                },
                Some(libc::EOPNOTSUPP) if mode == AttachedMode::Drv => LoaderError::NoNativeXdp {
                    iface: iface.into(),
                },
                Some(errno @ (libc::ERANGE | libc::ENOSPC)) if mode == AttachedMode::Drv => {
                    LoaderError::NativeRefused {
                        iface: iface.into(),
                        errno,
                    }
                }
                Some(libc::EPERM | libc::EACCES) => LoaderError::AttachPrivileges {
                    iface: iface.into(),
                },
                _ => LoaderError::Attach {
                    iface: iface.into(),
                    mode,
                    source,
                },
            })?;
        let link = program
            .take_link(id)
            .map_err(|source| LoaderError::Attach {
                iface: iface.into(),
                mode,
                source,
            })?;
        // aya falls back to a netlink attach when bpf_link_create says EINVAL; such an
        // attachment outlives the process. Undo it and refuse.
        match FdLink::try_from(link) {
            Ok(fd_link) => {
                self.link = Some(fd_link);
                Ok(())
            }
            Err(_) => Err(LoaderError::NoBpfLink {
                iface: iface.into(),
            }),
        }
    }

    /// Why `--xdp-mode auto` attached in generic mode: native mode's error.
    pub fn fell_back(&self) -> Option<&LoaderError> {
        self.fell_back.as_ref()
    }

    /// The interface and mode we are attached in, if attached.
    pub fn attached(&self) -> Option<(&str, AttachedMode)> {
        self.attached.as_ref().map(|(i, m)| (i.as_str(), *m))
    }

    /// Detach now (dropping the program does the same).
    pub fn detach(&mut self) {
        self.link = None;
        self.attached = None;
    }

    /// Register the AF_XDP socket `fd` for RX queue `queue`.
    pub fn register_socket(&mut self, queue: u32, fd: impl AsRawFd) -> Result<(), LoaderError> {
        let map_err = |source| LoaderError::Map {
            name: XSKS_MAP,
            source,
        };
        let mut xsks = XskMap::try_from(self.map_mut(XSKS_MAP)?).map_err(map_err)?;
        xsks.set(queue, fd, 0).map_err(map_err)
    }

    /// Remove the socket of RX queue `queue`; its traffic then goes to the kernel.
    pub fn unregister_socket(&mut self, queue: u32) -> Result<(), LoaderError> {
        let map_err = |source| LoaderError::Map {
            name: XSKS_MAP,
            source,
        };
        let mut xsks = XskMap::try_from(self.map_mut(XSKS_MAP)?).map_err(map_err)?;
        xsks.unset(queue).map_err(map_err)
    }

    /// The program's counters, summed over CPUs.
    pub fn counters(&self) -> Result<XdpCounters, LoaderError> {
        let map_err = |source| LoaderError::Map {
            name: STATS_MAP,
            source,
        };
        let map = self.ebpf.map(STATS_MAP).ok_or(LoaderError::Map {
            name: STATS_MAP,
            source: MapError::InvalidName {
                name: STATS_MAP.into(),
            },
        })?;
        let stats: PerCpuArray<_, u64> = PerCpuArray::try_from(map).map_err(map_err)?;
        let mut out = [0u64; COUNTER_COUNT as usize];
        for (i, slot) in out.iter_mut().enumerate() {
            let per_cpu = stats.get(&(i as u32), 0).map_err(map_err)?;
            *slot = per_cpu.iter().sum();
        }
        Ok(XdpCounters(out))
    }

    /// Run the program `repeat` times over `frame` with BPF_PROG_TEST_RUN (the
    /// counters count every run) and return the kernel's mean time per run:
    /// what the program costs a frame, tail calls into the capture filter and
    /// the copy included.
    pub fn test_run_repeat(
        &mut self,
        frame: &[u8],
        repeat: u32,
    ) -> Result<std::time::Duration, LoaderError> {
        let program = self.program_mut()?;
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        opts.repeat = repeat.max(1);
        program
            .test_run(opts)
            .map(|r| r.duration)
            .map_err(|source| LoaderError::Program { source })
    }

    /// Run the program once over `frame` with BPF_PROG_TEST_RUN and return its XDP
    /// action. `rx` gives the ingress interface index and RX queue the frame appears
    /// to arrive on (queue 0 of no interface when `None`). The counters count the
    /// run like a real frame.
    pub fn test_run(&mut self, frame: &[u8], rx: Option<(u32, u32)>) -> Result<u32, LoaderError> {
        // struct xdp_md { data, data_end, data_meta, ingress_ifindex,
        // rx_queue_index, egress_ifindex }: the kernel wants data = data_meta = 0
        // and data_end = the input's length (net/bpf/test_run.c).
        let mut ctx = [0u8; 24];
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        ctx[4..8].copy_from_slice(&len.to_ne_bytes());
        if let Some((ifindex, queue)) = rx {
            ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
            ctx[16..20].copy_from_slice(&queue.to_ne_bytes());
        }
        let program = self.program_mut()?;
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        if rx.is_some() {
            opts.ctx_in = Some(&ctx);
        }
        program
            .test_run(opts)
            .map(|r| r.return_value)
            .map_err(|source| LoaderError::Program { source })
    }
}
