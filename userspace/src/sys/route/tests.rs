//! The router's unit tests: decoding through bytes and back, the resolver's
//! state machine with made-up times, and the published cache without a thread.

use std::net::{Ipv4Addr, Ipv6Addr};

use netlink_packet_route::{
    address::AddressHeaderFlags, link::LinkHeader, neighbour::NeighbourHeader,
};

use netlink_packet_core::{
    NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    address::{AddressAttribute, AddressFlags, AddressMessage},
    link::{LinkAttribute, LinkMessage},
    neighbour::{NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState},
    route::{RouteAttribute, RouteMessage, RouteMetric, RouteType, RouteVia},
};
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, AtomicU64, AtomicUsize},
        mpsc,
    },
    time::{Duration, Instant},
};

use super::{
    resolver::*,
    router::{Command, Hits, Shared, Slot, eventfd},
    wire::family_of,
    *,
};

const IF: u32 = 7;
const OUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const MOVED_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x03];
const OUR_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const GW_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const FAR_V4: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 2);
const OUR_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
const OUR_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
const GW_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
const FAR_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 2);

fn far4() -> IpAddr {
    FAR_V4.into()
}

fn gw4() -> IpAddr {
    GW_V4.into()
}

/// Through bytes and back: what the router thread would read.
fn wire(msg: RouteNetlinkMessage) -> Event {
    let bytes = serialize(msg, 0, 0);
    let mut decoded = decode(&bytes);
    assert_eq!(decoded.len(), 1, "{decoded:?}");
    decoded.remove(0).event.expect("parses")
}

fn route(
    kind: RouteType,
    oif: u32,
    gateway: Option<IpAddr>,
    prefsrc: Option<IpAddr>,
) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = AddressFamily::Inet;
    msg.header.kind = kind;
    msg.header.destination_prefix_length = 32;
    msg.attributes
        .push(RouteAttribute::Destination(far4().into()));
    msg.attributes.push(RouteAttribute::Oif(oif));
    if let Some(gw) = gateway {
        msg.attributes.push(RouteAttribute::Gateway(gw.into()));
    }
    if let Some(src) = prefsrc {
        msg.attributes.push(RouteAttribute::PrefSource(src.into()));
    }
    msg
}

/// The kernel's answer for FAR_V4 via GW_V4 on our interface.
fn answer_via(gw: IpAddr) -> RouteMessage {
    match wire(RouteNetlinkMessage::NewRoute(route(
        RouteType::Unicast,
        IF,
        Some(gw),
        Some(OUR_V4.into()),
    ))) {
        Event::Route(r) => r,
        other => panic!("{other:?}"),
    }
}

fn neigh_msg(
    ip: IpAddr,
    ifindex: u32,
    state: NeighbourState,
    mac: Option<[u8; 6]>,
) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header = NeighbourHeader {
        family: family_of(ip),
        ifindex,
        state,
        ..NeighbourHeader::default()
    };
    msg.attributes
        .push(NeighbourAttribute::Destination(ip.into()));
    if let Some(mac) = mac {
        msg.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    }
    msg
}

fn neigh(ip: IpAddr, state: NeighbourState, mac: Option<[u8; 6]>) -> Event {
    wire(RouteNetlinkMessage::NewNeighbour(neigh_msg(
        ip, IF, state, mac,
    )))
}

fn addr(ip: IpAddr, flags: AddressFlags) -> Event {
    let mut msg = AddressMessage::default();
    msg.header.family = family_of(ip);
    msg.header.index = IF;
    msg.header.prefix_len = if ip.is_ipv4() { 24 } else { 64 };
    msg.attributes.push(AddressAttribute::Address(ip));
    if ip.is_ipv4() {
        msg.attributes.push(AddressAttribute::Local(ip));
    }
    msg.attributes.push(AddressAttribute::Flags(flags));
    wire(RouteNetlinkMessage::NewAddress(msg))
}

fn link(mac: [u8; 6], mtu: u32) -> Event {
    let mut msg = LinkMessage::default();
    msg.header = LinkHeader {
        index: IF,
        ..LinkHeader::default()
    };
    msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
    msg.attributes.push(LinkAttribute::Mtu(mtu));
    wire(RouteNetlinkMessage::NewLink(msg))
}

/// A resolver for interface IF with its addresses loaded, as after a dump.
fn resolver() -> Resolver {
    let mut r = Resolver::new(
        LinkInfo {
            ifindex: IF,
            mac: Some(OUR_MAC),
            mtu: Some(1500),
        },
        OUR_MAC,
    );
    r.load(&addr(OUR_V4.into(), AddressFlags::Permanent));
    r.load(&addr(OUR_LL.into(), AddressFlags::Permanent));
    r.load(&addr(OUR_V6.into(), AddressFlags::Permanent));
    r
}

fn requests(r: &mut Resolver) -> Vec<Request> {
    r.take_output().requests
}

type Answers = Arc<Mutex<Vec<Result<NextHop, Unreachable>>>>;

fn recorder() -> (Answers, impl Fn() -> Then) {
    let answers: Answers = Arc::default();
    let a = Arc::clone(&answers);
    (answers, move || {
        let a = Arc::clone(&a);
        Box::new(move |r| a.lock().unwrap().push(r))
    })
}

/// Run the callbacks of `out`, as the router thread does.
fn run(out: Output) -> Output {
    let Output {
        requests,
        publish,
        done,
    } = out;
    for (then, result) in done {
        then(result);
    }
    Output {
        requests,
        publish,
        done: Vec::new(),
    }
}

