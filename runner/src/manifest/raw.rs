//! The manifest as written: serde shapes that reject unknown keys. Nothing
//! here checks files or cross-references; `resolve` does.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawManifest {
    #[serde(default)]
    pub defaults: RawSettings,
    #[serde(default, rename = "kernel")]
    pub kernels: Vec<RawKernel>,
    #[serde(default, rename = "topology")]
    pub topologies: Vec<RawTopology>,
    #[serde(default, rename = "case")]
    pub cases: Vec<RawCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKernel {
    pub name: String,
    /// A bzImage, an ELF vmlinux, or a kernel build tree.
    pub image: Option<PathBuf>,
    /// The initramfs; default: the one of the built guest image `guest`.
    pub initrd: Option<PathBuf>,
    /// A built guest image (`guest-images/build`): its kernel unless `image`
    /// is given, and its initramfs unless `initrd` is.
    pub guest: Option<String>,
    /// A module tree: a kernel build tree, an installed lib/modules/<release>
    /// or a folder holding one (`cxlvmm run --modules`).
    pub modules: Option<PathBuf>,
    pub cmdline: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTopology {
    pub name: String,
    pub file: Option<PathBuf>,
    pub builtin: Option<bool>,
    /// A plain machine without a CXL hierarchy (`cxlvmm run --no-cxl`).
    pub none: Option<bool>,
}

/// A size: a number of MiB, or a string with a suffix ("512M", "2G").
#[derive(Clone, Debug)]
pub enum RawSize {
    Mib(u64),
    Text(String),
}

impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RawSize;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number of MiB or a size such as \"512M\" or \"2G\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawSize, E> {
                u64::try_from(v)
                    .map(RawSize::Mib)
                    .map_err(|_| E::custom(format!("{v} is not a size")))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawSize, E> {
                Ok(RawSize::Mib(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawSize, E> {
                Ok(RawSize::Text(v.to_string()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// One host-side action a case's guest can ask for by name.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAction {
    pub name: String,
    /// Host shell command run when the guest asks for the action.
    pub command: String,
}

/// One boot of a multi-boot case.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBoot {
    /// This boot's guest script or command (default: the case's).
    pub script: Option<PathBuf>,
    pub command: Option<String>,
    /// Guest environment over the case's.
    pub env: Option<BTreeMap<String, String>>,
    /// Host command run before this boot; `KEY=VALUE` lines on its output
    /// join this boot's guest environment.
    pub prepare: Option<String>,
    /// A regex: the runner kills cxlvmm (SIGKILL, a power cut) at the
    /// first console line that matches it.
    pub power_cut_on: Option<String>,
}

/// The per-case keys that `[defaults]` may also set.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    pub kernels: Option<Vec<String>>,
    pub topologies: Option<Vec<String>>,
    pub vcpus: Option<u8>,
    pub memory: Option<RawSize>,
    pub timeout: Option<u64>,
    pub expect_exit: Option<u8>,
    pub shares: Option<Vec<String>>,
    pub disks: Option<Vec<String>>,
    pub ignore_splats: Option<Vec<String>>,
    pub cmdline: Option<String>,
    pub env: Option<BTreeMap<String, String>>,
    pub vmm_env: Option<BTreeMap<String, String>>,
    pub dmesg: Option<bool>,
    /// More `cxlvmm run` options, before `--script`.
    pub vmm_args: Option<Vec<String>>,
}

// serde cannot combine `flatten` with `deny_unknown_fields`, so a case
// lists the settings keys again; `settings()` splits them off.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCase {
    pub name: String,
    pub script: Option<PathBuf>,
    pub command: Option<String>,
    /// Host command run after the guest, judging its output.
    pub check: Option<String>,
    /// Host command run before the first boot of every try; its `KEY=VALUE`
    /// output lines join the guest's environment.
    pub prepare: Option<String>,
    /// The boots of one job, in order, over the same job folder (default:
    /// one boot of the case's script).
    pub boots: Option<Vec<RawBoot>>,
    /// Run the case on the host's root filesystem (`cxlvmm run --root-share`).
    pub root_share: Option<bool>,
    /// Run with no other job beside it under `--jobs N` (a measurement of
    /// time, files or host settings shared with other cases).
    pub alone: Option<bool>,
    #[serde(default)]
    pub actions: Vec<RawAction>,
    pub kernels: Option<Vec<String>>,
    pub topologies: Option<Vec<String>>,
    pub vcpus: Option<u8>,
    pub memory: Option<RawSize>,
    pub timeout: Option<u64>,
    pub expect_exit: Option<u8>,
    pub shares: Option<Vec<String>>,
    pub disks: Option<Vec<String>>,
    pub ignore_splats: Option<Vec<String>>,
    pub cmdline: Option<String>,
    pub env: Option<BTreeMap<String, String>>,
    pub vmm_env: Option<BTreeMap<String, String>>,
    pub dmesg: Option<bool>,
    /// More `cxlvmm run` options, before `--script`.
    pub vmm_args: Option<Vec<String>>,
}

impl RawCase {
    pub fn settings(&self) -> RawSettings {
        RawSettings {
            kernels: self.kernels.clone(),
            topologies: self.topologies.clone(),
            vcpus: self.vcpus,
            memory: self.memory.clone(),
            timeout: self.timeout,
            expect_exit: self.expect_exit,
            shares: self.shares.clone(),
            disks: self.disks.clone(),
            ignore_splats: self.ignore_splats.clone(),
            cmdline: self.cmdline.clone(),
            env: self.env.clone(),
            vmm_env: self.vmm_env.clone(),
            dmesg: self.dmesg,
            vmm_args: self.vmm_args.clone(),
        }
    }
}

impl RawSettings {
    /// `self` over `defaults`: scalars and lists replace, tables merge key
    /// by key, `ignore_splats` adds up and `cmdline` is appended.
    pub fn over(self, defaults: &RawSettings) -> RawSettings {
        fn merge(
            case: Option<BTreeMap<String, String>>,
            base: &Option<BTreeMap<String, String>>,
        ) -> Option<BTreeMap<String, String>> {
            match (base.clone(), case) {
                (Some(mut b), Some(c)) => {
                    b.extend(c);
                    Some(b)
                }
                (b, c) => c.or(b),
            }
        }
        let ignore_splats = match (&defaults.ignore_splats, self.ignore_splats) {
            (Some(d), Some(c)) => Some(d.iter().cloned().chain(c).collect()),
            (d, c) => c.or_else(|| d.clone()),
        };
        let cmdline = match (&defaults.cmdline, self.cmdline) {
            (Some(d), Some(c)) => Some(format!("{d} {c}")),
            (d, c) => c.or_else(|| d.clone()),
        };
        RawSettings {
            kernels: self.kernels.or_else(|| defaults.kernels.clone()),
            topologies: self.topologies.or_else(|| defaults.topologies.clone()),
            vcpus: self.vcpus.or(defaults.vcpus),
            memory: self.memory.or_else(|| defaults.memory.clone()),
            timeout: self.timeout.or(defaults.timeout),
            expect_exit: self.expect_exit.or(defaults.expect_exit),
            shares: self.shares.or_else(|| defaults.shares.clone()),
            disks: self.disks.or_else(|| defaults.disks.clone()),
            ignore_splats,
            cmdline,
            env: merge(self.env, &defaults.env),
            vmm_env: merge(self.vmm_env, &defaults.vmm_env),
            dmesg: self.dmesg.or(defaults.dmesg),
            vmm_args: self.vmm_args.or_else(|| defaults.vmm_args.clone()),
        }
    }
}
