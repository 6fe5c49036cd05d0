//! Classic BPF, read for translation: each instruction decoded and checked
//! ([`decode`]), then the program's control flow ([`Flow`]): which instructions
//! run at all, and which packet bounds checks each one must make.
//!
//! The instructions accepted are those libpcap's interpreter defines
//! (bpf_filter.c) and its validator accepts (`bpf_validate`), plus the one
//! liberty libpcap's own compiler takes: an unconditional jump backwards, which
//! `ip6 protochain` uses to walk the IPv6 extension headers.

use super::{CbpfInsn, ebpf::TranslateError};

/// The kernel's and libpcap's limit on a classic program (`BPF_MAXINSNS`).
pub(crate) const MAX_INSNS: usize = 4096;
/// Scratch memory words, `M[0]` to `M[15]` (`BPF_MEMWORDS`).
pub(crate) const MEMWORDS: u32 = 16;
/// The largest packet offset the verifier tracks (`MAX_PACKET_OFF`). An XDP
/// frame's linear data fits in a page (a 64 KiB page at most, less headroom), so
/// its length is below this: a load that needs more bytes always fails.
pub(crate) const MAX_PACKET_OFF: u32 = 0xffff;

// Classes, sizes, modes and operations: <linux/bpf_common.h>, <pcap/bpf.h>.
pub(crate) const LD: u16 = 0x00;
pub(crate) const LDX: u16 = 0x01;
pub(crate) const ST: u16 = 0x02;
pub(crate) const STX: u16 = 0x03;
pub(crate) const ALU: u16 = 0x04;
pub(crate) const JMP: u16 = 0x05;
pub(crate) const RET: u16 = 0x06;
pub(crate) const MISC: u16 = 0x07;
pub(crate) const W: u16 = 0x00;
pub(crate) const H: u16 = 0x08;
pub(crate) const B: u16 = 0x10;
pub(crate) const IMM: u16 = 0x00;
pub(crate) const ABS: u16 = 0x20;
pub(crate) const IND: u16 = 0x40;
pub(crate) const MEM: u16 = 0x60;
pub(crate) const LEN: u16 = 0x80;
pub(crate) const MSH: u16 = 0xa0;
pub(crate) const K: u16 = 0x00;
pub(crate) const X: u16 = 0x08;
pub(crate) const RET_A: u16 = 0x10;
pub(crate) const TAX: u16 = 0x00;
pub(crate) const TXA: u16 = 0x80;
pub(crate) const JA: u16 = 0x00;
pub(crate) const JEQ: u16 = 0x10;
pub(crate) const JGT: u16 = 0x20;
pub(crate) const JGE: u16 = 0x30;
pub(crate) const JSET: u16 = 0x40;
pub(crate) const NEG: u16 = 0x80;
/// The ALU operations with a K and an X form; the values are eBPF's too.
pub(crate) const ALU_OPS: [u16; 10] = [
    0x00, // ADD
    0x10, // SUB
    0x20, // MUL
    0x30, // DIV
    0x40, // OR
    0x50, // AND
    0x60, // LSH
    0x70, // RSH
    0x90, // MOD
    0xa0, // XOR
];
pub(crate) const DIV: u16 = 0x30;
pub(crate) const MOD: u16 = 0x90;
pub(crate) const LSH: u16 = 0x60;
pub(crate) const RSH: u16 = 0x70;

/// A packet load's width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Size {
    W,
    H,
    B,
}

impl Size {
    pub(crate) fn bytes(self) -> u32 {
        match self {
            Size::W => 4,
            Size::H => 2,
            Size::B => 1,
        }
    }
}

/// The second operand of an ALU operation or a comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Src {
    K(u32),
    X,
}

/// A conditional jump's test of A (unsigned, 32 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cond {
    Eq,
    Gt,
    Ge,
    Set,
}

/// One decoded instruction; jump targets are absolute instruction indexes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    RetK(u32),
    RetA,
    /// `A = P[k:size]`.
    LdAbs(Size, u32),
    /// `A = P[X + k:size]`.
    LdInd(Size, u32),
    /// `A = len`.
    LdLen,
    /// `X = len`.
    LdxLen,
    /// `X = 4 * (P[k] & 0xf)`.
    LdxMsh(u32),
    LdImm(u32),
    LdxImm(u32),
    /// `A = M[k]`.
    LdMem(u32),
    /// `X = M[k]`.
    LdxMem(u32),
    /// `M[k] = A`.
    St(u32),
    /// `M[k] = X`.
    Stx(u32),
    Ja(usize),
    Jmp {
        cond: Cond,
        src: Src,
        jt: usize,
        jf: usize,
    },
    /// `A = A op src`, `op` one of [`ALU_OPS`].
    Alu(u16, Src),
    Neg,
    Tax,
    Txa,
}

