//! The transmit half of the poller over the simulated rings: echo in place and
//! copy-on-write, spare frames for replies, a full TX ring, the completion ring,
//! and frame conservation throughout.

use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use etherparse::PacketBuilder;

use super::*;
use crate::{
    app::{Datagram, Echo, UdpConsumer},
    frame::{FrameMemory, FrameView, HeapMemory},
    poller::tests::NOW,
    ring::sim::{SIM_HEADROOM, SimRings},
    tx::TxError,
    wire::parse,
};

pub(super) const FRAME: u32 = 2048;

/// A poller over simulated rings, and the base of its memory so the test can play
/// the NIC (write arriving packets) and the wire (read what was sent).
pub(super) struct Bed {
    pub(super) p: Poller<SimRings>,
    pub(super) base: *mut u8,
}

impl Bed {
    /// A round, and the TX kicks it asks for (what the run loop does).
    pub(super) fn poll(&mut self) -> usize {
        let n = self.p.poll_once(NOW);
        crate::stack::queue::kick_tx(&mut self.p);
        n
    }

    fn new(frames: u32, ring: usize) -> Self {
        Self::with_config(frames, ring, PollerConfig::default())
    }

    pub(super) fn with_config(frames: u32, ring: usize, config: PollerConfig) -> Self {
        let memory = HeapMemory::new(FRAME, frames);
        let base = memory.frame_ptr(0).as_ptr();
        let pool = FramePool::new(Box::new(memory), 0);
        let p = Poller::new(
            SimRings::new(FRAME, frames as usize, ring),
            pool,
            0,
            PollerConfig {
                budget: 64,
                ..config
            },
        );
        Bed { p, base }
    }

    /// A packet arrives: written into the frame at the head of the fill ring, then
    /// put on the RX ring.
    fn arrive(&mut self, packet: &[u8]) {
        let addr = self.p.rings().next_fill_addr().expect("fill ring empty") + SIM_HEADROOM;
        // SAFETY: the frame is in the simulated kernel's fill ring: user space
        // holds no view or handle of it, so the "NIC" may write it.
        unsafe {
            std::ptr::copy_nonoverlapping(
                packet.as_ptr(),
                self.base.add(addr as usize),
                packet.len(),
            );
        }
        assert_eq!(self.p.rings_mut().arrive(1, packet.len() as u32), 1);
    }

    /// The bytes of the `i`th frame sent.
    fn sent(&self, i: usize) -> Vec<u8> {
        let d = self.p.rings().sent()[i];
        // SAFETY: the frame sits on the simulated completion ring (the poller
        // takes it back only in its next round): nobody writes it meanwhile.
        unsafe { std::slice::from_raw_parts(self.base.add(d.addr as usize), d.len as usize) }
            .to_vec()
    }

    pub(super) fn conservation(&self) {
        let kernel = self.p.rings().kernel_frames();
        let unique: HashSet<u64> = kernel.iter().copied().collect();
        assert_eq!(unique.len(), kernel.len(), "a frame is in the kernel twice");
        let total = self.p.free_frames()
            + kernel.len()
            + self.p.pool().returned_len()
            + self.p.pool().viewed_frames()
            + self.p.spare_frames()
            + self.p.frames_in_chain();
        assert_eq!(total, self.p.pool().frame_count() as usize, "conservation");
    }
}

pub(super) fn request(v6: bool, i: usize, len: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..len).map(|j| (i + j) as u8).collect();
    let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1]);
    let builder = if v6 {
        builder.ipv6(
            [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            {
                let mut a = [0; 16];
                a[0] = 0xfd;
                a[15] = 1;
                a
            },
            64,
        )
    } else {
        builder.ipv4([198, 18, 0, 2], [198, 18, 0, 1], 64)
    };
    let builder = builder.udp(40000 + i as u16, 9000);
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut out, &payload).unwrap();
    out
}

/// Check that `reply` answers `request`: addresses and ports swapped, same
/// payload, valid checksums (the parser verifies them).
pub(super) fn assert_answers(reply: &[u8], request: &[u8]) {
    let req = parse(request).expect("request parses");
    let rep = parse(reply).expect("reply parses, checksums included");
    assert_eq!((rep.src, rep.dst), (req.dst, req.src));
    assert_eq!(rep.payload, req.payload);
    assert_eq!(&reply[0..6], &request[6..12], "destination MAC");
    assert_eq!(&reply[6..12], &request[0..6], "source MAC");
}

pub(super) fn echo_consumer(p: &mut Poller<SimRings>) -> Box<UdpConsumer> {
    Box::new(UdpConsumer::new(p.transmitter()).route([9000], Echo))
}

