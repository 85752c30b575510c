//! What to tell the user when KVM stops a vCPU because it could not emulate
//! a guest instruction (`KVM_EXIT_INTERNAL_ERROR`, suberror
//! `KVM_INTERNAL_ERROR_EMULATION`).
//!
//! KVM emulates an instruction only when it touches memory no memslot
//! backs: device registers, and CXL regions served trapped (or timed),
//! whose every access exits to cxlvmm. Its emulator handles the loads and
//! stores device drivers use, but not instruction fetches from such memory
//! (code), page-table walks through it, nor most vector (SSE/AVX) and
//! string instructions. So the useful answer names the place the failing
//! access went to, if it is one of these; only when it is not, and the host
//! is a paravirtual KVM, is the host the likely cause.
//!
//! What KVM reports (arch/x86/kvm/x86.c, `prepare_emulation_failure_exit`,
//! Linux 5.14 and later, the rig's 6.1 included): `internal.data[0]` holds
//! flags; with `KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES` set
//! (only when userspace enabled `KVM_CAP_EXIT_ON_EMULATION_FAILURE`, which
//! cxlvmm does only on request, `CXLVMM_EMULATE_SSE=1`, see `vector_mmio`) the next two
//! words hold the instruction bytes; then five words of the vendor's exit
//! information (`get_exit_info`): exit reason, info1, info2, interrupt info,
//! error code. On AMD, a nested page fault (exit code 0x400) has the
//! faulting guest-physical address in info2 (EXITINFO2); Intel's exit
//! information does not carry it, and then the instruction pointer's own
//! guest-physical address is the one lead.

use kvm_ioctls::VcpuFd;
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

use crate::cxl::regions::{KvmSlots, RegionInfo, RegionMapper, RegionMode};
use crate::guest_map::MapItem;
use crate::memory::GuestMemory;

/// `KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES`.
const FLAG_INSTRUCTION_BYTES: u64 = 1;
/// AMD's exit code for a nested page fault (`SVM_EXIT_NPF`).
const SVM_EXIT_NPF: u64 = 0x400;

/// The failure as KVM reported it, and where the vCPU stood.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Failure {
    pub rip: u64,
    /// The guest-physical address of `rip`, if the page tables map it.
    pub rip_gpa: Option<u64>,
    /// The guest-physical address the failing access went to, where KVM
    /// says (AMD nested page faults).
    pub fault_gpa: Option<u64>,
    /// The instruction's bytes, from KVM or read at `rip_gpa` in RAM.
    pub insn: Vec<u8>,
    /// Exit reason from KVM's exit information.
    pub exit_reason: Option<u64>,
}

impl Failure {
    /// Reads KVM's `internal.data` (its first `ndata` words).
    pub fn from_kvm_data(rip: u64, ndata: u32, data: &[u64]) -> Failure {
        let data = &data[..(ndata as usize).min(data.len())];
        let mut f = Failure {
            rip,
            ..Failure::default()
        };
        let Some(&flags) = data.first() else {
            return f;
        };
        let mut info_start = 1;
        if flags & FLAG_INSTRUCTION_BYTES != 0 && data.len() >= 3 {
            let bytes: Vec<u8> = data[1..3].iter().flat_map(|w| w.to_le_bytes()).collect();
            let size = usize::from(bytes[0]).min(15);
            f.insn = bytes[1..1 + size].to_vec();
            info_start = 3;
        }
        let info = data.get(info_start..info_start + 5);
        if let Some(info) = info {
            // The exit reason is a u32 in the first word.
            let reason = info[0] & 0xffff_ffff;
            f.exit_reason = Some(reason);
            if reason == SVM_EXIT_NPF {
                f.fault_gpa = Some(info[2]);
            }
        }
        f
    }
}

/// A guest-physical range the message can name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    pub name: String,
    pub start: u64,
    pub size: u64,
    /// Whether guest RAM backs it (nothing there needs emulation).
    pub ram: bool,
}

/// The places of a running VM: its trapped (or timed) CXL regions, first
/// so they win over the window-less map items, then the guest map.
pub fn places(map: &[MapItem], regions: &[RegionInfo]) -> Vec<Place> {
    let mut out: Vec<Place> = regions
        .iter()
        .filter(|r| r.mode != RegionMode::Native)
        .map(|r| Place {
            name: format!(
                "the {} CXL region [{:#x}, {:#x}) ({}-way x {} B; every access exits to cxlvmm)",
                format!("{:?}", r.mode).to_lowercase(),
                r.base,
                r.base + r.size,
                r.ways,
                r.granularity
            ),
            start: r.base,
            size: r.size,
            ram: false,
        })
        .collect();
    out.extend(map.iter().map(|i| Place {
        name: i.name.clone(),
        start: i.start,
        size: i.size,
        ram: i.kind == crate::guest_map::MapKind::Ram,
    }));
    out
}

