//! The `steer` target: see `xdpstack_fuzz::steer` (fuzz/src/steer.rs) for the input
//! layout and the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xdpstack_fuzz::steer::check(data));
