//! Per-frame cost of the UDP receive path: `udp::parse` (Ethernet, IP and UDP
//! headers, IPv4 header checksum, UDP checksum over the whole payload) on the
//! smallest and the largest frames, and the in-place echo reply (swaps and both
//! checksums recomputed). Frames are 64 and 1514 bytes without the FCS.
//!
//! `cargo bench -p xdpstack --bench udp_parse`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use etherparse::UdpHeader;
use xdp_ebpf::corpus::{IpVersion, udp_frame};
use xdpstack::wire::{make_reply_in_place, parse};

/// UDP payload bytes that make a frame of `frame_len` bytes.
fn payload_len(ip: IpVersion, frame_len: usize) -> usize {
    let headers = 14
        + 8
        + match ip {
            IpVersion::V4 => 20,
            IpVersion::V6 => 40,
        };
    frame_len - headers
}

fn frame(ip: IpVersion, frame_len: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..payload_len(ip, frame_len))
        .map(|i| (i * 7) as u8)
        .collect();
    let f = udp_frame(ip, &[], 40000, 9000, &payload);
    assert_eq!(f.len(), frame_len);
    f
}

fn bench(c: &mut Criterion) {
    let cases = [
        ("v4", IpVersion::V4, 64),
        ("v4", IpVersion::V4, 1514),
        ("v6", IpVersion::V6, 64),
        ("v6", IpVersion::V6, 1514),
    ];

    let mut group = c.benchmark_group("udp_parse");
    group.throughput(Throughput::Elements(1));
    for (name, ip, len) in cases {
        let f = frame(ip, len);
        assert!(parse(&f).is_ok());
        group.bench_function(format!("{name}/{len}"), |b| {
            b.iter(|| parse(black_box(&f)).map(|p| p.payload.len()))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("udp_reply_in_place");
    group.throughput(Throughput::Elements(1));
    for (name, ip, len) in cases {
        let mut f = frame(ip, len);
        let layout = parse(&f).unwrap().layout;
        // The reply of the reply is the request again (TTL 64, no padding at
        // these sizes), so one buffer serves every iteration.
        group.bench_function(format!("{name}/{len}"), |b| {
            b.iter(|| make_reply_in_place(black_box(&mut f), &layout))
        });
        assert!(parse(&f).is_ok());
    }
    group.finish();

    // The UDP checksum alone (etherparse's sum, which `parse` uses), to show its
    // share of the 1514-byte figures.
    let mut group = c.benchmark_group("udp_checksum");
    group.throughput(Throughput::Elements(1));
    let payload = vec![0x5au8; 1472];
    let header = UdpHeader {
        source_port: 40000,
        destination_port: 9000,
        length: 1480,
        checksum: 0,
    };
    group.bench_function("v4/1472", |b| {
        b.iter(|| {
            header.calc_checksum_ipv4_raw([198, 18, 0, 1], [198, 19, 0, 2], black_box(&payload))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
