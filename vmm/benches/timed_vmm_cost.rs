//! What the VMM spends per timed access on this host, end to end: a
//! bare-metal payload on /dev/kvm commits a type-3's decoder, writes a
//! pointer cycle into the timed window and chases it; `--stats` gives
//! `vmm_cost` (from KVM_RUN's return to the access charged: the exit
//! tracepoints' read, the `call *m64` check's code read, decode, cache
//! model, engine, data copy, statistics).
//!
//! Three runs of the same payload, one after the other:
//! - `trapped`: decode and copy only, no model (the exit's wall time);
//! - `timed`: on the virtual clock (100 calibration exits);
//! - `host-time`: timed with `--host-time`, no clock.
//!
//! On a host whose KVM ignores the TSC offset (a paravirtual one) the
//! clocked run does all its bookkeeping but hides nothing from the guest;
//! that changes no figure here.
//!
//! `cargo bench -p vmm --bench timed_vmm_cost [-- --lines N --stride B
//! --loads L --runs R]` (default 65536 lines of 64 B = 4 MiB, 200 000
//! loads, 3 runs) prints a table on stderr and one JSON object on stdout.
//! Without /dev/kvm the object says "skipped". `CXLVMM=PATH` runs that
//! cxlvmm binary instead of this build's (to compare two builds).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

mod args;
use args::arg;
#[path = "../tests/payload/mod.rs"]
mod payload;

/// One run of the chase in `mode`; its statistics (timed mode) and wall
/// time in seconds.
fn run(elf: &Path, mode: &str, stats: &Path) -> (Option<serde_json::Value>, f64) {
    let cxlvmm = std::env::var_os("CXLVMM").unwrap_or_else(|| env!("CARGO_BIN_EXE_cxlvmm").into());
    let mut cmd = Command::new(cxlvmm);
    cmd.args(["run", "--no-kvm-check", "--vcpus", "1", "--memory", "128M"])
        .args(["--timeout", "600", "--topology", payload::CHASE_TOPOLOGY])
        .arg("--kernel")
        .arg(elf);
    match mode {
        "trapped" => cmd.args(["--memory-mode", "trapped"]),
        "timed" => cmd.args(["--memory-mode", "timed", "--calibration-samples", "100"]),
        _ => cmd.args(["--memory-mode", "timed", "--host-time"]),
    };
    if mode != "trapped" {
        cmd.arg("--stats").arg(stats);
    }
    let start = Instant::now();
    let out = cmd.output().expect("cxlvmm runs");
    let wall = start.elapsed().as_secs_f64();
    assert_eq!(
        out.status.code(),
        Some(payload::CHASE_OK),
        "{mode}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = (mode != "trapped").then(|| {
        serde_json::from_str(&std::fs::read_to_string(stats).expect("stats written"))
            .expect("stats are JSON")
    });
    (json, wall)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !Path::new("/dev/kvm").exists() {
        println!(
            "{}",
            serde_json::json!({ "skipped": "no /dev/kvm on this host" })
        );
        return;
    }
    let chase = payload::Chase {
        lines: arg(&args, "--lines", 65536),
        stride: arg(&args, "--stride", 64),
        loads: arg(&args, "--loads", 200_000),
    };
    let runs = arg(&args, "--runs", 3);
    let dir = std::env::temp_dir().join(format!("cxlvmm-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let elf = dir.join("chase.elf");
    std::fs::write(&elf, payload::timed_chase(&chase)).expect("payload written");
    let stats = dir.join("stats.json");
    let accesses = chase.accesses() as f64;
    eprintln!(
        "timed_vmm_cost: {} lines x {} B, {} loads ({} accesses per run), {runs} runs",
        chase.lines,
        chase.stride,
        chase.loads,
        chase.accesses()
    );
    eprintln!("run  mode       vmm_cost p50    p90    p99 | hit rate | model p50 | wall/access");
    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let mut results = Vec::new();
    for r in 0..runs {
        let mut run_result = serde_json::Map::new();
        for mode in ["trapped", "timed", "host-time"] {
            let (json, wall) = run(&elf, mode, &stats);
            let wall_us = wall / accesses * 1e6;
            let Some(json) = json else {
                eprintln!("{r:>3}  {mode:<9} {:>51} {wall_us:>8.2} us", "");
                run_result.insert(
                    mode.into(),
                    serde_json::json!({ "wall_per_access_us": wall_us }),
                );
                continue;
            };
            let cost = &json["timed"]["vmm_cost"];
            let w = &json["timed"]["windows"][0];
            assert_eq!(cost["count"].as_u64(), Some(chase.accesses()), "{cost}");
            let hit_rate = f(w, "hits") / f(w, "accesses");
            eprintln!(
                "{r:>3}  {mode:<9} {:>8.0} ns {:>6.0} {:>6.0} | {:>6.1} % | {:>6.1} ns | {wall_us:>8.2} us",
                f(cost, "p50_ns"),
                f(cost, "p90_ns"),
                f(cost, "p99_ns"),
                hit_rate * 100.0,
                f(&w["latency"], "p50_ns"),
            );
            run_result.insert(
                mode.into(),
                serde_json::json!({
                    "vmm_cost_ns": {
                        "mean": f(cost, "mean_ns"),
                        "p50": f(cost, "p50_ns"),
                        "p90": f(cost, "p90_ns"),
                        "p99": f(cost, "p99_ns"),
                        "max": f(cost, "max_ns"),
                    },
                    "hit_rate": hit_rate,
                    "model_latency_p50_ns": f(&w["latency"], "p50_ns"),
                    "wall_per_access_us": wall_us,
                }),
            );
        }
        results.push(serde_json::Value::Object(run_result));
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "{}",
        serde_json::json!({
            "lines": chase.lines,
            "stride": chase.stride,
            "loads": chase.loads,
            "accesses_per_run": chase.accesses(),
            "runs": results,
        })
    );
}
