//! QUIC over AF_XDP: a quinn server on the socket API that echoes every
//! bidirectional stream back and then closes it (ALPN `echo`).
//!
//! quinn runs unchanged (its TLS, loss recovery and congestion control); only
//! its socket is ours (`xdpstack::app::quinn::QuinnSocket`): datagrams come
//! from the stack's RX queues and leave on its TX rings, routed through the
//! kernel's tables. The certificate is self-signed for the interface's
//! addresses; `--cert-out` writes it (PEM) for clients to trust. `-w FILE`
//! captures the server's traffic, both directions (pcapng by the `.pcapng`
//! extension, else pcap).
//!
//! ```text
//! cargo build --release --example quic_echo
//! sudo ip netns exec NS target/release/examples/quic_echo -i IFACE --port 4433 \
//!     --cert-out /tmp/echo.pem -w /tmp/quic.pcapng
//! ```
//!
//! It prints `listening on ...` once attached; Ctrl-C (or `--duration`) ends
//! it with a summary (`--json`: the stack's whole report as JSON).

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use clap::Parser;
use quinn::crypto::rustls::QuicServerConfig;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use xdpstack::{
    app::quinn::QuinnSocket,
    capture::{CaptureConfig, Format, Output},
    stack::{
        StackOptions,
        net::Network,
        service::{AppKind, ServiceOptions},
    },
    sys::ifinfo,
};

/// A QUIC echo server on AF_XDP (an example of the xdpstack library).
#[derive(Parser)]
struct Args {
    /// Interface.
    #[arg(short = 'i')]
    iface: String,
    /// UDP port.
    #[arg(long, default_value_t = 4433)]
    port: u16,
    /// Write the self-signed certificate (PEM) here.
    #[arg(long)]
    cert_out: Option<PathBuf>,
    /// Capture the server's traffic, both directions (pcapng if FILE ends in
    /// .pcapng).
    #[arg(short = 'w')]
    write: Option<PathBuf>,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Print the stack's report as JSON at the end.
    #[arg(long)]
    json: bool,
    /// Live statistics every S seconds (standard error).
    #[arg(long, value_name = "S")]
    stats: Option<f64>,
}

/// What the server did.
#[derive(Debug, Default)]
struct Counts {
    connections: AtomicU64,
    streams: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    // The certificate names the interface's addresses (and localhost).
    let mut names: Vec<String> = ifinfo::addresses(&args.iface)
        .with_context(|| format!("the addresses of {}", args.iface))?
        .into_iter()
        .map(|a| a.to_string())
        .collect();
    names.push("localhost".into());
    let cert = rcgen::generate_simple_self_signed(names.clone())?;
    if let Some(path) = &args.cert_out {
        std::fs::write(path, cert.cert.pem())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)?;
    tls.alpn_protocols = vec![b"echo".to_vec()];
    let server = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls)?));

    let opts = StackOptions {
        iface: args.iface.clone(),
        ..StackOptions::default()
    };
    let mut net = Network::open(opts)?;
    if let Some(path) = &args.write {
        let mut capture = CaptureConfig::new(Output::File(path.clone()));
        if path.extension().is_some_and(|e| e == "pcapng") {
            capture.format = Format::PcapNg;
        }
        net = net.with_service(ServiceOptions {
            app: AppKind::None,
            capture: Some(capture),
            ..ServiceOptions::default()
        });
    }
    let socket = net.bind(args.port)?;
    if let Some(every) = args.stats {
        net = net.on_interval(Duration::from_secs_f64(every.max(0.1)), |iv| {
            for q in &iv.queues {
                let t = &q.tx;
                eprintln!(
                    "queue {}: {:.0} pkt/s in; socket_received {} socket_full {}; \
                     send_to {} sent {} held {} no_route {} unresolved {} too_large {} \
                     queue_full {} no_frame {}",
                    q.queue,
                    q.pps,
                    q.counters.get("socket_received").copied().unwrap_or(0),
                    q.counters.get("socket_full").copied().unwrap_or(0),
                    t.send_to,
                    t.sent,
                    t.held,
                    t.no_route,
                    t.unresolved,
                    t.too_large,
                    t.queue_full,
                    t.no_frame,
                );
            }
        });
    }
    let running = net.start()?;
    let endpoint = quinn::Endpoint::new_with_abstract_socket(
        quinn::EndpointConfig::default(),
        Some(server),
        QuinnSocket::new(socket.clone()),
        Arc::new(quinn::TokioRuntime),
    )?;
    eprintln!(
        "listening on {} port {} (QUIC, ALPN echo; certificate for {})",
        args.iface,
        args.port,
        names.join(", ")
    );

    let stop = Arc::new(tokio::sync::Notify::new());
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.notify_one())?;
    }
    if let Some(s) = args.duration {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs_f64(s.max(0.0))).await;
            stop.notify_one();
        });
    }
    let counts = Arc::new(Counts::default());
    loop {
        tokio::select! {
            () = stop.notified() => break,
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                tokio::spawn(connection(incoming, counts.clone()));
            }
        }
    }
    endpoint.close(0u32.into(), b"server stopping");
    // Let the close frames go out before the stack stops.
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
    drop(endpoint);
    let report = running.stop()?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    let tx = report
        .summary
        .queues
        .iter()
        .fold(xdpstack::tx::TxSummary::default(), |mut t, q| {
            t.send_to += q.tx.send_to;
            t.sent += q.tx.sent;
            t.no_route += q.tx.no_route;
            t.unresolved += q.tx.unresolved;
            t.too_large += q.tx.too_large;
            t
        });
    eprintln!(
        "{} connections, {} streams, {} bytes echoed, {} errors; socket: {} received, {} dropped (queue full); \
         sent {} of {} queued (no_route {}, unresolved {}, too_large {})",
        counts.connections.load(Ordering::Relaxed),
        counts.streams.load(Ordering::Relaxed),
        counts.bytes.load(Ordering::Relaxed),
        counts.errors.load(Ordering::Relaxed),
        report.sockets[0].received,
        report.sockets[0].full,
        tx.sent,
        tx.send_to,
        tx.no_route,
        tx.unresolved,
        tx.too_large,
    );
    Ok(())
}

/// One connection: every bidirectional stream is echoed back and finished.
async fn connection(incoming: quinn::Incoming, counts: Arc<Counts>) {
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(error = %e, "handshake failed");
            counts.errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    counts.connections.fetch_add(1, Ordering::Relaxed);
    let peer: SocketAddr = conn.remote_address();
    loop {
        match conn.accept_bi().await {
            Ok((send, recv)) => {
                counts.streams.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(echo(send, recv, counts.clone()));
            }
            Err(e) => {
                tracing::debug!(%peer, error = %e, "connection ended");
                return;
            }
        }
    }
}

/// Echo one stream until its end, then finish ours.
async fn echo(mut send: quinn::SendStream, mut recv: quinn::RecvStream, counts: Arc<Counts>) {
    let result: anyhow::Result<()> = async {
        while let Some(chunk) = recv.read_chunk(64 * 1024, true).await? {
            counts
                .bytes
                .fetch_add(chunk.bytes.len() as u64, Ordering::Relaxed);
            send.write_all(&chunk.bytes).await?;
        }
        send.finish()?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        tracing::debug!(error = %e, "stream failed");
        counts.errors.fetch_add(1, Ordering::Relaxed);
    }
}
