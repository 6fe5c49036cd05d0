//! Capture filters: pcap-filter(7) expressions, as tcpdump takes them
//! (`udp port 53 and not host 198.18.0.9`).
//!
//! libpcap itself compiles the expression (through the `pcap` crate), so an
//! expression selects here exactly the frames it selects in tcpdump, and its
//! errors are libpcap's. The result is a classic BPF program ([`CbpfInsn`]),
//! which [`ebpf::translate`] turns into an XDP program with the same decisions,
//! for the kernel to run before a frame reaches a socket. [`Filter::matches`]
//! runs the classic program in libpcap's own interpreter: the reference the
//! translation is tested against, and a filter for frames that never passed
//! through XDP.
//!
//! This layer makes no syscall: libpcap compiles in memory (it only resolves the
//! host and network names an expression contains). Loading the translated
//! program is [`crate::sys::bpf_prog`]'s.

use std::{
    fmt,
    sync::{Mutex, PoisonError},
};

mod cbpf;
pub mod ebpf;
#[allow(unsafe_code)]
mod image;
mod reach;

#[cfg(test)]
mod ebpf_tests;
#[cfg(test)]
mod tests;

/// tcpdump's snapshot length (`MAXIMUM_SNAPLEN`): libpcap's compiled programs
/// select a frame by returning it (`ret #262144`).
pub const SNAPLEN: u32 = 262_144;

/// The snapshot length of the `pcap` crate's dead handles (`Capture::dead`), the
/// only ones it opens without a device or a file.
const PCAP_CRATE_SNAPLEN: u32 = 65_535;

/// One classic BPF instruction: libpcap's and the kernel's `struct bpf_insn`
/// (`struct sock_filter`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CbpfInsn {
    /// Class, size, mode, operation and source, as `BPF_LD | BPF_H | BPF_ABS`.
    pub code: u16,
    /// Conditional jumps: instructions to skip when the condition holds.
    pub jt: u8,
    /// Conditional jumps: instructions to skip when it does not.
    pub jf: u8,
    /// The constant operand: offset, immediate, jump distance or return value.
    pub k: u32,
}

impl CbpfInsn {
    /// `BPF_RET | BPF_K`: return `k` (non-zero selects the frame).
    pub const fn ret(k: u32) -> Self {
        Self {
            code: 0x06,
            jt: 0,
            jf: 0,
            k,
        }
    }
}

/// The program of the empty expression, as libpcap compiles it.
const SELECT_ALL: [CbpfInsn; 1] = [CbpfInsn::ret(SNAPLEN)];

/// Errors from compiling a filter expression.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// libpcap refused the expression; `message` is libpcap's own (`syntax
    /// error`, `unknown host 'x'`), as tcpdump prints it.
    #[error("filter expression `{expression}`: {message} (the syntax is pcap-filter(7)'s)")]
    Compile {
        /// The expression as given.
        expression: String,
        /// libpcap's message.
        message: String,
    },
    /// libpcap failed for another reason (it could not allocate its handle).
    #[error("libpcap could not compile filter expression `{expression}`: {source}")]
    Libpcap {
        /// The expression as given.
        expression: String,
        /// The `pcap` crate's error.
        #[source]
        source: pcap::Error,
    },
}

impl FilterError {
    fn from_pcap(expression: &str, error: pcap::Error) -> Self {
        let expression = expression.to_owned();
        match error {
            pcap::Error::PcapError(message) => Self::Compile {
                expression,
                message,
            },
            pcap::Error::InvalidInputString => Self::Compile {
                expression,
                message: "the expression contains a NUL character".into(),
            },
            source => Self::Libpcap { expression, source },
        }
    }
}

/// A compiled pcap-filter expression. `Send` and `Sync`: [`Filter::matches`]
/// may be called from every queue's thread.
pub struct Filter {
    expression: String,
    insns: Vec<CbpfInsn>,
    /// libpcap's own copy of the program, for its interpreter; `None` for the
    /// empty expression, which selects every frame without running anything.
    /// In a mutex because `pcap::BpfProgram` is `Send` but not `Sync`
    /// (libpcap's interpreter only reads the program, but the crate does not
    /// promise it, and this path is the reference, not the fast one).
    program: Option<Mutex<pcap::BpfProgram>>,
}

