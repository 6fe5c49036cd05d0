//! The limits of the generator's frames and batches: Ethernet's, the template's
//! and the kernel's.

/// The smallest UDP payload: 18 bytes make a 60-byte frame (64 on the wire with
/// the FCS), the Ethernet minimum, so no frame needs padding.
pub const MIN_PAYLOAD: usize = 18;
/// The largest UDP payload in a 1500-byte IPv4 packet (1514-byte frame).
pub const MAX_PAYLOAD: usize = 1472;
/// Ethernet, IPv4 (no options) and UDP headers.
pub const HEADERS_LEN: usize = 14 + 20 + 8;
/// The kernel's limit on frames per live-frames batch (`TEST_XDP_MAX_BATCH`).
pub const MAX_BATCH: u32 = 256;
/// Frames per batch by default: NAPI's weight, a quarter of a veth's 256-entry
/// ring, so one batch never fills the peer's ring on its own.
pub const DEFAULT_BATCH: u32 = 64;
/// Frames the generator sends first to check that the interface takes them.
pub const PROBE_FRAMES: u32 = 64;
