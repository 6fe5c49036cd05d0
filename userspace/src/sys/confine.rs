//! Confinement after setup, as tcpdump (`-Z`), OpenSSH and Chrome do it: once
//! the XDP program is attached and the sockets are bound, nothing the run does
//! needs a privilege, so the process gives every one of them up before it
//! parses its first frame: no_new_privs, no capability in any set (effective,
//! permitted, inheritable, ambient, bounding), optionally another user
//! ([`drop_privileges`]); then a seccomp allow-list of the syscalls the run
//! loop, the writers and the statistics make ([`install_seccomp`]).
//!
//! # What the run still does, and why it needs no privilege
//! - Detaching: the bpf_link, the maps and the sockets are file descriptors;
//!   closing them (or the process ending, SIGKILL included) detaches.
//! - Statistics: lookups in maps whose fds are open (`bpf(BPF_MAP_LOOKUP_ELEM)`
//!   needs no capability since Linux 6.5, whatever
//!   `kernel.unprivileged_bpf_disabled` says: the sysctl gates only map
//!   creation and program loads), `getsockopt(XDP_STATISTICS)` on our own
//!   sockets, interface flags and MTU by ioctl on a UDP socket.
//! - Capture files: created by the user the process runs as, which is the
//!   point of `-Z`.
//!
//! # Why direct prctl/capset rather than the `caps` crate
//! The whole drop is six calls, and the list of capabilities to take out of
//! the bounding set must be the kernel's (`/proc/sys/kernel/cap_last_cap`),
//! not one compiled into a crate, which would miss capabilities newer than it.
//!
//! # Threads
//! Credentials are per thread in Linux: capset(2), PR_CAPBSET_DROP and
//! no_new_privs act on the calling thread only. [`drop_privileges`] therefore
//! insists on a process with a single thread (the stack's hook runs before it
//! starts any; the `xdpstack` command starts its signal thread after it), and
//! every thread made later inherits the dropped state. The seccomp filter is
//! installed with TSYNC, so it covers threads that exist already too.

use std::{ffi::CString, io};

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// Why confinement failed; each message names the step and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// `-Z USER` names nobody.
    #[error("-Z {0}: no such user (see `getent passwd`)")]
    UnknownUser(String),
    /// Looking the user up failed.
    #[error("-Z {user}: looking the user up failed: {source}")]
    Lookup {
        /// The user.
        user: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Threads exist that would keep their privileges.
    #[error(
        "dropping privileges needs a process with one thread, this one has {0}: \
         the others would keep their capabilities (a bug in xdpstack: please report it)"
    )]
    Threads(usize),
    /// A step of the drop failed.
    #[error("dropping privileges failed: {what}: {source}{hint}")]
    Drop {
        /// The step.
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
        /// What to do about it.
        hint: &'static str,
    },
    /// The seccomp filter could not be built or installed.
    #[error(
        "installing the seccomp filter failed: {0} (the kernel needs CONFIG_SECCOMP_FILTER; \
         --no-seccomp runs without it)"
    )]
    Seccomp(String),
}

/// A user to run as (`-Z`), looked up while the user database is still
/// readable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The name.
    pub name: String,
    /// Its uid.
    pub uid: libc::uid_t,
    /// Its primary gid.
    pub gid: libc::gid_t,
    /// Every group it is in (initgroups(3)), the primary one included.
    pub groups: Vec<libc::gid_t>,
}

/// Look `name` up in the user database (getpwnam_r, getgrouplist).
pub fn lookup_user(name: &str) -> Result<User, ConfineError> {
    let lookup = |source| ConfineError::Lookup {
        user: name.to_string(),
        source,
    };
    let c = CString::new(name).map_err(|_| ConfineError::UnknownUser(name.to_string()))?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: a zeroed passwd is a valid out-parameter.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; getpwnam_r writes `pw`,
    // strings into `buf` (of the length given), and `result`.
    let rc = unsafe {
        libc::getpwnam_r(
            c.as_ptr(),
            &mut pw,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 {
        return Err(lookup(io::Error::from_raw_os_error(rc)));
    }
    if result.is_null() {
        return Err(ConfineError::UnknownUser(name.to_string()));
    }
    let (uid, gid) = (pw.pw_uid, pw.pw_gid);
    let mut groups = vec![0 as libc::gid_t; 64];
    for _ in 0..4 {
        let mut n = groups.len() as libc::c_int;
        // SAFETY: `groups` has room for `n` gids; getgrouplist writes at most
        // that many and sets `n` to the count (or the count needed).
        let rc = unsafe { libc::getgrouplist(c.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
        if rc >= 0 {
            groups.truncate(n.max(0) as usize);
            return Ok(User {
                name: name.to_string(),
                uid,
                gid,
                groups,
            });
        }
        groups.resize((n.max(0) as usize).max(groups.len() * 2), 0);
    }
    Err(lookup(io::Error::other("too many groups")))
}

/// The threads of this process (`Threads:` in /proc/self/status).
pub fn thread_count() -> io::Result<usize> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))
}

fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63)
}