impl Filter {
    /// Compile `expression` with libpcap for Ethernet frames, optimised, as
    /// tcpdump does. An empty (or all-blank) expression selects every frame.
    ///
    /// # Errors
    ///
    /// [`FilterError::Compile`] with libpcap's message when the expression is
    /// not valid pcap-filter(7) or names a host or network that does not resolve.
    pub fn new(expression: &str) -> Result<Self, FilterError> {
        if expression.trim().is_empty() {
            return Ok(Self {
                expression: expression.to_owned(),
                ..Self::all()
            });
        }
        let fail = |e| FilterError::from_pcap(expression, e);
        let capture = pcap::Capture::dead(pcap::Linktype::ETHERNET).map_err(fail)?;
        let program = capture.compile(expression, true).map_err(fail)?;
        let insns = program
            .get_instructions()
            .iter()
            .map(|insn| parse_insn(&insn.to_string()))
            .map(|insn| {
                let insn = insn.expect("pcap's BpfInstruction prints `code jt jf k`");
                tcpdump_snaplen(insn)
            })
            .collect();
        Ok(Self {
            expression: expression.to_owned(),
            insns,
            program: Some(Mutex::new(program)),
        })
    }

    /// The filter that selects every frame: the empty expression.
    pub fn all() -> Self {
        Self {
            expression: String::new(),
            insns: SELECT_ALL.to_vec(),
            program: None,
        }
    }

    /// Whether this filter selects every frame (its expression is empty), so
    /// that the caller can skip running it.
    pub fn is_all(&self) -> bool {
        self.program.is_none()
    }

    /// The expression as given.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The classic BPF program, instruction for instruction what tcpdump
    /// compiles (`tcpdump -dd`), selecting with `ret #262144`.
    pub fn instructions(&self) -> &[CbpfInsn] {
        &self.insns
    }

    /// Whether the filter selects `frame` (an Ethernet frame, no FCS), as
    /// libpcap's interpreter decides (`pcap_offline_filter`) with the whole
    /// frame captured.
    pub fn matches(&self, frame: &[u8]) -> bool {
        match &self.program {
            None => true,
            Some(program) => program
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .filter(frame),
        }
    }

    /// The program in libpcap's notation, one line per instruction: exactly
    /// what `tcpdump -d EXPRESSION` prints.
    pub fn dump(&self) -> String {
        image::dump(&self.insns)
    }
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Filter")
            .field("expression", &self.expression)
            .field("instructions", &self.insns.len())
            .finish()
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expression)
    }
}

/// One instruction from the `pcap` crate's `Display` of `BpfInstruction`,
/// `"code jt jf k"` in decimal: its fields are private, and printing them is the
/// one way it offers to read them without relying on its layout.
fn parse_insn(text: &str) -> Option<CbpfInsn> {
    let mut fields = text.split(' ');
    let insn = CbpfInsn {
        code: fields.next()?.parse().ok()?,
        jt: fields.next()?.parse().ok()?,
        jf: fields.next()?.parse().ok()?,
        k: fields.next()?.parse().ok()?,
    };
    fields.next().is_none().then_some(insn)
}

/// The instruction as tcpdump compiles it. The `pcap` crate's dead handle has a
/// snapshot length of 65535 and no way to set another; libpcap's code generator
/// uses the snapshot length for one thing only, the value of the accepting
/// `ret` (gencode.c `finish_parse`), and no expression can write a `ret` of its
/// own. So the program compiled at 65535 is tcpdump's with that value changed,
/// and changing it back gives tcpdump's program (the tests compare with
/// `tcpdump -d`). Either value selects: the decision is the same.
fn tcpdump_snaplen(insn: CbpfInsn) -> CbpfInsn {
    if insn == CbpfInsn::ret(PCAP_CRATE_SNAPLEN) {
        CbpfInsn::ret(SNAPLEN)
    } else {
        insn
    }
}
