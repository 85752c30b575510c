//! `[[switch]]`: port counts, latency, the link above it. Where it plugs
//! in is resolved later, with every other port reference (`ports`).

use super::super::{Attach, Switch};
use super::context::Context;
use super::fabric::link_params;
use super::values::{count, latency};
use super::R;

pub(super) fn switches(cx: &mut Context) -> R<()> {
    for (i, s) in cx.raw.switches.iter().enumerate() {
        let key = format!("switch[{i}]");
        let downstream_ports = match s.downstream_ports {
            Some(n) => count(&format!("{key}.downstream_ports"), n, 32)?,
            None => 4,
        };
        let latency_ns = latency(
            &format!("{key}.latency_ns"),
            s.latency_ns.unwrap_or(cx.fabric.switch_latency_ns),
        )?;
        let link = link_params(&format!("{key}.link"), &s.link, &cx.fabric.link, true)?;
        cx.switches.push(Switch {
            id: s.id.clone(),
            // Resolved by `ports`, once every switch's port count is known.
            attach: Attach::RootPort {
                host_bridge: 0,
                port: 0,
            },
            downstream_ports,
            latency_ns,
            link,
        });
    }
    Ok(())
}
