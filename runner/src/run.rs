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
use crate::schedule::{Demand, Schedule};
use crate::script;
use crate::verdict::{self, Analysis, Evidence, Status};

/// Called with the results finished so far.
pub type ReportHook<'a> = dyn Fn(&[CaseResult]) + Sync + 'a;

pub struct Options<'a> {
    /// The cxlvmm binary (the running one).
    pub exe: &'a Path,
    pub out: &'a Path,
    pub manifest_dir: &'a Path,
    pub jobs: usize,
    /// Guest memory the jobs running at once may take together (bytes;
    /// None: no limit). See [`crate::schedule`].
    pub memory_budget: Option<u64>,
    pub retries: u32,
    /// Count guest crashes and timeouts as infrastructure failures.
    pub infra_crashes: bool,
    pub log_cap: u64,
    pub hook: &'a dyn ActionHook,
    /// Called after each job with the results finished so far, in job
    /// order (the reports are rewritten, so a runner that dies leaves
    /// what it had).
    pub on_finished: Option<&'a ReportHook<'a>>,
}

/// Console kept in memory per result, for the JUnit report.
const TAIL_BYTES: usize = 64 << 10;

/// Runs every job; results come back in the jobs' order.
pub fn run_all(jobs: &[Job], opts: &Options, live: &Live) -> Vec<CaseResult> {
    let next = AtomicUsize::new(0);
    let slots: Mutex<Vec<Option<CaseResult>>> = Mutex::new(vec![None; jobs.len()]);
    let schedule = Schedule::new(opts.memory_budget);
    std::thread::scope(|s| {
        for _ in 0..opts.jobs.clamp(1, jobs.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(i) else { break };
                let demand = Demand {
                    memory: job.case.memory + job.topology.volatile_bytes,
                    alone: job.case.alone,
                    files: &job.topology.persistent_files,
                };
                let share = schedule.start(i, demand);
                live.started(&job.id());
                let r = run_job(job, opts, live);
                drop(share);
                live.finished(&r);
                let mut slots = slots.lock().unwrap_or_else(|e| e.into_inner());
                slots[i] = Some(r);
                if let Some(report) = opts.on_finished {
                    let done: Vec<CaseResult> = slots.iter().flatten().cloned().collect();
                    report(&done);
                }
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
    api_socket: Option<&Path>,
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
    if c.root_share {
        a.push("--root-share".into());
    }
    if let Some(sock) = api_socket {
        a.push("--api-socket".into());
        a.push(sock.into());
    }
    a.extend(c.vmm_args.iter().map(OsString::from));
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
            ShareSource::JobDir { tag, read_only } => {
                let d = dir.join(format!("share-{tag}"));
                if d.exists() {
                    std::fs::remove_dir_all(&d)?;
                }
                std::fs::create_dir_all(&d)?;
                let mut v = d.into_os_string();
                v.push(format!(":{tag}{}", if *read_only { ":ro" } else { "" }));
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

/// A job that could not start: the reason, as an INFRA result.
fn setup_failure(job: &Job, dir: &Path, why: String, rerun: String) -> CaseResult {
    let obs = Observed {
        spawn_error: Some(why),
        ..Observed::default()
    };
    result(job, dir, &obs, &Analysis::default(), None, rerun)
}

/// Where boot `n` (from 1) of a job keeps its files: boot 1 `console.log`,
/// `vmm.log`, `script.sh`; boot 2 `console-2.log`, ...
fn boot_file(stem: &str, ext: &str, n: usize) -> String {
    if n == 1 {
        format!("{stem}.{ext}")
    } else {
        format!("{stem}-{n}.{ext}")
    }
}

/// cxlvmm's control socket for a job whose case has host actions, on a
/// machine with a CXL topology (what the control API acts on).
fn api_socket(job: &Job, dir: &Path) -> Option<PathBuf> {
    let cxl = job.topology.source != TopologySource::None;
    (cxl && !job.case.actions.is_empty()).then(|| dir.join("api.sock"))
}

fn run_once(job: &Job, dir: &Path, opts: &Options) -> CaseResult {
    let id = job.id();
    let case = job.case;
    let setup = std::fs::create_dir_all(dir).and_then(|_| std::fs::canonicalize(dir));
    let dir = match setup {
        Ok(d) => d,
        Err(e) => return setup_failure(job, dir, format!("{}: {e}", dir.display()), String::new()),
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
    let expand = |env: &std::collections::BTreeMap<String, String>| -> Vec<(String, String)> {
        env.iter()
            .map(|(k, v)| (k.clone(), crate::manifest::expand_placeholders(v, lookup)))
            .collect()
    };
    let vmm_env: Vec<(String, String)> = case
        .vmm_env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let devices =
        prepare_disks(&case.disks, &dir).and_then(|d| Ok((d, prepare_shares(&case.shares, &dir)?)));
    let (disks, shares) = match devices {
        Ok(d) => d,
        Err(e) => {
            return setup_failure(job, &dir, format!("{}: {e}", dir.display()), String::new())
        }
    };
    let api = api_socket(job, &dir);
    if let Some(sock) = &api {
        let _ = std::fs::remove_file(sock);
    }
    let host_env = host_env(job, &dir, opts, api.as_deref());
    let mut case_env = expand(&case.env);
    if let Some(prep) = &case.prepare {
        match prepare(prep, &host_env, &dir, opts, "prepare") {
            Ok(extra) => case_env.extend(extra),
            Err(why) => return setup_failure(job, &dir, why, String::new()),
        }
    }
    let boots = case.boots.len();
    let mut reruns: Vec<String> = Vec::new();
    let mut wall = Duration::ZERO;
    let mut last: Option<(Observed, Analysis, Status)> = None;
    for (i, boot) in case.boots.iter().enumerate() {
        let n = i + 1;
        let mut env = case_env.clone();
        env.extend(expand(&boot.env));
        if boots > 1 {
            env.push(("CXLVMM_BOOT".into(), n.to_string()));
        }
        if let Some(prep) = &boot.prepare {
            match prepare(prep, &host_env, &dir, opts, &format!("boot {n} prepare")) {
                Ok(extra) => env.extend(extra),
                Err(why) => return setup_failure(job, &dir, why, reruns.join("\n")),
            }
        }
        // Later values win, as in a shell.
        let guest_env: std::collections::BTreeMap<String, String> = env.into_iter().collect();
        let body = match boot.body.as_ref().unwrap_or(&case.body) {
            CaseBody::Script { text, .. } => text.clone(),
            CaseBody::Command(c) => c.clone(),
        };
        let ctx = script::Context {
            case: &case.name,
            kernel: &job.kernel.name,
            topology: &job.topology.name,
            env: &guest_env,
            dmesg: case.dmesg,
        };
        let script_path = dir.join(boot_file("script", "sh", n));
        let console_file = boot_file("console", "log", n);
        let vmm_file = boot_file("vmm", "log", n);
        let args = vmm_args(job, &script_path, &disks, &shares, api.as_deref());
        reruns.push(rerun_line(
            opts.exe,
            &vmm_env,
            &args,
            &dir.join(boot_file("rerun-console", "log", n)),
        ));
        let rerun = reruns.join("\n");
        let header = if boots > 1 {
            format!("# Runs {id} alone, as `cxlvmm test` ran it: its {boots} boots in order.\n")
        } else {
            format!("# Runs {id} alone, as `cxlvmm test` ran it.\n")
        };
        let written =
            std::fs::write(&script_path, script::guest_script(&ctx, &body)).and_then(|_| {
                let lines: Vec<String> = reruns.iter().map(|r| format!("{r} \"$@\"")).collect();
                std::fs::write(
                    dir.join("rerun.sh"),
                    format!("#!/bin/sh\n{header}{}\n", lines.join(" &&\n")),
                )
            });
        if let Err(e) = written {
            return setup_failure(job, &dir, format!("{}: {e}", dir.display()), rerun);
        }
        let obs = exec::run(&RunSpec {
            exe: opts.exe,
            args,
            env: vmm_env.clone(),
            out_dir: &dir,
            manifest_dir: opts.manifest_dir,
            id: &id,
            timeout: Duration::from_secs(case.timeout),
            backstop: exec::BACKSTOP,
            log_cap: opts.log_cap,
            actions: &case.actions,
            hook: opts.hook,
            action_env: &host_env,
            power_cut_on: boot.power_cut_on.as_ref(),
            console_file: &console_file,
            vmm_file: &vmm_file,
        });
        wall += obs.wall;
        let analysis = verdict::analyze(&obs.console.text, &case.ignore_splats);
        if let Some(d) = &analysis.dmesg {
            let _ = std::fs::write(dir.join(boot_file("dmesg", "log", n)), d);
        }
        if boot.power_cut_on.is_some() && obs.killed != Some(exec::Kill::PowerCut) {
            // The power cut was part of the test: a boot that ended before
            // it came did not do what the case asked.
            let mut r = result(job, &dir, &obs, &analysis, None, rerun);
            if r.status == Status::Pass {
                r.status = Status::Fail;
                r.reason = "the console never matched power_cut_on".into();
            }
            return finish(r, n, boots, wall, &dir);
        }
        let (status, _) = verdict::verdict(&Evidence {
            obs: &obs,
            expect_exit: case.expect_exit,
            analysis: &analysis,
            check_failure: None,
        });
        if status != Status::Pass && n < boots {
            let r = result(job, &dir, &obs, &analysis, None, rerun);
            return finish(r, n, boots, wall, &dir);
        }
        last = Some((obs, analysis, status));
    }
    let (obs, analysis, status) = last.expect("a case has at least one boot");
    let rerun = reruns.join("\n");
    let mut check_failure = None;
    if let (Some(check), Status::Pass | Status::Splat) = (&case.check, status) {
        check_failure =
            host_check(check, &host_env, &dir, opts, analysis.dmesg.is_some(), &obs).err();
    }
    let r = result(job, &dir, &obs, &analysis, check_failure.as_deref(), rerun);
    finish(r, boots, boots, wall, &dir)
}

/// The result of the job's last boot `n` of `boots`, its reason naming the
/// boot when there are several, timed over all of them, written to
/// `result.json`.
fn finish(mut r: CaseResult, n: usize, boots: usize, wall: Duration, dir: &Path) -> CaseResult {
    if boots > 1 && !r.reason.is_empty() {
        r.reason = format!("boot {n} of {boots}: {}", r.reason);
    }
    r.duration_s = wall.as_secs_f64();
    if let Ok(j) = serde_json::to_string_pretty(&r) {
        let _ = std::fs::write(dir.join("result.json"), j + "\n");
    }
    r
}

/// What host commands (prepare, check, actions) get to know about a job.
fn host_env(job: &Job, dir: &Path, opts: &Options, api: Option<&Path>) -> Vec<(String, String)> {
    let topo_file = match &job.topology.source {
        TopologySource::File(f) => f.display().to_string(),
        _ => String::new(),
    };
    let path = |p: &Path| p.display().to_string();
    vec![
        ("CXLVMM".into(), path(opts.exe)),
        ("CXLVMM_ID".into(), job.id()),
        ("CXLVMM_CASE".into(), job.case.name.clone()),
        ("CXLVMM_KERNEL".into(), job.kernel.name.clone()),
        ("CXLVMM_TOPOLOGY".into(), job.topology.name.clone()),
        ("CXLVMM_TOPOLOGY_FILE".into(), topo_file),
        ("CXLVMM_OUT".into(), path(dir)),
        ("CXLVMM_BOOTS".into(), job.case.boots.len().to_string()),
        ("CXLVMM_CONSOLE".into(), path(&dir.join("console.log"))),
        ("CXLVMM_VMM_LOG".into(), path(&dir.join("vmm.log"))),
        (
            "CXLVMM_API_SOCKET".into(),
            api.map(path).unwrap_or_default(),
        ),
    ]
}

/// Runs a `prepare` command: Ok has the `KEY=VALUE` lines of its output
/// (for the guest's environment), Err why it failed. Its output is kept
/// in `prepare.log`.
fn prepare(
    cmd: &str,
    env: &[(String, String)],
    dir: &Path,
    opts: &Options,
    what: &str,
) -> Result<Vec<(String, String)>, String> {
    let out = host_sh(cmd, opts.manifest_dir, env, &[])
        .map_err(|e| format!("{what}: cannot run sh: {e}"))?;
    append_command_log(&dir.join("prepare.log"), what, cmd, &out)
        .map_err(|e| format!("{what}: prepare.log: {e}"))?;
    if !out.status.success() {
        let last = last_line(&out.stderr);
        return Err(format!(
            "{what} exited with {} ({last}), see prepare.log",
            out.status
        ));
    }
    Ok(env_lines(&String::from_utf8_lossy(&out.stdout)))
}

/// The `KEY=VALUE` lines of a prepare command's output (KEY a shell
/// variable name); other lines are left alone.
pub fn env_lines(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| crate::manifest::is_var_name(k))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Runs the case's host check after the guest: Err says why it failed.
fn host_check(
    check: &str,
    env: &[(String, String)],
    dir: &Path,
    opts: &Options,
    has_dmesg: bool,
    obs: &Observed,
) -> Result<(), String> {
    let dmesg = if has_dmesg {
        dir.join("dmesg.log").display().to_string()
    } else {
        String::new()
    };
    let exit = obs.exit.map(|c| c.to_string()).unwrap_or_default();
    let out = host_sh(
        check,
        opts.manifest_dir,
        env,
        &[("CXLVMM_DMESG", &dmesg), ("CXLVMM_EXIT", &exit)],
    )
    .map_err(|e| format!("cannot run sh: {e}"))?;
    let mut log = out.stdout.clone();
    log.extend_from_slice(&out.stderr);
    let _ = std::fs::write(dir.join("check.log"), &log);
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{} ({}), see check.log",
        out.status,
        last_line(&log)
    ))
}

/// Runs a host command with `sh -c` in `cwd`, stdin closed, with `env` and
/// `more` added to the runner's environment.
pub(crate) fn host_sh(
    cmd: &str,
    cwd: &Path,
    env: &[(String, String)],
    more: &[(&str, &str)],
) -> std::io::Result<std::process::Output> {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(cwd)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .envs(more.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
}

/// Appends a host command's output to `log`, between lines naming it and
/// giving its exit status; Err only when the log cannot be opened.
pub(crate) fn append_command_log(
    log: &Path,
    what: &str,
    cmd: &str,
    out: &std::process::Output,
) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    // A log that cannot be written past its opening costs the log only.
    let _ = writeln!(f, "== {what}: {cmd}");
    let _ = f.write_all(&out.stdout);
    let _ = f.write_all(&out.stderr);
    let _ = writeln!(f, "== {what}: {}", out.status);
    Ok(())
}

/// The last non-blank line of a command's output, trimmed.
pub(crate) fn last_line(out: &[u8]) -> String {
    String::from_utf8_lossy(out)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string()
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
