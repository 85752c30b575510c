//! Schema of timed memory: `[[window]] mode` and `[cpu_cache]`.

use fabric::topology::{CpuCacheParams, ErrorKind, Topology, WindowMode};

const BASE: &str = r#"
[[host_bridge]]
id = "hb0"

[[type3]]
id = "mem0"
port = "hb0.rp0"
volatile = "256M"

[[window]]
targets = ["hb0"]
size = "256M"
"#;

fn parse(extra_window: &str, extra: &str) -> Result<Topology, String> {
    Topology::from_toml_str(&format!("{extra}\n{BASE}{extra_window}\n")).map_err(|e| e.to_string())
}

#[test]
fn window_mode_defaults_to_native_and_parses_each_mode() {
    let t = parse("", "").unwrap();
    assert_eq!(t.windows[0].mode, WindowMode::Native);
    for (s, m) in [
        ("native", WindowMode::Native),
        ("trapped", WindowMode::Trapped),
        ("timed", WindowMode::Timed),
    ] {
        let t = parse(&format!("mode = \"{s}\""), "").unwrap();
        assert_eq!(t.windows[0].mode, m);
        assert_eq!(m.as_str(), s);
        assert_eq!(WindowMode::parse(s), Some(m));
    }
}

#[test]
fn unknown_window_mode_names_the_key() {
    let e = parse("mode = \"fast\"", "").unwrap_err();
    assert_eq!(
        e,
        "window[0].mode = \"fast\": unknown memory mode (native, trapped, timed)"
    );
    let e = Topology::from_toml_str(&format!("{BASE}mode = \"Timed\"\n")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::UnknownMemoryMode);
    // A wrong type is a schema error with its place.
    let e = parse("mode = 3", "").unwrap_err();
    assert!(e.contains("line"), "{e}");
}

#[test]
fn cpu_cache_defaults_and_overrides() {
    let t = parse("", "").unwrap();
    assert_eq!(t.cpu_cache, CpuCacheParams::default());
    assert_eq!(t.cpu_cache.sets(), 1024);
    let t = parse(
        "",
        "[cpu_cache]\nsize = \"8M\"\nways = 8\nline = 128\nhit_latency_ns = 35.5\nenabled = false",
    )
    .unwrap();
    assert_eq!(
        t.cpu_cache,
        CpuCacheParams {
            enabled: false,
            size: 8 << 20,
            ways: 8,
            line: 128,
            hit_latency_ns: 35.5,
        }
    );
    // 12 ways x 64 B x 1024 sets: a non-power-of-two way count is fine.
    let t = parse("", "[cpu_cache]\nsize = 786432\nways = 12").unwrap();
    assert_eq!(t.cpu_cache.sets(), 1024);
}

#[test]
fn cpu_cache_errors_name_the_key() {
    let cases = [
        ("ways = 0", "cpu_cache.ways = 0: out of range: 1 to 64"),
        ("ways = 65", "cpu_cache.ways = 65: out of range: 1 to 64"),
        (
            "line = 32",
            "cpu_cache.line = 32: out of range: 64, 128 or 256 (at most the smallest interleave granularity)",
        ),
        (
            "line = 4096",
            "cpu_cache.line = 4096: out of range: 64, 128 or 256 (at most the smallest interleave granularity)",
        ),
        ("size = 0", "cpu_cache.size = 0: out of range: 1 line to 256 MiB"),
        (
            "size = \"1G\"",
            "cpu_cache.size = \"1G\": out of range: 1 line to 256 MiB",
        ),
        ("size = -1", "cpu_cache.size = -1: must not be negative"),
        (
            "size = \"3M\"",
            "cpu_cache.size = \"3M\": out of range: must be 16 ways x 64 B x a power-of-two number of sets",
        ),
        (
            "ways = 3",
            "cpu_cache.ways = 3: out of range: must be 3 ways x 64 B x a power-of-two number of sets",
        ),
        (
            "hit_latency_ns = -1.0",
            "cpu_cache.hit_latency_ns = -1: must not be negative",
        ),
        (
            "hit_latency_ns = nan",
            "cpu_cache.hit_latency_ns = NaN: must be a finite number",
        ),
    ];
    for (line, want) in cases {
        let e = parse("", &format!("[cpu_cache]\n{line}")).unwrap_err();
        assert_eq!(e, want, "for {line}");
    }
    let e = parse("", "[cpu_cache]\nassoc = 4").unwrap_err();
    assert!(e.contains("unknown field `assoc`"), "{e}");
    let e = parse("", "[cpu_cache]\nenabled = \"no\"").unwrap_err();
    assert!(e.starts_with("(toml) = line"), "{e}");
}

#[test]
fn tree_shows_modes_and_the_cache_when_timed() {
    let t = parse("mode = \"timed\"", "[cpu_cache]\nsize = \"2M\"").unwrap();
    let s = t.to_string();
    assert!(
        s.contains("w0: 256 MiB ram, 1-way x 4096 B -> hb0 (timed)"),
        "{s}"
    );
    assert!(
        s.contains("cpu cache: 2 MiB, 16-way, 64 B lines, 20 ns hit"),
        "{s}"
    );
    let s = parse("", "").unwrap().to_string();
    assert!(!s.contains("cpu cache") && !s.contains("(native)"), "{s}");
}
