//! `[cpu_cache]`: the cache modelled in front of timed memory; also used
//! when one of its parameters changes at run time (the control API).

use super::super::error::{ErrorKind as K, TopologyError as E};
use super::super::params::CpuCacheParams;
use super::super::raw::{RawCpuCache, RawSize};
use super::values::{int_in, latency, quoted, size};
use super::R;

/// Ids that name the topology's tables rather than elements (the control
/// API addresses `[fabric]` and `[cpu_cache]` parameters by these).
pub(in crate::topology) const RESERVED_IDS: [&str; 2] = ["fabric", "cpu_cache"];

/// `[cpu_cache]` over `d` (the defaults, or the current values when one
/// parameter changes at run time).
pub(in crate::topology) fn cpu_cache_params(
    key: &str,
    r: &RawCpuCache,
    d: &CpuCacheParams,
) -> R<CpuCacheParams> {
    let ways = match r.ways {
        Some(w) => int_in(&format!("{key}.ways"), w, 1, 64)? as u32,
        None => d.ways,
    };
    let line = match r.line {
        Some(l) if [64, 128, 256].contains(&l) => l as u32,
        Some(l) => {
            return Err(E::new(
                format!("{key}.line"),
                l,
                K::OutOfRange(
                    "64, 128 or 256 (at most the smallest interleave granularity)".into(),
                ),
            ))
        }
        None => d.line,
    };
    let size = match &r.size {
        Some(s) => size(&format!("{key}.size"), s)?,
        None => d.size,
    };
    let shown = || match &r.size {
        Some(RawSize::Str(t)) => quoted(t),
        _ => size.to_string(),
    };
    // The model keeps 16 bytes per line: 256 MiB of cache is 64 MiB of model.
    if size == 0 || size > 256 << 20 {
        return Err(E::new(
            format!("{key}.size"),
            shown(),
            K::OutOfRange("1 line to 256 MiB".into()),
        ));
    }
    let set_bytes = u64::from(ways) * u64::from(line);
    if size % set_bytes != 0 || !(size / set_bytes).is_power_of_two() {
        // Name the key the user wrote (size first, then ways, then line).
        let (k, v) = match (r.size.is_some(), r.ways, r.line) {
            (false, Some(w), _) => ("ways", w.to_string()),
            (false, None, Some(l)) => ("line", l.to_string()),
            _ => ("size", shown()),
        };
        return Err(E::new(
            format!("{key}.{k}"),
            v,
            K::OutOfRange(format!(
                "must be {ways} ways x {line} B x a power-of-two number of sets"
            )),
        ));
    }
    Ok(CpuCacheParams {
        enabled: r.enabled.unwrap_or(d.enabled),
        size,
        ways,
        line,
        hit_latency_ns: latency(
            &format!("{key}.hit_latency_ns"),
            r.hit_latency_ns.unwrap_or(d.hit_latency_ns),
        )?,
    })
}
