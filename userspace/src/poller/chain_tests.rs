//! Multi-buffer packets over the simulated rings: chains of 2..5 descriptors,
//! chains cut by the end of a batch or whose tail arrives in a later round,
//! chains the kernel should never make, echo and send of packets larger than
//! a frame, and frame conservation with chains cut at every point.

use std::sync::{Arc, Mutex};

use proptest::prelude::*;

use super::{
    tests::{NOW, check_conservation, poller},
    tx_tests::{Bed, FRAME, assert_answers, echo_consumer, request},
    *,
};
use crate::{
    app::{Datagram, UdpConsumer},
    ring::{
        XDP_PKT_CONTD,
        sim::{SIM_HEADROOM, SimRings},
    },
    tx::MAX_TX_SEGMENTS,
    wire::Addressing,
};

/// Bytes a buffer of the simulated kernel holds (a frame minus its headroom).
const BUF: usize = (FRAME as u64 - SIM_HEADROOM) as usize;

fn mb_bed(frames: u32) -> Bed {
    Bed::with_config(
        frames,
        256,
        PollerConfig {
            multi_buffer: true,
            ..PollerConfig::default()
        },
    )
}

impl Bed {
    /// `packet` arrives in buffers of `lens` bytes (their sum is its length),
    /// written into the next frames of the fill ring as the kernel would.
    fn arrive_in(&mut self, packet: &[u8], lens: &[u32]) {
        assert_eq!(lens.iter().sum::<u32>() as usize, packet.len());
        let addrs = self.p.rings().next_fill_addrs(lens.len());
        assert_eq!(addrs.len(), lens.len(), "fill ring too short");
        let mut at = 0;
        for (&addr, &len) in addrs.iter().zip(lens) {
            let chunk = &packet[at..at + len as usize];
            // SAFETY: the frame is in the simulated kernel's fill ring: user
            // space holds no view or handle of it, so the "NIC" may write it.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    chunk.as_ptr(),
                    self.base.add((addr + SIM_HEADROOM) as usize),
                    chunk.len(),
                );
            }
            at += len as usize;
        }
        assert!(self.p.rings_mut().arrive_split(lens));
    }

    /// `packet` arrives in buffers as full as the kernel's copy mode makes them.
    fn arrive_split(&mut self, packet: &[u8]) {
        let lens: Vec<u32> = packet.chunks(BUF).map(|c| c.len() as u32).collect();
        self.arrive_in(packet, &lens);
    }

    /// The packets sent so far, each joined from its descriptors.
    fn sent_packets(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut packet = Vec::new();
        for d in self.p.rings().sent() {
            // SAFETY: the frame sits on the simulated completion ring (the
            // poller takes it back only in its next round): nobody writes it.
            let bytes = unsafe {
                std::slice::from_raw_parts(self.base.add(d.addr as usize), d.len as usize)
            };
            packet.extend_from_slice(bytes);
            if d.options & XDP_PKT_CONTD == 0 {
                out.push(std::mem::take(&mut packet));
            }
        }
        assert!(packet.is_empty(), "a packet's last buffer was never sent");
        out
    }
}

/// What a consumer saw: each packet's length, buffer count and bytes.
type Seen = Arc<Mutex<Vec<(usize, usize, Vec<u8>)>>>;

fn recorder(p: &mut Poller<SimRings>) -> Seen {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    p.add_inline(Box::new(move |v: &FrameView| {
        let mut scratch = Vec::new();
        let whole = v.contiguous(&mut scratch).to_vec();
        s.lock()
            .unwrap()
            .push((v.len(), v.segments().count(), whole));
    }));
    seen
}

#[test]
fn a_packet_in_two_to_five_buffers_is_one_view() {
    for n in 2..=5usize {
        let mut bed = mb_bed(64);
        let seen = recorder(&mut bed.p);
        bed.poll();
        let len = (n - 1) * BUF + 100;
        let packet = request(false, n, len - 42);
        bed.arrive_split(&packet);
        assert_eq!(bed.poll(), n, "descriptors taken");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "{n} buffers, one packet");
        assert_eq!((seen[0].0, seen[0].1), (packet.len(), n));
        assert_eq!(seen[0].2, packet, "byte-exact");
        let s = bed.p.stats();
        assert_eq!(s.rx_packets.load(Ordering::Relaxed), 1);
        assert_eq!(s.rx_multi_buffer.load(Ordering::Relaxed), 1);
        assert_eq!(s.rx_bytes.load(Ordering::Relaxed), packet.len() as u64);
        assert_eq!(s.consumers[0].delivered.load(Ordering::Relaxed), 1);
        bed.conservation();
        bed.poll();
        assert_eq!(
            bed.p.frames_in_kernel(),
            64,
            "every frame back in the fill ring"
        );
        bed.conservation();
    }
}

