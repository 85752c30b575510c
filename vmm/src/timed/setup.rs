//! Putting timed memory into a machine: which windows are timed, the
//! decode the timed path shares with the region map, and the virtual clock
//! calibrated on this host before the guest starts.

use std::sync::{Arc, Mutex};

use devices::clock::GuestClock;
use devices::cxl::backing::Type3Backing;
use fabric::topology::{Topology, WindowMode};
use fabric::Engine;
use kvm_ioctls::{Kvm, VcpuFd};

use super::{Decode, DeviceMedia, HpaDecode, TimedMemory, TimedWindow};
use crate::cxl::plan::CxlPlan;
use crate::cxl::regions::tree::TreeCell;
use crate::vclock::calibrate::{calibrate, CalibrationReport};
use crate::vclock::shared::SharedClock;
use crate::vclock::tsc;

/// The region map's decode tree, as the timed path reads it: always the
/// decoders the guest has committed at the moment of the access.
struct TreeDecode(Arc<TreeCell>);

impl HpaDecode for TreeDecode {
    fn current(&self) -> Arc<dyn Decode> {
        self.0.get()
    }
}

/// Windows (base, size) the VMM serves on every access: `trapped` and
/// `timed` ones. The region map must never give these a memory slot.
pub fn vmm_served_windows(topo: &Topology, plan: &CxlPlan) -> Vec<(u64, u64)> {
    topo.windows
        .iter()
        .zip(&plan.windows)
        .filter(|(w, _)| w.mode != WindowMode::Native)
        .map(|(_, p)| (p.base, p.size))
        .collect()
}

/// Timed memory over the `timed` windows, or None if there are none.
pub fn timed_memory(
    topo: &Topology,
    plan: &CxlPlan,
    tree: Arc<TreeCell>,
    backings: &[Arc<Type3Backing>],
    engine: Arc<Mutex<Engine>>,
    clock: Arc<dyn GuestClock>,
) -> std::io::Result<Option<TimedMemory>> {
    let windows: Vec<TimedWindow> = topo
        .windows
        .iter()
        .zip(&plan.windows)
        .filter(|(w, _)| w.mode == WindowMode::Timed)
        .map(|(w, p)| TimedWindow {
            id: w.id.clone(),
            base: p.base,
            size: p.size,
        })
        .collect();
    if windows.is_empty() {
        return Ok(None);
    }
    let media = DeviceMedia::map_all(backings)?;
    Ok(Some(TimedMemory::new(
        windows,
        Arc::new(TreeDecode(tree)),
        media,
        engine,
        clock,
    )))
}

/// The virtual clock for `vcpus`, calibrated here first (the exits' parts
/// the VMM cannot see); it starts at the guest TSC `vcpu0` has now.
pub fn virtual_clock(
    kvm: &Kvm,
    vcpu0: &VcpuFd,
    vcpus: usize,
    samples: u64,
    kick_signal: i32,
) -> Result<(Arc<SharedClock>, CalibrationReport), String> {
    if !tsc::offset_supported(vcpu0) {
        return Err(
            "this KVM cannot set a vCPU's TSC offset (KVM_VCPU_TSC_OFFSET): timed memory \
             needs it to hide exits from the guest; use --host-time (the model's charges in the \
             statistics only), or --memory-mode trapped or native"
                .into(),
        );
    }
    // The probe runs on the guest's own CPUID (`calibrate`).
    let cpuid = vcpu0
        .get_cpuid2(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
        .map_err(|e| format!("guest CPUID: {e}"))?;
    let (cal, report) = calibrate(kvm, &cpuid, samples).map_err(|e| format!("calibration: {e}"))?;
    let khz = tsc::khz(vcpu0).map_err(|e| format!("guest TSC frequency: {e}"))?;
    let offset = tsc::offset(vcpu0).map_err(|e| format!("guest TSC offset: {e}"))?;
    Ok((
        SharedClock::new(vcpus, offset, khz, cal, kick_signal),
        report,
    ))
}

/// One line for the user: what an exit costs here and how much of it the
/// clock hides.
pub fn describe_calibration(r: &CalibrationReport) -> String {
    format!(
        "timed memory: virtual clock calibrated over {} exits (TSC {} kHz, tracepoints {}): \
         exit costs the guest {:.1} us median; hidden per exit: {:.1} us before the kernel \
         sees it, {:.1} us after it resumes the guest (together up to {:.1} us less); \
         entry path {:.1} us",
        r.samples,
        r.tsc_khz,
        if r.traced { "on" } else { "off" },
        r.exit_cost.p50 / 1e3,
        r.exit_side.p50 / 1e3,
        r.entry_side.p50 / 1e3,
        r.invisible_early_ns() / 1e3,
        r.entry_path.p50 / 1e3,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{CXL_MMIO32_END, CXL_MMIO32_START};
    use crate::memory::ram_end;

    #[test]
    fn trapped_and_timed_windows_are_served_by_the_vmm_and_only_timed_ones_timed() {
        let text = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/direct.toml");
        let mut topo = Topology::from_toml_str(&std::fs::read_to_string(text).unwrap()).unwrap();
        topo.windows[0].mode = WindowMode::Timed;
        topo.windows[1].mode = WindowMode::Trapped;
        let plan =
            crate::cxl::plan::plan(&topo, (CXL_MMIO32_START, CXL_MMIO32_END), ram_end(1 << 30))
                .unwrap();
        let served = vmm_served_windows(&topo, &plan);
        assert_eq!(
            served,
            vec![
                (plan.windows[0].base, plan.windows[0].size),
                (plan.windows[1].base, plan.windows[1].size)
            ]
        );
        let backings: Vec<_> = (0..1)
            .map(|i| Arc::new(Type3Backing::new(&format!("setup{i}"), 512 << 20, 0, None).unwrap()))
            .collect();
        let engine = Arc::new(Mutex::new(Engine::new(&topo)));
        let clock = Arc::new(crate::accel::clock::MachineClock::default());
        let tm = timed_memory(
            &topo,
            &plan,
            Arc::default(),
            &backings,
            engine.clone(),
            clock.clone(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(tm.windows().len(), 1);
        assert_eq!(tm.windows()[0].id, "ram0");
        assert_eq!(tm.windows()[0].base, plan.windows[0].base);
        // Nothing timed: no timed memory at all.
        topo.windows[0].mode = WindowMode::Native;
        assert!(
            timed_memory(&topo, &plan, Arc::default(), &backings, engine, clock)
                .unwrap()
                .is_none()
        );
    }
}
