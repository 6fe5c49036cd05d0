//! The send path's next hops against the kernel's real tables: a [`Router`] in the
//! stack's namespace of a routed testbed (stack -- router -- client), IPv4 and
//! IPv6. It must find the router's MAC for the client, fail destinations without
//! a route or behind a gateway that never answers, and follow a route that
//! changes while it runs. Needs root; run through `cargo xtask test`.

use std::{
    net::IpAddr,
    sync::{Arc, mpsc},
    time::{Duration, Instant},
};

use xdpstack::sys::{
    ifinfo::if_index,
    route::{Lookup, NextHop, RESOLVE_TIMEOUT, Router, Unreachable},
};
use xdpstack_testbed::{
    RoutedTestbed,
    routed::{CLIENT_V4, CLIENT_V6, ROUTER_V4, ROUTER_V6, STACK_V4, STACK_V6},
};
use xdpstack_tests::{require_root, unique_name};

fn bed() -> RoutedTestbed {
    require_root();
    RoutedTestbed::create(&unique_name("rt")).expect("creating the routed testbed")
}

/// A router on the stack's veth, opened inside the stack's namespace (its
/// thread and sockets live there).
fn open(bed: &RoutedTestbed) -> Arc<Router> {
    let dev = bed.stack_if();
    bed.in_stack(|| {
        let index = if_index(&dev).expect("the stack's veth");
        Router::open(index)
    })
    .expect("entering the stack's namespace")
    .expect("opening the router")
}

/// The MAC of `dev` in `ns`, as `ip -j link` shows it.
fn mac(ns: &str, dev: &str) -> [u8; 6] {
    let out = xdpstack_testbed::routed::ip_netns(ns, &["-j", "link", "show", "dev", dev])
        .expect("ip -j link");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip's JSON");
    let text = json[0]["address"].as_str().expect("an address");
    let bytes: Vec<u8> = text
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).expect("hex"))
        .collect();
    bytes.try_into().expect("6 bytes")
}

