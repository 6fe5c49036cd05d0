//! Crash and cleanup loop: xdpstack is started under traffic and ended by SIGKILL,
//! SIGTERM or a panic, 20 times in driver mode and 20 times in generic mode, on the
//! same interface and queue. After every ending the XDP program is detached, the
//! program and each of its maps are gone from the kernel, nothing is pinned, and
//! the next start, made at once, binds the same queue (the kernel releases a
//! killed process's AF_XDP socket in deferred work; xdpstack retries a busy queue
//! meanwhile).
//!
//! This is the only test in its binary, so the file-descriptor count of the test
//! process is meaningful. Needs root; run through `cargo xtask test`.

use std::{
    collections::BTreeSet,
    os::unix::process::ExitStatusExt as _,
    time::{Duration, Instant},
};

use aya::{maps::MapInfo, programs::loaded_programs};
use xdpstack_tests::{PORT, StackProcess, send_udp, testbed, wait_detached};

const ROUNDS_PER_MODE: usize = 20;

#[derive(Clone, Copy, Debug)]
enum Ending {
    SigKill,
    SigTerm,
    Panic,
}

/// The ids of the maps program `prog_id` uses, or `None` if it is not loaded.
fn maps_of(prog_id: u32) -> Option<Vec<u32>> {
    loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == prog_id)
        .map(|p| {
            p.map_ids()
                .expect("program info")
                .expect("kernel reports map ids")
        })
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

fn pinned() -> BTreeSet<String> {
    std::fs::read_dir("/sys/fs/bpf")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Wait (at most 5 s) until the program and its maps are freed; the kernel frees
/// them after an RCU grace period once the last reference is gone.
fn wait_freed(prog_id: u32, maps: &[u32]) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let prog_left = maps_of(prog_id).is_some();
        let maps_left: Vec<u32> = maps
            .iter()
            .copied()
            .filter(|&id| MapInfo::from_id(id).is_ok())
            .collect();
        if !prog_left && maps_left.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "program {prog_id} still loaded: {prog_left}; maps still there: {maps_left:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn forty_crashes_leave_nothing_behind() {
    let bed = testbed("cra", 1);
    let port = PORT.to_string();
    let fds_before = open_fds();
    let pinned_before = pinned();
    let mut rounds = 0;
    let mut busy_retries = 0;
    let mut previous: Option<(String, u32, Vec<u32>)> = None;
    for mode in ["drv", "skb"] {
        for round in 0..ROUNDS_PER_MODE {
            let ending = [Ending::SigKill, Ending::SigTerm, Ending::Panic][round % 3];
            // The socket's debug log says when a bind found the queue busy.
            let log = ("XDPSTACK_LOG", "xdpstack::sys::xsk=debug");
            let env: &[(&str, &str)] = match ending {
                Ending::Panic => &[log, ("XDPSTACK_TEST_PANIC_AFTER_MS", "1000")],
                _ => &[log],
            };
            let what = format!("{mode} round {round} ({ending:?})");
            let mut stack = StackProcess::start_with_env(
                &bed,
                &["--port", &port, "--xdp-mode", mode, "--duration", "30"],
                env,
            );
            let prog_id = stack.wait_attached(&bed);
            let maps = maps_of(prog_id).unwrap_or_else(|| panic!("{what}: program not loaded"));
            assert!(maps.len() >= 3, "{what}: maps {maps:?}");
            // The previous round's program and maps were still being freed when
            // this one started; they must be gone now.
            if let Some((what, prog_id, maps)) = previous.take()
                && let Err(left) = wait_freed(prog_id, &maps)
            {
                panic!("{what}: {left}");
            }
            // Traffic in flight while it ends.
            std::thread::scope(|s| {
                s.spawn(|| send_udp(&bed, false, PORT, 512, &[64]));
                std::thread::sleep(Duration::from_millis(5));
                match ending {
                    Ending::SigKill => stack.signal(libc::SIGKILL),
                    Ending::SigTerm => stack.signal(libc::SIGTERM),
                    Ending::Panic => {}
                }
            });
            let done = stack.wait(Duration::from_secs(20));
            busy_retries += done.stderr.matches("queue busy").count();
            match ending {
                Ending::SigKill => {
                    assert_eq!(
                        done.status.signal(),
                        Some(libc::SIGKILL),
                        "{what}: {done:?}"
                    )
                }
                Ending::SigTerm => assert!(done.status.success(), "{what}: {done:?}"),
                Ending::Panic => {
                    assert_eq!(
                        done.status.signal(),
                        Some(libc::SIGABRT),
                        "{what}: {done:?}"
                    )
                }
            }
            assert_eq!(wait_detached(&bed), None, "{what}: still attached");
            previous = Some((what, prog_id, maps));
            rounds += 1;
        }
    }
    if let Some((what, prog_id, maps)) = previous.take()
        && let Err(left) = wait_freed(prog_id, &maps)
    {
        panic!("{what}: {left}");
    }
    assert_eq!(rounds, 2 * ROUNDS_PER_MODE);
    eprintln!("{rounds} crashes survived; binds retried on a busy queue {busy_retries} times");
    // After all that, a normal run on the same queue succeeds and exits cleanly.
    let mut last = StackProcess::start(&bed, &["--port", &port, "--duration", "0.5"]);
    last.wait_attached(&bed);
    let done = last.wait(Duration::from_secs(20));
    assert!(done.status.success(), "the run after the loop: {done:?}");
    assert_eq!(wait_detached(&bed), None);
    assert_eq!(
        open_fds(),
        fds_before,
        "file descriptors leaked by the loop"
    );
    assert_eq!(pinned(), pinned_before, "objects pinned in /sys/fs/bpf");
}
