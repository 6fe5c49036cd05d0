//! Raw eBPF XDP programs: loading one from its instructions (the translated
//! capture filters of [`crate::filter::ebpf`]) and running it on a frame with
//! BPF_PROG_TEST_RUN, through the libbpf that `libxdp-sys` bundles.

use std::{
    ffi::{CString, c_char},
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
    ptr,
    time::Duration,
};

use libxdp_sys::{
    BPF_F_XDP_HAS_FRAGS, bpf_attach_type_BPF_XDP, bpf_insn, bpf_prog_load, bpf_prog_load_opts,
    bpf_prog_test_run_opts, bpf_prog_type_BPF_PROG_TYPE_XDP, bpf_test_run_opts,
};

use crate::filter::ebpf::{EbpfInsn, XDP_PASS};

/// The license the programs declare: the kernel's GPL-only helpers need a
/// GPL-compatible one, and the translation is ours to license.
const LICENSE: &str = "Dual MIT/GPL";
/// The verifier's log kept for a refusal: its end says why.
const LOG_SIZE: usize = 1 << 20;
/// Lines of the verifier's log an error carries.
const LOG_LINES: usize = 20;
/// A program's name: at most 15 characters (`BPF_OBJ_NAME_LEN`), letters,
/// digits, `_` and `.`.
const NAME_MAX: usize = 15;

// `EbpfInsn` stands for libbpf's `struct bpf_insn` in every call below.
const _: () = assert!(size_of::<EbpfInsn>() == size_of::<bpf_insn>());
const _: () = assert!(align_of::<EbpfInsn>() == align_of::<bpf_insn>());

/// Errors from loading an eBPF program.
#[derive(Debug, thiserror::Error)]
pub enum BpfLoadError {
    /// The name is not one the kernel takes.
    #[error(
        "eBPF program name `{0}`: use at most 15 letters, digits, `_` or `.` (BPF_OBJ_NAME_LEN)"
    )]
    Name(String),
    /// The kernel refused the `bpf()` syscall for lack of privileges.
    #[error(
        "loading eBPF program {name} needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (run as root): {source}"
    )]
    Permission {
        /// The program's name.
        name: String,
        /// EPERM or EACCES without a verifier log.
        #[source]
        source: io::Error,
    },
    /// The verifier refused the program; `log` is the end of its log.
    #[error("the kernel's verifier refused eBPF program {name}: {source}\n{log}")]
    Refused {
        /// The program's name.
        name: String,
        /// The error `bpf(BPF_PROG_LOAD)` returned.
        #[source]
        source: io::Error,
        /// The last lines of the verifier's log.
        log: String,
    },
}

/// Load `insns` as an XDP program named `name` (for `bpftool prog`), for
/// attaching to an interface or, in tests, for [`test_run_xdp`]; not
/// frags-aware (see [`load_xdp_with`]).
///
/// # Errors
///
/// [`BpfLoadError::Refused`] with the verifier's last lines when it refuses the
/// program, [`BpfLoadError::Permission`] without the capabilities.
pub fn load_xdp(name: &str, insns: &[EbpfInsn]) -> Result<OwnedFd, BpfLoadError> {
    load_xdp_with(name, insns, false)
}

