//! The `pcap_record` target: see `xdpstack_fuzz::pcap_record` (fuzz/src/pcap_record.rs) for the input
//! layout and the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xdpstack_fuzz::pcap_record::check(data));
