//! `cxlvmm run --modules DIR`: a kernel's module tree packed as an extra
//! newc archive that goes after the initramfs, so that a kernel under
//! development finds its modules in `/lib/modules/<release>/` without a
//! shared filesystem. Linux unpacks concatenated archives in order
//! (init/initramfs.c), later files replacing earlier ones.
//!
//! DIR is one of
//! - a kernel build tree (`include/config/kernel.release`): every `*.ko`
//!   goes where `make modules_install` puts it (`kernel/<path>`), with
//!   `modules.order` and `modules.builtin*`;
//! - an installed tree `lib/modules/<release>` (has `modules.dep` or `kernel/`);
//! - a folder holding exactly one `lib/modules/<release>` (or `usr/lib/...`).
//!
//! Without a `modules.dep` in the archive, it carries `/cxlvmm/depmod` with
//! the release, and the guest image's /init runs `depmod` for it
//! (docs/guest-contract.md).

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::initramfs::NewcWriter;

/// Most files one tree may hold (a distribution kernel has about 5,000).
pub const MAX_FILES: usize = 100_000;
/// Deepest folder nesting walked below DIR.
const MAX_DEPTH: usize = 32;
/// Where the archive names the release when /init must run depmod.
pub const DEPMOD_MARKER: &str = "cxlvmm/depmod";

/// What is wrong with DIR or a file in it (the caller names DIR).
#[derive(Debug, thiserror::Error)]
pub enum ModulesError {
    #[error("no such folder")]
    NotADir,
    #[error(
        "no kernel release found (expected a kernel build tree with include/config/kernel.release, \
         a lib/modules/<release> folder with modules.dep or kernel/, or a folder holding one lib/modules/<release>)"
    )]
    NoRelease,
    #[error("{path}: holds {count} module folders ({names}); pass the one to use")]
    SeveralReleases {
        path: PathBuf,
        count: usize,
        names: String,
    },
    #[error("{path}: kernel release {release:?} is not a plain folder name")]
    BadRelease { path: PathBuf, release: String },
    #[error("no module files found")]
    Empty,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: file name is not UTF-8")]
    BadName(PathBuf),
    #[error("more than {MAX_FILES} files")]
    TooManyFiles,
    #[error("{path}: folders nested deeper than {MAX_DEPTH}")]
    TooDeep { path: PathBuf },
    #[error("the module archive needs more than {limit} bytes (what fits in guest memory beside the kernel and initramfs)")]
    TooLarge { limit: u64 },
}

