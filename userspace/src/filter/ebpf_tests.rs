//! The translator on the host: the shape of what it emits, its refusals, and
//! its decisions, run by a small eBPF interpreter that checks every memory
//! access against the frame and the stack (a translation that reads out of
//! bounds fails here before the verifier sees it), against libpcap's.

use super::{
    CbpfInsn, Filter,
    cbpf::{self, ABS, ALU, B, H, IND, JMP, LD, LDX, LEN, MEM, MISC, MSH, RET, ST, STX, W},
    ebpf::{EbpfInsn, Then, TranslateError, XDP_DROP, XDP_PASS, translate},
};

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> CbpfInsn {
    CbpfInsn { code, jt, jf, k }
}

fn stmt(code: u16, k: u32) -> CbpfInsn {
    insn(code, 0, 0, k)
}

const RET_A: u16 = RET | cbpf::RET_A;
const TAIL: Then = Then::TailCall {
    prog_array_fd: 7,
    selected: 10,
    unselected: 11,
};

/// What the interpreter saw a program do.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Exit(u64),
    TailCall { map: i32, index: u32 },
}

/// Where the interpreter's pointers point: regions far apart, so that a stray
/// pointer never lands in another one.
const PACKET: u64 = 0x1000_0000;
const STACK_TOP: u64 = 0x2000_0000;
const CTX: u64 = 0x3000_0000;

