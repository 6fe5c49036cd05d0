//! Classic BPF to an eBPF XDP program with the same decisions.
//!
//! The program must decide every frame as libpcap's interpreter does
//! (`bpf_filter()`, bpf_filter.c) over the XDP frame `[data, data_end)`: A and X
//! are 32 bits, a load past the end of the frame or a division by X = 0 ends the
//! filter with 0 (not selected), a return of non-zero selects. The translation
//! follows the kernel's own (`bpf_convert_filter`, net/core/filter.c) for the
//! register mapping and Cloudflare's cbpfc for direct packet access:
//!
//! | classic | eBPF |
//! |---|---|
//! | A | `w0` (ALU32 and JMP32 only, so the upper half stays 0) |
//! | X | `w7` |
//! | `M[0..16]` | the 64 bytes below `r10`, zeroed where used |
//! | `P[k]` | `*(r8 + k)`, `r8` = `data`, `r9` = `data_end` |
//! | `len` | `bpf_xdp_get_buff_len(ctx)`, once, kept below `M[]` |
//!
//! Bounds checks are the verifier's kind (`if r8 + n > r9 goto reject`): one
//! check covers every later load below its length, and a check asks for as much
//! as every path from it needs before it can select (see `cbpf::guards`), so
//! `udp port 53` makes 3 checks for 7 loads at constant offsets. Loads at
//! `X + k` bound X first (`if X > 0xffff - k - size goto reject`: no XDP frame
//! is that long) so the verifier can track the pointer.
//!
//! The kernel also accepts ALU32/JMP32 only from 5.1 on, and the backward jumps
//! of `ip6 protochain` only from 5.3 (bounded loops) and with `CAP_BPF`, and
//! `bpf_xdp_get_buff_len` from 5.18. Root has them all. `len` is the whole
//! packet's, also for a multi-buffer frame (`xdp.frags`), whose first buffer
//! is all that `[data, data_end)` covers: loads stay in the first buffer, so a
//! load past it does not select, where libpcap over the whole packet could.

use super::{
    CbpfInsn,
    cbpf::{self, Cond, Flow, MAX_PACKET_OFF, Op, Size, Src},
};

/// One eBPF instruction: the kernel's `struct bpf_insn`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct EbpfInsn {
    /// Class, size or operation, source.
    pub code: u8,
    /// Destination register in the low nibble, source register in the high one.
    pub regs: u8,
    /// Jump distance in instructions, or memory offset.
    pub off: i16,
    /// Immediate operand.
    pub imm: i32,
}

impl EbpfInsn {
    /// An instruction from its fields; registers are 0 to 10.
    pub const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Self {
            code,
            regs: (src << 4) | (dst & 0x0f),
            off,
            imm,
        }
    }

    /// The destination register.
    pub const fn dst(self) -> u8 {
        self.regs & 0x0f
    }

    /// The source register.
    pub const fn src(self) -> u8 {
        self.regs >> 4
    }
}

/// What the program does once the filter has decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then {
    /// Return XDP_PASS (2) when the filter selects the frame, XDP_DROP (1) when
    /// not: for tests and BPF_PROG_TEST_RUN.
    Return,
    /// `bpf_tail_call(ctx, prog_array, selected)` when selected,
    /// `bpf_tail_call(ctx, prog_array, unselected)` when not; if the tail call
    /// fails (empty slot) return XDP_PASS (2), so the frame always reaches the
    /// kernel.
    TailCall {
        /// The `BPF_MAP_TYPE_PROG_ARRAY` to call into, open in this process.
        prog_array_fd: i32,
        /// Its slot for selected frames.
        selected: u32,
        /// Its slot for the others.
        unselected: u32,
    },
}

/// `XDP_DROP`, `XDP_PASS`.
pub const XDP_DROP: i32 = 1;
/// See [`XDP_DROP`].
pub const XDP_PASS: i32 = 2;

