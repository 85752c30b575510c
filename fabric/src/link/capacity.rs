//! Closed-form peak bandwidths of a link, from the slot accounting alone.
//! These feed the guest-visible CDAT/HMAT bandwidths and serve as an
//! independent check of the packer.

use super::flit::FlitLayout;
use super::tlp;
use crate::topology::{FlitMode, LinkParams};

/// Peak CXL.mem data bandwidth in bytes/s (both directions together) of a
/// link carrying a mix with `read_fraction` reads of 64 B lines.
///
/// Per line, the downstream direction carries r·Req + (1−r)·RwD and the
/// upstream r·DRS + (1−r)·NDR, in slots: headers r + (1−r), data 4(1−r)
/// down; headers r/3 + (1−r)/2, data 4r up. A flit of S slots of which D can
/// hold data carries at most min(S / slots-per-line, D / data-per-line)
/// lines; the busier direction sets the rate.
pub fn mem_peak_bandwidth(link: &LinkParams, read_fraction: f64) -> f64 {
    let r = read_fraction.clamp(0.0, 1.0);
    let Some(layout) = FlitLayout::for_mode(link.flit) else {
        // TLP-framed link: reads as completions of 64 B (12 B header +
        // framing), writes as 64 B posted writes.
        let rd = 64.0 + (tlp::CPL_HEADER + tlp::FRAMING) as f64;
        let wr = 64.0 + (tlp::MEM_HEADER + tlp::FRAMING) as f64;
        let req = (tlp::MEM_HEADER + tlp::FRAMING) as f64;
        let down = r * req + (1.0 - r) * wr;
        let up = r * rd;
        let per_line = down.max(up);
        return link.encoded_bytes_per_sec() * 64.0 / per_line;
    };
    let s = layout.slots as f64;
    let d = layout.data_slots() as f64;
    let lines_per_flit = |hdr: f64, data: f64| -> f64 {
        let by_slots = s / (hdr + data);
        if data > 0.0 {
            by_slots.min(d / data)
        } else {
            by_slots
        }
    };
    let down = lines_per_flit(1.0, 4.0 * (1.0 - r));
    let up = lines_per_flit(r / 3.0 + (1.0 - r) / 2.0, 4.0 * r);
    let flits_per_sec = link.encoded_bytes_per_sec() / layout.flit_bytes as f64;
    64.0 * down.min(up) * flits_per_sec
}

/// Peak posted-write (DMA) payload bandwidth of a link in bytes/s, one
/// direction, with TLPs of `max_payload`.
pub fn tlp_write_peak_bandwidth(link: &LinkParams) -> f64 {
    let mps = link.max_payload;
    let raw = link.encoded_bytes_per_sec();
    match link.flit {
        FlitMode::None => raw * tlp::posted_efficiency(mps),
        FlitMode::Flit68 => {
            // TLP bytes padded to 16 B slots of 17 wire bytes.
            let bytes = tlp::tlp_bytes(link.flit, tlp::TlpKind::MemWrite, mps);
            let slots = bytes.div_ceil(16) as f64;
            raw * mps as f64 / (slots * 17.0)
        }
        FlitMode::Flit256 | FlitMode::Flit256LatencyOpt => {
            let bytes = tlp::tlp_bytes(link.flit, tlp::TlpKind::MemWrite, mps);
            let layout = FlitLayout::for_mode(link.flit).unwrap_or(FlitLayout {
                flit_bytes: 256,
                slots: 15,
                header_only: 1,
                early: 0,
            });
            let slots = bytes.div_ceil(16) as f64;
            let per_flit = layout.data_slots() as f64 / slots;
            raw / layout.flit_bytes as f64 * per_flit * mps as f64
        }
    }
}
