//! The XDP program's two variants (frags-aware and not) in the kernel: jumbo
//! frames through BPF_PROG_TEST_RUN, which hands a frags-aware program its
//! input beyond the first page as fragments (net/bpf/test_run.c), the
//! capture's copies of them, and capture filters that agree with the program
//! on frags. Needs root; run through `cargo xtask test`.

use std::os::fd::AsFd;

use xdp_ebpf::{
    COPY_HEADER_LEN, CaptureCounter, CaptureMode, Counter, MAX_COPY, SteerMode,
    corpus::{self, IpVersion, STEERED_PORT},
};
use xdpstack::{
    filter::{
        Filter,
        ebpf::{EbpfInsn, Then, translate},
    },
    stack::load_filter,
    sys::{
        bpf_prog::{load_xdp_with, test_run_xdp},
        loader::{LoadOptions, LoaderError, XdpModeChoice, XdpProgram},
    },
};
use xdpstack_tests::{counter_delta, expect_one, ip, require_root, testbed};

const XDP_PASS: u32 = 2;

fn load(frags: bool) -> XdpProgram {
    let program = XdpProgram::load_with(LoadOptions { frags }).expect("load");
    assert_eq!(program.frags(), frags);
    program
}

/// True when BPF_PROG_TEST_RUN hands a frags-aware program `frame` in more
/// than one buffer: a program of our own compares `data_end - data` with
/// `bpf_xdp_get_buff_len`. What makes the tests below test multi-buffer frames.
fn arrives_in_buffers(frame: &[u8]) -> bool {
    let insns = [
        EbpfInsn::new(0xbf, 6, 1, 0, 0),   // r6 = r1 (ctx)
        EbpfInsn::new(0x61, 7, 6, 0, 0),   // r7 = ctx->data
        EbpfInsn::new(0x61, 8, 6, 4, 0),   // r8 = ctx->data_end
        EbpfInsn::new(0x1f, 8, 7, 0, 0),   // r8 -= r7: the first buffer's length
        EbpfInsn::new(0xbf, 1, 6, 0, 0),   // r1 = ctx
        EbpfInsn::new(0x85, 0, 0, 0, 188), // call bpf_xdp_get_buff_len
        EbpfInsn::new(0xad, 8, 0, 2, 0),   // if r8 < r0 goto +2
        EbpfInsn::new(0xb4, 0, 0, 0, 1),   // w0 = XDP_DROP
        EbpfInsn::new(0x95, 0, 0, 0, 0),   // exit
        EbpfInsn::new(0xb4, 0, 0, 0, 2),   // w0 = XDP_PASS
        EbpfInsn::new(0x95, 0, 0, 0, 0),   // exit
    ];
    let prog = load_xdp_with("xdpstack_split", &insns, true).expect("load the probe");
    test_run_xdp(prog.as_fd(), frame).expect("BPF_PROG_TEST_RUN") == XDP_PASS
}

/// Jumbo UDP datagrams at MTU 9000: the largest IPv4 (8972 bytes of payload)
/// and IPv6 (8952) ones, and one of 4000 bytes; each frame is longer than the
/// page less headroom and tailroom that BPF_PROG_TEST_RUN puts the first
/// buffer in.
fn jumbo_frames() -> Vec<(&'static str, Vec<u8>)> {
    let payload = |n: usize| (0..n).map(|i| (i * 7 + 3) as u8).collect::<Vec<u8>>();
    vec![
        (
            "udp4/8972",
            corpus::udp_frame(IpVersion::V4, &[], 40_000, STEERED_PORT, &payload(8972)),
        ),
        (
            "udp6/8952",
            corpus::udp_frame(IpVersion::V6, &[], 40_000, STEERED_PORT, &payload(8952)),
        ),
        (
            "udp4-vlan/4000",
            corpus::udp_frame(
                IpVersion::V4,
                &[0x8100],
                40_000,
                STEERED_PORT,
                &payload(4000),
            ),
        ),
    ]
}