/// Run `prog` on `frame` as the kernel would after the verifier's context
/// rewrite (`xdp_md.data` and `data_end` load as packet pointers); panics on an
/// access outside the frame, the stack's 512 bytes or the context, on a read of
/// stack never written, and on anything the translator does not emit.
fn run(prog: &[EbpfInsn], frame: &[u8]) -> Outcome {
    let mut reg = [0u64; 11];
    reg[1] = CTX;
    reg[10] = STACK_TOP;
    let mut stack = [None::<u8>; 512];
    let mut pc = 0usize;
    let mut steps = 0;
    loop {
        steps += 1;
        assert!(steps < 1_000_000, "endless loop");
        let i = prog[pc];
        let (dst, src) = (i.dst() as usize, i.src() as usize);
        let imm = i.imm as i64 as u64;
        pc += 1;
        let class = i.code & 0x07;
        match class {
            0x04 | 0x07 => {
                let wide = class == 0x07;
                let operand = if i.code & 0x08 != 0 { reg[src] } else { imm };
                let (a, b) = if wide {
                    (reg[dst], operand)
                } else {
                    (reg[dst] & 0xffff_ffff, operand & 0xffff_ffff)
                };
                let v = match i.code & 0xf0 {
                    0x00 => a.wrapping_add(b),
                    0x10 => a.wrapping_sub(b),
                    0x20 => a.wrapping_mul(b),
                    0x30 => a.checked_div(b).unwrap_or(0),
                    0x40 => a | b,
                    0x50 => a & b,
                    0x60 => a << (b & 31),
                    0x70 => a >> (b & 31),
                    0x80 => a.wrapping_neg(),
                    0x90 => a.checked_rem(b).unwrap_or(a),
                    0xa0 => a ^ b,
                    0xb0 => b,
                    0xd0 if !wide && i.code & 0x08 != 0 => match i.imm {
                        16 => u64::from((a as u16).swap_bytes()),
                        32 => u64::from((a as u32).swap_bytes()),
                        other => panic!("bswap {other}"),
                    },
                    op => panic!("ALU op {op:#x} at {}", pc - 1),
                };
                reg[dst] = if wide { v } else { v & 0xffff_ffff };
            }
            0x05 | 0x06 => {
                let wide = class == 0x05;
                match i.code & 0xf0 {
                    0x00 => {
                        pc = (pc as i64 + i64::from(i.off)) as usize;
                        continue;
                    }
                    0x80 if i.imm == 188 => {
                        // bpf_xdp_get_buff_len(ctx): the frame's length; the
                        // call clobbers r1-r5, which a later read would show.
                        assert_eq!(reg[1], CTX, "buff_len with the context");
                        reg[0] = frame.len() as u64;
                        for r in &mut reg[1..=5] {
                            *r = 0xdead_beef_dead_beef;
                        }
                    }
                    0x80 => {
                        assert_eq!(i.imm, 12, "only bpf_tail_call and bpf_xdp_get_buff_len");
                        assert_eq!(reg[1], CTX, "tail call with the context");
                        return Outcome::TailCall {
                            map: reg[2] as i32,
                            index: reg[3] as u32,
                        };
                    }
                    0x90 => return Outcome::Exit(reg[0]),
                    op => {
                        let operand = if i.code & 0x08 != 0 { reg[src] } else { imm };
                        let (a, b) = if wide {
                            (reg[dst], operand)
                        } else {
                            (reg[dst] & 0xffff_ffff, operand & 0xffff_ffff)
                        };
                        let taken = match op {
                            0x10 => a == b,
                            0x20 => a > b,
                            0x30 => a >= b,
                            0x40 => a & b != 0,
                            0x50 => a != b,
                            0xa0 => a < b,
                            0xb0 => a <= b,
                            _ => panic!("jump op {op:#x}"),
                        };
                        if taken {
                            pc = (pc as i64 + i64::from(i.off)) as usize;
                        }
                    }
                }
            }
            0x01 => {
                let size = match i.code & 0x18 {
                    0x00 => 4,
                    0x08 => 2,
                    0x10 => 1,
                    _ => 8,
                };
                let addr = reg[src].wrapping_add(i.off as i64 as u64);
                let bytes: Vec<u8> = if (CTX..CTX + 24).contains(&addr) {
                    assert_eq!(size, 4);
                    reg[dst] = match addr - CTX {
                        0 => PACKET,
                        4 => PACKET + frame.len() as u64,
                        other => panic!("xdp_md field at {other}"),
                    };
                    continue;
                } else if (PACKET..PACKET + frame.len() as u64).contains(&addr) {
                    let at = (addr - PACKET) as usize;
                    frame
                        .get(at..at + size)
                        .unwrap_or_else(|| panic!("packet read past the end at {at}"))
                        .to_vec()
                } else {
                    let at = (addr.checked_sub(STACK_TOP - 512))
                        .filter(|at| at + size as u64 <= 512)
                        .unwrap_or_else(|| panic!("read at {addr:#x}"))
                        as usize;
                    stack[at..at + size]
                        .iter()
                        .map(|b| b.expect("read of uninitialised stack"))
                        .collect()
                };
                let mut le = [0u8; 8];
                le[..size].copy_from_slice(&bytes);
                reg[dst] = u64::from_le_bytes(le);
            }
            0x02 | 0x03 => {
                let size = match i.code & 0x18 {
                    0x00 => 4,
                    0x18 => 8,
                    other => panic!("store size {other:#x}"),
                };
                let value = if class == 0x02 { imm } else { reg[src] };
                let addr = reg[dst].wrapping_add(i.off as i64 as u64);
                let at = (addr.checked_sub(STACK_TOP - 512))
                    .filter(|at| at + size as u64 <= 512)
                    .unwrap_or_else(|| panic!("store at {addr:#x}"))
                    as usize;
                for (n, b) in value.to_le_bytes()[..size].iter().enumerate() {
                    stack[at + n] = Some(*b);
                }
            }
            0x00 => {
                assert_eq!(i.code, 0x18, "only LD_IMM64");
                assert_eq!(i.src(), 1, "a map fd");
                reg[dst] = i.imm as u32 as u64;
                pc += 1;
            }
            _ => panic!("class {class}"),
        }
    }
}