fn expected_hop(gateway: Option<IpAddr>) -> NextHop {
    NextHop {
        src_mac: OUR_MAC,
        dst_mac: GW_MAC,
        src_ip: OUR_V4.into(),
        gateway,
        mtu: 1500,
    }
}

// --- decoding --------------------------------------------------------

#[test]
fn a_route_answer_gives_interface_gateway_source_and_mtu() {
    let mut msg = route(RouteType::Unicast, IF, Some(gw4()), Some(OUR_V4.into()));
    msg.attributes
        .push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(1400)]));
    let Event::Route(back) = wire(RouteNetlinkMessage::NewRoute(msg)) else {
        panic!("not a route");
    };
    assert_eq!(
        route_info(&back),
        Ok(RouteInfo {
            oif: IF,
            gateway: Some(gw4()),
            prefsrc: Some(OUR_V4.into()),
            mtu: Some(1400),
        })
    );
    // A connected route has no gateway; an IPv4 route may have an IPv6
    // next hop (RTA_VIA).
    let mut via = route(RouteType::Unicast, IF, None, None);
    via.attributes
        .push(RouteAttribute::Via(RouteVia::Inet6(GW_V6)));
    let Event::Route(back) = wire(RouteNetlinkMessage::NewRoute(via)) else {
        panic!("not a route");
    };
    assert_eq!(route_info(&back).unwrap().gateway, Some(GW_V6.into()));
}

#[test]
fn routes_that_lead_nowhere_are_no_route() {
    for kind in [
        RouteType::BlackHole,
        RouteType::Unreachable,
        RouteType::Prohibit,
        RouteType::Throw,
        RouteType::Local,
        RouteType::Broadcast,
        RouteType::Multicast,
        RouteType::Anycast,
    ] {
        let Event::Route(back) = wire(RouteNetlinkMessage::NewRoute(route(kind, IF, None, None)))
        else {
            panic!("not a route");
        };
        assert_eq!(route_info(&back), Err(Unreachable::NoRoute), "{kind:?}");
    }
    let mut no_oif = route(RouteType::Unicast, IF, None, None);
    no_oif
        .attributes
        .retain(|a| !matches!(a, RouteAttribute::Oif(_)));
    assert_eq!(route_info(&no_oif), Err(Unreachable::NoRoute));
    for errno in [
        libc::ENETUNREACH,
        libc::EHOSTUNREACH,
        libc::EACCES,
        libc::EINVAL,
    ] {
        assert_eq!(route_error(errno), Some(Unreachable::NoRoute), "{errno}");
    }
    assert_eq!(route_error(libc::ENOBUFS), None);
}

#[test]
fn neighbour_notifications_are_decoded_and_foreign_ones_ignored() {
    assert_eq!(
        neigh(gw4(), NeighbourState::Reachable, Some(GW_MAC)),
        Event::Neigh(NeighInfo {
            ifindex: IF,
            ip: gw4(),
            state: NeighbourState::Reachable,
            mac: Some(GW_MAC),
        })
    );
    let gone = wire(RouteNetlinkMessage::DelNeighbour(neigh_msg(
        GW_V6.into(),
        IF,
        NeighbourState::Failed,
        None,
    )));
    assert_eq!(
        gone,
        Event::NeighGone(NeighInfo {
            ifindex: IF,
            ip: GW_V6.into(),
            state: NeighbourState::Failed,
            mac: None,
        })
    );
    let mut fdb = neigh_msg(gw4(), IF, NeighbourState::Permanent, Some(GW_MAC));
    fdb.header.family = AddressFamily::Bridge;
    fdb.attributes
        .retain(|a| !matches!(a, NeighbourAttribute::Destination(_)));
    assert_eq!(wire(RouteNetlinkMessage::NewNeighbour(fdb)), Event::Ignored);
    let mut proxy = neigh_msg(gw4(), IF, NeighbourState::None, None);
    proxy.header.flags = NeighbourFlags::Proxy;
    assert_eq!(
        wire(RouteNetlinkMessage::NewNeighbour(proxy)),
        Event::Ignored
    );
}

#[test]
fn links_and_addresses_are_decoded() {
    assert_eq!(
        link(OUR_MAC, 9000),
        Event::Link(LinkInfo {
            ifindex: IF,
            mac: Some(OUR_MAC),
            mtu: Some(9000),
        })
    );
    assert_eq!(
        addr(OUR_V6.into(), AddressFlags::Tentative),
        Event::Addr(IfAddr {
            ifindex: IF,
            ip: OUR_V6.into(),
            usable: false,
        })
    );
    let mut header_flags = AddressMessage::default();
    header_flags.header.family = AddressFamily::Inet6;
    header_flags.header.index = IF;
    header_flags.header.flags = AddressHeaderFlags::Permanent;
    header_flags
        .attributes
        .push(AddressAttribute::Address(OUR_V6.into()));
    assert!(matches!(
        wire(RouteNetlinkMessage::NewAddress(header_flags)),
        Event::Addr(IfAddr { usable: true, .. })
    ));
}

#[test]
fn several_messages_in_one_datagram_are_all_decoded() {
    let mut datagram = serialize(
        RouteNetlinkMessage::NewNeighbour(neigh_msg(
            gw4(),
            IF,
            NeighbourState::Stale,
            Some(GW_MAC),
        )),
        0,
        5,
    );
    datagram.extend(serialize(
        RouteNetlinkMessage::NewRoute(route(RouteType::Unicast, IF, None, None)),
        0,
        6,
    ));
    let decoded = decode(&datagram);
    assert_eq!(decoded.len(), 2);
    assert_eq!(decoded[0].seq, 5);
    assert!(matches!(decoded[0].event, Some(Event::Neigh(_))));
    assert_eq!(decoded[1].seq, 6);
    assert!(matches!(decoded[1].event, Some(Event::Route(_))));
}

