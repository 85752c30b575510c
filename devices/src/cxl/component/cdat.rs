//! Coherent Device Attribute Table (CDAT spec 1.03): the per-component table
//! of memory ranges and their latency/bandwidth that Linux reads over DOE
//! (drivers/cxl/core/pci.c) and parses in drivers/cxl/core/cdat.c to compute
//! QoS classes and access coordinates.
//!
//! Layouts are little-endian and packed; every structure is a whole number of
//! dwords, which the DOE table-access protocol needs because it returns one
//! structure per response and Linux checks the response length equals the
//! structure's length field.

/// CDAT header revision. Linux (drivers/cxl/core/pci.c, cdat.c) goes by the
/// header's length and does not look at this byte; QEMU writes 2. Ours has
/// always been 1, and changing it would change guest-visible bytes for
/// nothing.
pub const CDAT_REVISION: u8 = 1;
/// The CDAT header's size in bytes.
pub const CDAT_HEADER_LEN: usize = 16;

/// Structure types (CDAT Table 2).
pub const CDAT_TYPE_DSMAS: u8 = 0;
pub const CDAT_TYPE_DSLBIS: u8 = 1;
pub const CDAT_TYPE_DSEMTS: u8 = 4;
pub const CDAT_TYPE_SSLBIS: u8 = 5;

pub const DSMAS_LEN: usize = 24;
pub const DSLBIS_LEN: usize = 24;
pub const DSEMTS_LEN: usize = 24;
/// SSLBIS header before its 8-byte entries.
pub const SSLBIS_HEADER_LEN: usize = 16;
pub const SSLBE_LEN: usize = 8;

/// DSLBIS flags: memory hierarchy "memory" (Linux skips anything else).
pub const HMAT_MEMORY: u8 = 0;

/// Linux 6.1 reads each entry into a fixed 32-dword buffer, one dword of it
/// the table-access header; larger structures would be silently truncated.
/// So one SSLBIS carries at most (31 * 4 - 16) / 8 = 13 entries.
pub const SSLBIS_MAX_ENTRIES_PER_STRUCT: usize = 13;
/// A structure's length field is 16 bits.
const SSLBIS_MAX_ENTRIES: usize = (u16::MAX as usize - SSLBIS_HEADER_LEN) / SSLBE_LEN;

/// HMAT entry value that means "no data" to Linux.
const HMAT_ENTRY_INVALID: u16 = 0xFFFF;

/// One CDAT structure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CdatEntry {
    /// Device Scoped Memory Affinity Structure: a DPA range and its handle.
    Dsmas {
        handle: u8,
        flags: u8,
        dpa_base: u64,
        dpa_len: u64,
    },
    /// Device Scoped Latency and Bandwidth Information for DSMAS `handle`.
    /// Value = `entries[0] * entry_base_unit`, in ps for latency, MB/s for
    /// bandwidth (HMAT units).
    Dslbis {
        handle: u8,
        flags: u8,
        data_type: u8,
        entry_base_unit: u64,
        entries: [u16; 3],
    },
    /// Switch Scoped Latency and Bandwidth Information: `(port_x, port_y,
    /// value)` per pair of ports, value in `entry_base_unit` steps.
    Sslbis {
        data_type: u8,
        entry_base_unit: u64,
        entries: Vec<(u16, u16, u16)>,
    },
    /// Device Scoped EFI Memory Type Structure for DSMAS `handle`.
    Dsemts {
        handle: u8,
        memory_type: u8,
        dpa_offset: u64,
        dpa_len: u64,
    },
}

impl CdatEntry {
    /// The structure's bytes, common header included.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            CdatEntry::Dsmas {
                handle,
                flags,
                dpa_base,
                dpa_len,
            } => {
                let mut b = structure_header(CDAT_TYPE_DSMAS, DSMAS_LEN);
                b.extend_from_slice(&[*handle, *flags, 0, 0]);
                b.extend_from_slice(&dpa_base.to_le_bytes());
                b.extend_from_slice(&dpa_len.to_le_bytes());
                b
            }
            CdatEntry::Dslbis {
                handle,
                flags,
                data_type,
                entry_base_unit,
                entries,
            } => {
                let mut b = structure_header(CDAT_TYPE_DSLBIS, DSLBIS_LEN);
                b.extend_from_slice(&[*handle, *flags, *data_type, 0]);
                b.extend_from_slice(&entry_base_unit.to_le_bytes());
                for e in entries {
                    b.extend_from_slice(&e.to_le_bytes());
                }
                b.extend_from_slice(&[0, 0]);
                b
            }
            CdatEntry::Sslbis {
                data_type,
                entry_base_unit,
                entries,
            } => {
                // Entries beyond what the 16-bit length can describe are
                // dropped rather than corrupting the table.
                let entries = &entries[..entries.len().min(SSLBIS_MAX_ENTRIES)];
                let len = SSLBIS_HEADER_LEN + SSLBE_LEN * entries.len();
                let mut b = structure_header(CDAT_TYPE_SSLBIS, len);
                b.extend_from_slice(&[*data_type, 0, 0, 0]);
                b.extend_from_slice(&entry_base_unit.to_le_bytes());
                for (x, y, v) in entries {
                    b.extend_from_slice(&x.to_le_bytes());
                    b.extend_from_slice(&y.to_le_bytes());
                    b.extend_from_slice(&v.to_le_bytes());
                    b.extend_from_slice(&[0, 0]);
                }
                b
            }
            CdatEntry::Dsemts {
                handle,
                memory_type,
                dpa_offset,
                dpa_len,
            } => {
                let mut b = structure_header(CDAT_TYPE_DSEMTS, DSEMTS_LEN);
                b.extend_from_slice(&[*handle, *memory_type, 0, 0]);
                b.extend_from_slice(&dpa_offset.to_le_bytes());
                b.extend_from_slice(&dpa_len.to_le_bytes());
                b
            }
        }
    }
}

