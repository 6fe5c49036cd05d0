//! `xdpstack-gen`'s XDP program (`xdpstack_gen`, crate `xdpstack-bench-ebpf`),
//! embedded in this crate and loaded with aya to be run with `BPF_PROG_TEST_RUN` in
//! live-frames mode.
//!
//! It is never attached to an interface, so nothing can outlive the process: the
//! kernel only runs it while a [`TrafficGenProgram::send_live`] call is in progress.
//! The object is separate from the product's steering program; loading it needs
//! the same privileges (CAP_BPF and CAP_NET_ADMIN).

use std::{io, time::Duration};

use aya::{
    Ebpf, EbpfError,
    maps::{Array, MapData, MapError, PerCpuArray},
    programs::{ProgramError, TestRun, TestRunAttrs, TestRunOptions, Xdp},
};
use xdpstack::sys::loader::{ebpf_error_is_permission, is_permission_error, program_error_errno};
use xdpstack_bench_ebpf::{GEN_CONFIG_MAP, GEN_PROGRAM_NAME, GEN_STATS_MAP, GenConfig, GenCounter};

/// The generator's XDP object, built by `build.rs` from `xdpstack-bench-ebpf`.
static GEN_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdpstack-gen-xdp"));

/// The generator's program, as errors name it.
const GEN_WHAT: BenchProgram = BenchProgram::Generator;

/// Which of the benchmark's XDP programs an error is about (one byte, so that
/// naming it does not grow the errors).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchProgram {
    /// `xdpstack_gen`, the traffic generator's.
    Generator,
    /// `xdpstack_xdp_drop`, the drop ceiling's.
    DropCeiling,
}

impl std::fmt::Display for BenchProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BenchProgram::Generator => "the generator's XDP program",
            BenchProgram::DropCeiling => "the XDP drop ceiling's program",
        })
    }
}

/// Errors from loading one of the benchmark's XDP programs or reading its maps.
/// `program` names which one.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The kernel refused the `bpf()` syscall for lack of privileges.
    #[error("loading {program} needs CAP_BPF and CAP_NET_ADMIN (run as root): {source}")]
    Privileges {
        /// Which program.
        program: BenchProgram,
        /// The underlying error.
        #[source]
        source: EbpfError,
    },
    /// Any other failure to load the object (missing map, bad object...).
    #[error("loading {program} failed: {source}")]
    Load {
        /// Which program.
        program: BenchProgram,
        /// The underlying error.
        #[source]
        source: EbpfError,
    },
    /// The program did not pass the verifier, or is missing from the object.
    #[error("the kernel refused {program}: {source}")]
    Program {
        /// Which program.
        program: BenchProgram,
        /// The underlying error.
        #[source]
        source: ProgramError,
    },
    /// A map of the ABI is missing or has the wrong type.
    #[error("the map {name} of {program}: {source}")]
    Map {
        /// Which program.
        program: BenchProgram,
        /// The map's name.
        name: &'static str,
        /// The underlying error.
        #[source]
        source: MapError,
    },
}

/// Load `object` and its XDP program `name` (this runs the verifier); `what` names
/// the program in errors. Shared by the generator and the drop ceiling.
pub(crate) fn load_xdp(
    object: &[u8],
    name: &'static str,
    what: BenchProgram,
) -> Result<Ebpf, LoadError> {
    let mut ebpf = Ebpf::load(object).map_err(|source| {
        if ebpf_error_is_permission(&source) {
            LoadError::Privileges {
                program: what,
                source,
            }
        } else {
            LoadError::Load {
                program: what,
                source,
            }
        }
    })?;
    xdp_mut(&mut ebpf, name, what)?
        .load()
        .map_err(|source| match &source {
            ProgramError::LoadError { io_error, .. } if is_permission_error(io_error) => {
                LoadError::Privileges {
                    program: what,
                    source: EbpfError::ProgramError(source),
                }
            }
            _ => LoadError::Program {
                program: what,
                source,
            },
        })?;
    Ok(ebpf)
}

/// The XDP program `name` of `ebpf`.
pub(crate) fn xdp_mut<'a>(
    ebpf: &'a mut Ebpf,
    name: &str,
    what: BenchProgram,
) -> Result<&'a mut Xdp, LoadError> {
    ebpf.program_mut(name)
        .ok_or(LoadError::Program {
            program: what,
            source: ProgramError::UnexpectedProgramType,
        })?
        .try_into()
        .map_err(|source| LoadError::Program {
            program: what,
            source,
        })
}

/// Element `index` of the per-CPU `u64` array `map` of `ebpf`, on every possible
/// CPU (indexed by CPU number).
pub(crate) fn per_cpu_u64(
    ebpf: &Ebpf,
    map: &'static str,
    index: u32,
    what: BenchProgram,
) -> Result<Vec<u64>, LoadError> {
    let map_err = |source| LoadError::Map {
        program: what,
        name: map,
        source,
    };
    let data = ebpf.map(map).ok_or(LoadError::Map {
        program: what,
        name: map,
        source: MapError::InvalidName { name: map.into() },
    })?;
    let array: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(data).map_err(map_err)?;
    let values = array.get(&index, 0).map_err(map_err)?;
    Ok(values.iter().copied().collect())
}

