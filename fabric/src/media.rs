//! Completers: device media, host memory, accelerator BAR memory, and the
//! root complex's peer-to-peer forwarding cap. Each is a bandwidth server
//! (one transfer at a time at its rate) followed by a fixed pipeline latency;
//! the media also bounds how many requests may wait for it.

use crate::time::{ns_to_ps, PsPerByte};
use crate::topology::MediaParams;

/// A bandwidth server: transfers take bytes / rate, one after another.
#[derive(Debug, Clone)]
pub(crate) struct Server {
    ppb: PsPerByte,
    pub free_at: u64,
}

impl Server {
    pub fn new(gbps: f64) -> Self {
        Server {
            ppb: PsPerByte::from_gbps(gbps),
            free_at: 0,
        }
    }

    /// A server at a new rate that stays busy as long as this one was.
    pub fn retuned(&self, gbps: f64) -> Self {
        Server {
            free_at: self.free_at,
            ..Server::new(gbps)
        }
    }

    /// Serve `bytes` arriving at `t`: returns (start, end).
    #[inline]
    pub fn serve(&mut self, t: u64, bytes: u32) -> (u64, u64) {
        let start = t.max(self.free_at);
        self.free_at = start + self.ppb.time(bytes as u64);
        (start, self.free_at)
    }
}

/// Type-3 media: a queue of `queue_depth` requests in front of a shared
/// read/write bandwidth server, then the fixed access latency.
#[derive(Debug, Clone)]
pub(crate) struct Media {
    read_ppb: PsPerByte,
    write_ppb: PsPerByte,
    read_ps: u64,
    write_ps: u64,
    free_at: u64,
    /// Dispatch times of the last `queue_depth` requests (a slot frees when
    /// its request is dispatched to the media).
    slots: Vec<u64>,
    head: usize,
    pub reads: u64,
    pub writes: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
}

/// When a media access was admitted (its link credit returns) and when
/// its data / completion is ready.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Served {
    pub admitted: u64,
    pub done: u64,
}

impl Media {
    pub fn new(p: &MediaParams) -> Self {
        Media {
            read_ppb: PsPerByte::from_gbps(p.read_bandwidth_gbps),
            write_ppb: PsPerByte::from_gbps(p.write_bandwidth_gbps),
            read_ps: ns_to_ps(p.read_latency_ns),
            write_ps: ns_to_ps(p.write_latency_ns),
            free_at: 0,
            slots: vec![0; p.queue_depth.max(1) as usize],
            head: 0,
            reads: 0,
            writes: 0,
            read_bytes: 0,
            write_bytes: 0,
        }
    }

    /// The media with new parameters, continuing its schedule: busy as
    /// long as it was; queue slots still held stay held (all until the
    /// latest one frees if the depth changed); counters carry on.
    pub fn retuned(&self, p: &MediaParams) -> Self {
        let mut m = Media::new(p);
        m.free_at = self.free_at;
        if m.slots.len() == self.slots.len() {
            m.slots.clone_from(&self.slots);
            m.head = self.head;
        } else {
            let last = self.slots.iter().copied().max().unwrap_or(0);
            m.slots.fill(last);
        }
        m.reads = self.reads;
        m.writes = self.writes;
        m.read_bytes = self.read_bytes;
        m.write_bytes = self.write_bytes;
        m
    }

    #[inline]
    pub fn access(&mut self, t: u64, bytes: u32, write: bool) -> Served {
        let admitted = t.max(self.slots[self.head]);
        let start = admitted.max(self.free_at);
        let (ppb, lat) = if write {
            self.writes += 1;
            self.write_bytes += u64::from(bytes);
            (self.write_ppb, self.write_ps)
        } else {
            self.reads += 1;
            self.read_bytes += u64::from(bytes);
            (self.read_ppb, self.read_ps)
        };
        self.free_at = start + ppb.time(bytes as u64);
        self.slots[self.head] = start;
        self.head += 1;
        if self.head == self.slots.len() {
            self.head = 0;
        }
        Served {
            admitted,
            done: self.free_at + lat,
        }
    }
}

/// A bandwidth server with a fixed latency after it (host DRAM, BAR memory).
#[derive(Debug, Clone)]
pub(crate) struct Memory {
    server: Server,
    latency_ps: u64,
}

impl Memory {
    pub fn new(gbps: f64, latency_ns: f64) -> Self {
        Memory {
            server: Server::new(gbps),
            latency_ps: ns_to_ps(latency_ns),
        }
    }

    /// New parameters, busy as long as before.
    pub fn retuned(&self, gbps: f64, latency_ns: f64) -> Self {
        Memory {
            server: self.server.retuned(gbps),
            latency_ps: ns_to_ps(latency_ns),
        }
    }

    #[inline]
    pub fn access(&mut self, t: u64, bytes: u32) -> Served {
        let (start, end) = self.server.serve(t, bytes);
        Served {
            admitted: start,
            done: end + self.latency_ps,
        }
    }
}
