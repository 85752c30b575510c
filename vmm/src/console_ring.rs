//! COM1's transmit register written without an exit to user space per byte.
//!
//! Linux's 8250 driver writes up to 16 bytes to the transmit holding
//! register (THR) per pass and reads the interrupt and line status
//! registers between passes (`serial8250_tx_chars()` and
//! `serial8250_handle_irq()`, drivers/tty/serial/8250/8250_port.c); its
//! console writes read the line status before every byte. So every run of
//! THR writes is followed by another access to the UART. With
//! `KVM_CAP_COALESCED_PIO`, KVM appends THR writes to a ring shared with
//! user space instead of returning from `KVM_RUN` for each (the write
//! still leaves the guest, but only as far as the kernel); the next port
//! I/O exit, of any vCPU, first feeds what the ring holds to the UART in
//! order, so every register the guest reads next reflects every byte it
//! wrote before; a vCPU thread that stops feeds what is left. A full ring
//! makes KVM exit as before.
//!
//! Not on the virtual clock (timed memory): it hides the cost of every exit
//! that reaches the VMM, not of one that ends in KVM, so there console
//! bytes stay exits of their own, as invisible to the guest as before.
//!
//! Only writes coalesce: reading port 0x3f8 (the receive buffer) exits as
//! always. While the divisor latch is selected, a write to 0x3f8 sets its
//! low byte; the write to the line control register that deselects it is
//! port I/O, so the UART sees the two in order.

use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

use devices::Bus;
use kvm_bindings::{kvm_coalesced_mmio, kvm_coalesced_mmio_ring, KVM_COALESCED_MMIO_PAGE_OFFSET};
use kvm_ioctls::{Cap, IoEventAddress, VcpuFd, VmFd};

use crate::layout::PORT_COM1;

/// The ring KVM fills with COM1's THR writes: one page per VM, reached
/// through any vCPU's file (`KVM_COALESCED_MMIO_PAGE_OFFSET`), mapped here
/// once for all vCPU threads; the lock makes one of them at a time its
/// consumer.
pub struct ConsoleRing {
    page: NonNull<kvm_coalesced_mmio_ring>,
    page_size: usize,
    consumer: Mutex<()>,
    /// Writes taken from the ring: each one an exit to user space saved.
    drained: AtomicU64,
}

// SAFETY: the page is KVM's shared ring, owned by this value until drop;
// its consumer index is only written under `consumer`.
unsafe impl Send for ConsoleRing {}
// SAFETY: as above.
unsafe impl Sync for ConsoleRing {}

impl ConsoleRing {
    /// Maps the ring, then has KVM coalesce COM1's THR. None (every THR
    /// write exits, as without it) where KVM cannot, logged.
    pub fn enable(vm: &VmFd, vcpu: &VcpuFd) -> Option<Self> {
        if !vm.check_extension(Cap::CoalescedPio) {
            log::info!("KVM cannot coalesce port I/O: each console byte is an exit");
            return None;
        }
        let ring = match Self::map(vcpu) {
            Ok(r) => r,
            Err(e) => {
                log::warn!(
                    "cannot map KVM's coalesced I/O ring ({e}): each console byte is an exit"
                );
                return None;
            }
        };
        // The zone comes last: until it exists no write lands in the ring.
        if let Err(e) = vm.register_coalesced_mmio(IoEventAddress::Pio(PORT_COM1), 1) {
            log::warn!(
                "cannot coalesce COM1's transmit register ({e}): each console byte is an exit"
            );
            return None;
        }
        Some(ring)
    }

    fn map(vcpu: &VcpuFd) -> std::io::Result<Self> {
        // SAFETY: sysconf has no memory effects.
        let page_size = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            n if n > 0 => n as usize,
            _ => return Err(std::io::Error::last_os_error()),
        };
        let offset = libc::off_t::from(KVM_COALESCED_MMIO_PAGE_OFFSET) * page_size as libc::off_t;
        // SAFETY: a fresh shared mapping of one page of the vCPU's file at
        // an address of the kernel's choosing: it overlaps nothing of ours.
        // KVM provides that page where it has coalesced I/O (checked).
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page_size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                vcpu.as_raw_fd(),
                offset,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let page = NonNull::new(addr.cast::<kvm_coalesced_mmio_ring>())
            .ok_or_else(|| std::io::Error::other("mmap returned null"))?;
        Ok(Self {
            page,
            page_size,
            consumer: Mutex::new(()),
            drained: AtomicU64::new(0),
        })
    }

    /// Feeds every write in the ring to the port bus, oldest first. Called
    /// on each port I/O exit, before it is served, and when a vCPU stops.
    pub fn drain(&self, pio: &Bus) {
        let _consumer = self
            .consumer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // SAFETY: the page mapped in `map`, KVM's ring, alive while we are.
        unsafe {
            take_entries(self.page.as_ptr(), self.page_size, |entry| {
                pio.write(entry.phys_addr, written(entry));
                self.drained.fetch_add(1, Ordering::Relaxed);
            })
        };
    }

    /// How many writes reached the UART through the ring so far.
    pub fn drained(&self) -> u64 {
        self.drained.load(Ordering::Relaxed)
    }
}

impl Drop for ConsoleRing {
    fn drop(&mut self) {
        // SAFETY: the page mapped in `map`, used by nothing once we drop.
        unsafe { libc::munmap(self.page.as_ptr().cast(), self.page_size) };
    }
}