/// Why a classic program cannot be translated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// A program needs at least one instruction.
    #[error("the classic BPF program is empty")]
    Empty,
    /// More instructions than `BPF_MAXINSNS`.
    #[error("the classic BPF program has {len} instructions, more than the limit of 4096")]
    TooLong {
        /// Its length.
        len: usize,
    },
    /// An opcode libpcap's interpreter does not define.
    #[error("instruction {pc}: unknown classic BPF opcode {code:#06x}")]
    UnknownOpcode {
        /// Where.
        pc: usize,
        /// The opcode.
        code: u16,
    },
    /// `M[k]` with k of 16 or more.
    #[error("instruction {pc}: scratch memory M[{k}] does not exist (M[0] to M[15] do)")]
    BadScratch {
        /// Where.
        pc: usize,
        /// The index.
        k: u32,
    },
    /// Division or modulo by the constant 0.
    #[error("instruction {pc}: division by the constant 0")]
    DivisionByZero {
        /// Where.
        pc: usize,
    },
    /// Shift by a constant of 32 or more.
    #[error("instruction {pc}: shift by {k}, more than 31 bits")]
    BadShift {
        /// Where.
        pc: usize,
        /// The shift.
        k: u32,
    },
    /// A jump outside the program.
    #[error("instruction {pc}: jump to {to}, outside the program")]
    JumpOutOfRange {
        /// Where.
        pc: usize,
        /// The target, possibly negative.
        to: i64,
    },
    /// `ja -1`: a jump to itself.
    #[error("instruction {pc}: jump to itself, an endless loop")]
    InfiniteLoop {
        /// Where.
        pc: usize,
    },
    /// A path runs past the last instruction without `ret`.
    #[error("instruction {pc}: a path runs off the end of the program without `ret`")]
    FallsOffEnd {
        /// The last instruction on that path.
        pc: usize,
    },
    /// The eBPF program grew past the reach of a jump (32767 instructions).
    /// A check: the longest translations known (4095 loads at X + k, 7 eBPF
    /// instructions each) stay within reach.
    #[error("the eBPF translation is too long for its jumps ({len} instructions)")]
    TooFar {
        /// The eBPF program's length.
        len: usize,
    },
}

// eBPF encoding, <linux/bpf.h>.
const ALU32: u8 = 0x04;
const JMP64: u8 = 0x05;
const JMP32: u8 = 0x06;
const ALU64: u8 = 0x07;
const LDX_MEM: u8 = 0x61; // BPF_LDX | BPF_MEM, plus the size
const STX_MEM_W: u8 = 0x63;
const ST_MEM_DW: u8 = 0x7a;
const LD_IMM64: u8 = 0x18;
const SRC_X: u8 = 0x08;
const OP_ADD: u8 = 0x00;
const OP_LSH: u8 = 0x60;
const OP_MOV: u8 = 0xb0;
const OP_NEG: u8 = 0x80;
const OP_END_TO_BE: u8 = 0xd0 | SRC_X;
const OP_CALL: u8 = 0x80;
const OP_EXIT: u8 = 0x90;
const OP_JA: u8 = 0x00;
const OP_JEQ: u8 = 0x10;
const OP_JGT: u8 = 0x20;
const OP_JGE: u8 = 0x30;
const OP_JSET: u8 = 0x40;
const OP_JNE: u8 = 0x50;
const OP_JLT: u8 = 0xa0;
const OP_JLE: u8 = 0xb0;
const OP_AND: u8 = 0x50;
const SIZE_W: u8 = 0x00;
const SIZE_H: u8 = 0x08;
const SIZE_B: u8 = 0x10;
const PSEUDO_MAP_FD: u8 = 1;
const FUNC_TAIL_CALL: i32 = 12;
/// `bpf_xdp_get_buff_len(ctx)`: the packet's length, all buffers.
const FUNC_XDP_GET_BUFF_LEN: i32 = 188;

// Registers.
const A: u8 = 0;
const CTX: u8 = 1;
const T1: u8 = 2;
const T2: u8 = 3;
/// The backward jumps left (`ip6 protochain`).
const BUDGET: u8 = 4;
const SAVED_CTX: u8 = 6;
const X: u8 = 7;
const DATA: u8 = 8;
const DATA_END: u8 = 9;
const FP: u8 = 10;

