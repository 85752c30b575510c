//! Topology errors. Each names the TOML key path (`type3[1].port`) and the
//! offending value, because the user fixes the file, not the code.

use thiserror::Error;

/// What is wrong with a value.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ErrorKind {
    /// The TOML itself did not parse or did not match the schema.
    #[error("{0}")]
    Syntax(String),
    #[error("no element with this id exists")]
    UnknownId,
    #[error("id is used more than once")]
    DuplicateId,
    #[error("ids may use letters, digits, '_' and '-' only, and must not be empty")]
    BadId,
    #[error("port reference must be `<host bridge>.rp<N>` or `<switch>.dp<N>`")]
    BadPortRef,
    #[error("port index is past the last port of {0} (it has {1})")]
    PortOverflow(String, u32),
    #[error("port is already used by {0}")]
    PortInUse(String),
    #[error("switches form a cycle: {0}")]
    Cycle(String),
    #[error("must be a multiple of 256 MiB")]
    NotAligned,
    #[error("must be greater than zero")]
    NotPositive,
    #[error("must not be negative")]
    Negative,
    #[error("must be a finite number")]
    NotFinite,
    #[error("unsupported interleave ways (1, 2, 3, 4, 6, 8, 12, 16)")]
    UnsupportedWays,
    #[error("unsupported interleave granularity (a power of two, 256 B to 16 KiB)")]
    UnsupportedGranularity,
    #[error("ways ({0}) does not match the number of targets ({1})")]
    WaysMismatch(u32, u32),
    #[error("serial number already used by {0}")]
    DuplicateSerial(String),
    #[error("unsupported PCIe generation (1 to 6)")]
    UnsupportedGen,
    #[error("unsupported link width (x1, x2, x4, x8, x16)")]
    UnsupportedWidth,
    #[error("unknown flit mode (none, 68B, 256B, 256B-lopt)")]
    UnknownFlitMode,
    #[error("flit mode {0} cannot run at PCIe gen {1}")]
    FlitModeVsGen(String, u8),
    #[error("CXL.mem needs a flit mode (68B, 256B or 256B-lopt)")]
    NeedsFlits,
    #[error("unknown restriction (ram, pmem)")]
    UnknownRestriction,
    #[error("not a byte size (an integer or a string like \"256M\", \"4GiB\")")]
    BadSize,
    #[error("out of range: {0}")]
    OutOfRange(String),
    #[error("topology has no host bridge")]
    NoHostBridge,
    #[error("device has neither volatile nor persistent capacity")]
    NoCapacity,
    #[error("windows overlap: {0}")]
    Overlap(String),
    #[error("unknown memory mode (native, trapped, timed)")]
    UnknownMemoryMode,
    #[error("this id is reserved for the [{0}] table")]
    ReservedId(String),
    /// Too large for the guest physical address space (the text says how
    /// much room there is).
    #[error("{0}")]
    BeyondAddressSpace(String),
}

/// A rejected topology: where (`key`), what (`value`), why (`kind`).
#[derive(Debug, Clone, PartialEq, Error)]
#[error("{key} = {value}: {kind}")]
pub struct TopologyError {
    /// TOML key path, e.g. `window[0].granularity`.
    pub key: String,
    /// The offending value as written (or as understood).
    pub value: String,
    /// The reason.
    pub kind: ErrorKind,
}

impl TopologyError {
    pub(crate) fn new(key: impl Into<String>, value: impl ToString, kind: ErrorKind) -> Self {
        TopologyError {
            key: key.into(),
            value: value.to_string(),
            kind,
        }
    }
}
