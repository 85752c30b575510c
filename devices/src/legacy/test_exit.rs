//! The test-exit port: the guest writes an exit code, cxlvmm exits with it.
//! Same port as QEMU's `isa-debug-exit,iobase=0xf4`, so one guest image serves
//! both (see docs/guest-contract.md).

use crate::{BusDevice, ExitReason, ExitRequest};

pub struct TestExit {
    exit: ExitRequest,
}

impl TestExit {
    pub fn new(exit: ExitRequest) -> Self {
        Self { exit }
    }
}

impl BusDevice for TestExit {
    fn read(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&self, offset: u64, data: &[u8]) {
        // Only a write at the port itself counts; the low byte is the code.
        if offset == 0 {
            if let Some(&code) = data.first() {
                self.exit.request(ExitReason::TestExit(code));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_byte_is_the_exit_code() {
        let exit = ExitRequest::new().unwrap();
        let port = TestExit::new(exit.clone());
        port.write(1, &[9]);
        assert!(!exit.is_requested());
        port.write(0, &[0x07, 0x01, 0, 0]);
        assert_eq!(exit.reason(), Some(ExitReason::TestExit(7)));
    }
}