/// Offset of `M[0]` from the frame pointer.
const SCRATCH: i16 = -64;
/// Where the packet's length is kept, below `M[]`.
const LEN_SLOT: i16 = SCRATCH - 8;
/// Backward jumps allowed per frame, as libpcap's interpreter allows
/// (`MAX_BACKWARD_JUMPS`): `protochain` makes one per extension header.
const MAX_BACKWARD_JUMPS: i32 = 64;

/// Where a jump goes, resolved once every position is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    /// The first eBPF instruction of classic instruction `n`.
    Insn(usize),
    /// The filter selected the frame (tail-call mode).
    Selected,
    /// The filter did not select it, or a load or division failed.
    NotSelected,
}

/// Translate classic program `prog` (libpcap's, for Ethernet frames) into an
/// XDP program that decides as libpcap's interpreter does, then does `then`.
///
/// # Errors
///
/// [`TranslateError`] for a program libpcap's validator would refuse (unknown
/// opcode, jump outside the program, a path without `ret`, more than 4096
/// instructions) or one too long for eBPF jumps.
pub fn translate(prog: &[CbpfInsn], then: Then) -> Result<Vec<EbpfInsn>, TranslateError> {
    let ops = cbpf::decode(prog)?;
    let flow = Flow::of(&ops)?;
    let mut asm = Asm::new(ops.len());
    asm.prologue(&ops, &flow, then);
    let reachable: Vec<usize> = (0..ops.len()).filter(|pc| flow.reachable[*pc]).collect();
    for (n, &pc) in reachable.iter().enumerate() {
        asm.start[pc] = asm.out.len();
        // Where control falls through to: the unreachable instructions in
        // between emit nothing.
        let next = reachable.get(n + 1).copied().unwrap_or(ops.len());
        asm.op(pc, next, ops[pc], flow.guard[pc], then);
    }
    asm.epilogue(then);
    asm.resolve()
}

/// The program being emitted, with the jumps still to point.
struct Asm {
    out: Vec<EbpfInsn>,
    /// Jumps to resolve: (index in `out`, target).
    jumps: Vec<(usize, Target)>,
    /// Where each classic instruction starts in `out`.
    start: Vec<usize>,
    selected: Option<usize>,
    not_selected: Option<usize>,
}

impl Asm {
    fn new(len: usize) -> Self {
        Self {
            out: Vec::new(),
            jumps: Vec::new(),
            start: vec![usize::MAX; len],
            selected: None,
            not_selected: None,
        }
    }

    fn emit(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.out.push(EbpfInsn::new(code, dst, src, off, imm));
    }

    /// A jump (`code` with JA or a condition) to `to`, resolved later.
    fn jump(&mut self, code: u8, dst: u8, src: u8, imm: i32, to: Target) {
        self.jumps.push((self.out.len(), to));
        self.emit(code, dst, src, 0, imm);
    }

    fn ja(&mut self, to: Target) {
        self.jump(JMP64 | OP_JA, 0, 0, 0, to);
    }

    fn mov32_imm(&mut self, dst: u8, imm: u32) {
        self.emit(ALU32 | OP_MOV, dst, 0, 0, imm as i32);
    }

    fn exit_with(&mut self, action: i32) {
        self.mov32_imm(A, action as u32);
        self.emit(JMP64 | OP_EXIT, 0, 0, 0, 0);
    }

