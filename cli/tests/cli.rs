//! The command line as a user meets it, without root: what is refused before
//! anything is attached, and what `--help` promises.

use std::process::Command;

fn xdpstack(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_xdpstack"))
        .args(args)
        .env_remove("XDPSTACK_LOG")
        .output()
        .expect("run xdpstack")
}

#[test]
fn any_interface_is_refused_with_one_line_and_status_2() {
    let out = xdpstack(&["-i", "any", "--capture", "all", "-w", "-"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "nothing on standard output");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr,
        "xdpstack: -i any is not possible with AF_XDP, which serves one interface's \
         queues: run one xdpstack per interface (-i eth0, -i eth1, ...)\n"
    );
}

#[test]
fn help_documents_the_tcpdump_options() {
    let out = xdpstack(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    // Whitespace-insensitive: clap wraps to the terminal width.
    let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
    for promise in [
        "-s, --snaplen <N>",
        "-n ",
        "never resolves addresses or ports to names",
        "-G <SECONDS>",
        "strftime(3) pattern",
        "-W <N>",
        "the run ends (exit status 0) when file N+1 is due",
        "--pcap ",
        "Classic pcap has no field for the direction of a frame",
        "A name ending in `.pcapng` (any case) makes a pcapng file",
    ] {
        assert!(flat.contains(promise), "--help lacks {promise:?}:\n{help}");
    }
}

#[test]
fn no_resolve_flags_are_accepted() {
    // -n and -nn parse; the run then stops at the check that needs no root.
    for n in ["-n", "-nn"] {
        let out = xdpstack(&[n, "-i", "any", "--capture", "all"]);
        assert_eq!(out.status.code(), Some(2), "{n}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.starts_with("xdpstack: -i any"), "{n}: {stderr}");
    }
}
