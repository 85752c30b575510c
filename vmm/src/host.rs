//! Facts about the host that decide whether and how a guest can run.

use std::path::Path;

/// A `/dev/kvm` backed by the paravirtual `kvm_pvm` module runs CPL-0 guest
/// code by emulation and cannot boot a stock kernel (measured in
/// docs/kvm-hosts.md).
pub fn kvm_is_paravirtual() -> bool {
    Path::new("/sys/module/kvm_pvm").exists()
}

/// Whether this host's KVM is the paravirtual kind that cannot boot a stock
/// kernel. Asked once (it reads /sys and /proc): later askers may be vCPU
/// threads under a seccomp filter that opens no files.
pub fn kvm_cannot_boot_linux() -> bool {
    static ANSWER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ANSWER.get_or_init(|| kvm_is_paravirtual() && !cpu_has_hw_virt())
}

/// Whether the CPU exposes hardware virtualization to this OS.
pub fn cpu_has_hw_virt() -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| {
            s.lines()
                .filter(|l| l.starts_with("flags"))
                .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
        })
        .unwrap_or(false)
}

/// The guest physical address space on this host, asked once (both
/// `--memory` and the topology are checked against it). Its MAXPHYADDR is
/// KVM's supported CPUID leaf 0x8000_0008, which cxlvmm passes to the
/// guest unchanged, or the CPU's own where /dev/kvm cannot be asked; the
/// fabric crate's default if neither answers.
pub fn guest_address_limits() -> fabric::topology::AddressLimits {
    static LIMITS: std::sync::OnceLock<fabric::topology::AddressLimits> =
        std::sync::OnceLock::new();
    *LIMITS.get_or_init(|| fabric::topology::AddressLimits {
        phys_addr_bits: asked_phys_addr_bits(),
    })
}

fn asked_phys_addr_bits() -> u8 {
    kvm_phys_addr_bits()
        .or_else(cpu_phys_addr_bits)
        .unwrap_or(fabric::topology::AddressLimits::DEFAULT_PHYS_ADDR_BITS)
}

fn kvm_phys_addr_bits() -> Option<u8> {
    let kvm = kvm_ioctls::Kvm::new().ok()?;
    let cpuid = kvm
        .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
        .ok()?;
    let leaf = cpuid
        .as_slice()
        .iter()
        .find(|e| e.function == 0x8000_0008)?;
    phys_bits_of(leaf.eax)
}

fn cpu_phys_addr_bits() -> Option<u8> {
    use std::arch::x86_64::__cpuid;
    // Leaf 0x8000_0000 says whether 0x8000_0008 exists.
    if __cpuid(0x8000_0000).eax < 0x8000_0008 {
        return None;
    }
    phys_bits_of(__cpuid(0x8000_0008).eax)
}

/// EAX[7:0] of leaf 0x8000_0008, if it is a plausible MAXPHYADDR.
fn phys_bits_of(eax: u32) -> Option<u8> {
    let bits = (eax & 0xff) as u8;
    (36..=52).contains(&bits).then_some(bits)
}

/// Host RAM in bytes (`MemTotal`), if it can be read.
pub fn total_memory() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_total(&s)
}

fn parse_mem_total(meminfo: &str) -> Option<u64> {
    proc_field(meminfo, "MemTotal:")?.checked_mul(1024)
}

/// The number after `key` (with its colon) in a `/proc` key-value file such
/// as `/proc/meminfo` or `/proc/self/status` (`MemTotal:  24576000 kB`).
pub fn proc_field(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mem_total() {
        let s = "MemTotal:       24576000 kB\nMemFree:  1 kB\n";
        assert_eq!(parse_mem_total(s), Some(24_576_000 * 1024));
        assert_eq!(parse_mem_total("MemFree: 1 kB\n"), None);
        assert_eq!(parse_mem_total("MemTotal: lots kB\n"), None);
    }

    #[test]
    fn phys_bits_come_from_eax_low_byte() {
        assert_eq!(phys_bits_of(0x3030), Some(48));
        assert_eq!(phys_bits_of(0x302e), Some(46));
        assert_eq!(phys_bits_of(0), None);
        assert!((36..=52).contains(&guest_address_limits().phys_addr_bits));
    }
}