/// Look `dst` up until it is no longer pending, or `within` has passed.
fn settle(router: &Router, dst: IpAddr, within: Duration) -> Lookup {
    let deadline = Instant::now() + within;
    loop {
        let answer = router.lookup(dst);
        if answer != Lookup::Pending || Instant::now() >= deadline {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Hold for `dst`; the answer, within `within`.
fn hold(router: &Router, dst: IpAddr, within: Duration) -> Result<NextHop, Unreachable> {
    let (tx, rx) = mpsc::channel();
    router.hold(
        dst,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    rx.recv_timeout(within)
        .unwrap_or_else(|_| panic!("no answer for {dst} within {within:?}"))
}

#[test]
fn the_client_is_reached_through_the_router_s_mac() {
    let bed = bed();
    let router = open(&bed);
    let router_mac = mac(&bed.router_ns(), &bed.router_stack_if());
    let our_mac = mac(&bed.stack_ns(), &bed.stack_if());
    for (client, src, gateway) in [
        (
            IpAddr::from(CLIENT_V4),
            IpAddr::from(STACK_V4),
            IpAddr::from(ROUTER_V4),
        ),
        (CLIENT_V6.into(), STACK_V6.into(), ROUTER_V6.into()),
    ] {
        assert_eq!(
            router.lookup(client),
            Lookup::Pending,
            "{client}: nothing known yet"
        );
        let answer = settle(&router, client, RESOLVE_TIMEOUT + Duration::from_secs(1));
        assert_eq!(
            answer,
            Lookup::Ready(NextHop {
                src_mac: our_mac,
                dst_mac: router_mac,
                src_ip: src,
                gateway: Some(gateway),
                mtu: 1500,
            }),
            "{client}"
        );
        // Known now: a hold is answered at once, on this thread.
        assert_eq!(
            hold(&router, client, Duration::ZERO + Duration::from_millis(1)),
            Ok(match answer {
                Lookup::Ready(hop) => hop,
                _ => unreachable!(),
            })
        );
        // Another destination behind the same gateway, held from the start.
        let behind: IpAddr = match client {
            IpAddr::V4(_) => "198.19.0.200".parse().unwrap(),
            IpAddr::V6(_) => "fd00:1::200".parse().unwrap(),
        };
        let held = hold(&router, behind, RESOLVE_TIMEOUT + Duration::from_secs(1))
            .unwrap_or_else(|e| panic!("{behind}: {e}"));
        assert_eq!(held.dst_mac, router_mac);
        assert_eq!(held.gateway, Some(gateway));
    }
    // The kernel resolved the router itself (we asked it to): its table says so.
    let out = bed
        .ip_stack(&["neigh", "show", "dev", &bed.stack_if()])
        .expect("ip neigh");
    let table = String::from_utf8_lossy(&out.stdout);
    let shown = format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        router_mac[0], router_mac[1], router_mac[2], router_mac[3], router_mac[4], router_mac[5]
    );
    assert!(table.contains(&shown), "{table}");
    let stats = router.stats();
    assert!(stats.neighbour_requests >= 2, "{stats:?}");
    assert_eq!(stats.resolved, 4, "{stats:?}");
    assert!(stats.hits >= 2, "{stats:?}");
    assert_eq!(stats.holding, 0, "{stats:?}");
    assert_eq!(stats.malformed, 0, "{stats:?}");
}

#[test]
fn destinations_without_a_route_fail_with_no_route() {
    let bed = bed();
    let ip = |args: &[&str]| bed.ip_stack(args).expect("ip");
    ip(&["route", "add", "blackhole", "198.19.99.0/24"]);
    ip(&["route", "add", "unreachable", "198.19.97.0/24"]);
    ip(&["route", "add", "prohibit", "198.19.96.0/24"]);
    ip(&["-6", "route", "add", "blackhole", "fd00:99::/64"]);
    ip(&["-6", "route", "add", "unreachable", "fd00:97::/64"]);
    // A route that leaves by another interface than ours.
    ip(&["route", "add", "198.19.60.0/24", "dev", "lo"]);
    let router = open(&bed);
    let within = Duration::from_secs(2);
    for dst in [
        "198.19.99.1",
        "198.19.97.1",
        "198.19.96.1",
        "fd00:99::1",
        "fd00:97::1",
    ] {
        let dst: IpAddr = dst.parse().unwrap();
        assert_eq!(
            settle(&router, dst, within),
            Lookup::Failed(Unreachable::NoRoute),
            "{dst}"
        );
        assert_eq!(
            hold(&router, dst, within),
            Err(Unreachable::NoRoute),
            "{dst}"
        );
    }
    assert_eq!(
        settle(&router, "198.19.60.1".parse().unwrap(), within),
        Lookup::Failed(Unreachable::OtherInterface)
    );
    // Our own address is no way out either.
    assert_eq!(
        settle(&router, STACK_V4.into(), within),
        Lookup::Failed(Unreachable::NoRoute)
    );
    // Without the default routes nothing outside the link has a route; the
    // router follows the deletion (a change notification) and asks again.
    ip(&["route", "del", "default"]);
    ip(&["-6", "route", "del", "default"]);
    for dst in ["198.19.98.1", "fd00:98::1"] {
        let dst: IpAddr = dst.parse().unwrap();
        assert_eq!(
            settle(&router, dst, within),
            Lookup::Failed(Unreachable::NoRoute),
            "{dst}"
        );
    }
    let stats = router.stats();
    assert!(stats.no_route >= 8, "{stats:?}");
    assert_eq!(stats.other_interface, 1, "{stats:?}");
}

#[test]
fn a_gateway_that_never_answers_fails_unresolved_in_time() {
    let bed = bed();
    bed.ip_stack(&["route", "add", "198.19.50.0/24", "via", "198.18.0.77"])
        .expect("ip route");
    bed.ip_stack(&["-6", "route", "add", "fd00:50::/64", "via", "fd00::77"])
        .expect("ip route");
    let router = open(&bed);
    let bound = RESOLVE_TIMEOUT + Duration::from_secs(1);
    for dst in ["198.19.50.1", "fd00:50::1"] {
        let dst: IpAddr = dst.parse().unwrap();
        let t0 = Instant::now();
        assert_eq!(router.lookup(dst), Lookup::Pending, "{dst}");
        let (tx, rx) = mpsc::channel();
        router.hold(
            dst,
            Box::new(move |r| {
                let _ = tx.send((r, Instant::now()));
            }),
        );
        let answer = settle(&router, dst, bound);
        let looked = t0.elapsed();
        assert_eq!(
            answer,
            Lookup::Failed(Unreachable::Unresolved),
            "{dst} after {looked:?}"
        );
        assert!(looked <= bound, "{dst}: {looked:?}");
        let (held, at) = rx.recv_timeout(bound).expect("the held callback ran");
        assert_eq!(held, Err(Unreachable::Unresolved), "{dst}");
        assert!(at - t0 <= bound, "{dst}: {:?}", at - t0);
    }
    let stats = router.stats();
    assert_eq!(stats.unresolved, 2, "{stats:?}");
    assert_eq!(stats.holding, 0, "{stats:?}");
}

#[test]
fn a_route_changed_mid_run_is_followed() {
    let bed = bed();
    let router = open(&bed);
    let router_mac = mac(&bed.router_ns(), &bed.router_stack_if());
    let within = RESOLVE_TIMEOUT + Duration::from_secs(1);
    let cases = [
        (
            IpAddr::from(CLIENT_V4),
            IpAddr::from(ROUTER_V4),
            "198.18.0.3",
            vec!["addr", "add", "198.18.0.3/24", "dev"],
            vec!["route", "replace", "198.19.0.0/24", "via", "198.18.0.3"],
        ),
        (
            CLIENT_V6.into(),
            ROUTER_V6.into(),
            "fd00::3",
            vec!["-6", "addr", "add", "fd00::3/64", "dev"],
            vec!["-6", "route", "replace", "fd00:1::/64", "via", "fd00::3"],
        ),
    ];
    for (client, first, second, add_addr, replace) in cases {
        match settle(&router, client, within) {
            Lookup::Ready(hop) => assert_eq!(hop.gateway, Some(first), "{client}"),
            other => panic!("{client}: {other:?}"),
        }
        let dev = bed.router_stack_if();
        let mut args = add_addr;
        args.push(&dev);
        if client.is_ipv6() {
            args.push("nodad");
        }
        bed.ip_router(&args).expect("a second router address");
        bed.ip_stack(&replace).expect("ip route replace");
        // Followed without reopening: the gateway changes, bounded in time.
        let second: IpAddr = second.parse().unwrap();
        let deadline = Instant::now() + within;
        let hop = loop {
            if let Lookup::Ready(hop) = router.lookup(client)
                && hop.gateway == Some(second)
            {
                break hop;
            }
            assert!(
                Instant::now() < deadline,
                "{client}: still {:?}",
                router.lookup(client)
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        // Same router, same MAC: the second address is on the same veth.
        assert_eq!(hop.dst_mac, router_mac, "{client}");
    }
    let stats = router.stats();
    assert!(stats.changes_seen >= 2, "{stats:?}");
    assert!(stats.route_queries >= 4, "{stats:?}");
}

#[test]
fn dropping_the_router_answers_what_it_holds() {
    let bed = bed();
    bed.ip_stack(&["route", "add", "198.19.50.0/24", "via", "198.18.0.77"])
        .expect("ip route");
    let router = open(&bed);
    let (tx, rx) = mpsc::channel();
    router.hold(
        "198.19.50.1".parse().unwrap(),
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    // Wait until it is held for real (on the router's side, not refused).
    let deadline = Instant::now() + Duration::from_secs(1);
    while router.stats().holding == 0 {
        assert!(Instant::now() < deadline, "never held");
        std::thread::sleep(Duration::from_millis(5));
    }
    let t0 = Instant::now();
    drop(router);
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(500)),
        Ok(Err(Unreachable::Unresolved))
    );
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
}

/// Our frames bypass the kernel, so it never confirms the router's entry: once
/// STALE, it would stay so, and a gateway that moved would go unnoticed. A STALE
/// entry in use gets an NTF_USE, which makes the kernel probe it (DELAY, then
/// PROBE) and find it REACHABLE again.
#[test]
fn a_stale_gateway_in_use_is_probed_again() {
    let bed = bed();
    let dev = bed.stack_if();
    // Probe one second after the refresh rather than five.
    let key = format!("net.ipv4.neigh.{dev}.delay_first_probe_time=1");
    let out = bed
        .stack_command("sysctl")
        .args(["-qw", &key])
        .output()
        .expect("sysctl");
    assert!(out.status.success(), "{key}: {out:?}");
    let router = open(&bed);
    let client = IpAddr::from(CLIENT_V4);
    assert!(matches!(
        settle(&router, client, RESOLVE_TIMEOUT + Duration::from_secs(1)),
        Lookup::Ready(_)
    ));
    let gateway = ROUTER_V4.to_string();
    let state = || {
        let out = bed
            .ip_stack(&["-j", "neigh", "show", "dev", &dev, &gateway])
            .expect("ip neigh");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip's JSON");
        json[0]["state"][0].as_str().unwrap_or("").to_string()
    };
    // What the kernel does to an entry nobody confirms: STALE (with a traffic
    // peer of its own the kernel here keeps it fresh, so it is set by hand).
    let router_mac = mac(&bed.router_ns(), &bed.router_stack_if());
    let lladdr = router_mac
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    bed.ip_stack(&[
        "neigh", "change", &gateway, "dev", &dev, "lladdr", &lladdr, "nud", "stale",
    ])
    .expect("ip neigh change");
    assert_eq!(state(), "STALE");
    // Keep using it: a refresh goes out, the kernel probes, the entry is
    // REACHABLE again, and the gateway stays usable throughout.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = vec!["STALE".to_string()];
    loop {
        assert!(
            matches!(router.lookup(client), Lookup::Ready(hop) if hop.dst_mac == router_mac),
            "usable throughout"
        );
        let now = state();
        if seen.last() != Some(&now) {
            seen.push(now.clone());
        }
        if now == "REACHABLE" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "states {seen:?}, {:?}",
            router.stats()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        seen.iter().any(|s| s == "DELAY" || s == "PROBE"),
        "probed: {seen:?}"
    );
    let stats = router.stats();
    assert!(stats.stale_refreshes >= 1, "{stats:?}");
}
