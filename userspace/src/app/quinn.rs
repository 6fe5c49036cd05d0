//! quinn's [`AsyncUdpSocket`] on the socket API: a `quinn::Endpoint` (QUIC)
//! over AF_XDP, with quinn's own connection logic, TLS and congestion control
//! untouched.
//!
//! ```no_run
//! # async fn f(socket: xdpstack::app::UdpSocket, server: quinn::ServerConfig) -> std::io::Result<()> {
//! use xdpstack::app::quinn::QuinnSocket;
//! let endpoint = quinn::Endpoint::new_with_abstract_socket(
//!     quinn::EndpointConfig::default(),
//!     Some(server),
//!     QuinnSocket::new(socket),
//!     std::sync::Arc::new(quinn::TokioRuntime),
//! )?;
//! # Ok(()) }
//! ```
//!
//! What quinn gets from the stack, and what it does not:
//! - datagrams are copied once, from the UMEM frame into quinn's buffers
//!   (quinn owns its receive buffers; the frame goes back to the fill ring
//!   when the copy is made);
//! - no GSO or GRO (one datagram a transmit and a receive), no ECN (the stack
//!   sends Not-ECT and reports none: quinn then runs without ECN feedback);
//! - datagrams are never fragmented (IPv4 DF, no IPv6 fragments), so quinn
//!   runs its path MTU discovery; a probe beyond the path MTU is counted
//!   (`too_large`) and lost, which is what the discovery expects;
//! - backpressure is `WouldBlock`, and quinn's poller waits for room; any
//!   other refusal (no route, unresolved next hop) is counted by cause and the
//!   datagram lost, as quinn-udp logs and drops the errors of `sendmsg(2)`.

use std::{
    fmt, io,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use quinn::{
    AsyncUdpSocket, UdpPoller,
    udp::{RecvMeta, Transmit},
};

use super::{Received, UdpSocket};
use crate::tx::TxError;

/// A [`UdpSocket`] as quinn's socket.
pub struct QuinnSocket {
    socket: UdpSocket,
    /// The batch being copied out (quinn polls from one task).
    batch: Mutex<Vec<Received>>,
}

impl fmt::Debug for QuinnSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuinnSocket")
            .field("socket", &self.socket)
            .finish()
    }
}

impl QuinnSocket {
    /// Wrap `socket` for `quinn::Endpoint::new_with_abstract_socket`.
    pub fn new(socket: UdpSocket) -> Arc<Self> {
        Arc::new(Self {
            socket,
            batch: Mutex::new(Vec::new()),
        })
    }
}

/// The error quinn sees for a transmitter that is gone (the stack stopped).
fn disconnected() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the stack has stopped")
}

impl AsyncUdpSocket for QuinnSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(Writable(self))
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        match self.socket.send_to(transmit.contents, transmit.destination) {
            Ok(()) => Ok(()),
            Err(e) if e.is_backpressure() => Err(io::ErrorKind::WouldBlock.into()),
            Err(TxError::Disconnected) => Err(disconnected()),
            Err(e) => {
                // Counted by cause in the queue's transmit summary.
                tracing::debug!(dst = %transmit.destination, error = %e, "QUIC datagram not sent");
                Ok(())
            }
        }
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [io::IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let max = bufs.len().min(meta.len());
        let mut batch = self.batch.lock().unwrap_or_else(|p| p.into_inner());
        match self.socket.poll_recv_batch(cx, &mut batch, max) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(n) => {
                for (i, r) in batch.drain(..).enumerate() {
                    let payload = r.payload();
                    // quinn's buffers hold a whole datagram (its receive
                    // buffers are sized for the largest it accepts).
                    let len = payload.len().min(bufs[i].len());
                    bufs[i][..len].copy_from_slice(&payload[..len]);
                    meta[i] = RecvMeta {
                        addr: r.src(),
                        len,
                        stride: len,
                        ecn: None,
                        dst_ip: Some(r.dst().ip()),
                    };
                }
                Poll::Ready(Ok(n))
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.socket.local_addr())
    }

    fn may_fragment(&self) -> bool {
        false
    }
}

/// Waits for room to send, for one of quinn's tasks.
struct Writable(Arc<QuinnSocket>);

impl fmt::Debug for Writable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Writable")
    }
}

impl UdpPoller for Writable {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0
            .socket
            .poll_writable(cx)
            .map(|r| r.map_err(|_| disconnected()))
    }
}
