//! `cargo xtask run` with no arguments: xdpstack on a veth testbed, fed by a stock
//! kernel UDP client in the peer namespace.

use std::{
    net::{SocketAddr, UdpSocket},
    path::Path,
    process::{Child, Command},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use xdpstack_testbed::Testbed;

const NAME: &str = "xsdemo";
const PORT: u16 = 9000;
const PER_FAMILY: usize = 1000;

/// Our child process, ended by pid if we leave early.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Send `count` datagrams from the peer namespace to `to`, paced in bursts so the
/// veth ring is never the bottleneck; payload sizes cycle from 18 bytes to the largest that
/// fits the MTU unfragmented.
fn send_from_peer(bed: &Testbed, to: SocketAddr, count: usize) -> Result<usize> {
    let sent = bed.in_peer(|| -> std::io::Result<usize> {
        let bind: SocketAddr = if to.is_ipv6() {
            "[::]:0".parse().expect("literal")
        } else {
            "0.0.0.0:0".parse().expect("literal")
        };
        let sock = UdpSocket::bind(bind)?;
        let payload = vec![0xa5u8; 1472];
        // The largest payloads that fit a 1500-byte MTU unfragmented.
        let max = if to.is_ipv6() { 1452 } else { 1472 };
        let sizes = [18usize, 64, 512, max];
        let mut sent = 0;
        for i in 0..count {
            let len = sizes[i % sizes.len()];
            sock.send_to(&payload[..len], to)?;
            sent += 1;
            if i % 32 == 31 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        Ok(sent)
    })??;
    Ok(sent)
}

pub fn demo(bin: &Path) -> Result<()> {
    if Testbed::exists(NAME) {
        eprintln!("==> removing testbed {NAME} left by an earlier run");
        Testbed::remove(NAME)?;
    }
    eprintln!("==> testbed {NAME}: netns {NAME}-stack <-> {NAME}-peer over veth, 2 queues");
    let bed = Testbed::create(NAME, 2)?;

    let total = 2 * PER_FAMILY;
    let capture = crate::root()
        .join("target")
        .join("demo")
        .join("xsdemo.pcapng");
    std::fs::create_dir_all(capture.parent().expect("has a parent"))?;
    eprintln!(
        "==> xdpstack -i {} --port {PORT} -c {total} -w {} --pcapng (in netns {})",
        bed.stack_if(),
        capture.display(),
        bed.stack_ns()
    );
    let child = bed
        .stack_command(bin)
        .args(["-i", &bed.stack_if(), "--port", &PORT.to_string()])
        .args([
            "-c",
            &total.to_string(),
            "--duration",
            "20",
            "--pcapng",
            "-w",
        ])
        .arg(&capture)
        .spawn()
        .with_context(|| format!("could not start {}", bin.display()))?;
    let mut child = ChildGuard(child);
    if bed.wait_xdp_attached(Duration::from_secs(10))?.is_none() {
        bail!("xdpstack did not attach within 10 s");
    }

    let started = Instant::now();
    let v4 = send_from_peer(
        &bed,
        SocketAddr::new(Testbed::stack_addr(false), PORT),
        PER_FAMILY,
    )?;
    let v6 = send_from_peer(
        &bed,
        SocketAddr::new(Testbed::stack_addr(true), PORT),
        PER_FAMILY,
    )?;
    eprintln!(
        "==> peer sent {v4} IPv4 + {v6} IPv6 UDP datagrams to port {PORT} with a kernel socket in {:.0} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    let ping = Command::new("ip")
        .args([
            "netns",
            "exec",
            &bed.peer_ns(),
            "ping",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "2",
        ])
        .arg(Testbed::stack_addr(false).to_string())
        .output()
        .context("could not run ping")?;
    eprintln!(
        "==> ping from the peer while xdpstack runs (not steered, passed to the kernel): {}",
        if ping.status.success() {
            "answered"
        } else {
            "FAILED"
        }
    );

    let status = child.0.wait().context("waiting for xdpstack")?;
    if !status.success() {
        bail!("xdpstack exited with {status}");
    }
    let attached = bed.stack_xdp_prog_id()?;
    eprintln!(
        "==> after exit: {}",
        match attached {
            None => "no XDP program left on the interface".to_string(),
            Some(id) => format!("XDP program {id} STILL ATTACHED"),
        }
    );
    drop(bed);
    eprintln!("==> testbed {NAME} removed");
    if !ping.status.success() || attached.is_some() {
        bail!("demo failed");
    }
    eprintln!(
        "==> the capture is {}; look at it with:\n    tshark -r {}",
        capture.display(),
        capture.display()
    );
    Ok(())
}
