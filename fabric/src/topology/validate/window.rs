//! `[[window]]`: the CXL fixed memory windows (CFMWS): targets, interleave,
//! size, restrictions, optional fixed base; then what holds across windows
//! (no two fixed windows overlap, all fit the guest's address space).

use std::collections::{HashMap, HashSet};

use super::super::error::{ErrorKind as K, TopologyError as E};
use super::super::raw::RawWindow;
use super::super::{Restrictions, Window, WindowMode, SIZE_ALIGN, SUPPORTED_WAYS};
use super::context::{valid_id, Context};
use super::values::{aligned_size, int_in, quoted, shown, size};
use super::R;

pub(super) fn windows(cx: &Context) -> R<Vec<Window>> {
    let hb_index = cx.host_bridge_index();
    let mut windows = Vec::new();
    let mut ids = HashSet::new();
    for (i, w) in cx.raw.windows.iter().enumerate() {
        windows.push(window(i, w, &hb_index, &mut ids)?);
    }
    check_fixed_overlaps(&windows)?;
    check_address_space(cx, &windows)?;
    Ok(windows)
}

/// One window; `ids` holds the ids of the windows before it (window ids
/// are a namespace of their own).
fn window(
    i: usize,
    w: &RawWindow,
    hb_index: &HashMap<&str, usize>,
    ids: &mut HashSet<String>,
) -> R<Window> {
    let key = format!("window[{i}]");
    let id = w.id.clone().unwrap_or_else(|| format!("w{i}"));
    if !valid_id(&id) {
        return Err(E::new(format!("{key}.id"), quoted(&id), K::BadId));
    }
    if !ids.insert(id.clone()) {
        return Err(E::new(format!("{key}.id"), quoted(&id), K::DuplicateId));
    }
    let mut targets = Vec::new();
    for (j, t) in w.targets.iter().enumerate() {
        let tkey = format!("{key}.targets[{j}]");
        let hb = *hb_index
            .get(t.as_str())
            .ok_or_else(|| E::new(&tkey, quoted(t), K::UnknownId))?;
        if targets.contains(&hb) {
            return Err(E::new(&tkey, quoted(t), K::DuplicateId));
        }
        targets.push(hb);
    }
    if targets.is_empty() {
        return Err(E::new(format!("{key}.targets"), "[]", K::NotPositive));
    }
    let ways = ways(&key, w.ways, targets.len() as u32)?;
    let granularity = match &w.granularity {
        Some(g) => size(&format!("{key}.granularity"), g)?,
        None => 4096,
    };
    if !(256..=16384).contains(&granularity) || !granularity.is_power_of_two() {
        return Err(E::new(
            format!("{key}.granularity"),
            granularity,
            K::UnsupportedGranularity,
        ));
    }
    let size_v = aligned_size(&format!("{key}.size"), Some(&w.size), false)?;
    if size_v % (SIZE_ALIGN * ways as u64) != 0 {
        return Err(E::new(
            format!("{key}.size"),
            size_v,
            K::OutOfRange(format!("must be a multiple of 256 MiB x {ways} ways")),
        ));
    }
    let restrictions = restrictions(&key, w.restrictions.as_deref())?;
    let base = match &w.base {
        Some(b) => Some(aligned_size(&format!("{key}.base"), Some(b), true)?),
        None => None,
    };
    let qtg = match w.qtg {
        Some(q) => int_in(&format!("{key}.qtg"), q, 0, 0xffff)? as u16,
        None => 0,
    };
    Ok(Window {
        id,
        targets,
        size: size_v,
        ways,
        granularity: granularity as u32,
        restrictions,
        base,
        qtg,
        mode: window_mode(&format!("{key}.mode"), w.mode.as_deref())?,
    })
}

fn window_mode(key: &str, v: Option<&str>) -> R<WindowMode> {
    match v {
        None => Ok(WindowMode::Native),
        Some(s) => WindowMode::parse(s).ok_or_else(|| E::new(key, quoted(s), K::UnknownMemoryMode)),
    }
}

/// Interleave ways: as given (one CFMWS can encode), else one per target;
/// either way equal to the number of targets.
fn ways(key: &str, given: Option<i64>, n: u32) -> R<u32> {
    let ways = match given {
        Some(v) => {
            if v < 0 || !SUPPORTED_WAYS.contains(&(v as u32)) {
                return Err(E::new(format!("{key}.ways"), v, K::UnsupportedWays));
            }
            v as u32
        }
        None => n,
    };
    if !SUPPORTED_WAYS.contains(&ways) {
        return Err(E::new(format!("{key}.targets"), n, K::UnsupportedWays));
    }
    if ways != n {
        return Err(E::new(
            format!("{key}.ways"),
            ways,
            K::WaysMismatch(ways, n),
        ));
    }
    Ok(ways)
}

fn restrictions(key: &str, list: Option<&[String]>) -> R<Restrictions> {
    let Some(list) = list else {
        return Ok(Restrictions {
            ram: true,
            pmem: false,
        });
    };
    let mut r = Restrictions::default();
    for (j, s) in list.iter().enumerate() {
        match s.to_ascii_lowercase().as_str() {
            "ram" | "volatile" => r.ram = true,
            "pmem" | "persistent" => r.pmem = true,
            _ => {
                return Err(E::new(
                    format!("{key}.restrictions[{j}]"),
                    quoted(s),
                    K::UnknownRestriction,
                ))
            }
        }
    }
    if !r.ram && !r.pmem {
        return Err(E::new(
            format!("{key}.restrictions"),
            "[]",
            K::UnknownRestriction,
        ));
    }
    Ok(r)
}

fn check_fixed_overlaps(windows: &[Window]) -> R<()> {
    for (i, a) in windows.iter().enumerate() {
        for b in windows.iter().skip(i + 1) {
            if let (Some(ab), Some(bb)) = (a.base, b.base) {
                if ab < bb.saturating_add(b.size) && bb < ab.saturating_add(a.size) {
                    return Err(E::new(
                        format!("window[{i}].base"),
                        format!("{ab:#x}"),
                        K::Overlap(format!("{} and {}", a.id, b.id)),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Every window must fit the guest physical address space above 4 GiB,
/// where the VMM places them (it checks the exact placement, above RAM,
/// when it starts), and so must all of them together.
fn check_address_space(cx: &Context, windows: &[Window]) -> R<()> {
    let room = cx.limits.window_room();
    let end = cx.limits.address_space_end();
    let mut total = 0u64;
    for (i, (w, raw)) in windows.iter().zip(&cx.raw.windows).enumerate() {
        if let Some(base) = w.base {
            if base.saturating_add(w.size) > end {
                return Err(E::new(
                    format!("window[{i}].base"),
                    format!("{base:#x}"),
                    K::BeyondAddressSpace(format!(
                        "{} (the window is {} bytes)",
                        cx.limits.describe(),
                        w.size
                    )),
                ));
            }
            continue;
        }
        total = total.saturating_add(w.size);
        if total > room {
            let what = if total == w.size {
                cx.limits.describe()
            } else {
                format!(
                    "{}; windows up to this one need {total} bytes",
                    cx.limits.describe()
                )
            };
            return Err(E::new(
                format!("window[{i}].size"),
                shown(Some(&raw.size), w.size),
                K::BeyondAddressSpace(what),
            ));
        }
    }
    Ok(())
}
