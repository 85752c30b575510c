//! The guest's CXL hierarchy: placing it (plan), building its devices, and
//! describing it in ACPI.

pub mod acpi;
pub mod build;
pub mod composed;
pub mod plan;
pub mod regions;