type Result<T> = std::result::Result<T, ModulesError>;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ModulesError + '_ {
    move |source| ModulesError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One file of the tree: its path below `lib/modules/<release>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub source: Source,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Copied from this host file.
    File(PathBuf),
    /// Made here (a build tree's `modules.order`, rewritten).
    Bytes(Vec<u8>),
}

/// What `--modules DIR` found: the release and the files to pack.
#[derive(Debug, Clone)]
pub struct ModuleTree {
    pub release: String,
    pub members: Vec<Member>,
}

impl ModuleTree {
    /// Finds the release and the files of DIR (see the module comment).
    pub fn find(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(ModulesError::NotADir);
        }
        let release_file = dir.join("include/config/kernel.release");
        let tree = if release_file.is_file() {
            let text = std::fs::read_to_string(&release_file).map_err(io_err(&release_file))?;
            let release = checked_release(&release_file, text.trim())?;
            ModuleTree {
                release,
                members: build_tree_members(dir)?,
            }
        } else if let Some(installed) = installed_tree(dir)? {
            let release = installed
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let release = checked_release(&installed, release)?;
            let mut members = Vec::new();
            walk(&installed, "", 0, &mut |name, path| {
                push_file(&mut members, name.to_string(), path)
            })?;
            ModuleTree { release, members }
        } else {
            return Err(ModulesError::NoRelease);
        };
        if tree.members.is_empty() {
            return Err(ModulesError::Empty);
        }
        Ok(tree)
    }

    /// Whether the tree brings its own `modules.dep` (else the guest runs depmod).
    pub fn has_modules_dep(&self) -> bool {
        self.members.iter().any(|m| m.name == "modules.dep")
    }

    /// Packs the tree as a newc archive of `/lib/modules/<release>/...`
    /// (folders first, each once), reading each file straight into the
    /// archive. Fails once the archive would pass `limit` bytes.
    pub fn archive(&self, limit: u64) -> Result<Vec<u8>> {
        let base = format!("lib/modules/{}", self.release);
        let mut dirs = BTreeSet::from(["lib".to_string(), "lib/modules".to_string(), base.clone()]);
        for m in &self.members {
            let mut parent = Path::new(&m.name).parent();
            while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
                dirs.insert(format!("{base}/{}", p.display()));
                parent = p.parent();
            }
        }
        let mut w = NewcWriter::new();
        let too_large = || ModulesError::TooLarge { limit };
        let check = |len: u64| {
            if len > limit {
                Err(too_large())
            } else {
                Ok(())
            }
        };
        // BTreeSet order puts "a" before "a/b": parents come first.
        for d in &dirs {
            w.dir(d, 0o755);
        }
        for m in &self.members {
            let name = format!("{base}/{}", m.name);
            match &m.source {
                Source::Bytes(b) => w.file(&name, 0o644, b),
                Source::File(path) => {
                    let mut f = File::open(path).map_err(io_err(path))?;
                    let size = f.metadata().map_err(io_err(path))?.len();
                    // Header, name and padding: under 512 bytes.
                    check(w.len() as u64 + size + 512)?;
                    let size = u32::try_from(size).map_err(|_| too_large())?;
                    w.file_from(&name, 0o644, size, &mut f)
                        .map_err(io_err(path))?;
                }
            }
            check(w.len() as u64)?;
        }
        if !self.has_modules_dep() {
            w.dir("cxlvmm", 0o755);
            w.file(
                DEPMOD_MARKER,
                0o644,
                format!("{}\n", self.release).as_bytes(),
            );
        }
        let out = w.finish();
        check(out.len() as u64)?;
        Ok(out)
    }
}

/// A release names one folder: no slash, no dot names, printable.
fn checked_release(path: &Path, release: &str) -> Result<String> {
    let ok = !release.is_empty()
        && release != "."
        && release != ".."
        && release.chars().all(|c| c.is_ascii_graphic() && c != '/');
    if ok {
        Ok(release.to_string())
    } else {
        Err(ModulesError::BadRelease {
            path: path.to_owned(),
            release: release.to_string(),
        })
    }
}

/// DIR itself when it is an installed `lib/modules/<release>`, else the one
/// `lib/modules/<release>` (or `usr/lib/modules/<release>`) inside it.
fn installed_tree(dir: &Path) -> Result<Option<PathBuf>> {
    // A kernel source tree has a kernel/ folder too, and a Kconfig.
    let has_kernel_dir = dir.join("kernel").is_dir() && !dir.join("Kconfig").exists();
    if dir.join("modules.dep").is_file() || has_kernel_dir {
        return Ok(Some(dir.to_owned()));
    }
    for parent in ["lib/modules", "usr/lib/modules"] {
        let parent = dir.join(parent);
        if !parent.is_dir() {
            continue;
        }
        let mut found = Vec::new();
        for e in std::fs::read_dir(&parent).map_err(io_err(&parent))? {
            let e = e.map_err(io_err(&parent))?;
            if e.file_type().map_err(io_err(&parent))?.is_dir() {
                found.push(e.path());
            }
        }
        found.sort();
        match found.len() {
            0 => {}
            1 => return Ok(found.pop()),
            count => {
                let names: Vec<_> = found
                    .iter()
                    .filter_map(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .collect();
                return Err(ModulesError::SeveralReleases {
                    path: parent,
                    count,
                    names: names.join(", "),
                });
            }
        }
    }
    Ok(None)
}

/// A build tree's modules where `make modules_install` puts them:
/// `kernel/<path>.ko`, `modules.order` rewritten to those names, and the
/// `modules.builtin*` files as they are.
fn build_tree_members(tree: &Path) -> Result<Vec<Member>> {
    let mut members = Vec::new();
    walk(tree, "", 0, &mut |name, path| {
        if name.ends_with(".ko") {
            push_file(&mut members, format!("kernel/{name}"), path)?;
        }
        Ok(())
    })?;
    let order = tree.join("modules.order");
    if order.is_file() {
        let text = std::fs::read_to_string(&order).map_err(io_err(&order))?;
        members.push(Member {
            name: "modules.order".into(),
            source: Source::Bytes(installed_order(&text).into_bytes()),
        });
    }
    for f in [
        "modules.builtin",
        "modules.builtin.modinfo",
        "modules.builtin.ranges",
    ] {
        let path = tree.join(f);
        if path.is_file() {
            members.push(Member {
                name: f.into(),
                source: Source::File(path),
            });
        }
    }
    Ok(members)
}

/// A build tree's `modules.order` (`drivers/x/y.o` since 6.2, `.ko`
/// before) as installed (`kernel/drivers/x/y.ko`), as scripts/Makefile.modinst does.
fn installed_order(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let stem = line.strip_suffix(".o").unwrap_or(line);
        let ko = if stem.ends_with(".ko") {
            stem.to_string()
        } else {
            format!("{stem}.ko")
        };
        if ko.starts_with("kernel/") {
            out.push_str(&ko);
        } else {
            out.push_str("kernel/");
            out.push_str(&ko);
        }
        out.push('\n');
    }
    out
}

fn push_file(members: &mut Vec<Member>, name: String, path: &Path) -> Result<()> {
    if members.len() >= MAX_FILES {
        return Err(ModulesError::TooManyFiles);
    }
    members.push(Member {
        name,
        source: Source::File(path.to_owned()),
    });
    Ok(())
}

/// Calls `visit(relative name, path)` for every regular file below `dir`,
/// in name order; symbolic links are not followed (an installed tree's
/// `build` and `source` point into whole source trees).
fn walk(
    dir: &Path,
    prefix: &str,
    depth: usize,
    visit: &mut dyn FnMut(&str, &Path) -> Result<()>,
) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(ModulesError::TooDeep {
            path: dir.to_owned(),
        });
    }
    let mut entries = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let e = e.map_err(io_err(dir))?;
        let kind = e.file_type().map_err(io_err(&e.path()))?;
        entries.push((e.file_name(), kind));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, kind) in entries {
        let path = dir.join(&name);
        let name = name
            .to_str()
            .ok_or_else(|| ModulesError::BadName(path.clone()))?;
        let rel = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        };
        if kind.is_dir() {
            if name.starts_with('.') {
                continue; // .git and the like
            }
            walk(&path, &rel, depth + 1, visit)?;
        } else if kind.is_file() {
            visit(&rel, &path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "modules_tests.rs"]
mod tests;