#[test]
fn a_chain_cut_by_the_end_of_a_batch_completes_in_the_next_round() {
    let mut p = poller(32, 32, 32, 2);
    let seen = recorder(&mut p);
    p.poll_once(NOW);
    assert!(p.rings_mut().arrive_split(&[100, 100, 100, 60]));
    assert_eq!(p.rings_mut().arrive(1, 70), 1);
    assert_eq!(p.poll_once(NOW), 2);
    assert!(
        seen.lock().unwrap().is_empty(),
        "half a packet is no packet"
    );
    assert_eq!(p.frames_in_chain(), 2);
    check_conservation(&p, &[]);
    assert_eq!(p.poll_once(NOW), 2);
    assert_eq!(p.poll_once(NOW), 1);
    let seen = seen.lock().unwrap();
    let got: Vec<(usize, usize)> = seen.iter().map(|s| (s.0, s.1)).collect();
    assert_eq!(got, vec![(360, 4), (70, 1)], "in order, whole");
    assert_eq!(p.frames_in_chain(), 0);
    check_conservation(&p, &[]);
}

#[test]
fn a_chain_whose_tail_arrives_in_a_later_round_is_assembled() {
    let mut p = poller(32, 32, 32, 64);
    let seen = recorder(&mut p);
    p.poll_once(NOW);
    // The head, flagged to continue, then the tail in a later round: how a
    // driver that publishes buffers as they fill hands a packet over.
    assert!(p.rings_mut().arrive_split(&[200, 200]));
    p.rings_mut().rx_hold_last(1);
    assert_eq!(p.poll_once(NOW), 1);
    assert_eq!(p.frames_in_chain(), 1);
    check_conservation(&p, &[]);
    p.rings_mut().rx_hold_last(0);
    assert_eq!(p.poll_once(NOW), 1);
    let seen = seen.lock().unwrap();
    assert_eq!((seen.len(), seen[0].0, seen[0].1), (1, 400, 2));
    check_conservation(&p, &[]);
}

#[test]
fn an_endless_chain_is_dropped_counted_and_the_next_packet_is_fine() {
    let frames = 2 * MAX_SEGMENTS as u32 + 8;
    let mut p = poller(frames, frames as usize, frames as usize, 256);
    let seen = recorder(&mut p);
    p.poll_once(NOW);
    let lens = vec![10u32; MAX_SEGMENTS + 3];
    assert!(p.rings_mut().arrive_split(&lens));
    assert!(p.rings_mut().arrive_split(&[30, 30]));
    p.poll_once(NOW);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "only the packet after it");
    assert_eq!((seen[0].0, seen[0].1), (60, 2));
    let s = p.stats();
    assert_eq!(s.rx_malformed.load(Ordering::Relaxed), 1);
    assert_eq!(s.rx_packets.load(Ordering::Relaxed), 1);
    drop(seen);
    p.poll_once(NOW);
    check_conservation(&p, &[]);
    assert_eq!(p.frames_in_kernel(), u64::from(frames), "every frame back");
}

#[test]
fn a_multi_buffer_echo_goes_out_as_a_chain_byte_exact() {
    let mut bed = mb_bed(512);
    let udp = echo_consumer(&mut bed.p);
    bed.p.add_inline(udp);
    bed.poll();
    let requests = [
        request(false, 1, 8972),
        request(true, 2, 8952),
        request(false, 3, 4000),
    ];
    for r in &requests {
        bed.arrive_split(r);
    }
    bed.poll();
    let sent = bed.sent_packets();
    assert_eq!(sent.len(), 3);
    for (reply, r) in sent.iter().zip(&requests) {
        assert_eq!(reply.len(), r.len());
        assert_answers(reply, r);
    }
    let descs = bed.p.rings().sent();
    assert!(descs.len() > 3, "several buffers per reply");
    let t = bed.p.stats().tx.summary();
    assert_eq!((t.queued, t.multi_buffer), (3, 3));
    bed.conservation();
    bed.poll();
    let t = bed.p.stats().tx.summary();
    assert_eq!((t.completed, t.sent), (3, 3), "a packet completes once");
    assert_eq!(bed.p.frames_in_tx(), 0);
    bed.conservation();
}

#[test]
fn a_shared_multi_buffer_request_is_answered_from_free_frames() {
    let mut bed = mb_bed(512);
    let kept: Arc<Mutex<Vec<FrameView>>> = Arc::default();
    let k = kept.clone();
    bed.p.add_inline(Box::new(move |v: &FrameView| {
        k.lock().unwrap().push(v.clone())
    }));
    let udp = echo_consumer(&mut bed.p);
    bed.p.add_inline(udp);
    bed.poll();
    let r = request(false, 7, 6000);
    bed.arrive_split(&r);
    bed.poll();
    let sent = bed.sent_packets();
    assert_eq!(sent.len(), 1);
    assert_answers(&sent[0], &r);
    let mut scratch = Vec::new();
    let kept_bytes = kept.lock().unwrap()[0].contiguous(&mut scratch).to_vec();
    assert_eq!(kept_bytes, r, "the other view is untouched");
    assert_eq!(bed.p.stats().tx.summary().copied, 1);
    bed.conservation();
    kept.lock().unwrap().clear();
    bed.poll();
    bed.conservation();
}

