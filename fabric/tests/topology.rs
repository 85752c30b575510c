//! Schema, validation and tree printing.

use fabric::topology::{Attach, ElementRef, ErrorKind, FlitMode, Topology, TopologyError};

fn example(name: &str) -> Topology {
    let path = format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("example file readable");
    match Topology::from_toml_str(&text) {
        Ok(t) => t,
        Err(e) => panic!("{path}: {e}"),
    }
}

#[test]
fn example_direct() {
    let t = example("direct.toml");
    assert_eq!(t.host_bridges.len(), 1);
    assert_eq!(t.host_bridges[0].root_ports, 1);
    assert!(t.switches.is_empty());
    assert_eq!(t.type3.len(), 1);
    let d = &t.type3[0];
    assert_eq!(
        d.attach,
        Attach::RootPort {
            host_bridge: 0,
            port: 0
        }
    );
    assert_eq!(d.volatile, 256 << 20);
    assert_eq!(d.persistent, 256 << 20);
    assert_eq!(d.lsa, 128 << 10);
    assert_eq!(d.serial, 0x1000);
    assert_eq!(t.windows.len(), 2);
    assert!(t.windows[0].restrictions.ram && !t.windows[0].restrictions.pmem);
    assert!(t.windows[1].restrictions.pmem && !t.windows[1].restrictions.ram);
}

#[test]
fn example_two_host_bridges() {
    let t = example("two-host-bridges.toml");
    assert_eq!(t.host_bridges.len(), 2);
    assert_eq!(t.type3.len(), 2);
    assert_eq!(t.host_bridge_of(ElementRef::Type3(1)), 1);
    let w = &t.windows[0];
    assert_eq!(w.ways, 2);
    assert_eq!(w.targets, vec![0, 1]);
    assert_eq!(w.size, 512 << 20);
    assert_eq!(w.granularity, 4096);
    // CFMWS encodings: ENIW 1 = 2 ways, HBIG 4 = 4096 B, restrictions b1|b2.
    assert_eq!(w.eniw(), 1);
    assert_eq!(w.hbig(), 4);
    assert_eq!(w.restriction_bits(), 0b0110);
}

#[test]
fn example_switch_4() {
    let t = example("switch-4.toml");
    assert_eq!(t.switches.len(), 1);
    assert_eq!(t.switches[0].downstream_ports, 4);
    assert_eq!(t.switches[0].link.width, 16);
    assert_eq!(t.type3.len(), 4);
    let vol = t.type3.iter().filter(|d| d.volatile > 0).count();
    let pm = t.type3.iter().filter(|d| d.persistent > 0).count();
    assert_eq!((vol, pm), (4, 2));
    assert_eq!(
        t.type3[2].persistent_path.as_deref(),
        Some("build/pmem0.img")
    );
    for (i, d) in t.type3.iter().enumerate() {
        assert_eq!(
            d.attach,
            Attach::SwitchPort {
                switch: 0,
                port: i as u32
            }
        );
    }
    assert_eq!(t.type3_under(0), vec![0, 1, 2, 3]);
    assert_eq!(t.windows.len(), 2);
}

#[test]
fn default_topology_shape() {
    let t = Topology::default_topology();
    assert_eq!(t.host_bridges.len(), 1);
    assert_eq!(t.switches.len(), 1);
    assert_eq!(
        t.switches[0].attach,
        Attach::RootPort {
            host_bridge: 0,
            port: 0
        }
    );
    assert_eq!(t.type3.len(), 2);
    assert_eq!(t.windows.len(), 1);
    // Defaults (docs/timing-sources.md): 90 ns switch, x8 Gen5 68B links.
    assert_eq!(t.switches[0].latency_ns, 90.0);
    let l = &t.type3[0].link;
    assert_eq!((l.gen, l.width, l.flit), (5, 8, FlitMode::Flit68));
}

#[test]
fn minimal_toml_gets_defaults() {
    let t = Topology::from_toml_str(
        "[[host_bridge]]\nid='h'\n[[type3]]\nid='m'\nport='h.rp0'\nvolatile=268435456\n",
    )
    .unwrap();
    assert_eq!(t.type3[0].serial, 1);
    assert_eq!(t.type3[0].lsa, 0);
    assert_eq!(t.type3[0].media.queue_depth, 48);
    assert_eq!(t.host_bridges[0].uid, 1, "default uid is index + 1");
}