    /// The registers the program reads before it writes them, and the scratch
    /// words it uses, zeroed: the verifier refuses reads of anything else.
    fn prologue(&mut self, ops: &[Op], flow: &Flow, then: Then) {
        let uses_len = ops
            .iter()
            .zip(&flow.reachable)
            .any(|(op, r)| *r && matches!(op, Op::LdLen | Op::LdxLen));
        if matches!(then, Then::TailCall { .. }) || uses_len {
            self.emit(ALU64 | OP_MOV | SRC_X, SAVED_CTX, CTX, 0, 0);
        }
        if uses_len {
            // First: the call clobbers r1-r5, and packet pointers are loaded
            // after it.
            self.emit(JMP64 | OP_CALL, 0, 0, 0, FUNC_XDP_GET_BUFF_LEN);
            self.emit(STX_MEM_W, FP, A, LEN_SLOT, 0);
            self.emit(ALU64 | OP_MOV | SRC_X, CTX, SAVED_CTX, 0, 0);
        }
        let touches_packet = ops.iter().zip(&flow.reachable).any(|(op, r)| {
            *r && matches!(
                op,
                Op::LdAbs(..) | Op::LdInd(..) | Op::LdxMsh(_) | Op::LdLen | Op::LdxLen
            )
        });
        if touches_packet {
            // struct xdp_md { __u32 data; __u32 data_end; ... }: 32-bit loads the
            // verifier rewrites into the packet pointers.
            self.emit(LDX_MEM | SIZE_W, DATA, CTX, 0, 0);
            self.emit(LDX_MEM | SIZE_W, DATA_END, CTX, 4, 0);
        }
        // A and X start at 0 (bpf_filter.c), so does scratch memory here.
        self.mov32_imm(A, 0);
        self.mov32_imm(X, 0);
        let mut pairs = [false; (cbpf::MEMWORDS / 2) as usize];
        for (op, r) in ops.iter().zip(&flow.reachable) {
            if let (true, Op::LdMem(k) | Op::LdxMem(k) | Op::St(k) | Op::Stx(k)) = (*r, op) {
                pairs[*k as usize / 2] = true;
            }
        }
        for (pair, _) in pairs.iter().enumerate().filter(|(_, used)| **used) {
            self.emit(ST_MEM_DW, FP, 0, scratch(pair as u32 * 2), 0);
        }
        if flow.loops {
            self.mov32_imm(BUDGET, MAX_BACKWARD_JUMPS as u32);
        }
    }

    fn op(&mut self, pc: usize, next: usize, op: Op, guard: u32, then: Then) {
        match op {
            Op::RetK(k) => self.ret(k != 0, then),
            Op::RetA => {
                self.jump(JMP32 | OP_JEQ, A, 0, 0, Target::NotSelected);
                self.ret(true, then);
            }
            _ if op.always_fails() => self.ja(Target::NotSelected),
            Op::LdAbs(size, k) => self.load_abs(A, size, k, guard),
            Op::LdxMsh(k) => {
                self.load_abs(X, Size::B, k, guard);
                self.emit(ALU32 | OP_AND, X, 0, 0, 0xf);
                self.emit(ALU32 | OP_LSH, X, 0, 0, 2);
            }
            Op::LdInd(size, k) => self.load_ind(size, k),
            Op::LdLen => self.emit(LDX_MEM | SIZE_W, A, FP, LEN_SLOT, 0),
            Op::LdxLen => self.emit(LDX_MEM | SIZE_W, X, FP, LEN_SLOT, 0),
            Op::LdImm(k) => self.mov32_imm(A, k),
            Op::LdxImm(k) => self.mov32_imm(X, k),
            Op::LdMem(k) => self.emit(LDX_MEM | SIZE_W, A, FP, scratch(k), 0),
            Op::LdxMem(k) => self.emit(LDX_MEM | SIZE_W, X, FP, scratch(k), 0),
            Op::St(k) => self.emit(STX_MEM_W, FP, A, scratch(k), 0),
            Op::Stx(k) => self.emit(STX_MEM_W, FP, X, scratch(k), 0),
            Op::Ja(to) if to == next => {}
            Op::Ja(to) if to > pc => self.ja(Target::Insn(to)),
            Op::Ja(to) => {
                self.jump(JMP32 | OP_JEQ, BUDGET, 0, 0, Target::NotSelected);
                self.emit(ALU32 | OP_ADD, BUDGET, 0, 0, -1);
                self.ja(Target::Insn(to));
            }
            Op::Jmp { cond, src, jt, jf } => self.branch(next, cond, src, jt, jf),
            Op::Alu(alu, src) => self.alu(alu as u8, src),
            Op::Neg => self.emit(ALU32 | OP_NEG, A, 0, 0, 0),
            Op::Tax => self.emit(ALU32 | OP_MOV | SRC_X, X, A, 0, 0),
            Op::Txa => self.emit(ALU32 | OP_MOV | SRC_X, A, X, 0, 0),
        }
    }

