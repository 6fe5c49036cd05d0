//! Builds the benchmark's XDP programs (`xdpstack-bench-ebpf`: bin
//! `xdpstack-gen-xdp`, the generator, and bin `xdpstack-drop-xdp`, the drop
//! ceiling) for `bpfel-unknown-none` with the nightly toolchain and places the
//! objects in `OUT_DIR`, where `src/loader.rs` and `src/ceiling.rs` embed them. The
//! same way `userspace/build.rs` builds the product's steering program; `cargo
//! xtask setup` installs what this needs.
use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, bail};

fn main() -> anyhow::Result<()> {
    // Nothing loads the object under Miri, and the nested cargo build cannot run
    // through Miri's wrapper: embed an empty one, as userspace/build.rs does.
    // (cargo-fuzz's `--cfg fuzzing` needs no such case: no fuzz target depends on
    // this crate.)
    if std::env::var_os("CARGO_CFG_MIRI").is_some() {
        let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
        for object in ["xdpstack-gen-xdp", "xdpstack-drop-xdp"] {
            std::fs::write(out_dir.join(object), [])?;
        }
        return Ok(());
    }
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let ebpf_dir = manifest_dir.join("ebpf");
    // Fail early and clearly instead of deep inside the nested cargo build.
    if Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_err()
    {
        bail!(
            "bpf-linker not found: it links the benchmark's XDP programs. Run \
             `cargo xtask setup` (or `cargo xtask test`/`run`/`bench`, which call it) to \
             install it"
        );
    }
    // aya-build relays everything the nested cargo prints as `cargo:warning`; keep
    // its progress lines quiet so that only real diagnostics show.
    // SAFETY: build scripts are single-threaded; nothing reads the environment
    // concurrently.
    unsafe { std::env::set_var("CARGO_TERM_QUIET", "true") };
    let root_dir = ebpf_dir.to_str().context("non-UTF-8 path")?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "xdpstack-bench-ebpf",
            root_dir,
            no_default_features: false,
            features: &["ebpf"],
        }],
        aya_build::Toolchain::default(),
    )
    .context(
        "building the benchmark's XDP programs failed; `cargo xtask setup` \
         installs the nightly toolchain's rust-src and bpf-linker",
    )
}
