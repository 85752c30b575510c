//! The i8042's one job here: pulsing the CPU reset line (command 0xFE on port
//! 0x64), which Linux uses for `reboot=k`. The firmware tables say no PS/2
//! controller exists, so the guest never probes for a keyboard.

use vm_superio::{I8042Device, Trigger};

use crate::{BusDeviceMut, ExitReason, ExitRequest};

struct ResetLine(ExitRequest);

impl Trigger for ResetLine {
    type E = std::convert::Infallible;
    fn trigger(&self) -> Result<(), Self::E> {
        self.0.request(ExitReason::Reset);
        Ok(())
    }
}

/// Occupies ports 0x60..=0x64 (offsets 0 and 4 are the data and command ports).
pub struct I8042(I8042Device<ResetLine>);

impl I8042 {
    pub fn new(exit: ExitRequest) -> Self {
        Self(I8042Device::new(ResetLine(exit)))
    }
}

impl BusDeviceMut for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let (Ok(reg), Some(first)) = (u8::try_from(offset), data.first_mut()) {
            *first = self.0.read(reg);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Ok(reg), Some(&v)) = (u8::try_from(offset), data.first()) {
            let _ = self.0.write(reg, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_command_requests_reset() {
        let exit = ExitRequest::new().unwrap();
        let mut kbd = I8042::new(exit.clone());
        kbd.write(4, &[0xd1]);
        assert!(!exit.is_requested());
        kbd.write(4, &[0xfe]);
        assert_eq!(exit.reason(), Some(ExitReason::Reset));
    }

    #[test]
    fn zero_width_and_far_reads_are_harmless() {
        let exit = ExitRequest::new().unwrap();
        let mut kbd = I8042::new(exit.clone());
        kbd.read(0, &mut []);
        let mut b = [0xaau8; 2];
        kbd.read(0x1_0000, &mut b);
        assert_eq!(b, [0, 0]);
        assert!(!exit.is_requested());
    }
}