#[test]
fn echo_is_built_in_the_received_frame_when_unshared() {
    let mut bed = Bed::new(512, 256);
    let udp = echo_consumer(&mut bed.p);
    bed.p.add_inline(udp);
    bed.poll();
    let requests: Vec<Vec<u8>> = (0..20)
        .map(|i| request(i % 2 == 1, i, 18 + i * 70))
        .collect();
    for r in &requests {
        bed.arrive(r);
    }
    assert_eq!(bed.poll(), 20);
    let sent = bed.p.rings().sent().to_vec();
    assert_eq!(sent.len(), 20);
    for (i, r) in requests.iter().enumerate() {
        assert_answers(&bed.sent(i), r);
    }
    // In place: each reply left from the frame its request arrived in.
    let rx_frames: HashSet<u64> = sent.iter().map(|d| d.addr / u64::from(FRAME)).collect();
    assert_eq!(rx_frames.len(), 20);
    let t = bed.p.stats().tx.summary();
    assert_eq!((t.queued, t.in_place, t.copied), (20, 20, 0));
    // Twenty fitted the ring at once: no round found it too full; one kick.
    assert_eq!((t.ring_full, t.kicks), (0, 1));
    bed.conservation();
    bed.poll();
    let t = bed.p.stats().tx.summary();
    assert_eq!(t.completed, 20, "completion ring drained");
    assert_eq!(bed.p.frames_in_tx(), 0);
    // Nothing in flight: no kick is asked for.
    assert!(!bed.p.wants_tx_kick());
    bed.poll();
    assert_eq!(
        bed.p.stats().tx.summary().kicks,
        1,
        "idle rounds kick nothing"
    );
    bed.conservation();
}

#[test]
fn shared_frames_are_copied_and_the_other_view_is_untouched() {
    let mut bed = Bed::new(512, 256);
    let udp = echo_consumer(&mut bed.p);
    bed.p.add_inline(udp);
    // A second consumer that keeps every frame, like a slow pcap writer.
    let held = Arc::new(Mutex::new(Vec::new()));
    let h = held.clone();
    bed.p.add_inline(Box::new(move |v: &FrameView| {
        h.lock().unwrap().push(v.clone())
    }));
    bed.poll();
    let requests: Vec<Vec<u8>> = (0..10).map(|i| request(i % 2 == 0, i, 1472)).collect();
    for r in &requests {
        bed.arrive(r);
    }
    bed.poll();
    let t = bed.p.stats().tx.summary();
    assert_eq!((t.queued, t.in_place, t.copied), (10, 0, 10));
    {
        let views = held.lock().unwrap();
        for (i, (view, r)) in views.iter().zip(&requests).enumerate() {
            assert_eq!(view.bytes(), &r[..], "the sharer still sees the request");
            assert_answers(&bed.sent(i), r);
            let sent_frame = bed.p.rings().sent()[i].addr / u64::from(FRAME);
            assert_ne!(sent_frame, u64::from(view.frame_index()), "a fresh frame");
        }
    }
    bed.conservation();
    held.lock().unwrap().clear();
    bed.poll();
    bed.conservation();
    assert_eq!(bed.p.frames_in_tx(), 0);
}

#[test]
fn replies_with_other_payloads_use_spare_frames() {
    let mut bed = Bed::new(512, 256);
    let tx = bed.p.transmitter();
    let errors = Arc::new(Mutex::new(Vec::new()));
    let e = errors.clone();
    let udp = UdpConsumer::new(tx).route([9000], move |d: &Datagram<'_>, tx: &Transmitter| {
        let mut answer = b"re: ".to_vec();
        answer.extend_from_slice(d.payload);
        if let Err(err) = d.reply(tx, &answer) {
            e.lock().unwrap().push(err);
        }
    });
    bed.p.add_inline(Box::new(udp));
    bed.poll();
    assert_eq!(
        bed.p.spare_frames(),
        SPARE_FRAMES,
        "spares ready before traffic"
    );
    let requests: Vec<Vec<u8>> = (0..8).map(|i| request(i % 2 == 0, i, 100)).collect();
    for r in &requests {
        bed.arrive(r);
    }
    bed.poll();
    assert!(errors.lock().unwrap().is_empty());
    for (i, r) in requests.iter().enumerate() {
        let rep = bed.sent(i);
        let req = parse(r).unwrap();
        let rep = parse(&rep).unwrap();
        assert_eq!((rep.src, rep.dst), (req.dst, req.src));
        assert_eq!(&rep.payload[..4], b"re: ");
        assert_eq!(&rep.payload[4..], req.payload);
    }
    bed.conservation();
    bed.poll();
    bed.conservation();
    assert_eq!(bed.p.spare_frames(), SPARE_FRAMES, "topped up again");
}

#[test]
fn a_full_tx_ring_keeps_requests_waiting_then_sends_them() {
    let mut bed = Bed::new(512, 16);
    let udp = echo_consumer(&mut bed.p);
    bed.p.add_inline(udp);
    bed.poll();
    bed.p.rings_mut().stall_tx(true);
    let requests: Vec<Vec<u8>> = (0..40).map(|i| request(false, i, 18)).collect();
    for chunk in requests.chunks(16) {
        for r in chunk {
            bed.arrive(r);
        }
        bed.poll();
    }
    let t = bed.p.stats().tx.summary();
    assert_eq!(t.queued, 16, "the ring holds 16");
    assert!(t.ring_full > 0);
    assert_eq!(t.queue_full, 0, "the rest wait in the transmit queue");
    bed.conservation();
    bed.p.rings_mut().stall_tx(false);
    for _ in 0..4 {
        bed.poll();
    }
    let t = bed.p.stats().tx.summary();
    assert_eq!((t.queued, t.completed), (40, 40));
    let sent: Vec<SocketAddr> = (0..40).map(|i| parse(&bed.sent(i)).unwrap().dst).collect();
    let expected: Vec<SocketAddr> = requests.iter().map(|r| parse(r).unwrap().src).collect();
    assert_eq!(sent, expected, "in order");
    bed.conservation();
}

