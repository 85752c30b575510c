//! The guest's CXL hierarchy: placing it (plan), building its devices, and
//! describing it in ACPI.

pub mod acpi;
pub mod build;
pub mod composed;
pub mod plan;
pub mod regions;

use std::sync::Arc;

use devices::cxl::backing::Type3Backing;

/// Flushes every device's persistent media to stable storage (fdatasync,
/// which also writes back the pages the guest dirtied through its native
/// MAP_SHARED mappings). A failure is reported, not fatal: the VM is
/// already over and the data is still in the host's page cache.
pub fn sync_persistent_media(backings: &[Arc<Type3Backing>]) {
    for (i, b) in backings.iter().enumerate() {
        if let Err(e) = b.sync() {
            log::error!("type3[{i}]: syncing persistent media to disk: {e}");
        }
    }
}
