//! Live statistics as scripts see them: `--json --stats S` prints one JSON object
//! per interval (NDJSON) and the summary last; every line is well-formed, the
//! counters never go backwards, the last interval agrees with the summary, and
//! both show where the frames are (fill ring, RX ring).
//! Needs root; run through `cargo xtask test`.

use std::time::Duration;

use serde_json::Value;
use xdpstack_tests::{PORT, StackProcess, send_udp, testbed, wait_detached};

fn queue_counter(v: &Value, queue: usize, key: &str) -> u64 {
    v["queues"][queue][key]
        .as_u64()
        .unwrap_or_else(|| panic!("queues[{queue}].{key} in {v}"))
}

#[test]
fn json_stats_stream_is_ndjson_monotonic_and_matches_the_summary() {
    let bed = testbed("stat", 2);
    let mut stack = StackProcess::start(
        &bed,
        &["--port", &PORT.to_string(), "--json", "--stats", "0.2"],
    );
    stack.wait_attached(&bed);
    let sent = send_udp(&bed, false, PORT, 600, &[18, 200, 1400])
        + send_udp(&bed, true, PORT, 400, &[64, 1000]);
    // A few more intervals after the traffic, so the last one has it all.
    std::thread::sleep(Duration::from_millis(700));
    stack.signal(libc::SIGTERM);
    let finished = stack.wait(Duration::from_secs(10));
    assert!(finished.status.success(), "{finished:?}");

    let lines: Vec<Value> = finished
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let (summary, intervals) = lines.split_last().expect("at least the summary");
    assert_eq!(summary["type"], "summary");
    assert!(
        intervals.len() >= 3,
        "expected an interval every 0.2 s, got {}",
        intervals.len()
    );
    let queues = summary["queues"].as_array().expect("queues").len();
    assert_eq!(queues, 2);
    let mut last_t = 0.0;
    let mut last = vec![(0u64, 0u64, 0u64); queues];
    for iv in intervals {
        assert_eq!(iv["type"], "interval", "{iv}");
        let t = iv["t"].as_f64().expect("t");
        assert!(t > last_t, "time goes forward: {t} after {last_t}");
        last_t = t;
        for (q, prev) in last.iter_mut().enumerate() {
            let now = (
                queue_counter(iv, q, "packets"),
                queue_counter(iv, q, "bytes"),
                iv["queues"][q]["consumers"][0]["delivered"]
                    .as_u64()
                    .expect("delivered"),
            );
            assert!(
                now.0 >= prev.0 && now.1 >= prev.1 && now.2 >= prev.2,
                "counters went backwards on queue {q}: {prev:?} -> {now:?}"
            );
            assert!(iv["queues"][q]["pps"].as_f64().expect("pps") >= 0.0);
            *prev = now;
        }
    }
    // The traffic ended well before the last interval: it saw every packet the
    // summary reports.
    let final_iv = intervals.last().expect("an interval");
    for (q, (packets, bytes, delivered)) in last.iter().enumerate() {
        assert_eq!(*packets, queue_counter(summary, q, "packets"), "queue {q}");
        assert_eq!(*bytes, queue_counter(summary, q, "bytes"), "queue {q}");
        assert_eq!(
            *delivered,
            summary["queues"][q]["consumers"][0]["delivered"]
                .as_u64()
                .expect("delivered")
        );
        // (tx_ring_empty_descs keeps counting while idle: not compared.)
        for key in ["rx_dropped", "rx_ring_full", "rx_invalid_descs"] {
            assert_eq!(
                final_iv["queues"][q]["xsk"][key], summary["queues"][q]["xsk"][key],
                "kernel counter {key} on queue {q}"
            );
        }
    }
    // The XDP program's verdicts are in the stream: monotonic, and the last
    // interval's redirections are the summary's.
    let mut last_seen = 0;
    for iv in intervals {
        let seen = iv["xdp"]["seen"].as_u64().expect("xdp.seen");
        assert!(seen >= last_seen, "xdp.seen went backwards: {iv}");
        last_seen = seen;
    }
    assert_eq!(final_iv["xdp"]["redirected"], summary["xdp"]["redirected"]);
    assert_eq!(summary["xdp"]["redirected"], sent as u64, "{summary}");
    // Where the frames are, ring by ring: idle at the end, every frame the kernel
    // holds is waiting on the fill ring, in the last interval and in the summary.
    for q in 0..queues {
        for (what, v) in [("last interval", final_iv), ("summary", summary)] {
            let queue = &v["queues"][q];
            assert_eq!(
                (
                    queue["rings"]["fill_ring"].as_u64(),
                    queue["rings"]["rx_ring"].as_u64()
                ),
                (queue["frames_in_kernel"].as_u64(), Some(0)),
                "{what}, queue {q}: {queue}"
            );
        }
    }
    // The UDP consumer's own counters are in the stream too, and the mode.
    let live_datagrams: u64 = (0..queues)
        .map(|q| {
            final_iv["queues"][q]["counters"]["udp_datagrams"]
                .as_u64()
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(live_datagrams, sent as u64, "{final_iv}");
    assert_eq!(final_iv["xdp_mode"], summary["xdp_mode"]);
    assert_eq!(final_iv["zero_copy"], summary["zero_copy"]);
    assert_eq!(summary["packets"], sent as u64, "{summary}");
    assert_eq!(summary["udp"]["datagrams"], sent as u64);
    assert_eq!(wait_detached(&bed), None);
}
