//! From the manifest as written to checked kernels, topologies and cases:
//! files exist and parse, names are unique, globs match, values are in range.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::raw::{RawBoot, RawCase, RawKernel, RawManifest, RawSettings, RawSize, RawTopology};
use super::{
    Action, Boot, Case, CaseBody, DiskSource, GuestFinder, Kernel, KernelBoot, ManifestError,
    ShareSource, Topology, TopologySource, DEFAULT_GUEST,
};

type Result<T> = std::result::Result<T, ManifestError>;

fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(ManifestError(msg.into()))
}

const DEFAULT_VCPUS: u8 = 2;
const DEFAULT_MEMORY: u64 = 1 << 30;
const DEFAULT_TIMEOUT_S: u64 = 300;
/// cxlvmm's own floor (`cxlvmm run --memory`).
const MIN_MEMORY: u64 = 64 << 20;

pub fn resolve(
    raw: RawManifest,
    dir: &Path,
    find_guest: GuestFinder,
) -> Result<(Vec<Kernel>, Vec<Topology>, Vec<Case>)> {
    if raw.kernels.is_empty() {
        return err("no [[kernel]]: a manifest needs at least one kernel");
    }
    if raw.cases.is_empty() {
        return err("no [[case]]: a manifest needs at least one case");
    }
    let kernels =
        unique_names("kernel", raw.kernels.iter().map(|k| k.name.as_str())).and_then(|_| {
            raw.kernels
                .iter()
                .map(|k| kernel(k, dir, find_guest))
                .collect::<Result<Vec<_>>>()
        })?;
    let topologies = if raw.topologies.is_empty() {
        vec![Topology {
            name: "default".into(),
            source: TopologySource::Builtin,
            persistent_files: Vec::new(),
            volatile_bytes: builtin_volatile_bytes(),
        }]
    } else {
        unique_names("topology", raw.topologies.iter().map(|t| t.name.as_str()))?;
        raw.topologies
            .iter()
            .map(|t| topology(t, dir))
            .collect::<Result<Vec<_>>>()?
    };
    unique_names("case", raw.cases.iter().map(|c| c.name.as_str()))?;
    check_settings("[defaults]", &raw.defaults)?;
    let kernel_names: Vec<&str> = kernels.iter().map(|k| k.name.as_str()).collect();
    let topo_names: Vec<&str> = topologies.iter().map(|t| t.name.as_str()).collect();
    let cases = raw
        .cases
        .iter()
        .map(|c| case(c, &raw.defaults, dir, &kernel_names, &topo_names))
        .collect::<Result<Vec<_>>>()?;
    for c in &cases {
        let Some((var, _)) = c.env.iter().find(|(_, v)| v.contains("{kernel_release}")) else {
            continue;
        };
        if let Some(k) = kernels
            .iter()
            .find(|k| c.kernels.contains(&k.name) && k.release.is_none())
        {
            return err(format!(
                "case {:?}: env: {var} uses {{kernel_release}}, but kernel {:?} has no release file (kernel-release beside a guest image, include/config/kernel.release in a build tree)",
                c.name, k.name
            ));
        }
    }
    Ok((kernels, topologies, cases))
}

/// Names end up in case ids, folder names and JUnit: keep them plain.
fn check_name(section: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'));
    if ok && name != "." && name != ".." {
        Ok(())
    } else {
        err(format!(
            "[[{section}]] name = {name:?}: use letters, digits, '.', '_', '-' or '+'"
        ))
    }
}

fn unique_names<'a>(section: &str, names: impl Iterator<Item = &'a str>) -> Result<()> {
    let mut seen = BTreeSet::new();
    for n in names {
        check_name(section, n)?;
        if !seen.insert(n) {
            return err(format!("[[{section}]] name = {n:?} appears twice"));
        }
    }
    Ok(())
}

fn existing_file(what: &str, dir: &Path, p: &Path) -> Result<PathBuf> {
    let full = dir.join(p);
    if full.is_file() {
        Ok(std::fs::canonicalize(&full).unwrap_or(full))
    } else {
        err(format!(
            "{what} = {:?}: no such file ({})",
            p.display().to_string(),
            full.display()
        ))
    }
}

fn read_release(p: PathBuf) -> Option<String> {
    let r = std::fs::read_to_string(p).ok()?;
    let r = r.trim();
    (!r.is_empty()).then(|| r.to_string())
}

/// What `{name}` in a case's `env` values stands for, per job.
pub const PLACEHOLDERS: &[&str] = &[
    "case",
    "kernel",
    "topology",
    "vcpus",
    "memory_mib",
    "kernel_release",
];