#[test]
fn the_transmit_queue_refuses_beyond_its_capacity() {
    let mut bed = Bed::new(4096, 2048);
    let tx = bed.p.transmitter();
    let refused = Arc::new(Mutex::new(0u64));
    let r2 = refused.clone();
    let udp = UdpConsumer::new(tx).route([9000], move |d: &Datagram<'_>, tx: &Transmitter| {
        if d.echo(tx) == Err(TxError::QueueFull) {
            *r2.lock().unwrap() += 1;
        }
    });
    bed.p.add_inline(Box::new(udp));
    bed.poll();
    bed.p.rings_mut().stall_tx(true);
    let n = TX_QUEUE + 2048 + 100;
    let packet = request(false, 1, 18);
    let mut received = 0;
    while received < n {
        for _ in 0..64 {
            bed.arrive(&packet);
        }
        received += bed.poll();
    }
    let t = bed.p.stats().tx.summary();
    // The ring holds 2048 and the queue TX_QUEUE; every other request is refused
    // and counted.
    assert_eq!(t.queued, 2048);
    assert_eq!(bed.p.frames_in_tx(), 2048, "all on the stalled TX ring");
    assert_eq!(bed.p.stats().tx.in_flight(), 2048);
    assert!(t.ring_full > 0, "rounds found the ring full: {t:?}");
    assert!(!bed.p.tx_idle());
    assert_eq!(t.queue_full, (received - 2048 - TX_QUEUE) as u64);
    assert_eq!(*refused.lock().unwrap(), t.queue_full);
    bed.conservation();
    bed.p.rings_mut().stall_tx(false);
    crate::stack::queue::drain_tx(&mut bed.p, std::time::Duration::from_millis(100));
    let t = bed.p.stats().tx.summary();
    assert_eq!(t.queued, (2048 + TX_QUEUE) as u64);
    assert_eq!(t.completed, t.queued);
    assert_eq!(bed.p.spare_frames(), 0, "drain gives the spares back");
    bed.conservation();
}

#[test]
fn requests_that_cannot_be_answered_are_counted() {
    let mut bed = Bed::new(256, 64);
    let udp = echo_consumer(&mut bed.p);
    bed.p.add_inline(udp);
    bed.poll();
    // Source port 0: nothing to reply to.
    let mut r = request(false, 0, 18);
    let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1])
        .ipv4([198, 18, 0, 2], [198, 18, 0, 1], 64)
        .udp(0, 9000);
    r.clear();
    builder.write(&mut r, b"no port").unwrap();
    bed.arrive(&r);
    bed.poll();
    let t = bed.p.stats().tx.summary();
    assert_eq!((t.queued, t.reply_errors), (0, 1));
    bed.conservation();
}

#[test]
fn a_receive_only_consumer_runs_no_transmit_code() {
    let mut bed = Bed::new(256, 64);
    let results = Arc::new(Mutex::new(Vec::new()));
    let r = results.clone();
    let udp = UdpConsumer::new(Transmitter::disconnected())
        .route([9000], move |d: &Datagram<'_>, tx: &Transmitter| {
            r.lock().unwrap().push(d.echo(tx))
        });
    bed.p.add_inline(Box::new(udp));
    bed.poll();
    assert_eq!(bed.p.frames_in_kernel(), 256, "no frame kept back for TX");
    bed.arrive(&request(false, 0, 18));
    bed.poll();
    assert_eq!(*results.lock().unwrap(), vec![Err(TxError::Disconnected)]);
    assert!(bed.p.rings().sent().is_empty());
    bed.conservation();
}