#[test]
fn tree_printer_shows_every_element() {
    let t = example("switch-4.toml");
    let s = t.to_string();
    for needle in [
        "hb0 host bridge",
        "hb0.rp0 root port",
        "sw0 switch (4 downstream port(s), 90 ns)",
        "sw0.dp3 downstream port",
        "pmem1 type-3 (ram 256 MiB, pmem 256 MiB, lsa 128 KiB, serial 0x3003)",
        "ram: 1 GiB ram, 1-way x 4096 B -> hb0",
    ] {
        assert!(s.contains(needle), "missing {needle:?} in\n{s}");
    }
    // Devices are indented below their switch port.
    let dev = s.lines().find(|l| l.contains("ram0 type-3")).unwrap();
    let sw = s.lines().find(|l| l.contains("sw0 switch")).unwrap();
    let indent = |l: &str| l.chars().take_while(|c| !c.is_alphanumeric()).count();
    assert!(indent(dev) > indent(sw));
}

const BASE: &str = r#"
[[host_bridge]]
id = "hb0"
root_ports = 2

[[switch]]
id = "sw0"
port = "hb0.rp0"
downstream_ports = 2

[[type3]]
id = "mem0"
port = "sw0.dp0"
volatile = "256M"
serial = 1

[[window]]
targets = ["hb0"]
size = "256M"
"#;

fn err(extra: &str) -> TopologyError {
    match Topology::from_toml_str(&format!("{BASE}\n{extra}")) {
        Ok(_) => panic!("accepted:\n{extra}"),
        Err(e) => e,
    }
}

fn err_replace(from: &str, to: &str) -> TopologyError {
    let text = BASE.replacen(from, to, 1);
    assert_ne!(text, BASE, "pattern {from:?} not in base");
    match Topology::from_toml_str(&text) {
        Ok(_) => panic!("accepted with {to:?}"),
        Err(e) => e,
    }
}

#[test]
fn base_is_valid() {
    Topology::from_toml_str(BASE).unwrap();
}

#[test]
fn rejects_unknown_id() {
    let e = err("[[type3]]\nid='m1'\nport='sw9.dp0'\nvolatile='256M'\nserial=2");
    assert_eq!(e.kind, ErrorKind::UnknownId);
    assert_eq!(e.key, "type3[1].port");
    assert_eq!(e.value, "\"sw9.dp0\"");
    let e = err("[[window]]\ntargets=['hb7']\nsize='256M'");
    assert_eq!(
        (e.key.as_str(), e.kind),
        ("window[1].targets[0]", ErrorKind::UnknownId)
    );
}

#[test]
fn rejects_port_overflow_and_reuse() {
    let e = err("[[type3]]\nid='m1'\nport='sw0.dp2'\nvolatile='256M'\nserial=2");
    assert_eq!(e.kind, ErrorKind::PortOverflow("sw0".into(), 2));
    assert_eq!(e.key, "type3[1].port");
    let e = err("[[type3]]\nid='m1'\nport='hb0.rp2'\nvolatile='256M'\nserial=2");
    assert_eq!(e.kind, ErrorKind::PortOverflow("hb0".into(), 2));
    let e = err("[[type3]]\nid='m1'\nport='sw0.dp0'\nvolatile='256M'\nserial=2");
    assert_eq!(e.kind, ErrorKind::PortInUse("mem0".into()));
    let e = err_replace("downstream_ports = 2", "downstream_ports = 33");
    assert_eq!(e.key, "switch[0].downstream_ports");
}

#[test]
fn rejects_port_references_with_multibyte_characters() {
    // Found by the topology fuzz target: the port kind was cut at byte 2,
    // inside the 'é'.
    for port in ["sw0.dé1", "sw0.é", "hb0.ŗp0", "é"] {
        let e = err(&format!(
            "[[type3]]\nid='m1'\nport='{port}'\nvolatile='256M'\nserial=2"
        ));
        assert_eq!(e.kind, ErrorKind::BadPortRef, "{port}: {e}");
        assert_eq!(e.key, "type3[1].port");
    }
}

