//! `cargo xtask setup`: install what building and testing need on a fresh Debian
//! machine, idempotently. Checks first, installs only what is missing, says what it
//! does, and names what could not be installed.

use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

/// Debian packages, with why each is here.
const APT_PACKAGES: &[(&str, &str)] = &[
    (
        "clang",
        "libxdp/libbpf (built by xsk-rs) compile their BPF objects with it",
    ),
    ("llvm", "libxdp's build uses llc and llvm-strip"),
    ("libelf-dev", "libbpf links libelf"),
    ("zlib1g-dev", "libbpf links zlib"),
    (
        "libpcap-dev",
        "libxdp's configure refuses to run without it; the pcap crate links libpcap for capture filters",
    ),
    ("m4", "libxdp's configure"),
    ("pkg-config", "libxdp's configure"),
    (
        "llvm-22-dev",
        "bpf-linker links LLVM 22, the LLVM of the nightly toolchain",
    ),
    ("libzstd-dev", "bpf-linker's LLVM link"),
    ("libpolly-22-dev", "bpf-linker's LLVM link"),
    ("iproute2", "veth testbeds (`ip netns`, `ip link`)"),
    (
        "iputils-ping",
        "tests check that non-steered traffic still passes",
    ),
    ("ethtool", "queue and channel inspection"),
    ("bpftool", "inspecting attached programs and maps"),
    (
        "tcpdump",
        "kernel capture baseline; `tcpdump -d` is what filter dumps are tested against",
    ),
    ("tshark", "validating capture files"),
    (
        "prometheus",
        "the metrics tests: `promtool check metrics`, and a Prometheus server scraping --metrics",
    ),
];

/// bpf-linker release line known to build against LLVM 22 with the feature below.
const BPF_LINKER_VERSION: &str = "^0.13";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

fn quiet(cmd: &mut Command) -> Command {
    let mut c = Command::new(cmd.get_program());
    c.args(cmd.get_args())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

fn succeeds(cmd: &mut Command) -> bool {
    quiet(cmd).status().is_ok_and(|s| s.success())
}

fn apt_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"install ok installed"))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    #[expect(unsafe_code, reason = "libc::geteuid")]
    let euid = unsafe { libc::geteuid() };
    euid == 0
}

