//! Pure model of a CXL fabric. No KVM, no guest memory.
//!
//! * [`topology`]: the project's one topology schema (TOML), validated.

#![forbid(unsafe_code)]

pub mod topology;

pub use topology::{Topology, TopologyError};
