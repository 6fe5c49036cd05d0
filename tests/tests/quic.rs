//! QUIC over AF_XDP: quinn's own client, on a kernel UDP socket in the client
//! namespace of a routed testbed, against `examples/quic_echo` on the stack.
//! 50 connections each send 1 MiB over four bidirectional streams and must get
//! every byte back in order; the server's pcapng capture of the same run must
//! decode as QUIC in both directions (tshark); the server's report must show
//! nothing lost or refused. Needs root; run through `cargo xtask test`, which
//! builds the example.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, mpsc},
    time::{Duration, Instant},
};

use quinn::crypto::rustls::QuicClientConfig;
use rustls::pki_types::{CertificateDer, pem::PemObject};
use xdpstack_testbed::{RoutedTestbed, routed::STACK_V4};
use xdpstack_tests::{TempDir, require_root, unique_name, xdpstack_bin};

const PORT: u16 = 4433;
const CONNECTIONS: usize = 50;
const STREAMS: usize = 4;
const PER_STREAM: usize = 256 * 1024;
/// Connections at once.
const PARALLEL: usize = 10;

/// The example beside the `xdpstack` binary (`cargo xtask test` builds both).
fn quic_echo_bin() -> PathBuf {
    let bin = xdpstack_bin();
    let path = bin
        .parent()
        .expect("the binary's directory")
        .join("examples/quic_echo");
    assert!(
        path.exists(),
        "{} not found: run the tests through `cargo xtask test`, which builds it",
        path.display()
    );
    path
}

/// The server; killed on drop if the test failed before it stopped it.
struct Server(Option<Child>);

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The bytes of stream `s` of connection `c`: distinct per stream, so that a
/// crossed stream shows.
fn pattern(c: usize, s: usize) -> Vec<u8> {
    (0..PER_STREAM)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .wrapping_add((c * STREAMS + s) as u32) as u8
        })
        .collect()
}

async fn one_connection(
    endpoint: quinn::Endpoint,
    server: SocketAddr,
    c: usize,
) -> anyhow::Result<()> {
    let conn = endpoint.connect(server, &STACK_V4.to_string())?.await?;
    let mut streams = Vec::new();
    for s in 0..STREAMS {
        let (mut send, mut recv) = conn.open_bi().await?;
        streams.push(tokio::spawn(async move {
            let data = pattern(c, s);
            let writer = async {
                send.write_all(&data).await?;
                send.finish()?;
                anyhow::Ok(())
            };
            let reader = async { anyhow::Ok(recv.read_to_end(2 * PER_STREAM).await?) };
            let ((), back) = tokio::try_join!(writer, reader)?;
            anyhow::ensure!(
                back == data,
                "connection {c} stream {s}: echo differs ({} bytes back)",
                back.len()
            );
            anyhow::Ok(())
        }));
    }
    for s in streams {
        s.await??;
    }
    conn.close(0u32.into(), b"done");
    Ok(())
}

