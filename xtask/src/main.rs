//! `cargo xtask`: set up, build, demo, test and testbeds for xdpstack.
#![deny(unsafe_code)]

mod bench;
mod demo;
mod fuzz;
mod mutants;
mod setup;
mod soak;

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};
use xdpstack_testbed::Testbed;

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "Build, run and test xdpstack")]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Install every prerequisite that is missing (apt packages, nightly rust-src,
    /// bpf-linker, cargo-fuzz). Idempotent.
    Setup,
    /// Set up and build the `xdpstack` binary (the XDP program is embedded in it)
    /// and the benchmark tooling's `xdpstack-gen` and `xdpstack-kernel-rx`.
    Build {
        /// Optimised build.
        #[arg(long)]
        release: bool,
    },
    /// With no ARGS: a demo on a veth testbed. With `-- ARGS`: run `xdpstack ARGS`.
    Run {
        /// Arguments for `xdpstack` (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// The whole test suite: formatting, clippy, unit tests, root integration tests.
    Test {
        /// Extra arguments for the integration tests' harness (e.g. a test name).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// The benchmark suite: every receiver against the same generator on a veth
    /// testbed; writes target/bench/results.{json,md,svg}.
    Bench {
        /// A short smoke run (18-byte payloads and the jumbo case, 1 s per
        /// receiver).
        #[arg(long)]
        quick: bool,
        /// Only these receivers (repeatable), e.g. for profiling one of them.
        #[arg(long = "receiver")]
        receivers: Vec<String>,
        /// Only these payload sizes (repeatable; above 1472 bytes: the jumbo
        /// case, at MTU 9000, with its receivers only).
        #[arg(long = "payload")]
        payloads: Vec<u64>,
    },
    /// Soak test (not in CI): a flood with random consumer stalls and queue-full
    /// events on a veth testbed, checked at the end; writes
    /// target/soak/report.json.
    Soak {
        /// How long to run, in minutes.
        #[arg(long)]
        minutes: f64,
        /// Seed of the random schedule [default: from the clock].
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Fuzz the UDP parser, the XDP steering logic and the capture writer
    /// (cargo-fuzz targets in fuzz/): builds, seeds from the XDP program's test
    /// corpus, runs each target; a crash fails with the input and how to reproduce.
    Fuzz {
        /// Seconds per target (`cargo xtask test` runs 20).
        #[arg(long, default_value_t = fuzz::LONG_SECONDS)]
        seconds: u64,
        /// Only these targets: udp_parse, steer, pcap_record [default: all].
        targets: Vec<String>,
    },
    /// Mutation testing of the sans-IO core (wire, frame, poller, tx) with
    /// cargo-mutants over the library's unit tests; not part of `test` (slow).
    Mutants {
        /// Only these files (globs, e.g. userspace/src/frame/mod.rs) [default: the core].
        files: Vec<String>,
        /// Run one part of the mutants: K/N.
        #[arg(long, value_name = "K/N")]
        shard: Option<String>,
    },
    /// Create or remove a veth testbed in two network namespaces.
    Testbed {
        #[command(subcommand)]
        action: TestbedCmd,
    },
}

#[derive(Debug, Subcommand)]
enum TestbedCmd {
    /// Create the namespaces NAME-stack and NAME-peer and the veth pair NAMEs/NAMEp.
    Up {
        /// Testbed name (prefix of namespaces and interfaces).
        #[arg(long, default_value = "xsbed")]
        name: String,
        /// RX/TX queues on each veth end.
        #[arg(long, default_value_t = 2)]
        queues: u32,
        /// MTU of both veth ends (9000 for jumbo frames through AF_XDP
        /// multi-buffer).
        #[arg(long, default_value_t = xdpstack_testbed::DEFAULT_MTU)]
        mtu: u32,
    },
    /// Remove testbed NAME (works after a crash too).
    Down {
        /// Testbed name.
        #[arg(long, default_value = "xsbed")]
        name: String,
    },
}

/// The workspace root.
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

/// Nightly cargo. `$CARGO` is the toolchain's own binary, which does not take
/// `+nightly` (only rustup's proxy does), so go through rustup; and drop the
/// variables that would pin the stable compiler, as aya-build does.
fn cargo_nightly() -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo"])
        .current_dir(root())
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO");
    cmd
}

/// Run `cmd`, failing with `what` if it does not succeed.
fn step(what: &str, cmd: &mut Command) -> Result<()> {
    eprintln!("==> {what}");
    let status = cmd
        .status()
        .with_context(|| format!("{what}: could not start {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// Path of the built `xdpstack` binary.
fn binary(release: bool) -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    dir.join(if release { "release" } else { "debug" })
        .join("xdpstack")
}

/// `cargo build` of the product's binary `xdpstack` (package `xdpstack-cli`) and
/// the benchmark tooling's `xdpstack-gen` and `xdpstack-kernel-rx` (package
/// `xdpstack-bench`), which the demo, the benchmarks, the soak and the
/// integration tests find next to it.
fn build_command(release: bool) -> Command {
    let mut cmd = cargo();
    cmd.args([
        "build",
        "--package",
        "xdpstack-cli",
        "--package",
        "xdpstack-bench",
        "--bins",
    ]);
    if release {
        cmd.arg("--release");
    }
    cmd
}

fn build(release: bool) -> Result<PathBuf> {
    step(
        "build xdpstack, xdpstack-gen and xdpstack-kernel-rx (each with its XDP object embedded)",
        &mut build_command(release),
    )?;
    Ok(binary(release))
}

fn require_root(what: &str) -> Result<()> {
    if !setup::root() {
        bail!("{what} needs root (network namespaces, XDP, AF_XDP): run it as root");
    }
    Ok(())
}

fn test(extra: &[String]) -> Result<()> {
    setup::setup()?;
    step(
        "cargo fmt --check",
        cargo().args(["fmt", "--all", "--", "--check"]),
    )?;
    step(
        "clippy (host)",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    step(
        "clippy (XDP programs: steering and generator, bpfel-unknown-none)",
        cargo_nightly().args([
            "clippy",
            "--package",
            "xdp-ebpf",
            "--package",
            "xdpstack-bench-ebpf",
            "--features",
            "xdp-ebpf/ebpf,xdpstack-bench-ebpf/ebpf",
            "--bins",
            "--release",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    step(
        "unit tests",
        cargo().args(["test", "--workspace", "--exclude", "xdpstack-tests"]),
    )?;
    step(
        "cargo doc (warnings are errors: public items documented, links resolve)",
        cargo()
            .args([
                "doc",
                "--no-deps",
                "--package",
                "xdpstack",
                "--package",
                "xdp-ebpf",
                "--package",
                "xdpstack-bench",
                "--package",
                "xdpstack-bench-ebpf",
            ])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    let miri = |filters: &[&str], flags: &str| {
        let mut cmd = cargo_nightly();
        // Without quinn (default feature): its TLS crates are not what these
        // tests interpret.
        cmd.args([
            "miri",
            "test",
            "--package",
            "xdpstack",
            "--no-default-features",
            "--lib",
            "--",
        ])
        .args(filters)
        .env("MIRIFLAGS", flags);
        cmd
    };
    // Isolation on: the poller reads no clock (its caller passes the time). The
    // proptest is too slow interpreted; these tests cover the same code.
    step(
        "Miri: frame pool refcounts, return queue, poller, transmit path, sockets and end of run over a fake ring",
        &mut miri(
            &[
                "frame::",
                "poller::tests::first",
                "poller::tests::two",
                "poller::tests::full",
                "poller::tests::lossless",
                "poller::tests::views_carry",
                "poller::tx_tests::echo_is",
                "poller::tx_tests::shared",
                "poller::tx_tests::replies",
                "poller::tx_tests::concurrent",
                "poller::tx_tests::frames_carry",
                "poller::chain_tests::a_chain_cut",
                "poller::chain_tests::a_shared_multi",
                "poller::tx_tests::the_tap",
                "poller::tx_tests::sockets::datagrams_in",
                "poller::tx_tests::sockets::a_send_from",
                "poller::tx_tests::sockets::backpressure",
                "poller::tx_tests::sockets::unreachable",
                "poller::tx_tests::sockets::held",
                "stack::queue::tests::",
                "--skip",
                "views_keep_the_memory_alive",
            ],
            "",
        ),
    )?;
    step(
        "Miri: a view outliving its pool (the pool leaks its memory on purpose)",
        &mut miri(
            &["frame::tests::views_keep_the_memory_alive"],
            "-Zmiri-ignore-leaks",
        ),
    )?;
    fuzz::short()?;
    require_root("the integration tests")?;
    let bin = build(false)?;
    step(
        "build the quic_echo example (the integration tests run quinn against it)",
        cargo().args(["build", "--package", "xdpstack", "--example", "quic_echo"]),
    )?;
    step(
        "integration tests (root: veth pairs in namespaces)",
        cargo()
            .args(["test", "--package", "xdpstack-tests", "--"])
            .args(extra)
            .env("XDPSTACK_BIN", &bin),
    )?;
    eprintln!("==> all tests passed");
    Ok(())
}

/// The command that runs xdpstack on `bed`: the newest build that exists (a
/// path that works when typed), or, with none built yet, the build (`cargo
/// xtask build`, which installs what the XDP program needs first) and the run.
fn run_hint(bed: &Testbed) -> String {
    let args = format!("-i {} --port 9000", bed.stack_if());
    let newest = [binary(true), binary(false)]
        .into_iter()
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .max_by_key(|(t, _)| *t)
        .map(|(_, p)| p);
    match newest {
        Some(bin) => format!("ip netns exec {} {} {args}", bed.stack_ns(), bin.display()),
        None => format!(
            "cargo xtask build --release && ip netns exec {} {} {args}",
            bed.stack_ns(),
            binary(true).display()
        ),
    }
}

fn testbed(action: TestbedCmd) -> Result<()> {
    require_root("a testbed")?;
    match action {
        TestbedCmd::Up { name, queues, mtu } => {
            if Testbed::exists(&name) {
                bail!(
                    "testbed {name} exists already; `cargo xtask testbed down --name {name}` removes it"
                );
            }
            let bed = Testbed::create_with(&name, queues, xdpstack_testbed::Options { mtu })?;
            println!(
                "testbed {name}: {} ({}, {}) in netns {} <-> {} ({}, {}) in netns {}, {queues} queue(s), MTU {mtu}",
                bed.stack_if(),
                xdpstack_testbed::STACK_V4,
                xdpstack_testbed::STACK_V6,
                bed.stack_ns(),
                bed.peer_if(),
                xdpstack_testbed::PEER_V4,
                xdpstack_testbed::PEER_V6,
                bed.peer_ns(),
            );
            println!("run:    {}", run_hint(&bed));
            println!("remove: cargo xtask testbed down --name {name}");
            bed.keep();
        }
        TestbedCmd::Down { name } => {
            Testbed::remove(&name)?;
            println!("testbed {name} removed");
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Cmd::Setup => setup::setup(),
        Cmd::Build { release } => setup::setup().and_then(|()| build(release).map(drop)),
        Cmd::Run { args } => setup::setup().and_then(|()| {
            let bin = build(false)?;
            if args.is_empty() {
                require_root("the demo")?;
                demo::demo(&bin)
            } else {
                let status = Command::new(&bin)
                    .args(&args)
                    .status()
                    .with_context(|| format!("could not start {}", bin.display()))?;
                std::process::exit(status.code().unwrap_or(1));
            }
        }),
        Cmd::Test { args } => test(&args),
        Cmd::Bench {
            quick,
            receivers,
            payloads,
        } => setup::setup().and_then(|()| {
            require_root("the benchmarks")?;
            step(
                "build the release binaries (xdpstack, xdpstack-gen, xdpstack-kernel-rx, xdpstack-kernel-tx, xdpstack-xdp-drop)",
                &mut build_command(true),
            )?;
            bench::bench(&binary(true), quick, &receivers, &payloads)
        }),
        Cmd::Soak { minutes, seed } => setup::setup().and_then(|()| {
            require_root("the soak test")?;
            step(
                "build the release binaries (xdpstack, xdpstack-gen)",
                &mut build_command(true),
            )?;
            soak::soak(&binary(true), minutes, seed)
        }),
        Cmd::Fuzz { seconds, targets } => {
            setup::setup().and_then(|()| fuzz::fuzz(seconds, &targets))
        }
        Cmd::Mutants { files, shard } => mutants::mutants(&files, shard.as_deref()),
        Cmd::Testbed { action } => testbed(action),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}