/// [`load_xdp`], and frags-aware (`BPF_F_XDP_HAS_FRAGS`, what libbpf does for
/// a program in section `xdp.frags`) when `frags`: it then runs on multi-buffer
/// frames. A program that shares a prog array with others, or tail-calls
/// through one, must agree with them on `frags`: the kernel refuses it
/// otherwise. For a capture filter, [`XdpProgram::load_filter_program`] says
/// which.
///
/// [`XdpProgram::load_filter_program`]: super::loader::XdpProgram::load_filter_program
///
/// # Errors
///
/// As [`load_xdp`].
pub fn load_xdp_with(name: &str, insns: &[EbpfInsn], frags: bool) -> Result<OwnedFd, BpfLoadError> {
    let valid_name = !name.is_empty()
        && name.len() <= NAME_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
    let c_name = CString::new(name)
        .ok()
        .filter(|_| valid_name)
        .ok_or_else(|| BpfLoadError::Name(name.to_owned()))?;
    let license = CString::new(LICENSE).expect("no NUL in the license");
    let mut log = vec![0u8; LOG_SIZE];
    // SAFETY: an all-zero bpf_prog_load_opts is libbpf's "no option" value
    // (LIBBPF_OPTS zeroes the struct the same way before setting `sz`).
    let mut opts: bpf_prog_load_opts = unsafe { std::mem::zeroed() };
    opts.sz = size_of::<bpf_prog_load_opts>();
    // The XDP attach type, as aya loads the stack's own program, so the two
    // agree in a program array.
    opts.expected_attach_type = bpf_attach_type_BPF_XDP;
    if frags {
        opts.prog_flags = BPF_F_XDP_HAS_FRAGS;
    }
    // Level 0 with a buffer: libbpf loads without a log and, only if the
    // verifier refuses, loads again with level 1 into the buffer.
    opts.log_level = 0;
    opts.log_size = LOG_SIZE as u32;
    opts.log_buf = log.as_mut_ptr().cast::<c_char>();
    // SAFETY: the strings are NUL-terminated and outlive the call; `insns`
    // points to `insns.len()` instructions laid out as `struct bpf_insn` (same
    // size and alignment, asserted above, and the same fields: u8 code, the
    // two register nibbles in one byte, s16 off, s32 imm); `opts` is valid and
    // `sz` says its size; `log_buf` has `log_size` writable bytes for the call.
    let fd = unsafe {
        bpf_prog_load(
            bpf_prog_type_BPF_PROG_TYPE_XDP,
            c_name.as_ptr(),
            license.as_ptr(),
            insns.as_ptr().cast::<bpf_insn>(),
            insns.len(),
            &mut opts,
        )
    };
    if fd >= 0 {
        // SAFETY: libbpf returned a new file descriptor that nothing else owns.
        return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    let source = io::Error::from_raw_os_error(-fd);
    let log = log_tail(&log);
    let name = name.to_owned();
    if log.is_empty() && matches!(-fd, libc::EPERM | libc::EACCES) {
        Err(BpfLoadError::Permission { name, source })
    } else {
        Err(BpfLoadError::Refused { name, source, log })
    }
}

/// The last lines of a NUL-terminated verifier log.
fn log_tail(log: &[u8]) -> String {
    let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
    let text = String::from_utf8_lossy(&log[..end]);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_LINES)..].join("\n")
}

/// Run XDP program `fd` once on `frame` (BPF_PROG_TEST_RUN) and return its
/// action (XDP_DROP 1, XDP_PASS 2, ...).
///
/// # Errors
///
/// EINVAL from the kernel for a frame shorter than an Ethernet header (14
/// bytes) or longer than a page less the XDP headroom.
pub fn test_run_xdp(fd: BorrowedFd<'_>, frame: &[u8]) -> io::Result<u32> {
    test_run(fd, frame, 1).map(|(retval, _)| retval)
}

/// Run XDP program `fd` `repeat` times on `frame` and return the time of one
/// run, as the kernel measures it (the mean, in whole nanoseconds).
///
/// # Errors
///
/// As [`test_run_xdp`].
pub fn test_run_xdp_repeat(fd: BorrowedFd<'_>, frame: &[u8], repeat: u32) -> io::Result<Duration> {
    test_run(fd, frame, repeat).map(|(_, ns)| Duration::from_nanos(ns.into()))
}

