//! A routed testbed: the stack's namespace reaches a client's through a router,
//! so that the send path's next hops (a gateway, its MAC, the source address)
//! can be tested against the kernel's real routing and neighbour tables.
//!
//! ```text
//!   netns NAME-stack            netns NAME-router                 netns NAME-client
//!   NAMEs 198.18.0.1/24 <==> NAMEa 198.18.0.2/24 | NAMEb 198.19.0.1/24 <==> NAMEc 198.19.0.2/24
//!         fd00::1/64               fd00::2/64    |       fd00:1::1/64          fd00:1::2/64
//!   default via the router      forwarding on                     default via the router
//! ```
//!
//! Like [`Testbed`](crate::Testbed), built with `ip`, with the wire offloads off
//! on every veth end, and removed on drop (all three namespaces, and with them
//! the veth pairs) even when a test fails.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    path::Path,
    process::{Command, Output},
};

use crate::{TestbedError, in_netns, ip, netns_command, run, valid_name, wire_offloads_off};

/// The stack's IPv4 address.
pub const STACK_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The router's IPv4 address on the stack's link (the stack's gateway).
pub const ROUTER_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The router's IPv4 address on the client's link.
pub const ROUTER_CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
/// The client's IPv4 address.
pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 2);
/// The stack's IPv6 address.
pub const STACK_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
/// The router's IPv6 address on the stack's link (the stack's gateway).
pub const ROUTER_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
/// The router's IPv6 address on the client's link.
pub const ROUTER_CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 1);
/// The client's IPv6 address.
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 2);

/// A live routed testbed; dropping it removes it.
#[derive(Debug)]
pub struct RoutedTestbed {
    name: String,
}

/// `ip -n NS ARGS...`.
pub fn ip_netns(ns: &str, args: &[&str]) -> Result<Output, TestbedError> {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    ip(&all)
}

