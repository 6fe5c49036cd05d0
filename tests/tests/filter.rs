//! Capture filters in the kernel: every expression, compiled by libpcap and
//! translated to eBPF, decides every frame as libpcap's own interpreter does.
//! The translated programs run through BPF_PROG_TEST_RUN. Needs root; run
//! through `cargo xtask test`, or alone with
//! `cargo test -p xdpstack-tests --test filter -- --nocapture` for the tables.

use std::{
    cell::Cell,
    ffi::CString,
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd},
};

use proptest::{
    collection::vec,
    prelude::*,
    test_runner::{Config, TestCaseError, TestRunner},
};
use xdp_ebpf::corpus;
use xdpstack::{
    filter::{
        Filter,
        ebpf::{EbpfInsn, Then, XDP_PASS, translate},
    },
    sys::bpf_prog::{filter_cost_ns, load_xdp, test_run_xdp},
};
use xdpstack_tests::{frames, require_root};

/// BPF_PROG_TEST_RUN refuses XDP input shorter than an Ethernet header (EINVAL).
const ETH_HLEN: usize = 14;

/// The expressions of the differential test: protocols, addresses and ports
/// for IPv4 and IPv6, VLAN, extension headers, byte tests, lengths, link-layer
/// addresses, nesting, and arithmetic that uses X and scratch memory.
const EXPRESSIONS: &[&str] = &[
    "udp",
    "tcp",
    "icmp",
    "icmp6",
    "arp",
    "ip",
    "ip6",
    "host 198.18.0.1",
    "src host 198.18.0.1",
    "dst host 198.19.0.2",
    "dst net 198.19.0.0/16",
    "net 198.18.0.0/15",
    "port 53",
    "src port 40000",
    "portrange 9000-9010",
    "host fd00::1",
    "net fd00::/8",
    "dst host fd00::2 and udp",
    "vlan",
    "vlan 100 and udp",
    "ip6 protochain 17",
    "ip[6:2] & 0x1fff != 0",
    "udp[8:4] = 0x68656c6c",
    "greater 100",
    "less 64",
    "len > 60",
    "ether broadcast",
    "ether multicast",
    "ether host 02:00:00:00:00:01",
    "ether src 02:00:00:00:00:02 and not ip6",
    "udp port 53 and not host 198.18.0.9",
    "(udp port 53 or tcp port 80) and not (host 198.18.0.9 or net fd00::/8)",
    "not (ip6 or arp) and (icmp or udp dst port 9000)",
    "tcp[tcpflags] & tcp-syn != 0",
    "tcp[tcpflags] & (tcp-syn|tcp-ack) = tcp-ack",
    "icmp[icmptype] = icmp-echoreply",
    "icmp6 and ip6[40] = 128",
    "ip[0] & 0xf > 5",
    "ip[2:2] / ip[8] > 1",
    "ip[2:2] % (ip[9] - 6) = 0",
    "ip[8] << (ip[19] & 0x3f) > 1000",
    "ip[8] >> (ip[9] & 0x3f) != 0",
    "-ip[8] & 0xff = 0xc0",
    "((ip[8] * 3) - 1) ^ 0x55 = 0xea or ip[9] | 1 = 7",
    "ip[2:2] + ip[8] > 200 and ip[2:2] - ip[9] < 100",
];

/// The expressions of the property test: one of each kind above.
const PROPTEST_EXPRESSIONS: &[&str] = &[
    "udp port 53 and not host 198.18.0.9",
    "tcp[tcpflags] & tcp-syn != 0",
    "ip[0] & 0xf > 5",
    "vlan 100 and udp",
    "host fd00::1 or net 198.18.0.0/15",
    "portrange 9000-9010",
    "ip[6:2] & 0x1fff != 0",
    "udp[8:4] = 0x68656c6c",
    "greater 100 and not ether multicast",
    "icmp or icmp6 or arp",
    "ip[2:2] / ip[8] > 1",
    "ip[8] << (ip[19] & 0x3f) > 1000",
];

/// A filter with its translation loaded, in `Then::Return` mode.
struct Loaded {
    filter: Filter,
    prog: OwnedFd,
}

impl Loaded {
    fn new(expression: &str) -> Self {
        let filter = Filter::new(expression).unwrap_or_else(|e| panic!("{e}"));
        let insns = translate(filter.instructions(), Then::Return)
            .unwrap_or_else(|e| panic!("{expression}: {e}"));
        let prog = load_xdp("xdpstack_test", &insns)
            .unwrap_or_else(|e| panic!("{expression}:\n{}\n{e}", filter.dump()));
        Self { filter, prog }
    }

    /// The kernel's decision and libpcap's, on `frame`.
    fn decide(&self, frame: &[u8]) -> (bool, bool) {
        let action = test_run_xdp(self.prog.as_fd(), frame).expect("BPF_PROG_TEST_RUN");
        assert!(
            action == XDP_PASS as u32 || action == 1,
            "action {action} from a Then::Return program"
        );
        (action == XDP_PASS as u32, self.filter.matches(frame))
    }
}

