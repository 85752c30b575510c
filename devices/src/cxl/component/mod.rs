//! CXL component registers (CXL 3.1 §8.2.4): the 64 KiB block that every CXL
//! host bridge (CHBCR), port and endpoint exposes, holding the capability
//! header array, RAS, link and HDM decoder capabilities. Also the DOE mailbox
//! and the CDAT it serves, which describe the same components' performance.
//!
//! [`ComponentRegisters`] is the plain register logic; [`ComponentBlock`] puts
//! it on the bus behind its own lock and hands each decoder commit or reset
//! to an [`HdmEventSink`] (the VMM's region mapper) once that lock is
//! released.

mod block;
mod caps;
pub mod cdat;
pub mod doe;
pub mod hdm;
pub mod ras;

pub use block::{ComponentBlock, HdmEventSink};
pub use caps::{
    CACHE_MEM_OFFSET, CAP_ID_CACHE_MEM, CAP_ID_HDM, CAP_ID_LINK, CAP_ID_RAS, HDM_OFFSET,
    LINK_OFFSET, RAS_OFFSET,
};
pub use cdat::{Cdat, CdatEntry};
pub use doe::{Doe, DoeProtocol};
pub use hdm::{CommitError, DecoderState, GranularityCaps, HdmConfig, HdmEvent};
pub use ras::RasCapability;

use std::fmt;

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
}

/// The decoder events of one register write: a qword write reaches two
/// dwords, so at most two.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HdmEvents([Option<HdmEvent>; 2]);

impl HdmEvents {
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Option::is_none)
    }

    pub fn iter(&self) -> impl Iterator<Item = HdmEvent> + '_ {
        self.0.iter().flatten().copied()
    }
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
        }
    }

    pub fn kind(&self) -> ComponentKind {
        self.kind
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

    fn write_dword(&mut self, offset: u64, value: u32) -> Option<HdmEvent> {
        let cm = cache_mem_offset(offset)?;
        if let Some(ras) = &mut self.ras {
            if let Some(rel) = within(cm, RAS_OFFSET, ras::RAS_CAPABILITY_LEN) {
                ras.write(rel, value);
                return None;
            }
        }
        if let Some(hdm) = &mut self.hdm {
            if let Some(rel) = within(cm, HDM_OFFSET, hdm.len()) {
                let change = hdm.write(rel, value);
                let decoder = hdm.decoder_at(rel)?;
                return match change {
                    HdmChange::None => None,
                    HdmChange::Committed => Some(HdmEvent::Committed { decoder }),
                    HdmChange::Uncommitted => Some(HdmEvent::Reset { decoder }),
                };
            }
        }
        // Header array and link capability are read-only.
        None
    }

    /// A guest read of `data.len()` bytes at `offset`.
    pub fn read(&self, offset: u64, data: &mut [u8]) {
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

    /// A guest write; returns the decoder commits and resets it caused.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> HdmEvents {
        match *data {
            [a, b, c, d] if offset.is_multiple_of(4) => HdmEvents([
                self.write_dword(offset, u32::from_le_bytes([a, b, c, d])),
                None,
            ]),
            [a, b, c, d, e, f, g, h] if offset.is_multiple_of(8) => {
                // Low dword first, as Linux's lo-hi 64-bit accessors do.
                let lo = self.write_dword(offset, u32::from_le_bytes([a, b, c, d]));
                let hi = offset
                    .checked_add(4)
                    .and_then(|o| self.write_dword(o, u32::from_le_bytes([e, f, g, h])));
                HdmEvents([lo, hi])
            }
            _ => HdmEvents::default(),
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