/// The translation's decision on `frame` in `Then::Return` mode.
fn selects(prog: &[EbpfInsn], frame: &[u8]) -> bool {
    match run(prog, frame) {
        Outcome::Exit(2) => true,
        Outcome::Exit(1) => false,
        other => panic!("{other:?}"),
    }
}

fn frames() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = xdp_ebpf::corpus::cases()
        .into_iter()
        .map(|c| c.frame)
        .collect();
    // Every prefix of a few frames, for the bounds checks.
    let udp = xdp_ebpf::corpus::udp_frame(xdp_ebpf::corpus::IpVersion::V4, &[], 40000, 53, b"x");
    let udp6 = xdp_ebpf::corpus::udp_frame(xdp_ebpf::corpus::IpVersion::V6, &[0x8100], 1, 53, b"");
    for f in [udp, udp6] {
        out.extend((0..f.len()).map(|n| f[..n].to_vec()));
    }
    out
}

#[test]
fn translations_decide_as_libpcap_on_the_corpus_and_its_prefixes() {
    let frames = frames();
    for expression in [
        "udp port 53",
        "udp port 53 and not host 198.18.0.9",
        "ip6 protochain 17",
        "vlan 100 and udp",
        "tcp[tcpflags] & tcp-syn != 0",
        "ip[0] & 0xf > 5 or len < 50",
        "ip[2:2] / ip[8] > 1 or ip[2:2] % (ip[9] - 17) = 1",
        "ip[8] << (ip[19] & 0x3f) > 200 or ip[8] >> ip[15] = 1",
        "-ip[8] & 0xff = 0xc0 and (ip[8] * 3) ^ 0x55 = 0x95",
        "ether multicast or ip6 net fd00::/8",
        "udp[8:4] = 0x68656c6c or ip[6:2] & 0x1fff != 0",
    ] {
        let filter = Filter::new(expression).unwrap();
        let prog = translate(filter.instructions(), Then::Return).unwrap();
        let mut selected = 0;
        for frame in &frames {
            let want = filter.matches(frame);
            assert_eq!(
                selects(&prog, frame),
                want,
                "`{expression}` on {frame:02x?}"
            );
            selected += usize::from(want);
        }
        assert!(
            selected > 0 && selected < frames.len(),
            "`{expression}`: {selected}"
        );
    }
}

