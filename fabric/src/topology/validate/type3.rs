//! `[[type3]]`: capacities, label area, serial numbers, link and media.

use std::collections::{HashMap, HashSet};

use super::super::error::{ErrorKind as K, TopologyError as E};
use super::super::Type3;
use super::context::Context;
use super::fabric::{link_params, media_params};
use super::values::{aligned_size, int_in, shown, size};
use super::R;

pub(super) fn type3_devices(cx: &Context) -> R<Vec<Type3>> {
    let raw = cx.raw;
    let explicit_serials: HashSet<u64> = raw
        .type3
        .iter()
        .filter_map(|d| d.serial)
        .filter(|s| *s >= 0)
        .map(|s| s as u64)
        .collect();
    let mut next_auto = 1u64;
    let mut serials: HashMap<u64, String> = HashMap::new();
    let mut type3 = Vec::new();
    for (i, d) in raw.type3.iter().enumerate() {
        let key = format!("type3[{i}]");
        let volatile = aligned_size(&format!("{key}.volatile"), d.volatile.as_ref(), true)?;
        let persistent = aligned_size(&format!("{key}.persistent"), d.persistent.as_ref(), true)?;
        if volatile == 0 && persistent == 0 {
            return Err(E::new(format!("{key}.volatile"), 0, K::NoCapacity));
        }
        // The whole capacity must fit a window above 4 GiB (a region can
        // map no more than that); name the partition that breaks it.
        let room = cx.limits.window_room();
        let over = if volatile > room {
            Some(("volatile", d.volatile.as_ref(), volatile))
        } else if volatile.saturating_add(persistent) > room {
            Some(("persistent", d.persistent.as_ref(), persistent))
        } else {
            None
        };
        if let Some((part, written, v)) = over {
            return Err(E::new(
                format!("{key}.{part}"),
                shown(written, v),
                K::BeyondAddressSpace(cx.limits.describe()),
            ));
        }
        // Persistent memory needs a label area for namespaces; default 128 KiB.
        let lsa_default = if persistent > 0 { 128 << 10 } else { 0 };
        let lsa = match &d.lsa {
            Some(s) => size(&format!("{key}.lsa"), s)?,
            None => lsa_default,
        };
        if lsa > (1 << 30) {
            return Err(E::new(
                format!("{key}.lsa"),
                lsa,
                K::OutOfRange("at most 1 GiB".into()),
            ));
        }
        let serial = match d.serial {
            Some(s) => int_in(&format!("{key}.serial"), s, 0, i64::MAX)? as u64,
            None => {
                while explicit_serials.contains(&next_auto) || serials.contains_key(&next_auto) {
                    next_auto += 1;
                }
                next_auto
            }
        };
        if let Some(prev) = serials.insert(serial, d.id.clone()) {
            return Err(E::new(
                format!("{key}.serial"),
                serial,
                K::DuplicateSerial(prev),
            ));
        }
        let link = link_params(&format!("{key}.link"), &d.link, &cx.fabric.link, true)?;
        let media = media_params(&format!("{key}.media"), &d.media, &cx.fabric.media)?;
        type3.push(Type3 {
            id: d.id.clone(),
            attach: cx.type3_attach[i],
            volatile,
            persistent,
            lsa,
            serial,
            persistent_path: d.persistent_path.clone(),
            link,
            media,
        });
    }
    Ok(type3)
}