impl Op {
    /// The frame length a packet load at a constant offset needs, if it is one.
    pub(crate) fn abs_bound(self) -> Option<u32> {
        match self {
            Op::LdAbs(size, k) => Some(k.saturating_add(size.bytes())),
            Op::LdxMsh(k) => Some(k.saturating_add(1)),
            _ => None,
        }
    }

    /// Whether the instruction rejects every frame: a packet load no XDP frame
    /// is long enough for.
    pub(crate) fn always_fails(self) -> bool {
        match self {
            Op::LdInd(size, k) => k > MAX_PACKET_OFF - size.bytes(),
            op => op.abs_bound().is_some_and(|bound| bound > MAX_PACKET_OFF),
        }
    }
}

/// Decode and check every instruction, reachable or not, as `bpf_validate` does.
pub(crate) fn decode(prog: &[CbpfInsn]) -> Result<Vec<Op>, TranslateError> {
    if prog.is_empty() {
        return Err(TranslateError::Empty);
    }
    if prog.len() > MAX_INSNS {
        return Err(TranslateError::TooLong { len: prog.len() });
    }
    prog.iter()
        .enumerate()
        .map(|(pc, insn)| decode_one(pc, *insn, prog.len()))
        .collect()
}

fn decode_one(pc: usize, insn: CbpfInsn, len: usize) -> Result<Op, TranslateError> {
    let CbpfInsn { code, jt, jf, k } = insn;
    let unknown = Err(TranslateError::UnknownOpcode { pc, code });
    if code > 0xff {
        return unknown;
    }
    let scratch = |op: fn(u32) -> Op| {
        if k < MEMWORDS {
            Ok(op(k))
        } else {
            Err(TranslateError::BadScratch { pc, k })
        }
    };
    // Only loads have a size; in the other classes these bits are the
    // operation's.
    let size = match code & 0x18 {
        W => Some(Size::W),
        H => Some(Size::H),
        B => Some(Size::B),
        _ => None,
    };
    let (mode, op, src) = (code & 0xe0, code & 0xf0, code & X);
    let src = if src == X { Src::X } else { Src::K(k) };
    match code & 0x07 {
        LD => match (mode, size) {
            (ABS, Some(size)) => Ok(Op::LdAbs(size, k)),
            (IND, Some(size)) => Ok(Op::LdInd(size, k)),
            (LEN, Some(Size::W)) => Ok(Op::LdLen),
            (IMM, Some(Size::W)) => Ok(Op::LdImm(k)),
            (MEM, Some(Size::W)) => scratch(Op::LdMem),
            _ => unknown,
        },
        LDX => match (mode, size) {
            (LEN, Some(Size::W)) => Ok(Op::LdxLen),
            (IMM, Some(Size::W)) => Ok(Op::LdxImm(k)),
            (MEM, Some(Size::W)) => scratch(Op::LdxMem),
            (MSH, Some(Size::B)) => Ok(Op::LdxMsh(k)),
            _ => unknown,
        },
        ST if code == ST => scratch(Op::St),
        STX if code == STX => scratch(Op::Stx),
        JMP if code == JMP | JA => Ok(Op::Ja(ja_target(pc, k, len)?)),
        JMP => {
            let cond = match op {
                JEQ => Cond::Eq,
                JGT => Cond::Gt,
                JGE => Cond::Ge,
                JSET => Cond::Set,
                _ => return unknown,
            };
            let target = |skip: u8| {
                let to = pc + 1 + usize::from(skip);
                if to < len {
                    Ok(to)
                } else {
                    Err(TranslateError::JumpOutOfRange { pc, to: to as i64 })
                }
            };
            Ok(Op::Jmp {
                cond,
                src,
                jt: target(jt)?,
                jf: target(jf)?,
            })
        }
        RET if code == RET | K => Ok(Op::RetK(k)),
        RET if code == RET | RET_A => Ok(Op::RetA),
        ALU if code == ALU | NEG => Ok(Op::Neg),
        ALU if ALU_OPS.contains(&op) => match src {
            Src::K(0) if op == DIV || op == MOD => Err(TranslateError::DivisionByZero { pc }),
            Src::K(32..) if op == LSH || op == RSH => Err(TranslateError::BadShift { pc, k }),
            _ => Ok(Op::Alu(op, src)),
        },
        MISC if code == MISC | TAX => Ok(Op::Tax),
        MISC if code == MISC | TXA => Ok(Op::Txa),
        _ => unknown,
    }
}

