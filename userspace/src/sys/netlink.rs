//! Two netlink questions about an interface, asked without changing anything:
//! what rtnetlink says of the link (its kind, its veth peer, the XDP program on
//! it) and what the `netdev` generic-netlink family says of its XDP features
//! (native XDP, AF_XDP zero-copy) and of its queues' NAPI ids.
//!
//! Asking is the only way to learn these without trying: attaching a program in
//! driver mode or binding a zero-copy socket to find out would, on many NICs,
//! reset the rings (a link flap on a production interface). The messages are
//! built by hand: a request and one answer each, with the few attributes we read.

use std::{io, os::fd::AsRawFd as _, os::fd::FromRawFd as _, os::fd::OwnedFd};

const NETLINK_ROUTE: libc::c_int = 0;
const NETLINK_GENERIC: libc::c_int = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const RTM_GETLINK: u16 = 18;
const RTM_NEWLINK: u16 = 16;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_LINK: u16 = 5;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_LINK_NETNSID: u16 = 37;
const IFLA_XDP: u16 = 43;
const IFLA_TARGET_NETNSID: u16 = 46;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_PROG_ID: u16 = 4;
const RTM_NEWNSID: u16 = 88;
const RTM_GETNSID: u16 = 90;
const NETNSA_NSID: u16 = 1;
const NETNSA_FD: u16 = 3;
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const NETDEV_CMD_DEV_GET: u8 = 1;
const NETDEV_CMD_QUEUE_GET: u8 = 10;
const NETDEV_A_DEV_IFINDEX: u16 = 1;
const NETDEV_A_DEV_XDP_FEATURES: u16 = 3;
const NETDEV_A_QUEUE_ID: u16 = 1;
const NETDEV_A_QUEUE_IFINDEX: u16 = 2;
const NETDEV_A_QUEUE_TYPE: u16 = 3;
const NETDEV_A_QUEUE_NAPI_ID: u16 = 4;
const NETDEV_QUEUE_TYPE_RX: u32 = 0;

/// `NETDEV_XDP_ACT_*` (include/uapi/linux/netdev.h): what a driver's XDP can do.
pub mod xdp_act {
    /// XDP in the driver (native mode): XDP_PASS, XDP_DROP, XDP_TX.
    pub const BASIC: u64 = 1 << 0;
    /// XDP_REDIRECT, which AF_XDP needs.
    pub const REDIRECT: u64 = 1 << 1;
    /// The device takes redirected frames (ndo_xdp_xmit).
    pub const NDO_XMIT: u64 = 1 << 2;
    /// AF_XDP zero-copy.
    pub const XSK_ZEROCOPY: u64 = 1 << 3;
    /// Offload of the program to the NIC.
    pub const HW_OFFLOAD: u64 = 1 << 4;
    /// Multi-buffer frames on receive.
    pub const RX_SG: u64 = 1 << 5;
    /// Multi-buffer frames through ndo_xdp_xmit.
    pub const NDO_XMIT_SG: u64 = 1 << 6;

    /// The names `ip`/`ynl` use, for the bits set in `features`.
    pub fn names(features: u64) -> Vec<&'static str> {
        [
            (BASIC, "basic"),
            (REDIRECT, "redirect"),
            (NDO_XMIT, "ndo-xmit"),
            (XSK_ZEROCOPY, "xsk-zerocopy"),
            (HW_OFFLOAD, "hw-offload"),
            (RX_SG, "rx-sg"),
            (NDO_XMIT_SG, "ndo-xmit-sg"),
        ]
        .into_iter()
        .filter(|(bit, _)| features & bit != 0)
        .map(|(_, name)| name)
        .collect()
    }
}

