//! Interface facts the stack checks before attaching (RX queue count, MTU) and
//! while it runs (up or gone).
//!
//! Read with ioctls on a socket rather than from `/sys/class/net`: a socket belongs
//! to the calling thread's network namespace, while sysfs shows the namespace of
//! whoever mounted it, which is wrong for a thread that joined another namespace.

use std::{ffi::CString, io, os::fd::AsRawFd};

/// `struct ifreq` with the union as the fields we use (40 bytes on 64-bit Linux).
#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: IfReqData,
}

#[repr(C)]
union IfReqData {
    mtu: libc::c_int,
    flags: libc::c_short,
    ptr: *mut libc::c_void,
    _pad: [u8; 24],
}

/// `struct ethtool_channels`.
#[repr(C)]
#[derive(Default)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

/// The index of interface `name`, if it exists.
pub fn if_index(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string; if_nametoindex only reads it.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (index != 0).then_some(index)
}

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GCHANNELS: u32 = 0x3c;

fn ifreq(name: &str) -> io::Result<IfReq> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let bytes = c.as_bytes_with_nul();
    if bytes.len() > libc::IFNAMSIZ {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: IfReqData { _pad: [0; 24] },
    };
    for (d, &s) in req.name.iter_mut().zip(bytes) {
        *d = s as libc::c_char;
    }
    Ok(req)
}

fn ioctl_socket() -> io::Result<std::net::UdpSocket> {
    std::net::UdpSocket::bind("0.0.0.0:0").or_else(|_| std::net::UdpSocket::bind("[::]:0"))
}

/// The MTU of `name`.
pub fn mtu(name: &str) -> io::Result<u32> {
    let sock = ioctl_socket()?;
    let mut req = ifreq(name)?;
    // SAFETY: `req` is a properly sized, initialised `struct ifreq` that the
    // kernel fills in (SIOCGIFMTU writes `ifr_mtu`).
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFMTU, &mut req) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFMTU succeeded, so the kernel wrote `ifr_mtu`.
    let mtu = unsafe { req.data.mtu };
    u32::try_from(mtu).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
}

/// Whether `name` is administratively up (IFF_UP). An error with ENODEV means the
/// interface does not exist (any more).
pub fn is_up(name: &str) -> io::Result<bool> {
    let sock = ioctl_socket()?;
    let mut req = ifreq(name)?;
    // SAFETY: `req` is a properly sized, initialised `struct ifreq` that the
    // kernel fills in (SIOCGIFFLAGS writes `ifr_flags`).
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS succeeded, so the kernel wrote `ifr_flags`.
    let flags = unsafe { req.data.flags };
    Ok(i32::from(flags) & libc::IFF_UP != 0)
}

/// The number of RX queues of `name`: `ethtool -l`'s current RX + combined
/// channels; 1 for drivers that do not report channels.
pub fn rx_queues(name: &str) -> io::Result<u32> {
    let sock = ioctl_socket()?;
    let mut channels = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..EthtoolChannels::default()
    };
    let mut req = ifreq(name)?;
    req.data.ptr = (&raw mut channels).cast();
    // SAFETY: `req` points to `channels`, a valid `struct ethtool_channels` that
    // outlives the call; the kernel reads `cmd` and writes the rest.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL, &mut req) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EOPNOTSUPP) {
            return Ok(1);
        }
        return Err(err);
    }
    Ok((channels.rx_count + channels.combined_count).max(1))
}

/// The IP addresses of interface `name` (getifaddrs(3): netlink underneath,
/// so the calling thread's namespace), IPv4 first.
pub fn addresses(name: &str) -> io::Result<Vec<std::net::IpAddr>> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `list` is valid for one pointer write; freed below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = list;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: a NUL-terminated name of the list.
        let ifname = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
        if ifname.to_bytes() != name.as_bytes() {
            continue;
        }
        // SAFETY: `ifa_addr` points at a sockaddr whose family says its type.
        match i32::from(unsafe { (*ifa.ifa_addr).sa_family }) {
            libc::AF_INET => {
                // SAFETY: an AF_INET sockaddr is a sockaddr_in.
                let sin = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in>() };
                out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    sin.sin_addr.s_addr,
                ))));
            }
            libc::AF_INET6 => {
                // SAFETY: an AF_INET6 sockaddr is a sockaddr_in6.
                let sin6 = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in6>() };
                out.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
            }
            _ => {}
        }
    }
    // SAFETY: the list getifaddrs returned, freed once.
    unsafe { libc::freeifaddrs(list) };
    out.sort_by_key(|a| a.is_ipv6());
    Ok(out)
}