    /// The filter's decision: return it, or jump to the tail call for it.
    fn ret(&mut self, selected: bool, then: Then) {
        match (then, selected) {
            (Then::Return, true) => self.exit_with(XDP_PASS),
            (Then::Return, false) => self.exit_with(XDP_DROP),
            (Then::TailCall { .. }, true) => self.ja(Target::Selected),
            (Then::TailCall { .. }, false) => self.ja(Target::NotSelected),
        }
    }

    /// `dst = P[k:size]`, after checking for `guard` bytes when it is not 0.
    fn load_abs(&mut self, dst: u8, size: Size, k: u32, guard: u32) {
        if guard != 0 {
            self.emit(ALU64 | OP_MOV | SRC_X, T1, DATA, 0, 0);
            self.emit(ALU64 | OP_ADD, T1, 0, 0, guard as i32);
            self.jump(JMP64 | OP_JGT | SRC_X, T1, DATA_END, 0, Target::NotSelected);
        }
        match i16::try_from(k) {
            Ok(off) => self.emit(LDX_MEM | size_bits(size), dst, DATA, off, 0),
            Err(_) => {
                // Past the reach of an instruction's offset (32 KiB): through a
                // pointer, which shares `data`'s checked range.
                self.emit(ALU64 | OP_MOV | SRC_X, T1, DATA, 0, 0);
                self.emit(ALU64 | OP_ADD, T1, 0, 0, k as i32);
                self.emit(LDX_MEM | size_bits(size), dst, T1, 0, 0);
            }
        }
        self.byte_swap(dst, size);
    }

    /// `A = P[X + k:size]`. X is bounded first, so that X + k + size fits the
    /// verifier's packet offsets (and cannot wrap, as libpcap's overflow-safe
    /// check requires); the pointer `data + X` then carries `k + size` as its
    /// constant part, the one the verifier's range check counts.
    fn load_ind(&mut self, size: Size, k: u32) {
        let bytes = size.bytes();
        // k + size <= MAX_PACKET_OFF: larger ones always fail, decided earlier.
        let reach = k + bytes;
        let limit = (MAX_PACKET_OFF - reach) as i32;
        self.jump(JMP64 | OP_JGT, X, 0, limit, Target::NotSelected);
        self.emit(ALU64 | OP_MOV | SRC_X, T2, DATA, 0, 0);
        self.emit(ALU64 | OP_ADD | SRC_X, T2, X, 0, 0);
        self.emit(ALU64 | OP_ADD, T2, 0, 0, reach as i32);
        self.jump(JMP64 | OP_JGT | SRC_X, T2, DATA_END, 0, Target::NotSelected);
        self.emit(LDX_MEM | size_bits(size), A, T2, -(bytes as i16), 0);
        self.byte_swap(A, size);
    }

    /// Packet bytes are big-endian (libpcap's EXTRACT_BE_U_2/4).
    fn byte_swap(&mut self, dst: u8, size: Size) {
        match size {
            Size::B => {}
            Size::H => self.emit(ALU32 | OP_END_TO_BE, dst, 0, 0, 16),
            Size::W => self.emit(ALU32 | OP_END_TO_BE, dst, 0, 0, 32),
        }
    }

    /// `if (A cond src) goto jt else goto jf`, falling through where a target
    /// is the next instruction.
    fn branch(&mut self, next: usize, cond: Cond, src: Src, jt: usize, jf: usize) {
        let (op, negated) = match cond {
            Cond::Eq => (OP_JEQ, Some(OP_JNE)),
            Cond::Gt => (OP_JGT, Some(OP_JLE)),
            Cond::Ge => (OP_JGE, Some(OP_JLT)),
            Cond::Set => (OP_JSET, None),
        };
        let (code_src, src_reg, imm) = match src {
            Src::K(k) => (0, 0, k as i32),
            Src::X => (SRC_X, X, 0),
        };
        let test = |asm: &mut Self, op: u8, to: Target| {
            asm.jump(JMP32 | op | code_src, A, src_reg, imm, to);
        };
        match (jt == next, jf == next, negated) {
            _ if jt == jf => {
                if jt != next {
                    self.ja(Target::Insn(jt));
                }
            }
            (false, true, _) => test(self, op, Target::Insn(jt)),
            (true, false, Some(negated)) => test(self, negated, Target::Insn(jf)),
            (true, false, None) => {
                // No "jump if no bit is set": skip the jump to jf when one is.
                self.emit(JMP32 | op | code_src, A, src_reg, 1, imm);
                self.ja(Target::Insn(jf));
            }
            _ => {
                test(self, op, Target::Insn(jt));
                self.ja(Target::Insn(jf));
            }
        }
    }

