//! `cargo xtask fuzz`: the cargo-fuzz targets in fuzz/ (see fuzz/src/lib.rs for
//! what each one checks). Builds them once (libFuzzer, AddressSanitizer, debug
//! assertions and so overflow checks on), writes the seed corpora from the XDP
//! program's test corpus, runs each target for a fixed time, and fails with the
//! input that crashed and how to reproduce it.
//!
//! `cargo xtask test` runs every target for [`SHORT_SECONDS`]; the longer run is
//! `cargo xtask fuzz` ([`LONG_SECONDS`] each by default, `--seconds N` for more).

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Instant, SystemTime},
};

use anyhow::{Context as _, Result, bail};

use crate::{cargo_nightly, root, step};

/// The fuzz targets (`[[bin]]`s of fuzz/Cargo.toml) and what they exercise.
pub const TARGETS: [(&str, &str); 3] = [
    ("udp_parse", "the UDP parser (xdpstack::wire::parse)"),
    (
        "steer",
        "the XDP program's steering (xdp_ebpf::classify, built for the host)",
    ),
    (
        "pcap_record",
        "the capture writer's pcap and pcapng records, read back with pcap-file",
    ),
];

/// Seconds per target in `cargo xtask test`.
pub const SHORT_SECONDS: u64 = 20;
/// Seconds per target of `cargo xtask fuzz` without `--seconds`.
pub const LONG_SECONDS: u64 = 60;

/// cargo-fuzz options for every build and run: debug assertions (overflow checks,
/// `debug_assert!`) on top of the default AddressSanitizer. Runs must pass the
/// same options as the build, or cargo rebuilds.
const BUILD_OPTIONS: [&str; 1] = ["--debug-assertions"];

/// libFuzzer's limit for one input; a hang becomes a `timeout-*` artifact.
const INPUT_TIMEOUT_S: u64 = 10;

/// Nightly cargo for cargo-fuzz, always building into fuzz/target (where the
/// seed writer is looked for), whatever target directory the caller set for the
/// main workspace.
fn cargo_fuzz() -> Command {
    let mut cmd = cargo_nightly();
    cmd.arg("fuzz")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR");
    cmd
}

/// The short run of `cargo xtask test`.
pub fn short() -> Result<()> {
    eprintln!("==> fuzz: every target for {SHORT_SECONDS} s (the longer run: cargo xtask fuzz)");
    fuzz(SHORT_SECONDS, &[])
}

/// Runs `targets` (all when empty) for `seconds` each.
pub fn fuzz(seconds: u64, targets: &[String]) -> Result<()> {
    let names: Vec<&str> = TARGETS.iter().map(|(name, _)| *name).collect();
    for t in targets {
        if !names.contains(&t.as_str()) {
            bail!("no fuzz target {t}; the targets are {}", names.join(", "));
        }
    }
    let chosen: Vec<&str> = if targets.is_empty() {
        names.clone()
    } else {
        names
            .iter()
            .copied()
            .filter(|n| targets.iter().any(|t| t == n))
            .collect()
    };
    let dir = root().join("fuzz");
    let started = Instant::now();
    // One build of every binary of the fuzz crate, the seed writer included: it
    // shares the targets' dependencies and flags, so it costs no second build.
    step(
        "fuzz: build the targets (cargo fuzz build: libFuzzer, ASan, debug assertions)",
        cargo_fuzz().arg("build").args(BUILD_OPTIONS),
    )?;
    let bin_dir = dir.join("target").join(host_triple()?).join("release");
    step(
        "fuzz: seed corpora from the XDP program's test corpus",
        Command::new(bin_dir.join("seed")).arg(dir.join("corpus")),
    )?;
    eprintln!(
        "==> fuzz: built and seeded in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    let logs = dir.join("target").join("xtask-logs");
    fs::create_dir_all(&logs).with_context(|| format!("create {}", logs.display()))?;
    let mut failures = Vec::new();
    for target in chosen {
        let what = TARGETS
            .iter()
            .find(|(n, _)| *n == target)
            .map_or("", |(_, w)| *w);
        let log = logs.join(format!("{target}.log"));
        eprintln!(
            "==> fuzz {target} for {seconds} s: {what} (log: {})",
            rel(&log)
        );
        let since = SystemTime::now();
        let out = fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let status = cargo_fuzz()
            .arg("run")
            .args(BUILD_OPTIONS)
            .arg(target)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg(format!("-timeout={INPUT_TIMEOUT_S}"))
            .arg("-print_final_stats=1")
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .status()
            .context(
                "could not start `cargo fuzz run` (`cargo xtask setup` installs cargo-fuzz)",
            )?;
        let text = fs::read_to_string(&log).unwrap_or_default();
        if status.success() {
            eprintln!(
                "    {target}: {}",
                summary(&text, &dir.join("corpus").join(target))
            );
            continue;
        }
        // The panic message or sanitizer report, else the end of the log.
        let lines: Vec<&str> = text.lines().collect();
        let first = lines
            .iter()
            .position(|l| l.contains("panicked at") || l.contains("ERROR: "))
            .unwrap_or(lines.len().saturating_sub(40));
        for line in lines.iter().skip(first).take(40) {
            eprintln!("    | {line}");
        }
        let artifacts = new_files(&dir.join("artifacts").join(target), since);
        if artifacts.is_empty() {
            failures.push(format!(
                "{target}: `cargo fuzz run` failed ({status}) without a crash artifact; see {}",
                rel(&log)
            ));
        }
        for a in artifacts {
            failures.push(format!(
                "{target} crashed on {a}\n    reproduce: cargo +nightly fuzz run --debug-assertions {target} {a}\n    \
                 fuzz it again: cargo xtask fuzz {target}\n    log: {}",
                rel(&log),
            ));
        }
    }
    if !failures.is_empty() {
        bail!(
            "fuzzing found {} problem(s):\n  {}",
            failures.len(),
            failures.join("\n  ")
        );
    }
    Ok(())
}

/// The host's target triple: where cargo-fuzz puts the binaries.
fn host_triple() -> Result<String> {
    let out = Command::new("rustup")
        .args(["run", "nightly", "rustc", "-vV"])
        .output()
        .context("could not run rustc -vV")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .context("rustc -vV names no host")
}

/// "N inputs in S s (R/s), C in the corpus" from libFuzzer's final statistics.
fn summary(log: &str, corpus: &Path) -> String {
    let stat = |key: &str| {
        log.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let runs = stat("stat::number_of_executed_units:");
    let rate = stat("stat::average_exec_per_sec:");
    let in_corpus = fs::read_dir(corpus).map_or(0, |d| d.count());
    match (runs, rate) {
        (Some(runs), Some(rate)) => {
            format!(
                "{runs} inputs ({rate}/s), no crash; {in_corpus} inputs in {}",
                rel(corpus)
            )
        }
        _ => "no crash".to_owned(),
    }
}

/// Files in `dir` modified at or after `since` (libFuzzer's crash, timeout, OOM
/// and leak artifacts), as paths relative to the workspace root.
fn new_files(dir: &Path, since: SystemTime) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= since)
        })
        .map(|e| rel(&e.path()))
        .collect();
    files.sort();
    files
}

/// `path` relative to the workspace root, for messages.
fn rel(path: &Path) -> String {
    let root: PathBuf = root();
    path.strip_prefix(&root)
        .unwrap_or(path)
        .display()
        .to_string()
}