impl RoutedTestbed {
    /// Create routed testbed `name` (at most
    /// [`MAX_NAME_LEN`](crate::MAX_NAME_LEN) characters of `[a-z0-9-]`: it
    /// prefixes the interface names). Fails if one of that name exists; a
    /// half-built one is removed.
    pub fn create(name: &str) -> Result<Self, TestbedError> {
        if !valid_name(name) {
            return Err(TestbedError::BadName(name.to_string()));
        }
        let bed = RoutedTestbed {
            name: name.to_string(),
        };
        // From here on, `bed`'s Drop removes whatever part was built.
        let (stack, router, client) = (bed.stack_ns(), bed.router_ns(), bed.client_ns());
        for ns in [&stack, &router, &client] {
            ip(&["netns", "add", ns])?;
            ip_netns(ns, &["link", "set", "lo", "up"])?;
        }
        for (a_ns, a_if, b_ns, b_if) in [
            (&stack, bed.stack_if(), &router, bed.router_stack_if()),
            (&router, bed.router_client_if(), &client, bed.client_if()),
        ] {
            ip(&[
                "link", "add", &a_if, "netns", a_ns, "type", "veth", "peer", "name", &b_if,
                "netns", b_ns,
            ])?;
        }
        let ends = [
            (&stack, bed.stack_if(), STACK_V4, STACK_V6),
            (&router, bed.router_stack_if(), ROUTER_V4, ROUTER_V6),
            (
                &router,
                bed.router_client_if(),
                ROUTER_CLIENT_V4,
                ROUTER_CLIENT_V6,
            ),
            (&client, bed.client_if(), CLIENT_V4, CLIENT_V6),
        ];
        for (ns, dev, v4, v6) in &ends {
            ip_netns(ns, &["addr", "add", &format!("{v4}/24"), "dev", dev])?;
            let v6 = format!("{v6}/64");
            ip_netns(ns, &["-6", "addr", "add", &v6, "dev", dev, "nodad"])?;
            ip_netns(ns, &["link", "set", dev, "up"])?;
            wire_offloads_off(ns, dev)?;
        }
        for key in ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"] {
            let mut cmd = netns_command(&router, "sysctl");
            cmd.args(["-qw", key]);
            run(cmd, || format!("ip netns exec {router} sysctl -qw {key}"))?;
        }
        for (ns, v4, v6) in [
            (&stack, ROUTER_V4, ROUTER_V6),
            (&client, ROUTER_CLIENT_V4, ROUTER_CLIENT_V6),
        ] {
            ip_netns(ns, &["route", "add", "default", "via", &v4.to_string()])?;
            ip_netns(
                ns,
                &["-6", "route", "add", "default", "via", &v6.to_string()],
            )?;
        }
        Ok(bed)
    }

    /// Remove routed testbed `name` if (any part of) it exists.
    pub fn remove(name: &str) -> Result<(), TestbedError> {
        if !valid_name(name) {
            return Err(TestbedError::BadName(name.to_string()));
        }
        let mut first_err = None;
        for role in ["stack", "router", "client"] {
            let ns = format!("{name}-{role}");
            if Path::new("/run/netns").join(&ns).exists()
                && let Err(e) = ip(&["netns", "del", &ns])
            {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// The testbed's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Namespace of the stack.
    pub fn stack_ns(&self) -> String {
        format!("{}-stack", self.name)
    }

    /// Namespace of the router.
    pub fn router_ns(&self) -> String {
        format!("{}-router", self.name)
    }

    /// Namespace of the client.
    pub fn client_ns(&self) -> String {
        format!("{}-client", self.name)
    }

    /// The stack's interface (to the router).
    pub fn stack_if(&self) -> String {
        format!("{}s", self.name)
    }

    /// The router's interface on the stack's link.
    pub fn router_stack_if(&self) -> String {
        format!("{}a", self.name)
    }

    /// The router's interface on the client's link.
    pub fn router_client_if(&self) -> String {
        format!("{}b", self.name)
    }

    /// The client's interface (to the router).
    pub fn client_if(&self) -> String {
        format!("{}c", self.name)
    }

    /// `ip -n STACK ARGS...`.
    pub fn ip_stack(&self, args: &[&str]) -> Result<Output, TestbedError> {
        ip_netns(&self.stack_ns(), args)
    }

    /// `ip -n ROUTER ARGS...`.
    pub fn ip_router(&self, args: &[&str]) -> Result<Output, TestbedError> {
        ip_netns(&self.router_ns(), args)
    }

    /// `ip -n CLIENT ARGS...`.
    pub fn ip_client(&self, args: &[&str]) -> Result<Output, TestbedError> {
        ip_netns(&self.client_ns(), args)
    }

    /// A command that runs `program` inside the stack namespace.
    pub fn stack_command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        netns_command(&self.stack_ns(), program)
    }

    /// A command that runs `program` inside the client namespace.
    pub fn client_command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        netns_command(&self.client_ns(), program)
    }

    /// Run `f` on a thread that has entered the stack namespace (threads it
    /// spawns are there too).
    pub fn in_stack<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, TestbedError> {
        in_netns(&self.stack_ns(), f)
    }

    /// Run `f` on a thread that has entered the router namespace.
    pub fn in_router<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, TestbedError> {
        in_netns(&self.router_ns(), f)
    }

    /// Run `f` on a thread that has entered the client namespace.
    pub fn in_client<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, TestbedError> {
        in_netns(&self.client_ns(), f)
    }
}

impl Drop for RoutedTestbed {
    fn drop(&mut self) {
        if let Err(e) = RoutedTestbed::remove(&self.name) {
            eprintln!("routed testbed {}: cleanup failed: {e}", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_interfaces_fit() {
        assert!(matches!(
            RoutedTestbed::create("Bad"),
            Err(TestbedError::BadName(_))
        ));
        let bed = RoutedTestbed {
            name: "a".repeat(crate::MAX_NAME_LEN),
        };
        for dev in [
            bed.stack_if(),
            bed.router_stack_if(),
            bed.router_client_if(),
            bed.client_if(),
        ] {
            assert!(dev.len() < libc::IFNAMSIZ, "{dev}");
        }
        // Never created: dropping it finds nothing to remove.
        drop(bed);
    }
}
