//! The test manifest (`cxlvmm test MANIFEST.toml`): kernels, topologies and
//! cases, checked as a whole before anything runs. `docs/runner.md` is the
//! reference for its keys.

mod raw;
mod resolve;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use resolve::{expand_placeholders, find_build_tree_image, is_var_name, PLACEHOLDERS};

/// What the manifest loader needs from the VMM: where the built guest images
/// are. Returns (kernel, initramfs) of a variant, or why it cannot.
pub type GuestFinder<'a> = &'a dyn Fn(&str) -> Result<(PathBuf, PathBuf), String>;

/// A manifest that failed to load: the message names the key and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ManifestError(pub String);

/// The guest a case runs on when the kernel names no built guest image.
pub const DEFAULT_GUEST: &str = "6.12";

#[derive(Debug, Clone)]
pub struct Manifest {
    pub path: PathBuf,
    pub kernels: Vec<Kernel>,
    pub topologies: Vec<Topology>,
    pub cases: Vec<Case>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    pub name: String,
    pub boot: KernelBoot,
    /// `uname -r` of the kernel, where the image says it: a guest image's
    /// `kernel-release` file, a build tree's `include/config/kernel.release`.
    pub release: Option<String>,
    /// Appended to cxlvmm's kernel command line for every case.
    pub cmdline: String,
    /// A module tree for the guest's /lib/modules (`cxlvmm run --modules`).
    pub modules: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelBoot {
    /// A built guest image variant (`cxlvmm run --guest`).
    Guest(String),
    /// A kernel image with an initramfs (`--kernel`, `--initrd`).
    Image { kernel: PathBuf, initrd: PathBuf },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub name: String,
    pub source: TopologySource,
    /// The files its devices keep persistent memory in (`persistent_path`,
    /// taken from the runner's working folder as cxlvmm takes them): two
    /// jobs that name one never run at once (cxlvmm would refuse the
    /// second).
    pub persistent_files: Vec<PathBuf>,
    /// The volatile capacity of its type-3 devices (bytes): host memory
    /// the VM takes beside the guest's own.
    pub volatile_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopologySource {
    /// cxlvmm's built-in default topology.
    Builtin,
    /// A topology file (already validated).
    File(PathBuf),
    /// No CXL hierarchy (`--no-cxl`).
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseBody {
    /// A guest shell script (its text, read at load time, and its path).
    Script { path: PathBuf, text: String },
    /// A guest shell command line.
    Command(String),
}

/// A `disks` entry: what becomes one `cxlvmm run --disk` of each job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskSource {
    /// An image file (absolute). A read-only one is used in place (several
    /// jobs may share it); a read-write one is copied into the job's folder
    /// before each try, so that jobs never share a writable image and every
    /// try starts from the same content.
    File { path: PathBuf, read_only: bool },
    /// A new zero-filled image of `size` bytes in the job's folder.
    Scratch { size: u64, read_only: bool },
}

/// A `shares` entry: what becomes one `cxlvmm run --share` of each job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShareSource {
    /// A host directory (absolute), shared in place: jobs that run at the
    /// same time and write it see each other's files.
    Dir {
        path: PathBuf,
        tag: String,
        read_only: bool,
    },
    /// A new empty directory `share-TAG` in the job's folder, made afresh
    /// for every try: what the guest writes there stays with the job's
    /// results, and its host check finds it under `$CXLVMM_OUT`. The case's
    /// `prepare` may fill it before the guest boots (then `:ro` makes sense).
    JobDir { tag: String, read_only: bool },
}

/// A host-side action the guest can ask for by name (`cxlvmm-action NAME`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub name: String,
    pub command: String,
}

/// One boot of a job. A job boots once unless its case lists `boots`; the
/// boots share the job's folder (disks, shares, persistent media) and run
/// in order, each only if the one before passed.
#[derive(Debug, Clone, Default)]
pub struct Boot {
    /// The guest script or command of this boot; None: the case's.
    pub body: Option<CaseBody>,
    /// Guest environment over the case's.
    pub env: BTreeMap<String, String>,
    pub prepare: Option<String>,
    /// Kill cxlvmm at the first console line matching this: the boot then
    /// passes without an exit status (it simulates a power cut).
    pub power_cut_on: Option<regex::Regex>,
}

#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub body: CaseBody,
    /// Kernel and topology names this case runs on, in manifest order.
    pub kernels: Vec<String>,
    pub topologies: Vec<String>,
    pub vcpus: u8,
    pub memory: u64,
    /// Seconds (cxlvmm's `--timeout`).
    pub timeout: u64,
    pub expect_exit: u8,
    pub ignore_splats: Vec<regex::Regex>,
    pub cmdline: String,
    pub env: BTreeMap<String, String>,
    pub vmm_env: BTreeMap<String, String>,
    pub dmesg: bool,
    /// More `cxlvmm run` options (`--verbose`, `--memory-mode timed`, ...).
    pub vmm_args: Vec<String>,
    pub check: Option<String>,
    /// Host command run before the first boot of every try.
    pub prepare: Option<String>,
    /// At least one.
    pub boots: Vec<Boot>,
    pub root_share: bool,
    /// Runs with no other job beside it (`cxlvmm test --jobs N`).
    pub alone: bool,
    pub actions: Vec<Action>,
    /// Disks, in order: the guest's /dev/vda, /dev/vdb, ...
    pub disks: Vec<DiskSource>,
    /// virtio-fs shares, each mounted in the guest by its tag.
    pub shares: Vec<ShareSource>,
}

impl Manifest {
    /// Reads, parses and checks a manifest: every error names the key and
    /// value at fault. Relative paths are taken from the manifest's folder.
    pub fn load(path: &Path, find_guest: GuestFinder) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ManifestError(format!("{}: {e}", path.display())))?;
        Self::parse(path, &text, find_guest)
    }

    pub fn parse(
        path: &Path,
        text: &str,
        find_guest: GuestFinder,
    ) -> Result<Manifest, ManifestError> {
        let raw: raw::RawManifest = toml::from_str(text)
            .map_err(|e| ManifestError(format!("{}: {}", path.display(), e.to_string().trim())))?;
        // Absolute paths: the runner hands them to cxlvmm, to host checks
        // (run in the manifest's folder) and to rerun.sh (run from anywhere).
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        resolve::resolve(raw, &dir, find_guest)
            .map(|(kernels, topologies, cases)| Manifest {
                path: path.to_path_buf(),
                kernels,
                topologies,
                cases,
            })
            .map_err(|e| ManifestError(format!("{}: {}", path.display(), e.0)))
    }

    pub fn kernel(&self, name: &str) -> Option<&Kernel> {
        self.kernels.iter().find(|k| k.name == name)
    }

    pub fn topology(&self, name: &str) -> Option<&Topology> {
        self.topologies.iter().find(|t| t.name == name)
    }
}
