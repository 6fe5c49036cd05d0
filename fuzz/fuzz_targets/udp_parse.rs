//! The `udp_parse` target: see `xdpstack_fuzz::udp_parse` (fuzz/src/udp_parse.rs) for the input
//! layout and the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xdpstack_fuzz::udp_parse::check(data));
