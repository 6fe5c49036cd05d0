//! A veth testbed: two network namespaces joined by a veth pair, with RFC 2544
//! benchmarking addresses (198.18.0.0/15) and ULA IPv6 (fd00::/8).
//!
//! ```text
//!   netns NAME-stack                     netns NAME-peer
//!   NAMEs 198.18.0.1/24 fd00::1/64 <==> NAMEp 198.18.0.2/24 fd00::2/64
//!   (xdpstack attaches here)             (traffic generators run here)
//! ```
//!
//! Built with iproute2's `ip` rather than a netlink crate: `ip` is on every machine
//! this runs on, its commands are what a user would type to reproduce a testbed, and
//! the Rust netlink crates pull in an async runtime for a handful of calls.
//!
//! [`Testbed`] removes both namespaces (and with them the veth pair) on drop, even
//! when a test fails; [`Testbed::remove`] removes a testbed left by a crash.
//!
//! [`RoutedTestbed`] (module [`routed`]) puts a router between the stack and a
//! client, for the send path's routing and neighbour resolution.

use std::{
    fs::File,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd,
    path::Path,
    process::{Command, Output},
};

pub mod routed;

pub use routed::RoutedTestbed;

/// IPv4 address of the stack side.
pub const STACK_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// IPv4 address of the peer side.
pub const PEER_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// IPv6 address of the stack side.
pub const STACK_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
/// IPv6 address of the peer side.
pub const PEER_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);

/// Longest testbed name: interface names are `NAMEs`/`NAMEp`, at most 15 bytes.
pub const MAX_NAME_LEN: usize = 14;

/// Errors building or tearing down a testbed.
#[derive(Debug, thiserror::Error)]
pub enum TestbedError {
    /// A name that cannot make valid interface names.
    #[error(
        "testbed name `{0}` must be 1-{MAX_NAME_LEN} characters of [a-z0-9-] \
         (it prefixes interface names)"
    )]
    BadName(String),
    /// `ip` could not be run.
    #[error("running `ip` or `ethtool` failed: {0} (install them: `cargo xtask setup`)")]
    Spawn(#[source] io::Error),
    /// `ip` said no.
    #[error("`{command}` failed: {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// What it printed.
        stderr: String,
    },
    /// An MTU the testbed cannot give both ends.
    #[error("testbed MTU {0} must be {MIN_MTU}-{MAX_MTU} (IPv6 needs at least {MIN_MTU})")]
    BadMtu(u32),
    /// Entering a namespace failed.
    #[error("entering network namespace {ns} failed: {source}")]
    Setns {
        /// The namespace.
        ns: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// How a testbed is built, beyond its name and queue count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// MTU of both veth ends (a jumbo MTU such as 9000 for multi-buffer
    /// AF_XDP). Set on both ends because a veth drops, on receive, a frame
    /// larger than its own MTU (plus the link header) whatever the sender's.
    pub mtu: u32,
}

impl Default for Options {
    /// What `ip link add ... type veth` gives: MTU 1500.
    fn default() -> Self {
        Options { mtu: DEFAULT_MTU }
    }
}

/// A veth's MTU when nobody sets one.
pub const DEFAULT_MTU: u32 = 1500;
/// The largest MTU a veth takes (`ETH_MAX_MTU`, `veth_setup`'s `max_mtu`).
pub const MAX_MTU: u32 = 65_535;
/// The smallest MTU IPv6 works with (RFC 8200 §5): the testbed gives every
/// end an IPv6 address, and the kernel removes it below this.
pub const MIN_MTU: u32 = 1280;

/// A live testbed; dropping it removes it.
#[derive(Debug)]
pub struct Testbed {
    name: String,
    queues: u32,
}

fn ip(args: &[&str]) -> Result<Output, TestbedError> {
    let mut cmd = Command::new("ip");
    cmd.args(args);
    run(cmd, || format!("ip {}", args.join(" ")))
}

