//! Device models for cxlvmm.
//!
//! Every device is driven through one small trait, [`BusDevice`] (or, for
//! device logic that wants `&mut self`, [`BusDeviceMut`] behind a lock of its
//! own), and sits on a
//! [`Bus`] (one for port I/O, one for MMIO). Nothing here issues KVM ioctls, so
//! every device can be exercised by plain unit tests.

#![forbid(unsafe_code)]

pub mod accel;
pub mod bus;
pub mod clock;
pub mod cxl;
pub mod exit;
pub mod legacy;
pub mod pci;
pub mod virtio;

pub use bus::{Bus, BusDevice, BusDeviceMut, BusError};
pub use exit::{ExitReason, ExitRequest};