#[test]
fn malformed_datagrams_are_skipped_not_trusted() {
    let good = serialize(
        RouteNetlinkMessage::NewNeighbour(neigh_msg(
            gw4(),
            IF,
            NeighbourState::Reachable,
            Some(GW_MAC),
        )),
        0,
        0,
    );
    // A length beyond the datagram.
    let mut long = good.clone();
    long[0] = 0xff;
    assert_eq!(
        decode(&long),
        vec![Decoded {
            seq: 0,
            event: None
        }]
    );
    // A length shorter than a header.
    let mut short = good.clone();
    short[..4].copy_from_slice(&8u32.to_ne_bytes());
    assert_eq!(decode(&short)[0].event, None);
    // An attribute cut in half.
    let mut cut = good[..good.len() - 3].to_vec();
    let len = cut.len() as u32;
    cut[..4].copy_from_slice(&len.to_ne_bytes());
    assert_eq!(decode(&cut)[0].event, None);
    // A tail shorter than a header.
    let mut tail = good.clone();
    tail.extend([1, 2, 3]);
    let decoded = decode(&tail);
    assert_eq!(decoded.len(), 2);
    assert!(decoded[0].event.is_some());
    assert_eq!(decoded[1].event, None);
    // A kind we do not follow is no error.
    let mut other = good.clone();
    other[4..6].copy_from_slice(&104u16.to_ne_bytes());
    assert_eq!(decode(&other)[0].event, Some(Event::Ignored));
    assert!(decode(&[]).is_empty());
}

proptest::proptest! {
    /// No input panics the decoder: random bytes, and real messages with
    /// bytes changed.
    #[test]
    fn decoding_never_panics(
        noise in proptest::collection::vec(proptest::num::u8::ANY, 0..256),
        flips in proptest::collection::vec((0usize..200, proptest::num::u8::ANY), 1..8),
        which in 0usize..4,
    ) {
        let _ = decode(&noise);
        let mut gated = route(RouteType::Unicast, IF, Some(gw4()), Some(OUR_V4.into()));
        gated.attributes.push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(1400)]));
        let msg = match which {
            0 => RouteNetlinkMessage::NewRoute(gated),
            1 => RouteNetlinkMessage::NewNeighbour(neigh_msg(gw4(), IF, NeighbourState::Reachable, Some(GW_MAC))),
            2 => match link(OUR_MAC, 1500) {
                Event::Link(_) => {
                    let mut l = LinkMessage::default();
                    l.header.index = IF;
                    l.attributes.push(LinkAttribute::Address(OUR_MAC.to_vec()));
                    l.attributes.push(LinkAttribute::Mtu(1500));
                    RouteNetlinkMessage::NewLink(l)
                }
                _ => unreachable!(),
            },
            _ => {
                let mut a = AddressMessage::default();
                a.header.family = AddressFamily::Inet6;
                a.header.index = IF;
                a.attributes.push(AddressAttribute::Address(OUR_V6.into()));
                RouteNetlinkMessage::NewAddress(a)
            }
        };
        let mut bytes = serialize(msg, 0, 0);
        for (at, value) in flips {
            if let Some(b) = bytes.get_mut(at) {
                *b = value;
            }
        }
        for d in decode(&bytes) {
            if let Some(Event::Route(r)) = &d.event {
                let _ = route_info(r);
            }
        }
    }
}

#[test]
fn the_requests_say_what_the_kernel_needs() {
    // NTF_USE, NUD_NONE (not PERMANENT: no GC exemption), our interface.
    let bytes = serialize(
        neigh_use_request(gw4(), IF),
        NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE,
        3,
    );
    let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes).unwrap();
    assert_eq!(
        msg.header.flags,
        NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE
    );
    assert_eq!(msg.header.sequence_number, 3);
    let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(n)) = msg.payload else {
        panic!("not RTM_NEWNEIGH");
    };
    assert_eq!(n.header.flags, NeighbourFlags::Use);
    assert_eq!(u16::from(n.header.state), 0);
    assert_eq!(n.header.ifindex, IF);
    assert_eq!(n.header.family, AddressFamily::Inet);
    assert_eq!(
        n.attributes,
        vec![NeighbourAttribute::Destination(gw4().into())]
    );
    // Route questions: a host prefix; link-local ones on our interface.
    let RouteNetlinkMessage::GetRoute(q) = route_request(far4(), IF) else {
        panic!("not RTM_GETROUTE");
    };
    assert_eq!(q.header.destination_prefix_length, 32);
    assert_eq!(
        q.attributes,
        vec![RouteAttribute::Destination(far4().into())]
    );
    let RouteNetlinkMessage::GetRoute(q) = route_request(OUR_LL.into(), IF) else {
        panic!("not RTM_GETROUTE");
    };
    assert_eq!(q.header.destination_prefix_length, 128);
    assert!(q.attributes.contains(&RouteAttribute::Oif(IF)));
}

// --- the state machine -------------------------------------------------

