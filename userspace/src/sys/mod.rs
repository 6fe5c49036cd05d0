//! Everything that talks to the kernel: AF_XDP sockets ([`xsk`], through
//! xsk-rs), the XDP program ([`loader`], through aya), raw eBPF programs such as
//! the translated capture filters ([`bpf_prog`], through libbpf), interface
//! facts ([`ifinfo`], and what netlink says of them: [`netlink`]), process
//! facts ([`process`]), the confinement after setup: privileges dropped and
//! the seccomp allow-list ([`confine`]), the run loop's [`doorbell`], and the
//! send path's next hops from the kernel's routing and neighbour tables
//! ([`route`], through rtnetlink). The layers below this one make
//! no syscall; the run loop (`stack`) reaches the kernel through the [`Kernel`]
//! trait, which the socket implements and which the fake ring
//! ([`crate::ring::sim::SimRings`]) answers in tests.

use std::io;

use crate::ring::{KickOutcome, sim::SimRings};

pub mod bpf_prog;
pub mod confine;
pub mod doorbell;
pub mod ifinfo;
pub mod loader;
pub mod netlink;
pub mod process;
pub mod route;
pub mod xsk;

pub use xsk::XskStats;

/// The syscalls the run loop makes on one AF_XDP socket, beside the ring
/// operations ([`crate::ring::Rings`]).
pub trait Kernel {
    /// Wake the kernel to look at the fill ring, or run the driver's NAPI poll
    /// with busy polling (a non-blocking `recvfrom(2)`).
    fn wakeup(&mut self) -> io::Result<()>;
    /// Sleep until the RX ring has descriptors or `timeout_ms` passes; true when
    /// readable (`poll(2)`).
    fn wait_rx(&mut self, timeout_ms: i32) -> io::Result<bool>;
    /// Ask the kernel to transmit what is on the TX ring (a non-blocking
    /// `sendto(2)`), and say what it did. Errors are those that are neither
    /// "busy" nor "dropped" (the device is gone, the socket is broken).
    fn tx_kick(&mut self) -> io::Result<KickOutcome>;
    /// The kernel's XDP_STATISTICS for the socket.
    fn statistics(&self) -> io::Result<XskStats>;
    /// The NAPI id the socket's packets came through (`SO_INCOMING_NAPI_ID`):
    /// what busy polling runs. 0 before the first packet, or when the driver's
    /// rings carry none (veth's XDP rings on the kernels we know).
    fn napi_id(&self) -> io::Result<u32>;
}

/// The fake ring answers like a socket whose kernel never fails.
impl Kernel for SimRings {
    fn wakeup(&mut self) -> io::Result<()> {
        self.wake();
        Ok(())
    }

    fn wait_rx(&mut self, _timeout_ms: i32) -> io::Result<bool> {
        Ok(self.readable())
    }

    fn tx_kick(&mut self) -> io::Result<KickOutcome> {
        Ok(self.kick())
    }

    fn napi_id(&self) -> io::Result<u32> {
        Ok(self.napi_id())
    }

    fn statistics(&self) -> io::Result<XskStats> {
        Ok(XskStats {
            rx_ring_full: self.rx_full(),
            rx_fill_ring_empty_descs: self.fill_empty(),
            ..XskStats::default()
        })
    }
}
