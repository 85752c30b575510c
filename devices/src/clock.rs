//! Guest time as devices see it.

/// The guest's clock in picoseconds. The VMM implements it: with virtual
/// time, a clock that hides the host's own costs (VM exits, a device's
/// copying); otherwise a monotonic host clock since the VM started.
pub trait GuestClock: Send + Sync {
    fn now_ps(&self) -> u64;

    /// The calling thread (a vCPU handling an exit) is about to spend host
    /// time the guest must not see, such as a DMA engine copying: a virtual
    /// clock takes the other vCPUs out of the guest so that it stops. A
    /// clock that follows host time has nothing to do.
    fn stop_others(&self) {}

    /// A device made something visible to the guest (a completion written,
    /// an interrupt raised) at guest time `ps`, read from this clock: a
    /// virtual clock never resumes below it.
    fn delivered(&self, _ps: u64) {}
}