/// Several handler threads reply at once, through `reply` (spare frames) and
/// `echo` (copy-on-write, since the test keeps every request's frame), while the
/// TX ring is stalled and frames run out: every request ends counted exactly
/// once, as sent or by the cause it was not, though the poller and the handler
/// threads count the same causes at the same time.
#[test]
fn concurrent_replies_are_each_counted_once() {
    const THREADS: usize = 4;
    const EACH: usize = if cfg!(miri) { 40 } else { 600 };
    let mut bed = Bed::new(512, 64);
    let tx = bed.p.transmitter();
    let held = Arc::new(Mutex::new(Vec::new()));
    let h = held.clone();
    bed.p.add_inline(Box::new(move |v: &FrameView| {
        h.lock().unwrap().push(v.clone())
    }));
    bed.poll();
    // Requests from a real port, which can be answered, and from port 0, which
    // cannot (RFC 768): both the handlers and the poller then count reply errors.
    let good = request(false, 1, 32);
    // Over IPv4 with no UDP checksum (0, RFC 768), so the frame still parses.
    let mut bad = request(false, 2, 32);
    let l4 = parse(&bad).unwrap().layout.l4();
    bad[l4..l4 + 2].fill(0);
    bad[l4 + 6..l4 + 8].fill(0);
    // Many frames, so that the views the queued echoes hold stay far below the
    // 255 a consumer may hold of one frame.
    const FRAMES: usize = 64;
    for i in 0..FRAMES {
        bed.arrive(if i % 2 == 0 { &good } else { &bad });
        if i % 32 == 31 {
            bed.poll();
        }
    }
    let views: Vec<FrameView> = held.lock().unwrap().clone();
    assert_eq!(views.len(), FRAMES);
    let layouts: Vec<_> = views
        .iter()
        .map(|v| parse(v.bytes()).unwrap().layout)
        .collect();
    bed.p.rings_mut().stall_tx(true);
    let accepted = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (tx, views, layouts, accepted) = (&tx, &views, &layouts, &accepted);
                s.spawn(move || {
                    for i in 0..EACH {
                        let k = (i * THREADS + t) % FRAMES;
                        let result = if i % 3 == 0 {
                            tx.echo(&views[k], &layouts[k])
                        } else {
                            tx.reply(views[k].bytes(), &layouts[k], b"answer")
                        };
                        if result.is_ok() {
                            accepted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        // The poller's rounds, on this thread, while the handlers run.
        let mut rounds = 0;
        while workers.iter().any(|w| !w.is_finished()) || rounds < 10 {
            bed.poll();
            rounds += 1;
            std::thread::yield_now();
        }
        for w in workers {
            w.join().unwrap();
        }
    });
    bed.p.rings_mut().stall_tx(false);
    crate::stack::queue::drain_tx(&mut bed.p, std::time::Duration::from_secs(5));
    let t = bed.p.stats().tx.summary();
    let requests = (THREADS * EACH) as u64;
    assert!(t.no_frame > 0, "frames ran out: {t:?}");
    assert!(t.reply_errors > 0, "{t:?}");
    assert_eq!(
        t.queued + t.no_frame + t.reply_errors + t.queue_full,
        requests,
        "every request counted once: {t:?}"
    );
    assert_eq!(t.completed, t.queued, "{t:?}");
    assert!(bed.p.tx_idle());
    // Requests the handlers could hand over are the ones the poller then sent
    // or counted; the rest the handlers counted themselves.
    let refused_by_handlers = requests - accepted.load(Ordering::Relaxed);
    assert!(refused_by_handlers <= t.no_frame + t.reply_errors + t.queue_full);
    drop(views);
    held.lock().unwrap().clear();
    bed.poll();
    bed.conservation();
}

/// A frame the kernel refuses (copy mode: the driver dropped it, `sendto(2)`
/// says EBUSY) comes back on the completion ring but is not sent: counted as
/// `kernel_dropped`, and `sent` is what really left.
#[test]
fn frames_the_kernel_refuses_are_counted_as_not_sent() {
    let mut bed = Bed::new(512, 256);
    let udp = echo_consumer(&mut bed.p);
    bed.p.add_inline(udp);
    bed.poll();
    bed.p.rings_mut().refuse_tx(3);
    for i in 0..20 {
        bed.arrive(&request(false, i, 18));
    }
    assert_eq!(bed.poll(), 20);
    // Each refusal ends a kick; the run loop kicks again for the rest.
    assert_eq!(bed.p.rings_mut().tx_pending(), 0, "all taken in one round");
    crate::stack::queue::drain_tx(&mut bed.p, std::time::Duration::from_millis(100));
    let t = bed.p.stats().tx.summary();
    assert_eq!((t.queued, t.completed), (20, 20), "{t:?}");
    assert_eq!((t.kernel_dropped, t.sent), (3, 17), "{t:?}");
    assert_eq!(
        t.kicks, 4,
        "three kicks ended by a refusal, one for the rest"
    );
    assert_eq!(bed.p.rings().refused().len(), 3);
    assert_eq!(bed.p.rings().sent().len() as u64, t.sent);
    assert_eq!(bed.p.frames_in_tx(), 0, "refused frames come back too");
    bed.conservation();
}

/// The kernel takes 32 frames a kick in copy mode: a round with more queued
/// kicks until the ring is empty, and no more once it is (frames taken but not
/// yet completed need no kick).
#[test]
fn a_round_kicks_until_the_kernel_has_taken_every_frame() {
    let mut bed = Bed::new(512, 256);
    let udp = echo_consumer(&mut bed.p);
    bed.p.add_inline(udp);
    bed.poll();
    for i in 0..64 {
        bed.arrive(&request(false, i, 18));
    }
    assert_eq!(bed.poll(), 64);
    let t = bed.p.stats().tx.summary();
    assert_eq!((t.queued, t.kicks), (64, 2), "{t:?}");
    assert_eq!(bed.p.rings().sent().len(), 64);
    assert!(bed.p.frames_in_tx() > 0, "completions not read yet");
    assert!(
        !bed.p.wants_tx_kick(),
        "nothing left for the kernel to take"
    );
    bed.poll();
    let t = bed.p.stats().tx.summary();
    assert_eq!((t.kicks, t.completed, t.sent), (2, 64, 64), "{t:?}");
    bed.conservation();
}

/// A busy kernel (EAGAIN) keeps the frames on the ring: counted as a busy
/// kick, not as sent, and sent by a later kick.
#[test]
fn a_busy_kernel_keeps_the_frames_for_the_next_kick() {
    let mut bed = Bed::new(512, 256);
    let udp = echo_consumer(&mut bed.p);
    bed.p.add_inline(udp);
    bed.poll();
    bed.p.rings_mut().stall_tx(true);
    for i in 0..10 {
        bed.arrive(&request(false, i, 18));
    }
    bed.poll();
    let t = bed.p.stats().tx.summary();
    assert_eq!((t.queued, t.kicks, t.kicks_busy, t.sent), (10, 1, 1, 0));
    assert!(bed.p.wants_tx_kick());
    bed.p.rings_mut().stall_tx(false);
    crate::stack::queue::drain_tx(&mut bed.p, std::time::Duration::from_millis(100));
    let t = bed.p.stats().tx.summary();
    assert_eq!(
        (t.sent, t.kernel_dropped, t.kicks_busy),
        (10, 0, 1),
        "{t:?}"
    );
    bed.conservation();
}

/// An app that echoes one datagram many times holds a view per waiting echo:
/// past 255 (one consumer's byte of the frame's reference word) the echo is
/// refused and counted, where a plain clone would abort the process.
#[test]
fn echoes_past_255_views_of_one_frame_are_refused_not_fatal() {
    let mut bed = Bed::new(1024, 512);
    let refused = Arc::new(Mutex::new(Vec::new()));
    let r2 = refused.clone();
    let tx = bed.p.transmitter();
    let udp = UdpConsumer::new(tx).route([9000], move |d: &Datagram<'_>, tx: &Transmitter| {
        for _ in 0..300 {
            if let Err(e) = d.echo(tx) {
                r2.lock().unwrap().push(e);
            }
        }
    });
    bed.p.add_inline(Box::new(udp));
    bed.poll();
    bed.arrive(&request(false, 1, 18));
    assert_eq!(bed.poll(), 1);
    let refused = refused.lock().unwrap().clone();
    assert_eq!(refused.len(), 45, "{refused:?}");
    assert!(refused.iter().all(|e| *e == TxError::TooManyViews));
    crate::stack::queue::drain_tx(&mut bed.p, std::time::Duration::from_millis(100));
    let t = bed.p.stats().tx.summary();
    assert_eq!(t.too_many_views, 45, "{t:?}");
    assert_eq!(t.queued + t.no_frame, 255, "{t:?}");
    assert_eq!(t.sent, t.queued);
    bed.conservation();
}

/// A tap that keeps what it is shown.
#[derive(Debug, Default)]
struct KeepAll(Mutex<Vec<(u32, Vec<u8>)>>);

impl TxTap for KeepAll {
    fn transmitted(&self, queue: u32, frame: &[u8]) {
        self.0.lock().unwrap().push((queue, frame.to_vec()));
    }
}

/// The TX tap (the capture's outbound side) is shown every frame that goes on
/// the TX ring, byte for byte as it is sent, in place or copied.
#[test]
fn the_tap_sees_every_transmitted_frame_as_sent() {
    let mut bed = Bed::new(512, 256);
    let tap = Arc::new(KeepAll::default());
    bed.p.set_tx_tap(tap.clone());
    let udp = echo_consumer(&mut bed.p);
    bed.p.add_inline(udp);
    bed.poll();
    let requests: Vec<Vec<u8>> = (0..12)
        .map(|i| request(i % 3 == 0, i, 18 + i * 50))
        .collect();
    for r in &requests {
        bed.arrive(r);
    }
    assert_eq!(bed.poll(), 12);
    let seen = tap.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 12);
    for (i, (queue, frame)) in seen.iter().enumerate() {
        assert_eq!(*queue, 0);
        assert_eq!(frame, &bed.sent(i), "frame {i} as sent");
    }
}

