//! virtio-fs end to end without a guest: a real `virtiofsd` serves a
//! temporary directory to a virtio-fs function, driven through its BAR as
//! Linux's virtio_pci and virtio_fs drivers would, its rings in shared
//! guest RAM. FUSE_INIT and FUSE_LOOKUP go through the request queue and
//! come back with the daemon's answers and an MSI-X interrupt; the
//! connection's thread runs under its seccomp filter (enforced).
//!
//! Where no virtiofsd can be found (`CXLVMM_VIRTIOFSD`, the one
//! `scripts/test` builds into build/tools, $PATH, the usual places) the
//! tests are reported ignored.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver, Sender};
use devices::pci::{MsiSink, PciDevice};
use devices::virtio::VirtioPci;
use devices::BusDevice;
use libtest_mimic::{Arguments, Failed, Trial};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap, GuestRegionMmap};
use vmm::memory_backing::MemoryBacking;
use vmm::virtio::ShareSpec;

const BAR0: u64 = 0xc000_0000;
const QUEUE_SIZE: u16 = 16;
const FUSE_LOOKUP: u32 = 1;
const FUSE_INIT: u32 = 26;
const ROOT_NODE: u64 = 1;

fn virtiofsd() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CXLVMM_VIRTIOFSD") {
        return Some(p.into());
    }
    let built = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../build/tools/bin/virtiofsd");
    if built.is_file() {
        return Some(built);
    }
    vmm::vhost_user::virtiofsd::find(None).ok()
}

/// MSI-X messages as they are sent.
struct Interrupts(Sender<u16>);
impl MsiSink for Interrupts {
    fn route(&self, _vector: u16, _address: u64, _data: u32) {}
    fn trigger(&self, vector: u16) {
        let _ = self.0.send(vector);
    }
}

/// The guest's side: BAR 0 of the function, guest RAM, interrupts.
struct Guest {
    bar: Arc<dyn BusDevice>,
    pci: VirtioPci,
    mem: GuestMemoryMmap<()>,
    interrupts: Receiver<u16>,
}

impl Guest {
    fn read(&self, offset: u64, len: usize) -> u64 {
        let mut b = [0u8; 8];
        self.bar.read(offset, &mut b[..len]);
        u64::from_le_bytes(b)
    }
    fn write(&self, offset: u64, len: usize, v: u64) {
        self.bar.write(offset, &v.to_le_bytes()[..len]);
    }
    fn status(&self) -> u8 {
        self.read(0x14, 1) as u8
    }

    /// Queue `q`'s rings at `base` (descriptors, then available, then used
    /// ring), MSI-X vector `vector`.
    fn setup_queue(&self, q: u16, base: u64, vector: u16) {
        self.write(0x16, 2, u64::from(q));
        self.write(0x18, 2, u64::from(QUEUE_SIZE));
        self.write(0x1a, 2, u64::from(vector));
        for (off, addr) in [(0x20, base), (0x28, base + 0x200), (0x30, base + 0x400)] {
            self.write(off, 4, addr & 0xffff_ffff);
            self.write(off + 4, 4, addr >> 32);
        }
        self.write(0x1c, 2, 1);
    }

