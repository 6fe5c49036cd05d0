//! The stack as a network for sockets: bind ports, start the stack on a thread
//! of its own, use the [`UdpSocket`]s from any thread (blocking or async), and
//! stop it for its [`Report`].
//!
//! ```no_run
//! use std::time::Duration;
//! use xdpstack::stack::{StackOptions, net::Network};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let opts = StackOptions { iface: "eth0".into(), ..StackOptions::default() };
//! let mut net = Network::open(opts)?;
//! let socket = net.bind(9000)?;
//! let running = net.start()?;
//! let mut batch = Vec::new();
//! while socket.recv_batch_timeout(&mut batch, 64, Duration::from_secs(1)) > 0 {
//!     for d in batch.drain(..) {
//!         // Any destination: routed and resolved through the kernel's tables.
//!         let _ = socket.send_to(d.payload(), d.src());
//!     }
//! }
//! let report = running.stop()?;
//! println!("{} datagrams", report.sockets[0].received);
//! # Ok(())
//! # }
//! ```

use std::{
    net::{Ipv6Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::Duration,
};

use super::{
    Interval, ReadyHook, StackError, StackOptions,
    service::{AppKind, Report, ServeError, ServiceOptions, serve_with},
};
use crate::{
    app::{UdpSocket, socket::SOCKET_QUEUE},
    sys::{ifinfo, route::Router},
    tx::route::Resolve,
};

/// How long [`Network::start`] waits for the stack to attach.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The live statistics' callback (see [`Network::on_interval`]).
type OnInterval = Box<dyn FnMut(Interval) + Send>;

/// The stack on one interface, with the ports bound so far (see the [module
/// docs](self)).
pub struct Network {
    opts: StackOptions,
    service: ServiceOptions,
    resolver: Arc<dyn Resolve>,
    on_interval: Option<OnInterval>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("opts", &self.opts)
            .field("service", &self.service)
            .field("resolver", &self.resolver)
            .finish_non_exhaustive()
    }
}

impl Network {
    /// The stack on `opts.iface`, sending where the kernel's routing and
    /// neighbour tables say (followed through netlink, in the calling
    /// thread's network namespace). No app runs beside the sockets unless
    /// [`Network::with_service`] asks for one.
    pub fn open(opts: StackOptions) -> Result<Self, StackError> {
        super::check_interface(&opts)?;
        let ifindex = ifinfo::if_index(&opts.iface)
            .ok_or_else(|| StackError::UnknownInterface(opts.iface.clone()))?;
        let router = Router::open(ifindex).map_err(|e| StackError::Route(e.to_string()))?;
        Ok(Self::with_resolver(opts, router))
    }

    /// [`Network::open`] with another resolver (a fixed table, say).
    pub fn with_resolver(opts: StackOptions, resolver: Arc<dyn Resolve>) -> Self {
        Self {
            opts,
            service: ServiceOptions {
                app: AppKind::None,
                ..ServiceOptions::default()
            },
            resolver,
            on_interval: None,
        }
    }

    /// Every `every`, call `f` with the live statistics (per queue: packets,
    /// drops, frames, the transmit side's `send_to` and refusals by cause, the
    /// sockets' `socket_received` and `socket_full`), on the stack's thread.
    pub fn on_interval(
        mut self,
        every: Duration,
        f: impl FnMut(Interval) + Send + 'static,
    ) -> Self {
        self.opts.stats_interval = Some(every);
        self.on_interval = Some(Box::new(f));
        self
    }

    /// Run `service` too (a capture of the sockets' traffic, both ways; an
    /// app on the other `opts.ports`). Its sockets are replaced by those bound
    /// here.
    pub fn with_service(mut self, service: ServiceOptions) -> Self {
        let sockets = std::mem::take(&mut self.service.sockets);
        self.service = ServiceOptions { sockets, ..service };
        self
    }

    /// Bind `port` (every address of the interface, both families) with a
    /// receive queue of [`SOCKET_QUEUE`] datagrams.
    pub fn bind(&mut self, port: u16) -> Result<UdpSocket, StackError> {
        self.bind_with_capacity(port, SOCKET_QUEUE)
    }

    /// [`Network::bind`] with a receive queue of `capacity` datagrams (at most
    /// half a queue's frames: each holds one).
    pub fn bind_with_capacity(
        &mut self,
        port: u16,
        capacity: usize,
    ) -> Result<UdpSocket, StackError> {
        if port == 0 {
            return Err(StackError::Bind(
                "port 0: name the port to bind (there is no ephemeral port allocation)".into(),
            ));
        }
        if self.service.sockets.iter().any(|s| s.port() == port) {
            return Err(StackError::Bind(format!("port {port} is bound already")));
        }
        let capacity = capacity.min((self.opts.xsk.frame_count / 2).max(1) as usize);
        let local = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
        let socket = UdpSocket::new(local, capacity, self.resolver.clone());
        self.opts.ports.push(port);
        self.service.sockets.push(socket.clone());
        Ok(socket)
    }

    /// Start the stack on a thread of its own; returns once it is attached
    /// (or with the error that kept it from attaching: nothing is left
    /// attached then).
    pub fn start(mut self) -> Result<Running, ServeError> {
        let stop = Arc::new(AtomicBool::new(false));
        let (attached_tx, attached) = mpsc::channel();
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("xdpstack".into())
                .spawn(move || {
                    let mut quiet = |_: Interval| {};
                    let on_interval: &mut dyn FnMut(Interval) = match self.on_interval.as_mut() {
                        Some(f) => f,
                        None => &mut quiet,
                    };
                    // Told once attached, before the run's threads start.
                    let ready: ReadyHook = Box::new(move || {
                        // Nobody may wait any more: that is fine.
                        let _ = attached_tx.send(());
                        Ok(())
                    });
                    serve_with(&self.opts, &self.service, stop, Some(ready), on_interval)
                })
                .map_err(|e| StackError::Bind(format!("starting the stack's thread: {e}")))?
        };
        match attached.recv_timeout(START_TIMEOUT) {
            Ok(()) => Ok(Running {
                stop,
                thread: Some(thread),
            }),
            // It ended before attaching: its error says why.
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                match thread.join().expect("the stack's thread panicked") {
                    Err(e) => Err(e),
                    Ok(_) => {
                        Err(StackError::Bind("the stack stopped before it attached".into()).into())
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                stop.store(true, Ordering::Relaxed);
                let _ = thread.join();
                Err(StackError::Bind(format!(
                    "the stack did not attach within {} s",
                    START_TIMEOUT.as_secs()
                ))
                .into())
            }
        }
    }
}

/// A started [`Network`]. Dropping it stops the stack (and waits for it).
#[derive(Debug)]
pub struct Running {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<Report, ServeError>>>,
}

impl Running {
    /// Stop the stack and wait for its report (the sockets send and receive
    /// nothing more).
    pub fn stop(mut self) -> Result<Report, ServeError> {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().expect("joined only here and in Drop");
        thread.join().expect("the stack's thread panicked")
    }

    /// The flag that stops the stack (for a signal handler, say).
    pub fn stopper(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// True when the stack has stopped by itself (`--duration`, `-c`, a lost
    /// interface); [`Running::stop`] then returns at once.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
