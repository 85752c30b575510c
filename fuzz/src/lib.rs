//! Fuzz targets for every surface a guest (or a topology file) can reach,
//! each a plain `fn(&[u8])` that must never panic on any input and checks
//! the invariants its device promises. The same functions are driven by
//! libFuzzer (`fuzz/libfuzzer`, nightly, coverage-guided) and, on stable
//! Rust, by [`runner`]: corpus files, then seeded random and mutated inputs
//! (`fuzz-run`, and `cargo test -p cxlvmm-fuzz` in CI). `docs/fuzzing.md`
//! says how to run them and what a campaign found.

pub mod input;
pub mod runner;
pub mod targets;

/// A fuzz target: its name (also its corpus directory) and entry point.
#[derive(Clone, Copy)]
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

/// Every target, in the order `fuzz-run all` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "type3_mailbox",
        run: targets::mailbox::fuzz_type3_mailbox,
    },
    Target {
        name: "hdm_decoders",
        run: targets::hdm::fuzz_hdm_decoders,
    },
    Target {
        name: "component_registers",
        run: targets::component::fuzz_component_registers,
    },
    Target {
        name: "doe_cdat",
        run: targets::doe::fuzz_doe_cdat,
    },
    Target {
        name: "config_space",
        run: targets::config_space::fuzz_config_space,
    },
    Target {
        name: "msix_table",
        run: targets::msix::fuzz_msix_table,
    },
    Target {
        name: "legacy_devices",
        run: targets::legacy::fuzz_legacy_devices,
    },
    Target {
        name: "topology",
        run: targets::topology::fuzz_topology,
    },
    Target {
        name: "virtio_blk",
        run: targets::virtio_blk::fuzz_virtio_blk,
    },
    Target {
        name: "accel_queue",
        run: targets::accel_queue::fuzz_accel_queue,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().copied().find(|t| t.name == name)
}
