//! The syscalls of the benchmark tooling that the product library does not
//! have: interface addresses. (CPU time and affinity are `xdpstack::sys::process`'s.)
//! Every `unsafe` block of this crate is here.

use std::{ffi::CStr, io, net::Ipv4Addr};

/// The MAC (as six bytes) and first IPv4 address of `iface`, from `getifaddrs`
/// (netlink in the calling thread's network namespace).
pub fn iface_addresses(iface: &str) -> io::Result<(Option<[u8; 6]>, Option<Ipv4Addr>)> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `head` is a valid out-pointer; on success the list is ours until
    // `freeifaddrs` below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let (mut mac, mut ipv4) = (None, None);
    let mut node = head;
    while !node.is_null() {
        // SAFETY: `node` is an element of the list getifaddrs returned, not freed.
        let ifa = unsafe { &*node };
        node = ifa.ifa_next;
        if ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: `ifa_name` is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) };
        if name.to_bytes() != iface.as_bytes() {
            continue;
        }
        // SAFETY: a non-null `ifa_addr` points to a sockaddr of the list.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        match family {
            libc::AF_INET if ipv4.is_none() => {
                // SAFETY: the family says this is a `sockaddr_in`.
                let sin = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in>() };
                ipv4 = Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            }
            libc::AF_PACKET => {
                // SAFETY: the family says this is a `sockaddr_ll`.
                let sll = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_ll>() };
                if sll.sll_halen == 6 {
                    let mut m = [0u8; 6];
                    m.copy_from_slice(&sll.sll_addr[..6]);
                    mac = Some(m);
                }
            }
            _ => {}
        }
    }
    // SAFETY: `head` came from getifaddrs and is freed once; no reference into the
    // list outlives this point.
    unsafe { libc::freeifaddrs(head) };
    Ok((mac, ipv4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_its_address_and_no_mac() {
        let (mac, ipv4) = iface_addresses("lo").unwrap();
        assert_eq!(ipv4, Some(Ipv4Addr::LOCALHOST));
        // sockaddr_ll of lo has a hardware address length of 6 (all zeroes).
        assert!(mac.is_none_or(|m| m == [0; 6]), "{mac:?}");
        assert_eq!(iface_addresses("xb-no-such-if").unwrap(), (None, None));
    }
}