/// `struct ethtool_value`: a command and one value.
#[repr(C)]
#[derive(Default)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// `struct ethtool_drvinfo`.
#[repr(C)]
struct EthtoolDrvinfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    counts: [u32; 5],
}

const ETHTOOL_GDRVINFO: u32 = 0x03;
const ETHTOOL_GTXCSUM: u32 = 0x16;
const ETHTOOL_GFLAGS: u32 = 0x25;
/// `ETH_FLAG_NTUPLE`: ntuple filters (`ethtool -K IF ntuple on`).
const ETH_FLAG_NTUPLE: u32 = 1 << 27;

/// An ethtool ioctl on `name` with `data` as its argument block.
fn ethtool<T>(name: &str, data: &mut T) -> io::Result<()> {
    let sock = ioctl_socket()?;
    let mut req = ifreq(name)?;
    req.data.ptr = (data as *mut T).cast();
    // SAFETY: `req` points to `data`, a `#[repr(C)]` ethtool block of the
    // command's size that outlives the call; the kernel reads its `cmd` and
    // writes the rest.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL, &mut req) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The name of the driver of `name` (`ethtool -i`): "veth", "ice", "mlx5_core".
pub fn driver(name: &str) -> io::Result<String> {
    let mut info = EthtoolDrvinfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        version: [0; 32],
        fw_version: [0; 32],
        bus_info: [0; 32],
        erom_version: [0; 32],
        reserved2: [0; 12],
        counts: [0; 5],
    };
    ethtool(name, &mut info)?;
    let end = info.driver.iter().position(|&c| c == 0).unwrap_or(32);
    Ok(String::from_utf8_lossy(&info.driver[..end]).into_owned())
}

/// Whether `name` computes TX checksums in "hardware" (`ethtool -k`'s
/// tx-checksumming). On a veth that means a kernel socket's UDP leaves with a
/// partial checksum that nothing ever finishes, which XDP sees as bad.
pub fn tx_checksum_offload(name: &str) -> io::Result<bool> {
    let mut v = EthtoolValue {
        cmd: ETHTOOL_GTXCSUM,
        data: 0,
    };
    ethtool(name, &mut v)?;
    Ok(v.data != 0)
}

/// Whether ntuple filters are on (`ethtool -k`'s ntuple-filters); an error
/// with EOPNOTSUPP when the driver has none.
pub fn ntuple(name: &str) -> io::Result<bool> {
    let mut v = EthtoolValue {
        cmd: ETHTOOL_GFLAGS,
        data: 0,
    };
    ethtool(name, &mut v)?;
    Ok(v.data & ETH_FLAG_NTUPLE != 0)
}

/// The name of the interface with index `index` in this network namespace.
pub fn if_name(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IFNAMSIZ];
    // SAFETY: `buf` has the IFNAMSIZ bytes if_indextoname writes at most.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success the buffer holds a NUL-terminated name.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_its_address() {
        let lo = addresses("lo").expect("getifaddrs");
        assert!(
            lo.contains(&std::net::IpAddr::from([127, 0, 0, 1])),
            "{lo:?}"
        );
        assert!(addresses("no-such-if0").unwrap().is_empty());
    }

    #[test]
    fn loopback_facts() {
        assert_eq!(mtu("lo").unwrap(), 65536);
        assert_eq!(rx_queues("lo").unwrap(), 1);
        assert!(is_up("lo").unwrap());
        assert_eq!(
            is_up("xs-no-such-if").unwrap_err().raw_os_error(),
            Some(libc::ENODEV)
        );
        assert!(mtu("xs-no-such-if").is_err());
        assert!(mtu("a-name-longer-than-ifnamsiz").is_err());
        assert_eq!(
            driver("xs-no-such-if").unwrap_err().raw_os_error(),
            Some(libc::ENODEV)
        );
        let lo = if_index("lo").unwrap();
        assert_eq!(if_name(lo).as_deref(), Some("lo"));
        assert_eq!(if_name(0), None);
    }
}
