//! Port references (`port = "hb0.rp1"`, `"sw0.dp3"`): each resolves to an
//! existing port, each port carries one link, and switches form a tree.

use std::collections::HashMap;

use super::super::error::{ErrorKind as K, TopologyError as E};
use super::super::{Attach, HostBridge, Switch};
use super::context::Context;
use super::values::quoted;
use super::R;

/// Resolves every element's `port` (switches, type-3 devices,
/// accelerators, in that order) and records it in `cx`.
pub(super) fn attach_all(cx: &mut Context) -> R<()> {
    let raw = cx.raw;
    let hb_index = cx.host_bridge_index();
    let sw_index = cx.switch_index();
    let resolver = PortResolver {
        hb_index: &hb_index,
        sw_index: &sw_index,
        host_bridges: &cx.host_bridges,
        switches: &cx.switches,
    };
    let mut used: HashMap<Attach, String> = HashMap::new();
    let mut claim = |key: &str, port_str: &str, owner: &str| -> R<Attach> {
        let at = resolver.resolve(key, port_str)?;
        if let Some(prev) = used.insert(at, owner.to_string()) {
            return Err(E::new(key, quoted(port_str), K::PortInUse(prev)));
        }
        Ok(at)
    };
    let mut sw_attach = Vec::new();
    for (i, s) in raw.switches.iter().enumerate() {
        sw_attach.push(claim(&format!("switch[{i}].port"), &s.port, &s.id)?);
    }
    let mut t3_attach = Vec::new();
    for (i, d) in raw.type3.iter().enumerate() {
        t3_attach.push(claim(&format!("type3[{i}].port"), &d.port, &d.id)?);
    }
    let mut acc_attach = Vec::new();
    for (i, a) in raw.accelerators.iter().enumerate() {
        acc_attach.push(claim(&format!("accelerator[{i}].port"), &a.port, &a.id)?);
    }
    for (s, at) in cx.switches.iter_mut().zip(sw_attach) {
        s.attach = at;
    }
    cx.type3_attach = t3_attach;
    cx.accelerator_attach = acc_attach;
    check_cycles(cx)
}

struct PortResolver<'a> {
    hb_index: &'a HashMap<&'a str, usize>,
    sw_index: &'a HashMap<&'a str, usize>,
    host_bridges: &'a [HostBridge],
    switches: &'a [Switch],
}

impl PortResolver<'_> {
    fn resolve(&self, key: &str, s: &str) -> R<Attach> {
        let bad = || E::new(key, quoted(s), K::BadPortRef);
        let (owner, port) = s.rsplit_once('.').ok_or_else(bad)?;
        // Byte 2 may fall inside a multi-byte character of a bad reference.
        let (kind, num) = port.split_at_checked(2).ok_or_else(bad)?;
        let index: u32 = num.parse().map_err(|_| bad())?;
        match kind {
            "rp" => {
                let hb = *self
                    .hb_index
                    .get(owner)
                    .ok_or_else(|| E::new(key, quoted(s), K::UnknownId))?;
                let n = self.host_bridges[hb].root_ports;
                if index >= n {
                    return Err(E::new(key, quoted(s), K::PortOverflow(owner.into(), n)));
                }
                Ok(Attach::RootPort {
                    host_bridge: hb,
                    port: index,
                })
            }
            "dp" => {
                let sw = *self
                    .sw_index
                    .get(owner)
                    .ok_or_else(|| E::new(key, quoted(s), K::UnknownId))?;
                let n = self.switches[sw].downstream_ports;
                if index >= n {
                    return Err(E::new(key, quoted(s), K::PortOverflow(owner.into(), n)));
                }
                Ok(Attach::SwitchPort {
                    switch: sw,
                    port: index,
                })
            }
            _ => Err(bad()),
        }
    }
}

/// A switch whose chain of parents never reaches a root port is in a cycle.
fn check_cycles(cx: &Context) -> R<()> {
    let switches = &cx.switches;
    for start in 0..switches.len() {
        let mut chain = vec![start];
        let mut cur = start;
        while let Attach::SwitchPort { switch, .. } = switches[cur].attach {
            if chain.contains(&switch) {
                let names: Vec<&str> = chain
                    .iter()
                    .chain(std::iter::once(&switch))
                    .map(|&i| switches[i].id.as_str())
                    .collect();
                return Err(E::new(
                    format!("switch[{start}].port"),
                    quoted(&cx.raw.switches[start].port),
                    K::Cycle(names.join(" -> ")),
                ));
            }
            chain.push(switch);
            cur = switch;
        }
    }
    Ok(())
}
