//! The topology parser and validator, then everything the VMM derives from
//! an accepted topology: the tree print, window placement, the CXL plan
//! and the guest memory map for small and large RAM, CEDT/SRAT/HMAT and
//! the model's path performance. Input is either raw TOML or a topology
//! generated from the bytes (so that most inputs get past the parser).
//! Whatever validation accepts must plan into a disjoint guest map or be
//! refused with an error, never panic.

use fabric::topology::{AddressLimits, Topology};
use vmm::cxl::plan::plan;
use vmm::layout::{CXL_MMIO32_END, CXL_MMIO32_START};
use vmm::memory::ram_end;

use crate::input::Input;

/// A topology in TOML built from the input: a few host bridges, switches,
/// devices and windows with values around the interesting edges.
fn generated(input: &mut Input) -> String {
    let mut t = String::new();
    let hbs = input.range(0, 4);
    for h in 0..hbs {
        t += &format!(
            "[[host_bridge]]\nid = \"hb{h}\"\nroot_ports = {}\n",
            input.pick(&[1i64, 2, 4, 0, 33, -1])
        );
    }
    let switches = input.range(0, 3);
    for s in 0..switches {
        let port = if s > 0 && input.bool() {
            format!("sw{}.dp{}", input.range(0, s), input.range(0, 4))
        } else {
            format!("hb{}.rp{}", input.range(0, hbs), input.range(0, 3))
        };
        t += &format!(
            "[[switch]]\nid = \"sw{s}\"\nport = \"{port}\"\ndownstream_ports = {}\n",
            input.pick(&[1i64, 2, 4, 8, 0, 40])
        );
    }
    let sizes = [
        "0", "256M", "512M", "1G", "300M", "64T", "1024T", "-1", "4G",
    ];
    for d in 0..input.range(0, 6) {
        let port = if switches > 0 && input.bool() {
            format!("sw{}.dp{}", input.range(0, switches - 1), input.range(0, 8))
        } else {
            format!("hb{}.rp{}", input.range(0, hbs), input.range(0, 3))
        };
        t += &format!(
            "[[type3]]\nid = \"m{d}\"\nport = \"{port}\"\nvolatile = \"{}\"\npersistent = \"{}\"\n",
            input.pick(&sizes),
            input.pick(&sizes)
        );
        if input.bool() {
            t += &format!(
                "link = {{ gen = {}, width = {} }}\n",
                input.range(0, 7),
                input.pick(&[1, 2, 4, 8, 16, 3])
            );
        }
    }
    for w in 0..input.range(0, 4) {
        let ways = input.pick(&[1u64, 2, 3, 4, 5]);
        let targets: Vec<String> = (0..ways)
            .map(|_| format!("\"hb{}\"", input.range(0, hbs)))
            .collect();
        t += &format!(
            "[[window]]\nid = \"w{w}\"\ntargets = [{}]\nsize = \"{}\"\ngranularity = {}\nrestrictions = [\"{}\"]\n",
            targets.join(", "),
            input.pick(&["256M", "512M", "768M", "1G", "3G", "40T", "100M"]),
            input.pick(&[256, 4096, 16384, 100, 32768]),
            input.pick(&["ram", "pmem", "x"])
        );
        if input.range(0, 3) == 0 {
            t += &format!(
                "base = \"{}\"\n",
                input.pick(&["4G", "32G", "3G", "60T", "1T"])
            );
        }
        if input.bool() {
            t += &format!("qtg = {}\n", input.range(0, 3));
        }
    }
    t
}

pub fn fuzz_topology(data: &[u8]) {
    let (text, bits) = match data.split_first() {
        Some((&b, rest)) if b & 1 == 0 => (
            String::from_utf8_lossy(rest).into_owned(),
            36 + (b >> 1) % 17,
        ),
        _ => {
            let mut input = Input::new(data.get(1..).unwrap_or(&[]));
            let bits = 36 + (input.u8() % 17);
            (generated(&mut input), bits)
        }
    };
    let limits = AddressLimits {
        phys_addr_bits: bits,
    };
    let Ok(topo) = Topology::from_toml_str_for(&text, limits) else {
        return;
    };
    let _ = topo.to_string();
    for (i, _) in topo.type3.iter().enumerate() {
        let _ = fabric::hmat::path_performance(&topo, i);
    }
    let _ = vmm::cxl::acpi::hmat(&topo);
    for mem in [256u64 << 20, 6 << 30] {
        let Ok(p) = plan(&topo, (CXL_MMIO32_START, CXL_MMIO32_END), ram_end(mem)) else {
            continue;
        };
        if let Err(e) = vmm::guest_map::guest_map(mem, Some((&topo, &p))) {
            panic!("a planned topology overlaps: {e}\n{text}");
        }
        for w in &p.windows {
            assert!(w.base >= 1 << 32 && w.base >= ram_end(mem), "{text}");
            assert!(w.base + w.size <= limits.address_space_end(), "{text}");
        }
        let _ = vmm::cxl::acpi::cedt(&topo, &p);
        let _ = vmm::cxl::acpi::dsdt_objects(&topo, &p);
    }
}