/// One instruction of each kind the pcap language cannot reach, with libpcap's
/// answer written down from bpf_filter.c.
#[test]
fn instructions_outside_the_pcap_language_decide_as_libpcap_would() {
    let frame: Vec<u8> = (0..64).collect();
    let cases: &[(&str, Vec<CbpfInsn>, bool)] = &[
        (
            "A = len, ret A",
            vec![stmt(LD | W | LEN, 0), stmt(RET_A, 0)],
            true,
        ),
        (
            "X = len, A = X - 64, ret A",
            vec![
                stmt(LDX | W | LEN, 0),
                stmt(MISC | cbpf::TXA, 0),
                stmt(ALU | 0x10, 64),
                stmt(RET_A, 0),
            ],
            false,
        ),
        ("M[5] is 0", vec![stmt(LD | MEM, 5), stmt(RET_A, 0)], false),
        (
            "M[3] = X = 9; A = M[3]",
            vec![
                stmt(LDX, 9),
                stmt(STX, 3),
                stmt(LD | MEM, 3),
                stmt(RET_A, 0),
            ],
            true,
        ),
        (
            "A / X with X = 0 rejects",
            vec![
                stmt(LD, 5),
                stmt(ALU | cbpf::DIV | cbpf::X, 0),
                stmt(RET | cbpf::K, 1),
            ],
            false,
        ),
        (
            "A % X with X = 0 rejects",
            vec![
                stmt(LD, 5),
                stmt(ALU | cbpf::MOD | cbpf::X, 0),
                stmt(RET | cbpf::K, 1),
            ],
            false,
        ),
        (
            "A << X with X = 32 is 0",
            vec![
                stmt(LD, 5),
                stmt(LDX, 32),
                stmt(ALU | cbpf::LSH | cbpf::X, 0),
                stmt(RET_A, 0),
            ],
            false,
        ),
        (
            "A >> X with X = 1",
            vec![
                stmt(LD, 5),
                stmt(LDX, 1),
                stmt(ALU | cbpf::RSH | cbpf::X, 0),
                stmt(RET_A, 0),
            ],
            true,
        ),
        (
            "ldw [62] past the end rejects",
            vec![stmt(LD | W | ABS, 62), stmt(RET | cbpf::K, 1)],
            false,
        ),
        (
            "ldw [60] is the last word",
            vec![stmt(LD | W | ABS, 60), stmt(RET_A, 0)],
            true,
        ),
        (
            "ldb [x + 63] with X = 1 rejects",
            vec![stmt(LDX, 1), stmt(LD | B | IND, 63), stmt(RET | cbpf::K, 1)],
            false,
        ),
        (
            "ldh [x + k] with X + k past 2^32 rejects",
            vec![
                stmt(LDX, u32::MAX),
                stmt(LD | H | IND, 2),
                stmt(RET | cbpf::K, 1),
            ],
            false,
        ),
        (
            "ldxb 4*([0]&0xf) = 0, ldb [x + 0] = 0",
            vec![
                stmt(LDX | B | MSH, 0),
                stmt(LD | B | IND, 0),
                stmt(RET_A, 0),
            ],
            false,
        ),
        (
            "ldb [70000] always fails",
            vec![stmt(LD | B | ABS, 70_000), stmt(RET | cbpf::K, 1)],
            false,
        ),
        (
            "jset with jt 0: bit 1 of 1 is clear, to jf",
            vec![
                stmt(LD, 1),
                insn(JMP | cbpf::JSET, 0, 1, 2),
                stmt(RET | cbpf::K, 1),
                stmt(RET | cbpf::K, 0),
            ],
            false,
        ),
        (
            "jgt x: 5 > 4",
            vec![
                stmt(LD, 5),
                stmt(LDX, 4),
                insn(JMP | cbpf::JGT | cbpf::X, 1, 0, 0),
                stmt(RET | cbpf::K, 0),
                stmt(RET | cbpf::K, 1),
            ],
            true,
        ),
        (
            "neg: -1 = 0xffffffff >= k",
            vec![
                stmt(LD, 1),
                stmt(ALU | cbpf::NEG, 0),
                insn(JMP | cbpf::JGE, 0, 1, u32::MAX),
                stmt(RET | cbpf::K, 1),
                stmt(RET | cbpf::K, 0),
            ],
            true,
        ),
        (
            "a backward jump runs out after 64 rounds",
            vec![
                stmt(LD | B | ABS, 0),
                stmt(JMP | cbpf::JA, u32::MAX - 1),
                stmt(RET | cbpf::K, 1),
            ],
            false,
        ),
    ];
    for (what, prog, want) in cases {
        let ebpf = translate(prog, Then::Return).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(selects(&ebpf, &frame), *want, "{what}: {ebpf:?}");
    }
}

#[test]
fn a_backward_jump_loops_with_a_budget() {
    // X = 0; loop: X += 1 (via A); if X == 10 ret 1; ja loop
    let prog = [
        stmt(MISC | cbpf::TXA, 0),
        stmt(ALU, 1),
        stmt(MISC | cbpf::TAX, 0),
        insn(JMP | cbpf::JEQ, 1, 0, 10),
        stmt(JMP | cbpf::JA, (-5i32) as u32),
        stmt(RET | cbpf::K, 1),
    ];
    let ebpf = translate(&prog, Then::Return).unwrap();
    assert!(selects(&ebpf, &[0; 14]), "10 rounds fit the budget of 64");
    let mut far = prog;
    far[3].k = 70;
    let ebpf = translate(&far, Then::Return).unwrap();
    assert!(!selects(&ebpf, &[0; 14]), "70 rounds do not");
}

