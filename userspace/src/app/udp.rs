//! The datagram API: handlers registered per destination port set, fed by one
//! [`UdpConsumer`] per queue.
//!
//! A [`UdpConsumer`] is a frame [`Consumer`], so it runs where the data path's
//! consumers run: inline on the poller's thread (run to completion, the fastest)
//! or on a thread of its own behind a bounded queue (`stack::ConsumerSpec`). It
//! parses each frame ([`parse_view`]), counts what it rejects per reason, and
//! hands each datagram to the handler of its destination port with the queue's
//! [`Transmitter`] for replies.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use serde::Serialize;

use super::{Datagram, PortCount, parse_view};
use crate::{
    frame::FrameView,
    poller::{Consumer, LiveCounters},
    tx::Transmitter,
    wire::{Reject, RejectCounters},
};

/// Receives the datagrams of a port set.
///
/// Closures `FnMut(&Datagram, &Transmitter)` are handlers. The datagram borrows
/// the frame for the call; clone `datagram.view` to keep it longer.
pub trait Handler: Send {
    /// One datagram; `tx` sends replies on the queue it arrived on.
    fn datagram(&mut self, datagram: &Datagram<'_>, tx: &Transmitter);
    /// The end of a batch of frames (a chance to flush buffered work).
    fn flush(&mut self) {}
}

impl<F: FnMut(&Datagram<'_>, &Transmitter) + Send> Handler for F {
    fn datagram(&mut self, datagram: &Datagram<'_>, tx: &Transmitter) {
        self(datagram, tx)
    }
}

/// Counters of one [`UdpConsumer`], readable from any thread while it runs.
#[derive(Debug, Default)]
pub struct UdpStats {
    /// Datagrams handed to a handler.
    pub datagrams: AtomicU64,
    /// Their payload bytes.
    pub payload_bytes: AtomicU64,
    /// Datagrams to a port no handler is registered for.
    pub unmatched: AtomicU64,
    /// Frames rejected by the parser, indexed like [`Reject::ALL`].
    pub rejected: [AtomicU64; Reject::ALL.len()],
}

/// The counters as plain numbers, summed over queues with `+=`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UdpSummary {
    /// See [`UdpStats::datagrams`].
    pub datagrams: u64,
    /// See [`UdpStats::payload_bytes`].
    pub payload_bytes: u64,
    /// See [`UdpStats::unmatched`].
    pub unmatched: u64,
    /// Frames rejected, per reason.
    pub rejected: RejectCounters,
    /// Per destination port (filled by the [`super::Sink`] app).
    pub ports: BTreeMap<u16, PortCount>,
}

impl UdpStats {
    /// A snapshot.
    pub fn summary(&self) -> UdpSummary {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut rejected = RejectCounters::default();
        for reason in Reject::ALL {
            rejected.add(reason, get(&self.rejected[reason as usize]));
        }
        UdpSummary {
            datagrams: get(&self.datagrams),
            payload_bytes: get(&self.payload_bytes),
            unmatched: get(&self.unmatched),
            rejected,
            ports: BTreeMap::new(),
        }
    }
}

/// In the live statistics: datagrams delivered, to no handler, and each reason
/// frames were rejected for (the ones seen so far).
impl LiveCounters for UdpStats {
    fn counters(&self) -> Vec<(&'static str, u64)> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = vec![
            ("udp_datagrams", get(&self.datagrams)),
            ("udp_unmatched", get(&self.unmatched)),
        ];
        out.extend(
            Reject::ALL
                .into_iter()
                .map(|r| (r.name(), get(&self.rejected[r as usize])))
                .filter(|(_, n)| *n > 0),
        );
        out
    }
}

impl std::ops::AddAssign<&UdpSummary> for UdpSummary {
    fn add_assign(&mut self, o: &UdpSummary) {
        self.datagrams += o.datagrams;
        self.payload_bytes += o.payload_bytes;
        self.unmatched += o.unmatched;
        self.rejected += &o.rejected;
        for (port, count) in &o.ports {
            let mine = self.ports.entry(*port).or_default();
            mine.datagrams += count.datagrams;
            mine.bytes += count.bytes;
        }
    }
}

/// Single writer (the consumer): a load and a store, no locked add.
#[inline]
fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

/// No handler for this port.
const NO_ROUTE: u8 = 0;

/// Parses frames into datagrams and dispatches them to handlers by destination
/// port. Build one per queue (it is a [`Consumer`]).
///
/// ```no_run
/// # fn f(tx: xdpstack::tx::Transmitter) {
/// use xdpstack::{app::{Datagram, UdpConsumer}, tx::Transmitter};
/// let udp = UdpConsumer::new(tx).route(9000..=9000, |d: &Datagram<'_>, tx: &Transmitter| {
///     let _ = d.echo(tx);
/// });
/// # }
/// ```
pub struct UdpConsumer {
    /// Per destination port, the handler's index + 1, or [`NO_ROUTE`].
    routes: Box<[u8]>,
    handlers: Vec<Box<dyn Handler>>,
    tx: Transmitter,
    stats: Arc<UdpStats>,
    /// Multi-buffer packets are parsed from a copy here (see [`parse_view`]).
    scratch: Vec<u8>,
}

impl std::fmt::Debug for UdpConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpConsumer")
            .field("handlers", &self.handlers.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl UdpConsumer {
    /// A consumer with no handler yet, replying through `tx`.
    pub fn new(tx: Transmitter) -> Self {
        Self {
            routes: vec![NO_ROUTE; 1 << 16].into_boxed_slice(),
            handlers: Vec::new(),
            tx,
            stats: Arc::new(UdpStats::default()),
            scratch: Vec::new(),
        }
    }

    /// Send the datagrams to `ports` to `handler` (a later route for the same port
    /// replaces an earlier one).
    ///
    /// # Panics
    /// Beyond 255 handlers.
    pub fn route(
        mut self,
        ports: impl IntoIterator<Item = u16>,
        handler: impl Handler + 'static,
    ) -> Self {
        self.handlers.push(Box::new(handler));
        let id = u8::try_from(self.handlers.len()).expect("at most 255 UDP handlers");
        for port in ports {
            self.routes[usize::from(port)] = id;
        }
        self
    }

    /// The consumer's counters (shared; read them from any thread).
    pub fn stats(&self) -> Arc<UdpStats> {
        self.stats.clone()
    }
}

impl Consumer for UdpConsumer {
    #[inline]
    fn consume(&mut self, view: &FrameView) {
        let stats = &*self.stats;
        match parse_view(view, &mut self.scratch) {
            Ok(datagram) => {
                let route = self.routes[usize::from(datagram.dst.port())];
                if route == NO_ROUTE {
                    bump(&stats.unmatched, 1);
                    return;
                }
                bump(&stats.datagrams, 1);
                bump(&stats.payload_bytes, datagram.payload.len() as u64);
                self.handlers[usize::from(route - 1)].datagram(&datagram, &self.tx);
            }
            Err(reason) => bump(&stats.rejected[reason as usize], 1),
        }
    }

    fn flush(&mut self) {
        for h in &mut self.handlers {
            h.flush();
        }
    }
}
