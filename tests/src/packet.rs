//! AF_PACKET sockets for the tests: whole Ethernet frames out of, and into, one
//! interface (std has no API for packet sockets).
#![expect(unsafe_code, reason = "packet sockets have no std API")]

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::Duration,
};

/// `setsockopt(fd, level, name, &value)`.
fn set_option<T>(fd: &OwnedFd, level: i32, name: i32, value: &T, what: &str) {
    let len = libc::socklen_t::try_from(size_of::<T>()).expect("small");
    // SAFETY: the descriptor is open; `value` is a live `T` of `len` bytes,
    // the type the option expects (the callers below pass the right one).
    let rc =
        unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, (&raw const *value).cast(), len) };
    assert_eq!(rc, 0, "{what}: {}", io::Error::last_os_error());
}

/// A frame read from a packet socket.
#[derive(Debug)]
pub struct Received {
    /// Its length (the tag, if any, is not in the bytes).
    pub len: usize,
    /// Sent from this host, not received.
    pub outgoing: bool,
    /// (TPID, TCI) of the VLAN tag the receive path took out of the frame.
    pub vlan: Option<(u16, u16)>,
}

/// An AF_PACKET socket on one interface: sends whole Ethernet frames and,
/// if opened [`receiving`](Self::receiving), reads every frame seen there.
#[derive(Debug)]
pub struct PacketSocket(OwnedFd);

impl PacketSocket {
    /// A socket that only sends, out of interface `ifindex` of the calling
    /// thread's namespace (protocol 0: it receives nothing).
    pub fn sending(ifindex: i32) -> Self {
        Self::open(ifindex, 0)
    }

    /// A socket that also receives every frame on interface `ifindex`, with
    /// its VLAN tag, waiting at most `timeout` for one.
    pub fn receiving(ifindex: i32, timeout: Duration) -> Self {
        let sock = Self::open(ifindex, libc::ETH_P_ALL as u16);
        let on: libc::c_int = 1;
        let aux = "PACKET_AUXDATA";
        set_option(&sock.0, libc::SOL_PACKET, libc::PACKET_AUXDATA, &on, aux);
        let tv = libc::timeval {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).expect("fits"),
            tv_usec: libc::suseconds_t::from(timeout.subsec_micros()),
        };
        set_option(
            &sock.0,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv,
            "SO_RCVTIMEO",
        );
        sock
    }

    fn open(ifindex: i32, protocol: u16) -> Self {
        let proto = protocol.to_be();
        // SAFETY: socket(2) with plain integer arguments.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
        assert!(fd >= 0, "AF_PACKET socket: {}", io::Error::last_os_error());
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let sock = PacketSocket(unsafe { OwnedFd::from_raw_fd(fd) });
        // SAFETY: sockaddr_ll is plain data; all zeros is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = proto;
        addr.sll_ifindex = ifindex;
        let len = libc::socklen_t::try_from(size_of::<libc::sockaddr_ll>()).expect("fits");
        // SAFETY: `addr` is a valid sockaddr_ll of `len` bytes for the call.
        let rc = unsafe {
            libc::bind(
                sock.0.as_raw_fd(),
                (&raw const addr).cast::<libc::sockaddr>(),
                len,
            )
        };
        assert_eq!(rc, 0, "bind AF_PACKET: {}", io::Error::last_os_error());
        sock
    }

    /// Send one frame (destination MAC first, no FCS) as it is; the bytes sent,
    /// or the kernel's error.
    pub fn send(&self, frame: &[u8]) -> io::Result<usize> {
        // SAFETY: the descriptor is open; `frame` is readable for its length.
        let n = unsafe { libc::send(self.0.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    /// Send one frame whole, or panic.
    pub fn send_frame(&self, frame: &[u8]) {
        match self.send(frame) {
            Ok(n) => assert_eq!(n, frame.len(), "a short send on AF_PACKET"),
            Err(e) => panic!("send on AF_PACKET: {e}"),
        }
    }

    /// Read one frame into `buf`; `None` after the timeout.
    pub fn recv(&self, buf: &mut [u8]) -> Option<Received> {
        // SAFETY: all-zero sockaddr_ll, msghdr and the control buffer are valid.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        // u64s: aligned for cmsghdr.
        let mut control = [0u64; 16];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: as above.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&raw mut addr).cast();
        msg.msg_namelen = libc::socklen_t::try_from(size_of_val(&addr)).expect("fits");
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of_val(&control);
        // SAFETY: `msg` points at `addr`, `iov` (over `buf`) and `control`,
        // all live and writable for the call, with their sizes.
        let n = unsafe { libc::recvmsg(self.0.as_raw_fd(), &raw mut msg, 0) };
        let Ok(len) = usize::try_from(n) else {
            let e = io::Error::last_os_error();
            assert!(
                matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ),
                "recvmsg on AF_PACKET: {e}"
            );
            return None;
        };
        assert_eq!(
            msg.msg_flags & libc::MSG_TRUNC,
            0,
            "frame larger than the buffer"
        );
        let mut vlan = None;
        // SAFETY: `msg` was filled in by recvmsg; the CMSG macros walk its
        // control buffer within msg_controllen.
        let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&raw const msg) };
        while !cmsg.is_null() {
            // SAFETY: a non-null cmsg from CMSG_FIRSTHDR/NXTHDR is a valid header.
            let c = unsafe { &*cmsg };
            if c.cmsg_level == libc::SOL_PACKET && c.cmsg_type == libc::PACKET_AUXDATA {
                // SAFETY: PACKET_AUXDATA's data is a tpacket_auxdata, maybe
                // unaligned.
                let aux: libc::tpacket_auxdata =
                    unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast()) };
                if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                    let tpid = if aux.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                        aux.tp_vlan_tpid
                    } else {
                        0x8100
                    };
                    vlan = Some((tpid, aux.tp_vlan_tci));
                }
            }
            // SAFETY: as for CMSG_FIRSTHDR.
            cmsg = unsafe { libc::CMSG_NXTHDR(&raw const msg, cmsg) };
        }
        Some(Received {
            len,
            outgoing: addr.sll_pkttype == libc::PACKET_OUTGOING,
            vlan,
        })
    }
}
