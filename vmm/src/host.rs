//! Facts about the host that decide whether and how a guest can run.

use std::path::Path;

/// A `/dev/kvm` backed by the paravirtual `kvm_pvm` module runs CPL-0 guest
/// code by emulation and cannot boot a stock kernel (shared/kvm-hosts.md).
pub fn kvm_is_paravirtual() -> bool {
    Path::new("/sys/module/kvm_pvm").exists()
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

/// Host RAM in bytes (`MemTotal`), if it can be read.
pub fn total_memory() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_total(&s)
}

fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
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
}
