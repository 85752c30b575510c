//! fuzz-run TARGET|all [--iterations N] [--seed S] [--max-len L] [--corpus DIR]
//!
//! Runs fuzz targets on stable Rust: the corpus (default
//! fuzz/corpus/TARGET plus fuzz/regressions/TARGET), then N seeded inputs.
//! Prints one JSON line per target (executions, seconds, executions per
//! second); on a panic writes the input to fuzz/artifacts/TARGET/ and exits 1.

use std::process::ExitCode;

use cxlvmm_fuzz::runner::{self, Rng};
use cxlvmm_fuzz::{target, TARGETS};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut names = Vec::new();
    let (mut iterations, mut seed, mut max_len) = (100_000u64, 1u64, 4096usize);
    let mut corpus_dir = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().unwrap_or_default();
        match a.as_str() {
            "--iterations" => iterations = value().parse().unwrap_or(iterations),
            "--seed" => seed = value().parse().unwrap_or(seed),
            "--max-len" => max_len = value().parse().unwrap_or(max_len),
            "--corpus" => corpus_dir = Some(value()),
            "all" => names.extend(TARGETS.iter().map(|t| t.name.to_string())),
            "-h" | "--help" => {
                eprintln!("usage: fuzz-run TARGET|all [--iterations N] [--seed S] [--max-len L] [--corpus DIR]");
                eprintln!(
                    "targets: {}",
                    TARGETS.iter().map(|t| t.name).collect::<Vec<_>>().join(" ")
                );
                return ExitCode::SUCCESS;
            }
            n => names.push(n.to_string()),
        }
    }
    if names.is_empty() {
        eprintln!("fuzz-run: name a target or `all` (--help lists them)");
        return ExitCode::from(2);
    }
    for name in names {
        let Some(t) = target(&name) else {
            eprintln!("fuzz-run: no target {name}");
            return ExitCode::from(2);
        };
        let corpus = match &corpus_dir {
            Some(d) => runner::load_dir(std::path::Path::new(d)),
            None => runner::corpus_of(&t),
        };
        // Each target its own stream, so `all` and one target agree.
        let name_hash = name
            .bytes()
            .fold(0u64, |h, b| h.rotate_left(7) ^ u64::from(b));
        let target_seed = seed ^ Rng::new(name_hash).next_u64();
        match runner::run(&t, &corpus, iterations, target_seed, max_len) {
            Ok(s) => {
                let secs = s.elapsed.as_secs_f64();
                println!(
                    "{{\"target\":\"{name}\",\"executions\":{},\"seconds\":{secs:.1},\"executions_per_second\":{:.0},\"crashes\":0,\"seed\":{seed}}}",
                    s.executions,
                    s.executions as f64 / secs.max(1e-9)
                );
            }
            Err(c) => {
                let dir = runner::fuzz_dir().join("artifacts").join(&name);
                let _ = std::fs::create_dir_all(&dir);
                let path = dir.join(format!(
                    "crash-{:016x}",
                    Rng::new(
                        c.input.len() as u64
                            ^ c.input
                                .iter()
                                .fold(0u64, |h, &b| h.rotate_left(5) ^ u64::from(b))
                    )
                    .next_u64()
                ));
                let _ = std::fs::write(&path, &c.input);
                eprintln!(
                    "fuzz-run: {name} panicked: {}\n  input ({} bytes) in {}",
                    c.message,
                    c.input.len(),
                    path.display()
                );
                return ExitCode::from(1);
            }
        }
    }
    ExitCode::SUCCESS
}
