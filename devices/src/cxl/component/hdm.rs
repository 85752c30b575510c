//! HDM decoder capability (CXL 3.1 §8.2.4.20): the registers through which the
//! guest programs how host physical addresses decode to ports or device memory.
//!
//! Linux (drivers/cxl/core/hdm.c) writes base, size, target list or DPA skip,
//! then the control register with Commit set, and polls Committed or Error for
//! 20 ms. We validate and answer on that same control write, so the guest never
//! sees an intermediate state and the VMM can rebuild its region map at once
//! (the block reports the write as an [`HdmEvent`]).

use std::fmt;

/// Capability register; read-only.
pub(crate) const HDM_CAPABILITY: u64 = 0x00;
/// Global control; b1 enables HDM decode.
pub(crate) const HDM_GLOBAL_CONTROL: u64 = 0x04;
/// Decoder `n` starts at `DECODER_BLOCK + n * DECODER_STRIDE`.
const DECODER_BLOCK: u64 = 0x10;
const DECODER_STRIDE: u64 = 0x20;

// Registers within one decoder.
const BASE_LO: u64 = 0x00;
const BASE_HI: u64 = 0x04;
const SIZE_LO: u64 = 0x08;
const SIZE_HI: u64 = 0x0C;
const CONTROL: u64 = 0x10;
/// Target list (ports) or DPA skip (endpoints), low and high dwords.
const TARGET_LO: u64 = 0x14;
const TARGET_HI: u64 = 0x18;

/// Base, size and DPA skip hold only bits [31:28] in their low dword: the
/// hardware decodes in 256 MiB units.
const ADDR_LO_MASK: u32 = 0xF000_0000;
/// 256 MiB: the unit of every decoder base and size.
pub const HDM_ALIGN: u64 = 256 << 20;

pub(crate) const CTRL_IG_MASK: u32 = 0xF;
pub(crate) const CTRL_IW_SHIFT: u32 = 4;
pub(crate) const CTRL_IW_MASK: u32 = 0xF << CTRL_IW_SHIFT;
pub(crate) const CTRL_LOCK_ON_COMMIT: u32 = 1 << 8;
pub(crate) const CTRL_COMMIT: u32 = 1 << 9;
pub(crate) const CTRL_COMMITTED: u32 = 1 << 10;
pub(crate) const CTRL_ERROR_NOT_COMMITTED: u32 = 1 << 11;
pub(crate) const CTRL_TARGET_TYPE_HOST_ONLY: u32 = 1 << 12;
/// Bits the guest may write, as QEMU: IG, IW, lock-on-commit, commit and
/// target type. Committed and Error are status; BI/UIO are not offered.
pub(crate) const CTRL_WRITE_MASK: u32 =
    CTRL_IG_MASK | CTRL_IW_MASK | CTRL_LOCK_ON_COMMIT | CTRL_COMMIT | CTRL_TARGET_TYPE_HOST_ONLY;

pub(crate) const CAP_GRANULARITY_11_8: u32 = 1 << 8;
pub(crate) const CAP_GRANULARITY_14_12: u32 = 1 << 9;
pub(crate) const CAP_3_6_12_WAY: u32 = 1 << 11;
pub(crate) const CAP_16_WAY: u32 = 1 << 12;

/// Global control: HDM Decoder Enable. Poison-on-decode-error (b0) stays 0
/// because the capability does not advertise it.
pub(crate) const GLOBAL_CTRL_ENABLE: u32 = 1 << 1;

/// The most decoders one capability can hold that Linux can count
/// (`cxl_hdm_decoder_count`: encoding n means 2n decoders).
pub const MAX_DECODERS: u8 = 16;
/// A target list has one byte per way in two dwords.
pub const MAX_TARGETS: u8 = 8;

/// Which HPA bits the decoders can interleave on (capability b8/b9).
///
/// Linux ≥ 6.11 refuses layouts whose interleave selector bits fall outside
/// these, so advertising only `addr_14_12` forces granularity ≥ 4 KiB, which is
/// what page-granular native mapping needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GranularityCaps {
    /// b8: interleave on HPA bits 11:8 (256 B – 2 KiB granularity).
    pub addr_11_8: bool,
    /// b9: interleave on HPA bits 14:12 (4 KiB – 16 KiB granularity).
    pub addr_14_12: bool,
}

impl GranularityCaps {
    /// Both ranges, as QEMU advertises everywhere.
    pub const ALL: Self = Self {
        addr_11_8: true,
        addr_14_12: true,
    };
    /// Page-sized granularity only.
    pub const PAGE_ONLY: Self = Self {
        addr_11_8: false,
        addr_14_12: true,
    };

