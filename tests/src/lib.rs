//! Helpers for the integration tests: unique names, the `xdpstack` binary run inside
//! a testbed namespace, paced kernel UDP senders in the peer namespace.
//!
//! Every test builds its own [`Testbed`] with a unique name; the testbed and any
//! process started here are removed/ended on drop, even when the test fails.
#![deny(unsafe_code)]

use std::{
    io::Read as _,
    net::{SocketAddr, UdpSocket},
    path::PathBuf,
    process::{Child, ExitStatus, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

pub mod frames;
pub mod packet;

use std::collections::BTreeMap;

use xdp_ebpf::Counter;
use xdpstack::sys::loader::XdpCounters;

/// The change of every XDP verdict counter between two snapshots, only the
/// non-zero ones, by name.
pub fn counter_delta(after: &XdpCounters, before: &XdpCounters) -> BTreeMap<&'static str, u64> {
    after
        .since(before)
        .iter()
        .filter(|(_, v)| *v != 0)
        .map(|(c, v)| (c.name(), v))
        .collect()
}

/// What one frame given verdict `counter` adds: it was seen, and counted there.
pub fn expect_one(counter: Counter) -> BTreeMap<&'static str, u64> {
    BTreeMap::from([(Counter::Seen.name(), 1), (counter.name(), 1)])
}

pub use xdpstack_testbed::Testbed;

/// The UDP port the tests steer.
pub const PORT: u16 = 9000;

/// Panic with a clear message unless running as root.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    #[expect(unsafe_code, reason = "libc::geteuid")]
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "these tests need root (XDP, AF_XDP, network namespaces): run `cargo xtask test` as root"
    );
}

/// A testbed name unique across concurrent tests and test processes:
/// `x` + tag (at most 4 characters) + pid + per-process counter.
pub fn unique_name(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    assert!(tag.len() <= 4, "tag too long");
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!("x{tag}{}-{n}", std::process::id() % 100_000);
    assert!(name.len() <= xdpstack_testbed::MAX_NAME_LEN, "{name}");
    name
}

/// A fresh testbed with `queues` queues, after checking for root.
pub fn testbed(tag: &str, queues: u32) -> Testbed {
    require_root();
    Testbed::create(&unique_name(tag), queues).expect("creating the testbed")
}

/// A one-queue testbed whose peer sends nothing of its own: IPv6 (router
/// solicitations, MLD reports, neighbour discovery) is off on the peer's end, so
/// that as long as no test sends IPv4 from a kernel socket there (no ARP either),
/// every frame the stack side sees is the test's and counters compare exactly.
pub fn quiet_testbed(tag: &str) -> Testbed {
    let bed = testbed(tag, 1);
    let sysctl = format!("net.ipv6.conf.{}.disable_ipv6=1", bed.peer_if());
    let out = bed
        .peer_command("sysctl")
        .args(["-qw", &sysctl])
        .output()
        .expect("sysctl");
    assert!(out.status.success(), "sysctl {sysctl}: {out:?}");
    bed
}

/// The `xdpstack` binary: `$XDPSTACK_BIN` (set by `cargo xtask test`), or the
/// workspace's debug build.
pub fn xdpstack_bin() -> PathBuf {
    let path = std::env::var_os("XDPSTACK_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/xdpstack")
        });
    assert!(
        path.exists(),
        "{} not found: run the tests through `cargo xtask test`, which builds it",
        path.display()
    );
    path
}

