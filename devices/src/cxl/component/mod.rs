//! CXL component registers (CXL 3.1 §8.2.4): the 64 KiB block that every CXL
//! host bridge (CHBCR), port and endpoint exposes, holding the capability
//! header array, RAS, link and HDM decoder capabilities. Also the DOE mailbox
//! and the CDAT it serves, which describe the same components' performance.
//!
//! Everything here is plain device logic behind [`crate::BusDeviceMut`]; the VMM
//! maps the block behind a BAR or the CHBS base and learns about decoder
//! commits through [`ComponentRegisters::set_commit_listener`].

mod caps;
pub mod cdat;
pub mod doe;
pub mod hdm;
pub mod ras;

pub use caps::{
    CACHE_MEM_OFFSET, CAP_ID_CACHE_MEM, CAP_ID_HDM, CAP_ID_LINK, CAP_ID_RAS, HDM_OFFSET,
    LINK_OFFSET, RAS_OFFSET,
};
pub use cdat::{Cdat, CdatEntry};
pub use doe::{Doe, DoeProtocol};
pub use hdm::{CommitError, DecoderState, GranularityCaps, HdmConfig};
pub use ras::RasCapability;

use std::fmt;

use crate::BusDeviceMut;
use caps::{CapabilitySet, CACHE_MEM_LEN};
use hdm::{HdmChange, HdmDecoders};

/// Size of a component register block (and of a CHBS v1 `length`).
pub const COMPONENT_REGS_SIZE: u64 = 0x10000;

/// Which CXL component a register block belongs to; decides its capabilities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ComponentKind {
    /// Host bridge (CHBCR): HDM + link, no RAS.
    HostBridge,
    /// Root port: RAS + link.
    RootPort,
    /// Switch upstream port: HDM + RAS + link.
    SwitchUpstream,
    /// Switch downstream port: RAS + link.
    SwitchDownstream,
    /// Type-3 memory device: HDM + RAS + link.
    Endpoint,
}

impl ComponentKind {
    fn default_hdm(self) -> HdmConfig {
        match self {
            // QEMU's type-3: every interleave option; capacity unknown here,
            // so an endpoint built without a config cannot commit.
            ComponentKind::Endpoint => HdmConfig {
                target_count: 0,
                three_six_twelve: true,
                sixteen_way: true,
                ..HdmConfig::default()
            },
            _ => HdmConfig {
                target_count: hdm::MAX_TARGETS,
                ..HdmConfig::default()
            },
        }
    }
}

/// A component register block.
///
/// Accesses of 4 bytes (dword-aligned) and 8 bytes (qword-aligned, handled as
/// low then high dword) reach the registers, as CXL 3.1 §8.2.2 allows; any
/// other width or alignment reads as 0 and is ignored, and so is everything
/// outside the CXL.cache/mem capabilities.
pub struct ComponentRegisters {
    kind: ComponentKind,
    header_array: Vec<u32>,
    ras: Option<RasCapability>,
    hdm: Option<HdmDecoders>,
    commit_listener: Option<Box<dyn Fn() + Send>>,
}

impl ComponentRegisters {
    /// A freshly reset block for `kind`. `hdm` configures the decoders of
    /// kinds that have them (host bridge, switch upstream port, endpoint),
    /// with defaults like QEMU's when `None`; other kinds ignore it.
    pub fn new(kind: ComponentKind, hdm: Option<HdmConfig>) -> Self {
        let caps = CapabilitySet::for_kind(kind);
        let endpoint = kind == ComponentKind::Endpoint;
        Self {
            kind,
            header_array: caps::header_array(caps),
            ras: caps.ras.then(RasCapability::new),
            hdm: caps
                .hdm
                .then(|| HdmDecoders::new(hdm.unwrap_or_else(|| kind.default_hdm()), endpoint)),
            commit_listener: None,
        }
    }

    pub fn kind(&self) -> ComponentKind {
        self.kind
    }

    /// Calls `f` after every commit or uncommit of a decoder, from within the
    /// guest's register write, so the VMM can recompute the region map.
    ///
    /// The block is borrowed for the whole write (the bus holds its lock), so
    /// `f` must not access this block: record that a change happened and call
    /// [`Self::committed_decoders`] afterwards.
    pub fn set_commit_listener(&mut self, f: Box<dyn Fn() + Send>) {
        self.commit_listener = Some(f);
    }

    /// Committed decoders in index order; empty for kinds without HDM.
    pub fn committed_decoders(&self) -> Vec<DecoderState> {
        self.hdm
            .as_ref()
            .map(HdmDecoders::committed)
            .unwrap_or_default()
    }