/// The frags-aware program steers a jumbo datagram to its port (no socket is
/// bound, so it passes counted `pass_no_socket`) and passes one to another
/// port as not steered: the IP and UDP lengths are checked against the whole
/// packet, not its first buffer.
#[test]
fn the_frags_variant_steers_jumbo_frames() {
    require_root();
    let mut program = load(true);
    program
        .configure(SteerMode::Udp, &[STEERED_PORT])
        .expect("configure");
    for (name, frame) in jumbo_frames() {
        assert!(arrives_in_buffers(&frame), "{name}: in one buffer");
        let before = program.counters().expect("counters");
        let action = program.test_run(&frame, None).expect("test_run");
        let got = counter_delta(&program.counters().expect("counters"), &before);
        assert_eq!(action, XDP_PASS, "{name}");
        assert_eq!(got, expect_one(Counter::PassNoSocket), "{name}");
    }
    program.configure(SteerMode::Udp, &[9]).expect("configure");
    for (name, frame) in jumbo_frames() {
        let before = program.counters().expect("counters");
        program.test_run(&frame, None).expect("test_run");
        let got = counter_delta(&program.counters().expect("counters"), &before);
        assert_eq!(got, expect_one(Counter::PassNotSteered), "{name}");
    }
}

/// Every corpus frame gets the same verdict from both variants (frames of one
/// buffer: the variants differ only in what they accept).
#[test]
fn both_variants_reach_the_corpus_verdicts() {
    require_root();
    for frags in [false, true] {
        let mut program = load(frags);
        program
            .configure(SteerMode::Udp, &[STEERED_PORT])
            .expect("configure");
        let mut run = 0;
        for case in corpus::cases().into_iter().filter(|c| c.frame.len() >= 14) {
            let before = program.counters().expect("counters");
            program.test_run(&case.frame, None).expect("test_run");
            let got = counter_delta(&program.counters().expect("counters"), &before);
            let want = expect_one(match case.expected {
                xdp_ebpf::Verdict::Steer => Counter::PassNoSocket,
                xdp_ebpf::Verdict::Pass(reason) => reason,
            });
            assert_eq!(got, want, "frags {frags}: {}", case.name);
            run += 1;
        }
        assert!(run > 50, "the corpus ran only {run} frames");
    }
}

/// The copies of the ring: `(len, caplen, data)` of every record.
fn drain_copies(program: &mut XdpProgram) -> Vec<(u32, u32, Vec<u8>)> {
    let mut ring = program.take_copies().expect("copies");
    let mut out = Vec::new();
    ring.drain(usize::MAX, |record| {
        let u32_at = |off: usize| u32::from_ne_bytes(record[off..off + 4].try_into().unwrap());
        // CopyHeader: timestamp_ns u64, len u32, caplen u32, queue u32, reserved u32.
        let (len, caplen) = (u32_at(8), u32_at(12));
        let data = record[COPY_HEADER_LEN..COPY_HEADER_LEN + caplen as usize].to_vec();
        out.push((len, caplen, data));
    });
    out
}

/// A jumbo frame the capture copies keeps its whole length in the record, and
/// the copy holds min(snaplen, length) bytes of it, across its buffers.
#[test]
fn copies_of_jumbo_frames_hold_their_true_length() {
    require_root();
    for snaplen in [MAX_COPY, 100, 5000] {
        let mut program = load(true);
        // No port steered: every frame is one the capture may copy.
        program.configure(SteerMode::Udp, &[]).expect("configure");
        program
            .configure_capture(CaptureMode::Copy, None, snaplen)
            .expect("capture");
        let frames = jumbo_frames();
        for (name, frame) in &frames {
            assert_eq!(
                program.test_run(frame, None).expect("test_run"),
                XDP_PASS,
                "{name}"
            );
        }
        let copies = drain_copies(&mut program);
        assert_eq!(copies.len(), frames.len(), "snaplen {snaplen}");
        for ((name, frame), (len, caplen, data)) in frames.iter().zip(&copies) {
            let want = frame.len().min(snaplen as usize);
            assert_eq!(*len as usize, frame.len(), "{name}, snaplen {snaplen}");
            assert_eq!(*caplen as usize, want, "{name}, snaplen {snaplen}");
            assert!(data[..] == frame[..want], "{name}: the copy differs");
        }
        let counters = program.capture_counters(1).expect("capture counters");
        assert_eq!(counters.get(CaptureCounter::Copied), frames.len() as u64);
    }
}