    /// `A = A op src`. The eBPF ALU32 operations are classic BPF's with the
    /// same codes, unsigned; libpcap's interpreter differs on two cases,
    /// handled here: division by X = 0 rejects, and a shift by X of 32 or more
    /// gives 0 (eBPF would shift by X & 31).
    fn alu(&mut self, op: u8, src: Src) {
        let op16 = u16::from(op);
        match src {
            Src::K(k) => self.emit(ALU32 | op, A, 0, 0, k as i32),
            Src::X if op16 == cbpf::DIV || op16 == cbpf::MOD => {
                self.jump(JMP32 | OP_JEQ, X, 0, 0, Target::NotSelected);
                self.emit(ALU32 | op | SRC_X, A, X, 0, 0);
            }
            Src::X if op16 == cbpf::LSH || op16 == cbpf::RSH => {
                // if X > 31 { A = 0 } else { A = A op X }
                self.emit(JMP32 | OP_JGT, X, 0, 2, 31);
                self.emit(ALU32 | op | SRC_X, A, X, 0, 0);
                self.emit(JMP64 | OP_JA, 0, 0, 1, 0);
                self.mov32_imm(A, 0);
            }
            Src::X => self.emit(ALU32 | op | SRC_X, A, X, 0, 0),
        }
    }

    /// The decisions' code, only where some jump goes (the verifier refuses
    /// unreachable instructions).
    fn epilogue(&mut self, then: Then) {
        let wanted = |asm: &Self, label: Target| asm.jumps.iter().any(|(_, to)| *to == label);
        match then {
            Then::Return => {
                if wanted(self, Target::NotSelected) {
                    self.not_selected = Some(self.out.len());
                    self.exit_with(XDP_DROP);
                }
            }
            Then::TailCall {
                prog_array_fd,
                selected,
                unselected,
            } => {
                let (sel, unsel) = (
                    wanted(self, Target::Selected),
                    wanted(self, Target::NotSelected),
                );
                if sel {
                    self.selected = Some(self.out.len());
                    self.mov32_imm(T2, selected);
                    if unsel {
                        // Over the other slot's line, to the call.
                        self.emit(JMP64 | OP_JA, 0, 0, 1, 0);
                    }
                }
                if unsel {
                    self.not_selected = Some(self.out.len());
                    self.mov32_imm(T2, unselected);
                }
                // bpf_tail_call(ctx, &prog_array, index) returns only when the
                // slot is empty: then the kernel gets the frame.
                self.emit(ALU64 | OP_MOV | SRC_X, CTX, SAVED_CTX, 0, 0);
                self.emit(LD_IMM64, T1, PSEUDO_MAP_FD, 0, prog_array_fd);
                self.emit(0, 0, 0, 0, 0);
                self.emit(JMP64 | OP_CALL, 0, 0, 0, FUNC_TAIL_CALL);
                self.exit_with(XDP_PASS);
            }
        }
    }

    /// Point every jump at its target.
    fn resolve(mut self) -> Result<Vec<EbpfInsn>, TranslateError> {
        let len = self.out.len();
        for (at, to) in std::mem::take(&mut self.jumps) {
            let target = match to {
                Target::Insn(pc) => self.start[pc],
                Target::Selected => self.selected.expect("emitted when wanted"),
                Target::NotSelected => self.not_selected.expect("emitted when wanted"),
            };
            let off = target as i64 - (at as i64 + 1);
            self.out[at].off = i16::try_from(off).map_err(|_| TranslateError::TooFar { len })?;
        }
        Ok(self.out)
    }
}

fn size_bits(size: Size) -> u8 {
    match size {
        Size::W => SIZE_W,
        Size::H => SIZE_H,
        Size::B => SIZE_B,
    }
}

/// The stack offset of `M[k]`.
fn scratch(k: u32) -> i16 {
    SCRATCH + 4 * k as i16
}
