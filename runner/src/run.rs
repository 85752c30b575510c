//! Running the selected jobs: each in its own folder under `--out`, up to
//! `--jobs` at a time, retried on infrastructure failures, judged, and
//! reported as it finishes.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::action::ActionHook;
use crate::exec::{self, Observed, RunSpec};
use crate::manifest::{CaseBody, DiskSource, KernelBoot, ShareSource, TopologySource};
use crate::matrix::Job;
use crate::report::live::Live;
use crate::report::{Attempt, CaseResult};
use crate::script;
use crate::verdict::{self, Analysis, Evidence, Status};

pub struct Options<'a> {
    /// The cxlvmm binary (the running one).
    pub exe: &'a Path,
    pub out: &'a Path,
    pub manifest_dir: &'a Path,
    pub jobs: usize,
    pub retries: u32,
    /// Count guest crashes and timeouts as infrastructure failures.
    pub infra_crashes: bool,
    pub log_cap: u64,
    pub hook: &'a dyn ActionHook,
}

/// Console kept in memory per result, for the JUnit report.
const TAIL_BYTES: usize = 64 << 10;

/// Runs every job; results come back in the jobs' order.
pub fn run_all(jobs: &[Job], opts: &Options, live: &Live) -> Vec<CaseResult> {
    let next = AtomicUsize::new(0);
    let slots: Mutex<Vec<Option<CaseResult>>> = Mutex::new(vec![None; jobs.len()]);
    std::thread::scope(|s| {
        for _ in 0..opts.jobs.clamp(1, jobs.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(i) else { break };
                live.started(&job.id());
                let r = run_job(job, opts, live);
                live.finished(&r);
                slots.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
            });
        }
    });
    slots
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|r| r.expect("every job ran"))
        .collect()
}

fn retryable(status: Status, infra_crashes: bool) -> bool {
    status == Status::Infra || (infra_crashes && matches!(status, Status::Crash | Status::Timeout))
}

fn run_job(job: &Job, opts: &Options, live: &Live) -> CaseResult {
    let id = job.id();
    let dir = opts.out.join(&id);
    let mut attempts: Vec<Attempt> = Vec::new();
    let _ = std::fs::remove_dir_all(&dir);
    loop {
        let mut r = run_once(job, &dir, opts);
        let tries_left = (attempts.len() as u32) < opts.retries;
        if !(retryable(r.status, opts.infra_crashes) && tries_left) {
            r.attempts = attempts;
            return r;
        }
        let keep = dir.join(format!("try-{}", attempts.len() + 1));
        let moved = move_files_into(&dir, &keep);
        live.note(&format!(
            "RETRY   {id}: try {} ended {} ({}), {}",
            attempts.len() + 1,
            r.status.name(),
            r.reason,
            match &moved {
                Ok(()) => format!("its files are in {}", keep.display()),
                Err(e) => format!("its files could not be kept: {e}"),
            }
        ));
        attempts.push(Attempt {
            status: r.status,
            reason: r.reason,
            dir: keep.display().to_string(),
        });
    }
}

/// Moves the plain files of `dir` into `into` (a new folder inside it).
fn move_files_into(dir: &Path, into: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(into)?;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_file() {
            std::fs::rename(e.path(), into.join(e.file_name()))?;
        }
    }
    Ok(())
}

/// cxlvmm's arguments after `run`, for one job.
pub fn vmm_args(
    job: &Job,
    script: &Path,
    disks: &[OsString],
    shares: &[OsString],
) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |s: &str| a.push(s.into());
    match &job.kernel.boot {
        KernelBoot::Guest(v) => {
            push("--guest");
            push(v);
        }
        KernelBoot::Image { kernel, initrd } => {
            push("--kernel");
            a.push(kernel.into());
            a.push("--initrd".into());
            a.push(initrd.into());
        }
    }
    if let Some(m) = &job.kernel.modules {
        a.push("--modules".into());
        a.push(m.into());
    }
    match &job.topology.source {
        TopologySource::Builtin => {}
        TopologySource::File(f) => {
            a.push("--topology".into());
            a.push(f.into());
        }
        TopologySource::None => a.push("--no-cxl".into()),
    }
    let c = job.case;
    for (flag, value) in [
        ("--vcpus", c.vcpus.to_string()),
        ("--memory", format!("{}M", c.memory >> 20)),
        ("--timeout", c.timeout.to_string()),
    ] {
        a.push(flag.into());
        a.push(value.into());
    }
    let cmdline = [job.kernel.cmdline.trim(), c.cmdline.trim()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    if !cmdline.is_empty() {
        a.push("--cmdline".into());
        a.push(cmdline.into());
    }
    for d in disks {
        a.push("--disk".into());
        a.push(d.clone());
    }
    for s in shares {
        a.push("--share".into());
        a.push(s.clone());
    }
    a.push("--script".into());
    a.push(script.into());
    a
}

