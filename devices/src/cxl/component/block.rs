//! A component register block on the bus, and where its decoder events go.
//!
//! A decoder commit changes which host addresses reach memory, so whoever
//! maps regions (the VMM) must see it before the guest can use the region:
//! the block hands every [`HdmEvent`] to its [`HdmEventSink`] on the thread
//! that made the register write, after the block's lock is released and
//! before the write returns. The vCPU that committed a decoder therefore
//! re-enters the guest only once the sink has dealt with it, and the sink
//! may read any block's decoders, this one's included.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use super::{ComponentRegisters, DecoderState, HdmEvent};
use crate::bus::lock;
use crate::BusDevice;

/// Receives HDM decoder commits and resets (the VMM's region mapper).
pub trait HdmEventSink: Send + Sync {
    /// Called on the writing thread, with no component lock held; the
    /// guest's write completes when this returns.
    fn hdm_event(&self, event: HdmEvent);
}

/// [`ComponentRegisters`] behind a lock of their own, as a bus device.
pub struct ComponentBlock {
    regs: Mutex<ComponentRegisters>,
    sink: OnceLock<Arc<dyn HdmEventSink>>,
}

impl ComponentBlock {
    pub fn new(regs: ComponentRegisters) -> Self {
        Self {
            regs: Mutex::new(regs),
            sink: OnceLock::new(),
        }
    }

    /// Where decoder events go from now on. A block has one sink for its
    /// life; a second call is refused (returns false).
    pub fn set_event_sink(&self, sink: Arc<dyn HdmEventSink>) -> bool {
        self.sink.set(sink).is_ok()
    }

    /// The registers, locked.
    pub fn lock(&self) -> MutexGuard<'_, ComponentRegisters> {
        lock(&self.regs)
    }

    /// Committed decoders in index order.
    pub fn committed_decoders(&self) -> Vec<DecoderState> {
        self.lock().committed_decoders()
    }
}

impl BusDevice for ComponentBlock {
    fn read(&self, offset: u64, data: &mut [u8]) {
        self.lock().read(offset, data)
    }

    fn write(&self, offset: u64, data: &[u8]) {
        let events = self.lock().write(offset, data);
        if events.is_empty() {
            return;
        }
        match self.sink.get() {
            Some(sink) => events.iter().for_each(|e| sink.hdm_event(e)),
            None => log::debug!("HDM {events:?} with nobody mapping regions"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ComponentKind, HdmConfig};
    use super::*;
    use std::sync::Weak;

    /// Records each event with the decoders committed when it arrived,
    /// read from the block itself.
    struct Recorder {
        block: Mutex<Weak<ComponentBlock>>,
        seen: Mutex<Vec<(HdmEvent, usize)>>,
    }

    impl HdmEventSink for Recorder {
        fn hdm_event(&self, event: HdmEvent) {
            let block = lock(&self.block).upgrade().unwrap();
            let committed = block.committed_decoders().len();
            lock(&self.seen).push((event, committed));
        }
    }

    const CONTROL0: u64 = 0x1128 + 0x10 + 0x10;

    #[test]
    fn events_reach_the_sink_after_the_lock_is_released() {
        let block = Arc::new(ComponentBlock::new(ComponentRegisters::new(
            ComponentKind::Endpoint,
            Some(HdmConfig {
                dpa_capacity: 1 << 30,
                ..HdmConfig::default()
            }),
        )));
        let rec = Arc::new(Recorder {
            block: Mutex::new(Arc::downgrade(&block)),
            seen: Mutex::new(Vec::new()),
        });
        assert!(block.set_event_sink(rec.clone()));
        assert!(!block.set_event_sink(rec.clone()), "one sink per block");
        // Decoder 0: 256 MiB at 0, then Commit; then clear Commit.
        block.write(0x1128 + 0x10 + 0x08, &(256u32 << 20).to_le_bytes());
        assert!(lock(&rec.seen).is_empty(), "programming is no event");
        block.write(CONTROL0, &(1u32 << 9).to_le_bytes());
        block.write(CONTROL0, &0u32.to_le_bytes());
        // A failed commit (size 0 on decoder 1) is none either.
        block.write(CONTROL0 + 0x20, &(1u32 << 9).to_le_bytes());
        assert_eq!(
            *lock(&rec.seen),
            vec![
                (HdmEvent::Committed { decoder: 0 }, 1),
                (HdmEvent::Reset { decoder: 0 }, 0)
            ],
            "each event sees the state it reports, read through the block"
        );
    }
}
