//! libpcap's printer of BPF instructions, `bpf_image(3PCAP)`: what `tcpdump -d`
//! prints. Declared here because the `pcap` crate links libpcap but does not
//! expose it; writing our own printer would drift from tcpdump's notation.

use std::{
    ffi::{CStr, c_char, c_int},
    sync::Mutex,
};

use super::CbpfInsn;

unsafe extern "C" {
    /// `char *bpf_image(const struct bpf_insn *p, int n)`: instruction `*p`,
    /// numbered `n`, as one line without a newline, in a static buffer.
    fn bpf_image(insn: *const CbpfInsn, n: c_int) -> *const c_char;
}

/// `bpf_image` formats into one static buffer for the whole process: one caller
/// at a time, each copying the line out before letting the next in.
static IMAGE: Mutex<()> = Mutex::new(());

/// The program as `tcpdump -d` prints it (libpcap's `bpf_dump(program, 1)`):
/// `bpf_image` of each instruction on a line of its own.
pub(super) fn dump(insns: &[CbpfInsn]) -> String {
    let _one_at_a_time = IMAGE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut out = String::new();
    for (n, insn) in insns.iter().enumerate() {
        // Programs hold at most 4096 instructions (libpcap's own limit is far
        // below `c_int::MAX`), so `n` fits.
        let n = c_int::try_from(n).unwrap_or(c_int::MAX);
        // SAFETY: `CbpfInsn` is `#[repr(C)]` with the fields of libpcap's
        // `struct bpf_insn` (u16, u8, u8, u32) in its order, so the pointer is
        // to one valid `struct bpf_insn`; bpf_image only reads it (and, for
        // jumps, only computes with `n`, never reads another instruction).
        let line = unsafe { bpf_image(insn, n) };
        if line.is_null() {
            continue;
        }
        // SAFETY: bpf_image returns its static buffer, NUL-terminated, valid
        // until the next call, which `IMAGE` holds off until we are done.
        let line = unsafe { CStr::from_ptr(line) };
        out.push_str(&line.to_string_lossy());
        out.push('\n');
    }
    out
}