/// What rtnetlink says of a link.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkInfo {
    /// Its name.
    pub name: String,
    /// `IFLA_MTU`: its MTU (for a veth's peer in another namespace, where
    /// `SIOCGIFMTU` cannot reach).
    pub mtu: Option<u32>,
    /// `IFLA_INFO_KIND`: "veth", "bridge", ...; `None` for a physical NIC.
    pub kind: Option<String>,
    /// `IFLA_LINK`: for a veth, the peer's ifindex (in the peer's namespace).
    pub link: Option<u32>,
    /// `IFLA_LINK_NETNSID`: set when the peer is in another network namespace.
    pub link_netnsid: Option<i32>,
    /// `IFLA_XDP_ATTACHED`: 0 none, 1 driver, 2 generic, 3 offloaded, 4 several.
    pub xdp_attached: u8,
    /// `IFLA_XDP_PROG_ID` of the attached program (0: none, or several).
    pub xdp_prog_id: u32,
}

fn socket(protocol: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the descriptor it returns is owned by nothing else.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            protocol,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is not owned elsewhere.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A netlink message under construction: header, fixed part, attributes.
struct Msg(Vec<u8>);

impl Msg {
    fn new(kind: u16, flags: u16) -> Self {
        let mut v = vec![0u8; 16];
        v[4..6].copy_from_slice(&kind.to_ne_bytes());
        v[6..8].copy_from_slice(&flags.to_ne_bytes());
        v[8..12].copy_from_slice(&1u32.to_ne_bytes());
        Self(v)
    }

    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }

    fn attr(&mut self, kind: u16, payload: &[u8]) -> &mut Self {
        let len = 4 + payload.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(payload);
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
        self
    }

    fn finish(&mut self) -> &[u8] {
        let len = self.0.len() as u32;
        self.0[0..4].copy_from_slice(&len.to_ne_bytes());
        &self.0
    }
}

/// Send `msg` and return the payload (after the netlink header) of the first
/// answer of type `want`; a netlink error is returned as the errno it carries.
fn ask(protocol: libc::c_int, msg: &[u8], want: u16) -> io::Result<Vec<u8>> {
    let fd = socket(protocol)?;
    // SAFETY: a zeroed sockaddr_nl is the kernel's address (pid 0, no groups).
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: `msg` is valid for its length, `addr` is a sockaddr_nl of the size
    // given.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&raw const addr).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 32 * 1024];
    // A few datagrams at most: the answer, or an error; bounded regardless.
    for _ in 0..8 {
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut data = &buf[..n as usize];
        while data.len() >= 16 {
            let len = u32::from_ne_bytes(data[0..4].try_into().unwrap_or_default()) as usize;
            let kind = u16::from_ne_bytes([data[4], data[5]]);
            if len < 16 || len > data.len() {
                return Err(io::Error::from(io::ErrorKind::InvalidData));
            }
            let payload = &data[16..len];
            match kind {
                NLMSG_ERROR => {
                    let code = payload
                        .get(0..4)
                        .map_or(0, |b| i32::from_ne_bytes(b.try_into().unwrap_or_default()));
                    return Err(io::Error::from_raw_os_error(-code));
                }
                NLMSG_DONE => return Err(io::Error::from(io::ErrorKind::NotFound)),
                k if k == want => return Ok(payload.to_vec()),
                _ => {}
            }
            data = &data[align4(len).min(data.len())..];
        }
    }
    Err(io::Error::from(io::ErrorKind::TimedOut))
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The attributes in `data`: (type without the nested/byte-order bits, payload).
fn attrs(mut data: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while data.len() >= 4 {
        let len = u16::from_ne_bytes([data[0], data[1]]) as usize;
        let kind = u16::from_ne_bytes([data[2], data[3]]) & 0x3fff;
        if len < 4 || len > data.len() {
            break;
        }
        out.push((kind, &data[4..len]));
        data = &data[align4(len).min(data.len())..];
    }
    out
}

fn u32_of(b: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(0..4)?.try_into().ok()?))
}