#[test]
fn a_known_neighbour_makes_a_miss_ready_after_one_question() {
    let t0 = Instant::now();
    let mut r = resolver();
    r.load(&neigh(gw4(), NeighbourState::Reachable, Some(GW_MAC)));
    r.resolve(far4(), t0);
    r.resolve(far4(), t0);
    let out = r.take_output();
    assert_eq!(out.requests, vec![Request::Route(far4())], "asked once");
    assert_eq!(out.publish, vec![Publish::Set(far4(), Answer::Pending)]);
    r.route_answer(far4(), Ok(&answer_via(gw4())), t0);
    let out = r.take_output();
    assert!(
        out.requests.is_empty(),
        "no NTF_USE for a REACHABLE neighbour"
    );
    assert_eq!(
        out.publish,
        vec![Publish::Set(
            far4(),
            Answer::Ready(expected_hop(Some(gw4())))
        )]
    );
    assert_eq!(r.stats().resolved, 1);
    assert_eq!(r.stats().route_queries, 1);
    assert_eq!(r.next_deadline(), None, "nothing to expire");
}

#[test]
fn an_unknown_neighbour_is_resolved_by_the_kernel_on_request() {
    let t0 = Instant::now();
    let (answers, then) = recorder();
    let mut r = resolver();
    r.hold(far4(), then(), t0);
    assert_eq!(requests(&mut r), vec![Request::Route(far4())]);
    r.route_answer(far4(), Ok(&answer_via(gw4())), t0);
    let out = r.take_output();
    assert_eq!(out.requests, vec![Request::Neigh(gw4())]);
    assert!(out.publish.is_empty(), "still pending");
    // A second destination behind the same gateway: no second NTF_USE.
    let other: IpAddr = Ipv4Addr::new(198, 19, 0, 9).into();
    r.resolve(other, t0);
    r.take_output();
    r.route_answer(other, Ok(&answer_via(gw4())), t0);
    assert!(requests(&mut r).is_empty());
    assert_eq!(r.stats().neighbour_requests, 1);
    // The kernel's notification: both are ready, the hold runs.
    r.event(
        &neigh(gw4(), NeighbourState::Reachable, Some(GW_MAC)),
        t0 + Duration::from_millis(5),
    );
    let out = run(r.take_output());
    assert_eq!(out.publish.len(), 2);
    assert!(out.publish.contains(&Publish::Set(
        far4(),
        Answer::Ready(expected_hop(Some(gw4())))
    )));
    assert_eq!(
        *answers.lock().unwrap(),
        vec![Ok(expected_hop(Some(gw4())))]
    );
    assert_eq!(r.holding(), 0);
}

#[test]
fn incomplete_is_waited_for_and_failed_fails_the_holds() {
    let t0 = Instant::now();
    let (answers, then) = recorder();
    let mut r = resolver();
    r.hold(far4(), then(), t0);
    r.hold(far4(), then(), t0);
    r.take_output();
    r.route_answer(far4(), Ok(&answer_via(gw4())), t0);
    r.take_output();
    // INCOMPLETE: the kernel is probing; nothing changes.
    r.event(&neigh(gw4(), NeighbourState::Incomplete, None), t0);
    let out = r.take_output();
    assert!(out.publish.is_empty() && out.requests.is_empty() && out.done.is_empty());
    // FAILED: the holds fail, the failure is published and remembered.
    let t1 = t0 + Duration::from_secs(2);
    r.event(&neigh(gw4(), NeighbourState::Failed, None), t1);
    let out = run(r.take_output());
    assert_eq!(
        out.publish,
        vec![Publish::Set(
            far4(),
            Answer::Failed(Unreachable::Unresolved)
        )]
    );
    assert_eq!(
        *answers.lock().unwrap(),
        vec![Err(Unreachable::Unresolved), Err(Unreachable::Unresolved)]
    );
    assert_eq!(r.stats().failed[Unreachable::Unresolved as usize], 1);
    // Remembered for NEGATIVE_TTL, then forgotten: the next miss asks again.
    assert_eq!(r.next_deadline(), Some(t1 + NEGATIVE_TTL));
    r.tick(t1 + NEGATIVE_TTL - Duration::from_millis(1), &[]);
    assert!(r.take_output().publish.is_empty());
    r.resolve(far4(), t1);
    assert!(requests(&mut r).is_empty(), "still remembered");
    r.tick(t1 + NEGATIVE_TTL, &[]);
    assert_eq!(r.take_output().publish, vec![Publish::Remove(far4())]);
    r.resolve(far4(), t1 + NEGATIVE_TTL);
    assert_eq!(requests(&mut r), vec![Request::Route(far4())]);
    // Asked again, the FAILED neighbour is re-probed (NTF_USE turns
    // FAILED into INCOMPLETE).
    r.route_answer(far4(), Ok(&answer_via(gw4())), t1 + NEGATIVE_TTL);
    assert_eq!(requests(&mut r), vec![Request::Neigh(gw4())]);
}

#[test]
fn no_answer_within_the_timeout_fails() {
    let t0 = Instant::now();
    let (answers, then) = recorder();
    let mut r = resolver();
    r.resolve(far4(), t0);
    r.take_output();
    r.route_answer(far4(), Ok(&answer_via(gw4())), t0);
    r.take_output();
    // A hold that comes a second later is bound by the resolution's end.
    r.hold(far4(), then(), t0 + Duration::from_secs(1));
    assert_eq!(r.next_deadline(), Some(t0 + RESOLVE_TIMEOUT));
    r.tick(t0 + RESOLVE_TIMEOUT - Duration::from_millis(1), &[]);
    assert!(r.take_output().publish.is_empty());
    r.tick(t0 + RESOLVE_TIMEOUT, &[]);
    let out = run(r.take_output());
    assert_eq!(
        out.publish,
        vec![Publish::Set(
            far4(),
            Answer::Failed(Unreachable::Unresolved)
        )]
    );
    assert_eq!(*answers.lock().unwrap(), vec![Err(Unreachable::Unresolved)]);
    assert_eq!(r.stats().timeouts, 1);
}

