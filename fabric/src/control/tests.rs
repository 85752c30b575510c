use super::*;
use crate::Topology;

fn topo() -> Topology {
    Topology::from_toml_str(
        r#"
        [[host_bridge]]
        id = "hb0"
        [[switch]]
        id = "sw0"
        port = "hb0.rp0"
        [[type3]]
        id = "mem0"
        port = "sw0.dp0"
        volatile = "256M"
        [[type3]]
        id = "pmem0"
        port = "sw0.dp1"
        persistent = "256M"
        [[window]]
        targets = ["hb0"]
        size = "256M"
        mode = "timed"
        "#,
    )
    .unwrap()
}

fn ok(line: &str) -> ApiRequest {
    parse_request(line, &topo()).unwrap_or_else(|e| panic!("{line}: {e}"))
}

/// The error's field and message.
fn err(line: &str) -> (Option<String>, String) {
    match parse_request(line, &topo()) {
        Ok(r) => panic!("accepted {line}: {r:?}"),
        Err(e) => (e.field, e.message),
    }
}

fn field(f: &str) -> Option<String> {
    Some(f.to_string())
}

#[test]
fn parses_every_command() {
    assert_eq!(
        ok(r#"{"cmd":"get","id":"sw0","key":"latency_ns"}"#),
        ApiRequest::Get {
            id: "sw0".into(),
            key: Some("latency_ns".into())
        }
    );
    assert_eq!(
        ok(r#"{"cmd":"get","id":"cpu_cache"}"#),
        ApiRequest::Get {
            id: "cpu_cache".into(),
            key: None
        }
    );
    assert_eq!(
        ok(r#"{"cmd":"set","id":"sw0","key":"latency_ns","value":5000}"#),
        ApiRequest::Set {
            id: "sw0".into(),
            key: "latency_ns".into(),
            value: ParamValue::Int(5000)
        }
    );
    assert_eq!(
        ok(r#"{"cmd":"set","id":"mem0","key":"link.flit","value":"256B"}"#),
        ApiRequest::Set {
            id: "mem0".into(),
            key: "link.flit".into(),
            value: ParamValue::Text("256B".into())
        }
    );
    assert_eq!(
        ok(r#"{"cmd":"set","id":"fabric","key":"rc_p2p_bandwidth_gbps","value":null}"#),
        ApiRequest::Set {
            id: "fabric".into(),
            key: "rc_p2p_bandwidth_gbps".into(),
            value: ParamValue::Null
        }
    );
    assert_eq!(ok(r#"{"cmd":"stats"}"#), ApiRequest::Stats);
    assert_eq!(ok(r#" {"cmd":"topology"} "#), ApiRequest::Topology);
    assert_eq!(
        ok(r#"{"cmd":"inject-poison","device":"pmem0","dpa":"0x1000","length":256}"#),
        ApiRequest::InjectPoison {
            device: 1,
            dpa: 0x1000,
            length: 256
        }
    );
    assert_eq!(
        ok(r#"{"cmd":"inject-poison","device":"mem0","dpa":4096}"#),
        ApiRequest::InjectPoison {
            device: 0,
            dpa: 4096,
            length: 64
        }
    );
    assert_eq!(
        ok(r#"{"cmd":"clear-poison","device":"mem0","dpa":"64"}"#),
        ApiRequest::ClearPoison { device: 0, dpa: 64 }
    );
    for k in EventKind::ALL {
        assert_eq!(
            ok(&format!(
                r#"{{"cmd":"inject-event","device":"mem0","kind":"{}"}}"#,
                k.as_str()
            )),
            ApiRequest::InjectEvent { device: 0, kind: k }
        );
    }
}

#[test]
fn malformed_and_oversized_lines() {
    let (f, m) = err(r#"{"cmd":"stats""#);
    assert_eq!(f, None);
    assert!(
        m.starts_with("malformed JSON: EOF while parsing an object"),
        "{m}"
    );
    let (f, m) = err("");
    assert_eq!(f, None);
    assert!(m.starts_with("malformed JSON"), "{m}");
    let (f, m) = err(r#"["stats"]"#);
    assert_eq!(
        (f, m.as_str()),
        (None, r#"a request is a JSON object, not ["stats"]"#)
    );
    let long = format!(
        r#"{{"cmd":"stats","pad":"{}"}}"#,
        "x".repeat(MAX_REQUEST_BYTES)
    );
    let (f, m) = err(&long);
    assert_eq!(f, None);
    assert_eq!(
        m,
        format!(
            "request is {} bytes, more than the limit of 65536",
            long.len()
        )
    );
    // Numbers JSON cannot hold are malformed, not a value.
    let (f, m) = err(r#"{"cmd":"set","id":"sw0","key":"latency_ns","value":1e999}"#);
    assert_eq!(f, None);
    assert!(m.starts_with("malformed JSON"), "{m}");
}

#[test]
fn command_errors() {
    let cmds = "get, set, stats, topology, inject-poison, clear-poison, inject-event";
    assert_eq!(
        err(r#"{"id":"sw0"}"#),
        (field("cmd"), format!("cmd: missing (commands: {cmds})"))
    );
    assert_eq!(
        err(r#"{"cmd":"reboot"}"#),
        (
            field("cmd"),
            format!("cmd = \"reboot\": unknown command (commands: {cmds})")
        )
    );
    assert_eq!(
        err(r#"{"cmd":5}"#),
        (
            field("cmd"),
            format!("cmd = 5: expected a string (commands: {cmds})")
        )
    );
    assert_eq!(
        err(r#"{"cmd":"set","id":"sw0","key":"latency_ns","vaule":5}"#),
        (
            field("vaule"),
            "vaule: unknown field for set (fields: cmd, id, key, value)".into()
        )
    );
    assert_eq!(
        err(r#"{"cmd":"stats","id":"sw0"}"#),
        (
            field("id"),
            "id: unknown field for stats (fields: cmd)".into()
        )
    );
}

#[test]
fn get_and_set_errors() {
    let ids = "hb0, sw0, mem0, pmem0, fabric, cpu_cache";
    assert_eq!(
        err(r#"{"cmd":"get","id":"sw9","key":"latency_ns"}"#),
        (
            field("id"),
            format!("no element or table with id \"sw9\" (ids: {ids})")
        )
    );
    assert_eq!(
        err(r#"{"cmd":"get","id":"sw9"}"#).0,
        field("id"),
        "get without a key checks the id too"
    );
    let (f, m) = err(r#"{"cmd":"get","id":"sw0","key":"latency"}"#);
    assert_eq!(f, field("key"));
    assert!(
        m.starts_with("sw0.latency: unknown key for a switch (keys: latency_ns, link.gen,"),
        "{m}"
    );
    assert_eq!(
        err(r#"{"cmd":"get","id":7,"key":"latency_ns"}"#),
        (field("id"), "id = 7: expected a string".into())
    );
    assert_eq!(
        err(r#"{"cmd":"get","key":"latency_ns"}"#),
        (field("id"), "id: missing".into())
    );
    assert_eq!(
        err(r#"{"cmd":"set","id":"sw0","key":"latency_ns"}"#),
        (field("value"), "value: missing".into())
    );
    assert_eq!(
        err(r#"{"cmd":"set","id":"sw0","key":"latency_ns","value":-5}"#),
        (
            field("value"),
            "sw0.latency_ns = -5: must not be negative".into()
        )
    );
    assert_eq!(
        err(r#"{"cmd":"set","id":"sw0","key":"latency_ns","value":1e12}"#),
        (
            field("value"),
            "sw0.latency_ns = 1000000000000: out of range: at most 1e9 ns".into()
        )
    );
    assert_eq!(
        err(r#"{"cmd":"set","id":"mem0","key":"link.gen","value":"five"}"#),
        (
            field("value"),
            "mem0.link.gen = \"five\": expected an integer".into()
        )
    );
    assert_eq!(
        err(r#"{"cmd":"set","id":"mem0","key":"link.width","value":[8]}"#),
        (
            field("value"),
            "value = [8]: expected a number, string, boolean or null".into()
        )
    );
    assert_eq!(
        err(r#"{"cmd":"set","id":"mem0","key":"media.queue_depth","value":18446744073709551615}"#),
        (
            field("value"),
            "mem0.media.queue_depth = 18446744073709552000: expected an integer".into()
        )
    );
    assert_eq!(
        err(r#"{"cmd":"set","id":"cpu_cache","key":"size","value":"3M"}"#),
        (
            field("value"),
            "cpu_cache.size = \"3M\": out of range: must be 16 ways x 64 B x a power-of-two number of sets".into()
        )
    );
}

#[test]
fn device_command_errors() {
    assert_eq!(
        err(r#"{"cmd":"inject-poison","device":"mem9","dpa":0}"#),
        (
            field("device"),
            "device = \"mem9\": no such type-3 device (type-3 devices: mem0, pmem0)".into()
        )
    );
    assert_eq!(
        err(r#"{"cmd":"inject-poison","device":"sw0","dpa":0}"#).0,
        field("device"),
        "a switch is not a type-3 device"
    );
    assert_eq!(
        err(r#"{"cmd":"inject-poison","device":"mem0"}"#),
        (field("dpa"), "dpa: missing".into())
    );
    assert_eq!(
        err(r#"{"cmd":"inject-poison","device":"mem0","dpa":-64}"#),
        (field("dpa"), "dpa = -64: must not be negative".into())
    );
    assert_eq!(
        err(r#"{"cmd":"inject-poison","device":"mem0","dpa":1.5}"#),
        (field("dpa"), "dpa = 1.5: expected an integer".into())
    );
    assert_eq!(
        err(r#"{"cmd":"inject-poison","device":"mem0","dpa":"0xzz"}"#),
        (
            field("dpa"),
            "dpa = \"0xzz\": expected an integer (decimal or 0x hex)".into()
        )
    );
    assert_eq!(
        err(r#"{"cmd":"inject-poison","device":"mem0","dpa":65}"#),
        (field("dpa"), "dpa = 0x41: must be a multiple of 64".into())
    );
    assert_eq!(
        err(r#"{"cmd":"clear-poison","device":"mem0","dpa":268435456}"#),
        (
            field("dpa"),
            "dpa = 0x10000000: past the end of mem0 (0x10000000 bytes)".into()
        )
    );
    assert_eq!(
        err(r#"{"cmd":"inject-poison","device":"mem0","dpa":0,"length":0}"#).0,
        field("length")
    );
    assert_eq!(
        err(r#"{"cmd":"inject-poison","device":"mem0","dpa":0,"length":100}"#).0,
        field("length")
    );
    assert_eq!(
        err(r#"{"cmd":"inject-poison","device":"mem0","dpa":"0xfffffc0","length":128}"#),
        (
            field("length"),
            "length = 0x80: must be a non-zero multiple of 64 within mem0 (0x40 bytes from dpa)"
                .into()
        )
    );
    assert_eq!(
        err(r#"{"cmd":"inject-event","device":"mem0","kind":"cpu"}"#),
        (
            field("kind"),
            "kind = \"cpu\": unknown event kind (general-media, dram, memory-module)".into()
        )
    );
    assert_eq!(
        err(r#"{"cmd":"inject-event","device":"mem0"}"#),
        (field("kind"), "kind: missing".into())
    );
}

#[test]
fn responses_are_one_json_line() {
    assert_eq!(ok_response(Value::Null), r#"{"ok":true}"#);
    assert_eq!(ok_response(json!({"x": 1})), r#"{"ok":true,"x":1}"#);
    let e = parse_request(r#"{"cmd":"get","id":"sw9"}"#, &topo()).unwrap_err();
    let line = error_response(&e);
    assert!(!line.contains('\n'));
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["field"], "id");
    assert!(v["error"].as_str().unwrap().contains("sw9"));
    let e = parse_request("nope", &topo()).unwrap_err();
    let v: Value = serde_json::from_str(&error_response(&e)).unwrap();
    assert!(v.get("field").is_none());
}

#[test]
fn engine_answers_get_set_and_topology() {
    let t = topo();
    let mut e = Engine::new(&t);
    let ask = |e: &mut Engine, line: &str| -> Value {
        let r = parse_request(line, e.topology()).unwrap();
        serde_json::from_str(&r.answer(e).unwrap()).unwrap()
    };
    let v = ask(&mut e, r#"{"cmd":"get","id":"sw0","key":"latency_ns"}"#);
    assert_eq!(
        v,
        json!({"ok":true,"id":"sw0","key":"latency_ns","value":90.0})
    );
    let v = ask(
        &mut e,
        r#"{"cmd":"set","id":"sw0","key":"latency_ns","value":5000}"#,
    );
    assert_eq!(
        v,
        json!({"ok":true,"id":"sw0","key":"latency_ns","old":90.0,"value":5000.0})
    );
    assert_eq!(e.topology().switches[0].latency_ns, 5000.0);
    let v = ask(&mut e, r#"{"cmd":"get","id":"cpu_cache"}"#);
    assert_eq!(
        v["params"],
        json!({"enabled":true,"size":1048576,"ways":16,"line":64,"hit_latency_ns":20.0})
    );
    let v = ask(&mut e, r#"{"cmd":"topology"}"#);
    assert!(v["tree"].as_str().unwrap().contains("sw0 switch"));
    assert_eq!(
        v["params"][0],
        json!({"id":"hb0","key":"latency_ns","value":60.0})
    );
    let stats = parse_request(r#"{"cmd":"stats"}"#, &t).unwrap();
    assert_eq!(stats.answer(&mut e), None, "stats are the VMM's to answer");
}

#[test]
fn ctl_arguments_become_requests() {
    let line = |args: &[&str]| request_from_args(args).unwrap();
    assert_eq!(
        line(&["set", "sw0", "latency_ns", "5000"]),
        r#"{"cmd":"set","id":"sw0","key":"latency_ns","value":5000}"#
    );
    assert_eq!(
        line(&["set", "mem0", "link.flit", "256B"]),
        r#"{"cmd":"set","id":"mem0","key":"link.flit","value":"256B"}"#
    );
    assert_eq!(
        line(&["set", "cpu_cache", "enabled", "false"]),
        r#"{"cmd":"set","id":"cpu_cache","key":"enabled","value":false}"#
    );
    assert_eq!(line(&["get", "sw0"]), r#"{"cmd":"get","id":"sw0"}"#);
    assert_eq!(
        line(&["inject-poison", "mem0", "0x1000", "128"]),
        r#"{"cmd":"inject-poison","device":"mem0","dpa":"0x1000","length":128}"#
    );
    assert_eq!(
        line(&["inject-event", "mem0", "dram"]),
        r#"{"cmd":"inject-event","device":"mem0","kind":"dram"}"#
    );
    assert_eq!(line(&["stats"]), r#"{"cmd":"stats"}"#);
    // Every line it makes parses (given valid ids).
    let t = topo();
    for args in [
        vec!["set", "sw0", "latency_ns", "5000"],
        vec!["inject-poison", "mem0", "0x1000", "128"],
        vec!["clear-poison", "mem0", "4096"],
        vec!["topology"],
    ] {
        parse_request(&line(&args), &t).unwrap();
    }
    let e = request_from_args(&["set", "sw0", "latency_ns"]).unwrap_err();
    assert_eq!(e.message, "usage: set ID KEY VALUE");
    let e = request_from_args(&["stats", "now"]).unwrap_err();
    assert_eq!(e.message, "usage: stats (no arguments)");
    let e = request_from_args(&["reboot"]).unwrap_err();
    assert!(e.message.starts_with("unknown command \"reboot\""));
    assert!(request_from_args::<&str>(&[]).is_err());
}
