//! Experiment: calibrate, then check how exactly the guest sees a modelled
//! latency per MMIO load. vtime_probe [--samples N] [--pin CPU] [--latency-ns L ...]

use vmm::vclock::calibrate::{calibrate, verify, Spread};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1));
    let samples: u64 = get("--samples").and_then(|v| v.parse().ok()).unwrap_or(2000);
    if let Some(pin) = get("--pin").and_then(|v| v.parse::<usize>().ok()) {
        // SAFETY: cpu_set_t is plain data; sched_setaffinity reads it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(pin, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
    let lats: Vec<f64> = args
        .windows(2)
        .filter(|w| w[0] == "--latency-ns")
        .filter_map(|w| w[1].parse().ok())
        .collect();
    let kvm = kvm_ioctls::Kvm::new().unwrap();
    let (cal, report) = calibrate(&kvm, samples).unwrap();
    println!("{{\"calibration\":{},\"cal\":\"{:?}\"}}",
        serde_json::to_string(&report).unwrap(), cal);
    for l in lats {
        let (g, diag) = verify(&kvm, cal, samples, l).unwrap();
        println!("{}", serde_json::to_string(&diag).unwrap());
        if let Ok(dir) = std::env::var("PROBE_CSV") {
            let mut out = String::from("k,guest_ns,entry_error_ns,entry_path_ns,debt_ns\n");
            for k in 0..g.len() {
                let at = |v: &Vec<f64>, i: usize| v.get(i).copied().unwrap_or(f64::NAN);
                out += &format!("{k},{},{},{},{}\n", g[k], at(&diag.errors, k + 1), at(&diag.paths, k + 1), 0.0);
            }
            std::fs::write(format!("{dir}/probe-{l}.csv"), out).unwrap();
        }
        let skip = g.len() / 10;
        let s = Spread::of(&g[skip..]);
        println!("{{\"latency_ns\":{l},\"guest\":{},\"median_err\":{:.4},\"mean_err\":{:.4}}}",
            serde_json::to_string(&s).unwrap(), (s.p50 - l) / l, (s.mean - l) / l);
    }
}
