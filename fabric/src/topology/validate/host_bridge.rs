//! `[[host_bridge]]`: ids, ACPI _UIDs, root ports, latency.

use std::collections::HashMap;

use super::super::error::{ErrorKind as K, TopologyError as E};
use super::super::HostBridge;
use super::context::Context;
use super::values::{count, int_in, latency};
use super::R;

pub(super) fn host_bridges(cx: &mut Context) -> R<()> {
    let raw = cx.raw;
    if raw.host_bridges.is_empty() {
        return Err(E::new("host_bridge", "[]", K::NoHostBridge));
    }
    let mut uids = HashMap::new();
    for (i, h) in raw.host_bridges.iter().enumerate() {
        let key = format!("host_bridge[{i}]");
        cx.add_id(&format!("{key}.id"), &h.id)?;
        let uid = match h.uid {
            Some(u) => int_in(&format!("{key}.uid"), u, 0, u32::MAX as i64)? as u32,
            // Index + 1, not index: Linux finds a host bridge's generic port
            // in the HMAT by _UID among targets whose handles are all zero
            // for ordinary memory, so _UID 0 would match node 0 instead.
            None => i as u32 + 1,
        };
        if let Some(other) = uids.insert(uid, h.id.clone()) {
            return Err(E::new(
                format!("{key}.uid"),
                uid,
                K::OutOfRange(format!("uid already used by {other}")),
            ));
        }
        let root_ports = match h.root_ports {
            Some(n) => count(&format!("{key}.root_ports"), n, 32)?,
            None => 1,
        };
        let latency_ns = latency(
            &format!("{key}.latency_ns"),
            h.latency_ns.unwrap_or(cx.fabric.host_bridge_latency_ns),
        )?;
        cx.host_bridges.push(HostBridge {
            id: h.id.clone(),
            uid,
            root_ports,
            latency_ns,
        });
    }
    Ok(())
}