#[test]
fn route_errors_and_other_interfaces_fail_with_their_cause() {
    let t0 = Instant::now();
    let mut r = resolver();
    r.resolve(far4(), t0);
    r.route_answer(far4(), Err(libc::ENETUNREACH), t0);
    let out = r.take_output();
    assert_eq!(
        out.publish.last(),
        Some(&Publish::Set(far4(), Answer::Failed(Unreachable::NoRoute)))
    );
    let elsewhere: IpAddr = Ipv4Addr::new(198, 19, 7, 7).into();
    r.resolve(elsewhere, t0);
    let mut msg = answer_via(gw4());
    for a in &mut msg.attributes {
        if let RouteAttribute::Oif(i) = a {
            *i = IF + 1;
        }
    }
    r.route_answer(elsewhere, Ok(&msg), t0);
    assert_eq!(
        r.take_output().publish.last(),
        Some(&Publish::Set(
            elsewhere,
            Answer::Failed(Unreachable::OtherInterface)
        ))
    );
    // Multicast, broadcast and unspecified never reach the kernel.
    for dst in [
        IpAddr::from(Ipv4Addr::new(224, 0, 0, 1)),
        Ipv4Addr::BROADCAST.into(),
        Ipv6Addr::UNSPECIFIED.into(),
        "ff02::1".parse().unwrap(),
    ] {
        r.resolve(dst, t0);
        let out = r.take_output();
        assert!(out.requests.is_empty(), "{dst}");
        assert_eq!(
            out.publish,
            vec![Publish::Set(dst, Answer::Failed(Unreachable::NoRoute))]
        );
    }
    // A request that failed for its own reasons is Unresolved, counted.
    let odd: IpAddr = Ipv4Addr::new(198, 19, 8, 8).into();
    r.resolve(odd, t0);
    r.route_answer(odd, Err(libc::ETIMEDOUT), t0);
    assert_eq!(
        r.take_output().publish.last(),
        Some(&Publish::Set(odd, Answer::Failed(Unreachable::Unresolved)))
    );
    assert_eq!(r.stats().request_errors, 1);
}

#[test]
fn a_route_change_is_followed_without_going_pending() {
    let t0 = Instant::now();
    let new_gw: IpAddr = Ipv4Addr::new(198, 18, 0, 3).into();
    let mut r = resolver();
    r.load(&neigh(gw4(), NeighbourState::Reachable, Some(GW_MAC)));
    r.load(&neigh(new_gw, NeighbourState::Reachable, Some(MOVED_MAC)));
    r.resolve(far4(), t0);
    r.route_answer(far4(), Ok(&answer_via(gw4())), t0);
    // A failure of the same family, and a v6 destination.
    let nowhere: IpAddr = Ipv4Addr::new(198, 19, 99, 1).into();
    r.resolve(nowhere, t0);
    r.route_answer(nowhere, Err(libc::ENETUNREACH), t0);
    r.resolve(FAR_V6.into(), t0);
    r.take_output();
    let change = wire(RouteNetlinkMessage::NewRoute(route(
        RouteType::Unicast,
        IF,
        Some(new_gw),
        None,
    )));
    r.event(&change, t0);
    r.event(&change, t0);
    let out = r.take_output();
    assert_eq!(
        out.requests,
        vec![Request::Route(far4())],
        "asked again, once; v6 untouched"
    );
    assert_eq!(
        out.publish,
        vec![Publish::Remove(nowhere)],
        "no Pending for the ready one"
    );
    r.route_answer(far4(), Ok(&answer_via(new_gw)), t0);
    let want = NextHop {
        dst_mac: MOVED_MAC,
        ..expected_hop(Some(new_gw))
    };
    assert_eq!(
        r.take_output().publish,
        vec![Publish::Set(far4(), Answer::Ready(want))]
    );
    assert_eq!(r.stats().resolved, 1, "a change is no new resolution");
    // An unchanged answer publishes nothing.
    r.event(&change, t0);
    r.take_output();
    r.route_answer(far4(), Ok(&answer_via(new_gw)), t0);
    assert!(r.take_output().publish.is_empty());
    // An address change counts as a route change of its family.
    r.event(
        &addr("fd00::5".parse().unwrap(), AddressFlags::Permanent),
        t0,
    );
    let out = r.take_output();
    assert!(out.requests.contains(&Request::Route(FAR_V6.into())));
    assert!(!out.requests.contains(&Request::Route(far4())));
    assert!(r.stats().changes_seen >= 4);
}

