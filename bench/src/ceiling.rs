//! The in-kernel ceiling of `cargo xtask bench`: an XDP program that drops every
//! frame (`xdpstack_xdp_drop`, crate `xdpstack-bench-ebpf`), attached in driver
//! mode to the receiving interface for the length of one run.
//!
//! It is attached through a `bpf_link` only, as the product's program is: the link
//! belongs to this process's file descriptor, so the kernel detaches the program
//! when [`DropCeiling`] is dropped, or when the process exits, panics or is killed
//! with SIGKILL; nothing is pinned. A program already on the interface makes the
//! attach fail; it is reported, never replaced.

use aya::{
    Ebpf,
    programs::{ProgramError, XdpMode, links::FdLink},
};
use xdpstack::sys::{ifinfo::if_index, loader::program_error_errno};
use xdpstack_bench_ebpf::{DROP_PROGRAM_NAME, DROP_STATS_MAP};

use crate::loader::{BenchProgram, LoadError, load_xdp, per_cpu_u64, xdp_mut};

/// The drop ceiling's XDP object, built by `build.rs` from `xdpstack-bench-ebpf`.
static DROP_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdpstack-drop-xdp"));

/// The drop ceiling's program, as errors name it.
const DROP_WHAT: BenchProgram = BenchProgram::DropCeiling;

/// Errors from attaching the drop ceiling.
#[derive(Debug, thiserror::Error)]
pub enum CeilingError {
    /// Loading the object or reading its counter failed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// No interface of that name in this network namespace.
    #[error("interface {0} not found (in this network namespace)")]
    UnknownInterface(String),
    /// Another XDP program is attached.
    #[error(
        "interface {iface} has an XDP program attached already; it is never replaced: \
         stop its owner (or `ip link set dev {iface} xdp off`) and try again"
    )]
    ForeignProgram {
        /// The interface.
        iface: String,
    },
    /// The driver has no native XDP; the ceiling is a driver-mode measurement.
    #[error(
        "interface {iface} has no native (driver-mode) XDP: the drop ceiling is measured \
         in driver mode only (pass `--mode skb` to measure generic mode instead)"
    )]
    NoNativeXdp {
        /// The interface.
        iface: String,
    },
    /// The kernel refused the attach for lack of privileges.
    #[error("attaching XDP to {iface} needs CAP_NET_ADMIN and CAP_BPF (run as root)")]
    AttachPrivileges {
        /// The interface.
        iface: String,
    },
    /// Any other attach failure.
    #[error("attaching the drop ceiling to {iface} failed: {source}")]
    Attach {
        /// The interface.
        iface: String,
        /// The underlying error.
        #[source]
        source: ProgramError,
    },
    /// aya fell back to a netlink attachment, which would outlive the process.
    #[error(
        "the kernel attached XDP to {iface} without a bpf_link (netlink), which would \
         outlive this process: detached and refused (bpf_link XDP needs Linux 5.9+)"
    )]
    NoBpfLink {
        /// The interface.
        iface: String,
    },
}

/// The drop ceiling's program, loaded and attached to one interface.
///
/// Dropping it detaches the program (the link's fd is closed) and frees its map.
#[derive(Debug)]
pub struct DropCeiling {
    // Field order matters for drop: the link goes before the object.
    link: Option<FdLink>,
    iface: String,
    ebpf: Ebpf,
}

impl DropCeiling {
    /// Load the embedded object (this runs the verifier) and attach it to `iface` in
    /// driver mode (`XdpMode::Driver`) or, when asked, generic mode.
    pub fn attach(iface: &str, mode: XdpMode) -> Result<Self, CeilingError> {
        let index =
            if_index(iface).ok_or_else(|| CeilingError::UnknownInterface(iface.to_string()))?;
        let mut ebpf = load_xdp(DROP_OBJECT, DROP_PROGRAM_NAME, DROP_WHAT)?;
        let program = xdp_mut(&mut ebpf, DROP_PROGRAM_NAME, DROP_WHAT)?;
        let iface_s = || iface.to_string();
        let id =
            program
                .attach_to_if_index(index, mode)
                .map_err(|source| match program_error_errno(&source) {
                    Some(libc::EBUSY | libc::EEXIST) => {
                        CeilingError::ForeignProgram { iface: iface_s() }
                    }
                    Some(libc::EOPNOTSUPP) if mode == XdpMode::Driver => {
                        CeilingError::NoNativeXdp { iface: iface_s() }
                    }
                    Some(libc::EPERM | libc::EACCES) => {
                        CeilingError::AttachPrivileges { iface: iface_s() }
                    }
                    _ => CeilingError::Attach {
                        iface: iface_s(),
                        source,
                    },
                })?;
        let link = program
            .take_link(id)
            .map_err(|source| CeilingError::Attach {
                iface: iface_s(),
                source,
            })?;
        // A netlink attachment is detached when `link` is dropped by the failed
        // conversion; refuse rather than hold one that a SIGKILL would leave behind.
        let link =
            FdLink::try_from(link).map_err(|_| CeilingError::NoBpfLink { iface: iface_s() })?;
        Ok(Self {
            link: Some(link),
            iface: iface.to_string(),
            ebpf,
        })
    }

    /// The interface the program is attached to.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// Frames the program dropped so far, per possible CPU (indexed by CPU number).
    pub fn dropped_per_cpu(&self) -> Result<Vec<u64>, LoadError> {
        per_cpu_u64(&self.ebpf, DROP_STATS_MAP, 0, DROP_WHAT)
    }

    /// Detach now (dropping does the same); the counter stays readable.
    pub fn detach(&mut self) {
        self.link = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The object is embedded, non-empty, and holds the program and its map under
    /// the names of the ABI (read from the ELF, nothing loaded).
    #[test]
    fn embedded_object_has_the_program_and_map_of_the_abi() {
        assert!(DROP_OBJECT.starts_with(b"\x7fELF"), "not an ELF object");
        let obj = aya_obj::Object::parse(DROP_OBJECT).expect("parses");
        assert!(obj.programs.contains_key(DROP_PROGRAM_NAME));
        assert!(obj.maps.contains_key(DROP_STATS_MAP));
        // The jumbo ceiling: the frags-aware twin, and only it.
        for (name, frags) in [
            (DROP_PROGRAM_NAME, false),
            (xdpstack_bench_ebpf::DROP_FRAGS_PROGRAM_NAME, true),
        ] {
            let section = &obj.programs.get(name).expect(name).section;
            assert!(
                matches!(section, aya_obj::ProgramSection::Xdp { frags: f, .. } if *f == frags),
                "{name}: {section:?}"
            );
        }
    }
}
