//! The datagram API: handlers registered per destination port set, fed by one
//! [`UdpConsumer`] per queue, and the built-in apps of `--app`.
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
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use serde::Serialize;

use super::{Datagram, Reject, RejectCounters, parse_view};
use crate::{frame::FrameView, poller::Consumer, tx::Transmitter};

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
    /// Per destination port (filled by the [`Sink`] app).
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
impl crate::stack::LiveCounters for UdpStats {
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
/// use xdpstack::udp::{Datagram, UdpConsumer};
/// let udp = UdpConsumer::new(tx).route(9000..=9000, |d: &Datagram<'_>, tx: &xdpstack::tx::Transmitter| {
///     let _ = tx.echo(d);
/// });
/// # }
/// ```
pub struct UdpConsumer {
    /// Per destination port, the handler's index + 1, or [`NO_ROUTE`].
    routes: Box<[u8]>,
    handlers: Vec<Box<dyn Handler>>,
    tx: Transmitter,
    stats: Arc<UdpStats>,
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
        match parse_view(view) {
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
/// TX ring (see [`Transmitter::echo`]); failures are counted in the queue's TX
/// statistics.
#[derive(Clone, Copy, Debug, Default)]
pub struct Echo;

impl Handler for Echo {
    #[inline]
    fn datagram(&mut self, datagram: &Datagram<'_>, tx: &Transmitter) {
        // Counted in TxStats (queue_full, no_frame, reply_errors).
        let _ = tx.echo(datagram);
    }
}
