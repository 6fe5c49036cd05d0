//! Builds the XDP program (`xdp-ebpf`, bin `xdpstack-xdp`) for `bpfel-unknown-none`
//! with the nightly toolchain and places the object in `OUT_DIR`, where
//! `src/loader.rs` embeds it. `cargo xtask setup` installs what this needs.
use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, bail};

fn main() -> anyhow::Result<()> {
    // Nothing loads the object under Miri (which runs the frame pool's tests) or in
    // cargo-fuzz builds (`--cfg fuzzing`: the targets in fuzz/ parse frames and
    // write captures, they attach nothing): embed an empty one. The nested cargo
    // build cannot run through Miri's wrapper, and would only add a build of the
    // XDP program (and a need for bpf-linker) to every fuzz build.
    if std::env::var_os("CARGO_CFG_MIRI").is_some()
        || std::env::var_os("CARGO_CFG_FUZZING").is_some()
    {
        let out = PathBuf::from(std::env::var("OUT_DIR")?).join("xdpstack-xdp");
        std::fs::write(out, [])?;
        return Ok(());
    }
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let ebpf_dir = manifest_dir
        .parent()
        .context("userspace/ has no parent")?
        .join("xdp-ebpf");
    // Fail early and clearly instead of deep inside the nested cargo build.
    if Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_err()
    {
        bail!(
            "bpf-linker not found: it links the XDP program. Run `cargo xtask setup` \
             (or `cargo xtask test`/`run`, which call it) to install it"
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
            name: "xdp-ebpf",
            root_dir,
            no_default_features: false,
            features: &["ebpf"],
        }],
        aya_build::Toolchain::default(),
    )
    .context("building the XDP program failed; `cargo xtask setup` installs the nightly toolchain's rust-src and bpf-linker")
}
