//! Virtual time: the guest's clock advances with its own run time and the
//! fabric model's latencies, never with the cost of a VM exit.

pub mod calibrate;
pub mod coordinator;
pub mod exit_log;
pub mod exit_timer;
pub mod shared;
pub mod trace;
pub mod tsc;