    /// Why decoder `index`'s last commit failed, while its Error bit is set.
    pub fn commit_error(&self, index: usize) -> Option<CommitError> {
        self.hdm.as_ref().and_then(|h| h.commit_error(index))
    }

    /// HDM Decoder Enable (global control b1).
    pub fn hdm_enabled(&self) -> bool {
        self.hdm.as_ref().is_some_and(HdmDecoders::enabled)
    }

    /// The RAS capability, for error injection; `None` on host bridges.
    pub fn ras_mut(&mut self) -> Option<&mut RasCapability> {
        self.ras.as_mut()
    }

    /// The register dword at `offset`, which must be dword-aligned.
    fn read_dword(&self, offset: u64) -> u32 {
        let Some(cm) = cache_mem_offset(offset) else {
            return 0;
        };
        let array_len = 4 * self.header_array.len() as u64;
        if cm < array_len {
            return self.header_array[(cm / 4) as usize];
        }
        if let Some(ras) = &self.ras {
            if let Some(rel) = within(cm, RAS_OFFSET, ras::RAS_CAPABILITY_LEN) {
                return ras.read(rel);
            }
        }
        if let Some(hdm) = &self.hdm {
            if let Some(rel) = within(cm, HDM_OFFSET, hdm.len()) {
                return hdm.read(rel);
            }
        }
        // The header array's reserved tail, the link capability (its status
        // is not modelled and Linux never reads it) and unused space.
        0
    }

    fn write_dword(&mut self, offset: u64, value: u32) -> HdmChange {
        let Some(cm) = cache_mem_offset(offset) else {
            return HdmChange::None;
        };
        if let Some(ras) = &mut self.ras {
            if let Some(rel) = within(cm, RAS_OFFSET, ras::RAS_CAPABILITY_LEN) {
                ras.write(rel, value);
                return HdmChange::None;
            }
        }
        if let Some(hdm) = &mut self.hdm {
            if let Some(rel) = within(cm, HDM_OFFSET, hdm.len()) {
                return hdm.write(rel, value);
            }
        }
        // Header array and link capability are read-only.
        HdmChange::None
    }

    fn notify(&self, changes: &[HdmChange]) {
        if changes.iter().any(|c| *c != HdmChange::None) {
            if let Some(f) = &self.commit_listener {
                f();
            }
        }
    }
}

/// The offset within the CXL.cache/mem area, if `offset` falls in it.
fn cache_mem_offset(offset: u64) -> Option<u64> {
    let cm = offset.checked_sub(CACHE_MEM_OFFSET)?;
    (cm < CACHE_MEM_LEN).then_some(cm)
}

/// `cm - start` if `cm` lies in `[start, start + len)`.
fn within(cm: u64, start: u64, len: u64) -> Option<u64> {
    let rel = cm.checked_sub(start)?;
    (rel < len).then_some(rel)
}

impl BusDeviceMut for ComponentRegisters {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        match data.len() {
            4 if offset.is_multiple_of(4) => {
                data.copy_from_slice(&self.read_dword(offset).to_le_bytes())
            }
            8 if offset.is_multiple_of(8) => {
                let lo = self.read_dword(offset);
                let hi = offset.checked_add(4).map_or(0, |o| self.read_dword(o));
                data[..4].copy_from_slice(&lo.to_le_bytes());
                data[4..].copy_from_slice(&hi.to_le_bytes());
            }
            _ => {}
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        match *data {
            [a, b, c, d] if offset.is_multiple_of(4) => {
                let change = self.write_dword(offset, u32::from_le_bytes([a, b, c, d]));
                self.notify(&[change]);
            }
            [a, b, c, d, e, f, g, h] if offset.is_multiple_of(8) => {
                // Low dword first, as Linux's lo-hi 64-bit accessors do.
                let lo = self.write_dword(offset, u32::from_le_bytes([a, b, c, d]));
                let hi = match offset.checked_add(4) {
                    Some(o) => self.write_dword(o, u32::from_le_bytes([e, f, g, h])),
                    None => HdmChange::None,
                };
                self.notify(&[lo, hi]);
            }
            _ => {}
        }
    }
}

impl fmt::Debug for ComponentRegisters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ComponentRegisters")
            .field("kind", &self.kind)
            .field("ras", &self.ras)
            .field("hdm", &self.hdm)
            .finish_non_exhaustive()
    }
}

/// The link capability's extent, for tests that check it reads as zero.
#[cfg(test)]
const LINK_RANGE: std::ops::Range<u64> = LINK_OFFSET..LINK_OFFSET + caps::LINK_CAPABILITY_LEN;

#[cfg(test)]
mod tests;