impl Bed {
    /// A packet arrives with the XDP program's receive stamp in the 8 bytes of
    /// metadata before it (0: none written, as a driver without metadata).
    fn arrive_stamped(&mut self, packet: &[u8], stamp: u64) {
        let addr = self.p.rings().next_fill_addr().expect("fill ring empty") + SIM_HEADROOM;
        if stamp != 0 {
            // SAFETY: as in `arrive`: the frame is the simulated kernel's.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    stamp.to_ne_bytes().as_ptr(),
                    self.base.add(addr as usize - 8),
                    8,
                );
            }
        }
        self.arrive(packet);
    }
}

/// With stamps on, a frame's time is the XDP program's stamp plus the offset to
/// Unix time; a frame without one gets the round's time and is counted; and a
/// stamp is used once: the next packet in the same frame, unstamped, does not
/// inherit it.
#[test]
fn frames_carry_their_own_stamp_once() {
    // Four frames: the fifth arrival reuses the first frame.
    let mut bed = Bed::new(4, 8);
    let times = Arc::new(Mutex::new(Vec::new()));
    let t = times.clone();
    bed.p.add_inline(Box::new(move |v: &FrameView| {
        t.lock().unwrap().push(v.timestamp_ns())
    }));
    const TO_REAL: i64 = 1_000_000_000;
    bed.p.set_stamps(Some(TO_REAL));
    assert!(bed.p.stamping());
    bed.poll();
    let packet = request(false, 0, 18);
    for stamp in [5_000, 0, 7_000, 9_000] {
        bed.arrive_stamped(&packet, stamp);
    }
    assert_eq!(bed.poll(), 4);
    bed.poll();
    bed.arrive_stamped(&packet, 0);
    assert_eq!(bed.poll(), 1);
    assert_eq!(
        *times.lock().unwrap(),
        vec![1_000_005_000, NOW, 1_000_007_000, 1_000_009_000, NOW]
    );
    assert_eq!(bed.p.stats().unstamped.load(Ordering::Relaxed), 2);
    bed.p.set_stamps(None);
    assert!(!bed.p.stamping());
}