    /// The HPA bits the selector may use, as Linux's `interleave_mask`.
    fn hpa_bit_mask(self) -> u64 {
        let mut mask = 0;
        if self.addr_11_8 {
            mask |= 0xF << 8;
        }
        if self.addr_14_12 {
            mask |= 0x7 << 12;
        }
        mask
    }
}

impl Default for GranularityCaps {
    fn default() -> Self {
        Self::ALL
    }
}

/// What one HDM decoder capability offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HdmConfig {
    /// Number of decoders: 1, or an even number up to 16 (others are rounded
    /// up to the next encodable count).
    pub decoders: u8,
    /// Targets per decoder on host bridges and switch upstream ports (≤ 8);
    /// endpoints ignore it.
    pub target_count: u8,
    pub granularity_mask: GranularityCaps,
    /// 3, 6 and 12-way interleave supported (capability b11).
    pub three_six_twelve: bool,
    /// 16-way interleave supported (capability b12).
    pub sixteen_way: bool,
    /// Endpoints only: the device's DPA capacity in bytes (volatile then
    /// persistent). A commit whose DPA range ends beyond it fails.
    pub dpa_capacity: u64,
}

impl Default for HdmConfig {
    /// QEMU's choice: 4 decoders, all granularities, power-of-two ways.
    fn default() -> Self {
        Self {
            decoders: 4,
            target_count: 1,
            granularity_mask: GranularityCaps::ALL,
            three_six_twelve: false,
            sixteen_way: false,
            dpa_capacity: 0,
        }
    }
}

impl HdmConfig {
    /// The same config with the decoder and target counts made encodable.
    fn normalized(mut self, endpoint: bool) -> Self {
        let n = self.decoders.clamp(1, MAX_DECODERS);
        self.decoders = if n > 1 && n % 2 == 1 { n + 1 } else { n };
        self.target_count = if endpoint {
            self.target_count.min(MAX_TARGETS)
        } else {
            self.target_count.clamp(1, MAX_TARGETS)
        };
        self
    }

    /// Whether the interleave-ways value is advertised.
    fn supports_ways(&self, ways: u8) -> bool {
        match ways {
            1 | 2 | 4 | 8 => true,
            3 | 6 | 12 => self.three_six_twelve,
            16 => self.sixteen_way,
            _ => false,
        }
    }
}

// The IW/IG encodings are the ones the fabric's decoder uses too; one
// definition serves both.
pub use fabric::interleave::{decode_ways as ways_from_eiw, encode_ways as eiw_from_ways};

/// Granularity in bytes from the IG encoding; Linux accepts 0..=6
/// (256 B – 16 KiB).
pub fn granularity_from_eig(eig: u8) -> Option<u32> {
    fabric::interleave::decode_granularity(eig).map(|g| g as u32)
}

/// The IG encoding of `granularity` bytes.
pub fn eig_from_granularity(granularity: u32) -> Option<u8> {
    fabric::interleave::encode_granularity(u64::from(granularity))
}

/// HPA bits a decoder uses to pick its interleave position, per Linux's
/// `check_interleave_cap()` (from CXL 3.1 §8.2.4.20.13): none for 1 and 3
/// ways; otherwise the log2(ways / (1 or 3)) bits just above the granularity.
fn selector_bits(eiw: u8, eig: u8) -> u64 {
    let (low, count) = match eiw {
        0 | 8 => return 0,
        1..=4 => (u32::from(eig) + 8, u32::from(eiw)),
        _ => (u32::from(eig) + 8, u32::from(eiw) - 8),
    };
    ((1u64 << count) - 1) << low
}

