//! The ABI shared by xdpstack's XDP program and its user space, and the steering
//! logic of the XDP program.
//!
//! This crate is compiled twice: for `bpfel-unknown-none` as the library of the XDP
//! program (`src/main.rs`, feature `ebpf`), and for the host, where user space reads
//! the same constants and `#[repr(C)]` types (feature `user` adds `aya::Pod`) and the
//! tests and fuzz targets run the very steering code the kernel runs.
#![no_std]
#![deny(unsafe_code)]

pub mod abi;
#[cfg(any(test, feature = "corpus"))]
pub mod corpus;
pub mod steer;

pub use abi::*;
pub use steer::{PacketBytes, Verdict, classify};
