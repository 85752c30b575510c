//! Indented tree view of a topology, for `cxlvmm check`.

use std::fmt::{self, Display, Formatter, Write};

use super::{Attach, ElementRef, Topology, WindowMode};

/// Binary size for humans: "256 MiB", "1 GiB", "128 KiB", "0".
pub fn human_size(bytes: u64) -> String {
    const UNITS: [(&str, u32); 4] = [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)];
    for (name, shift) in UNITS {
        if bytes >= (1 << shift) && bytes.is_multiple_of(1 << shift) {
            return format!("{} {}", bytes >> shift, name);
        }
    }
    format!("{bytes} B")
}

impl Display for Topology {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "topology: {} host bridge(s), {} switch(es), {} type-3 device(s), {} accelerator(s), {} window(s)",
            self.host_bridges.len(),
            self.switches.len(),
            self.type3.len(),
            self.accelerators.len(),
            self.windows.len()
        )?;
        for (h, hb) in self.host_bridges.iter().enumerate() {
            writeln!(
                f,
                "{} host bridge (uid {}, {} root port(s), {} ns)",
                hb.id, hb.uid, hb.root_ports, hb.latency_ns
            )?;
            for p in 0..hb.root_ports {
                let last = p + 1 == hb.root_ports;
                let at = Attach::RootPort {
                    host_bridge: h,
                    port: p,
                };
                self.port(f, "", last, &format!("{}.rp{p} root port", hb.id), at)?;
            }
        }
        if !self.windows.is_empty() {
            writeln!(f, "windows:")?;
        }
        for w in &self.windows {
            let mut kinds = Vec::new();
            if w.restrictions.ram {
                kinds.push("ram");
            }
            if w.restrictions.pmem {
                kinds.push("pmem");
            }
            let targets: Vec<&str> = w
                .targets
                .iter()
                .map(|&t| self.host_bridges[t].id.as_str())
                .collect();
            write!(
                f,
                "  {}: {} {}, {}-way x {} B -> {}",
                w.id,
                human_size(w.size),
                kinds.join("+"),
                w.ways,
                w.granularity,
                targets.join(", ")
            )?;
            if let Some(b) = w.base {
                write!(f, " at {b:#x}")?;
            }
            if w.mode != WindowMode::Native {
                write!(f, " ({})", w.mode)?;
            }
            writeln!(f)?;
        }
        if self.windows.iter().any(|w| w.mode == WindowMode::Timed) {
            let c = &self.cpu_cache;
            if c.enabled {
                writeln!(
                    f,
                    "cpu cache: {}, {}-way, {} B lines, {} ns hit",
                    human_size(c.size),
                    c.ways,
                    c.line,
                    c.hit_latency_ns
                )?;
            } else {
                writeln!(f, "cpu cache: off")?;
            }
        }
        Ok(())
    }
}

impl Topology {
    fn port(
        &self,
        f: &mut Formatter<'_>,
        indent: &str,
        last: bool,
        label: &str,
        at: Attach,
    ) -> fmt::Result {
        let (branch, cont) = if last {
            ("└─ ", "   ")
        } else {
            ("├─ ", "│  ")
        };
        write!(f, "{indent}{branch}{label}")?;
        let Some(child) = self.child_at(at) else {
            return writeln!(f, " (empty)");
        };
        writeln!(f)?;
        let inner = format!("{indent}{cont}");
        let mut line = String::new();
        match child {
            ElementRef::Switch(s) => {
                let sw = &self.switches[s];
                let _ = write!(
                    line,
                    "{} switch ({} downstream port(s), {} ns) link {}",
                    sw.id, sw.downstream_ports, sw.latency_ns, sw.link
                );
                writeln!(f, "{inner}└─ {line}")?;
                let below = format!("{inner}   ");
                for p in 0..sw.downstream_ports {
                    let at = Attach::SwitchPort { switch: s, port: p };
                    let label = format!("{}.dp{p} downstream port", sw.id);
                    self.port(f, &below, p + 1 == sw.downstream_ports, &label, at)?;
                }
                Ok(())
            }
            ElementRef::Type3(d) => {
                let t = &self.type3[d];
                let _ = write!(
                    line,
                    "{} type-3 (ram {}, pmem {}, lsa {}, serial {:#x}) link {}",
                    t.id,
                    human_size(t.volatile),
                    human_size(t.persistent),
                    human_size(t.lsa),
                    t.serial,
                    t.link
                );
                if let Some(p) = &t.persistent_path {
                    let _ = write!(line, " backing {p}");
                }
                writeln!(f, "{inner}└─ {line}")
            }
            ElementRef::Accelerator(a) => {
                let acc = &self.accelerators[a];
                writeln!(
                    f,
                    "{inner}└─ {} accelerator (vram {}, {} queue(s), {} DMA engine(s), {} GFLOP/s) link {}",
                    acc.id,
                    human_size(acc.vram_size),
                    acc.queues,
                    acc.dma_engines,
                    acc.compute_gflops,
                    acc.link
                )
            }
            ElementRef::HostBridge(_) => Ok(()),
        }
    }
}
