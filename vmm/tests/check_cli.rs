//! `cxlvmm check`: a topology the guest could not address is refused with
//! the key and value named, before anything starts.

use std::process::Command;

#[test]
fn a_device_beyond_the_address_space_fails_check_naming_the_key() {
    let dir = std::env::temp_dir().join(format!("cxlvmm-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let topo = dir.join("huge.toml");
    std::fs::write(
        &topo,
        "[[host_bridge]]\nid = \"hb0\"\n\n[[type3]]\nid = \"huge\"\nport = \"hb0.rp0\"\nvolatile = \"1024T\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cxlvmm"))
        .args(["check", "--topology"])
        .arg(&topo)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("type3[0].volatile = \"1024T\"")
            && stderr.contains("bit guest physical address space"),
        "{stderr}"
    );
    // The same device at 1 TiB passes.
    std::fs::write(
        &topo,
        "[[host_bridge]]\nid = \"hb0\"\n\n[[type3]]\nid = \"big\"\nport = \"hb0.rp0\"\nvolatile = \"1T\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cxlvmm"))
        .args(["check", "--topology"])
        .arg(&topo)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
