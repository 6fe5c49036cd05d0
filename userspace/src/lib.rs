//! xdpstack: a kernel-bypass AF_XDP UDP stack and packet capture tool.
//!
//! An XDP program (crate `xdp-ebpf`) steers the chosen UDP traffic into AF_XDP
//! sockets, one per RX queue, and passes everything else to the kernel. A
//! NAPI-style poller per queue hands refcounted, zero-copy views of each frame to
//! the UDP consumer and the capture writer at once, the way the kernel shares one
//! `sk_buff` between a socket and a packet tap.
//!
//! # Layers
//!
//! From the bottom up. A module imports only modules above it in this list
//! (`tests/layers.rs` checks it), so each layer can be read, tested and fuzzed
//! with only the ones before it:
//!
//! | layer | what it is | I/O |
//! |---|---|---|
//! | [`wire`] | UDP/IP parsing and reply building over byte slices | none |
//! | [`filter`] | pcap-filter expressions compiled by libpcap, translated to eBPF | none (libpcap resolves the host names an expression holds) |
//! | [`frame`] | the UMEM frame pool, refcounted views, copy-on-write | none |
//! | [`ring`] | the ring trait (fill, RX, TX, completion), and a fake ring | none |
//! | [`tx`] | the transmit queue and reply requests | none |
//! | [`poller`] | one queue's rounds: refill, receive a budget, dispatch, transmit | none: takes the time |
//! | [`app`] | datagrams routed to handlers by port; the sink and echo apps | none |
//! | [`capture`] | the capture consumer and the pcap/pcapng writer | files |
//! | [`sys`] | all FFI and syscalls: AF_XDP sockets, the XDP loader, interfaces | all |
//! | [`stack`] | configuration, the run loop per queue, supervision, summaries | threads |
//!
//! The library has no user interface: the `xdpstack` binary (package
//! `xdpstack-cli`) parses the command line, prints, and wraps JSON.
//!
//! `unsafe` is denied here and allowed, block by block with a `SAFETY:` comment,
//! only in the modules that touch frame memory and the kernel: [`frame`] (the
//! memory), [`ring`] (its trait is `unsafe`: a ring hands frames back),
//! [`poller`] (which turns ring addresses back into frame handles) and [`sys`];
//! and in one file of [`filter`], the declaration of libpcap's `bpf_image`,
//! which the `pcap` crate links but does not expose. The programs [`filter`]
//! translates are loaded by [`sys`] (`sys::bpf_prog`), which imports the
//! instruction type from it, never the other way.
#![deny(unsafe_code)]

pub mod app;
pub mod capture;
pub mod filter;
#[allow(unsafe_code)]
pub mod frame;
#[allow(unsafe_code)]
pub mod poller;
#[allow(unsafe_code)]
pub mod ring;
pub mod stack;
#[allow(unsafe_code)]
pub mod sys;
pub mod tx;
pub mod wire;

pub use xdp_ebpf::{CaptureCounter, Counter, SteerMode};