#[test]
fn rejects_cycle() {
    let e = err(
        "[[switch]]\nid='a'\nport='b.dp0'\ndownstream_ports=1\n[[switch]]\nid='b'\nport='a.dp0'\ndownstream_ports=1",
    );
    assert!(
        matches!(e.kind, ErrorKind::Cycle(ref s) if s.contains("a -> b -> a")),
        "{e}"
    );
    assert_eq!(e.key, "switch[1].port");
    // A switch plugged into itself.
    let e = err("[[switch]]\nid='c'\nport='c.dp0'\ndownstream_ports=1");
    assert!(matches!(e.kind, ErrorKind::Cycle(_)), "{e}");
}

#[test]
fn rejects_misaligned_sizes() {
    let e = err_replace("volatile = \"256M\"", "volatile = \"300M\"");
    assert_eq!(
        (e.key.as_str(), e.kind.clone()),
        ("type3[0].volatile", ErrorKind::NotAligned)
    );
    assert_eq!(e.value, "\"300M\"");
    let e = err_replace("size = \"256M\"", "size = 1000");
    assert_eq!(
        (e.key.as_str(), e.kind),
        ("window[0].size", ErrorKind::NotAligned)
    );
    let e = err_replace("volatile = \"256M\"", "volatile = -268435456");
    assert_eq!(e.kind, ErrorKind::Negative);
}

#[test]
fn rejects_bad_interleave() {
    let e = err("[[window]]\ntargets=['hb0']\nsize='256M'\ngranularity=128");
    assert_eq!(
        (e.key.as_str(), e.kind),
        ("window[1].granularity", ErrorKind::UnsupportedGranularity)
    );
    let e = err("[[window]]\ntargets=['hb0']\nsize='256M'\ngranularity=32768");
    assert_eq!(e.kind, ErrorKind::UnsupportedGranularity);
    let e = err("[[window]]\ntargets=['hb0']\nsize='256M'\ngranularity=768");
    assert_eq!(e.kind, ErrorKind::UnsupportedGranularity);
    let e = err("[[window]]\ntargets=['hb0']\nsize='256M'\nways=5");
    assert_eq!(
        (e.key.as_str(), e.value.as_str(), e.kind),
        ("window[1].ways", "5", ErrorKind::UnsupportedWays)
    );
    let e = err("[[window]]\ntargets=['hb0']\nsize='256M'\nways=2");
    assert_eq!(e.kind, ErrorKind::WaysMismatch(2, 1));
    // 5 distinct host bridges = 5 ways, which CFMWS cannot encode.
    let mut hbs = String::new();
    for i in 1..=4 {
        hbs.push_str(&format!("[[host_bridge]]\nid='x{i}'\n"));
    }
    let e = err(&format!(
        "{hbs}[[window]]\ntargets=['hb0','x1','x2','x3','x4']\nsize='1280M'"
    ));
    assert_eq!(
        (e.key.as_str(), e.kind),
        ("window[1].targets", ErrorKind::UnsupportedWays)
    );
}

#[test]
fn rejects_duplicates() {
    let e = err("[[type3]]\nid='m1'\nport='hb0.rp1'\nvolatile='256M'\nserial=1");
    assert_eq!(
        (e.key.as_str(), e.kind),
        ("type3[1].serial", ErrorKind::DuplicateSerial("mem0".into()))
    );
    let e = err("[[type3]]\nid='mem0'\nport='hb0.rp1'\nvolatile='256M'\nserial=2");
    assert_eq!(
        (e.key.as_str(), e.kind),
        ("type3[1].id", ErrorKind::DuplicateId)
    );
}