#[test]
fn select_all_is_four_instructions_and_touches_no_packet() {
    let ebpf = translate(Filter::all().instructions(), Then::Return).unwrap();
    assert_eq!(
        ebpf,
        [
            EbpfInsn::new(0xb4, 0, 0, 0, 0),        // w0 = 0 (A)
            EbpfInsn::new(0xb4, 7, 0, 0, 0),        // w7 = 0 (X)
            EbpfInsn::new(0xb4, 0, 0, 0, XDP_PASS), // w0 = 2
            EbpfInsn::new(0x95, 0, 0, 0, 0),        // exit
        ]
    );
    let none = translate(&[CbpfInsn::ret(0)], Then::Return).unwrap();
    assert_eq!(none[2], EbpfInsn::new(0xb4, 0, 0, 0, XDP_DROP));
    assert_eq!(none.len(), 4);
}

#[test]
fn the_prologue_loads_the_frame_pointers_and_zeroes_the_scratch_words_used() {
    let prog = [
        stmt(LD | H | ABS, 12),
        stmt(ST, 0),
        stmt(ST, 15),
        stmt(RET_A, 0),
    ];
    let ebpf = translate(&prog, TAIL).unwrap();
    assert_eq!(
        ebpf[..7],
        [
            EbpfInsn::new(0xbf, 6, 1, 0, 0),    // r6 = r1: ctx for the tail call
            EbpfInsn::new(0x61, 8, 1, 0, 0),    // r8 = ctx->data
            EbpfInsn::new(0x61, 9, 1, 4, 0),    // r9 = ctx->data_end
            EbpfInsn::new(0xb4, 0, 0, 0, 0),    // A = 0
            EbpfInsn::new(0xb4, 7, 0, 0, 0),    // X = 0
            EbpfInsn::new(0x7a, 10, 0, -64, 0), // M[0], M[1] = 0
            EbpfInsn::new(0x7a, 10, 0, -8, 0),  // M[14], M[15] = 0
        ]
    );
    // Return mode keeps no context.
    let ebpf = translate(&prog, Then::Return).unwrap();
    assert_eq!(ebpf[0], EbpfInsn::new(0x61, 8, 1, 0, 0));
}

#[test]
fn the_tail_call_epilogue_calls_the_decisions_slot_or_passes() {
    let filter = Filter::new("udp").unwrap();
    let ebpf = translate(filter.instructions(), TAIL).unwrap();
    let n = ebpf.len();
    assert_eq!(
        ebpf[n - 9..],
        [
            EbpfInsn::new(0xb4, 3, 0, 0, 10), // selected: w3 = 10
            EbpfInsn::new(0x05, 0, 0, 1, 0),  // over the other slot
            EbpfInsn::new(0xb4, 3, 0, 0, 11), // not selected: w3 = 11
            EbpfInsn::new(0xbf, 1, 6, 0, 0),  // r1 = ctx
            EbpfInsn::new(0x18, 2, 1, 0, 7),  // r2 = prog array (map fd)
            EbpfInsn::new(0, 0, 0, 0, 0),
            EbpfInsn::new(0x85, 0, 0, 0, 12),       // bpf_tail_call
            EbpfInsn::new(0xb4, 0, 0, 0, XDP_PASS), // empty slot
            EbpfInsn::new(0x95, 0, 0, 0, 0),
        ]
    );
    let tcp: &[u8] = &xdp_ebpf::corpus::cases()
        .into_iter()
        .find(|c| c.name.contains("tcp"))
        .unwrap()
        .frame;
    let udp = xdp_ebpf::corpus::udp_frame(xdp_ebpf::corpus::IpVersion::V6, &[], 1, 2, b"");
    assert_eq!(run(&ebpf, &udp), Outcome::TailCall { map: 7, index: 10 });
    assert_eq!(run(&ebpf, tcp), Outcome::TailCall { map: 7, index: 11 });
    // Only the slot a decision reaches is emitted.
    let all = translate(Filter::all().instructions(), TAIL).unwrap();
    assert!(!all.contains(&EbpfInsn::new(0xb4, 3, 0, 0, 11)));
    assert_eq!(run(&all, &udp), Outcome::TailCall { map: 7, index: 10 });
}

