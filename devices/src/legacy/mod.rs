//! PC legacy devices: COM1, i8042 reset line, CMOS RTC, ACPI PM registers, and
//! the test-exit port.

mod acpi_pm;
mod cmos;
mod i8042;
mod serial;
mod test_exit;

pub use acpi_pm::{AcpiPm, PM1_CNT_OFFSET, PM1_EVT_LEN, PM_IO_LEN, SLP_TYP_S5};
pub use cmos::Cmos;
pub use i8042::I8042;
pub use serial::SerialPort;
pub use test_exit::TestExit;