#[test]
fn rejects_bad_links() {
    let e = err_replace("serial = 1", "serial = 1\nlink = { gen = 7 }");
    assert_eq!(
        (e.key.as_str(), e.value.as_str(), e.kind),
        ("type3[0].link.gen", "7", ErrorKind::UnsupportedGen)
    );
    let e = err_replace("serial = 1", "serial = 1\nlink = { width = 3 }");
    assert_eq!(
        (e.key.as_str(), e.kind),
        ("type3[0].link.width", ErrorKind::UnsupportedWidth)
    );
    let e = err_replace("serial = 1", "serial = 1\nlink = { width = 32 }");
    assert_eq!(e.kind, ErrorKind::UnsupportedWidth);
    let e = err_replace(
        "serial = 1",
        "serial = 1\nlink = { gen = 6, flit = \"68B\" }",
    );
    assert_eq!(e.key, "type3[0].link.flit");
    assert_eq!(e.kind, ErrorKind::FlitModeVsGen("68B".into(), 6));
    let e = err_replace(
        "serial = 1",
        "serial = 1\nlink = { gen = 2, flit = \"256B\" }",
    );
    assert_eq!(e.kind, ErrorKind::FlitModeVsGen("256B".into(), 2));
    let e = err_replace("serial = 1", "serial = 1\nlink = { flit = \"none\" }");
    assert_eq!(
        (e.key.as_str(), e.kind),
        ("type3[0].link.flit", ErrorKind::NeedsFlits)
    );
    let e = err_replace("serial = 1", "serial = 1\nlink = { flit = \"72B\" }");
    assert_eq!(e.kind, ErrorKind::UnknownFlitMode);
    // Gen 6 alone picks the 256B flit default instead of failing.
    let t =
        Topology::from_toml_str(&BASE.replacen("serial = 1", "serial = 1\nlink = { gen = 6 }", 1))
            .unwrap();
    assert_eq!(t.type3[0].link.flit, FlitMode::Flit256);
}

#[test]
fn rejects_bad_bandwidth_and_latency() {
    let e = err_replace(
        "serial = 1",
        "serial = 1\nmedia = { read_bandwidth_gbps = 0 }",
    );
    assert_eq!(
        (e.key.as_str(), e.value.as_str(), e.kind),
        (
            "type3[0].media.read_bandwidth_gbps",
            "0",
            ErrorKind::NotPositive
        )
    );
    let e = err_replace(
        "serial = 1",
        "serial = 1\nmedia = { write_bandwidth_gbps = -3.5 }",
    );
    assert_eq!((e.value.as_str(), e.kind), ("-3.5", ErrorKind::NotPositive));
    let e = err("[fabric]\nhost_memory_bandwidth_gbps = -1");
    assert_eq!(e.key, "fabric.host_memory_bandwidth_gbps");
    let e = err_replace(
        "downstream_ports = 2",
        "downstream_ports = 2\nlatency_ns = -90",
    );
    assert_eq!(
        (e.key.as_str(), e.kind),
        ("switch[0].latency_ns", ErrorKind::Negative)
    );
    let e = err("[fabric.link]\nber = nan");
    assert_eq!(e.kind, ErrorKind::NotFinite);
}

#[test]
fn rejects_syntax_and_unknown_keys_with_location() {
    let e = Topology::from_toml_str("[[host_bridge]]\nid='h'\nrootports=2\n").unwrap_err();
    assert!(
        matches!(e.kind, ErrorKind::Syntax(ref m) if m.contains("rootports")),
        "{e}"
    );
    assert_eq!(e.value, "line 3, column 1");
    let e = Topology::from_toml_str("").unwrap_err();
    assert_eq!(e.kind, ErrorKind::NoHostBridge);
}

#[test]
fn error_message_names_key_and_value() {
    let e = err("[[window]]\ntargets=['hb0']\nsize='256M'\ngranularity=100");
    let msg = e.to_string();
    assert!(msg.starts_with("window[1].granularity = 100: "), "{msg}");
}

#[test]
fn example_accelerators() {
    let t = example("accelerators.toml");
    assert_eq!(t.accelerators.len(), 3);
    let a = &t.accelerators[0];
    assert_eq!(
        (a.vram_size, a.queues, a.dma_engines, a.compute_gflops),
        (64 << 20, 4, 2, 1000.0)
    );
    let s = t.to_string();
    assert!(
        s.contains("gpu0 accelerator (vram 64 MiB, 4 queue(s), 2 DMA engine(s), 1000 GFLOP/s) link gen4 x16 none"),
        "{s}"
    );
}

#[test]
fn accelerator_defaults_and_old_bar_size_key() {
    let acc = "[[accelerator]]\nid = 'g'\nport = 'hb0.rp1'\n";
    let t = Topology::from_toml_str(&format!("{BASE}\n{acc}")).unwrap();
    let a = &t.accelerators[0];
    assert_eq!(
        (a.vram_size, a.queues, a.dma_engines, a.compute_gflops),
        (256 << 20, 4, 2, 1000.0)
    );
    let t = Topology::from_toml_str(&format!("{BASE}\n{acc}bar_size = '32M'\n")).unwrap();
    assert_eq!(t.accelerators[0].vram_size, 32 << 20);
}