/// What a finished `xdpstack` run left.
#[derive(Debug)]
pub struct Finished {
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Finished {
    /// The JSON summary printed with `--json`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON object ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// An `xdpstack` process running in the testbed's stack namespace; ended by pid on
/// drop if still running.
#[derive(Debug)]
pub struct StackProcess {
    child: Child,
}

impl StackProcess {
    /// Start `xdpstack -i <stack interface> ARGS` in the stack namespace.
    pub fn start(bed: &Testbed, args: &[&str]) -> Self {
        Self::start_with_env(bed, args, &[])
    }

    /// Like [`StackProcess::start`], with extra environment variables.
    pub fn start_with_env(bed: &Testbed, args: &[&str], env: &[(&str, &str)]) -> Self {
        let child = bed
            .stack_command(xdpstack_bin())
            .arg("-i")
            .arg(bed.stack_if())
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting xdpstack");
        StackProcess { child }
    }

    /// The process id (`ip netns exec` execs, so this is xdpstack itself).
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits i32")
    }

    /// Wait until the stack has attached its XDP program (at most 15 s); on
    /// failure, report what the process said.
    pub fn wait_attached(&mut self, bed: &Testbed) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(id) = bed.stack_xdp_prog_id().expect("ip link show") {
                return id;
            }
            if let Ok(Some(_)) = self.child.try_wait() {
                let f = self.collect();
                panic!("xdpstack exited before attaching: {f:?}");
            }
            assert!(Instant::now() < deadline, "xdpstack did not attach in 15 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Send signal `sig` to the process.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the pid of our own child, which has not been reaped
        // (we hold the Child), so the pid cannot have been reused.
        #[expect(unsafe_code, reason = "libc::kill")]
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig})", self.pid());
    }

    fn collect(&mut self) -> Finished {
        let status = self.child.wait().expect("wait");
        let mut stdout = String::new();
        let mut stderr = String::new();
        if let Some(mut o) = self.child.stdout.take() {
            let _ = o.read_to_string(&mut stdout);
        }
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        Finished {
            status,
            stdout,
            stderr,
        }
    }

    /// Wait for the process to exit, at most `timeout` (then kill it and panic).
    pub fn wait(mut self, timeout: Duration) -> Finished {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return self.collect();
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let f = self.collect();
                panic!("xdpstack did not exit within {timeout:?}: {f:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for StackProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Send `count` datagrams with a kernel UDP socket from the peer namespace to the
/// stack side on `port`, paced (bursts of 32, 1 ms apart) so that neither the veth
/// ring nor the stack is overrun. Payload sizes cycle through `sizes`.
pub fn send_udp(bed: &Testbed, v6: bool, port: u16, count: usize, sizes: &[usize]) -> usize {
    let to = SocketAddr::new(Testbed::stack_addr(v6), port);
    bed.in_peer(|| {
        let bind: SocketAddr = if v6 { "[::]:0" } else { "0.0.0.0:0" }
            .parse()
            .expect("literal");
        let sock = UdpSocket::bind(bind).expect("bind in peer netns");
        let payload: Vec<u8> = (0..9000u32).map(|i| i as u8).collect();
        for i in 0..count {
            sock.send_to(&payload[..sizes[i % sizes.len()]], to)
                .expect("send_to");
            if i % 32 == 31 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        count
    })
    .expect("entering the peer netns")
}

/// Wait until no XDP program is attached to the stack side (at most 3 s); returns
/// the id still attached on timeout.
pub fn wait_detached(bed: &Testbed) -> Option<u32> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let id = bed.stack_xdp_prog_id().expect("ip link show");
        if id.is_none() || Instant::now() >= deadline {
            return id;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A directory of this test process, removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh, empty `xdpstack-TAG-PID` under the system's temporary directory.
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("xdpstack-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The frames of a classic pcap file (read with `pcap-file`: either byte order, µs
/// or ns timestamps), in file order. Panics on anything malformed, a cut record
/// included, on a link type other than Ethernet, and on a record cut short by a
/// snaplen.
pub fn pcap_frames(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut reader = pcap_file::pcap::PcapReader::new(bytes).expect("a pcap file header");
    assert_eq!(
        reader.header().datalink,
        pcap_file::DataLink::ETHERNET,
        "link type Ethernet"
    );
    let mut frames = Vec::new();
    while let Some(packet) = reader.next_packet() {
        let packet = packet.unwrap_or_else(|e| panic!("record {}: {e}", frames.len()));
        assert_eq!(
            packet.orig_len as usize,
            packet.data.len(),
            "record {} cut by a snaplen",
            frames.len()
        );
        frames.push(packet.data.into_owned());
    }
    frames
}

/// Run `cmd`; panic with its stderr unless it succeeds; its stdout.
pub fn run(cmd: &mut std::process::Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ip -n NS ARGS`; its stdout.
pub fn ip(ns: &str, args: &[&str]) -> String {
    run(std::process::Command::new("ip").args(["-n", ns]).args(args))
}

/// `ip -j [-s] link show dev DEV` in namespace `ns`: the link's JSON object.
pub fn link_json(ns: &str, dev: &str, stats: bool) -> serde_json::Value {
    let mut args = vec!["-j"];
    if stats {
        args.push("-s");
    }
    args.extend(["link", "show", "dev", dev]);
    let out = ip(ns, &args);
    let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j prints JSON");
    v[0].clone()
}

/// The interface counters the tests compare (`ip -s -j link`, 64-bit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkCounters {
    /// Frames sent.
    pub tx_packets: u64,
    /// Frames the device could not send (a veth: the other end's ring full).
    pub tx_dropped: u64,
    /// Frames dropped on receive.
    pub rx_dropped: u64,
}

/// The counters of `dev` in namespace `ns`.
pub fn link_counters(ns: &str, dev: &str) -> LinkCounters {
    let v = link_json(ns, dev, true);
    let get = |dir: &str, key: &str| {
        v["stats64"][dir][key]
            .as_u64()
            .unwrap_or_else(|| panic!("no stats64.{dir}.{key} in {v}"))
    };
    LinkCounters {
        tx_packets: get("tx", "packets"),
        tx_dropped: get("tx", "dropped"),
        rx_dropped: get("rx", "dropped"),
    }
}

/// The counter at `path` below `v` (a JSON summary); panics naming the path (a
/// renamed field?).
pub fn counter(v: &serde_json::Value, path: &[&str]) -> u64 {
    let mut at = v;
    for key in path {
        at = &at[*key];
    }
    at.as_u64()
        .unwrap_or_else(|| panic!("no counter `{}` in {v}", path.join(".")))
}

/// Whether the AF_XDP socket `fd` has a TX ring, as the kernel says: mapping the
/// TX ring's page offset (`XDP_PGOFF_TX_RING`) fails with EINVAL without one.
/// (`ss --xdp` would show it, but this kernel has no XDP_SOCKETS_DIAG.)
pub fn has_tx_ring(fd: std::os::fd::RawFd) -> bool {
    const XDP_PGOFF_TX_RING: libc::off_t = 0x8000_0000;
    #[expect(unsafe_code, reason = "libc::mmap of the socket's ring")]
    // SAFETY: a fresh shared mapping of one page of the socket's TX ring, which
    // nothing else in this process refers to; unmapped at once.
    unsafe {
        let addr = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd,
            XDP_PGOFF_TX_RING,
        );
        if addr == libc::MAP_FAILED {
            let err = std::io::Error::last_os_error();
            assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "mmap: {err}");
            return false;
        }
        libc::munmap(addr, 4096);
        true
    }
}