fn check(what: impl Into<String>, rc: libc::c_int, hint: &'static str) -> Result<(), ConfineError> {
    if rc == 0 {
        Ok(())
    } else {
        Err(ConfineError::Drop {
            what: what.into(),
            source: io::Error::last_os_error(),
            hint,
        })
    }
}

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Give up every privilege: no_new_privs, the bounding and ambient sets
/// emptied, with `user` its groups, gid and uid, then the effective,
/// permitted and inheritable sets emptied. The process must have a single
/// thread (see the module docs).
pub fn drop_privileges(user: Option<&User>) -> Result<(), ConfineError> {
    let threads = thread_count().map_err(|source| ConfineError::Drop {
        what: "reading /proc/self/status".into(),
        source,
        hint: "",
    })?;
    if threads != 1 {
        return Err(ConfineError::Threads(threads));
    }
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    check("prctl(PR_SET_NO_NEW_PRIVS)", rc, "")?;
    for cap in 0..=last_cap() {
        // SAFETY: prctl with integer arguments only.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            // Without CAP_SETPCAP (not root, capabilities granted otherwise)
            // the bounding set stays; with no_new_privs and empty permitted
            // and effective sets it can give nothing back, so go on.
            if e.raw_os_error() == Some(libc::EPERM) {
                tracing::debug!(
                    cap,
                    "PR_CAPBSET_DROP: no CAP_SETPCAP; the bounding set stays"
                );
                break;
            }
            if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(ConfineError::Drop {
                    what: format!("prctl(PR_CAPBSET_DROP, {cap})"),
                    source: e,
                    hint: "",
                });
            }
        }
    }
    // SAFETY: prctl with integer arguments only. EINVAL before Linux 4.3,
    // which has no ambient set to clear.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if rc != 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
        check("prctl(PR_CAP_AMBIENT_CLEAR_ALL)", rc, "")?;
    }
    if let Some(u) = user {
        let hint = " (switching users needs CAP_SETUID and CAP_SETGID: run as root)";
        // SAFETY: `groups` holds `len` gids for setgroups to read.
        let rc = unsafe { libc::setgroups(u.groups.len(), u.groups.as_ptr()) };
        check(format!("-Z {}: setgroups", u.name), rc, hint)?;
        // SAFETY: plain id arguments.
        let rc = unsafe { libc::setresgid(u.gid, u.gid, u.gid) };
        check(format!("-Z {}: setresgid({})", u.name, u.gid), rc, hint)?;
        // SAFETY: plain id arguments.
        let rc = unsafe { libc::setresuid(u.uid, u.uid, u.uid) };
        check(format!("-Z {}: setresuid({})", u.name, u.uid), rc, hint)?;
    }
    let header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData::default(); 2];
    // SAFETY: capset reads one header and two data structs (version 3), both
    // valid for the call.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &raw const header, data.as_ptr()) };
    check("capset(all empty)", rc as libc::c_int, "")?;
    let mut now = [CapData::default(); 2];
    let mut header = header;
    // SAFETY: capget writes two data structs (version 3) into `now`.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &raw mut header, now.as_mut_ptr()) };
    check("capget", rc as libc::c_int, "")?;
    if now
        .iter()
        .any(|d| d.effective | d.permitted | d.inheritable != 0)
    {
        return Err(ConfineError::Drop {
            what: "capabilities still held after capset".into(),
            source: io::Error::from(io::ErrorKind::PermissionDenied),
            hint: "",
        });
    }
    Ok(())
}

/// What the seccomp filter does with a syscall outside the allow-list:
/// SECCOMP_RET_KILL_PROCESS. A syscall no code path of the run makes is
/// either a parser taken over by a crafted frame or a path the list missed;
/// failing it with an errno would let the first probe around and turn the
/// second into a quiet misbehaviour (a write that "failed", a counter that
/// stops), the silent degradation this project refuses. Killing the whole
/// process (not one thread: a dead poller would leave the others limping) is
/// loud and diagnosable: SIGSYS, exit status 159 in a shell, the syscall's
/// number in the kernel's audit log (`dmesg`: `audit: type=1326 ...
/// syscall=N`), and nothing left attached, since every bpf_link closes with
/// the process. `--no-seccomp` and `strace -f` find the syscall.
pub const VIOLATION: SeccompAction = SeccompAction::KillProcess;