/// A live-frames run of the generator's program that the kernel refused or cut
/// short.
#[derive(Debug, thiserror::Error)]
#[error("BPF_PROG_TEST_RUN with live frames on interface index {ifindex} failed: {source}")]
pub struct LiveRunError {
    /// The interface the frames were to leave by.
    pub ifindex: u32,
    /// The kernel's answer: `EINTR` when a signal arrived mid-run (the frames sent
    /// so far are counted by the program), `ENOMEM` when the page pool ran dry,
    /// `EINVAL`/`E2BIG` for a frame or batch the kernel does not take.
    #[source]
    pub source: io::Error,
}

/// Totals of the generator program's per-CPU counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrafficGenCounters {
    /// Frames the program ran on.
    pub runs: u64,
    /// Frames it dropped instead of sending (zero unless the template is wrong).
    pub dropped: u64,
}

/// The generator's XDP program, loaded (and verified) to be run with
/// `BPF_PROG_TEST_RUN` in live-frames mode; never attached.
#[derive(Debug)]
pub struct TrafficGenProgram {
    ebpf: Ebpf,
}

impl TrafficGenProgram {
    /// Load the embedded object and the generator's program (this runs the
    /// verifier). It sends nothing until configured and run.
    pub fn load() -> Result<Self, LoadError> {
        let ebpf = load_xdp(GEN_OBJECT, GEN_PROGRAM_NAME, GEN_WHAT)?;
        Ok(Self { ebpf })
    }

    fn program(&self) -> Result<&Xdp, LoadError> {
        self.ebpf
            .program(GEN_PROGRAM_NAME)
            .ok_or(LoadError::Program {
                program: GEN_WHAT,
                source: ProgramError::UnexpectedProgramType,
            })?
            .try_into()
            .map_err(|source| LoadError::Program {
                program: GEN_WHAT,
                source,
            })
    }

    /// Set the source ports the program cycles through.
    pub fn configure(&mut self, config: GenConfig) -> Result<(), LoadError> {
        let map_err = |source| LoadError::Map {
            program: GEN_WHAT,
            name: GEN_CONFIG_MAP,
            source,
        };
        let map = self.ebpf.map_mut(GEN_CONFIG_MAP).ok_or(LoadError::Map {
            program: GEN_WHAT,
            name: GEN_CONFIG_MAP,
            source: MapError::InvalidName {
                name: GEN_CONFIG_MAP.into(),
            },
        })?;
        let mut array: Array<_, GenConfig> = Array::try_from(map).map_err(map_err)?;
        array.set(0, config, 0).map_err(map_err)
    }

    /// `counter` on every possible CPU, indexed by CPU number.
    fn per_cpu(&self, counter: GenCounter) -> Result<Vec<u64>, LoadError> {
        per_cpu_u64(&self.ebpf, GEN_STATS_MAP, counter.index(), GEN_WHAT)
    }

    /// The program's counters, summed over CPUs.
    pub fn counters(&self) -> Result<TrafficGenCounters, LoadError> {
        Ok(TrafficGenCounters {
            runs: self.per_cpu(GenCounter::Runs)?.iter().sum(),
            dropped: self.per_cpu(GenCounter::Dropped)?.iter().sum(),
        })
    }

    /// Frames the program ran on, per possible CPU (indexed by CPU number).
    pub fn runs_per_cpu(&self) -> Result<Vec<u64>, LoadError> {
        self.per_cpu(GenCounter::Runs)
    }

    /// Run the program `repeat` times over copies of `frame` in live-frames mode,
    /// `batch_size` (1..=256) frames per batch, on interface `ifindex` of the
    /// calling thread's network namespace: every frame it returns `XDP_TX` for is
    /// transmitted out of that interface. Returns the kernel's mean time per frame.
    ///
    /// The kernel reports neither the verdicts nor what the interface did with the
    /// frames: [`TrafficGenProgram::counters`] and the interface's own counters do.
    pub fn send_live(
        &self,
        frame: &[u8],
        ifindex: u32,
        repeat: u32,
        batch_size: u32,
    ) -> Result<Duration, LiveRunError> {
        // struct xdp_md { data, data_end, data_meta, ingress_ifindex,
        // rx_queue_index, egress_ifindex }: data = data_meta = 0, data_end = the
        // frame's length, and the ingress interface, which XDP_TX sends out of
        // (net/bpf/test_run.c). Queue 0 exists on every interface.
        let mut ctx = [0u8; 24];
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        ctx[4..8].copy_from_slice(&len.to_ne_bytes());
        ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
        let program = self.program().map_err(|e| LiveRunError {
            ifindex,
            source: io::Error::other(e.to_string()),
        })?;
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        opts.ctx_in = Some(&ctx);
        opts.repeat = repeat;
        opts.attrs = TestRunAttrs::new().xdp_live_frames(batch_size);
        program
            .test_run(opts)
            .map(|r| r.duration)
            .map_err(|source| LiveRunError {
                ifindex,
                source: match program_error_errno(&source) {
                    Some(errno) => io::Error::from_raw_os_error(errno),
                    None => io::Error::other(source.to_string()),
                },
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The object is embedded, non-empty, and holds the program and both maps
    /// under the names of the ABI (read from the ELF, nothing loaded).
    #[test]
    fn embedded_object_has_the_program_and_maps_of_the_abi() {
        assert!(GEN_OBJECT.starts_with(b"\x7fELF"), "not an ELF object");
        let obj = aya_obj::Object::parse(GEN_OBJECT).expect("parses");
        assert!(obj.programs.contains_key(GEN_PROGRAM_NAME));
        assert!(obj.maps.contains_key(GEN_CONFIG_MAP));
        assert!(obj.maps.contains_key(GEN_STATS_MAP));
    }
}