/// Why a commit set Error-Not-Committed instead of Committed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    #[error("decoder {index} committed before decoder {missing}")]
    OutOfOrder { index: usize, missing: usize },
    #[error("size is zero")]
    ZeroSize,
    #[error("base {base:#x} or size {size:#x} is not 256 MiB aligned")]
    Misaligned { base: u64, size: u64 },
    #[error("base {base:#x} + size {size:#x} wraps around")]
    RangeWraps { base: u64, size: u64 },
    #[error("interleave-ways encoding {eiw} is not defined")]
    BadWays { eiw: u8 },
    #[error("{ways}-way interleave is not advertised")]
    WaysNotSupported { ways: u8 },
    #[error("{ways} ways exceed the {target_count} targets per decoder")]
    TooManyWays { ways: u8, target_count: u8 },
    #[error("interleave-granularity encoding {eig} is not defined")]
    BadGranularity { eig: u8 },
    #[error(
        "{ways} ways at {granularity} B interleave on HPA bits {bits:#x} that are not advertised"
    )]
    GranularityNotSupported {
        ways: u8,
        granularity: u32,
        bits: u64,
    },
    #[error("HPA range overlaps committed decoder {other}")]
    Overlap { other: usize },
    #[error("size {size:#x} is not a multiple of {ways} ways x 256 MiB")]
    SizeNotMultipleOfWays { size: u64, ways: u8 },
    #[error("DPA range ends at {end:#x}, beyond the capacity {capacity:#x}")]
    DpaBeyondCapacity { end: u64, capacity: u64 },
}

/// A committed decoder as the VMM needs it to build the region map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecoderState {
    pub index: usize,
    /// First HPA decoded.
    pub base: u64,
    /// Bytes of HPA decoded.
    pub size: u64,
    pub ways: u8,
    /// Interleave granularity in bytes.
    pub granularity: u32,
    /// Ports and host bridges: the port number for each interleave position
    /// (`targets[i]` serves position i). Empty on endpoints.
    pub targets: Vec<u8>,
    /// Endpoints: DPA skipped before this decoder's range. 0 on ports.
    pub dpa_skip: u64,
    /// Endpoints: first DPA this decoder maps (all lower decoders' DPA
    /// ranges and skips, plus this skip), latched at commit. 0 on ports.
    pub dpa_base: u64,
    /// Committed with Lock-On-Commit: frozen until reset.
    pub locked: bool,
}

impl DecoderState {
    /// Endpoints: bytes of DPA this decoder maps (its share of the HPA range).
    pub fn dpa_len(&self) -> u64 {
        self.size / u64::from(self.ways.max(1))
    }
}

/// A decoder commit or reset, as a component register block reports it to
/// whoever maps the regions its decoders open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HdmEvent {
    /// Decoder `decoder` committed.
    Committed { decoder: usize },
    /// Decoder `decoder`, committed until now, was released (Commit cleared).
    Reset { decoder: usize },
}

/// What a register write did to the set of committed decoders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HdmChange {
    None,
    Committed,
    Uncommitted,
}

#[derive(Clone, Debug, Default)]
struct Decoder {
    base_lo: u32,
    base_hi: u32,
    size_lo: u32,
    size_hi: u32,
    /// Only the guest-writable control bits; status bits come from the
    /// fields below.
    control: u32,
    target_lo: u32,
    target_hi: u32,
    /// Latched at a successful commit; `Some` makes the registers read-only.
    committed: Option<DecoderState>,
    /// Why the last commit failed; shown as Error-Not-Committed.
    error: Option<CommitError>,
}

impl Decoder {
    fn base(&self) -> u64 {
        (u64::from(self.base_hi) << 32) | u64::from(self.base_lo)
    }

    fn size(&self) -> u64 {
        (u64::from(self.size_hi) << 32) | u64::from(self.size_lo)
    }

    fn target_or_skip(&self) -> u64 {
        (u64::from(self.target_hi) << 32) | u64::from(self.target_lo)
    }

    fn control_value(&self) -> u32 {
        let mut v = self.control;
        if self.committed.is_some() {
            v |= CTRL_COMMITTED;
        }
        if self.error.is_some() {
            v |= CTRL_ERROR_NOT_COMMITTED;
        }
        v
    }
}

/// The register file of one HDM decoder capability.
pub(crate) struct HdmDecoders {
    config: HdmConfig,
    /// Endpoints carry DPA skip where ports carry a target list, and have a
    /// DPA capacity to respect.
    endpoint: bool,
    global_control: u32,
    decoders: Vec<Decoder>,
}

impl HdmDecoders {
    pub(crate) fn new(config: HdmConfig, endpoint: bool) -> Self {
        let config = config.normalized(endpoint);
        Self {
            config,
            endpoint,
            global_control: 0,
            decoders: vec![Decoder::default(); usize::from(config.decoders)],
        }
    }

    /// Bytes the capability occupies (Linux maps `0x10 + 0x20 * count`).
    pub(crate) fn len(&self) -> u64 {
        DECODER_BLOCK + DECODER_STRIDE * self.decoders.len() as u64
    }