#[test]
fn every_instruction_class_is_emitted() {
    let filter =
        Filter::new("ip[2:2] / ip[8] > 1 and tcp[tcpflags] & tcp-syn != 0 and len > 60").unwrap();
    let codes = |ebpf: &[EbpfInsn]| ebpf.iter().map(|i| i.code).collect::<Vec<_>>();
    let ebpf = translate(filter.instructions(), Then::Return).unwrap();
    let have = codes(&ebpf);
    for (code, what) in [
        (0x61, "LDX W (ctx, scratch)"),
        (0x69, "LDX H (packet)"),
        (0x71, "LDX B (packet)"),
        (0xdc, "BPF_END to big-endian"),
        (0x3c, "ALU32 DIV X"),
        (0x16, "JMP32 JEQ K (X = 0)"),
        (0x2d, "JMP JGT X (bounds)"),
        (0x25, "JMP JGT K (offset bound)"),
        (0x85, "CALL (bpf_xdp_get_buff_len, for len)"),
        (0x95, "EXIT"),
    ] {
        assert!(
            have.contains(&code),
            "{what} ({code:#x}) missing in {have:02x?}"
        );
    }
    let scratch = [
        stmt(LD, 1),
        stmt(ST, 2),
        stmt(LDX | MEM, 2),
        stmt(ALU | 0x20 | cbpf::X, 0),
        stmt(RET_A, 0),
    ];
    let have = codes(&translate(&scratch, Then::Return).unwrap());
    for code in [0x7a, 0x63, 0x61, 0x2c] {
        assert!(have.contains(&code), "{code:#x} missing in {have:02x?}");
    }
}

#[test]
fn udp_port_53_checks_the_frame_length_three_times_for_nine_loads() {
    let filter = Filter::new("udp port 53").unwrap();
    let ebpf = translate(filter.instructions(), Then::Return).unwrap();
    let checks = |reg: u8| {
        ebpf.iter()
            .filter(|i| i.code == 0x2d && i.dst() == reg && i.src() == 9)
            .count()
    };
    // [12..24) once for IPv4 and the start of IPv6, then [54..56), [56..58)
    // for IPv6's ports, and the two loads at X + k.
    assert_eq!((checks(2), checks(3)), (3, 2), "{ebpf:?}");
}

#[test]
fn unreachable_instructions_are_not_emitted() {
    let prog = [
        stmt(JMP | cbpf::JA, 1),
        stmt(LD, 0x5555),
        stmt(RET | cbpf::K, 1),
    ];
    let ebpf = translate(&prog, Then::Return).unwrap();
    assert!(!ebpf.iter().any(|i| i.imm == 0x5555), "{ebpf:?}");
    assert_eq!(ebpf.len(), 4);
}

#[test]
fn jumps_land_on_their_targets() {
    // Each jump of the translation of a branchy filter lands inside the
    // program on the first instruction of some classic instruction or label,
    // never inside an LD_IMM64 pair.
    let filter = Filter::new("(udp port 53 or tcp port 80) and not host 198.18.0.9").unwrap();
    for then in [Then::Return, TAIL] {
        let ebpf = translate(filter.instructions(), then).unwrap();
        for (at, i) in ebpf.iter().enumerate() {
            let is_jump =
                matches!(i.code & 0x07, 0x05 | 0x06) && !matches!(i.code & 0xf0, 0x80 | 0x90);
            if is_jump {
                let to = at as i64 + 1 + i64::from(i.off);
                assert!(
                    to > at as i64 && (to as usize) < ebpf.len(),
                    "jump at {at} to {to}"
                );
                assert_ne!(ebpf[to as usize - 1].code, 0x18, "into an LD_IMM64");
            }
        }
    }
}