impl Place {
    /// As the message says it: "the trapped CXL region ...", "device
    /// memory (ECAM)".
    fn phrase(&self) -> String {
        if self.name.starts_with("the ") {
            self.name.clone()
        } else {
            format!("device memory ({})", self.name)
        }
    }
}

fn place_of(places: &[Place], gpa: u64) -> Option<&Place> {
    places
        .iter()
        .find(|p| gpa >= p.start && gpa - p.start < p.size)
}

/// The message for a vCPU stopped by an emulation failure.
pub fn message(index: u8, f: &Failure, places: &[Place], paravirtual_host: bool) -> String {
    let mut at = format!(
        "vcpu{index}: KVM could not emulate the instruction at RIP {:#x}",
        f.rip
    );
    if let Some(g) = f.rip_gpa {
        at += &format!(" (guest-physical {g:#x})");
    }
    if !f.insn.is_empty() {
        let hex: Vec<String> = f.insn.iter().map(|b| format!("{b:02x}")).collect();
        at += &format!(", bytes {}", hex.join(" "));
    }
    let cannot = "code, page tables and vector (SSE/AVX) or string instructions cannot run \
                  there: KVM emulates only plain loads and stores on memory that exits to the VMM";
    // The code itself lies in memory that is not RAM: fetching it failed.
    if let Some(p) = f
        .rip_gpa
        .and_then(|g| place_of(places, g))
        .filter(|p| !p.ram)
    {
        return format!(
            "{at}: the instruction itself is in {}; {cannot}",
            p.phrase()
        );
    }
    if let Some(g) = f.fault_gpa {
        match place_of(places, g).filter(|p| !p.ram) {
            Some(p) => {
                return format!(
                    "{at}: it accessed guest-physical {g:#x} in {}; {cannot}",
                    p.phrase()
                )
            }
            None => {
                return format!(
                    "{at}: it accessed guest-physical {g:#x}, which no device decodes; {cannot}"
                )
            }
        }
    }
    if paravirtual_host {
        return format!("{at}: {}", crate::vcpu::EMULATION_HINT);
    }
    let trapped: Vec<&str> = places
        .iter()
        .filter(|p| p.name.contains("CXL region"))
        .map(|p| p.name.as_str())
        .collect();
    let lead = if trapped.is_empty() {
        "the instruction touched device memory".to_string()
    } else {
        format!(
            "KVM does not say which address it touched; if it was in {}, note that",
            trapped.join(" or ")
        )
    };
    format!("{at}: {lead}; {cannot}")
}

/// The message for vCPU `index`, which KVM has just stopped with an
/// emulation failure: KVM's report, the vCPU's registers and page tables,
/// and the VM's memory map.
pub fn describe(
    index: u8,
    vcpu: &mut VcpuFd,
    mem: &GuestMemory,
    regions: Option<&RegionMapper<KvmSlots>>,
) -> String {
    // SAFETY: called right after KVM_EXIT_INTERNAL_ERROR, when the kernel
    // has filled the `internal` member of the kvm_run exit union.
    let internal = unsafe { vcpu.get_kvm_run().__bindgen_anon_1.internal };
    let state = vcpu.get_regs().ok().zip(vcpu.get_sregs().ok());
    // Linear to guest-physical as the vCPU sees it (identity before paging).
    let translate = |la: u64| match &state {
        Some((_, s)) if s.cr0 & (1 << 31) != 0 => {
            crate::guest_stack::translate(mem, s.cr3, s.cr4, la)
        }
        Some(_) => Some(la),
        None => None,
    };
    let rip = state.as_ref().map_or(0, |(r, _)| r.rip);
    let mut f = Failure::from_kvm_data(rip, internal.ndata, &internal.data);
    f.rip_gpa = translate(rip);
    if f.insn.is_empty() {
        f.insn = crate::guest_stack::read_code(mem, rip, translate);
    }
    let ram: u64 = mem.iter().map(|r| r.len()).sum();
    let map = crate::guest_map::guest_map(ram, None).unwrap_or_default();
    let regions = regions.map(|r| r.regions()).unwrap_or_default();
    let paravirtual = crate::host::kvm_cannot_boot_linux();
    message(index, &f, &places(&map, &regions), paravirtual)
}

#[cfg(test)]
mod tests;