/// `socket(2)` domains the run may open: UDP sockets for interface ioctls,
/// TCP for the metrics endpoint, netlink for interface and route facts, Unix
/// for the C library's own needs.
const SOCKET_DOMAINS: [libc::c_int; 4] = [
    libc::AF_INET,
    libc::AF_INET6,
    libc::AF_NETLINK,
    libc::AF_UNIX,
];

/// `ioctl(2)` requests the run makes: interface flags and MTU, ethtool, and a
/// terminal's attributes and size for the live statistics. Anything else
/// (TIOCSTI, say) is not allowed.
const IOCTLS: [u64; 8] = [
    0x8913, // SIOCGIFFLAGS
    0x8921, // SIOCGIFMTU
    0x8946, // SIOCETHTOOL
    0x5401, // TCGETS
    0x5413, // TIOCGWINSZ
    0x5421, // FIONBIO
    0x5451, // FIOCLEX
    0x541B, // FIONREAD
];

/// `bpf(2)` commands the run makes on maps whose fds it holds: lookups (the
/// counters), the next key (per-CPU and hash iteration) and object info.
/// Loading programs or making maps is not allowed.
const BPF_COMMANDS: [u64; 3] = [
    1,  // BPF_MAP_LOOKUP_ELEM
    4,  // BPF_MAP_GET_NEXT_KEY
    15, // BPF_OBJ_GET_INFO_BY_FD
];

