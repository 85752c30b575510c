//! CXL device building blocks: DVSECs, component registers (HDM decoders,
//! RAS, link), device registers with the mailbox, and CDAT over DOE.
//!
//! Each register block is a [`crate::BusDevice`] addressed by offset within
//! the block, so it can be unit-tested alone and mapped behind any BAR.

pub mod component;
pub mod dvsec;
pub mod mailbox;
