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

/// What the peer's kernel UDP client saw.
struct Echoes {
    sent: usize,
    echoed: usize,
}

/// Send `count` distinct datagrams from a kernel UDP socket in the peer namespace
/// to `to`, in bursts of 32 paced [`BURST_GAP`] apart (so that the live
/// statistics show the traffic flowing: unpaced, it is over before the first
/// interval), and read the echoes of each burst back, checking each byte for
/// byte. Payload sizes cycle from 18 bytes to the largest that fits the MTU
/// unfragmented.
/// The pause after each burst of 32 datagrams: 2000 datagrams take about 0.4 s.
const BURST_GAP: Duration = Duration::from_millis(6);

fn echo_from_peer(bed: &Testbed, to: SocketAddr, count: usize) -> Result<Echoes> {
    let echoes = bed.in_peer(|| -> std::io::Result<Echoes> {
        let bind: SocketAddr = if to.is_ipv6() {
            "[::]:0".parse().expect("literal")
        } else {
            "0.0.0.0:0".parse().expect("literal")
        };
        let sock = UdpSocket::bind(bind)?;
        sock.set_read_timeout(Some(Duration::from_millis(200)))?;
        // The largest payloads that fit a 1500-byte MTU unfragmented.
        let max = if to.is_ipv6() { 1452 } else { 1472 };
        let sizes = [18usize, 64, 512, max];
        let payload = |i: usize| -> Vec<u8> {
            let mut p = format!("{i:06} ").into_bytes();
            p.resize(sizes[i % sizes.len()], b'a' + (i % 26) as u8);
            p
        };
        let (mut sent, mut echoed) = (0, 0);
        let mut buf = [0u8; 2048];
        for burst in (0..count).collect::<Vec<_>>().chunks(32) {
            let mut waiting: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
            for &i in burst {
                let p = payload(i);
                sock.send_to(&p, to)?;
                waiting.insert(p);
                sent += 1;
            }
            std::thread::sleep(BURST_GAP);
            while !waiting.is_empty() {
                match sock.recv_from(&mut buf) {
                    Ok((n, from)) if from == to && waiting.remove(&buf[..n]) => echoed += 1,
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(Echoes { sent, echoed })
    })??;
    Ok(echoes)
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
        "==> xdpstack -i {} --port {PORT} --app echo -c {total} --stats 0.1 -w {} --pcapng (in netns {})",
        bed.stack_if(),
        capture.display(),
        bed.stack_ns()
    );
    let child = bed
        .stack_command(bin)
        .args([
            "-i",
            &bed.stack_if(),
            "--port",
            &PORT.to_string(),
            "--app",
            "echo",
        ])
        .args([
            "-c",
            &total.to_string(),
            "--duration",
            "20",
            "--pcapng",
            // Live statistics while the demo traffic runs.
            "--stats",
            "0.1",
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
    let v4 = echo_from_peer(
        &bed,
        SocketAddr::new(Testbed::stack_addr(false), PORT),
        PER_FAMILY,
    )?;
    let v6 = echo_from_peer(
        &bed,
        SocketAddr::new(Testbed::stack_addr(true), PORT),
        PER_FAMILY,
    )?;
    eprintln!(
        "==> peer sent {} IPv4 + {} IPv6 UDP datagrams to port {PORT} with a kernel socket, \
         got {} + {} echoes back byte for byte, in {:.0} ms",
        v4.sent,
        v6.sent,
        v4.echoed,
        v6.echoed,
        started.elapsed().as_secs_f64() * 1e3
    );
    let all_echoed = v4.echoed == v4.sent && v6.echoed == v6.sent;
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
    if !ping.status.success() || attached.is_some() || !all_echoed {
        bail!("demo failed");
    }
    // What Wireshark's own reader makes of the file.
    match Command::new("tshark").arg("-r").arg(&capture).output() {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            let lines: Vec<&str> = text.lines().collect();
            eprintln!(
                "==> tshark reads {} packets from the capture; the first two:",
                lines.len()
            );
            for l in lines.iter().take(2) {
                eprintln!("    {}", l.trim());
            }
        }
        Ok(out) => bail!(
            "tshark could not read the capture: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(_) => eprintln!("==> (tshark is not installed: `cargo xtask setup` installs it)"),
    }
    eprintln!(
        "==> the capture is {}; look at it with:\n    tshark -r {}",
        capture.display(),
        capture.display()
    );
    Ok(())
}
