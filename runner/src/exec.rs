//! One guest run: a child `cxlvmm run` whose console (stdout) and messages
//! (stderr) are read live, capped into files, scanned for the wrapper's
//! markers, and cut short when the guest panics.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::action::{ActionContext, ActionHook};
use crate::manifest::Action;
use crate::script;

/// After cxlvmm's own `--timeout` the runner waits this long before it
/// kills a cxlvmm that did not stop.
pub const BACKSTOP: Duration = Duration::from_secs(60);
/// After "Kernel panic" the rest of the panic message may still come; the
/// run ends at its end line or after this long.
pub const PANIC_GRACE: Duration = Duration::from_secs(3);
/// A console line longer than this is cut into pieces for scanning.
const MAX_LINE: usize = 64 << 10;

pub struct RunSpec<'a> {
    pub exe: &'a Path,
    /// Arguments after `run`.
    pub args: Vec<OsString>,
    /// Extra environment for cxlvmm.
    pub env: Vec<(String, String)>,
    pub out_dir: &'a Path,
    pub manifest_dir: &'a Path,
    pub id: &'a str,
    /// cxlvmm's `--timeout`.
    pub timeout: Duration,
    /// How long past `timeout` before the runner kills cxlvmm itself
    /// (normally BACKSTOP).
    pub backstop: Duration,
    /// Bytes kept of the console and of cxlvmm's messages, each.
    pub log_cap: u64,
    pub actions: &'a [Action],
    pub hook: &'a dyn ActionHook,
    /// Environment for the action hooks, beside what they always get.
    pub action_env: &'a [(String, String)],
    /// Kill cxlvmm at the first console line matching this (a power cut).
    pub power_cut_on: Option<&'a regex::Regex>,
    /// The console and message files in `out_dir`.
    pub console_file: &'a str,
    pub vmm_file: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kill {
    /// The guest panicked; the runner did not wait for the rest.
    AfterPanic,
    /// cxlvmm outlived its own --timeout by BACKSTOP.
    Backstop,
    /// The console matched the boot's `power_cut_on`.
    PowerCut,
}

/// A captured stream: what was kept (at most the cap) and how much came.
#[derive(Debug, Default, Clone)]
pub struct Capture {
    pub text: String,
    pub bytes: u64,
    pub capped: bool,
}

#[derive(Debug, Default)]
pub struct Observed {
    /// cxlvmm's exit status; None when it died by a signal or never ran.
    pub exit: Option<i32>,
    pub signal: Option<i32>,
    pub spawn_error: Option<String>,
    pub killed: Option<Kill>,
    pub console: Capture,
    pub vmm_log: Capture,
    /// Guest uptime when the case's script started.
    pub booted_at: Option<f64>,
    /// The case's own exit status as the wrapper printed it.
    pub script_exit: Option<i32>,
    pub panic_seen: bool,
    pub triple_fault: bool,
    /// cxlvmm's own error ("cxlvmm: error: ...").
    pub vmm_error: Option<String>,
    pub timeout_expired: bool,
    /// Actions run, with their outcome.
    pub actions: Vec<(String, Result<(), String>)>,
    pub wall: Duration,
}

enum Stream {
    Console,
    Vmm,
}

enum Event {
    Line(Stream, String),
    Eof,
}

/// Reads `src` to its end: bytes into `file` and the kept text up to `cap`,
/// every line to `tx` as it comes.
fn spawn_reader(
    mut src: impl Read + Send + 'static,
    mut file: File,
    cap: u64,
    which: fn() -> Stream,
    tx: Sender<Event>,
) -> JoinHandle<Capture> {
    std::thread::spawn(move || {
        let mut cap_left = cap;
        let mut kept: Vec<u8> = Vec::new();
        let mut capture = Capture::default();
        let mut partial: Vec<u8> = Vec::new();
        let mut buf = [0u8; 16 << 10];
        loop {
            let n = match src.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            capture.bytes += n as u64;
            let keep = (n as u64).min(cap_left) as usize;
            if keep > 0 {
                let _ = file.write_all(&buf[..keep]);
                kept.extend_from_slice(&buf[..keep]);
                cap_left -= keep as u64;
            }
            if keep < n && !capture.capped {
                capture.capped = true;
                let _ = writeln!(
                    file,
                    "\n[cxlvmm test: log capped at {cap} bytes; the rest was scanned, not kept]"
                );
            }
            for &b in &buf[..n] {
                if b == b'\n' || partial.len() >= MAX_LINE {
                    let line = String::from_utf8_lossy(&partial)
                        .trim_end_matches('\r')
                        .to_string();
                    let _ = tx.send(Event::Line(which(), line));
                    partial.clear();
                    if b == b'\n' {
                        continue;
                    }
                }
                partial.push(b);
            }
        }
        if !partial.is_empty() {
            let line = String::from_utf8_lossy(&partial)
                .trim_end_matches('\r')
                .to_string();
            let _ = tx.send(Event::Line(which(), line));
        }
        let _ = tx.send(Event::Eof);
        capture.text = String::from_utf8_lossy(&kept).into_owned();
        capture
    })
}

fn open(dir: &Path, name: &str) -> std::io::Result<(File, PathBuf)> {
    let p = dir.join(name);
    File::create(&p).map(|f| (f, p))
}

