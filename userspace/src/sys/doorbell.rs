//! The socket's doorbell: an eventfd the run loop polls beside its AF_XDP
//! socket, so that a thread queuing a datagram wakes a poller asleep in
//! poll(2) (see [`crate::ring::Doorbell`]).

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
};

use crate::ring::Doorbell;

/// A non-blocking eventfd.
#[derive(Debug)]
pub struct EventFd(OwnedFd);

impl EventFd {
    /// A new eventfd (non-blocking, close-on-exec).
    pub fn new() -> io::Result<Self> {
        // SAFETY: eventfd(2) takes no pointers.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and is owned by nobody else.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Reset it after it woke a poll(2).
    pub fn clear(&self) {
        let mut value = 0u64;
        // SAFETY: `value` is valid for 8 bytes of writes. EAGAIN (not rung) is
        // fine: nothing to clear.
        let _ = unsafe { libc::read(self.0.as_raw_fd(), (&raw mut value).cast(), 8) };
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl Doorbell for EventFd {
    fn ring(&self) {
        let one = 1u64;
        // SAFETY: `one` is valid for 8 bytes of reads. EAGAIN means the counter
        // is already non-zero: the poller will wake anyway.
        let _ = unsafe { libc::write(self.0.as_raw_fd(), (&raw const one).cast(), 8) };
    }
}
