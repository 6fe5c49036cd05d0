//! The datagram API over frames of a heap pool.

use crate::{
    app::parse_view,
    frame::{FramePool, HeapMemory, RxMeta},
    wire::{
        parse,
        tests::{V4_VLAN, sock},
    },
};

#[test]
fn parse_view_adds_queue_and_timestamp() {
    let mut pool = FramePool::new(Box::new(HeapMemory::new(2048, 1)), 3);
    let mut frame = pool.take_all().remove(0);
    pool.bytes_mut(&mut frame)[..V4_VLAN.len()].copy_from_slice(V4_VLAN);
    let meta = RxMeta {
        queue: 3,
        timestamp_ns: 1_700_000_000_123_456_789,
    };
    let view = pool.into_view(
        frame,
        0,
        V4_VLAN.len() as u32,
        meta,
        FramePool::consumer_id(0),
    );
    let mut scratch = Vec::new();
    let d = parse_view(&view, &mut scratch).unwrap();
    assert_eq!((d.queue, d.timestamp_ns), (3, 1_700_000_000_123_456_789));
    assert_eq!(
        (d.src, d.dst),
        (sock("192.0.2.1:5353"), sock("192.0.2.2:9000"))
    );
    assert_eq!((d.payload, d.vlan), (&b"vlan"[..], [Some(100), None]));
    assert_eq!(d.layout, parse(V4_VLAN).unwrap().layout);
}
