//! `cargo xtask mutants [FILE...]`: cargo-mutants over the unit tests of the
//! sans-IO core, to see which bugs they would miss. Not in `cargo xtask test`:
//! each mutant is a rebuild, so a file takes many minutes on two cores.
//!
//! Every viable mutant of these files is caught, or explained in a comment at
//! the mutated code as equivalent (no test can tell it from the original).

use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::{root, step};

/// The core's files: the wire format, the frame pool, the poller and the
/// transmit path.
pub const CORE: &[&str] = &[
    "userspace/src/wire/**/*.rs",
    "userspace/src/frame/**/*.rs",
    "userspace/src/poller/**/*.rs",
    "userspace/src/tx/**/*.rs",
];

fn installed() -> bool {
    Command::new("cargo")
        .args(["mutants", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Run cargo-mutants over `files` (default: [`CORE`]), `shard` as `K/N` to run
/// one part of the mutants. Results land in `target/mutants/` (cargo-mutants'
/// `mutants.out`: caught.txt, missed.txt, unviable.txt, timeout.txt).
pub fn mutants(files: &[String], shard: Option<&str>) -> Result<()> {
    if !installed() {
        step(
            "cargo install cargo-mutants (mutation testing; takes a few minutes)",
            Command::new("cargo").args(["install", "cargo-mutants", "--locked"]),
        )?;
        if !installed() {
            bail!(
                "cargo-mutants was installed but `cargo mutants` does not find it (add ~/.cargo/bin to PATH)"
            );
        }
    }
    let out = root().join("target");
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root())
        .args(["mutants", "--package", "xdpstack", "--no-shuffle"])
        .arg("--output")
        .arg(&out);
    let files: Vec<String> = if files.is_empty() {
        CORE.iter().map(|s| s.to_string()).collect()
    } else {
        files.to_vec()
    };
    for f in &files {
        cmd.args(["--file", f]);
    }
    // Test files are where the tests are, not what they test.
    for exclude in ["**/tests.rs", "**/*_tests.rs", "**/oracle.rs"] {
        cmd.args(["--exclude", exclude]);
    }
    // Debug output is for people reading logs; no test reads it.
    cmd.args(["--exclude-re", "impl .*Debug"]);
    if let Some(shard) = shard {
        cmd.args(["--shard", shard]);
    }
    // The library's unit tests only: the core is tested without root or a NIC.
    cmd.args(["--", "--lib"]);
    let status = cmd.status().context("could not start cargo mutants")?;
    eprintln!(
        "==> results: {} (caught.txt, missed.txt, unviable.txt, timeout.txt)",
        out.join("mutants.out").display()
    );
    if !status.success() {
        bail!("cargo mutants: some mutants were not caught ({status}); see missed.txt");
    }
    Ok(())
}
