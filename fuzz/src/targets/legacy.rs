//! The legacy PC devices on port I/O: COM1 (16550), CMOS/RTC, i8042,
//! ACPI PM1 block, the test-exit port; any port of their ranges, any width.

use std::sync::Mutex;

use devices::legacy::{AcpiPm, Cmos, SerialPort, TestExit, I8042, PM_IO_LEN};
use devices::{BusDevice, ExitRequest};
use vmm_sys_util::eventfd::EventFd;

use crate::input::Input;

pub fn fuzz_legacy_devices(data: &[u8]) {
    let mut input = Input::new(data);
    let (Ok(exit), Ok(irq)) = (ExitRequest::new(), EventFd::new(libc::EFD_NONBLOCK)) else {
        return;
    };
    // As they sit on the bus: stateful ones behind their own lock.
    let devs: Vec<(Box<dyn BusDevice>, u64)> = vec![
        (
            Box::new(Mutex::new(SerialPort::new(irq, std::io::sink()))),
            8,
        ),
        (Box::new(Mutex::new(Cmos::new())), 2),
        (Box::new(Mutex::new(I8042::new(exit.clone()))), 5),
        (Box::new(Mutex::new(AcpiPm::new(exit.clone()))), PM_IO_LEN),
        (Box::new(TestExit::new(exit)), 4),
    ];
    let mut steps = 0;
    while !input.is_empty() && steps < 512 {
        steps += 1;
        let i = input.range(0, devs.len() as u64 - 1) as usize;
        let (dev, len) = &devs[i];
        let offset = input.range(0, *len + 1);
        let w = input.pick(&[1usize, 1, 1, 2, 4, 0, 8]);
        if input.bool() {
            let d = input.data(w);
            dev.write(offset, &d);
        } else {
            let mut d = vec![0u8; w];
            dev.read(offset, &mut d);
        }
    }
}
