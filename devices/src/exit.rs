//! How a device asks the VMM to stop the VM (power-off, reset, test exit).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use vmm_sys_util::eventfd::EventFd;

/// Why the VM should stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitReason {
    /// ACPI S5 (PM1a control SLP_EN with the _S5 sleep type).
    PowerOff,
    /// i8042 pulse of the reset line, or a triple fault.
    Reset,
    /// The guest wrote an exit code to the test-exit port.
    TestExit(u8),
    /// The user asked cxlvmm to quit (the console escape, Ctrl-A x).
    Quit,
    /// The run outlived `--timeout`.
    Timeout,
    /// The VMM hit an error it cannot recover from (reported separately).
    Fatal,
}

struct Inner {
    requested: AtomicBool,
    reason: Mutex<Option<ExitReason>>,
    event: EventFd,
}

/// Shared, cloneable handle: devices call [`ExitRequest::request`]; the VMM
/// waits on [`ExitRequest::event`] and reads [`ExitRequest::reason`].
/// The first request wins; later ones are ignored, as a machine that is
/// already powering off does not change its mind.
#[derive(Clone)]
pub struct ExitRequest(Arc<Inner>);

impl ExitRequest {
    pub fn new() -> std::io::Result<Self> {
        Ok(Self(Arc::new(Inner {
            requested: AtomicBool::new(false),
            reason: Mutex::new(None),
            // Blocking: the VMM's main thread sleeps in read() until a request.
            event: EventFd::new(0)?,
        })))
    }

    pub fn request(&self, reason: ExitReason) {
        let mut slot = self.0.reason.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(reason);
            self.0.requested.store(true, Ordering::SeqCst);
            // A failed write can only mean the counter is saturated, i.e. the
            // event is already signalled.
            let _ = self.0.event.write(1);
        }
    }

    pub fn is_requested(&self) -> bool {
        self.0.requested.load(Ordering::SeqCst)
    }

    pub fn reason(&self) -> Option<ExitReason> {
        *self.0.reason.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Becomes readable once an exit was requested.
    pub fn event(&self) -> &EventFd {
        &self.0.event
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_request_wins() {
        let exit = ExitRequest::new().unwrap();
        assert!(!exit.is_requested());
        exit.clone().request(ExitReason::TestExit(3));
        exit.request(ExitReason::PowerOff);
        assert!(exit.is_requested());
        assert_eq!(exit.reason(), Some(ExitReason::TestExit(3)));
        assert_eq!(exit.event().read().unwrap(), 1);
    }
}
