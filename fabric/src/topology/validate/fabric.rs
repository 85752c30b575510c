//! `[fabric]` and the `link` / `media` tables every element may carry: the
//! defaults first, then each element's overrides.

use super::super::error::{ErrorKind as K, TopologyError as E};
use super::super::params::{gen_rate_gtps, FabricParams, FlitMode, LinkParams, MediaParams};
use super::super::raw::{RawFabric, RawLink, RawMedia};
use super::values::{bandwidth, count, int_in, latency, quoted};
use super::R;

pub(super) fn fabric_params(f: &RawFabric) -> R<FabricParams> {
    let d = FabricParams::default();
    let link = link_params("fabric.link", &f.link, &d.link, false)?;
    let media = media_params("fabric.media", &f.media, &d.media)?;
    Ok(FabricParams {
        seed: match f.seed {
            // Seeds are bit patterns; negative TOML integers wrap deliberately.
            Some(s) => s as u64,
            None => d.seed,
        },
        host_memory_latency_ns: latency(
            "fabric.host_memory_latency_ns",
            f.host_memory_latency_ns.unwrap_or(d.host_memory_latency_ns),
        )?,
        host_memory_bandwidth_gbps: bandwidth(
            "fabric.host_memory_bandwidth_gbps",
            f.host_memory_bandwidth_gbps
                .unwrap_or(d.host_memory_bandwidth_gbps),
        )?,
        rc_p2p_latency_ns: latency(
            "fabric.rc_p2p_latency_ns",
            f.rc_p2p_latency_ns.unwrap_or(d.rc_p2p_latency_ns),
        )?,
        rc_p2p_bandwidth_gbps: match f.rc_p2p_bandwidth_gbps {
            Some(b) => Some(bandwidth("fabric.rc_p2p_bandwidth_gbps", b)?),
            None => None,
        },
        link,
        media,
        switch_latency_ns: latency(
            "fabric.switch_latency_ns",
            f.switch_latency_ns.unwrap_or(d.switch_latency_ns),
        )?,
        host_bridge_latency_ns: latency(
            "fabric.host_bridge_latency_ns",
            f.host_bridge_latency_ns.unwrap_or(d.host_bridge_latency_ns),
        )?,
    })
}

pub(in crate::topology) fn link_params(
    key: &str,
    r: &RawLink,
    d: &LinkParams,
    cxl_mem: bool,
) -> R<LinkParams> {
    let gen = match r.gen {
        Some(g) => {
            if gen_rate_gtps(u8::try_from(g).unwrap_or(0)).is_none() {
                return Err(E::new(format!("{key}.gen"), g, K::UnsupportedGen));
            }
            g as u8
        }
        None => d.gen,
    };
    let width = match r.width {
        Some(w) => {
            let ok = u8::try_from(w)
                .map(|w| super::super::SUPPORTED_WIDTHS.contains(&w))
                .unwrap_or(false);
            if !ok {
                return Err(E::new(format!("{key}.width"), w, K::UnsupportedWidth));
            }
            w as u8
        }
        None => d.width,
    };
    let (flit, flit_key, flit_val) = match &r.flit {
        Some(s) => (
            FlitMode::parse(s)
                .ok_or_else(|| E::new(format!("{key}.flit"), quoted(s), K::UnknownFlitMode))?,
            format!("{key}.flit"),
            quoted(s),
        ),
        None => {
            // A default flit mode that cannot run at an overridden gen is
            // picked for the gen instead of rejected: the user never wrote it.
            let f = if d.flit.supported_at(gen) {
                d.flit
            } else if gen == 6 {
                FlitMode::Flit256
            } else if gen <= 2 {
                FlitMode::None
            } else {
                FlitMode::Flit68
            };
            (f, format!("{key}.gen"), gen.to_string())
        }
    };
    if !flit.supported_at(gen) {
        return Err(E::new(
            flit_key,
            flit_val,
            K::FlitModeVsGen(flit.to_string(), gen),
        ));
    }
    if cxl_mem && !flit.carries_cxl_mem() {
        return Err(E::new(flit_key, flit_val, K::NeedsFlits));
    }
    let retimers = match r.retimers {
        Some(n) => int_in(&format!("{key}.retimers"), n, 0, 8)? as u32,
        None => d.retimers,
    };
    let credits = match r.credits {
        Some(n) => count(&format!("{key}.credits"), n, 4096)?,
        None => d.credits,
    };
    let ber = match r.ber {
        Some(b) => {
            if !b.is_finite() {
                return Err(E::new(format!("{key}.ber"), b, K::NotFinite));
            }
            if !(0.0..=1e-3).contains(&b) {
                return Err(E::new(
                    format!("{key}.ber"),
                    b,
                    K::OutOfRange("0 to 1e-3".into()),
                ));
            }
            b
        }
        None => d.ber,
    };
    let pow2 = |k: &str, v: Option<i64>, def: u32| -> R<u32> {
        match v {
            None => Ok(def),
            Some(v) if (128..=4096).contains(&v) && (v as u64).is_power_of_two() => Ok(v as u32),
            Some(v) => Err(E::new(
                format!("{key}.{k}"),
                v,
                K::OutOfRange("a power of two from 128 to 4096".into()),
            )),
        }
    };
    Ok(LinkParams {
        gen,
        width,
        flit,
        retimers,
        retimer_latency_ns: latency(
            &format!("{key}.retimer_latency_ns"),
            r.retimer_latency_ns.unwrap_or(d.retimer_latency_ns),
        )?,
        port_latency_ns: latency(
            &format!("{key}.port_latency_ns"),
            r.port_latency_ns.unwrap_or(d.port_latency_ns),
        )?,
        credits,
        ber,
        max_payload: pow2("max_payload", r.max_payload, d.max_payload)?,
        max_read_request: pow2("max_read_request", r.max_read_request, d.max_read_request)?,
    })
}

pub(in crate::topology) fn media_params(
    key: &str,
    r: &RawMedia,
    d: &MediaParams,
) -> R<MediaParams> {
    Ok(MediaParams {
        read_latency_ns: latency(
            &format!("{key}.read_latency_ns"),
            r.read_latency_ns.unwrap_or(d.read_latency_ns),
        )?,
        write_latency_ns: latency(
            &format!("{key}.write_latency_ns"),
            r.write_latency_ns.unwrap_or(d.write_latency_ns),
        )?,
        read_bandwidth_gbps: bandwidth(
            &format!("{key}.read_bandwidth_gbps"),
            r.read_bandwidth_gbps.unwrap_or(d.read_bandwidth_gbps),
        )?,
        write_bandwidth_gbps: bandwidth(
            &format!("{key}.write_bandwidth_gbps"),
            r.write_bandwidth_gbps.unwrap_or(d.write_bandwidth_gbps),
        )?,
        queue_depth: match r.queue_depth {
            Some(q) => count(&format!("{key}.queue_depth"), q, 65536)?,
            None => d.queue_depth,
        },
    })
}
