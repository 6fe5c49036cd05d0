//! Writes the seed corpora of the fuzz targets: every frame of the XDP program's
//! test corpus (`xdp_ebpf::corpus::cases()`), in each target's input layout, into
//! `CORPUS/<target>/seed-NNNN-<case name>` (`CORPUS`: the first argument, by default
//! fuzz/corpus). Earlier `seed-*` files are removed first; what libFuzzer added to
//! the directories stays.
//!
//! `cargo xtask fuzz` runs it; by hand:
//! `RUSTFLAGS='--cfg fuzzing' cargo +nightly run --manifest-path fuzz/Cargo.toml --bin seed`
//! (`--cfg fuzzing` skips building the XDP object, which nothing here loads).

use std::{fs, io, path::PathBuf};

use xdp_ebpf::corpus::{self, STEERED_PORT};
use xdpstack_fuzz::{pcap_record, steer};

/// 2023-11-14T22:13:20Z: a timestamp of the present, below 2^32 s.
const BASE_NS: u64 = 1_700_000_000_000_000_000;

fn main() -> io::Result<()> {
    let dir = std::env::args_os().nth(1).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus"),
        PathBuf::from,
    );
    let targets = ["udp_parse", "steer", "pcap_record"];
    for target in targets {
        let d = dir.join(target);
        fs::create_dir_all(&d)?;
        for entry in fs::read_dir(&d)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with("seed-") {
                fs::remove_file(entry.path())?;
            }
        }
    }
    let cases = corpus::cases();
    for (i, case) in cases.iter().enumerate() {
        let name: String = case
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let file = format!("seed-{i:04}-{name}");
        let frame = &case.frame[..];
        fs::write(dir.join("udp_parse").join(&file), frame)?;
        // The mode and port set the corpus's expectations assume.
        let steer = steer::Input {
            all: false,
            ports: vec![STEERED_PORT],
            frame,
        };
        fs::write(dir.join("steer").join(&file), steer.encode())?;
        // Formats, snapshot length ranges, -U and queues vary with the index.
        let i8 = i as u8;
        let pcap = pcap_record::Input {
            flags: i8 & 0x0f,
            snaplen: (i as u32).wrapping_mul(2_654_435_761),
            open_queues: (0..i8 % 3).collect(),
            extra_stats: (i % 5 == 0).then_some(i8 % 7),
            records: vec![pcap_record::Record {
                ts: BASE_NS + i as u64 * 1_000_001,
                queue: i8 % 5,
                data: case.frame.clone(),
            }],
        };
        fs::write(dir.join("pcap_record").join(&file), pcap.encode())?;
    }
    println!(
        "seed: {} frames of the XDP program's corpus into {}/{{{}}}",
        cases.len(),
        dir.display(),
        targets.join(",")
    );
    Ok(())
}