#[test]
fn rejects_bad_accelerators_naming_the_key() {
    let acc = "[[accelerator]]\nid = 'g'\nport = 'hb0.rp1'\n";
    let bad = |line: &str| err(&format!("{acc}{line}"));
    for (line, key, value) in [
        ("vram = '1M'", "accelerator[0].vram", "1048576"),
        ("vram = '96M'", "accelerator[0].vram", "100663296"),
        ("vram = '128G'", "accelerator[0].vram", "137438953472"),
        ("bar_size = '3M'", "accelerator[0].vram", "3145728"),
    ] {
        let e = bad(line);
        assert_eq!((e.key.as_str(), e.value.as_str()), (key, value), "{line}");
        assert!(matches!(e.kind, ErrorKind::OutOfRange(_)), "{line}: {e}");
        assert!(e.to_string().contains("power of two from 2 MiB"), "{e}");
    }
    let e = bad("vram = 'lots'");
    assert_eq!(
        (e.key.as_str(), e.kind),
        ("accelerator[0].vram", ErrorKind::BadSize)
    );
    let e = bad("queues = 0");
    assert_eq!(
        (e.key.as_str(), e.kind),
        ("accelerator[0].queues", ErrorKind::NotPositive)
    );
    let e = bad("queues = 9");
    assert_eq!(
        e.to_string(),
        "accelerator[0].queues = 9: out of range: 1 to 8"
    );
    let e = bad("dma_engines = 17");
    assert_eq!(
        e.to_string(),
        "accelerator[0].dma_engines = 17: out of range: 1 to 16"
    );
    let e = bad("compute_gflops = 0");
    assert_eq!(
        (e.key.as_str(), e.kind),
        ("accelerator[0].compute_gflops", ErrorKind::NotPositive)
    );
    let e = bad("compute_gflops = inf");
    assert_eq!(e.kind, ErrorKind::NotFinite);
    let e = bad("vram = '64M'\nbar_size = '64M'");
    assert!(matches!(e.kind, ErrorKind::Syntax(_)), "both names: {e}");
}

#[test]
fn capacities_and_windows_must_fit_the_guest_address_space() {
    use fabric::topology::AddressLimits;
    // 1024 TiB is beyond 46 bits (64 TiB).
    let e = err_replace("volatile = \"256M\"", "volatile = \"1048576G\"");
    assert_eq!(e.key, "type3[0].volatile");
    assert_eq!(e.value, "\"1048576G\"");
    assert!(matches!(e.kind, ErrorKind::BeyondAddressSpace(_)), "{e}");
    assert!(e.to_string().contains("46-bit"), "{e}");
    // The persistent part is named when it is what breaks the limit.
    let e = err_replace(
        "volatile = \"256M\"",
        "volatile = \"40T\"\npersistent = \"40T\"",
    );
    assert_eq!(e.key, "type3[0].persistent");
    // One window too large, then windows that only together are.
    let e = err("[[window]]\ntargets=['hb0']\nsize='64T'");
    assert_eq!(
        (e.key.as_str(), e.value.as_str()),
        ("window[1].size", "\"64T\"")
    );
    let e = err("[[window]]\ntargets=['hb0']\nsize='40T'\n[[window]]\ntargets=['hb0']\nsize='40T'");
    assert_eq!(e.key, "window[2].size");
    assert!(e.to_string().contains("windows up to this one need"), "{e}");
    // A fixed base whose window ends past the top.
    let e = err("[[window]]\ntargets=['hb0']\nsize='2G'\nbase='65535G'");
    assert_eq!(e.key, "window[1].base");
    assert!(matches!(e.kind, ErrorKind::BeyondAddressSpace(_)), "{e}");
    // The same file fits a machine with more address bits, and the limit
    // is the one the caller gives.
    let big = BASE.replacen("volatile = \"256M\"", "volatile = \"1048576G\"", 1);
    let t = Topology::from_toml_str_for(&big, AddressLimits { phys_addr_bits: 52 }).unwrap();
    assert_eq!(t.type3[0].volatile, 1 << 50);
    assert_eq!(t.limits.phys_addr_bits, 52);
    let e = Topology::from_toml_str_for(BASE, AddressLimits { phys_addr_bits: 32 }).unwrap_err();
    assert_eq!(e.key, "type3[0].volatile", "no room at all above 4 GiB");
}