fn text_of(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// rtnetlink's view of the link with index `ifindex` (`ip -d link show`).
pub fn link_info(ifindex: u32) -> io::Result<LinkInfo> {
    link_info_in(ifindex, None)
}

/// [`link_info`] of a link in the network namespace this one knows as
/// `netnsid` (`IFLA_TARGET_NETNSID`, Linux 4.20+; CAP_NET_ADMIN there): how
/// a veth's peer in another namespace is named.
pub fn link_info_in(ifindex: u32, netnsid: Option<i32>) -> io::Result<LinkInfo> {
    let mut ifinfomsg = [0u8; 16];
    ifinfomsg[4..8].copy_from_slice(&(ifindex as i32).to_ne_bytes());
    let mut msg = Msg::new(RTM_GETLINK, NLM_F_REQUEST);
    msg.bytes(&ifinfomsg);
    if let Some(id) = netnsid {
        msg.attr(IFLA_TARGET_NETNSID, &id.to_ne_bytes());
    }
    let payload = ask(NETLINK_ROUTE, msg.finish(), RTM_NEWLINK)?;
    let mut info = LinkInfo::default();
    for (kind, value) in attrs(payload.get(16..).unwrap_or_default()) {
        match kind {
            IFLA_IFNAME => info.name = text_of(value),
            IFLA_MTU => info.mtu = u32_of(value),
            IFLA_LINK => info.link = u32_of(value),
            IFLA_LINK_NETNSID => info.link_netnsid = u32_of(value).map(|v| v as i32),
            IFLA_LINKINFO => {
                for (k, v) in attrs(value) {
                    if k == IFLA_INFO_KIND {
                        info.kind = Some(text_of(v));
                    }
                }
            }
            IFLA_XDP => {
                for (k, v) in attrs(value) {
                    match k {
                        IFLA_XDP_ATTACHED => info.xdp_attached = v.first().copied().unwrap_or(0),
                        IFLA_XDP_PROG_ID => info.xdp_prog_id = u32_of(v).unwrap_or(0),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(info)
}

/// The name (`ip netns`, a file in /run/netns) of the network namespace this
/// one knows as `netnsid`, if it has one.
pub fn netns_name(netnsid: i32) -> Option<String> {
    for entry in std::fs::read_dir("/run/netns").ok()? {
        let Ok(entry) = entry else { continue };
        let Ok(file) = std::fs::File::open(entry.path()) else {
            continue;
        };
        let mut msg = Msg::new(RTM_GETNSID, NLM_F_REQUEST);
        msg.bytes(&[0, 0, 0, 0])
            .attr(NETNSA_FD, &(file.as_raw_fd() as u32).to_ne_bytes());
        let Ok(payload) = ask(NETLINK_ROUTE, msg.finish(), RTM_NEWNSID) else {
            continue;
        };
        let id = attrs(payload.get(4..).unwrap_or_default())
            .into_iter()
            .find(|(k, _)| *k == NETNSA_NSID)
            .and_then(|(_, v)| u32_of(v))
            .map(|v| v as i32);
        if id == Some(netnsid) {
            return Some(entry.file_name().to_string_lossy().into_owned());
        }
    }
    None
}

/// The id of generic-netlink family `name`; `None` when the kernel has none.
fn genl_family(name: &str) -> io::Result<Option<u16>> {
    let mut msg = Msg::new(GENL_ID_CTRL, NLM_F_REQUEST);
    let mut family = name.as_bytes().to_vec();
    family.push(0);
    msg.bytes(&[CTRL_CMD_GETFAMILY, 1, 0, 0])
        .attr(CTRL_ATTR_FAMILY_NAME, &family);
    match ask(NETLINK_GENERIC, msg.finish(), GENL_ID_CTRL) {
        Ok(payload) => Ok(attrs(payload.get(4..).unwrap_or_default())
            .into_iter()
            .find(|(k, _)| *k == CTRL_ATTR_FAMILY_ID)
            .and_then(|(_, v)| Some(u16::from_ne_bytes(v.get(0..2)?.try_into().ok()?)))),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// One `netdev` request; `None` when the kernel has no `netdev` family (before
/// 6.3) or does not know the command.
/// An answer's attributes, owned.
type Attributes = Vec<(u16, Vec<u8>)>;

fn netdev(cmd: u8, attributes: &[(u16, u32)]) -> io::Result<Option<Attributes>> {
    let Some(family) = genl_family("netdev")? else {
        return Ok(None);
    };
    let mut msg = Msg::new(family, NLM_F_REQUEST);
    msg.bytes(&[cmd, 1, 0, 0]);
    for (kind, value) in attributes {
        msg.attr(*kind, &value.to_ne_bytes());
    }
    match ask(NETLINK_GENERIC, msg.finish(), family) {
        Ok(payload) => Ok(Some(
            attrs(payload.get(4..).unwrap_or_default())
                .into_iter()
                .map(|(k, v)| (k, v.to_vec()))
                .collect(),
        )),
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The interface's XDP features (`NETDEV_XDP_ACT_*`, [`xdp_act`]), as the
/// driver declares them; `None` on kernels without the `netdev` family (6.3+).
pub fn xdp_features(ifindex: u32) -> io::Result<Option<u64>> {
    let Some(answer) = netdev(NETDEV_CMD_DEV_GET, &[(NETDEV_A_DEV_IFINDEX, ifindex)])? else {
        return Ok(None);
    };
    Ok(answer
        .iter()
        .find(|(k, _)| *k == NETDEV_A_DEV_XDP_FEATURES)
        .and_then(|(_, v)| Some(u64::from_ne_bytes(v.get(0..8)?.try_into().ok()?)))
        .or(Some(0)))
}

/// The NAPI id the driver registered for RX queue `queue` (what busy polling
/// runs): `Some(0)` when the queue has none (veth's XDP rings, lo), `None` when
/// the kernel cannot say (no `netdev` queue-get before 6.8).
pub fn rx_queue_napi_id(ifindex: u32, queue: u32) -> io::Result<Option<u32>> {
    let request = [
        (NETDEV_A_QUEUE_IFINDEX, ifindex),
        (NETDEV_A_QUEUE_TYPE, NETDEV_QUEUE_TYPE_RX),
        (NETDEV_A_QUEUE_ID, queue),
    ];
    match netdev(NETDEV_CMD_QUEUE_GET, &request) {
        Ok(Some(answer)) => Ok(Some(
            answer
                .iter()
                .find(|(k, _)| *k == NETDEV_A_QUEUE_NAPI_ID)
                .and_then(|(_, v)| u32_of(v))
                .unwrap_or(0),
        )),
        Ok(None) => Ok(None),
        // An old kernel that does not know the command says EINVAL.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_read_back_as_built() {
        let mut msg = Msg::new(7, NLM_F_REQUEST);
        msg.attr(1, &5u32.to_ne_bytes()).attr(2, b"veth\0");
        let bytes = msg.finish().to_vec();
        assert_eq!(u32::from_ne_bytes(bytes[0..4].try_into().unwrap()), 36);
        let read = attrs(&bytes[16..]);
        assert_eq!(read.len(), 2);
        assert_eq!(u32_of(read[0].1), Some(5));
        assert_eq!(text_of(read[1].1), "veth");
        assert!(
            attrs(&[0xff, 0, 0, 0]).is_empty(),
            "a bad length ends the list"
        );
    }

    #[test]
    fn feature_names() {
        assert_eq!(
            xdp_act::names(xdp_act::BASIC | xdp_act::XSK_ZEROCOPY),
            ["basic", "xsk-zerocopy"]
        );
        assert!(xdp_act::names(0).is_empty());
    }

    #[test]
    fn loopback_has_no_native_xdp_and_no_program() {
        let lo = crate::sys::ifinfo::if_index("lo").unwrap();
        let info = link_info(lo).unwrap();
        assert_eq!(info.name, "lo");
        assert_eq!(info.kind, None);
        assert_eq!(info.xdp_attached, 0);
        if let Some(f) = xdp_features(lo).unwrap() {
            assert_eq!(f & xdp_act::BASIC, 0, "lo has generic XDP only: {f:#x}");
        }
        assert!(link_info(0x7fff_fff0).is_err(), "no such link");
    }
}