    pub(crate) fn capability(&self) -> u32 {
        let n = self.config.decoders;
        let count_enc = if n <= 1 { 0 } else { u32::from(n / 2) };
        let mut cap = count_enc | (u32::from(self.config.target_count) << 4);
        if self.config.granularity_mask.addr_11_8 {
            cap |= CAP_GRANULARITY_11_8;
        }
        if self.config.granularity_mask.addr_14_12 {
            cap |= CAP_GRANULARITY_14_12;
        }
        if self.config.three_six_twelve {
            cap |= CAP_3_6_12_WAY;
        }
        if self.config.sixteen_way {
            cap |= CAP_16_WAY;
        }
        cap
    }

    pub(crate) fn enabled(&self) -> bool {
        self.global_control & GLOBAL_CTRL_ENABLE != 0
    }

    /// The decoder whose registers `offset` falls in.
    pub(crate) fn decoder_at(&self, offset: u64) -> Option<usize> {
        self.locate(offset).map(|(index, _)| index)
    }

    /// Splits an offset into (decoder index, register), if it names one.
    fn locate(&self, offset: u64) -> Option<(usize, u64)> {
        let rel = offset.checked_sub(DECODER_BLOCK)?;
        let index = usize::try_from(rel / DECODER_STRIDE).ok()?;
        (index < self.decoders.len()).then_some((index, rel % DECODER_STRIDE))
    }

    /// Reads the dword at `offset` (dword-aligned, from the capability base).
    pub(crate) fn read(&self, offset: u64) -> u32 {
        match offset {
            HDM_CAPABILITY => return self.capability(),
            HDM_GLOBAL_CONTROL => return self.global_control,
            _ => {}
        }
        let Some((index, reg)) = self.locate(offset) else {
            return 0;
        };
        let d = &self.decoders[index];
        match reg {
            BASE_LO => d.base_lo,
            BASE_HI => d.base_hi,
            SIZE_LO => d.size_lo,
            SIZE_HI => d.size_hi,
            CONTROL => d.control_value(),
            TARGET_LO => d.target_lo,
            TARGET_HI => d.target_hi,
            _ => 0,
        }
    }

    /// Writes the dword at `offset`; commits or uncommits synchronously.
    pub(crate) fn write(&mut self, offset: u64, value: u32) -> HdmChange {
        if offset == HDM_GLOBAL_CONTROL {
            self.global_control = value & GLOBAL_CTRL_ENABLE;
            return HdmChange::None;
        }
        let Some((index, reg)) = self.locate(offset) else {
            return HdmChange::None;
        };
        let endpoint = self.endpoint;
        let d = &mut self.decoders[index];
        if let Some(state) = &d.committed {
            // A committed decoder is read-only; only clearing Commit on an
            // unlocked one takes effect, and that releases it.
            if state.locked || reg != CONTROL || value & CTRL_COMMIT != 0 {
                return HdmChange::None;
            }
            d.control = value & CTRL_WRITE_MASK;
            d.committed = None;
            d.error = None;
            return HdmChange::Uncommitted;
        }
        match reg {
            BASE_LO => d.base_lo = value & ADDR_LO_MASK,
            BASE_HI => d.base_hi = value,
            SIZE_LO => d.size_lo = value & ADDR_LO_MASK,
            SIZE_HI => d.size_hi = value,
            // On endpoints this is the DPA skip, kept in 256 MiB units too.
            TARGET_LO if endpoint => d.target_lo = value & ADDR_LO_MASK,
            TARGET_LO => d.target_lo = value,
            TARGET_HI => d.target_hi = value,
            CONTROL => return self.write_control(index, value),
            _ => {}
        }
        HdmChange::None
    }

    fn write_control(&mut self, index: usize, value: u32) -> HdmChange {
        let d = &mut self.decoders[index];
        let was_commit = d.control & CTRL_COMMIT != 0;
        d.control = value & CTRL_WRITE_MASK;
        if d.control & CTRL_COMMIT == 0 {
            // Clearing Commit also clears a previous Error-Not-Committed:
            // that is how Linux recovers from a failed commit.
            d.error = None;
            return HdmChange::None;
        }
        if was_commit {
            // Only the 0 -> 1 edge of Commit starts a commit.
            return HdmChange::None;
        }
        match self.validate_commit(index) {
            Ok(state) => {
                let d = &mut self.decoders[index];
                d.committed = Some(state);
                d.error = None;
                HdmChange::Committed
            }
            Err(e) => {
                log::debug!("HDM decoder {index}: commit refused: {e}");
                self.decoders[index].error = Some(e);
                HdmChange::None
            }
        }
    }