pub fn run(spec: &RunSpec) -> Observed {
    let start = Instant::now();
    let mut obs = Observed::default();
    let files = open(spec.out_dir, spec.console_file)
        .and_then(|c| Ok((c, open(spec.out_dir, spec.vmm_file)?)));
    let ((console_file, _), (vmm_file, _)) = match files {
        Ok(f) => f,
        Err(e) => {
            obs.spawn_error = Some(format!("{}: {e}", spec.out_dir.display()));
            return obs;
        }
    };
    let mut command = Command::new(spec.exe);
    command
        .arg("run")
        .args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match spawn_past_text_busy(&mut command) {
        Ok(c) => c,
        Err(e) => {
            obs.spawn_error = Some(format!("cannot start {}: {e}", spec.exe.display()));
            return obs;
        }
    };
    let (tx, rx) = crossbeam_channel::unbounded();
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let out_reader = spawn_reader(
        stdout,
        console_file,
        spec.log_cap,
        || Stream::Console,
        tx.clone(),
    );
    let err_reader = spawn_reader(stderr, vmm_file, spec.log_cap, || Stream::Vmm, tx);
    let mut stdin = child.stdin.take();
    watch(spec, &mut child, &mut stdin, &rx, &mut obs);
    drop(stdin);
    match child.wait() {
        Ok(status) => {
            use std::os::unix::process::ExitStatusExt;
            obs.exit = status.code();
            obs.signal = status.signal();
        }
        Err(e) => obs.spawn_error = Some(format!("waiting for cxlvmm: {e}")),
    }
    obs.console = out_reader.join().unwrap_or_default();
    obs.vmm_log = err_reader.join().unwrap_or_default();
    obs.wall = start.elapsed();
    obs
}

/// Spawns `command`, trying again while exec fails with ETXTBSY: a binary
/// written just before (a build finishing, a test's fake cxlvmm) stays
/// "busy" while any process forked meanwhile still holds the writer's file
/// descriptor, which lasts until that process execs (fs/exec.c,
/// `deny_write_access`). Gives up after about a second.
fn spawn_past_text_busy(command: &mut Command) -> std::io::Result<Child> {
    let mut tries = 0;
    loop {
        match command.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

fn watch(
    spec: &RunSpec,
    child: &mut Child,
    stdin: &mut Option<ChildStdin>,
    rx: &Receiver<Event>,
    obs: &mut Observed,
) {
    let backstop = Instant::now() + spec.timeout + spec.backstop;
    let mut kill_at: Option<Instant> = None;
    let mut open_streams = 2;
    let mut in_dmesg = false;
    while open_streams > 0 {
        let deadline = kill_at.map_or(backstop, |k| k.min(backstop));
        let ev = match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(ev) => ev,
            Err(RecvTimeoutError::Timeout) => {
                if obs.killed.is_none() {
                    obs.killed = Some(if kill_at.is_some_and(|k| k <= backstop) {
                        Kill::AfterPanic
                    } else {
                        Kill::Backstop
                    });
                    let _ = child.kill();
                }
                kill_at = None;
                // The pipes close once cxlvmm is gone; read on to their end.
                match rx.recv() {
                    Ok(ev) => ev,
                    Err(_) => break,
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        match ev {
            Event::Eof => open_streams -= 1,
            Event::Line(Stream::Vmm, line) => {
                if line.contains("triple fault") {
                    obs.triple_fault = true;
                }
                if line.contains("--timeout expired") {
                    obs.timeout_expired = true;
                }
                if let Some(e) = line.strip_prefix("cxlvmm: error: ") {
                    obs.vmm_error.get_or_insert_with(|| e.to_string());
                }
            }
            Event::Line(Stream::Console, line) => {
                if line == script::DMESG_BEGIN {
                    in_dmesg = true;
                } else if line == script::DMESG_END {
                    in_dmesg = false;
                }
                if in_dmesg {
                    continue;
                }
                if let Some(up) = line.strip_prefix(script::BOOTED) {
                    obs.booted_at = up.trim().parse().ok();
                } else if let Some(rc) = line.strip_prefix(script::EXIT) {
                    obs.script_exit = rc.trim().parse().ok();
                } else if let Some(name) = line.strip_prefix(script::ACTION) {
                    act(spec, name.trim(), child.id(), stdin, obs);
                }
                if obs.killed.is_none() && spec.power_cut_on.is_some_and(|r| r.is_match(&line)) {
                    obs.killed = Some(Kill::PowerCut);
                    let _ = child.kill();
                    continue;
                }
                let msg = crate::logline::message(&line);
                if msg.starts_with("Kernel panic - not syncing") {
                    obs.panic_seen = true;
                    kill_at.get_or_insert(Instant::now() + PANIC_GRACE);
                } else if msg.starts_with("---[ end Kernel panic") && obs.panic_seen {
                    kill_at = Some(Instant::now());
                }
            }
        }
    }
}

fn act(
    spec: &RunSpec,
    name: &str,
    vmm_pid: u32,
    stdin: &mut Option<ChildStdin>,
    obs: &mut Observed,
) {
    let mut env = spec.action_env.to_vec();
    env.push(("CXLVMM_PID".into(), vmm_pid.to_string()));
    let result = match spec.actions.iter().find(|a| a.name == name) {
        Some(a) => spec.hook.run(
            a,
            &ActionContext {
                id: spec.id,
                out_dir: spec.out_dir,
                manifest_dir: spec.manifest_dir,
                env: &env,
            },
        ),
        None => Err(format!("the case has no action {name:?}")),
    };
    let answer = match &result {
        Ok(()) => format!("{} {name} ok\n", script::ACK),
        // One line, no newlines from the error inside it.
        Err(e) => format!("{} {name} failed {}\n", script::ACK, e.replace('\n', " ")),
    };
    if let Some(w) = stdin.as_mut() {
        if w.write_all(answer.as_bytes())
            .and_then(|_| w.flush())
            .is_err()
        {
            *stdin = None;
        }
    }
    obs.actions.push((name.to_string(), result));
}

#[cfg(test)]
#[path = "exec_tests.rs"]
pub(crate) mod tests;