fn run(what: &str, cmd: &mut Command) -> Result<()> {
    eprintln!("setup: {what}");
    let status = cmd
        .status()
        .with_context(|| format!("could not run {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("setup: {what} failed ({status})");
    }
    Ok(())
}

/// Install everything that is missing. Prints one line per action, and a single
/// line when nothing was needed.
pub fn setup() -> Result<()> {
    let mut did_something = false;

    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| !apt_installed(p))
        .collect();
    if !missing.is_empty() {
        for (p, why) in APT_PACKAGES.iter().filter(|(p, _)| missing.contains(p)) {
            eprintln!("setup: missing apt package {p}: {why}");
        }
        if !is_root() {
            bail!(
                "setup: installing {} needs root: run `sudo apt-get install {}`",
                missing.join(" "),
                missing.join(" ")
            );
        }
        run(
            "apt-get update",
            Command::new("apt-get").args(["update", "-qq"]),
        )?;
        run(
            &format!("apt-get install {}", missing.join(" ")),
            Command::new("apt-get")
                .args(["install", "-y", "-qq", "--no-install-recommends"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
        let still: Vec<&str> = missing
            .iter()
            .copied()
            .filter(|p| !apt_installed(p))
            .collect();
        if !still.is_empty() {
            bail!(
                "setup: could not install apt package(s): {}",
                still.join(" ")
            );
        }
        did_something = true;
    }

    if !succeeds(Command::new("rustup").args(["run", "nightly", "rustc", "--version"])) {
        run(
            "install the nightly toolchain (the XDP program needs -Z build-std)",
            Command::new("rustup").args([
                "toolchain",
                "install",
                "nightly",
                "--profile",
                "minimal",
            ]),
        )?;
        did_something = true;
    }
    let installed = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", "nightly"])
        .output()
        .context("could not run rustup")?;
    let installed = String::from_utf8_lossy(&installed.stdout).into_owned();
    for (component, why) in [
        ("rust-src", "to build `core` for bpfel-unknown-none"),
        ("clippy", "to lint the XDP program on its own target"),
        ("miri", "to check the frame pool's unsafe code"),
    ] {
        if !installed.lines().any(|l| l.starts_with(component)) {
            run(
                &format!("add {component} to nightly ({why})"),
                Command::new("rustup").args([
                    "component",
                    "add",
                    component,
                    "--toolchain",
                    "nightly",
                ]),
            )?;
            did_something = true;
        }
    }

    if !succeeds(Command::new("bpf-linker").arg("--version")) {
        run(
            "cargo install bpf-linker against LLVM 22 (links the XDP program; takes a few minutes)",
            Command::new("cargo")
                .args([
                    "install",
                    "bpf-linker",
                    "--version",
                    BPF_LINKER_VERSION,
                    "--no-default-features",
                    "--features",
                    "llvm-22",
                ])
                .env("LLVM_PREFIX", LLVM_PREFIX),
        )?;
        if !succeeds(Command::new("bpf-linker").arg("--version")) {
            bail!("setup: bpf-linker was installed but is not on PATH (add ~/.cargo/bin to PATH)");
        }
        did_something = true;
    }

    // `cargo +nightly fuzz` through rustup, as `cargo xtask fuzz` calls it.
    let cargo_fuzz =
        || succeeds(Command::new("rustup").args(["run", "nightly", "cargo", "fuzz", "--version"]));
    if !cargo_fuzz() {
        run(
            "cargo install cargo-fuzz (builds and runs the fuzz targets in fuzz/; takes a minute)",
            Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]),
        )?;
        if !cargo_fuzz() {
            bail!(
                "setup: cargo-fuzz was installed but `cargo +nightly fuzz` does not find it (add ~/.cargo/bin to PATH)"
            );
        }
        did_something = true;
    }

    if !did_something {
        eprintln!("setup: everything is installed");
    }
    Ok(())
}

/// The Debian packages of the benchmark's peer AF_XDP implementation, DPDK
/// 22.11's `dpdk-testpmd` with its AF_XDP PMD; only `cargo xtask bench` needs
/// them, so `setup` does not install them.
const DPDK_PACKAGES: &[&str] = &["dpdk-dev", "librte-net-af-xdp23"];

/// `dpdk-testpmd` with the AF_XDP PMD, for `cargo xtask bench`: installed with apt
/// when missing (checked first with dpkg, so an installed machine needs no
/// network). `Err` says, in one line, why it is not there and how to get it; the
/// bench skips the testpmd receivers then instead of failing.
pub fn bench_dpdk_testpmd() -> Result<(), String> {
    let present = || DPDK_PACKAGES.iter().all(|p| apt_installed(p));
    // `--help` exits 0 without touching hugepages or devices (`--version` does not).
    let on_path = || succeeds(Command::new("dpdk-testpmd").arg("--help"));
    if !present() {
        let wanted = DPDK_PACKAGES.join(" ");
        eprintln!(
            "setup: missing apt packages {wanted}: the bench's peer AF_XDP implementation (dpdk-testpmd)"
        );
        if !is_root() {
            return Err(format!(
                "installing {wanted} needs root: run `sudo apt-get install {wanted}`"
            ));
        }
        let apt = |what: &str, cmd: &mut Command| -> Result<(), String> {
            eprintln!("setup: {what}");
            match cmd.env("DEBIAN_FRONTEND", "noninteractive").status() {
                Ok(s) if s.success() => Ok(()),
                Ok(s) => Err(format!("{what} failed ({s})")),
                Err(e) => Err(format!("could not run apt-get: {e}")),
            }
        };
        apt("apt-get update", Command::new("apt-get").args(["update", "-qq"]))
            .and_then(|()| {
                apt(
                    &format!("apt-get install {wanted}"),
                    Command::new("apt-get")
                        .args(["install", "-y", "-qq", "--no-install-recommends"])
                        .args(DPDK_PACKAGES),
                )
            })
            .map_err(|e| {
                format!("{e}: apt could not install {wanted} (no network or no Debian mirror?); `apt-get install {wanted}` by hand, then rerun")
            })?;
        if !present() {
            return Err(format!("apt-get ran but {wanted} are still not installed"));
        }
    }
    if !on_path() {
        return Err(
            "dpkg says dpdk-dev is installed but `dpdk-testpmd --help` does not run; \
             reinstall it with `apt-get install --reinstall dpdk-dev`"
                .into(),
        );
    }
    Ok(())
}

/// True when running as root.
pub fn root() -> bool {
    is_root()
}