fn test_run(fd: BorrowedFd<'_>, frame: &[u8], repeat: u32) -> io::Result<(u32, u32)> {
    let too_long = || io::Error::new(io::ErrorKind::InvalidInput, "frame longer than 4 GiB");
    // SAFETY: an all-zero bpf_test_run_opts is libbpf's "no option" value.
    let mut opts: bpf_test_run_opts = unsafe { std::mem::zeroed() };
    opts.sz = size_of::<bpf_test_run_opts>();
    opts.data_in = frame.as_ptr().cast();
    opts.data_size_in = u32::try_from(frame.len()).map_err(|_| too_long())?;
    opts.data_out = ptr::null_mut();
    opts.repeat = i32::try_from(repeat).unwrap_or(i32::MAX);
    // SAFETY: `opts` is valid with `sz` set; `data_in` points to
    // `data_size_in` readable bytes for the call, which the kernel only
    // copies; no output buffer is given; `fd` is an open descriptor.
    let ret = unsafe { bpf_prog_test_run_opts(fd.as_raw_fd(), &mut opts) };
    if ret < 0 {
        return Err(io::Error::from_raw_os_error(-ret));
    }
    Ok((opts.retval, opts.duration))
}

/// What a filter program costs per frame, JITed, beside a program that only
/// returns XDP_PASS: both run the same way, so the difference is the filter's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilterCost {
    /// One run of the filter program.
    pub filter: Duration,
    /// One run of `return XDP_PASS`.
    pub baseline: Duration,
}

impl FilterCost {
    /// The filter's own cost, in nanoseconds (negative within the noise).
    pub fn extra_ns(&self) -> i64 {
        self.filter.as_nanos() as i64 - self.baseline.as_nanos() as i64
    }
}

/// Errors from measuring a filter.
#[derive(Debug, thiserror::Error)]
pub enum FilterCostError {
    /// A program did not load.
    #[error(transparent)]
    Load(#[from] BpfLoadError),
    /// BPF_PROG_TEST_RUN failed.
    #[error("BPF_PROG_TEST_RUN: {0}")]
    Run(#[from] io::Error),
}

/// Load `insns` and a `return XDP_PASS` program, run each `repeat` times on
/// `frame`, and return the kernel's time per run of both. A measurement for
/// benchmarks: the numbers move with the machine and its load.
///
/// # Errors
///
/// [`FilterCostError`] when a program does not load or does not run.
pub fn filter_cost_ns(
    insns: &[EbpfInsn],
    frame: &[u8],
    repeat: u32,
) -> Result<FilterCost, FilterCostError> {
    let pass = [
        EbpfInsn::new(0xb4, 0, 0, 0, XDP_PASS), // w0 = XDP_PASS
        EbpfInsn::new(0x95, 0, 0, 0, 0),        // exit
    ];
    let filter = load_xdp("xdpstack_cost", insns)?;
    let baseline = load_xdp("xdpstack_pass", &pass)?;
    // Warm both up (JIT, caches) before measuring.
    test_run_xdp_repeat(filter.as_fd(), frame, repeat / 10 + 1)?;
    test_run_xdp_repeat(baseline.as_fd(), frame, repeat / 10 + 1)?;
    Ok(FilterCost {
        filter: test_run_xdp_repeat(filter.as_fd(), frame, repeat)?,
        baseline: test_run_xdp_repeat(baseline.as_fd(), frame, repeat)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_kernel_would_refuse_are_refused_before_the_syscall() {
        let exit = [EbpfInsn::new(0x95, 0, 0, 0, 0)];
        for bad in ["", "sixteen_chars_xx", "with space", "dash-ed", "nul\0"] {
            let err = load_xdp(bad, &exit).unwrap_err();
            assert!(
                matches!(&err, BpfLoadError::Name(n) if n == bad),
                "{bad:?}: {err}"
            );
            assert!(err.to_string().contains("at most 15 letters"), "{err}");
        }
    }

    #[test]
    fn the_log_tail_keeps_the_last_lines() {
        let mut log = (0..30)
            .map(|n| format!("line {n}\n"))
            .collect::<String>()
            .into_bytes();
        log.extend_from_slice(&[0, b'x', b'y']);
        let tail = log_tail(&log);
        assert_eq!(tail.lines().count(), LOG_LINES);
        assert!(
            tail.starts_with("line 10\n") && tail.ends_with("line 29"),
            "{tail}"
        );
    }
}
