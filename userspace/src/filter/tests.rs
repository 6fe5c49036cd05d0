//! [`Filter`] against libpcap and tcpdump: the programs, the decisions, the
//! errors and the printed form.

use std::process::Command;

use super::{CbpfInsn, Filter, FilterError, PCAP_CRATE_SNAPLEN, SELECT_ALL, SNAPLEN, parse_insn};

/// Expressions of every kind, for the comparisons with tcpdump.
const EXPRESSIONS: &[&str] = &[
    "udp port 53",
    "ip6 protochain 17",
    "vlan 100 and (tcp[tcpflags] & tcp-syn != 0 or ip[0] & 0xf > 5)",
    "not (ip6 or arp) and len > 60 and ether multicast",
    "ip[2:2] / ip[8] > 1",
];

/// `tcpdump ARGS EXPRESSION`'s standard output, or `None` (with a message) when
/// tcpdump is not installed.
fn tcpdump(args: &[&str], expression: &str) -> Option<String> {
    match Command::new("tcpdump").args(args).arg(expression).output() {
        Ok(out) => {
            assert!(
                out.status.success(),
                "tcpdump {args:?} {expression}: {out:?}"
            );
            Some(String::from_utf8(out.stdout).unwrap())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("tcpdump is not installed: skipping the comparison with `tcpdump {args:?}`");
            None
        }
        Err(e) => panic!("tcpdump: {e}"),
    }
}

#[test]
fn dump_is_what_tcpdump_d_prints() {
    for expression in EXPRESSIONS.iter().chain(&[""]) {
        let Some(want) = tcpdump(&["-d"], expression) else {
            return;
        };
        assert_eq!(
            Filter::new(expression).unwrap().dump(),
            want,
            "`{expression}`"
        );
    }
}

#[test]
fn instructions_are_what_tcpdump_dd_prints() {
    for expression in EXPRESSIONS {
        let Some(want) = tcpdump(&["-dd"], expression) else {
            return;
        };
        let got: String = Filter::new(expression)
            .unwrap()
            .instructions()
            .iter()
            .map(|i| format!("{{ 0x{:x}, {}, {}, 0x{:08x} }},\n", i.code, i.jt, i.jf, i.k))
            .collect();
        assert_eq!(got, want, "`{expression}`");
    }
}

#[test]
fn the_empty_expression_selects_every_frame_as_libpcap_compiles_it() {
    for blank in ["", "   ", "\t\n"] {
        let filter = Filter::new(blank).unwrap();
        assert!(filter.is_all(), "{blank:?}");
        assert_eq!(filter.instructions(), SELECT_ALL);
        assert!(filter.matches(&[]) && filter.matches(&[0; 60]));
    }
    assert!(Filter::all().is_all() && !Filter::new("udp").unwrap().is_all());
    assert_eq!(Filter::all().instructions(), [CbpfInsn::ret(262_144)]);
    // The shortcut is what libpcap compiles.
    let capture = pcap::Capture::dead(pcap::Linktype::ETHERNET).unwrap();
    let program = capture.compile("", true).unwrap();
    let libpcap: Vec<CbpfInsn> = program
        .get_instructions()
        .iter()
        .map(|i| parse_insn(&i.to_string()).unwrap())
        .collect();
    assert_eq!(libpcap, [CbpfInsn::ret(PCAP_CRATE_SNAPLEN)]);
}

#[test]
fn libpcap_returns_only_0_and_the_snapshot_length() {
    // What `tcpdump_snaplen` rests on: the accepting `ret` is the only place the
    // snapshot length appears.
    for expression in EXPRESSIONS
        .iter()
        .chain(&["udp", "greater 100", "ether[0] = 65535"])
    {
        let filter = Filter::new(expression).unwrap();
        for insn in filter.instructions() {
            if insn.code == 0x06 {
                assert!(insn.k == 0 || insn.k == SNAPLEN, "`{expression}`: {insn:?}");
            }
            if insn.code != 0x06 && insn.k == PCAP_CRATE_SNAPLEN {
                assert_eq!(
                    *expression, "ether[0] = 65535",
                    "a constant, kept: {insn:?}"
                );
            }
        }
    }
}

#[test]
fn matches_decides_as_libpcap() {
    use xdp_ebpf::corpus::{IpVersion, udp_frame};
    let dns = udp_frame(IpVersion::V4, &[], 40000, 53, b"q");
    let dns6 = udp_frame(IpVersion::V6, &[0x8100], 40000, 53, b"q");
    let other = udp_frame(IpVersion::V4, &[], 40000, 9000, b"q");
    let filter = Filter::new("udp port 53").unwrap();
    assert!(filter.matches(&dns));
    assert!(
        !filter.matches(&dns6),
        "VLAN-tagged: `udp port 53` looks at the untagged offsets"
    );
    assert!(Filter::new("vlan and udp port 53").unwrap().matches(&dns6));
    assert!(!filter.matches(&other));
    assert!(
        !filter.matches(&dns[..30]),
        "cut short: the load fails, libpcap says no"
    );
    assert!(!filter.matches(&[]));
    assert!(Filter::new("host 198.19.0.2").unwrap().matches(&dns));
    assert!(!Filter::new("host 198.19.0.3").unwrap().matches(&dns));
}

#[test]
fn filters_are_send_and_sync() {
    fn shared<T: Send + Sync>() {}
    shared::<Filter>();
    let filter = std::sync::Arc::new(Filter::new("udp").unwrap());
    let frame = xdp_ebpf::corpus::udp_frame(xdp_ebpf::corpus::IpVersion::V4, &[], 1, 2, b"");
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (filter, frame) = (filter.clone(), frame.clone());
            std::thread::spawn(move || (0..1000).all(|_| filter.matches(&frame)))
        })
        .collect();
    assert!(threads.into_iter().all(|t| t.join().unwrap()));
}

#[test]
fn bad_expressions_carry_libpcaps_message() {
    // libpcap 1.10 says "can't parse filter expression: syntax error".
    for (expression, message) in [
        ("udp port", "syntax error"),
        (
            "host nosuchhost.invalid",
            "unknown host 'nosuchhost.invalid'",
        ),
        ("portrange 9000-", "syntax error"),
        ("ether host 02:00", "illegal link layer address"),
        ("udp\0", "the expression contains a NUL character"),
    ] {
        let err = Filter::new(expression).unwrap_err();
        match &err {
            FilterError::Compile {
                expression: e,
                message: m,
            } => assert!(e == expression && m.ends_with(message), "{e:?}: {m}"),
            other => panic!("{other:?}"),
        }
        let shown = err.to_string();
        assert!(
            shown.contains(message) && shown.contains("pcap-filter(7)"),
            "{shown}"
        );
    }
}

#[test]
fn pcaps_instruction_text_is_read_back() {
    assert_eq!(
        parse_insn("40 0 0 12"),
        Some(CbpfInsn {
            code: 40,
            jt: 0,
            jf: 0,
            k: 12
        })
    );
    for bad in ["", "40 0 0", "40 0 0 12 1", "x 0 0 0", "40 256 0 0"] {
        assert_eq!(parse_insn(bad), None, "{bad:?}");
    }
}

#[test]
fn filters_show_their_expression() {
    let filter = Filter::new("udp port 53").unwrap();
    assert_eq!(filter.to_string(), "udp port 53");
    assert_eq!(filter.expression(), "udp port 53");
    let debug = format!("{filter:?}");
    assert!(
        debug.contains("udp port 53") && debug.contains("instructions"),
        "{debug}"
    );
}
