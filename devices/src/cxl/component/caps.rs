//! The CXL.cache/mem capability header array (CXL 3.1 §8.2.4.1–2) and where
//! each capability sits in the 4 KiB CXL.cache/mem area.
//!
//! Linux's `cxl_probe_component_regs()` reads dword 0, checks ID 1, then walks
//! `Array_Size` headers and maps RAS (ID 2) and HDM (ID 5) from their
//! pointers; it skips other IDs. Offsets match QEMU so register dumps compare
//! one to one.

use super::ComponentKind;

/// CXL.cache/mem registers start 4 KiB into the component block.
pub const CACHE_MEM_OFFSET: u64 = 0x1000;
/// And span 4 KiB.
pub const CACHE_MEM_LEN: u64 = 0x1000;

/// Offsets from [`CACHE_MEM_OFFSET`], as QEMU places them.
pub const RAS_OFFSET: u64 = 0x80;
pub const LINK_OFFSET: u64 = 0xD8;
pub const HDM_OFFSET: u64 = 0x128;
/// The link capability's size; Linux never reads it, so it is all zero.
pub const LINK_CAPABILITY_LEN: u64 = 0x50;

// The capabilities must not overlap and must fit the 4 KiB area: the header
// array (at most 4 dwords) before RAS, RAS before link, link before HDM, and
// the largest HDM capability (16 decoders) inside the area.
const _: () = assert!(4 * 4 <= RAS_OFFSET);
const _: () = assert!(RAS_OFFSET + super::ras::RAS_CAPABILITY_LEN <= LINK_OFFSET);
const _: () = assert!(LINK_OFFSET + LINK_CAPABILITY_LEN <= HDM_OFFSET);
const _: () = assert!(HDM_OFFSET + 0x10 + 0x20 * super::hdm::MAX_DECODERS as u64 <= CACHE_MEM_LEN);

/// Capability IDs in the header array.
pub const CAP_ID_CACHE_MEM: u16 = 1;
pub const CAP_ID_RAS: u16 = 2;
pub const CAP_ID_LINK: u16 = 4;
pub const CAP_ID_HDM: u16 = 5;

/// Versions as QEMU advertises them, which Linux has been exercised against.
const CACHE_MEM_CAP_VERSION: u32 = 1;
const CACHE_MEM_VERSION: u32 = 1;
const RAS_VERSION: u32 = 2;
const LINK_VERSION: u32 = 2;
const HDM_VERSION: u32 = 1;

/// Which capabilities a kind of component carries (CXL 3.1 Table 8-22).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CapabilitySet {
    pub ras: bool,
    pub link: bool,
    pub hdm: bool,
}

impl CapabilitySet {
    pub(crate) fn for_kind(kind: ComponentKind) -> Self {
        match kind {
            // A host bridge reports errors through its root ports, not here.
            ComponentKind::HostBridge => Self {
                ras: false,
                link: true,
                hdm: true,
            },
            ComponentKind::SwitchUpstream | ComponentKind::Endpoint => Self {
                ras: true,
                link: true,
                hdm: true,
            },
            // Ports that route by bus number alone need no HDM decoders.
            ComponentKind::RootPort | ComponentKind::SwitchDownstream => Self {
                ras: true,
                link: true,
                hdm: false,
            },
        }
    }
}

/// One header: ID [15:0], version [19:16], pointer [31:20] from the
/// CXL.cache/mem base.
fn header(id: u16, version: u32, offset: u64) -> u32 {
    u32::from(id) | (version << 16) | ((offset as u32) << 20)
}

/// The header array as dwords: the array header, then one header per
/// capability in ID order with no null entries.
pub(crate) fn header_array(caps: CapabilitySet) -> Vec<u32> {
    let mut entries = Vec::new();
    if caps.ras {
        entries.push(header(CAP_ID_RAS, RAS_VERSION, RAS_OFFSET));
    }
    if caps.link {
        entries.push(header(CAP_ID_LINK, LINK_VERSION, LINK_OFFSET));
    }
    if caps.hdm {
        entries.push(header(CAP_ID_HDM, HDM_VERSION, HDM_OFFSET));
    }
    let array_header = u32::from(CAP_ID_CACHE_MEM)
        | (CACHE_MEM_CAP_VERSION << 16)
        | (CACHE_MEM_VERSION << 20)
        | ((entries.len() as u32) << 24);
    std::iter::once(array_header).chain(entries).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_are_where_linux_reads_them() {
        // ID 5, version 1, pointer 0x128 -> 0x128 << 20 = 0x1280_0000.
        assert_eq!(header(CAP_ID_HDM, 1, 0x128), 0x1281_0005);
        assert_eq!(header(CAP_ID_RAS, 2, 0x80), 0x0802_0002);
        assert_eq!(header(CAP_ID_LINK, 2, 0xD8), 0x0D82_0004);
    }
}