/// Replaces the known `{name}`s in `value` with `lookup(name)`.
pub fn expand_placeholders(value: &str, lookup: impl Fn(&str) -> String) -> String {
    let mut out = value.to_string();
    for name in PLACEHOLDERS {
        let token = format!("{{{name}}}");
        if out.contains(&token) {
            out = out.replace(&token, &lookup(name));
        }
    }
    out
}

/// `{word}`s in an env value that are not placeholders are typos.
fn check_placeholders(at: &str, key: &str, name: &str, value: &str) -> Result<()> {
    let mut rest = value;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        let word = &after[..close];
        let is_word = !word.is_empty() && word.chars().all(|c| c.is_ascii_lowercase() || c == '_');
        if is_word && !PLACEHOLDERS.contains(&word) {
            return err(format!(
                "{at}: {key}: {name} = {value:?}: unknown placeholder {{{word}}} (known: {})",
                PLACEHOLDERS.join(", ")
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

/// The bzImage of a kernel build tree, the way `make` leaves it.
pub fn find_build_tree_image(tree: &Path) -> Option<PathBuf> {
    let img = tree.join("arch/x86/boot/bzImage");
    img.is_file().then_some(img)
}

fn kernel(k: &RawKernel, dir: &Path, find_guest: GuestFinder) -> Result<Kernel> {
    let at = format!("kernel {:?}", k.name);
    let modules = match &k.modules {
        None => None,
        Some(m) => {
            let full = dir.join(m);
            if !full.is_dir() {
                return err(format!(
                    "{at}: modules = {:?}: no such folder ({})",
                    m.display().to_string(),
                    full.display()
                ));
            }
            Some(std::fs::canonicalize(&full).unwrap_or(full))
        }
    };
    let guest = k.guest.as_deref().unwrap_or(DEFAULT_GUEST);
    let guest_image =
        || find_guest(guest).map_err(|e| ManifestError(format!("{at}: guest = {guest:?}: {e}")));
    let mut release = None;
    let boot = match &k.image {
        None => {
            if k.initrd.is_some() {
                return err(format!("{at}: initrd needs image (a kernel to go with it)"));
            }
            let (kernel, _) = guest_image()?;
            release = read_release(kernel.with_file_name("kernel-release"));
            KernelBoot::Guest(guest.to_string())
        }
        Some(img) => {
            let full = dir.join(img);
            let kernel = if full.is_dir() {
                release = read_release(full.join("include/config/kernel.release"));
                find_build_tree_image(&full).ok_or_else(|| {
                    ManifestError(format!(
                        "{at}: image = {:?} is a folder without arch/x86/boot/bzImage (not a built kernel tree)",
                        img.display().to_string()
                    ))
                })?
            } else {
                existing_file(&format!("{at}: image"), dir, img)?
            };
            let initrd = match &k.initrd {
                Some(i) => existing_file(&format!("{at}: initrd"), dir, i)?,
                None => guest_image()?.1,
            };
            KernelBoot::Image { kernel, initrd }
        }
    };
    Ok(Kernel {
        name: k.name.clone(),
        boot,
        release,
        cmdline: k.cmdline.clone().unwrap_or_default(),
        modules,
    })
}

/// The volatile capacity of a topology's type-3 devices.
fn volatile_bytes(t: &fabric::topology::Topology) -> u64 {
    t.type3.iter().map(|d| d.volatile).sum()
}

/// The volatile capacity of cxlvmm's built-in topology.
fn builtin_volatile_bytes() -> u64 {
    volatile_bytes(&fabric::topology::Topology::default_topology())
}

fn topology(t: &RawTopology, dir: &Path) -> Result<Topology> {
    let at = format!("topology {:?}", t.name);
    let mut persistent_files = Vec::new();
    let mut volatile_bytes = 0;
    let source = match (&t.file, t.builtin, t.none) {
        (Some(f), None | Some(false), None | Some(false)) => {
            let full = existing_file(&format!("{at}: file"), dir, f)?;
            let text = std::fs::read_to_string(&full).map_err(|e| {
                ManifestError(format!("{at}: file = {:?}: {e}", f.display().to_string()))
            })?;
            let parsed = fabric::topology::Topology::from_toml_str(&text).map_err(|e| {
                ManifestError(format!("{at}: file = {:?}: {e}", f.display().to_string()))
            })?;
            let cwd = std::env::current_dir().unwrap_or_default();
            persistent_files = parsed
                .type3
                .iter()
                .filter_map(|d| d.persistent_path.as_deref())
                .map(|p| cwd.join(p))
                .collect();
            volatile_bytes = self::volatile_bytes(&parsed);
            TopologySource::File(full)
        }
        (None, Some(true), None | Some(false)) => {
            volatile_bytes = builtin_volatile_bytes();
            TopologySource::Builtin
        }
        (None, None | Some(false), Some(true)) => TopologySource::None,
        _ => {
            return err(format!(
                "{at}: give exactly one of file = \"...\", builtin = true or none = true"
            ))
        }
    };
    Ok(Topology {
        name: t.name.clone(),
        source,
        persistent_files,
        volatile_bytes,
    })
}

/// Checks of settings that do not depend on the case.
fn check_settings(at: &str, s: &RawSettings) -> Result<()> {
    let devices = s.disks.as_ref().map_or(0, Vec::len) + s.shares.as_ref().map_or(0, Vec::len);
    if devices > MAX_DISKS {
        return err(format!(
            "{at}: disks and shares: {devices} entries, at most {MAX_DISKS} fit on cxlvmm's root bus"
        ));
    }
    if let Some(v) = s.vcpus {
        if !(1..=254).contains(&v) {
            return err(format!("{at}: vcpus = {v}: must be 1 to 254"));
        }
    }
    if let Some(m) = &s.memory {
        memory(at, m)?;
    }
    if s.timeout == Some(0) {
        return err(format!("{at}: timeout = 0: must be at least 1 (seconds)"));
    }
    for p in s.ignore_splats.iter().flatten() {
        regex::Regex::new(p).map_err(|e| {
            ManifestError(format!("{at}: ignore_splats: {p:?} is not a regex: {e}"))
        })?;
    }
    for (name, value) in s.env.iter().flatten() {
        check_placeholders(at, "env", name, value)?;
    }
    for a in s.vmm_args.iter().flatten() {
        let flag = a.split('=').next().unwrap_or(a);
        if RUNNER_OWNED_ARGS.contains(&flag) {
            return err(format!(
                "{at}: vmm_args: {a:?}: the runner sets {flag} itself (use the case's own key)"
            ));
        }
    }
    for (key, table) in [("env", &s.env), ("vmm_env", &s.vmm_env)] {
        for name in table.iter().flat_map(|t| t.keys()) {
            if !is_var_name(name) {
                return err(format!("{at}: {key}: {name:?} is not a variable name"));
            }
        }
    }
    Ok(())
}

/// `cxlvmm run` options a job's own keys decide.
const RUNNER_OWNED_ARGS: &[&str] = &[
    "--script",
    "--serial-log",
    "--kernel",
    "--initrd",
    "--guest",
    "--modules",
    "--topology",
    "--no-cxl",
    "--vcpus",
    "--memory",
    "--timeout",
    "--cmdline",
    "--disk",
    "--share",
    "--root-share",
    "--api-socket",
];

/// A shell variable name: a letter or `_`, then letters, digits and `_`.
pub fn is_var_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn memory(at: &str, m: &RawSize) -> Result<u64> {
    let bytes = match m {
        RawSize::Mib(n) => n
            .checked_mul(1 << 20)
            .ok_or_else(|| ManifestError(format!("{at}: memory = {n}: too large")))?,
        RawSize::Text(t) => crate::size::parse_size(t)
            .map_err(|e| ManifestError(format!("{at}: memory = {t:?}: {e}")))?,
    };
    if bytes < MIN_MEMORY || bytes % 4096 != 0 {
        let shown = match m {
            RawSize::Mib(n) => n.to_string(),
            RawSize::Text(t) => format!("{t:?}"),
        };
        return err(format!(
            "{at}: memory = {shown}: must be at least 64M and a multiple of 4 KiB"
        ));
    }
    Ok(bytes)
}

/// Expands name patterns (exact names or globs) against `names`, keeping
/// manifest order; a pattern that matches nothing is an error.
pub(super) fn select(
    at: &str,
    key: &str,
    patterns: &[String],
    names: &[&str],
) -> Result<Vec<String>> {
    let mut picked = BTreeSet::new();
    for p in patterns {
        let pat = glob::Pattern::new(p)
            .map_err(|e| ManifestError(format!("{at}: {key}: {p:?} is not a name or glob: {e}")))?;
        let hits: Vec<&str> = names.iter().copied().filter(|n| pat.matches(n)).collect();
        if hits.is_empty() {
            return err(format!(
                "{at}: {key}: {p:?} matches no {} (have: {})",
                if key == "kernels" {
                    "kernel"
                } else {
                    "topology"
                },
                names.join(", ")
            ));
        }
        picked.extend(hits);
    }
    Ok(names
        .iter()
        .filter(|n| picked.contains(*n))
        .map(|n| n.to_string())
        .collect())
}

fn case(
    c: &RawCase,
    defaults: &RawSettings,
    dir: &Path,
    kernel_names: &[&str],
    topo_names: &[&str],
) -> Result<Case> {
    let at = format!("case {:?}", c.name);
    check_settings(&at, &c.settings())?;
    let s = c.settings().over(defaults);
    let boots = match &c.boots {
        None => vec![Boot::default()],
        Some(b) if b.is_empty() => return err(format!("{at}: boots is empty")),
        Some(b) => b
            .iter()
            .enumerate()
            .map(|(i, raw)| boot(&format!("{at}: boots[{i}]"), dir, raw))
            .collect::<Result<Vec<_>>>()?,
    };
    // A case whose every boot has its own body needs none of its own.
    let own_bodies = boots
        .iter()
        .map(|b| b.body.clone())
        .collect::<Option<Vec<_>>>();
    let body = match (body(&at, dir, &c.script, &c.command)?, own_bodies) {
        (Some(b), _) => b,
        (None, Some(bodies)) if c.boots.is_some() => bodies[0].clone(),
        (None, _) => {
            return err(format!(
                "{at}: give exactly one of script = \"FILE\" or command = \"...\" (or one in every boot)"
            ))
        }
    };
    for (key, cmd) in [("check", &c.check), ("prepare", &c.prepare)] {
        if cmd.as_deref().is_some_and(|x| x.trim().is_empty()) {
            return err(format!("{at}: {key} is empty"));
        }
    }
    let all = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let kernels = match &s.kernels {
        Some(p) => select(&at, "kernels", p, kernel_names)?,
        None => all(kernel_names),
    };
    let topologies = match &s.topologies {
        Some(p) => select(&at, "topologies", p, topo_names)?,
        None => all(topo_names),
    };
    let mut actions: Vec<Action> = Vec::new();
    for a in &c.actions {
        check_name("case.actions", &a.name).map_err(|e| ManifestError(format!("{at}: {}", e.0)))?;
        if actions.iter().any(|b| b.name == a.name) {
            return err(format!("{at}: actions: name = {:?} appears twice", a.name));
        }
        if a.command.trim().is_empty() {
            return err(format!("{at}: actions: {:?}: command is empty", a.name));
        }
        actions.push(Action {
            name: a.name.clone(),
            command: a.command.clone(),
        });
    }
    let disks = s
        .disks
        .iter()
        .flatten()
        .map(|d| disk(&at, dir, d))
        .collect::<Result<Vec<_>>>()?;
    let shares = s
        .shares
        .iter()
        .flatten()
        .map(|e| share(&at, dir, e))
        .collect::<Result<Vec<_>>>()?;
    let tags: Vec<&str> = shares.iter().map(ShareSource::tag).collect();
    if let Some(t) = tags
        .iter()
        .enumerate()
        .find_map(|(i, t)| tags[..i].contains(t).then_some(t))
    {
        return err(format!("{at}: shares: tag {t:?} appears twice"));
    }
    let ignore_splats = s
        .ignore_splats
        .iter()
        .flatten()
        .map(|p| regex::Regex::new(p).expect("checked in check_settings"))
        .collect();
    Ok(Case {
        name: c.name.clone(),
        body,
        kernels,
        topologies,
        vcpus: s.vcpus.unwrap_or(DEFAULT_VCPUS),
        memory: match &s.memory {
            Some(m) => memory(&at, m)?,
            None => DEFAULT_MEMORY,
        },
        timeout: s.timeout.unwrap_or(DEFAULT_TIMEOUT_S),
        expect_exit: s.expect_exit.unwrap_or(0),
        ignore_splats,
        cmdline: s.cmdline.unwrap_or_default(),
        env: s.env.unwrap_or_default(),
        vmm_env: s.vmm_env.unwrap_or_default(),
        dmesg: s.dmesg.unwrap_or(true),
        vmm_args: s.vmm_args.unwrap_or_default(),
        check: c.check.clone(),
        prepare: c.prepare.clone(),
        boots,
        root_share: c.root_share.unwrap_or(false),
        alone: c.alone.unwrap_or(false),
        actions,
        disks,
        shares,
    })
}

/// A guest body from `script` or `command`: None when neither is given.
fn body(
    at: &str,
    dir: &Path,
    script: &Option<PathBuf>,
    command: &Option<String>,
) -> Result<Option<CaseBody>> {
    match (script, command) {
        (Some(p), None) => {
            let full = existing_file(&format!("{at}: script"), dir, p)?;
            let text = std::fs::read_to_string(&full).map_err(|e| {
                ManifestError(format!("{at}: script = {:?}: {e}", p.display().to_string()))
            })?;
            Ok(Some(CaseBody::Script { path: full, text }))
        }
        (None, Some(cmd)) if !cmd.trim().is_empty() => Ok(Some(CaseBody::Command(cmd.clone()))),
        (None, Some(_)) => err(format!("{at}: command is empty")),
        (Some(_), Some(_)) => err(format!(
            "{at}: give exactly one of script = \"FILE\" or command = \"...\", not both"
        )),
        (None, None) => Ok(None),
    }
}

fn boot(at: &str, dir: &Path, b: &RawBoot) -> Result<Boot> {
    let settings = RawSettings {
        env: b.env.clone(),
        ..RawSettings::default()
    };
    check_settings(at, &settings)?;
    if b.prepare.as_deref().is_some_and(|x| x.trim().is_empty()) {
        return err(format!("{at}: prepare is empty"));
    }
    let power_cut_on = match &b.power_cut_on {
        Some(p) => Some(regex::Regex::new(p).map_err(|e| {
            ManifestError(format!("{at}: power_cut_on: {p:?} is not a regex: {e}"))
        })?),
        None => None,
    };
    Ok(Boot {
        body: body(at, dir, &b.script, &b.command)?,
        env: b.env.clone().unwrap_or_default(),
        prepare: b.prepare.clone(),
        power_cut_on,
    })
}

/// The longest virtio-fs tag (Virtio 1.2 §5.11.4).
const MAX_TAG: usize = 36;

impl ShareSource {
    pub fn tag(&self) -> &str {
        match self {
            ShareSource::Dir { tag, .. } | ShareSource::JobDir { tag, .. } => tag,
        }
    }
}

/// `X:ro` → (X, read-only); `X:rw` and a bare `X` → read-write.
fn split_mode(entry: &str) -> (&str, bool) {
    match entry.rsplit_once(':') {
        Some((rest, "ro")) => (rest, true),
        Some((rest, "rw")) => (rest, false),
        _ => (entry, false),
    }
}

/// One `shares` entry: `DIR:TAG`, `DIR:TAG:ro`, or `job:TAG[:ro]` (a fresh
/// folder in the job's output).
fn share(at: &str, dir: &Path, entry: &str) -> Result<ShareSource> {
    let bad = |why: &str| ManifestError(format!("{at}: shares: {entry:?}: {why}"));
    let (body, read_only) = split_mode(entry);
    let Some((path, tag)) = body.rsplit_once(':').filter(|(p, _)| !p.is_empty()) else {
        return Err(bad("expected DIR:TAG, DIR:TAG:ro or job:TAG"));
    };
    if tag.is_empty() || tag.len() > MAX_TAG {
        return Err(bad("a tag is 1 to 36 bytes"));
    }
    if tag
        .chars()
        .any(|c| c == ',' || c == '/' || c.is_whitespace())
    {
        return Err(bad("a tag has no comma, slash or whitespace"));
    }
    if path == "job" {
        return Ok(ShareSource::JobDir {
            tag: tag.into(),
            read_only,
        });
    }
    let full = dir.join(path);
    if !full.is_dir() {
        return Err(bad(&format!("no such directory ({})", full.display())));
    }
    Ok(ShareSource::Dir {
        path: std::fs::canonicalize(&full).unwrap_or(full),
        tag: tag.into(),
        read_only,
    })
}

/// Largest number of disks cxlvmm puts on its root bus.
const MAX_DISKS: usize = 31;

/// One `disks` entry: `FILE`, `FILE:ro`, `scratch:SIZE` or `scratch:SIZE:ro`.
fn disk(at: &str, dir: &Path, entry: &str) -> Result<DiskSource> {
    let (body, read_only) = split_mode(entry);
    let bad = |why: String| ManifestError(format!("{at}: disks: {entry:?}: {why}"));
    if let Some(size) = body.strip_prefix("scratch:") {
        let size = crate::size::parse_size(size).map_err(bad)?;
        if size == 0 || size % 512 != 0 {
            return Err(bad(
                "a scratch disk's size must be a whole number of 512-byte sectors".into(),
            ));
        }
        return Ok(DiskSource::Scratch { size, read_only });
    }
    if body.is_empty() {
        return Err(bad("expected FILE[:ro] or scratch:SIZE[:ro]".into()));
    }
    let path = existing_file(&format!("{at}: disks"), dir, Path::new(body))?;
    Ok(DiskSource::File { path, read_only })
}