/// Takes the ring's entries, oldest first, moving its consumer index past
/// each before handing it on.
///
/// # Safety
///
/// `ring` points to `page_size` bytes, 4-byte aligned, that hold a
/// `kvm_coalesced_mmio_ring` no one else consumes meanwhile.
unsafe fn take_entries(
    ring: *mut kvm_coalesced_mmio_ring,
    page_size: usize,
    mut each: impl FnMut(&kvm_coalesced_mmio),
) {
    // Entries the page holds (`KVM_COALESCED_MMIO_MAX` in the kernel).
    let header = std::mem::size_of::<kvm_coalesced_mmio_ring>();
    let capacity =
        (page_size.saturating_sub(header) / std::mem::size_of::<kvm_coalesced_mmio>()) as u32;
    // SAFETY: `first` and `last` are aligned u32s at the start of the page
    // (the caller's promise); KVM writes `last` after the entry (smp_wmb in
    // virt/kvm/coalesced_mmio.c), we write `first`: atomics on both.
    let (first, last) = unsafe {
        (
            AtomicU32::from_ptr(std::ptr::addr_of_mut!((*ring).first)),
            AtomicU32::from_ptr(std::ptr::addr_of_mut!((*ring).last)),
        )
    };
    let mut at = first.load(Ordering::Relaxed);
    // Only KVM writes the ring, but an index past the page is never
    // followed all the same.
    while at != last.load(Ordering::Acquire) && at < capacity {
        // SAFETY: `at` < capacity: the entry lies inside the page.
        let entry = unsafe {
            std::ptr::read_volatile(
                std::ptr::addr_of!((*ring).coalesced_mmio)
                    .cast::<kvm_coalesced_mmio>()
                    .add(at as usize),
            )
        };
        at = (at + 1) % capacity;
        first.store(at, Ordering::Release);
        each(&entry);
    }
}

/// The bytes of one coalesced write (KVM records at most 8).
fn written(entry: &kvm_coalesced_mmio) -> &[u8] {
    let len = usize::try_from(entry.len).map_or(0, |l| l.min(entry.data.len()));
    &entry.data[..len]
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: usize = 4096;

    /// A page-sized ring in plain memory, u64-aligned.
    struct FakeRing(Vec<u64>);

    impl FakeRing {
        fn new() -> Self {
            Self(vec![0; PAGE / 8])
        }
        fn ptr(&mut self) -> *mut kvm_coalesced_mmio_ring {
            self.0.as_mut_ptr().cast()
        }
        fn put(&mut self, index: usize, port: u64, byte: u8) {
            let entry = kvm_coalesced_mmio {
                phys_addr: port,
                len: 1,
                __bindgen_anon_1: kvm_bindings::kvm_coalesced_mmio__bindgen_ty_1 { pio: 1 },
                data: [byte, 0, 0, 0, 0, 0, 0, 0],
            };
            // SAFETY: index < 170 entries of 24 bytes after the 8-byte
            // header: inside the 4096-byte buffer.
            unsafe {
                std::ptr::addr_of_mut!((*self.ptr()).coalesced_mmio)
                    .cast::<kvm_coalesced_mmio>()
                    .add(index)
                    .write(entry)
            };
        }
        fn set(&mut self, first: u32, last: u32) {
            // SAFETY: the header at the start of the buffer.
            unsafe {
                (*self.ptr()).first = first;
                (*self.ptr()).last = last;
            }
        }
        fn first(&mut self) -> u32 {
            // SAFETY: as above.
            unsafe { (*self.ptr()).first }
        }
        fn take(&mut self) -> Vec<u8> {
            let mut got = Vec::new();
            // SAFETY: the buffer is a page, aligned, consumed only here.
            unsafe { take_entries(self.ptr(), PAGE, |e| got.extend_from_slice(written(e))) };
            got
        }
    }

    #[test]
    fn entries_come_out_oldest_first_across_the_end_of_the_page() {
        let mut ring = FakeRing::new();
        // 170 entries fit: indices 168, 169, 0, 1 are pending.
        for (i, b) in [(168, b'a'), (169, b'b'), (0, b'c'), (1, b'd')] {
            ring.put(i, PORT_COM1, b);
        }
        ring.set(168, 2);
        assert_eq!(ring.take(), b"abcd");
        assert_eq!(ring.first(), 2, "the consumer index follows");
        assert_eq!(ring.take(), b"", "nothing is taken twice");
    }

    #[test]
    fn a_consumer_index_past_the_page_is_not_followed() {
        let mut ring = FakeRing::new();
        ring.set(170, 3);
        assert_eq!(ring.take(), b"");
        ring.set(u32::MAX, 0);
        assert_eq!(ring.take(), b"");
    }

    #[test]
    fn a_write_is_its_recorded_length_never_more_than_eight_bytes() {
        let mut e = kvm_bindings::kvm_coalesced_mmio {
            phys_addr: PORT_COM1,
            len: 1,
            __bindgen_anon_1: kvm_bindings::kvm_coalesced_mmio__bindgen_ty_1 { pio: 1 },
            data: *b"abcdefgh",
        };
        assert_eq!(written(&e), b"a");
        e.len = 8;
        assert_eq!(written(&e), b"abcdefgh");
        e.len = 4096;
        assert_eq!(written(&e), b"abcdefgh");
        e.len = 0;
        assert_eq!(written(&e), b"");
    }
}