#[test]
fn quinn_completes_50_connections_against_quic_echo_and_the_capture_decodes() {
    require_root();
    let bed = RoutedTestbed::create(&unique_name("qc")).expect("creating the routed testbed");
    let dir = TempDir::new("quic");
    let cert = dir.0.join("echo.pem");
    let capture = dir.0.join("quic.pcapng");
    let mut child = bed
        .stack_command(quic_echo_bin())
        .args(["-i", &bed.stack_if(), "--port", &PORT.to_string(), "--json"])
        .arg("--cert-out")
        .arg(&cert)
        .arg("-w")
        .arg(&capture)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting quic_echo");
    let stderr = child.stderr.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let mut server = Server(Some(child));
    // Its standard error, line by line: the test waits for "listening".
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut log = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                let ready = line.starts_with("listening on");
                log.push(line);
                if ready {
                    break;
                }
            }
            Err(_) => panic!("quic_echo did not start: {log:#?}"),
        }
    }

    let pem = std::fs::read(&cert).expect("the certificate quic_echo wrote");
    let started = Instant::now();
    let outcome = bed
        .in_client(|| -> anyhow::Result<()> {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(CertificateDer::from_pem_slice(&pem)?)?;
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let mut tls = rustls::ClientConfig::builder_with_provider(provider)
                    .with_protocol_versions(&[&rustls::version::TLS13])?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                tls.alpn_protocols = vec![b"echo".to_vec()];
                let mut endpoint = quinn::Endpoint::client("0.0.0.0:0".parse()?)?;
                endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(
                    QuicClientConfig::try_from(tls)?,
                )));
                let server = SocketAddr::new(STACK_V4.into(), PORT);
                let run = async {
                    for batch in (0..CONNECTIONS).collect::<Vec<_>>().chunks(PARALLEL) {
                        let tasks: Vec<_> = batch
                            .iter()
                            .map(|&c| tokio::spawn(one_connection(endpoint.clone(), server, c)))
                            .collect();
                        for t in tasks {
                            t.await??;
                        }
                    }
                    anyhow::Ok(())
                };
                tokio::time::timeout(Duration::from_secs(240), run)
                    .await
                    .map_err(|_| anyhow::anyhow!("the connections did not finish in 240 s"))??;
                endpoint.wait_idle().await;
                anyhow::Ok(())
            })
        })
        .expect("entering the client's namespace");
    let took = started.elapsed();
    // Stop the server (SIGINT, as Ctrl-C) and read its report.
    let child = server.0.take().expect("running");
    // SAFETY: kill(2) on the child's pid, which has not been reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = child.wait_with_output().expect("quic_echo's exit");
    log.extend(lines.try_iter());
    if let Err(e) = outcome {
        panic!("the client failed: {e:#}\nserver: {log:#?}");
    }
    assert!(out.status.success(), "quic_echo: {:?} {log:#?}", out.status);
    eprintln!(
        "{CONNECTIONS} connections x {} KiB in {took:.1?}",
        STREAMS * PER_STREAM / 1024
    );
    let mut json = String::new();
    std::io::Read::read_to_string(&mut { stdout }, &mut json).unwrap();
    let report: serde_json::Value = serde_json::from_str(json.trim()).expect("the JSON report");
    let total = |field: &str| -> u64 {
        report["queues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q["tx"][field].as_u64().unwrap())
            .sum()
    };
    for field in [
        "no_route",
        "other_interface",
        "unresolved",
        "kernel_dropped",
    ] {
        assert_eq!(total(field), 0, "{field}: {report}");
    }
    assert_eq!(total("sent"), total("send_to"), "{report}");
    assert_eq!(total("queued"), total("send_to"), "{report}");
    // Every datagram to the port reached the socket or was dropped at its
    // full queue, counted (QUIC retransmits; a kernel socket's full buffer
    // drops the same way).
    let socket = &report["sockets"][0];
    assert_eq!(
        socket["received"].as_u64().unwrap() + socket["full"].as_u64().unwrap(),
        report["udp"]["datagrams"].as_u64().unwrap(),
        "{report}"
    );
    assert_eq!(socket["taken"], socket["received"], "{report}");
    let summary = log.last().cloned().unwrap_or_default();
    assert!(
        summary.starts_with(&format!(
            "{CONNECTIONS} connections, {} streams",
            CONNECTIONS * STREAMS
        )),
        "{summary}"
    );

    // The capture: QUIC both ways, as tshark decodes it.
    let fields = Command::new("tshark")
        .args(["-r"])
        .arg(&capture)
        .args([
            "-d",
            &format!("udp.port=={PORT},quic"),
            "-Y",
            "quic",
            "-T",
            "fields",
            "-e",
            "ip.src",
            "-e",
            "quic.long.packet_type",
        ])
        .output()
        .expect("tshark");
    assert!(
        fields.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&fields.stderr)
    );
    let text = String::from_utf8_lossy(&fields.stdout);
    let from_stack = text
        .lines()
        .filter(|l| l.starts_with(&STACK_V4.to_string()))
        .count();
    let to_stack = text.lines().count() - from_stack;
    assert!(
        from_stack > 1000 && to_stack > 1000,
        "QUIC packets: {from_stack} from the stack, {to_stack} to it"
    );
    // Every connection's handshake is there: an Initial from each side.
    let initials = |from_stack: bool| {
        text.lines()
            .filter(|l| l.starts_with(&STACK_V4.to_string()) == from_stack)
            .filter(|l| {
                l.split('\t')
                    .nth(1)
                    .is_some_and(|t| t.split(',').any(|t| t == "0"))
            })
            .count()
    };
    assert!(
        initials(false) >= CONNECTIONS,
        "client Initials: {}",
        initials(false)
    );
    assert!(
        initials(true) >= CONNECTIONS,
        "server Initials: {}",
        initials(true)
    );
}
