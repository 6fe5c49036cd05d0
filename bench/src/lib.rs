//! xdpstack's benchmark tooling, kept out of the product package.
//!
//! - [`trafficgen`]: `xdpstack-gen`, the UDP traffic generator of the benchmarks:
//!   an XDP program (crate `xdpstack-bench-ebpf`) run through `BPF_PROG_TEST_RUN`
//!   with live frames, and the interface's own counters to say what was sent.
//! - [`loader`]: that program, embedded and loaded with aya; it is never attached.
//! - [`ceiling`]: the in-kernel ceiling, an XDP program that drops every frame,
//!   attached in driver mode to the receiving interface for one run.
//! - [`sys`]: the few syscalls the tooling needs that the `xdpstack` library does
//!   not offer (CPU time, CPU affinity, interface addresses).
//!
//! Binaries: `xdpstack-gen` (the generator), `xdpstack-kernel-rx` (the
//! kernel-socket recvmmsg baseline) and `xdpstack-xdp-drop` (holds the drop
//! ceiling attached until SIGINT/SIGTERM). Interface facts shared with the product (MTU,
//! interface index) come from the `xdpstack` library.
#![deny(unsafe_code)]

pub mod ceiling;
pub mod loader;
#[allow(unsafe_code)]
pub mod sys;
pub mod trafficgen;