/// Run `cmd`; a non-zero exit becomes an error naming `shown()` and its stderr.
fn run(mut cmd: Command, shown: impl FnOnce() -> String) -> Result<Output, TestbedError> {
    let out = cmd.output().map_err(TestbedError::Spawn)?;
    if !out.status.success() {
        return Err(TestbedError::Command {
            command: shown(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out)
}

/// Make the veth end `dev` put on the "wire" what a NIC would: full checksums
/// and in-band VLAN tags. By default veth passes the kernel's shortcuts along with
/// the skb: a UDP checksum left for the hardware to finish (CHECKSUM_PARTIAL:
/// only the pseudo-header sum is in the frame) and VLAN tags in skb metadata
/// (hardware tag insertion). XDP and AF_XDP see the frame bytes only, so they
/// would see a wrong checksum and no tag. (`ethtool -K` names: `tx` is
/// tx-checksumming, `txvlan`/`rxvlan` the VLAN offloads.)
fn wire_offloads_off(ns: &str, dev: &str) -> Result<(), TestbedError> {
    let args = ["-K", dev, "tx", "off", "txvlan", "off", "rxvlan", "off"];
    let mut cmd = netns_command(ns, "ethtool");
    cmd.args(args);
    run(cmd, || {
        format!("ip netns exec {ns} ethtool {}", args.join(" "))
    })?;
    Ok(())
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl Testbed {
    /// Create testbed `name` with `queues` RX/TX queues on each veth end.
    ///
    /// Fails if a testbed of that name exists; a half-built testbed is removed.
    pub fn create(name: &str, queues: u32) -> Result<Self, TestbedError> {
        Self::create_with(name, queues, Options::default())
    }

    /// Like [`Testbed::create`], built as `options` say (e.g. MTU 9000 on both
    /// veth ends).
    pub fn create_with(name: &str, queues: u32, options: Options) -> Result<Self, TestbedError> {
        if !valid_name(name) {
            return Err(TestbedError::BadName(name.to_string()));
        }
        if !(MIN_MTU..=MAX_MTU).contains(&options.mtu) {
            return Err(TestbedError::BadMtu(options.mtu));
        }
        let bed = Testbed {
            name: name.to_string(),
            queues: queues.max(1),
        };
        // From here on, `bed`'s Drop removes whatever part was built.
        let (ns_s, ns_p) = (bed.stack_ns(), bed.peer_ns());
        let (if_s, if_p) = (bed.stack_if(), bed.peer_if());
        let q = bed.queues.to_string();
        ip(&["netns", "add", &ns_s])?;
        ip(&["netns", "add", &ns_p])?;
        ip(&[
            "link",
            "add",
            &if_s,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "netns",
            &ns_s,
            "type",
            "veth",
            "peer",
            "name",
            &if_p,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "netns",
            &ns_p,
        ])?;
        for (ns, dev, v4, v6) in [
            (&ns_s, &if_s, STACK_V4, STACK_V6),
            (&ns_p, &if_p, PEER_V4, PEER_V6),
        ] {
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "addr", "add", &format!("{v4}/24"), "dev", dev])?;
            ip(&[
                "-n",
                ns,
                "-6",
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                dev,
                "nodad",
            ])?;
            // Before the link goes up, so that no frame ever leaves at the
            // old MTU.
            if options.mtu != DEFAULT_MTU {
                ip(&[
                    "-n",
                    ns,
                    "link",
                    "set",
                    dev,
                    "mtu",
                    &options.mtu.to_string(),
                ])?;
            }
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            wire_offloads_off(ns, dev)?;
        }
        Ok(bed)
    }

    /// Set the MTU of both veth ends of a live testbed (as
    /// [`Options::mtu`] does at creation). The links stay up.
    pub fn set_mtu(&self, mtu: u32) -> Result<(), TestbedError> {
        if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
            return Err(TestbedError::BadMtu(mtu));
        }
        let mtu = mtu.to_string();
        for (ns, dev) in [
            (self.stack_ns(), self.stack_if()),
            (self.peer_ns(), self.peer_if()),
        ] {
            ip(&["-n", &ns, "link", "set", "dev", &dev, "mtu", &mtu])?;
        }
        Ok(())
    }

    /// The MTUs of the stack side and the peer side, as the kernel has them
    /// (`ip -o link show`, which prints `mtu N`).
    pub fn mtus(&self) -> Result<(u32, u32), TestbedError> {
        let of = |ns: &str, dev: &str| -> Result<u32, TestbedError> {
            let out = ip(&["-n", ns, "-o", "link", "show", "dev", dev])?;
            let text = String::from_utf8_lossy(&out.stdout);
            parse_mtu(&text).ok_or_else(|| TestbedError::Command {
                command: format!("ip -n {ns} -o link show dev {dev}"),
                stderr: format!("no `mtu N` in its output: {}", text.trim()),
            })
        };
        Ok((
            of(&self.stack_ns(), &self.stack_if())?,
            of(&self.peer_ns(), &self.peer_if())?,
        ))
    }

    /// Remove testbed `name` if it exists (after a crash, `testbed down`).
    /// Deleting the namespaces deletes the veth pair with them.
    pub fn remove(name: &str) -> Result<(), TestbedError> {
        if !valid_name(name) {
            return Err(TestbedError::BadName(name.to_string()));
        }
        let mut first_err = None;
        for ns in [format!("{name}-stack"), format!("{name}-peer")] {
            if Path::new("/run/netns").join(&ns).exists()
                && let Err(e) = ip(&["netns", "del", &ns])
            {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Keep the testbed after this value is gone (`cargo xtask testbed up`).
    pub fn keep(self) {
        std::mem::forget(self);
    }

    /// True when testbed `name` exists.
    pub fn exists(name: &str) -> bool {
        Path::new("/run/netns")
            .join(format!("{name}-stack"))
            .exists()
    }

    /// The testbed's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// RX queues per veth end.
    pub fn queues(&self) -> u32 {
        self.queues
    }

    /// Namespace of the stack side.
    pub fn stack_ns(&self) -> String {
        format!("{}-stack", self.name)
    }

    /// Namespace of the peer side.
    pub fn peer_ns(&self) -> String {
        format!("{}-peer", self.name)
    }

    /// Interface of the stack side.
    pub fn stack_if(&self) -> String {
        format!("{}s", self.name)
    }

    /// Interface of the peer side.
    pub fn peer_if(&self) -> String {
        format!("{}p", self.name)
    }

    /// A command that runs `program` inside the stack namespace.
    pub fn stack_command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        netns_command(&self.stack_ns(), program)
    }

    /// A command that runs `program` inside the peer namespace.
    pub fn peer_command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        netns_command(&self.peer_ns(), program)
    }

    /// The id of the XDP program attached to the stack-side interface, if any
    /// (from `ip link show`, which prints `prog/xdp id N`).
    pub fn stack_xdp_prog_id(&self) -> Result<Option<u32>, TestbedError> {
        let out = ip(&[
            "-n",
            &self.stack_ns(),
            "link",
            "show",
            "dev",
            &self.stack_if(),
        ])?;
        Ok(parse_xdp_prog_id(&String::from_utf8_lossy(&out.stdout)))
    }

    /// Wait until an XDP program is attached to the stack side, or `timeout` passes.
    pub fn wait_xdp_attached(
        &self,
        timeout: std::time::Duration,
    ) -> Result<Option<u32>, TestbedError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(id) = self.stack_xdp_prog_id()? {
                return Ok(Some(id));
            }
            if std::time::Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Run `f` on a thread that has entered the peer namespace: sockets it creates
    /// live there (and keep working after the thread ends).
    pub fn in_peer<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, TestbedError> {
        in_netns(&self.peer_ns(), f)
    }

    /// Run `f` on a thread that has entered the stack namespace.
    pub fn in_stack<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, TestbedError> {
        in_netns(&self.stack_ns(), f)
    }

    /// A stack-side IP address of the given family.
    pub fn stack_addr(v6: bool) -> IpAddr {
        if v6 { STACK_V6.into() } else { STACK_V4.into() }
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        if let Err(e) = Testbed::remove(&self.name) {
            eprintln!("testbed {}: cleanup failed: {e}", self.name);
        }
    }
}

/// The program id in `ip link show` output (`prog/xdp id N`), if any.
pub fn parse_xdp_prog_id(ip_link_output: &str) -> Option<u32> {
    let rest = &ip_link_output[ip_link_output.find("prog/xdp")?..];
    let rest = &rest[rest.find(" id ")? + 4..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The MTU in `ip link show` output (`... mtu N ...`), if any.
pub fn parse_mtu(ip_link_output: &str) -> Option<u32> {
    let mut words = ip_link_output.split_whitespace();
    words.find(|w| *w == "mtu")?;
    words.next()?.parse().ok()
}

/// `ip netns exec NS program`.
pub fn netns_command(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).arg(program);
    cmd
}

/// Run `f` on a new thread that has joined network namespace `ns` (setns(2) affects
/// only the calling thread, so the caller's namespace is untouched).
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> Result<T, TestbedError> {
    let path = Path::new("/run/netns").join(ns);
    let setns_err = |source| TestbedError::Setns {
        ns: ns.to_string(),
        source,
    };
    let file = File::open(&path).map_err(setns_err)?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: `file` is an open namespace file; setns only changes this
            // thread's network namespace.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(setns_err(io::Error::last_os_error()));
            }
            Ok(f())
        })
        .join()
        .expect("thread in netns panicked")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(valid_name("xs-1"));
        assert!(!valid_name(""));
        assert!(!valid_name("UPPER"));
        assert!(!valid_name("fifteen-chars-x"));
        assert!(matches!(
            Testbed::create("bad name", 1),
            Err(TestbedError::BadName(_))
        ));
    }

    #[test]
    fn xdp_prog_id_is_parsed() {
        let drv = "2: xs0s@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 xdp qdisc noqueue\n    \
                   link/ether ae:29:72:48:b1:dd brd ff:ff:ff:ff:ff:ff link-netns p\n    \
                   prog/xdp id 110 name xdpstack tag 185ec184a784dc97 jited";
        assert_eq!(parse_xdp_prog_id(drv), Some(110));
        let none = "2: xs0s@if2: <BROADCAST> mtu 1500 qdisc noqueue\n    link/ether ae:29";
        assert_eq!(parse_xdp_prog_id(none), None);
        assert_eq!(parse_mtu(drv), Some(1500));
        assert_eq!(
            parse_mtu("2: xj0s@if2: <UP> mtu 9000 xdp qdisc"),
            Some(9000)
        );
        assert_eq!(parse_mtu("2: xs0s@if2: <UP> qdisc noqueue"), None);
    }

    #[test]
    fn mtus_are_checked_before_anything_is_built() {
        for mtu in [0, MIN_MTU - 1, MAX_MTU + 1] {
            assert!(matches!(
                Testbed::create_with("xs-mtu", 1, Options { mtu }),
                Err(TestbedError::BadMtu(m)) if m == mtu
            ));
        }
        assert!(!Testbed::exists("xs-mtu"), "nothing was built");
        assert_eq!(Options::default().mtu, 1500);
    }
}