    /// Checks decoder `index` as programmed and returns what it would decode.
    ///
    /// The order rule is "every lower decoder is committed", which is Linux's
    /// "id == number committed" whenever the committed decoders are 0..n; it
    /// also lets a hole left by an out-of-order reset be filled again. Overlap
    /// is checked against every committed decoder, above as well as below.
    fn validate_commit(&self, index: usize) -> Result<DecoderState, CommitError> {
        let d = &self.decoders[index];
        if let Some(missing) = self.decoders[..index]
            .iter()
            .position(|lower| lower.committed.is_none())
        {
            return Err(CommitError::OutOfOrder { index, missing });
        }
        let (base, size) = (d.base(), d.size());
        if size == 0 {
            return Err(CommitError::ZeroSize);
        }
        if base % HDM_ALIGN != 0 || size % HDM_ALIGN != 0 {
            return Err(CommitError::Misaligned { base, size });
        }
        let end = base
            .checked_add(size)
            .ok_or(CommitError::RangeWraps { base, size })?;

        let eiw = ((d.control & CTRL_IW_MASK) >> CTRL_IW_SHIFT) as u8;
        let ways = ways_from_eiw(eiw).ok_or(CommitError::BadWays { eiw })?;
        if !self.config.supports_ways(ways) {
            return Err(CommitError::WaysNotSupported { ways });
        }
        if !self.endpoint && ways > self.config.target_count {
            return Err(CommitError::TooManyWays {
                ways,
                target_count: self.config.target_count,
            });
        }
        let eig = (d.control & CTRL_IG_MASK) as u8;
        let granularity = granularity_from_eig(eig).ok_or(CommitError::BadGranularity { eig })?;
        let bits = selector_bits(eiw, eig);
        if bits & !self.config.granularity_mask.hpa_bit_mask() != 0 {
            return Err(CommitError::GranularityNotSupported {
                ways,
                granularity,
                bits,
            });
        }

        if let Some(other) = self.decoders.iter().enumerate().position(|(i, o)| {
            i != index
                && o.committed
                    .as_ref()
                    .is_some_and(|s| base < s.base.saturating_add(s.size) && s.base < end)
        }) {
            return Err(CommitError::Overlap { other });
        }

        let mut state = DecoderState {
            index,
            base,
            size,
            ways,
            granularity,
            targets: Vec::new(),
            dpa_skip: 0,
            dpa_base: 0,
            locked: d.control & CTRL_LOCK_ON_COMMIT != 0,
        };
        if self.endpoint {
            let slice = u64::from(ways) * HDM_ALIGN;
            if size % slice != 0 {
                return Err(CommitError::SizeNotMultipleOfWays { size, ways });
            }
            // DPA continues where the decoder below ended (CXL 3.1
            // §8.2.4.20.12: the sum of lower decoders' skip + size / ways).
            let prev_end = match index.checked_sub(1) {
                Some(lower) => self.decoders[lower]
                    .committed
                    .as_ref()
                    .map_or(0, |s| s.dpa_base.saturating_add(s.dpa_len())),
                None => 0,
            };
            let skip = d.target_or_skip();
            let capacity = self.config.dpa_capacity;
            let dpa_base = prev_end.saturating_add(skip);
            let dpa_end = dpa_base.saturating_add(size / u64::from(ways));
            if dpa_end > capacity {
                return Err(CommitError::DpaBeyondCapacity {
                    end: dpa_end,
                    capacity,
                });
            }
            state.dpa_skip = skip;
            state.dpa_base = dpa_base;
        } else {
            // One byte per way; ways ≤ target_count ≤ 8 was checked above.
            state.targets = d
                .target_or_skip()
                .to_le_bytes()
                .into_iter()
                .take(usize::from(ways))
                .collect();
        }
        Ok(state)
    }

    /// Committed decoders in index order.
    pub(crate) fn committed(&self) -> Vec<DecoderState> {
        self.decoders
            .iter()
            .filter_map(|d| d.committed.clone())
            .collect()
    }

    pub(crate) fn commit_error(&self, index: usize) -> Option<CommitError> {
        self.decoders.get(index).and_then(|d| d.error.clone())
    }
}

impl fmt::Debug for HdmDecoders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HdmDecoders")
            .field("config", &self.config)
            .field("endpoint", &self.endpoint)
            .field("global_control", &self.global_control)
            .field("committed", &self.committed())
            .finish()
    }
}

#[cfg(test)]
mod tests;