/// The syscalls allowed whatever their arguments.
fn allowed() -> Vec<libc::c_long> {
    let mut v = vec![
        // Memory: the allocator, thread stacks.
        libc::SYS_brk,
        libc::SYS_mmap,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_mprotect,
        libc::SYS_madvise,
        // Threads, locks, time.
        libc::SYS_futex,
        libc::SYS_clone,
        libc::SYS_clone3,
        libc::SYS_set_robust_list,
        libc::SYS_rseq,
        libc::SYS_sched_yield,
        libc::SYS_sched_getaffinity,
        libc::SYS_sched_setaffinity,
        libc::SYS_gettid,
        libc::SYS_getpid,
        libc::SYS_getuid,
        libc::SYS_geteuid,
        libc::SYS_getgid,
        libc::SYS_getegid,
        libc::SYS_exit,
        libc::SYS_exit_group,
        libc::SYS_nanosleep,
        libc::SYS_clock_nanosleep,
        libc::SYS_clock_gettime,
        libc::SYS_clock_getres,
        libc::SYS_gettimeofday,
        libc::SYS_getrusage,
        libc::SYS_getrandom,
        libc::SYS_restart_syscall,
        // PR_SET_NAME for thread names, PR_GET_* reads; no_new_privs is set
        // and every capability gone, so no prctl can give anything back.
        libc::SYS_prctl,
        // Signals: ctrlc's handler, SIGPIPE, abort() on a panic.
        libc::SYS_rt_sigaction,
        libc::SYS_rt_sigprocmask,
        libc::SYS_rt_sigreturn,
        libc::SYS_sigaltstack,
        libc::SYS_tgkill,
        // Files: capture writing and rotation, /proc and /sys reads.
        libc::SYS_read,
        libc::SYS_write,
        libc::SYS_readv,
        libc::SYS_writev,
        libc::SYS_pread64,
        libc::SYS_pwrite64,
        libc::SYS_openat,
        libc::SYS_close,
        libc::SYS_fstat,
        libc::SYS_newfstatat,
        libc::SYS_statx,
        libc::SYS_lseek,
        libc::SYS_ftruncate,
        libc::SYS_fsync,
        libc::SYS_fdatasync,
        libc::SYS_fcntl,
        libc::SYS_dup,
        libc::SYS_dup3,
        libc::SYS_pipe2,
        // A panic's message and backtrace (RUST_BACKTRACE): the paths of the
        // binary and of the sources, then abort().
        libc::SYS_getcwd,
        libc::SYS_readlinkat,
        // Waiting: the poller's poll(2), the copy ring's epoll, ctrlc's pipe.
        libc::SYS_ppoll,
        libc::SYS_epoll_create1,
        libc::SYS_epoll_ctl,
        libc::SYS_epoll_pwait,
        libc::SYS_epoll_pwait2,
        // Sockets: AF_XDP kicks (sendto) and wakeups (recvfrom), statistics
        // (getsockopt), interface ioctl sockets, netlink, the metrics endpoint.
        libc::SYS_bind,
        libc::SYS_sendto,
        libc::SYS_recvfrom,
        libc::SYS_sendmsg,
        libc::SYS_recvmsg,
        libc::SYS_getsockopt,
        libc::SYS_setsockopt,
        libc::SYS_getsockname,
        libc::SYS_getpeername,
        libc::SYS_accept4,
        libc::SYS_shutdown,
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([
        libc::SYS_open,
        libc::SYS_stat,
        libc::SYS_lstat,
        libc::SYS_poll,
        libc::SYS_epoll_wait,
        libc::SYS_accept,
        libc::SYS_pipe,
        libc::SYS_dup2,
        libc::SYS_readlink,
    ]);
    v
}

fn one_of(arg: u8, values: impl IntoIterator<Item = u64>) -> Result<Vec<SeccompRule>, String> {
    values
        .into_iter()
        .map(|value| {
            SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value)
                .and_then(|c| SeccompRule::new(vec![c]))
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// The allow-list as syscall number -> rules (empty: any arguments).
pub fn allow_list() -> Result<std::collections::BTreeMap<i64, Vec<SeccompRule>>, String> {
    let mut rules: std::collections::BTreeMap<i64, Vec<SeccompRule>> =
        allowed().into_iter().map(|nr| (nr, Vec::new())).collect();
    rules.insert(
        libc::SYS_socket,
        one_of(0, SOCKET_DOMAINS.map(|d| d as u64))?,
    );
    rules.insert(libc::SYS_ioctl, one_of(1, IOCTLS)?);
    rules.insert(libc::SYS_bpf, one_of(0, BPF_COMMANDS)?);
    Ok(rules)
}

fn target_arch() -> Result<TargetArch, String> {
    TargetArch::try_from(std::env::consts::ARCH).map_err(|e| e.to_string())
}

/// The compiled filter.
pub fn seccomp_program() -> Result<BpfProgram, ConfineError> {
    let filter = SeccompFilter::new(
        allow_list().map_err(ConfineError::Seccomp)?,
        VIOLATION,
        SeccompAction::Allow,
        target_arch().map_err(ConfineError::Seccomp)?,
    )
    .map_err(|e| ConfineError::Seccomp(e.to_string()))?;
    BpfProgram::try_from(filter).map_err(|e| ConfineError::Seccomp(e.to_string()))
}

/// Install the allow-list on every thread of the process (TSYNC).
pub fn install_seccomp() -> Result<(), ConfineError> {
    let program = seccomp_program()?;
    seccompiler::apply_filter_all_threads(&program)
        .map_err(|e| ConfineError::Seccomp(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_looked_up_with_their_groups() {
        let root = lookup_user("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(root.groups.contains(&0));
        let nobody = lookup_user("nobody").unwrap();
        assert_eq!(nobody.uid, 65534);
        assert!(nobody.groups.contains(&nobody.gid));
        let err = lookup_user("xs-no-such-user").unwrap_err();
        assert_eq!(
            err.to_string(),
            "-Z xs-no-such-user: no such user (see `getent passwd`)"
        );
        assert!(matches!(
            lookup_user("a\0b"),
            Err(ConfineError::UnknownUser(_))
        ));
    }

    #[test]
    fn the_allow_list_compiles_and_leaves_out_what_the_run_never_does() {
        let rules = allow_list().unwrap();
        for forbidden in [
            libc::SYS_execve,
            libc::SYS_execveat,
            libc::SYS_ptrace,
            libc::SYS_linkat,
            libc::SYS_setuid,
            libc::SYS_capset,
            libc::SYS_mount,
            libc::SYS_kill,
        ] {
            assert!(
                !rules.contains_key(&forbidden),
                "{forbidden} must not be allowed"
            );
        }
        for needed in [
            libc::SYS_futex,
            libc::SYS_sendto,
            libc::SYS_recvfrom,
            libc::SYS_getsockopt,
            libc::SYS_openat,
            libc::SYS_writev,
            libc::SYS_exit_group,
        ] {
            assert!(rules.contains_key(&needed), "{needed} must be allowed");
        }
        assert_eq!(rules[&libc::SYS_bpf].len(), BPF_COMMANDS.len());
        assert!(!seccomp_program().unwrap().is_empty());
    }

    #[test]
    fn one_thread_is_needed_to_drop() {
        // The test harness runs tests on threads of their own: more than one.
        assert!(thread_count().unwrap() >= 1);
        if thread_count().unwrap() > 1 {
            assert!(matches!(
                drop_privileges(None),
                Err(ConfineError::Threads(_))
            ));
        }
    }
}
