//! Create/teardown loop, as libxdp's and the kernel's AF_XDP tests do it: sockets
//! (with a TX ring on even queues, receive-only on odd ones) and UMEMs on every queue of a 4-queue veth are created, registered in the
//! XSKMAP, given their fill rings, received on, and dropped, over and over, with
//! the XDP program itself reloaded every few rounds. Mapped and resident memory
//! (each round maps 4 x 2 MiB of UMEM, which the kernel pins), open file
//! descriptors and the kernel's BPF objects must stay flat.
//!
//! The only test in its binary, so the process-wide figures are its own. Needs
//! root; run through `cargo xtask test`.

use std::time::{Duration, Instant};

use aya::maps::MapInfo;
use xdp_ebpf::SteerMode;
use xdpstack::{
    ring::{Rings, RxDesc},
    sys::{
        loader::{XdpModeChoice, XdpProgram},
        xsk::{XskConfig, XskSocket, ZeroCopy},
    },
};
use xdpstack_tests::{PORT, send_udp, testbed};

const QUEUES: u32 = 4;
const ROUNDS: usize = 60;
const RELOAD_EVERY: usize = 10;

/// A field of /proc/self/status in kB (`VmRSS`, `VmSize`).
fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// The ids of the BPF maps this process holds open (from /proc/self/fdinfo).
fn map_ids_held() -> Vec<u32> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fdinfo").expect("fdinfo") {
        let Ok(entry) = entry else { continue };
        let Ok(info) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        if let Some(id) = info
            .lines()
            .find_map(|l| l.strip_prefix("map_id:"))
            .and_then(|v| v.trim().parse().ok())
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    ids
}

#[derive(Debug, Clone, Copy)]
struct Figures {
    rss_kb: u64,
    mapped_kb: u64,
    fds: usize,
    maps: usize,
}

fn figures() -> Figures {
    Figures {
        rss_kb: status_kb("VmRSS"),
        mapped_kb: status_kb("VmSize"),
        fds: open_fds(),
        maps: map_ids_held().len(),
    }
}

#[test]
fn sockets_and_umems_come_and_go_without_leaking() {
    let bed = testbed("tdl", QUEUES);
    let iface = bed.stack_if();
    let config = XskConfig {
        frame_count: 1024,
        frame_size: 2048,
        ring_size: 512,
        zero_copy: ZeroCopy::Off,
        tx_ring: true,
        multi_buffer: false,
    };
    let (first, last, received, freed_maps) = bed
        .in_stack(|| {
            let mut first = None;
            let mut received = 0u64;
            let mut program: Option<XdpProgram> = None;
            let mut old_maps: Vec<u32> = Vec::new();
            let mut freed_maps = 0usize;
            for round in 0..ROUNDS {
                if round % RELOAD_EVERY == 0 {
                    // Drop the old program first: its maps must then be freed.
                    if program.take().is_some() {
                        // The kernel frees maps in deferred work (RCU, then a
                        // workqueue): seconds on a loaded machine (CI's, with the
                        // other tests running, took more than 5). A leak never
                        // frees them, so a generous bound still finds one.
                        let deadline = Instant::now() + Duration::from_secs(30);
                        while old_maps.iter().any(|&id| MapInfo::from_id(id).is_ok()) {
                            assert!(
                                Instant::now() < deadline,
                                "round {round}: maps {old_maps:?} not freed"
                            );
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        freed_maps += old_maps.len();
                    }
                    let mut p = XdpProgram::load().expect("load");
                    p.configure(SteerMode::Udp, &[PORT]).expect("configure");
                    p.attach(&iface, XdpModeChoice::Drv).expect("attach");
                    old_maps = map_ids_held();
                    program = Some(p);
                }
                let program = program.as_mut().expect("loaded");
                let mut sockets = Vec::new();
                for queue in 0..QUEUES {
                    // Odd queues receive only: the libxdp-made sockets without
                    // a TX ring must come and go without leaking too.
                    let config = XskConfig {
                        tx_ring: queue % 2 == 0,
                        ..config
                    };
                    let (mut socket, mut pool) =
                        XskSocket::open(&iface, queue, &config).expect("socket");
                    assert_eq!(socket.has_tx_ring(), config.tx_ring);
                    assert_eq!(
                        xdpstack_tests::has_tx_ring(socket.raw_fd()),
                        config.tx_ring,
                        "queue {queue}: the kernel's word on the TX ring"
                    );
                    let addrs: Vec<u64> = pool
                        .take_all()
                        .into_iter()
                        .map(|f| f.into_addr(&pool))
                        .collect();
                    assert!(socket.fill_capacity(addrs.len() as u32) >= addrs.len() as u32);
                    socket.fill_produce(&addrs);
                    program
                        .register_socket(queue, socket.raw_fd())
                        .expect("register");
                    sockets.push((socket, pool));
                }
                // Some traffic each round, so the rings and UMEMs are really used
                // (the veth puts it on the queue of the sending CPU).
                send_udp(&bed, false, PORT, 16, &[64]);
                let deadline = Instant::now() + Duration::from_secs(2);
                let mut descs = vec![RxDesc::default(); 64];
                let mut got = 0;
                while got < 16 && Instant::now() < deadline {
                    for (socket, _) in &mut sockets {
                        got += socket.rx_consume(&mut descs);
                    }
                }
                assert_eq!(got, 16, "round {round}: every datagram reached a socket");
                received += got as u64;
                for queue in 0..QUEUES {
                    program.unregister_socket(queue).expect("unregister");
                }
                drop(sockets);
                if round == RELOAD_EVERY {
                    // Warmed up: allocator arenas, thread stacks and caches exist.
                    first = Some(figures());
                }
            }
            drop(program);
            (
                first.expect("warm-up figures"),
                figures(),
                received,
                freed_maps,
            )
        })
        .expect("entering the stack netns");
    eprintln!(
        "{ROUNDS} rounds x {QUEUES} sockets: {received} datagrams; after warm-up {first:?}, \
         at the end {last:?}; {freed_maps} maps freed on reloads"
    );
    assert_eq!(received, (ROUNDS * 16) as u64);
    // Less than one UMEM (2 MiB) of growth over 50 rounds of 4 UMEMs each.
    assert!(
        last.mapped_kb < first.mapped_kb + 1024,
        "mapped memory grew (a UMEM not unmapped?): {first:?} -> {last:?}"
    );
    assert!(
        last.rss_kb < first.rss_kb + 1024,
        "resident memory grew: {first:?} -> {last:?}"
    );
    assert!(
        last.fds <= first.fds,
        "descriptors leaked: {first:?} -> {last:?}"
    );
    assert_eq!(
        last.maps, 0,
        "BPF maps still open after the program was dropped"
    );
    assert!(freed_maps > 0);
}
