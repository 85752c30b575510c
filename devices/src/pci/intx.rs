//! Legacy INTx: a function's level-triggered interrupt pin.
//!
//! The pin is shared between the function's configuration space (Command bit
//! 10 masks it, Status bit 3 shows it) and whatever part of the device raises
//! it, so it has its own lock: a register block can raise it while the bus
//! holds the function's lock for the access that caused it.

use std::sync::{Arc, Mutex};

/// The wire an INTx pin drives (the VMM: an IOAPIC input).
pub trait IntxLine: Send + Sync {
    fn set_level(&self, asserted: bool);
}

#[derive(Default)]
struct PinState {
    /// The function wants an interrupt (Status.Interrupt Status).
    pending: bool,
    /// Command.Interrupt Disable.
    disabled: bool,
    /// What we last drove onto the line.
    driven: bool,
}

pub struct IntxPin {
    /// 1 = INTA# .. 4 = INTD#, as the Interrupt Pin register reports it.
    pin: u8,
    line: Arc<dyn IntxLine>,
    state: Mutex<PinState>,
}

impl IntxPin {
    pub fn new(pin: u8, line: Arc<dyn IntxLine>) -> Arc<Self> {
        Arc::new(Self {
            pin: pin.clamp(1, 4),
            line,
            state: Mutex::new(PinState::default()),
        })
    }

    pub fn pin(&self) -> u8 {
        self.pin
    }

    fn update(&self, f: impl FnOnce(&mut PinState)) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut s);
        let level = s.pending && !s.disabled;
        if level != s.driven {
            s.driven = level;
            self.line.set_level(level);
        }
    }

    /// The device raises (true) or withdraws (false) its interrupt.
    pub fn set_pending(&self, pending: bool) {
        self.update(|s| s.pending = pending);
    }

    pub fn pending(&self) -> bool {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).pending
    }

    /// Command.Interrupt Disable changed.
    pub(crate) fn set_disabled(&self, disabled: bool) {
        self.update(|s| s.disabled = disabled);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Records every level driven onto the line.
    #[derive(Default)]
    pub(crate) struct LineRecorder(pub(crate) Mutex<Vec<bool>>);
    impl IntxLine for LineRecorder {
        fn set_level(&self, asserted: bool) {
            self.0.lock().unwrap().push(asserted);
        }
    }

    #[test]
    fn line_follows_pending_and_interrupt_disable() {
        let rec = Arc::new(LineRecorder::default());
        let pin = IntxPin::new(1, rec.clone());
        pin.set_pending(true);
        pin.set_pending(true); // no edge: nothing driven twice
        pin.set_disabled(true);
        pin.set_disabled(false);
        pin.set_pending(false);
        pin.set_disabled(true);
        pin.set_pending(true); // masked: line stays low
        assert!(pin.pending());
        assert_eq!(*rec.0.lock().unwrap(), vec![true, false, true, false]);
        assert_eq!(IntxPin::new(9, rec).pin(), 4, "pin number clamped to INTD#");
    }
}