    /// Sends `request` on queue `q` (rings at `base`) as descriptor chain
    /// number `n`, with `reply_len` writable bytes; waits for the device's
    /// interrupt and returns the reply.
    fn request(&self, q: u16, base: u64, n: u16, request: &[u8], reply_len: u32) -> Vec<u8> {
        let (req_at, reply_at) = (0x10_000u64, 0x20_000u64);
        self.mem.write_slice(request, GuestAddress(req_at)).unwrap();
        self.mem
            .write_slice(&vec![0xa5; reply_len as usize], GuestAddress(reply_at))
            .unwrap();
        let desc = |i: u64, addr: u64, len: u32, flags: u16, next: u16| {
            let at = GuestAddress(base + 16 * i);
            let mut d = [0u8; 16];
            d[..8].copy_from_slice(&addr.to_le_bytes());
            d[8..12].copy_from_slice(&len.to_le_bytes());
            d[12..14].copy_from_slice(&flags.to_le_bytes());
            d[14..].copy_from_slice(&next.to_le_bytes());
            self.mem.write_slice(&d, at).unwrap();
        };
        desc(0, req_at, request.len() as u32, 1, 1); // NEXT
        desc(1, reply_at, reply_len, 2, 0); // WRITE
        let avail = base + 0x200;
        self.mem
            .write_obj(
                0u16,
                GuestAddress(avail + 4 + 2 * u64::from(n % QUEUE_SIZE)),
            )
            .unwrap();
        self.mem
            .write_obj(n.wrapping_add(1), GuestAddress(avail + 2))
            .unwrap();
        self.write(
            0x3000 + 4 * u64::from(self.read_notify_off(q)),
            2,
            u64::from(q),
        );
        let vector = self
            .interrupts
            .recv_timeout(Duration::from_secs(20))
            .expect("an interrupt within 20 s");
        assert_eq!(vector, q + 1, "queue {q}'s vector");
        let used = base + 0x400;
        let idx: u16 = self.mem.read_obj(GuestAddress(used + 2)).unwrap();
        assert_eq!(idx, n.wrapping_add(1), "used index");
        let len: u32 = self
            .mem
            .read_obj(GuestAddress(used + 4 + 8 * u64::from(n % QUEUE_SIZE) + 4))
            .unwrap();
        let mut reply = vec![0u8; len as usize];
        self.mem
            .read_slice(&mut reply, GuestAddress(reply_at))
            .unwrap();
        reply
    }

    fn read_notify_off(&self, q: u16) -> u16 {
        self.write(0x16, 2, u64::from(q));
        self.read(0x1e, 2) as u16
    }
}

fn fuse_request(opcode: u32, unique: u64, node: u64, body: &[u8]) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(&(40 + body.len() as u32).to_le_bytes());
    r.extend_from_slice(&opcode.to_le_bytes());
    r.extend_from_slice(&unique.to_le_bytes());
    r.extend_from_slice(&node.to_le_bytes());
    r.extend_from_slice(&[0u8; 16]); // uid, gid, pid, extlen, padding
    r.extend_from_slice(body);
    r
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn guest_with_share(daemon: &Path, dir: &Path) -> Result<Guest, Failed> {
    let ram = MemoryBacking::Anon
        .map_shared_ram(1 << 20, "virtio-fs-test-ram")
        .map_err(|e| format!("shared RAM: {e}"))?;
    let mem = GuestMemoryMmap::from_regions(vec![
        GuestRegionMmap::new(ram, GuestAddress(0)).ok_or("region")?
    ])
    .map_err(|e| e.to_string())?;
    let (tx, interrupts) = unbounded();
    let share = ShareSpec::parse(&format!("{}:testfs", dir.display()))?;
    let fs = vmm::virtio::virtio_fs_device(&share, daemon).map_err(|e| e.to_string())?;
    let mut pci = VirtioPci::new(
        Box::new(fs),
        mem.clone(),
        devices::virtio::fs::CLASS_STORAGE_OTHER,
        Arc::new(Interrupts(tx)),
    );
    for (reg, v) in [(4, BAR0 as u32), (5, 0), (1, 0b110)] {
        let _ = pci.function.write_config(reg, 0, &v.to_le_bytes());
    }
    let cap = pci
        .function
        .find_capability(0x11)
        .ok_or("MSI-X capability")?;
    let _ = pci
        .function
        .write_config(cap / 4, 2, &0x8000u16.to_le_bytes());
    {
        let mut table = pci.msix.lock().unwrap();
        for v in 0..3u64 {
            table.write_table(v * 16 + 12, &0u32.to_le_bytes());
        }
    }
    let bar = pci
        .function
        .decoding_bars()
        .into_iter()
        .find(|b| b.range.index == 0)
        .ok_or("BAR 0 decodes")?
        .device;
    Ok(Guest {
        bar,
        pci,
        mem,
        interrupts,
    })
}

