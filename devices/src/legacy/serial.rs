//! COM1: a 16550 UART (vm-superio) whose interrupt is an eventfd (wired to
//! IRQ 4 through KVM's irqfd) and whose output goes to any `Write`.

use std::collections::VecDeque;
use std::io::Write;

use vm_superio::serial::NoEvents;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use crate::BusDeviceMut;

/// Raises the UART's interrupt line by signalling an eventfd.
pub struct IrqTrigger(pub EventFd);

impl Trigger for IrqTrigger {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// The UART plus a host-side input queue. The 16550's receive FIFO holds only
/// 64 bytes; input beyond that (a paste) waits here and is moved in as the
/// guest drains the FIFO, instead of being dropped.
pub struct SerialPort<W: Write + Send> {
    uart: Serial<IrqTrigger, NoEvents, W>,
    pending: VecDeque<u8>,
}

/// Register offset of the receive buffer / transmit holding register.
const DATA: u64 = 0;

impl<W: Write + Send> SerialPort<W> {
    pub fn new(interrupt: EventFd, out: W) -> Self {
        Self {
            uart: Serial::new(IrqTrigger(interrupt), out),
            pending: VecDeque::new(),
        }
    }

    /// Queues bytes typed on the host for the guest.
    pub fn queue_input(&mut self, bytes: &[u8]) {
        self.pending.extend(bytes);
        self.refill();
    }

    fn refill(&mut self) {
        let room = self.uart.fifo_capacity();
        if room == 0 || self.pending.is_empty() {
            return;
        }
        let chunk: Vec<u8> = self.pending.drain(..room.min(self.pending.len())).collect();
        // Cannot overflow: we asked for the free capacity first. An error here
        // is an eventfd failure, which only loses an interrupt.
        let _ = self.uart.enqueue_raw_bytes(&chunk);
    }

    pub fn writer_mut(&mut self) -> &mut W {
        self.uart.writer_mut()
    }
}

impl<W: Write + Send> BusDeviceMut for SerialPort<W> {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        // The UART's registers are bytes; wider accesses see the first byte.
        data.fill(0);
        if let (Ok(reg), Some(first)) = (u8::try_from(offset), data.first_mut()) {
            *first = self.uart.read(reg);
        }
        if offset == DATA {
            self.refill();
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Ok(reg), Some(&value)) = (u8::try_from(offset), data.first()) {
            // An output error (closed stdout) must not stop the guest.
            let _ = self.uart.write(reg, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LSR: u64 = 5;
    const LSR_DATA_READY: u8 = 1;

    #[test]
    fn transmits_and_receives_with_overflow_queue() {
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut port = SerialPort::new(irq.try_clone().unwrap(), Vec::new());
        for b in b"hi\n" {
            port.write(DATA, &[*b]);
        }
        assert_eq!(port.writer_mut().as_slice(), b"hi\n");

        let input: Vec<u8> = (0..200u8).collect();
        port.queue_input(&input);
        let mut got = Vec::new();
        let mut b = [0u8];
        loop {
            port.read(LSR, &mut b);
            if b[0] & LSR_DATA_READY == 0 {
                break;
            }
            port.read(DATA, &mut b);
            got.push(b[0]);
        }
        assert_eq!(got, input, "all 200 bytes arrive in order");
    }

    #[test]
    fn zero_width_accesses_are_ignored() {
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut port = SerialPort::new(irq, Vec::new());
        port.read(DATA, &mut []);
        port.write(DATA, &[]);
        assert!(port.writer_mut().is_empty());
    }
}