/// Type [7:0], reserved [15:8], length [31:16].
fn structure_header(kind: u8, len: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(len);
    b.push(kind);
    b.push(0);
    b.extend_from_slice(&(len as u16).to_le_bytes());
    b
}

/// A CDAT: header plus structures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cdat {
    pub entries: Vec<CdatEntry>,
    /// Bumped by whoever changes the table, so the guest can tell.
    pub sequence: u32,
}

impl Cdat {
    pub fn new(entries: Vec<CdatEntry>) -> Self {
        Self {
            entries,
            sequence: 0,
        }
    }

    /// Each structure's bytes, in table order.
    pub fn structures(&self) -> Vec<Vec<u8>> {
        self.entries.iter().map(CdatEntry::to_bytes).collect()
    }

    /// The 16-byte header for a table with these structures: total length,
    /// revision, checksum making all bytes of the table sum to 0, sequence.
    pub fn header_for(&self, structures: &[Vec<u8>]) -> [u8; CDAT_HEADER_LEN] {
        let body_len: usize = structures.iter().map(Vec::len).sum();
        let total = u32::try_from(CDAT_HEADER_LEN + body_len).unwrap_or(u32::MAX);
        let mut h = [0u8; CDAT_HEADER_LEN];
        h[0..4].copy_from_slice(&total.to_le_bytes());
        h[4] = CDAT_REVISION;
        h[12..16].copy_from_slice(&self.sequence.to_le_bytes());
        let sum = h
            .iter()
            .chain(structures.iter().flatten())
            .fold(0u8, |acc, b| acc.wrapping_add(*b));
        h[5] = 0u8.wrapping_sub(sum);
        h
    }

    /// The whole table as Linux reassembles it.
    pub fn to_bytes(&self) -> Vec<u8> {
        let structures = self.structures();
        let mut out = self.header_for(&structures).to_vec();
        for s in &structures {
            out.extend_from_slice(s);
        }
        out
    }
}

/// Serves a table the fabric model computed (`fabric::cdat`), so what the
/// guest reads matches what the timing engine charges: one structure per
/// model structure, in order, except that an SSLBIS longer than
/// [`SSLBIS_MAX_ENTRIES_PER_STRUCT`] entries is split into several with the
/// same data type and base unit. 0xFFFF entries (which Linux reads as "no
/// data"; the model never produces them) are clamped to 0xFFFE.
impl From<&fabric::cdat::Cdat> for Cdat {
    fn from(model: &fabric::cdat::Cdat) -> Self {
        use fabric::cdat::Structure;
        let valid = |e: u16| e.min(HMAT_ENTRY_INVALID - 1);
        let mut entries = Vec::new();
        for s in &model.structures {
            match s {
                Structure::Dsmas(d) => entries.push(CdatEntry::Dsmas {
                    handle: d.handle,
                    flags: d.flags,
                    dpa_base: d.dpa_base,
                    dpa_len: d.dpa_length,
                }),
                Structure::Dslbis(d) => entries.push(CdatEntry::Dslbis {
                    handle: d.handle,
                    flags: HMAT_MEMORY,
                    data_type: d.data_type as u8,
                    entry_base_unit: d.entry_base_unit,
                    entries: d.entries.map(valid),
                }),
                Structure::Dsemts(d) => entries.push(CdatEntry::Dsemts {
                    handle: d.handle,
                    memory_type: d.memory_type,
                    dpa_offset: d.dpa_offset,
                    dpa_len: d.dpa_length,
                }),
                Structure::Sslbis(t) => {
                    let pairs: Vec<(u16, u16, u16)> = t
                        .entries
                        .iter()
                        .map(|e| (e.port_x, e.port_y, valid(e.value)))
                        .collect();
                    for chunk in pairs.chunks(SSLBIS_MAX_ENTRIES_PER_STRUCT) {
                        entries.push(CdatEntry::Sslbis {
                            data_type: t.data_type as u8,
                            entry_base_unit: t.entry_base_unit,
                            entries: chunk.to_vec(),
                        });
                    }
                }
            }
        }
        Self::new(entries)
    }
}

#[cfg(test)]
pub(crate) mod tests;
