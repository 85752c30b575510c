//! vhost-user frontend: a virtio device's rings served by another process
//! (the vhost-user protocol, QEMU `docs/interop/vhost-user.rst`), through
//! rust-vmm's `vhost` crate.
//!
//! One thread per device ([`VhostUserRings`]) owns the connection. It does
//! the protocol on behalf of the vCPU that started or reset the device (the
//! vCPU waits for its answer), and turns the backend's "call" eventfds into
//! the queues' MSI-X interrupts through the transport's [`Interrupt`], so
//! masking and the pending bits behave as for every other virtio device.
//! A driver's notification is a write to the queue's "kick" eventfd, which
//! the backend waits on.
//!
//! Guest RAM is given to the backend as file descriptors (SET_MEM_TABLE),
//! so it must be shared memory: `--share` backs guest RAM with a memfd
//! (docs/virtio.md).

pub mod virtiofsd;

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender};
use devices::virtio::fs::RingBackend;
use devices::virtio::{Activation, Interrupt};
use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use virtio_queue::QueueT;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryRegion};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Feature bit 30: the backend speaks protocol features (vhost-user spec,
/// "Protocol features"); never offered to the guest.
const VHOST_USER_F_PROTOCOL_FEATURES: u64 = 1 << 30;
/// Protocol features we use when the backend has them.
const PROTOCOL_FEATURES: VhostUserProtocolFeatures =
    VhostUserProtocolFeatures::MQ.union(VhostUserProtocolFeatures::REPLY_ACK);

/// What the vCPU asks the device's thread to do.
enum Command {
    Start(Activation),
    Stop,
}

/// The rings of one device, served by a vhost-user backend.
pub struct VhostUserRings {
    /// Who serves them, for messages ("virtiofsd for --share /srv:tag").
    name: String,
    features: u64,
    kicks: Vec<EventFd>,
    commands: Sender<Command>,
    wake: EventFd,
    replies: Receiver<Result<(), String>>,
    _thread: JoinHandle<()>,
}

impl VhostUserRings {
    /// Takes over a backend connected on `stream`: claims it (SET_OWNER),
    /// reads its features, agrees on protocol features, and starts the
    /// device's thread. `queues` is how many rings the device has.
    pub fn connect(name: String, stream: UnixStream, queues: usize) -> io::Result<Self> {
        // A second handle on the connection, only to see it close.
        let watch = stream.try_clone()?;
        let mut frontend = Frontend::from_stream(stream, queues as u64);
        let proto_err = |what: &str, e: vhost::Error| io::Error::other(format!("{what}: {e}"));
        frontend
            .set_owner()
            .map_err(|e| proto_err("SET_OWNER", e))?;
        let features = frontend
            .get_features()
            .map_err(|e| proto_err("GET_FEATURES", e))?;
        let protocol = features & VHOST_USER_F_PROTOCOL_FEATURES != 0;
        if protocol {
            let theirs = frontend
                .get_protocol_features()
                .map_err(|e| proto_err("GET_PROTOCOL_FEATURES", e))?;
            frontend
                .set_protocol_features(theirs & PROTOCOL_FEATURES)
                .map_err(|e| proto_err("SET_PROTOCOL_FEATURES", e))?;
        }
        let kicks = (0..queues)
            .map(|_| EventFd::new(EFD_NONBLOCK))
            .collect::<io::Result<Vec<_>>>()?;
        let calls = (0..queues)
            .map(|_| EventFd::new(EFD_NONBLOCK))
            .collect::<io::Result<Vec<_>>>()?;
        let wake = EventFd::new(EFD_NONBLOCK)?;
        let (commands, command_rx) = bounded(1);
        let (reply_tx, replies) = bounded(1);
        let ring_thread = RingThread {
            name: name.clone(),
            frontend,
            backend_features: features,
            protocol,
            kicks: kicks
                .iter()
                .map(EventFd::try_clone)
                .collect::<io::Result<_>>()?,
            calls,
            wake: wake.try_clone()?,
            watch,
            commands: command_rx,
            replies: reply_tx,
            started: 0,
            interrupt: None,
        };
        let thread = std::thread::Builder::new()
            .name("vhost-user".into())
            .spawn(move || ring_thread.run())?;
        Ok(Self {
            name,
            features,
            kicks,
            commands,
            wake,
            replies,
            _thread: thread,
        })
    }

    fn ask(&self, command: Command) -> Result<(), String> {
        let gone = || format!("{}: the connection's thread has stopped", self.name);
        self.commands.send(command).map_err(|_| gone())?;
        self.wake.write(1).map_err(|_| gone())?;
        self.replies.recv().map_err(|_| gone())?
    }
}

impl RingBackend for VhostUserRings {
    fn features(&self) -> u64 {
        self.features & !VHOST_USER_F_PROTOCOL_FEATURES
    }

    fn start(&mut self, activation: Activation) -> Result<(), String> {
        self.ask(Command::Start(activation))
    }

    fn kick(&mut self, queue: u16) -> Result<(), String> {
        if let Some(k) = self.kicks.get(usize::from(queue)) {
            // A full counter (the backend is behind) is still a kick.
            let _ = k.write(1);
        }
        Ok(())
    }

    fn stop(&mut self) {
        if let Err(e) = self.ask(Command::Stop) {
            log::warn!("{e}");
        }
    }
}

/// The connection's own thread.
struct RingThread {
    name: String,
    frontend: Frontend,
    backend_features: u64,
    protocol: bool,
    kicks: Vec<EventFd>,
    calls: Vec<EventFd>,
    wake: EventFd,
    watch: UnixStream,
    commands: Receiver<Command>,
    replies: Sender<Result<(), String>>,
    /// How many rings the backend serves now (0: stopped).
    started: usize,
    interrupt: Option<Arc<Interrupt>>,
}

const WAKE: u64 = u64::MAX;
const HANGUP: u64 = u64::MAX - 1;

impl RingThread {
    fn run(mut self) {
        if let Err(e) = crate::seccomp::enter(crate::seccomp::ThreadRole::VhostUser) {
            eprintln!("cxlvmm: {e}");
            return;
        }
        if let Err(e) = self.serve() {
            log::warn!("{}: the device's thread stopped: {e}", self.name);
        }
    }

    fn serve(&mut self) -> io::Result<()> {
        let epoll = Epoll::new()?;
        epoll.ctl(
            ControlOperation::Add,
            self.wake.as_raw_fd(),
            EpollEvent::new(EventSet::IN, WAKE),
        )?;
        // Hang-up only: the protocol's bytes are the frontend's to read.
        epoll.ctl(
            ControlOperation::Add,
            self.watch.as_raw_fd(),
            EpollEvent::new(EventSet::READ_HANG_UP | EventSet::HANG_UP, HANGUP),
        )?;
        for (i, call) in self.calls.iter().enumerate() {
            epoll.ctl(
                ControlOperation::Add,
                call.as_raw_fd(),
                EpollEvent::new(EventSet::IN, i as u64),
            )?;
        }
        let mut events = vec![EpollEvent::default(); self.calls.len() + 1];
        loop {
            let n = match epoll.wait(-1, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            for ev in &events[..n] {
                if ev.data() == HANGUP {
                    // The guest's requests on this device will not be
                    // answered any more; say so once.
                    eprintln!(
                        "cxlvmm: {}: the daemon closed its connection (it exited?); the guest's file system stops answering",
                        self.name
                    );
                    epoll.ctl(
                        ControlOperation::Delete,
                        self.watch.as_raw_fd(),
                        EpollEvent::default(),
                    )?;
                } else if ev.data() == WAKE {
                    let _ = self.wake.read();
                    while let Ok(command) = self.commands.try_recv() {
                        let reply = match command {
                            Command::Start(a) => {
                                self.start(a).map_err(|e| format!("{}: {e}", self.name))
                            }
                            Command::Stop => {
                                self.stop();
                                Ok(())
                            }
                        };
                        if self.replies.send(reply).is_err() {
                            return Ok(()); // the device is gone
                        }
                    }
                } else {
                    let queue = ev.data() as usize;
                    let _ = self.calls[queue].read();
                    if let Some(i) = &self.interrupt {
                        i.signal_queue(queue as u16);
                    }
                }
            }
        }
    }

    /// Hands the driver's rings to the backend (vhost-user spec, "Starting
    /// and stopping rings"): features, memory table, then per ring its
    /// size, addresses (in our address space), first index, call and kick
    /// eventfds, and, with protocol features, SET_VRING_ENABLE.
    fn start(&mut self, a: Activation) -> Result<(), String> {
        self.stop();
        let err = |what: String| move |e: vhost::Error| format!("{what}: {e}");
        let acked = a.features | (self.backend_features & VHOST_USER_F_PROTOCOL_FEATURES);
        self.frontend
            .set_features(acked)
            .map_err(err("SET_FEATURES".into()))?;
        let regions = a
            .mem
            .iter()
            .map(|r| {
                VhostUserMemoryRegionInfo::from_guest_region(r).map_err(|e| {
                    format!(
                        "guest RAM at {:#x} cannot be shared with it: {e}",
                        r.start_addr().0
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.frontend
            .set_mem_table(&regions)
            .map_err(err("SET_MEM_TABLE".into()))?;
        let host = |gpa: u64| {
            a.mem
                .get_host_address(GuestAddress(gpa))
                .map(|p| p as u64)
                .map_err(|e| format!("ring address {gpa:#x}: {e}"))
        };
        for (i, q) in a.queues.iter().enumerate() {
            let ring = VringConfigData {
                queue_max_size: q.max_size(),
                queue_size: q.size(),
                flags: 0,
                desc_table_addr: host(q.desc_table())?,
                used_ring_addr: host(q.used_ring())?,
                avail_ring_addr: host(q.avail_ring())?,
                log_addr: None,
            };
            let fe = &mut self.frontend;
            fe.set_vring_num(i, q.size())
                .map_err(err(format!("SET_VRING_NUM {i}")))?;
            fe.set_vring_addr(i, &ring)
                .map_err(err(format!("SET_VRING_ADDR {i}")))?;
            fe.set_vring_base(i, 0)
                .map_err(err(format!("SET_VRING_BASE {i}")))?;
            fe.set_vring_call(i, &self.calls[i])
                .map_err(err(format!("SET_VRING_CALL {i}")))?;
            fe.set_vring_kick(i, &self.kicks[i])
                .map_err(err(format!("SET_VRING_KICK {i}")))?;
            if self.protocol {
                fe.set_vring_enable(i, true)
                    .map_err(err(format!("SET_VRING_ENABLE {i}")))?;
            }
            self.started = i + 1;
        }
        self.interrupt = Some(a.interrupt);
        Ok(())
    }

    /// Stops every ring it started: GET_VRING_BASE is the message after
    /// which the backend no longer touches a ring.
    fn stop(&mut self) {
        for i in 0..self.started {
            if self.protocol {
                let _ = self.frontend.set_vring_enable(i, false);
            }
            if let Err(e) = self.frontend.get_vring_base(i) {
                log::warn!("{}: GET_VRING_BASE {i}: {e}", self.name);
            }
        }
        self.started = 0;
        self.interrupt = None;
    }
}
