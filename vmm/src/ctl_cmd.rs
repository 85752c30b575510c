//! `cxlvmm ctl` and `cxlvmm calibrate`: the two small commands around a
//! running VM's virtual time and control socket.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::vclock::calibrate::{calibrate, verify, Spread};
use crate::vclock::exit_timer::Calibration;

#[derive(Args, Debug, Clone)]
pub struct CtlArgs {
    /// The VM's control socket (`cxlvmm run --api-socket PATH`).
    #[arg(long)]
    pub socket: PathBuf,
    /// The request: get ID [KEY] | set ID KEY VALUE | stats | topology |
    /// inject-poison DEVICE DPA [LENGTH] | clear-poison DEVICE DPA |
    /// inject-event DEVICE general-media|dram|memory-module
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub request: Vec<String>,
}

/// Exit 0 when the VM answered ok, 1 when it answered an error, 2 when the
/// request could not be formed or sent.
pub fn ctl(args: &CtlArgs) -> ExitCode {
    let line = match fabric::control::request_from_args(&args.request) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cxlvmm ctl: {}", fabric::control::error_response(&e));
            return ExitCode::from(2);
        }
    };
    match crate::api::client(&args.socket, &line) {
        Ok(resp) => {
            println!("{resp}");
            let ok = serde_json::from_str::<serde_json::Value>(&resp)
                .is_ok_and(|v| v["ok"] == serde_json::Value::Bool(true));
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("cxlvmm ctl: {e}");
            ExitCode::from(2)
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct CalibrateArgs {
    /// Timed loads per measurement.
    #[arg(long, default_value_t = 2000)]
    pub samples: u64,
    /// Also run the virtual clock with this modelled latency per load and
    /// report what the guest measured (repeatable).
    #[arg(long = "latency-ns")]
    pub latency_ns: Vec<f64>,
    /// Verify with the invisible exit and entry sides taken as this many
    /// times what was measured (the early margin as measured): a clock
    /// calibrated on a host slower (above 1) or quicker (below 1) than the
    /// one it runs on.
    #[arg(long = "scale-hidden", default_value_t = 1.0, value_parser = parse_scale)]
    pub scale_hidden: f64,
}

fn parse_scale(v: &str) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(f) if f > 0.0 && f <= 10.0 => Ok(f),
        _ => Err(format!(
            "--scale-hidden wants a factor in (0, 10], not '{v}'"
        )),
    }
}

/// Prints one JSON object: the calibration, and per requested latency the
/// guest-measured spread and its error.
pub fn calibrate_cmd(args: &CalibrateArgs) -> ExitCode {
    let kvm = match kvm_ioctls::Kvm::new() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("cxlvmm calibrate: cannot open /dev/kvm: {e}");
            return ExitCode::from(1);
        }
    };
    // The CPUID of a guest with a timed window: what KVM supports, the
    // vector state hidden (`cpuid_vector`).
    let cpuid = match kvm.get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES) {
        Ok(mut c) => {
            crate::cpuid_vector::hide_vector_extensions(&mut c);
            c
        }
        Err(e) => {
            eprintln!("cxlvmm calibrate: cannot read KVM's CPUID: {e}");
            return ExitCode::from(1);
        }
    };
    let (cal, report) = match calibrate(&kvm, &cpuid, args.samples) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cxlvmm calibrate: {e}");
            return ExitCode::from(1);
        }
    };
    let scaled = |c: u64| (c as f64 * args.scale_hidden).round() as u64;
    let cal = Calibration {
        exit_invisible_cycles: scaled(cal.exit_invisible_cycles),
        entry_invisible_cycles: scaled(cal.entry_invisible_cycles),
        ..cal
    };
    let mut checks = Vec::new();
    for &l in &args.latency_ns {
        match verify(&kvm, &cpuid, cal, args.samples, l) {
            Ok((seen, diag)) => {
                // The first tenth warms the entry-path predictor up.
                let s = Spread::of(&seen[seen.len() / 10..]);
                checks.push(serde_json::json!({
                    "latency_ns": l,
                    "guest_ns": s,
                    "median_error": (s.p50 - l) / l,
                    "mean_error": (s.mean - l) / l,
                    "clock": diag,
                }));
            }
            Err(e) => {
                eprintln!("cxlvmm calibrate: {e}");
                return ExitCode::from(1);
            }
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "calibration": report,
            "exit_invisible_ns": cal.exit_invisible_cycles as f64 / cal.cycles_per_ns,
            "entry_invisible_ns": cal.entry_invisible_cycles as f64 / cal.cycles_per_ns,
            "scale_hidden": args.scale_hidden,
            "verify": checks,
        })
    );
    ExitCode::SUCCESS
}