/// The target of `ja k` at `pc`: `pc + 1 + k`, with `k` signed (libpcap's
/// interpreter sign-extends it, for `protochain`).
fn ja_target(pc: usize, k: u32, len: usize) -> Result<usize, TranslateError> {
    let to = pc as i64 + 1 + i64::from(k as i32);
    if to == pc as i64 {
        return Err(TranslateError::InfiniteLoop { pc });
    }
    usize::try_from(to)
        .ok()
        .filter(|to| *to < len)
        .ok_or(TranslateError::JumpOutOfRange { pc, to })
}

/// Lengths in the analysis: how many bytes of the frame are known to be there.
/// `NEVER` marks a point from which every path rejects the frame.
const NEVER: u32 = u32::MAX;

/// The control flow of a decoded program.
#[derive(Debug)]
pub(crate) struct Flow {
    /// Whether instruction `i` runs for some frame; the others are not emitted
    /// (the verifier refuses unreachable code).
    pub(crate) reachable: Vec<bool>,
    /// For a packet load at a constant offset: the frame length to check for
    /// before it, 0 when every path to it has checked enough already.
    pub(crate) guard: Vec<u32>,
    /// Whether some reachable jump goes backwards (the translation then keeps a
    /// budget of backward jumps).
    pub(crate) loops: bool,
}

impl Flow {
    /// Reachability, the "every path ends in `ret`" check, then the bounds
    /// checks to make.
    pub(crate) fn of(ops: &[Op]) -> Result<Self, TranslateError> {
        let reachable = reachability(ops)?;
        let loops = ops
            .iter()
            .enumerate()
            .any(|(pc, op)| reachable[pc] && matches!(op, Op::Ja(to) if *to < pc));
        let guard = guards(ops, &reachable);
        Ok(Self {
            reachable,
            guard,
            loops,
        })
    }
}

/// Where control goes after `ops[pc]`; `len` for falling off the end.
pub(crate) fn successors(ops: &[Op], pc: usize) -> Vec<usize> {
    match ops[pc] {
        Op::RetK(_) | Op::RetA => Vec::new(),
        op if op.always_fails() => Vec::new(),
        Op::Ja(to) => vec![to],
        Op::Jmp { jt, jf, .. } => vec![jt, jf],
        _ => vec![pc + 1],
    }
}

fn reachability(ops: &[Op]) -> Result<Vec<bool>, TranslateError> {
    let mut reachable = vec![false; ops.len()];
    let mut work = vec![0];
    reachable[0] = true;
    while let Some(pc) = work.pop() {
        for next in successors(ops, pc) {
            if next == ops.len() {
                return Err(TranslateError::FallsOffEnd { pc });
            }
            if !reachable[next] {
                reachable[next] = true;
                work.push(next);
            }
        }
    }
    Ok(reachable)
}

/// The bounds checks for the loads at constant offsets, after cbpfc's "packet
/// guards": one check of the frame length covers every later load up to that
/// length, and a check may ask for more than its own load needs when every path
/// from it needs that much before it can select the frame (a shorter frame is
/// rejected on all of them anyway, so checking early changes no decision).
fn guards(ops: &[Op], reachable: &[bool]) -> Vec<u32> {
    let n = ops.len();
    // need[i]: the frame length every path from i to a selecting `ret` loads at
    // constant offsets (NEVER when no path selects). Computed backwards; a
    // backward jump contributes nothing (0), which only checks less early.
    let mut need = vec![0u32; n];
    for pc in (0..n).rev().filter(|pc| reachable[*pc]) {
        let op = ops[pc];
        need[pc] = match op {
            Op::RetK(0) => NEVER,
            Op::RetK(_) | Op::RetA => 0,
            _ if op.always_fails() => NEVER,
            Op::Ja(to) if to > pc => need[to],
            Op::Ja(_) => 0,
            Op::Jmp { jt, jf, .. } => need[jt].min(need[jf]),
            _ => {
                let after = need[pc + 1];
                op.abs_bound().map_or(after, |bound| bound.max(after))
            }
        };
    }
    // have[i]: the frame length checked on every path into i. Forwards; the
    // targets of backward jumps start from nothing.
    let mut have = vec![NEVER; n];
    have[0] = 0;
    for (pc, op) in ops.iter().enumerate() {
        if let Op::Ja(to) = *op
            && reachable[pc]
            && to < pc
        {
            have[to] = 0;
        }
    }
    let mut guard = vec![0u32; n];
    for pc in (0..n).filter(|pc| reachable[*pc]) {
        let op = ops[pc];
        let mut out = have[pc];
        if let Some(bound) = op.abs_bound().filter(|_| !op.always_fails())
            && bound > out
        {
            guard[pc] = if need[pc] <= MAX_PACKET_OFF {
                need[pc]
            } else {
                bound
            };
            out = guard[pc];
        }
        for next in successors(ops, pc).into_iter().filter(|next| *next > pc) {
            have[next] = have[next].min(out);
        }
    }
    guard
}