/// A capture filter loaded through the program agrees with it on frags, in
/// both variants: it goes into the jump table and selects what it should;
/// one loaded the other way is refused by the kernel, which is why the
/// program decides.
#[test]
fn capture_filters_follow_the_variant() {
    require_root();
    let frame = &jumbo_frames()[0].1;
    let filter = Filter::new("udp").expect("filter");
    for frags in [false, true] {
        let mut program = load(frags);
        program.configure(SteerMode::Udp, &[]).expect("configure");

        let then = Then::TailCall {
            prog_array_fd: program.jump_table_fd().expect("jump table"),
            selected: xdp_ebpf::JUMP_SELECTED,
            unselected: xdp_ebpf::JUMP_UNSELECTED,
        };
        let insns = translate(filter.instructions(), then).expect("translate");
        // The kernel refuses it when loading (the jump table's first user, the
        // steering program, made it frags-aware or not) or, failing that, when
        // it goes into the table.
        let refused = match load_xdp_with("xdpstack_wrong", &insns, !frags) {
            Err(e) => {
                println!("frags {frags}, a filter with frags {}: {e}", !frags);
                true
            }
            Ok(wrong) => program
                .configure_capture(CaptureMode::Copy, Some(wrong.as_fd()), 64)
                .is_err(),
        };
        assert!(refused, "frags {frags}: a filter that disagrees was taken");

        let fd = load_filter(&program, &filter).expect("load the filter");
        program
            .configure_capture(CaptureMode::Copy, Some(fd.as_fd()), 64)
            .expect("the filter goes into the jump table");
        if frags {
            program.test_run(frame, None).expect("test_run");
        } else {
            let small = corpus::udp_frame(IpVersion::V4, &[], 1, 2, b"x");
            program.test_run(&small, None).expect("test_run");
        }
        let counters = program.capture_counters(1).expect("capture counters");
        assert_eq!(counters.get(CaptureCounter::Selected), 1, "frags {frags}");
        assert_eq!(counters.get(CaptureCounter::Copied), 1, "frags {frags}");
    }
}

/// A capture filter's `len` is the whole packet's, not its first buffer's:
/// `greater` and `less` decide a jumbo frame by its real length.
#[test]
fn capture_filters_see_a_jumbo_frames_whole_length() {
    require_root();
    let (name, frame) = &jumbo_frames()[0];
    assert!(
        arrives_in_buffers(frame),
        "{name} is not split: the test shows nothing"
    );
    for (expression, selected) in [
        ("greater 8000", 1),
        ("less 8000", 0),
        (&format!("len == {}", frame.len()) as &str, 1),
    ] {
        let mut program = load(true);
        program.configure(SteerMode::Udp, &[]).expect("configure");
        let filter = Filter::new(expression).expect("filter");
        let fd = load_filter(&program, &filter).expect("load the filter");
        program
            .configure_capture(CaptureMode::Copy, Some(fd.as_fd()), 64)
            .expect("the filter goes into the jump table");
        program.test_run(frame, None).expect("test_run");
        let counters = program.capture_counters(1).expect("capture counters");
        assert_eq!(
            counters.get(CaptureCounter::Selected),
            selected,
            "{expression} on {name} ({} bytes)",
            frame.len()
        );
    }
}

/// On veth with MTU 9000 at both ends, native XDP takes the frags-aware
/// variant and refuses the other one (ERANGE: the peer's MTU is too large for
/// frames of one buffer), which is how `--multi-buffer off` still meets the
/// kernel's refusal.
#[test]
fn veth_at_mtu_9000_attaches_only_the_frags_variant_natively() {
    let bed = testbed("jmb", 1);
    ip(
        &bed.stack_ns(),
        &["link", "set", "dev", &bed.stack_if(), "mtu", "9000"],
    );
    ip(
        &bed.peer_ns(),
        &["link", "set", "dev", &bed.peer_if(), "mtu", "9000"],
    );
    let iface = bed.stack_if();
    bed.in_stack(|| {
        let mut linear = load(false);
        let err = linear
            .attach(&iface, XdpModeChoice::Drv)
            .expect_err("veth takes a program without frags at MTU 9000");
        assert!(
            matches!(err, LoaderError::NativeRefused { errno, .. } if errno == libc::ERANGE),
            "{err}"
        );
        drop(linear);
        let mut frags = load(true);
        frags
            .attach(&iface, XdpModeChoice::Drv)
            .expect("veth takes the frags-aware program at MTU 9000");
    })
    .expect("in the stack's namespace");
}