#[test]
fn a_new_mac_or_a_lost_neighbour_updates_every_destination_behind_it() {
    let t0 = Instant::now();
    let mut r = resolver();
    r.load(&neigh(gw4(), NeighbourState::Reachable, Some(GW_MAC)));
    r.resolve(far4(), t0);
    r.route_answer(far4(), Ok(&answer_via(gw4())), t0);
    r.take_output();
    r.event(
        &neigh(gw4(), NeighbourState::Reachable, Some(MOVED_MAC)),
        t0,
    );
    let moved = NextHop {
        dst_mac: MOVED_MAC,
        ..expected_hop(Some(gw4()))
    };
    assert_eq!(
        r.take_output().publish,
        vec![Publish::Set(far4(), Answer::Ready(moved))]
    );
    // STALE keeps the address (the kernel sends on it too).
    r.event(&neigh(gw4(), NeighbourState::Stale, Some(MOVED_MAC)), t0);
    assert!(r.take_output().publish.is_empty());
    // A neighbour on another interface is not ours.
    let mut foreign = neigh_msg(gw4(), IF + 1, NeighbourState::Failed, None);
    foreign.header.ifindex = IF + 1;
    r.event(&wire(RouteNetlinkMessage::NewNeighbour(foreign)), t0);
    assert!(r.take_output().publish.is_empty());
    // Deleted: pending, and the kernel is asked to make it again.
    let gone = wire(RouteNetlinkMessage::DelNeighbour(neigh_msg(
        gw4(),
        IF,
        NeighbourState::Stale,
        None,
    )));
    r.event(&gone, t0);
    let out = r.take_output();
    assert_eq!(out.publish, vec![Publish::Set(far4(), Answer::Pending)]);
    assert_eq!(out.requests, vec![Request::Neigh(gw4())]);
    r.event(&neigh(gw4(), NeighbourState::Reachable, Some(GW_MAC)), t0);
    assert_eq!(
        r.take_output().publish,
        vec![Publish::Set(
            far4(),
            Answer::Ready(expected_hop(Some(gw4())))
        )]
    );
}

#[test]
fn a_stale_neighbour_in_use_is_refreshed_every_five_seconds() {
    let t0 = Instant::now();
    let mut r = resolver();
    r.load(&neigh(gw4(), NeighbourState::Stale, Some(GW_MAC)));
    r.resolve(far4(), t0);
    r.take_output();
    r.route_answer(far4(), Ok(&answer_via(gw4())), t0);
    assert!(requests(&mut r).is_empty(), "STALE is usable at once");
    // Not used: nothing.
    r.tick(t0, &[]);
    assert!(requests(&mut r).is_empty());
    r.tick(t0, &[far4()]);
    assert_eq!(requests(&mut r), vec![Request::Neigh(gw4())]);
    r.tick(t0 + STALE_REFRESH - Duration::from_millis(1), &[far4()]);
    assert!(requests(&mut r).is_empty(), "at most every STALE_REFRESH");
    r.tick(t0 + STALE_REFRESH, &[far4()]);
    assert_eq!(requests(&mut r), vec![Request::Neigh(gw4())]);
    assert_eq!(r.stats().stale_refreshes, 2);
    // REACHABLE and PERMANENT ones are never touched (NTF_USE would clear
    // NUD_PERMANENT).
    for state in [NeighbourState::Reachable, NeighbourState::Permanent] {
        r.event(&neigh(gw4(), state, Some(GW_MAC)), t0);
        r.take_output();
        r.tick(t0 + 10 * STALE_REFRESH, &[far4()]);
        assert!(requests(&mut r).is_empty(), "{state:?}");
    }
}

#[test]
fn idle_destinations_are_forgotten() {
    let t0 = Instant::now();
    let mut r = resolver();
    r.load(&neigh(gw4(), NeighbourState::Reachable, Some(GW_MAC)));
    r.resolve(far4(), t0);
    r.route_answer(far4(), Ok(&answer_via(gw4())), t0);
    let quiet: IpAddr = Ipv4Addr::new(198, 19, 3, 3).into();
    r.resolve(quiet, t0);
    r.route_answer(quiet, Ok(&answer_via(gw4())), t0);
    r.take_output();
    r.tick(t0 + IDLE_TTL / 2, &[far4()]);
    r.tick(t0 + IDLE_TTL - Duration::from_millis(1), &[]);
    assert!(r.take_output().publish.is_empty());
    r.tick(t0 + IDLE_TTL, &[]);
    assert_eq!(r.take_output().publish, vec![Publish::Remove(quiet)]);
    r.tick(t0 + IDLE_TTL / 2 + IDLE_TTL, &[]);
    assert_eq!(r.take_output().publish, vec![Publish::Remove(far4())]);
    assert_eq!(r.stats().entries, 0);
}

#[test]
fn the_router_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Router>();
}

#[test]
fn an_overrun_drops_the_cache_and_restarts_only_what_is_held() {
    let t0 = Instant::now();
    let (answers, then) = recorder();
    let mut r = resolver();
    r.load(&neigh(gw4(), NeighbourState::Reachable, Some(GW_MAC)));
    r.resolve(far4(), t0);
    r.route_answer(far4(), Ok(&answer_via(gw4())), t0);
    let waiting: IpAddr = Ipv4Addr::new(198, 19, 50, 1).into();
    r.hold(waiting, then(), t0);
    r.take_output();
    r.overrun(t0);
    let out = r.take_output();
    assert_eq!(
        out.publish,
        vec![Publish::Clear, Publish::Set(waiting, Answer::Pending)]
    );
    assert_eq!(out.requests, vec![Request::Reload, Request::Route(waiting)]);
    assert_eq!(r.stats().entries, 1);
    assert_eq!(r.stats().overruns, 1);
    // The neighbour table is forgotten too: the reload brings it back.
    r.load(&neigh(gw4(), NeighbourState::Reachable, Some(GW_MAC)));
    let mut msg = answer_via(gw4());
    msg.attributes
        .retain(|a| !matches!(a, RouteAttribute::Destination(_)));
    r.route_answer(waiting, Ok(&msg), t0);
    run(r.take_output());
    assert_eq!(
        *answers.lock().unwrap(),
        vec![Ok(expected_hop(Some(gw4())))]
    );
}

