//! Device models for cxlvmm.
//!
//! Every device is driven through one small trait, [`BusDevice`], and sits on a
//! [`Bus`] (one for port I/O, one for MMIO). Nothing here makes KVM ioctls, so
//! every device can be exercised by plain unit tests.

#![forbid(unsafe_code)]

pub mod accel;
pub mod bus;
pub mod clock;
pub mod cxl;
pub mod exit;
pub mod legacy;
pub mod pci;

pub use bus::{Bus, BusDevice, BusError};
pub use exit::{ExitReason, ExitRequest};
