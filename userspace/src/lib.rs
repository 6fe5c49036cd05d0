//! xdpstack: a kernel-bypass AF_XDP UDP stack and packet capture tool.
//!
//! An XDP program (crate `xdp-ebpf`) steers the chosen UDP traffic into AF_XDP
//! sockets, one per RX queue, and passes everything else to the kernel. This library
//! loads and attaches that program ([`loader`]), owns the sockets ([`xsk`]) and runs the
//! receive loop ([`stack`]).
#![deny(unsafe_code)]

pub mod capture;
pub mod cli;
#[allow(unsafe_code)]
pub mod frame;
#[allow(unsafe_code)]
pub mod ifinfo;
#[allow(unsafe_code)]
pub mod loader;
pub mod pcap;
#[allow(unsafe_code)]
pub mod poller;
#[allow(unsafe_code)]
pub mod sim;
pub mod stack;
pub mod tx;
pub mod udp;
#[allow(unsafe_code)]
pub mod xsk;

pub use xdp_ebpf::{Counter, SteerMode};