/// Requests already waiting when the poller's first round runs (its thread
/// started late, after the program was attached) find spare frames for their
/// replies: the spares are put aside before the round's frames are handed out.
#[test]
fn the_first_round_has_spare_frames_for_waiting_requests() {
    let mut bed = Bed::new(512, 256);
    let tx = bed.p.transmitter();
    let errors = Arc::new(Mutex::new(Vec::new()));
    let e = errors.clone();
    let udp = UdpConsumer::new(tx).route([9000], move |d: &Datagram<'_>, tx: &Transmitter| {
        if let Err(err) = d.reply(tx, b"an answer of its own") {
            e.lock().unwrap().push(err);
        }
    });
    bed.p.add_inline(Box::new(udp));
    // What the stack does before attaching; no round has run yet, and the
    // spares were made with the transmitter.
    bed.p.refill();
    assert_eq!(bed.p.spare_frames(), crate::tx::SPARE_FRAMES);
    bed.conservation();
    for i in 0..4 {
        bed.arrive(&request(false, i, 40));
    }
    assert_eq!(bed.poll(), 4);
    assert!(
        errors.lock().unwrap().is_empty(),
        "{:?}",
        errors.lock().unwrap()
    );
    assert_eq!(bed.p.rings().sent().len(), 4);
    bed.conservation();
}

// --- The socket API over the simulated rings -------------------------------

mod sockets {
    use std::{
        net::IpAddr,
        sync::atomic::{AtomicUsize, Ordering},
        task::{Context, Poll, Wake, Waker},
    };

    use super::*;
    use crate::{
        app::UdpSocket,
        ring::Doorbell,
        tx::route::{Lookup, NextHop, Resolve, Then, Unreachable},
    };