/// The corpus frames BPF_PROG_TEST_RUN takes, and the frames of every kind.
fn frames() -> Vec<(String, Vec<u8>)> {
    let cases = corpus::cases();
    let short = cases.iter().filter(|c| c.frame.len() < ETH_HLEN).count();
    println!(
        "corpus: {} frames, {short} shorter than 14 bytes skipped",
        cases.len()
    );
    let mut out: Vec<(String, Vec<u8>)> = cases
        .into_iter()
        .filter(|c| c.frame.len() >= ETH_HLEN)
        .map(|c| (c.name, c.frame))
        .collect();
    out.extend(frames::kinds());
    out
}

/// Every expression on every frame: the kernel decides as libpcap does, and
/// each expression selects some frames and rejects others.
#[test]
fn translated_filters_decide_as_libpcap_on_every_frame() {
    require_root();
    let frames = frames();
    let corpus_run = frames.len() - frames::kinds().len();
    assert!(corpus_run >= 400, "only {corpus_run} corpus frames run");
    assert!(EXPRESSIONS.len() >= 30);
    let mut table = vec![format!(
        "{:<72} {:>8} {:>6}",
        "expression", "selected", "total"
    )];
    let mut failures = Vec::new();
    for expression in EXPRESSIONS {
        let loaded = Loaded::new(expression);
        let mut selected = 0;
        for (name, frame) in &frames {
            let (kernel, libpcap) = loaded.decide(frame);
            if kernel != libpcap {
                failures.push(format!(
                    "`{expression}` on {name}: eBPF {kernel}, libpcap {libpcap}: {frame:02x?}"
                ));
            }
            selected += usize::from(libpcap);
        }
        table.push(format!(
            "{expression:<72} {selected:>8} {:>6}",
            frames.len()
        ));
        if selected == 0 || selected == frames.len() {
            failures.push(format!(
                "`{expression}` selects {selected} of {} frames: the test decides nothing",
                frames.len()
            ));
        }
    }
    let table = table.join("\n");
    println!(
        "{corpus_run} corpus frames and {} more:\n{table}",
        frames::kinds().len()
    );
    assert!(failures.is_empty(), "{}\n{table}", failures.join("\n"));
}

/// Frames from a template of each kind, with a few bytes changed and cut or
/// extended to any length from 14 to 1600.
fn mutated_frame() -> impl Strategy<Value = Vec<u8>> {
    let templates = frames::kinds();
    let n = templates.len();
    (
        0..n,
        vec((0usize..128, any::<u8>()), 0..6),
        14usize..=1600,
        any::<u8>(),
    )
        .prop_map(move |(which, changes, len, fill)| {
            let mut frame = templates[which].1.clone();
            for (at, byte) in changes {
                // Mostly the headers, where filters look.
                if let Some(b) = frame.get_mut(at) {
                    *b = byte;
                }
            }
            frame.resize(len, fill);
            frame
        })
}

