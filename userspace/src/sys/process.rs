//! Facts about and settings of the calling process and thread.

/// User + system CPU seconds of this process so far.
pub fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes one `rusage` into the zeroed value we pass.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// The soft RLIMIT_MEMLOCK in bytes (`libc::RLIM_INFINITY` when unlimited):
/// what registering a UMEM may lock without CAP_IPC_LOCK.
pub fn memlock_limit() -> Option<u64> {
    // SAFETY: getrlimit writes one rlimit into the zeroed value we pass.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        (libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) == 0).then_some(r.rlim_cur)
    }
}

/// Block (`true`) or unblock SIGINT, SIGTERM and SIGHUP on the calling
/// thread. A front end that installs its signal handlers (and their thread)
/// only once privileges are dropped blocks them until then: a signal that
/// comes meanwhile waits, instead of killing the process mid-setup, and is
/// handled as soon as they are unblocked. Threads made meanwhile inherit the
/// mask.
pub fn block_termination_signals(block: bool) -> std::io::Result<()> {
    // SAFETY: a zeroed sigset_t is valid for sigemptyset to initialise; the
    // set is then only read by pthread_sigmask, which changes the calling
    // thread's mask alone.
    let rc = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        let how = if block {
            libc::SIG_BLOCK
        } else {
            libc::SIG_UNBLOCK
        };
        libc::pthread_sigmask(how, &set, std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Pin the calling thread to `cpu`.
pub fn pin_to_cpu(cpu: usize) -> std::io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    }
    // SAFETY: a zeroed cpu_set_t is a valid empty set; `cpu` is below
    // CPU_SETSIZE, so CPU_SET writes within it; sched_setaffinity(0, ...) applies
    // to the calling thread only.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The current time, ns since the Unix epoch (CLOCK_REALTIME): the receive
/// timestamp the run loop hands the poller once per round.
#[inline]
pub fn realtime_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// True when `fd` is the write end of a pipe (or FIFO) that no reader holds
/// open any more: poll(2) reports POLLERR for it, and the next write would fail
/// with EPIPE. False for anything else, and while a reader is there.
pub fn pipe_reader_gone(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    use std::os::fd::AsRawFd as _;
    // No events asked for: POLLERR is reported whatever `events` says.
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd for a descriptor the caller holds open, nfds 1,
    // timeout 0: poll(2) only writes `revents` and returns at once.
    let rc = unsafe { libc::poll(&mut p, 1, 0) };
    rc > 0 && p.revents & libc::POLLERR != 0
}

/// CLOCK_MONOTONIC in ns: the clock of `bpf_ktime_get_ns()`, which stamps the
/// XDP program's copies.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to write.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// CLOCK_REALTIME minus CLOCK_MONOTONIC, in ns: add it to a monotonic stamp to
/// get the Unix time it happened at (within the microsecond the two reads take;
/// NTP adjustments later shift it, so take it anew from time to time).
pub fn realtime_offset_ns() -> i64 {
    let mono = monotonic_ns();
    let real = realtime_ns();
    real as i64 - mono as i64
}

/// The processes (pid, command name) holding a descriptor of BPF program
/// `prog_id` or of a link to it: their `/proc/PID/fdinfo/*` say `prog_id:
/// N`. For naming who holds a queue or an interface; processes this one may
/// not look into are skipped.
pub fn holders_of_bpf_prog(prog_id: u32) -> Vec<(u32, String)> {
    let needle = format!("prog_id:\t{prog_id}\n");
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fdinfo")) else {
            continue;
        };
        let holds = fds
            .flatten()
            .any(|fd| std::fs::read_to_string(fd.path()).is_ok_and(|info| info.contains(&needle)));
        if holds {
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            out.push((pid, comm.trim().to_string()));
        }
    }
    out
}

/// The width in columns of the terminal on `fd` (TIOCGWINSZ), if it is one
/// that says.
pub fn terminal_columns(fd: std::os::fd::BorrowedFd<'_>) -> Option<u16> {
    use std::os::fd::AsRawFd as _;
    // SAFETY: an all-zero winsize is valid.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one winsize into `ws`, which is valid for it.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_col > 0).then_some(ws.ws_col)
}

/// The rows `text` takes on a terminal `columns` wide: each line wraps every
/// `columns` characters (an empty line takes one row).
pub fn terminal_rows(text: &str, columns: u16) -> usize {
    let columns = usize::from(columns.max(1));
    text.lines()
        .map(|l| l.chars().count().div_ceil(columns).max(1))
        .sum()
}

#[cfg(test)]
mod tests {
    #[test]
    fn rows_wrap_at_the_terminal_width() {
        assert_eq!(super::terminal_rows("ab\n\nabcdef\n", 4), 1 + 1 + 2);
        assert_eq!(super::terminal_rows(&"x".repeat(186), 80), 3);
        assert_eq!(super::terminal_rows("abc", 0), 3);
    }

    #[test]
    fn this_process_holds_no_bpf_program() {
        assert!(super::holders_of_bpf_prog(u32::MAX).is_empty());
    }

    use super::*;

    #[test]
    fn a_pipe_without_readers_is_seen() {
        use std::os::fd::AsFd as _;
        let (reader, writer) = std::io::pipe().unwrap();
        assert!(!pipe_reader_gone(writer.as_fd()), "a reader is there");
        drop(reader);
        assert!(pipe_reader_gone(writer.as_fd()), "no reader left");
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        assert!(!pipe_reader_gone(file.as_fd()), "not a pipe");
    }

    #[test]
    fn the_realtime_offset_turns_monotonic_stamps_into_unix_time() {
        let offset = realtime_offset_ns();
        let mono = monotonic_ns();
        let real = realtime_ns();
        let derived = (mono as i64 + offset) as u64;
        assert!(derived.abs_diff(real) < 50_000_000, "{derived} vs {real}");
    }

    #[test]
    fn cpu_time_grows_with_work() {
        let before = cpu_seconds();
        let t0 = std::time::Instant::now();
        let mut x = 0u64;
        while t0.elapsed() < std::time::Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let spent = cpu_seconds() - before;
        assert!(spent > 0.01 && spent < 5.0, "{spent} s");
    }

    #[test]
    fn pinning_checks_the_cpu_number() {
        let err = pin_to_cpu(libc::CPU_SETSIZE as usize).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    }

    #[test]
    fn realtime_is_after_2020() {
        assert!(realtime_ns() > 1_577_836_800_000_000_000);
    }
}
