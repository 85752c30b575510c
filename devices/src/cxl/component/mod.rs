//! CXL component registers (CXL 3.1 §8.2.4) and the DOE mailbox with the
//! CDAT it serves, which describes the components' memory and performance.

pub mod cdat;
pub mod doe;

pub use cdat::{AccessPerf, Cdat, CdatEntry, SwitchPortPerf};
pub use doe::{Doe, DoeProtocol};