#[test]
fn a_datagram_larger_than_a_frame_is_sent_as_a_chain_only_with_multi_buffer() {
    for multi_buffer in [true, false] {
        let mut bed = Bed::with_config(
            512,
            256,
            PollerConfig {
                multi_buffer,
                ..PollerConfig::default()
            },
        );
        let tx = bed.p.transmitter();
        bed.poll();
        let to = Addressing {
            src: "198.18.0.1:9000".parse().unwrap(),
            dst: "198.18.0.2:40000".parse().unwrap(),
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
        };
        let payload: Vec<u8> = (0..8972).map(|i| (i * 7) as u8).collect();
        let queued = tx.send(&to, &payload);
        bed.poll();
        if multi_buffer {
            queued.unwrap();
            // More buffers than the kernel sends a packet in: refused at once.
            let huge = vec![0u8; MAX_TX_SEGMENTS * FRAME as usize];
            assert!(matches!(
                tx.send(&to, &huge),
                Err(crate::tx::TxError::Reply(_))
            ));
            let sent = bed.sent_packets();
            assert_eq!(sent.len(), 1);
            let d = crate::wire::parse(&sent[0]).expect("parses, checksum included");
            assert_eq!((d.src, d.dst), (to.src, to.dst));
            assert_eq!(d.payload, &payload[..]);
        } else {
            assert!(queued.is_err(), "one frame cannot hold it");
            assert!(bed.p.rings().sent().is_empty());
        }
        bed.conservation();
    }
}

#[test]
fn a_handler_sees_the_whole_datagram_contiguous_and_as_slices() {
    let mut bed = mb_bed(512);
    // Each datagram's payload and the lengths of its slices.
    type Got = Arc<Mutex<Vec<(Vec<u8>, Vec<usize>)>>>;
    let got: Got = Arc::default();
    let g = got.clone();
    let udp = UdpConsumer::new(bed.p.transmitter()).route(
        [9000],
        move |d: &Datagram<'_>, _: &Transmitter| {
            let joined: Vec<u8> = d.payload_slices().flatten().copied().collect();
            assert_eq!(joined, d.payload, "slices and the contiguous payload agree");
            let lens = d.payload_slices().map(<[u8]>::len).collect();
            g.lock().unwrap().push((d.payload.to_vec(), lens));
        },
    );
    bed.p.add_inline(Box::new(udp));
    bed.poll();
    let r = request(true, 5, 5000);
    bed.arrive_split(&r);
    bed.poll();
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 1);
    let expected: Vec<u8> = (0..5000).map(|j| (5 + j) as u8).collect();
    assert_eq!(got[0].0, expected);
    assert_eq!(got[0].1, vec![BUF - 62, BUF, 5062 - 2 * BUF]);
}

#[derive(Clone, Debug)]
enum Op {
    /// A packet of this many buffers arrives (1: a single frame).
    Arrive(usize),
    /// A round with this budget.
    Poll(u32),
    /// The consumer lets go of this many held views.
    Release(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1usize..=6).prop_map(Op::Arrive),
        (1u32..=7).prop_map(Op::Poll),
        (0usize..=4).prop_map(Op::Release),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 4 } else { 200 }))]

    /// Frame conservation with chains cut at every point: budgets of 1..7
    /// descriptors end rounds inside chains of 1..6 buffers, a small RX ring
    /// and fill ring drop whole packets, and the consumer holds views at
    /// random; every frame is always in exactly one place, and every packet
    /// that arrived is delivered whole.
    #[test]
    fn frames_are_conserved_with_chains(ops in prop::collection::vec(op(), 1..60)) {
        let frames = 24u32;
        let mut p = poller(frames, frames as usize, 12, 64);
        let held: Arc<Mutex<Vec<FrameView>>> = Arc::default();
        let h = held.clone();
        p.add_inline(Box::new(move |v: &FrameView| {
            assert_eq!(v.segments().map(<[u8]>::len).sum::<usize>(), v.len());
            h.lock().unwrap().push(v.clone());
        }));
        let mut arrived = 0u64;
        for op in ops {
            match op {
                Op::Arrive(n) => {
                    let lens = vec![50u32; n];
                    arrived += u64::from(p.rings_mut().arrive_split(&lens));
                }
                Op::Poll(budget) => {
                    p.descs.truncate(budget as usize);
                    p.poll_once(NOW);
                    p.descs.resize(64, RxDesc::default());
                }
                Op::Release(n) => {
                    let mut held = held.lock().unwrap();
                    let n = n.min(held.len());
                    held.drain(..n);
                }
            }
            let views = held.lock().unwrap();
            check_conservation(&p, &[&views]);
        }
        for _ in 0..8 {
            held.lock().unwrap().clear();
            p.poll_once(NOW);
        }
        check_conservation(&p, &[]);
        prop_assert_eq!(p.frames_in_chain(), 0);
        prop_assert_eq!(p.frames_in_kernel(), u64::from(frames));
        let s = p.stats();
        prop_assert_eq!(s.rx_packets.load(Ordering::Relaxed), arrived);
        prop_assert_eq!(s.consumers[0].delivered.load(Ordering::Relaxed), arrived);
    }
}