#[test]
fn a_link_change_refreshes_source_mac_and_mtu() {
    let t0 = Instant::now();
    let mut r = resolver();
    r.load(&neigh(gw4(), NeighbourState::Reachable, Some(GW_MAC)));
    r.resolve(far4(), t0);
    r.route_answer(far4(), Ok(&answer_via(gw4())), t0);
    // A route MTU wins over the link's.
    let pinned: IpAddr = Ipv4Addr::new(198, 19, 1, 1).into();
    r.resolve(pinned, t0);
    let mut msg = answer_via(gw4());
    msg.attributes
        .push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(1280)]));
    r.route_answer(pinned, Ok(&msg), t0);
    r.take_output();
    r.event(&link(MOVED_MAC, 9000), t0);
    let out = r.take_output();
    let want = NextHop {
        src_mac: MOVED_MAC,
        mtu: 9000,
        ..expected_hop(Some(gw4()))
    };
    assert!(
        out.publish
            .contains(&Publish::Set(far4(), Answer::Ready(want)))
    );
    let want_pinned = NextHop {
        src_mac: MOVED_MAC,
        mtu: 1280,
        ..expected_hop(Some(gw4()))
    };
    assert!(
        out.publish
            .contains(&Publish::Set(pinned, Answer::Ready(want_pinned)))
    );
    r.event(&link(MOVED_MAC, 9000), t0);
    assert!(
        r.take_output().publish.is_empty(),
        "no change, nothing published"
    );
}

#[test]
fn without_a_preferred_source_the_interface_address_is_chosen() {
    let t0 = Instant::now();
    let mut r = resolver();
    let gw_ll: IpAddr = "fe80::2".parse().unwrap();
    r.load(&neigh(gw_ll, NeighbourState::Reachable, Some(GW_MAC)));
    r.load(&neigh(
        GW_V6.into(),
        NeighbourState::Reachable,
        Some(GW_MAC),
    ));
    let v6_route = |gateway: Option<IpAddr>| {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet6;
        msg.header.kind = RouteType::Unicast;
        msg.attributes.push(RouteAttribute::Oif(IF));
        if let Some(gw) = gateway {
            msg.attributes.push(RouteAttribute::Gateway(gw.into()));
        }
        match wire(RouteNetlinkMessage::NewRoute(msg)) {
            Event::Route(r) => r,
            other => panic!("{other:?}"),
        }
    };
    // Global before link-local (loaded first) for a global destination,
    // even through a link-local gateway.
    r.resolve(FAR_V6.into(), t0);
    r.route_answer(FAR_V6.into(), Ok(&v6_route(Some(gw_ll))), t0);
    // A link-local destination gets the link-local source.
    r.resolve(gw_ll, t0);
    r.route_answer(gw_ll, Ok(&v6_route(None)), t0);
    // IPv4 without PREFSRC: the interface's IPv4 address.
    r.resolve(gw4(), t0);
    r.load(&neigh(gw4(), NeighbourState::Noarp, Some(GW_MAC)));
    let Event::Route(v4) = wire(RouteNetlinkMessage::NewRoute(route(
        RouteType::Unicast,
        IF,
        None,
        None,
    ))) else {
        panic!()
    };
    r.route_answer(gw4(), Ok(&v4), t0);
    let out = r.take_output();
    let src = |dst: IpAddr| {
        out.publish.iter().find_map(|p| match p {
            Publish::Set(d, Answer::Ready(h)) if *d == dst => Some(h.src_ip),
            _ => None,
        })
    };
    assert_eq!(src(FAR_V6.into()), Some(OUR_V6.into()));
    assert_eq!(src(gw_ll), Some(OUR_LL.into()));
    assert_eq!(src(gw4()), Some(OUR_V4.into()));
    // No usable address of the family: no way to send.
    let mut bare = Resolver::new(
        LinkInfo {
            ifindex: IF,
            mac: Some(OUR_MAC),
            mtu: Some(1500),
        },
        OUR_MAC,
    );
    bare.load(&addr(OUR_V6.into(), AddressFlags::Tentative));
    bare.load(&neigh(
        GW_V6.into(),
        NeighbourState::Reachable,
        Some(GW_MAC),
    ));
    bare.resolve(FAR_V6.into(), t0);
    bare.route_answer(FAR_V6.into(), Ok(&v6_route(Some(GW_V6.into()))), t0);
    assert_eq!(
        bare.take_output().publish.last(),
        Some(&Publish::Set(
            FAR_V6.into(),
            Answer::Failed(Unreachable::NoRoute)
        ))
    );
}

#[test]
fn holds_on_known_answers_run_at_once_and_shutdown_fails_the_rest() {
    let t0 = Instant::now();
    let (answers, then) = recorder();
    let mut r = resolver();
    r.load(&neigh(gw4(), NeighbourState::Permanent, Some(GW_MAC)));
    r.resolve(far4(), t0);
    r.route_answer(far4(), Ok(&answer_via(gw4())), t0);
    r.take_output();
    r.hold(far4(), then(), t0);
    let waiting: IpAddr = Ipv4Addr::new(198, 19, 50, 1).into();
    r.hold(waiting, then(), t0);
    run(r.take_output());
    assert_eq!(
        *answers.lock().unwrap(),
        vec![Ok(expected_hop(Some(gw4())))]
    );
    assert_eq!(r.holding(), 1);
    r.shutdown();
    run(r.take_output());
    assert_eq!(
        answers.lock().unwrap().last(),
        Some(&Err(Unreachable::Unresolved))
    );
    assert_eq!(r.holding(), 0);
}

#[test]
fn names_are_the_counter_names() {
    let names: Vec<_> = Unreachable::ALL.iter().map(|u| u.name()).collect();
    assert_eq!(names, ["no_route", "other_interface", "unresolved"]);
    for (i, u) in Unreachable::ALL.iter().enumerate() {
        assert_eq!(*u as usize, i);
    }
}