/// The `--share` values of a job whose folder is `dir`: host directories
/// in place; `job:TAG` ones made empty as `dir/share-TAG`, afresh for
/// every try.
pub fn prepare_shares(shares: &[ShareSource], dir: &Path) -> std::io::Result<Vec<OsString>> {
    let mut out = Vec::new();
    for s in shares {
        let v = match s {
            ShareSource::Dir {
                path,
                tag,
                read_only,
            } => {
                let mut v = path.clone().into_os_string();
                v.push(format!(":{tag}{}", if *read_only { ":ro" } else { "" }));
                v
            }
            ShareSource::JobDir { tag } => {
                let d = dir.join(format!("share-{tag}"));
                if d.exists() {
                    std::fs::remove_dir_all(&d)?;
                }
                std::fs::create_dir_all(&d)?;
                let mut v = d.into_os_string();
                v.push(format!(":{tag}"));
                v
            }
        };
        out.push(v);
    }
    Ok(out)
}

/// The `--disk` values of a job whose folder is `dir`: read-only image
/// files in place; read-write ones copied to `dir/disk<N>.img`, and scratch
/// disks made there (sparse), afresh for every try.
pub fn prepare_disks(disks: &[DiskSource], dir: &Path) -> std::io::Result<Vec<OsString>> {
    let mut out = Vec::new();
    for (i, d) in disks.iter().enumerate() {
        let copy = dir.join(format!("disk{i}.img"));
        let (path, read_only) = match d {
            DiskSource::File {
                path,
                read_only: true,
            } => (path.clone(), true),
            DiskSource::File { path, .. } => {
                std::fs::copy(path, &copy).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("disk {}: {e}", path.display()))
                })?;
                // The copy is the job's to write, whatever the original's mode.
                std::fs::set_permissions(
                    &copy,
                    std::os::unix::fs::PermissionsExt::from_mode(0o644),
                )?;
                (copy, false)
            }
            DiskSource::Scratch { size, read_only } => {
                let _ = std::fs::remove_file(&copy);
                std::fs::File::create(&copy)?.set_len(*size)?;
                (copy, *read_only)
            }
        };
        let mut v = path.into_os_string();
        if read_only {
            v.push(":ro");
        }
        out.push(v);
    }
    Ok(out)
}

/// The command line that runs a job alone, for people.
pub fn rerun_line(
    exe: &Path,
    env: &[(String, String)],
    args: &[OsString],
    console: &Path,
) -> String {
    let q = |s: &str| {
        if !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/._-=:,+".contains(&b))
        {
            s.to_string()
        } else {
            script::quote(s)
        }
    };
    let mut parts: Vec<String> = env.iter().map(|(k, v)| format!("{k}={}", q(v))).collect();
    parts.push(q(&exe.to_string_lossy()));
    parts.push("run".into());
    parts.extend(args.iter().map(|a| q(&a.to_string_lossy())));
    parts.push("--serial-log".into());
    parts.push(q(&console.to_string_lossy()));
    parts.join(" ")
}