#[test]
fn bad_programs_are_refused() {
    let ret1 = CbpfInsn::ret(1);
    let cases: Vec<(Vec<CbpfInsn>, TranslateError)> = vec![
        (vec![], TranslateError::Empty),
        (vec![ret1; 4097], TranslateError::TooLong { len: 4097 }),
        (
            vec![stmt(RET | cbpf::X, 0)],
            TranslateError::UnknownOpcode { pc: 0, code: 0x0e },
        ),
        (
            vec![stmt(LD | 0x18 | ABS, 0), ret1],
            TranslateError::UnknownOpcode { pc: 0, code: 0x38 },
        ),
        (
            vec![stmt(LDX | H | ABS, 0), ret1],
            TranslateError::UnknownOpcode { pc: 0, code: 0x29 },
        ),
        (
            vec![ret1, stmt(0x0105, 0)],
            TranslateError::UnknownOpcode {
                pc: 1,
                code: 0x0105,
            },
        ),
        (
            vec![stmt(LD | MEM, 16), ret1],
            TranslateError::BadScratch { pc: 0, k: 16 },
        ),
        (
            vec![stmt(ALU | cbpf::DIV, 0), ret1],
            TranslateError::DivisionByZero { pc: 0 },
        ),
        (
            vec![stmt(ALU | cbpf::LSH, 32), ret1],
            TranslateError::BadShift { pc: 0, k: 32 },
        ),
        (
            vec![insn(JMP | cbpf::JEQ, 1, 0, 0), ret1],
            TranslateError::JumpOutOfRange { pc: 0, to: 2 },
        ),
        (
            vec![stmt(JMP | cbpf::JA, 5), ret1],
            TranslateError::JumpOutOfRange { pc: 0, to: 6 },
        ),
        (
            vec![ret1, stmt(JMP | cbpf::JA, (-3i32) as u32)],
            TranslateError::JumpOutOfRange { pc: 1, to: -1 },
        ),
        (
            vec![ret1, stmt(JMP | cbpf::JA, u32::MAX)],
            TranslateError::InfiniteLoop { pc: 1 },
        ),
        (vec![stmt(LD, 1)], TranslateError::FallsOffEnd { pc: 0 }),
        (
            // Instruction 1 falls into 2, which falls off the end.
            vec![insn(JMP | cbpf::JEQ, 0, 1, 0), stmt(LD, 1), stmt(LD, 2)],
            TranslateError::FallsOffEnd { pc: 2 },
        ),
    ];
    for (prog, want) in cases {
        assert_eq!(
            translate(&prog, Then::Return),
            Err(want.clone()),
            "{prog:?}"
        );
        assert!(!want.to_string().is_empty());
    }
    // The longest translation: 4095 word loads at X + k, 7 eBPF instructions
    // each. Its jumps to the shared "not selected" code still fit in 16 bits,
    // so `TooFar` is a guard that no valid program reaches.
    let mut long = vec![stmt(LD | W | IND, 1); 4095];
    long.push(ret1);
    let ebpf = translate(&long, TAIL).unwrap();
    assert!(ebpf.len() < 30_000, "{}", ebpf.len());
}

#[test]
fn ebpf_registers_pack_into_one_byte() {
    let i = EbpfInsn::new(0xbf, 6, 1, 0, 0);
    assert_eq!((i.regs, i.dst(), i.src()), (0x16, 6, 1));
    assert_eq!(size_of::<EbpfInsn>(), 8);
    assert_eq!(size_of::<CbpfInsn>(), 8);
    // An unused import check: the LD | IND | MEM | LEN names are the cBPF ones.
    assert_eq!((IND, MEM, LEN, MSH), (0x40, 0x60, 0x80, 0xa0));
}