// --- the published cache, without a thread --------------------------

/// A router whose thread is the test: the commands come out of the
/// returned receiver.
fn detached() -> (Router, mpsc::Receiver<Command>) {
    let (tx, rx) = mpsc::channel();
    let shared = Arc::new(Shared {
        cache: RwLock::new(HashMap::new()),
        wake: eventfd().unwrap(),
        stop: AtomicBool::new(false),
        hits: Hits::default(),
        misses: AtomicU64::new(0),
        negative: AtomicU64::new(0),
        held: AtomicU64::new(0),
        hold_full: AtomicU64::new(0),
        holding: AtomicUsize::new(0),
        core: Mutex::new(CoreStats::default()),
    });
    let router = Router {
        shared,
        commands: tx,
        thread: Mutex::new(None),
        ifindex: IF,
    };
    (router, rx)
}

#[test]
fn hits_from_many_threads_are_each_counted() {
    let (router, _rx) = detached();
    let hop = expected_hop(Some(gw4()));
    router
        .shared
        .cache
        .write()
        .unwrap()
        .insert(far4(), Slot::new(Answer::Ready(hop)));
    std::thread::scope(|s| {
        for _ in 0..20 {
            s.spawn(|| {
                for _ in 0..500 {
                    assert_eq!(router.lookup(far4()), Lookup::Ready(hop));
                }
            });
        }
    });
    let stats = router.stats();
    assert_eq!(
        (stats.lookups, stats.hits, stats.misses),
        (10_000, 10_000, 0)
    );
}

#[test]
fn misses_ask_once_and_hits_ask_nothing() {
    let (router, rx) = detached();
    for _ in 0..10 {
        assert_eq!(router.lookup(far4()), Lookup::Pending);
    }
    let asked: Vec<_> = rx.try_iter().collect();
    assert_eq!(asked.len(), 1);
    assert!(matches!(asked[0], Command::Resolve(d) if d == far4()));
    let hop = expected_hop(Some(gw4()));
    router
        .shared
        .cache
        .write()
        .unwrap()
        .insert(far4(), Slot::new(Answer::Ready(hop)));
    assert_eq!(router.lookup(far4()), Lookup::Ready(hop));
    assert!(rx.try_iter().next().is_none());
    let stats = router.stats();
    assert_eq!((stats.lookups, stats.hits, stats.misses), (11, 1, 10));
    let (answers, then) = recorder();
    router.hold(far4(), then());
    assert_eq!(*answers.lock().unwrap(), vec![Ok(hop)], "known: at once");
    assert!(rx.try_iter().next().is_none());
}

#[test]
fn holds_beyond_the_limits_fail_at_once() {
    let (router, rx) = detached();
    let (answers, then) = recorder();
    for _ in 0..HOLD_PER_DESTINATION + 3 {
        router.hold(far4(), then());
    }
    let sent = rx
        .try_iter()
        .filter(|c| matches!(c, Command::Hold(..)))
        .count();
    assert_eq!(sent, HOLD_PER_DESTINATION);
    assert_eq!(
        *answers.lock().unwrap(),
        vec![Err(Unreachable::Unresolved); 3]
    );
    let stats = router.stats();
    assert_eq!((stats.held, stats.hold_full, stats.holding), (64, 3, 64));
    // The total: spread over many destinations.
    let mut sent = 0;
    for i in 0..(HOLD_TOTAL / HOLD_PER_DESTINATION + 1) as u32 {
        let dst = IpAddr::from(Ipv4Addr::from(0xc613_0000 + i + 1));
        for _ in 0..HOLD_PER_DESTINATION {
            router.hold(dst, then());
        }
        sent += rx
            .try_iter()
            .filter(|c| matches!(c, Command::Hold(..)))
            .count();
    }
    assert_eq!(sent + HOLD_PER_DESTINATION, HOLD_TOTAL);
    assert_eq!(router.stats().holding, HOLD_TOTAL as u64);
}

// --- the router itself, read-only on the loopback interface --------------

#[test]
fn opening_an_unknown_interface_names_it() {
    let err = Router::open(0x7fff_fff0).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{err}");
    assert!(
        err.to_string()
            .contains("interface index 2147483632 not found"),
        "{err}"
    );
}

#[test]
fn the_router_thread_answers_and_stops() {
    // Loopback: index 1, an all-zero 6-byte address. A local destination is
    // no way out: the kernel says so without anything being sent.
    let router = Router::open(1).expect("opening on lo");
    let local: IpAddr = Ipv4Addr::LOCALHOST.into();
    let deadline = Instant::now() + Duration::from_secs(2);
    let answer = loop {
        match router.lookup(local) {
            Lookup::Pending if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            other => break other,
        }
    };
    // It answered: its thread runs, and has named itself.
    let names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .collect();
    assert!(
        names.iter().any(|n| n.trim() == "xdpstack-route"),
        "{names:?}"
    );
    assert_eq!(answer, Lookup::Failed(Unreachable::NoRoute));
    let (tx, rx) = mpsc::channel();
    router.hold(
        local,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    assert_eq!(
        rx.try_recv(),
        Ok(Err(Unreachable::NoRoute)),
        "known: at once"
    );
    let stats = router.stats();
    assert_eq!(stats.route_queries, 1, "{stats:?}");
    assert_eq!(stats.no_route, 1, "{stats:?}");
    assert_eq!(stats.malformed, 0, "{stats:?}");
    let t0 = Instant::now();
    drop(router);
    assert!(t0.elapsed() < Duration::from_secs(1), "Drop joins promptly");
}