    const HOP: NextHop = NextHop {
        src_mac: [2, 0, 0, 0, 0, 1],
        dst_mac: [2, 0, 0, 0, 0, 0x99],
        src_ip: IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 0, 1)),
        gateway: Some(IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 0, 99))),
        mtu: 1500,
    };

    /// A resolver that answers what the test says, and keeps held datagrams
    /// for the test to answer.
    struct Table {
        answer: Mutex<Lookup>,
        held: Mutex<Vec<(IpAddr, Then)>>,
    }

    impl std::fmt::Debug for Table {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Table").finish_non_exhaustive()
        }
    }

    impl Table {
        fn new(answer: Lookup) -> Arc<Self> {
            Arc::new(Self {
                answer: Mutex::new(answer),
                held: Mutex::new(Vec::new()),
            })
        }

        fn answer_held(&self, answer: Result<NextHop, Unreachable>) -> usize {
            let held = std::mem::take(&mut *self.held.lock().unwrap());
            let n = held.len();
            for (_, then) in held {
                then(answer);
            }
            n
        }
    }

    impl Resolve for Table {
        fn lookup(&self, _dst: IpAddr) -> Lookup {
            *self.answer.lock().unwrap()
        }
        fn hold(&self, dst: IpAddr, then: Then) {
            self.held.lock().unwrap().push((dst, then));
        }
    }

    fn socket(bed: &mut Bed, resolver: Arc<Table>, capacity: usize) -> UdpSocket {
        let socket = UdpSocket::new(SocketAddr::from(([0, 0, 0, 0], 9000)), capacity, resolver);
        let tx = bed.p.transmitter();
        socket.add_queue(tx.clone());
        let udp = UdpConsumer::new(tx).route([9000], socket.handler());
        bed.p.add_inline(Box::new(udp));
        // Fill ring and spare frames ready.
        bed.poll();
        socket
    }

    fn peer(i: usize) -> SocketAddr {
        SocketAddr::from(([198, 19, 0, 2], 40000 + i as u16))
    }

    #[test]
    fn datagrams_in_from_the_queue_out_to_any_destination() {
        let mut bed = Bed::new(512, 256);
        let sock = socket(&mut bed, Table::new(Lookup::Ready(HOP)), 64);
        for i in 0..10 {
            bed.arrive(&request(false, i, 20 + i));
        }
        bed.poll();
        let mut got = Vec::new();
        assert_eq!(sock.recv_batch(&mut got, 64), 10);
        // The socket holds the frames (zero copy) until the datagrams go.
        assert_eq!(bed.p.pool().viewed_frames(), 10);
        bed.conservation();
        for (i, r) in got.iter().enumerate() {
            assert_eq!(r.payload(), &request(false, i, 20 + i)[42..]);
            assert_eq!(
                r.src(),
                SocketAddr::from(([198, 18, 0, 2], 40000 + i as u16))
            );
            sock.send_to(r.payload(), peer(i)).unwrap();
        }
        drop(got);
        bed.poll();
        bed.poll();
        assert_eq!(bed.p.rings().sent().len(), 10);
        for i in 0..10 {
            let frame = bed.sent(i);
            let p = parse(&frame).expect("a datagram we sent parses, checksums and all");
            assert_eq!(&frame[..6], &HOP.dst_mac);
            assert_eq!(&frame[6..12], &HOP.src_mac);
            assert_eq!(p.src, SocketAddr::new(HOP.src_ip, 9000));
            assert_eq!(p.dst, peer(i));
            assert_eq!(p.payload, &request(false, i, 20 + i)[42..]);
        }
        let t = bed.p.stats().tx.summary();
        assert_eq!((t.send_to, t.queued), (10, 10));
        let s = sock.summary();
        assert_eq!((s.received, s.taken, s.full, s.queued), (10, 10, 0, 0));
        bed.conservation();
    }

    #[test]
    fn a_full_receive_queue_drops_and_counts() {
        let mut bed = Bed::new(512, 256);
        let sock = socket(&mut bed, Table::new(Lookup::Ready(HOP)), 4);
        for i in 0..10 {
            bed.arrive(&request(i % 2 == 1, i, 30));
        }
        bed.poll();
        let s = sock.summary();
        assert_eq!((s.received, s.full, s.queued), (4, 6, 4));
        // Only the queued datagrams hold frames.
        assert_eq!(bed.p.pool().viewed_frames(), 4);
        bed.conservation();
    }

    #[test]
    fn unreachable_and_held_datagrams_are_counted_by_cause() {
        let mut bed = Bed::new(512, 256);
        let table = Table::new(Lookup::Failed(Unreachable::NoRoute));
        let sock = socket(&mut bed, table.clone(), 64);
        assert_eq!(
            sock.send_to(b"x", peer(0)),
            Err(TxError::Unreachable(Unreachable::NoRoute))
        );
        *table.answer.lock().unwrap() = Lookup::Pending;
        for i in 0..3 {
            sock.send_to(b"held", peer(i)).unwrap();
        }
        assert_eq!(table.answer_held(Ok(HOP)), 3);
        sock.send_to(b"lost", peer(9)).unwrap();
        assert_eq!(table.answer_held(Err(Unreachable::Unresolved)), 1);
        *table.answer.lock().unwrap() = Lookup::Ready(HOP);
        assert!(matches!(
            sock.send_to(&[0; 1473], peer(0)),
            Err(TxError::TooLarge {
                len: 1501,
                mtu: 1500
            })
        ));
        sock.send_to(&[0; 1472], peer(0)).unwrap();
        bed.poll();
        bed.poll();
        let t = bed.p.stats().tx.summary();
        assert_eq!(t.no_route, 1);
        assert_eq!(t.held, 4);
        assert_eq!(t.unresolved, 1);
        assert_eq!(t.too_large, 1);
        assert_eq!(t.send_to, 4);
        assert_eq!(bed.p.rings().sent().len(), 4);
        assert_eq!(parse(&bed.sent(0)).unwrap().payload, b"held");
        bed.conservation();
    }

    /// Held datagrams whose next hop resolves while no spare frame is left
    /// are still sent: the poller builds them in frames of its free list.
    #[test]
    fn held_datagrams_go_out_even_without_spare_frames() {
        let mut bed = Bed::new(512, 256);
        let table = Table::new(Lookup::Pending);
        let sock = socket(&mut bed, table.clone(), 64);
        for i in 0..10 {
            sock.send_to(format!("held {i}").as_bytes(), peer(i))
                .unwrap();
        }
        // Every spare taken by sends that went through at once.
        *table.answer.lock().unwrap() = Lookup::Ready(HOP);
        while sock.send_to(b"now", peer(99)).is_ok() {}
        assert_eq!(bed.p.spare_frames(), 0);
        assert_eq!(table.answer_held(Ok(HOP)), 10);
        bed.poll();
        bed.poll();
        let t = bed.p.stats().tx.summary();
        let immediate = crate::tx::SPARE_FRAMES as u64;
        assert_eq!(t.send_to, immediate + 10, "{t:?}");
        assert_eq!(t.queued, immediate + 10, "{t:?}");
        assert_eq!(t.held, 10);
        let sent: Vec<Vec<u8>> = (0..bed.p.rings().sent().len())
            .map(|i| parse(&bed.sent(i)).unwrap().payload.to_vec())
            .collect();
        for i in 0..10 {
            assert!(
                sent.contains(&format!("held {i}").into_bytes()),
                "held {i} not sent"
            );
        }
        bed.conservation();
    }

    /// A resolver whose hold is always full: it answers at once.
    #[derive(Debug)]
    struct Full;
    impl Resolve for Full {
        fn lookup(&self, _dst: IpAddr) -> Lookup {
            Lookup::Pending
        }
        fn hold(&self, _dst: IpAddr, then: Then) {
            then(Err(Unreachable::Unresolved));
        }
    }

    #[test]
    fn a_full_hold_refuses_at_once() {
        let mut bed = Bed::new(512, 256);
        let sock = UdpSocket::new(SocketAddr::from(([0, 0, 0, 0], 9000)), 8, Arc::new(Full));
        sock.add_queue(bed.p.transmitter());
        assert_eq!(
            sock.send_to(b"x", peer(0)),
            Err(TxError::Unreachable(Unreachable::Unresolved))
        );
        let t = bed.p.stats().tx.summary();
        assert_eq!((t.held, t.unresolved, t.send_to), (1, 1, 0));
    }

    /// Counts its wakeups.
    struct Counter(AtomicUsize);
    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn backpressure_says_so_and_room_wakes_the_waiter() {
        let mut bed = Bed::new(512, 256);
        let sock = socket(&mut bed, Table::new(Lookup::Ready(HOP)), 64);
        bed.poll();
        let mut sent = 0;
        let refused = loop {
            match sock.send_to(b"fill", peer(0)) {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
        };
        assert!(refused.is_backpressure(), "{refused:?}");
        assert_eq!(sent, crate::tx::SPARE_FRAMES);
        let woken = Arc::new(Counter(AtomicUsize::new(0)));
        let waker = Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(sock.poll_writable(&mut cx).is_pending());
        bed.poll();
        assert_eq!(
            woken.0.load(Ordering::SeqCst),
            1,
            "the poller woke the waiter"
        );
        assert!(matches!(sock.poll_writable(&mut cx), Poll::Ready(Ok(()))));
        let t = bed.p.stats().tx.summary();
        assert_eq!(t.no_frame, 1);
        assert_eq!(t.send_to, sent as u64);
    }

    /// Rings counted.
    #[derive(Debug, Default)]
    struct Bell(AtomicUsize);
    impl Doorbell for Bell {
        fn ring(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_send_from_another_thread_rings_a_sleeping_poller() {
        let mut bed = Bed::new(512, 256);
        let bell = Arc::new(Bell::default());
        bed.p.set_doorbell(bell.clone());
        let sock = socket(&mut bed, Table::new(Lookup::Ready(HOP)), 64);
        bed.poll();
        // Awake: no ring.
        sock.send_to(b"a", peer(0)).unwrap();
        assert_eq!(bell.0.load(Ordering::SeqCst), 0);
        // Requests wait: the poller may not sleep.
        assert!(!bed.p.prepare_sleep());
        bed.p.woke();
        bed.poll();
        assert!(bed.p.prepare_sleep());
        std::thread::scope(|s| {
            s.spawn(|| sock.send_to(b"b", peer(1)).unwrap());
        });
        assert_eq!(bell.0.load(Ordering::SeqCst), 1, "rung once");
        sock.send_to(b"c", peer(2)).unwrap();
        assert_eq!(bell.0.load(Ordering::SeqCst), 1, "once a sleep");
        bed.p.woke();
        bed.poll();
        assert_eq!(bed.p.rings().sent().len(), 3);
    }

    /// Wait for a future on this thread (at most 30 s: a test that would
    /// hang fails instead).
    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        let waker = crate::tx::ready::thread_waker(std::thread::current());
        let mut cx = Context::from_waker(&waker);
        let mut f = std::pin::pin!(f);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
            assert!(std::time::Instant::now() < deadline, "future stuck");
            std::thread::park_timeout(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn several_threads_send_while_the_poller_receives() {
        const THREADS: usize = 4;
        const EACH: usize = 300;
        let mut bed = Bed::new(1024, 512);
        let wire = Arc::new(KeepAll::default());
        bed.p.set_tx_tap(wire.clone());
        let sock = socket(&mut bed, Table::new(Lookup::Ready(HOP)), 256);
        let done = std::sync::atomic::AtomicUsize::new(0);
        let mut received = 0;
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let (sock, done) = (&sock, &done);
                s.spawn(move || {
                    for i in 0..EACH {
                        let payload = [t as u8, i as u8];
                        block_on(sock.send_to_async(&payload, peer(t))).unwrap();
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                });
            }
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            let mut i = 0;
            while done.load(Ordering::SeqCst) < THREADS || !bed.p.tx_idle() || i < 200 {
                assert!(std::time::Instant::now() < deadline, "senders stuck");
                if i < 200 {
                    bed.arrive(&request(false, i, 10));
                    i += 1;
                }
                bed.poll();
                let mut got = Vec::new();
                received += sock.recv_batch(&mut got, 64);
                // (Frames conserved at the end: meanwhile a sender may hold a
                // spare it is writing, which no count sees.)
            }
        });
        bed.poll();
        let t = bed.p.stats().tx.summary();
        assert_eq!(t.send_to, (THREADS * EACH) as u64);
        assert_eq!(t.queued, t.send_to);
        assert_eq!(t.completed, t.queued);
        assert_eq!(bed.p.rings().sent().len(), THREADS * EACH);
        // One sender's datagrams left in the order it sent them.
        let mut next = [0u8; THREADS];
        let wire = wire.0.lock().unwrap();
        assert_eq!(wire.len(), THREADS * EACH);
        for (_, frame) in wire.iter() {
            let p = parse(frame).unwrap();
            let (t, n) = (p.payload[0] as usize, p.payload[1]);
            assert_eq!(n, next[t], "sender {t} out of order");
            next[t] = next[t].wrapping_add(1);
        }
        assert_eq!(received, 200);
        let s = sock.summary();
        assert_eq!(s.received + s.full, 200);
        bed.conservation();
    }
}
