//! The built-in apps of `--app`: [`Sink`] counts, [`Echo`] answers.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use serde::Serialize;

use super::{Datagram, Handler};
use crate::tx::Transmitter;

/// Datagrams and payload bytes to one port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PortCount {
    /// Datagrams.
    pub datagrams: u64,
    /// UDP payload bytes.
    pub bytes: u64,
}

/// Per-port counts shared by the [`Sink`]s of all queues.
pub type PortCounts = Arc<Mutex<BTreeMap<u16, PortCount>>>;

/// `--app sink`: counts datagrams and payload bytes per destination port and
/// drops them (the rxdrop benchmark, parsed). Counts are kept locally and added to
/// the shared map once per batch, so queues do not contend per datagram.
#[derive(Debug)]
pub struct Sink {
    local: Vec<(u16, PortCount)>,
    shared: PortCounts,
}

impl Sink {
    /// A sink adding into `shared`.
    pub fn new(shared: PortCounts) -> Self {
        Self {
            local: Vec::new(),
            shared,
        }
    }
}

impl Handler for Sink {
    #[inline]
    fn datagram(&mut self, datagram: &Datagram<'_>, _tx: &Transmitter) {
        let port = datagram.dst.port();
        // Usually one or a few ports: a linear scan beats hashing.
        let slot = match self.local.iter().position(|(p, _)| *p == port) {
            Some(i) => &mut self.local[i].1,
            None => {
                self.local.push((port, PortCount::default()));
                &mut self.local.last_mut().expect("just pushed").1
            }
        };
        slot.datagrams += 1;
        slot.bytes += datagram.payload.len() as u64;
    }

    fn flush(&mut self) {
        if self.local.is_empty() {
            return;
        }
        let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        for (port, count) in self.local.drain(..) {
            let total = shared.entry(port).or_default();
            total.datagrams += count.datagrams;
            total.bytes += count.bytes;
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.flush();
    }
}

/// `--app echo`: answers every datagram with its own payload through the AF_XDP
/// TX ring (see [`Datagram::echo`]); failures are counted in the queue's TX
/// statistics.
#[derive(Clone, Copy, Debug, Default)]
pub struct Echo;

impl Handler for Echo {
    #[inline]
    fn datagram(&mut self, datagram: &Datagram<'_>, tx: &Transmitter) {
        // Counted in TxStats (queue_full, no_frame, reply_errors).
        let _ = datagram.echo(tx);
    }
}
