//! The datagram API in one file: a UDP service on AF_XDP.
//!
//! Port P answers every datagram with its payload in upper case (a reply written
//! into a spare UMEM frame); port P+1 echoes (the reply is built in the received
//! frame itself); a second handler runs on its own thread and logs every
//! hundredth datagram to P+2. Ctrl-C ends it and prints the stack's summary.
//!
//! ```text
//! cargo build --example udp_handler
//! sudo ip netns exec NS target/debug/examples/udp_handler -i IFACE --port 9000
//! # from the peer:  echo hello | nc -u -w1 ADDRESS 9000   ->  HELLO
//! ```
//!
//! On the veth testbed of `cargo xtask testbed up --name demo`, IFACE is `demos`
//! in namespace `demo-stack`, and ADDRESS is 198.18.0.1 from `demo-peer`.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use clap::Parser;
use xdpstack::{
    app::{Datagram, Echo, UdpConsumer},
    poller::Overflow,
    stack::{self, ConsumerSpec, QueueContext, StackOptions},
    tx::Transmitter,
};

/// A UDP service on AF_XDP (an example of the xdpstack library).
#[derive(Parser)]
struct Args {
    /// Interface.
    #[arg(short = 'i')]
    iface: String,
    /// First of the three ports.
    #[arg(long, default_value_t = 9000)]
    port: u16,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let base = args.port;
    anyhow::ensure!(base <= u16::MAX - 2, "--port leaves no room for P+2");
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    ctrlc::set_handler(move || s.store(true, Ordering::Relaxed))?;

    let opts = StackOptions {
        iface: args.iface,
        ports: vec![base, base + 1, base + 2],
        ..StackOptions::default()
    };
    // Called once per RX queue: every queue gets its own consumers and its own
    // transmitter (replies leave on the queue the request came in on).
    let consumers = |ctx: &mut QueueContext<'_>| {
        let queue = ctx.queue();
        // Inline: runs on the queue's poller thread, to completion; the
        // fastest, as long as the handler is quick.
        let inline = UdpConsumer::new(ctx.transmitter())
            .route([base], |d: &Datagram<'_>, tx: &Transmitter| {
                let upper = d.payload.to_ascii_uppercase();
                // Failures (queue full, no frame) are counted in the summary.
                let _ = d.reply(tx, &upper);
            })
            .route([base + 1], Echo);
        // Threaded: a slow handler gets its own thread behind a bounded queue;
        // a full queue drops (counted) and never stalls the poller. Every
        // consumer sees every frame (as every packet tap sees every skb): this
        // one counts the datagrams to other ports as unmatched.
        let mut seen = 0u64;
        let logger = UdpConsumer::new(ctx.transmitter()).route(
            [base + 2],
            move |d: &Datagram<'_>, _tx: &Transmitter| {
                seen += 1;
                if seen % 100 == 1 {
                    println!(
                        "queue {queue}: datagram {seen} from {}: {} bytes",
                        d.src,
                        d.payload.len()
                    );
                }
            },
        );
        vec![
            ConsumerSpec::Inline {
                name: "service".into(),
                consumer: Box::new(inline),
            },
            ConsumerSpec::Threaded {
                name: "logger".into(),
                consumer: Box::new(logger),
                capacity: 1024,
                overflow: Overflow::Drop,
            },
        ]
    };
    // No live statistics (`opts.stats_interval` is unset): nothing to report.
    let summary = stack::run(&opts, stop, &consumers, &mut |_| {})?;
    println!(
        "{} packets, {} bytes in {:.1} s",
        summary.packets, summary.bytes, summary.seconds
    );
    for q in &summary.queues {
        println!("  queue {}: {:?}", q.queue, q.counters);
    }
    Ok(())
}