fn init_and_lookup(daemon: PathBuf) -> Result<(), Failed> {
    vmm::seccomp::configure(vmm::seccomp::SeccompMode::Enforce).map_err(|e| e.to_string())?;
    let dir = std::env::temp_dir().join(format!("cxlvmm-virtio-fs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("hello.txt"), b"hello from the host\n").map_err(|e| e.to_string())?;
    let g = guest_with_share(&daemon, &dir)?;

    // What Linux's virtio_fs reads: the tag and one request queue.
    let tag: Vec<u8> = (0..6).map(|i| g.read(0x2000 + i, 1) as u8).collect();
    assert_eq!(&tag, b"testfs");
    assert_eq!(g.read(0x2000 + 36, 4), 1);
    assert_eq!(g.read(0x12, 2), 2, "hiprio + 1 request queue");

    g.write(0x14, 1, 1 | 2);
    g.write(0x08, 4, 1);
    g.write(0x0c, 4, 1); // VIRTIO_F_VERSION_1 (bit 32)
    g.write(0x14, 1, 1 | 2 | 8);
    assert_ne!(g.status() & 8, 0, "FEATURES_OK");
    g.setup_queue(0, 0x1000, 1);
    g.setup_queue(1, 0x2000, 2);
    g.write(0x14, 1, 1 | 2 | 4 | 8);
    assert_eq!(g.status(), 0xf, "DRIVER_OK, no DEVICE_NEEDS_RESET");

    // FUSE_INIT, protocol 7.31.
    let mut init = vec![0u8; 64];
    init[..4].copy_from_slice(&7u32.to_le_bytes());
    init[4..8].copy_from_slice(&31u32.to_le_bytes());
    init[8..12].copy_from_slice(&(128u32 << 10).to_le_bytes());
    let reply = g.request(1, 0x2000, 0, &fuse_request(FUSE_INIT, 1, 0, &init), 256);
    assert!(reply.len() >= 16 + 8, "reply of {} bytes", reply.len());
    assert_eq!(u32_at(&reply, 4), 0, "FUSE_INIT error");
    assert_eq!(u64_at(&reply, 8), 1, "unique");
    assert_eq!(u32_at(&reply, 16), 7, "major version");

    // FUSE_LOOKUP of the file the host wrote: its size comes back.
    let reply = g.request(
        1,
        0x2000,
        1,
        &fuse_request(FUSE_LOOKUP, 2, ROOT_NODE, b"hello.txt\0"),
        256,
    );
    assert_eq!(u32_at(&reply, 4), 0, "FUSE_LOOKUP error");
    assert_eq!(u64_at(&reply, 8), 2, "unique");
    // fuse_entry_out: nodeid, generation, entry/attr valid (8 each), two
    // nsec (4 each), then fuse_attr { ino, size, ... }.
    assert_eq!(u64_at(&reply, 16 + 48), 20, "the file's size");
    let missing = g.request(
        1,
        0x2000,
        2,
        &fuse_request(FUSE_LOOKUP, 3, ROOT_NODE, b"absent\0"),
        256,
    );
    assert_eq!(u32_at(&missing, 4) as i32, -libc::ENOENT, "ENOENT");

    // Reset: the daemon gives the rings back (GET_VRING_BASE answered).
    g.write(0x14, 1, 0);
    assert_eq!(g.status(), 0);
    drop(g.pci);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A daemon that exits at once (here `false`): the error names it, the
/// share, and its exit status.
fn a_daemon_that_dies_is_named() -> Result<(), Failed> {
    let dir = std::env::temp_dir();
    let share = ShareSpec::parse(&format!("{}:t", dir.display()))?;
    let daemon = Path::new("/bin/false");
    let err = match vmm::virtio::virtio_fs_device(&share, daemon) {
        Ok(_) => return Err("a device over a daemon that exited".into()),
        Err(e) => e.to_string(),
    };
    let want = format!(
        "--share {}:t: /bin/false exited (exit status: 1)",
        dir.display()
    );
    if err != want {
        return Err(format!("error {err:?}, want {want:?}").into());
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Arguments::from_args();
    const NAME: &str = "a_real_virtiofsd_answers_init_and_lookup_over_the_rings";
    let trial = match virtiofsd() {
        Some(d) => Trial::test(NAME, move || init_and_lookup(d)),
        None => {
            eprintln!(
                "virtio_fs: skipped: no virtiofsd (set CXLVMM_VIRTIOFSD, or run scripts/test, which builds one)"
            );
            Trial::test(NAME, || Err("no virtiofsd".into())).with_ignored_flag(true)
        }
    };
    let dies = Trial::test("a_daemon_that_dies_is_named", a_daemon_that_dies_is_named);
    libtest_mimic::run(&args, vec![trial, dies]).exit_code()
}
