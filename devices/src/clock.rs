//! Guest time as devices see it.

/// The guest's clock in picoseconds. The VMM implements it: with virtual
/// time, a clock that hides the host's own costs (VM exits, a device's
/// copying); otherwise a monotonic host clock since the VM started.
pub trait GuestClock: Send + Sync {
    fn now_ps(&self) -> u64;
}
