//! The region map: which HPA ranges the guest has committed through its HDM
//! decoders, and how each is served.
//!
//! A decoder commit or reset reaches the [`RegionMapper`] as an event from
//! the component register block, on the vCPU thread that wrote it; the
//! mapper recomputes the map from the decoders themselves (root window ->
//! host bridge -> switch -> endpoint, [`tree`]), compares it with what is
//! installed ([`diff`]) and installs the difference before the vCPU returns
//! to the guest ([`mapper`]). A region is then
//! - **native**: a KVM memory slot over the region's bytes ([`kvm`]) —
//!   the device's own memfd/file for a 1-way region; for a volatile
//!   interleave at 4 KiB granularity or more whose decoders keep HPA order
//!   ([`order`]), the range of its window's memfd into which the members'
//!   bytes were gathered at commit (and from which they go back at
//!   teardown; [`gathered`], `devices::cxl::backing::RegionBacking`): one
//!   mapping at any size; for other interleaves at 4 KiB or more (persistent
//!   media above all), one host range stitched from page-granular shared
//!   mappings of every device's backing ([`super::composed`]), so each
//!   persistent byte stays in its device's file;
//! - **trapped**: no slot; every access exits to the VMM, which decodes it
//!   exactly and serves it from the device backing, any granularity
//!   ([`trap`]).

pub mod diff;
pub mod gathered;
pub mod kvm;
pub mod mapper;
pub mod order;
pub mod trap;
pub mod tree;

pub use kvm::KvmSlots;
pub use mapper::{DecoderSources, RegionMapper, SlotLayer};
pub use trap::WindowTrap;
pub use tree::Layout;

/// The log target of everything here: one name for the whole region map,
/// whichever file logs (`RUST_LOG=vmm::cxl::regions=info` shows each
/// region installed and removed).
const LOG_TARGET: &str = "vmm::cxl::regions";

/// How a committed region is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionMode {
    Native,
    Trapped,
    /// No slot: the range is not one the guest may have mapped (outside
    /// its window, over another region, malformed). Accesses inside a
    /// window still go the trapped way and decode as the tree says.
    Refused,
}

/// A committed region as the VMM sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionInfo {
    pub base: u64,
    pub size: u64,
    pub ways: u8,
    pub granularity: u64,
    pub mode: RegionMode,
}