fn run_once(job: &Job, dir: &Path, opts: &Options) -> CaseResult {
    let id = job.id();
    let case = job.case;
    let setup = std::fs::create_dir_all(dir).and_then(|_| std::fs::canonicalize(dir));
    let dir = match setup {
        Ok(d) => d,
        Err(e) => {
            let obs = Observed {
                spawn_error: Some(format!("{}: {e}", dir.display())),
                ..Observed::default()
            };
            return result(job, dir, &obs, &Analysis::default(), None, String::new());
        }
    };
    let body = match &case.body {
        CaseBody::Script { text, .. } => text.clone(),
        CaseBody::Command(c) => c.clone(),
    };
    let lookup = &|name: &str| match name {
        "case" => case.name.clone(),
        "kernel" => job.kernel.name.clone(),
        "topology" => job.topology.name.clone(),
        "vcpus" => case.vcpus.to_string(),
        "memory_mib" => (case.memory >> 20).to_string(),
        "kernel_release" => job.kernel.release.clone().unwrap_or_default(),
        _ => String::new(),
    };
    let guest_env: std::collections::BTreeMap<String, String> = case
        .env
        .iter()
        .map(|(k, v)| (k.clone(), crate::manifest::expand_placeholders(v, lookup)))
        .collect();
    let ctx = script::Context {
        case: &case.name,
        kernel: &job.kernel.name,
        topology: &job.topology.name,
        env: &guest_env,
        dmesg: case.dmesg,
    };
    let script_path = dir.join("script.sh");
    let env: Vec<(String, String)> = case
        .vmm_env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let devices =
        prepare_disks(&case.disks, &dir).and_then(|d| Ok((d, prepare_shares(&case.shares, &dir)?)));
    let (disks, shares) = match devices {
        Ok(d) => d,
        Err(e) => {
            let obs = Observed {
                spawn_error: Some(format!("{}: {e}", dir.display())),
                ..Observed::default()
            };
            return result(job, &dir, &obs, &Analysis::default(), None, String::new());
        }
    };
    let args = vmm_args(job, &script_path, &disks, &shares);
    let rerun = rerun_line(opts.exe, &env, &args, &dir.join("rerun-console.log"));
    let written = std::fs::write(&script_path, script::guest_script(&ctx, &body)).and_then(|_| {
        std::fs::write(
            dir.join("rerun.sh"),
            format!("#!/bin/sh\n# Runs {id} alone, as `cxlvmm test` ran it.\n{rerun} \"$@\"\n"),
        )
    });
    if let Err(e) = written {
        let obs = Observed {
            spawn_error: Some(format!("{}: {e}", dir.display())),
            ..Observed::default()
        };
        return result(job, &dir, &obs, &Analysis::default(), None, rerun);
    }
    let obs = exec::run(&RunSpec {
        exe: opts.exe,
        args,
        env,
        out_dir: &dir,
        manifest_dir: opts.manifest_dir,
        id: &id,
        timeout: Duration::from_secs(case.timeout),
        backstop: exec::BACKSTOP,
        log_cap: opts.log_cap,
        actions: &case.actions,
        hook: opts.hook,
    });
    let analysis = verdict::analyze(&obs.console.text, &case.ignore_splats);
    if let Some(d) = &analysis.dmesg {
        let _ = std::fs::write(dir.join("dmesg.log"), d);
    }
    let mut check_failure = None;
    let (status, _) = verdict::verdict(&Evidence {
        obs: &obs,
        expect_exit: case.expect_exit,
        analysis: &analysis,
        check_failure: None,
    });
    if let (Some(check), Status::Pass | Status::Splat) = (&case.check, status) {
        check_failure = host_check(check, job, &dir, &obs, analysis.dmesg.is_some(), opts).err();
    }
    let r = result(job, &dir, &obs, &analysis, check_failure.as_deref(), rerun);
    if let Ok(j) = serde_json::to_string_pretty(&r) {
        let _ = std::fs::write(dir.join("result.json"), j + "\n");
    }
    r
}

/// Runs the case's host check after the guest: Err says why it failed.
fn host_check(
    check: &str,
    job: &Job,
    dir: &Path,
    obs: &Observed,
    has_dmesg: bool,
    opts: &Options,
) -> Result<(), String> {
    let topo_file = match &job.topology.source {
        TopologySource::File(f) => f.clone(),
        _ => PathBuf::new(),
    };
    let out = Command::new("sh")
        .arg("-c")
        .arg(check)
        .current_dir(opts.manifest_dir)
        .env("CXLVMM", opts.exe)
        .env("CXLVMM_ID", job.id())
        .env("CXLVMM_CASE", &job.case.name)
        .env("CXLVMM_KERNEL", &job.kernel.name)
        .env("CXLVMM_TOPOLOGY", &job.topology.name)
        .env("CXLVMM_TOPOLOGY_FILE", topo_file)
        .env("CXLVMM_OUT", dir)
        .env("CXLVMM_CONSOLE", dir.join("console.log"))
        .env("CXLVMM_VMM_LOG", dir.join("vmm.log"))
        .env(
            "CXLVMM_DMESG",
            if has_dmesg {
                dir.join("dmesg.log")
            } else {
                PathBuf::new()
            },
        )
        .env(
            "CXLVMM_EXIT",
            obs.exit.map(|c| c.to_string()).unwrap_or_default(),
        )
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run sh: {e}"))?;
    let mut log = out.stdout.clone();
    log.extend_from_slice(&out.stderr);
    let _ = std::fs::write(dir.join("check.log"), &log);
    if out.status.success() {
        return Ok(());
    }
    let last = String::from_utf8_lossy(&log)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string();
    Err(format!("{} ({last}), see check.log", out.status))
}

fn result(
    job: &Job,
    dir: &Path,
    obs: &Observed,
    analysis: &Analysis,
    check_failure: Option<&str>,
    rerun: String,
) -> CaseResult {
    let (status, reason) = verdict::verdict(&Evidence {
        obs,
        expect_exit: job.case.expect_exit,
        analysis,
        check_failure,
    });
    let text = &obs.console.text;
    let mut start = text.len().saturating_sub(TAIL_BYTES);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    CaseResult {
        id: job.id(),
        case: job.case.name.clone(),
        kernel: job.kernel.name.clone(),
        topology: job.topology.name.clone(),
        status,
        reason,
        exit_code: obs.exit,
        expect_exit: job.case.expect_exit,
        duration_s: obs.wall.as_secs_f64(),
        boot_s: obs.booted_at,
        splats: analysis.splats.clone(),
        ktap: analysis.ktap.clone(),
        console_bytes: obs.console.bytes,
        console_capped: obs.console.capped,
        out_dir: dir.display().to_string(),
        rerun,
        attempts: Vec::new(),
        console_tail: text[start..].to_string(),
    }
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
