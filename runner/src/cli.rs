//! `cxlvmm test MANIFEST`: the command line, and the run from manifest to
//! reports. Exit statuses are documented in docs/runner.md.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::action::ShellHook;
use crate::manifest::{GuestFinder, Manifest, ManifestError};
use crate::matrix::{self, Shard};
use crate::report::{self, live::Live, CaseResult, Summary};
use crate::run::{self, Options};
use crate::verdict::EXIT_CONFIG;

#[derive(Args, Debug, Clone)]
pub struct TestArgs {
    /// The manifest (TOML): kernels, topologies and cases; see docs/runner.md.
    pub manifest: PathBuf,
    /// Print the jobs (case/kernel/topology) that would run, one a line, and exit.
    #[arg(long)]
    pub list: bool,
    /// Only the jobs whose id (case/kernel/topology) matches this regex.
    #[arg(long, value_name = "REGEX")]
    pub filter: Option<String>,
    /// Run the I-th of N slices of the (filtered) job list, 1-based; default
    /// from SHARD_INDEX and SHARD_NUMBER when both are set.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Guests run at the same time.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: u16,
    /// Folder for each job's files (console.log, dmesg.log, vmm.log,
    /// script.sh, rerun.sh, result.json).
    #[arg(long, default_value = "cxlvmm-test-out")]
    pub out: PathBuf,
    /// Write JUnit XML here.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write the results as JSON here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Run a job again, up to N times, when it fails for reasons of the
    /// infrastructure (cxlvmm could not start the VM); each retry is reported.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub retries: u32,
    /// Count guest crashes and timeouts as infrastructure failures too (for
    /// hosts whose virtualisation corrupts guests now and then, such as the
    /// nested rig): they are retried under --retries.
    #[arg(long)]
    pub infra_crashes: bool,
    /// Keep at most this much of each job's console and of cxlvmm's messages.
    #[arg(long, default_value = "64M", value_parser = crate::size::parse_size)]
    pub log_cap: u64,
}

/// What `cxlvmm test` needs from the VMM binary.
pub struct Host<'a> {
    /// The cxlvmm binary to run guests with (normally the running one).
    pub exe: PathBuf,
    pub find_guest: GuestFinder<'a>,
}

fn config_error(e: impl std::fmt::Display) -> u8 {
    eprintln!("cxlvmm test: error: {e}");
    EXIT_CONFIG
}

fn write_file(path: &Path, text: &str) -> Result<(), String> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    // Whole or not at all: the reports are rewritten after every job, and
    // a reader (or a runner killed mid-write) must never see half a file.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Runs `cxlvmm test`; returns the exit status.
pub fn main(args: &TestArgs, host: &Host) -> u8 {
    let manifest = match Manifest::load(&args.manifest, host.find_guest) {
        Ok(m) => m,
        Err(e) => return config_error(e),
    };
    let filter = match args.filter.as_deref().map(regex::Regex::new).transpose() {
        Ok(f) => f,
        Err(e) => {
            return config_error(format!(
                "--filter {:?}: {e}",
                args.filter.as_deref().unwrap_or("")
            ))
        }
    };
    let shard = match Shard::from_cli_or_env(args.shard.as_deref(), |k| std::env::var(k).ok()) {
        Ok(s) => s,
        Err(ManifestError(e)) => return config_error(e),
    };
    let jobs = matrix::select(matrix::expand(&manifest), filter.as_ref(), shard);
    if args.list {
        for j in &jobs {
            println!("{}", j.id());
        }
        return 0;
    }
    if jobs.is_empty() {
        return config_error(format!(
            "no job to run ({} in the manifest; --filter {:?}, shard {})",
            matrix::expand(&manifest).len(),
            args.filter.as_deref().unwrap_or(""),
            shard.map_or("none".into(), |s| s.to_string())
        ));
    }
    // Nothing starts unless every output can be written.
    if let Err(e) = std::fs::create_dir_all(&args.out) {
        return config_error(format!("--out {}: {e}", args.out.display()));
    }
    for (flag, path) in [("--junit", &args.junit), ("--json", &args.json)] {
        if let Some(p) = path {
            if let Err(e) = write_file(p, "") {
                return config_error(format!("{flag} {e}"));
            }
        }
    }
    let manifest_dir = std::fs::canonicalize(args.manifest.parent().unwrap_or(Path::new(".")))
        .unwrap_or_else(|_| PathBuf::from("."));
    // Redraw a progress line only on an interactive terminal: not in CI
    // logs, nor on a console without TERM (the rig's).
    let tty = std::io::stdout().is_terminal()
        && std::env::var_os("CI").is_none()
        && std::env::var("TERM").is_ok_and(|t| !t.is_empty() && t != "dumb");
    println!(
        "cxlvmm test: {} job(s) from {}{}, {} at a time",
        jobs.len(),
        args.manifest.display(),
        shard.map(|s| format!(", shard {s}")).unwrap_or_default(),
        args.jobs
    );
    let live = Live::new(jobs.len(), tty);
    let title = format!("cxlvmm test {}", args.manifest.display());
    let manifest_name = args.manifest.display().to_string();
    let reports = |results: &[CaseResult]| -> Result<(), String> {
        let summary = Summary::of(results);
        let mut outputs = Vec::new();
        if let Some(p) = &args.junit {
            outputs.push((p, report::junit::render(&title, results)));
        }
        if let Some(p) = &args.json {
            let doc = report::json::JsonReport {
                manifest: &manifest_name,
                shard: shard.map(|s| s.to_string()),
                filter: args.filter.as_deref(),
                summary: &summary,
                cases: results,
            };
            outputs.push((p, report::json::render(&doc)));
        }
        outputs
            .into_iter()
            .try_for_each(|(p, text)| write_file(p, &text))
    };
    let partial = |done: &[CaseResult]| {
        // The final write below reports a failure; a lost partial one
        // is only a report the next job rewrites.
        let _ = reports(done);
    };
    let results = run::run_all(
        &jobs,
        &Options {
            exe: &host.exe,
            out: &args.out,
            manifest_dir: &manifest_dir,
            jobs: usize::from(args.jobs),
            memory_budget: (args.jobs > 1)
                .then(crate::schedule::host_memory_budget)
                .flatten(),
            retries: args.retries,
            infra_crashes: args.infra_crashes,
            log_cap: args.log_cap,
            hook: &ShellHook,
            on_finished: Some(&partial),
        },
        &live,
    );
    print!("{}", report::live::summary_table(&results));
    let summary = Summary::of(&results);
    if let Err(e) = reports(&results) {
        // The runs happened but their report is lost: a broken setup.
        eprintln!("cxlvmm test: error: {e}");
        return crate::verdict::Status::Infra.exit_code();
    }
    summary.exit_code
}
