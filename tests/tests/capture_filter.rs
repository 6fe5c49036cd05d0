//! Capture with a pcap-filter expression on a live host, through veth: the file
//! holds exactly what tcpdump's own reading of the same expression selects
//! from what was sent, while the host's traffic carries on (ping is answered,
//! a kernel UDP socket on an unsteered port gets everything); echo replies are
//! in the file marked outbound; and `--steal` keeps the selected frames from
//! the kernel. Needs root; run through `cargo xtask test`.

use std::{
    io::{BufRead as _, BufReader},
    net::{SocketAddr, UdpSocket},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use pcap_file::pcapng::{Block, PcapNgReader, blocks::enhanced_packet::EnhancedPacketOption};
use xdpstack_tests::{StackProcess, TempDir, Testbed, testbed, wait_detached};

/// The echo app's port (steered: an app claims it).
const ECHO: u16 = 7;
/// A kernel socket's port the expression selects (copied, still delivered).
const KERNEL: u16 = 9100;
/// A kernel socket's port the expression leaves out.
const OTHER: u16 = 9200;
const EXPRESSION: &str = "udp and not port 9200";

/// A frame of a capture file with its time and direction (pcapng `epb_flags`
/// bits 0-1: 1 inbound, 2 outbound; 0 when the block has none).
#[derive(Debug)]
struct Record {
    ns: u128,
    direction: u32,
    data: Vec<u8>,
}

fn pcapng_records(file: &Path) -> Vec<Record> {
    let bytes = std::fs::read(file).expect("read capture");
    let mut reader = PcapNgReader::new(&bytes[..]).expect("a pcapng file");
    let mut out = Vec::new();
    while let Some(block) = reader.next_block() {
        if let Block::EnhancedPacket(epb) = block.expect("a valid block") {
            let direction = epb
                .options
                .iter()
                .find_map(|o| match o {
                    EnhancedPacketOption::Flags(f) => Some(f & 3),
                    _ => None,
                })
                .unwrap_or(0);
            out.push(Record {
                ns: epb.timestamp.as_nanos(),
                direction,
                data: epb.data.into_owned(),
            });
        }
    }
    out
}

/// Classic pcap frames of `tcpdump -r FILE -w - EXPRESSION`: libpcap's own
/// reading of the expression.
fn tcpdump_select(file: &Path, expression: &str) -> Vec<Vec<u8>> {
    let out = Command::new("tcpdump")
        .args(["-n", "-r"])
        .arg(file)
        .args(["-w", "-"])
        .args(expression.split_whitespace())
        .output()
        .expect("tcpdump (cargo xtask setup installs it)");
    assert!(
        out.status.success(),
        "tcpdump -r: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    xdpstack_tests::pcap_frames(&out.stdout)
}

/// tcpdump writing what the peer's interface sees to `file`, ready when this
/// returns; stopped by pid. (`-Q out` selects nothing on this veth: what the
/// peer sent is told by its source MAC instead.)
struct PeerDump(Child);

impl PeerDump {
    fn start(bed: &Testbed, file: &Path) -> Self {
        let mut child = bed
            .peer_command("tcpdump")
            .args(["-n", "-U", "--immediate-mode", "-B", "65536"])
            .args(["-i", &bed.peer_if(), "-w"])
            .arg(file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match lines.next() {
                Some(Ok(l)) if l.contains("listening on") => {
                    // Keep reading, so that tcpdump's last words at exit (its
                    // statistics) do not meet a closed pipe.
                    std::thread::spawn(move || {
                        for l in lines.map_while(Result::ok) {
                            eprintln!("peer tcpdump: {l}");
                        }
                    });
                    return PeerDump(child);
                }
                Some(Ok(_)) => {}
                _ => break,
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("tcpdump did not start listening on the peer");
    }

    fn stop(mut self) {
        // SAFETY: signalling the child we started, by its pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
        let _ = self.0.wait();
    }
}

impl Drop for PeerDump {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A kernel UDP socket in the stack namespace on `port`.
fn kernel_socket(bed: &Testbed, port: u16) -> UdpSocket {
    bed.in_stack(|| {
        let s = UdpSocket::bind(("0.0.0.0", port)).expect("bind a kernel socket");
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        // Room for every datagram of the test (the default buffer holds ~270).
        let bytes: libc::c_int = 8 << 20;
        // SAFETY: setsockopt on our socket with a valid c_int.
        let rc = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&s),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&raw const bytes).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "SO_RCVBUFFORCE needs root");
        s
    })
    .expect("stack netns")
}

/// Datagrams waiting on `socket`.
fn drain(socket: &UdpSocket) -> usize {
    let mut buf = [0u8; 2048];
    let mut n = 0;
    while socket.recv(&mut buf).is_ok() {
        n += 1;
    }
    n
}

/// Send `count` datagrams of each port from the peer, paced, interleaved.
fn send_mix(bed: &Testbed, ports: &[u16], count: usize) {
    let stack = Testbed::stack_addr(false);
    bed.in_peer(|| {
        let sock = UdpSocket::bind("0.0.0.0:0").expect("bind");
        for i in 0..count {
            for &port in ports {
                let payload = format!("{port}-{i:06}-capture-filter");
                sock.send_to(payload.as_bytes(), SocketAddr::new(stack, port))
                    .expect("send");
            }
            if i % 16 == 15 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    })
    .expect("peer netns");
}

fn ping(bed: &Testbed) -> bool {
    bed.peer_command("ping")
        .args(["-c", "3", "-i", "0.2", "-W", "1"])
        .arg(Testbed::stack_addr(false).to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn an_expression_captures_what_tcpdump_selects_and_the_host_carries_on() {
    const N: usize = 200;
    let bed = testbed("cflt", 1);
    let dir = TempDir::new("cflt");
    let file = dir.0.join("x.pcapng");
    let sent = dir.0.join("sent.pcap");
    let kernel = kernel_socket(&bed, KERNEL);
    let other = kernel_socket(&bed, OTHER);
    let echo = ECHO.to_string();
    let mut args = vec!["--port", &echo, "--app", "echo", "--duration", "30"];
    args.extend(["--json", "--pcapng", "-w", file.to_str().unwrap()]);
    args.extend(EXPRESSION.split(' '));
    let mut stack = StackProcess::start(&bed, &args);
    stack.wait_attached(&bed);
    let dump = PeerDump::start(&bed, &sent);
    send_mix(&bed, &[ECHO, KERNEL, OTHER], N);
    let answered = ping(&bed);
    std::thread::sleep(Duration::from_millis(500));
    dump.stop();
    stack.signal(libc::SIGINT);
    let done = stack.wait(Duration::from_secs(20));
    assert!(done.status.success(), "{done:?}");
    let json = done.json();

    assert!(answered, "ping is answered during the capture");
    assert_eq!(
        drain(&kernel),
        N,
        "the kernel socket on {KERNEL} got everything"
    );
    assert_eq!(drain(&other), N, "and so did the one on {OTHER}");

    let records = pcapng_records(&file);
    let mut inbound: Vec<&Record> = records.iter().filter(|r| r.direction == 1).collect();
    // Views (the app's frames) and copies (the kernel's) reach the file by two
    // threads; the XDP program stamped both with one clock.
    inbound.sort_by_key(|r| r.ns);
    let peer_mac = xdpstack_tests::link_json(&bed.peer_ns(), &bed.peer_if(), false)["address"]
        .as_str()
        .expect("the peer's MAC")
        .to_string();
    let want = tcpdump_select(&sent, &format!("ether src {peer_mac} and ({EXPRESSION})"));
    assert_eq!(
        want.len(),
        2 * N,
        "tcpdump selects the {ECHO} and {KERNEL} datagrams"
    );
    let got: Vec<&[u8]> = inbound.iter().map(|r| &r.data[..]).collect();
    let want: Vec<&[u8]> = want.iter().map(|f| &f[..]).collect();
    if let Some(i) = (0..got.len().min(want.len())).find(|&i| got[i] != want[i]) {
        panic!(
            "the received frames in the file are tcpdump's selection, in order; \
             they differ first at {i} of {}:\n got  {:02x?}\n want {:02x?}\n{json}",
            got.len(),
            got[i],
            want[i]
        );
    }
    assert_eq!(got.len(), want.len(), "{json}");

    let outbound: Vec<&Record> = records.iter().filter(|r| r.direction == 2).collect();
    assert_eq!(
        outbound.len(),
        N,
        "every echo reply is in the file, outbound: {json}"
    );
    assert!(
        outbound
            .iter()
            .all(|r| r.data.len() > 42 && r.data[34..36] == ECHO.to_be_bytes()),
        "the replies come from the echo port"
    );
    assert_eq!(records.len(), 3 * N, "nothing else: {json}");
    let mut stamps: Vec<u128> = inbound.iter().map(|r| r.ns).collect();
    stamps.dedup();
    assert_eq!(stamps.len(), inbound.len(), "a time per packet");
    assert_eq!(json["xdp"]["capture_copy_ring_full"], 0, "{json}");
    assert_eq!(json["xdp"]["capture_copied"], N as u64, "{json}");
    assert_eq!(wait_detached(&bed), None);
}

#[test]
fn steal_keeps_the_selected_frames_from_the_kernel() {
    const N: usize = 300;
    let bed = testbed("cstl", 2);
    let dir = TempDir::new("cstl");
    let file = dir.0.join("x.pcap");
    let stolen = kernel_socket(&bed, KERNEL);
    let passed = kernel_socket(&bed, OTHER);
    let mut args = vec!["--app", "none", "--steal", "--duration", "30", "--json"];
    args.extend(["-w", file.to_str().unwrap(), "udp", "port", "9100"]);
    let mut stack = StackProcess::start(&bed, &args);
    stack.wait_attached(&bed);
    send_mix(&bed, &[KERNEL, OTHER], N);
    std::thread::sleep(Duration::from_millis(500));
    stack.signal(libc::SIGINT);
    let done = stack.wait(Duration::from_secs(20));
    assert!(done.status.success(), "{done:?}");
    let json = done.json();
    assert_eq!(
        drain(&stolen),
        0,
        "the selected frames never reach the kernel"
    );
    assert_eq!(drain(&passed), N, "the rest do");
    assert_eq!(json["xdp"]["redirected"], N as u64, "{json}");
    assert_eq!(
        json["capture"]["stats"]["records_written"], N as u64,
        "{json}"
    );
    let frames = xdpstack_tests::pcap_frames(&std::fs::read(&file).expect("read"));
    assert_eq!(frames.len(), N);
    assert!(frames.iter().all(|f| f[36..38] == KERNEL.to_be_bytes()));
    assert_eq!(wait_detached(&bed), None);
}

#[test]
fn a_bad_expression_gets_libpcaps_message_and_status_2() {
    let bed = testbed("cbad", 1);
    let stack = StackProcess::start(&bed, &["-w", "/dev/null", "udp", "prot", "53"]);
    let done = stack.wait(Duration::from_secs(10));
    assert_eq!(done.status.code(), Some(2), "{done:?}");
    assert!(done.stderr.contains("syntax error"), "{}", done.stderr);
    assert_eq!(wait_detached(&bed), None);
}

/// `-w - | head -c 100`: once the reader of the pipe is gone, the run ends at
/// once, with the summary on standard error, once, and exit status 0, as
/// tcpdump's does.
#[test]
fn a_pipe_whose_reader_leaves_ends_the_run() {
    use std::io::Read as _;
    let bed = testbed("cpip", 1);
    let mut child = bed
        .stack_command(xdpstack_tests::xdpstack_bin())
        .args(["-i", &bed.stack_if(), "--port", "9000", "-w", "-", "-U"])
        .args(["--duration", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("xdpstack");
    let mut stdout = child.stdout.take().expect("stdout");
    bed.wait_xdp_attached(Duration::from_secs(10))
        .expect("ip link")
        .expect("attached");
    xdpstack_tests::send_udp(&bed, false, 9000, 20, &[200]);
    let mut head = [0u8; 100];
    stdout.read_exact(&mut head).expect("100 bytes of capture");
    drop(stdout);
    let left = Instant::now();
    let deadline = left + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stderr = String::new();
    let _ = child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr);
    let status =
        status.unwrap_or_else(|| panic!("still running 5 s after its reader left: {stderr}"));
    assert!(status.success(), "{status}: {stderr}");
    assert!(
        left.elapsed() < Duration::from_secs(2),
        "ended {:?} after",
        left.elapsed()
    );
    assert_eq!(
        stderr.matches("xdpstack: ").count(),
        1,
        "the summary, once: {stderr}"
    );
    assert!(
        stderr.contains("the reader of the capture went away"),
        "{stderr}"
    );
    assert_eq!(&head[..4], &0xa1b2_3c4du32.to_ne_bytes(), "pcap, ns");
    assert_eq!(wait_detached(&bed), None);
}