#[test]
fn translated_filters_decide_as_libpcap_on_mutated_frames() {
    require_root();
    let loaded: Vec<Loaded> = PROPTEST_EXPRESSIONS
        .iter()
        .map(|e| Loaded::new(e))
        .collect();
    let selected: Vec<Cell<usize>> = vec![Cell::new(0); loaded.len()];
    let mut runner = TestRunner::new(Config {
        cases: 300,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&mutated_frame(), |frame| {
        for (i, l) in loaded.iter().enumerate() {
            let (kernel, libpcap) = l.decide(&frame);
            if kernel != libpcap {
                return Err(TestCaseError::fail(format!(
                    "`{}`: eBPF {kernel}, libpcap {libpcap}",
                    l.filter.expression()
                )));
            }
            selected[i].set(selected[i].get() + usize::from(libpcap));
        }
        Ok(())
    });
    for (l, n) in loaded.iter().zip(&selected) {
        println!("{:<48} selected {}", l.filter.expression(), n.get());
    }
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// A prog array of `slots` entries (libbpf `bpf_map_create`).
fn prog_array(slots: u32) -> OwnedFd {
    let name = CString::new("xdpstack_pa").unwrap();
    // SAFETY: the name is NUL-terminated and outlives the call; no options.
    let fd = unsafe {
        libxdp_sys::bpf_map_create(
            libxdp_sys::bpf_map_type_BPF_MAP_TYPE_PROG_ARRAY,
            name.as_ptr(),
            4,
            4,
            slots,
            std::ptr::null(),
        )
    };
    assert!(
        fd >= 0,
        "bpf_map_create: {}",
        std::io::Error::from_raw_os_error(-fd)
    );
    // SAFETY: a new descriptor nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn set_slot(map: &OwnedFd, slot: u32, prog: Option<&OwnedFd>) {
    let key = slot;
    let ret = match prog {
        Some(prog) => {
            let value: u32 = prog.as_raw_fd() as u32;
            // SAFETY: key and value are 4-byte values, as the map was created.
            unsafe {
                libxdp_sys::bpf_map_update_elem(
                    map.as_raw_fd(),
                    (&raw const key).cast(),
                    (&raw const value).cast(),
                    0,
                )
            }
        }
        // SAFETY: the key is a 4-byte value, as the map was created.
        None => unsafe {
            libxdp_sys::bpf_map_delete_elem(map.as_raw_fd(), (&raw const key).cast())
        },
    };
    assert_eq!(
        ret,
        0,
        "prog array slot {slot}: {}",
        std::io::Error::from_raw_os_error(-ret)
    );
}

#[test]
fn a_refused_program_carries_the_verifiers_words() {
    require_root();
    // `exit` with r0 never written.
    let err = load_xdp("xdpstack_bad", &[EbpfInsn::new(0x95, 0, 0, 0, 0)]).unwrap_err();
    let shown = err.to_string();
    println!("{shown}");
    assert!(
        shown.contains("verifier refused eBPF program xdpstack_bad")
            && shown.contains("R0 !read_ok"),
        "{shown}"
    );
}

/// `w0 = action; exit`.
fn returning(action: i32) -> [EbpfInsn; 2] {
    [
        EbpfInsn::new(0xb4, 0, 0, 0, action),
        EbpfInsn::new(0x95, 0, 0, 0, 0),
    ]
}

#[test]
fn tail_call_mode_calls_the_slot_of_the_decision() {
    require_root();
    let map = prog_array(4);
    let tx = load_xdp("xdpstack_tx", &returning(3)).expect("load");
    let drop = load_xdp("xdpstack_drop", &returning(1)).expect("load");
    let then = Then::TailCall {
        prog_array_fd: map.as_raw_fd(),
        selected: 2,
        unselected: 3,
    };
    let filter = Filter::new("udp port 53").unwrap();
    let prog = load_xdp(
        "xdpstack_tc",
        &translate(filter.instructions(), then).unwrap(),
    )
    .expect("load");
    let kinds = frames::kinds();
    let frame = |name: &str| &kinds.iter().find(|(n, _)| n == name).unwrap().1;
    let (dns, syn) = (frame("udp4/dns-query"), frame("tcp4/syn-80"));
    assert!(filter.matches(dns) && !filter.matches(syn));

    // Empty slots: the frame goes to the kernel.
    assert_eq!(test_run_xdp(prog.as_fd(), dns).unwrap(), 2);
    assert_eq!(test_run_xdp(prog.as_fd(), syn).unwrap(), 2);
    set_slot(&map, 2, Some(&tx));
    set_slot(&map, 3, Some(&drop));
    assert_eq!(
        test_run_xdp(prog.as_fd(), dns).unwrap(),
        3,
        "selected: slot 2"
    );
    assert_eq!(
        test_run_xdp(prog.as_fd(), syn).unwrap(),
        1,
        "not selected: slot 3"
    );
    set_slot(&map, 3, None);
    assert_eq!(
        test_run_xdp(prog.as_fd(), syn).unwrap(),
        2,
        "empty slot 3: XDP_PASS"
    );
    assert_eq!(test_run_xdp(prog.as_fd(), dns).unwrap(), 3);

    // A filter with one decision only (every frame) has one slot only.
    let all = translate(Filter::all().instructions(), then).unwrap();
    let all = load_xdp("xdpstack_all", &all).expect("load");
    assert_eq!(test_run_xdp(all.as_fd(), syn).unwrap(), 3);
}

/// What `udp port 53` costs per frame, JITed, beside `return XDP_PASS`.
/// Printed, not asserted: the numbers move with the machine.
#[test]
fn filter_cost_is_measured() {
    require_root();
    let kinds = frames::kinds();
    for (expression, frame) in [
        ("udp port 53", "udp4/dns-query"),
        ("udp port 53", "udp6/dns-query"),
        ("udp port 53 and not host 198.18.0.9", "udp4/dns-elsewhere"),
        ("ip6 protochain 17", "ipv6/hopopts-fragment-udp"),
    ] {
        let filter = Filter::new(expression).unwrap();
        let frame = &kinds.iter().find(|(n, _)| n == frame).unwrap().1;
        let insns = translate(filter.instructions(), Then::Return).unwrap();
        let cost = filter_cost_ns(&insns, frame, 1_000_000).expect("measure");
        println!(
            "`{expression}` ({} classic, {} eBPF instructions) on {} bytes: {} ns/frame, \
             `return XDP_PASS` {} ns/frame, filter {} ns",
            filter.instructions().len(),
            insns.len(),
            frame.len(),
            cost.filter.as_nanos(),
            cost.baseline.as_nanos(),
            cost.extra_ns()
        );
        assert!(filter.matches(frame), "{expression} on its frame");
    }
}
