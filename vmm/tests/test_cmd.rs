//! `cxlvmm test` through the real binary: the manifest checks, `--list`
//! with shards, exit statuses, and a job that cannot boot reported as an
//! infrastructure failure. No guest boots here (the kernel is a stand-in).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cxlvmm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cxlvmm"))
}

fn tree(name: &str, manifest: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cxlvmm-test-cmd-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("bzImage"), b"not a kernel").unwrap();
    std::fs::write(dir.join("initrd.img"), b"not an initramfs").unwrap();
    std::fs::write(dir.join("m.toml"), manifest).unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    std::fs::copy(examples.join("direct.toml"), dir.join("direct.toml")).unwrap();
    dir
}

const MANIFEST: &str = r#"
[[kernel]]
name = "stand-in"
image = "bzImage"
initrd = "initrd.img"
[[topology]]
name = "plain"
none = true
[[topology]]
name = "direct"
file = "direct.toml"
[[case]]
name = "a"
command = "true"
[[case]]
name = "b"
command = "true"
timeout = 5
"#;

fn run(dir: &Path, args: &[&str]) -> Output {
    cxlvmm()
        .arg("test")
        .arg(dir.join("m.toml"))
        .args(args)
        .env_remove("SHARD_INDEX")
        .env_remove("SHARD_NUMBER")
        .output()
        .unwrap()
}

fn lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn list_and_shards() {
    let dir = tree("list", MANIFEST);
    let all = run(&dir, &["--list"]);
    assert_eq!(
        all.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&all.stderr)
    );
    assert_eq!(
        lines(&all),
        [
            "a/stand-in/plain",
            "a/stand-in/direct",
            "b/stand-in/plain",
            "b/stand-in/direct"
        ]
    );
    let one = run(&dir, &["--list", "--shard", "1/2"]);
    let two = cxlvmm()
        .arg("test")
        .arg(dir.join("m.toml"))
        .arg("--list")
        .env("SHARD_INDEX", "2")
        .env("SHARD_NUMBER", "2")
        .output()
        .unwrap();
    let mut both = lines(&one);
    both.extend(lines(&two));
    both.sort();
    let mut want = lines(&all);
    want.sort();
    assert_eq!(both, want);
    assert_eq!(lines(&one).len(), 2);
    let filtered = run(&dir, &["--list", "--filter", "^b/.*/direct$"]);
    assert_eq!(lines(&filtered), ["b/stand-in/direct"]);
}

#[test]
fn configuration_errors_exit_2_and_start_nothing() {
    let dir = tree(
        "errors",
        &MANIFEST.replace("timeout = 5", "timeout = 5\nvcpu = 2"),
    );
    let out = dir.join("out");
    let o = run(&dir, &["--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("unknown field `vcpu`"), "{err}");
    assert!(!out.exists(), "nothing may start");
    let dir = tree("shard", "[[kernel]]\nname = \"k\"\nimage = \"bzImage\"\ninitrd = \"initrd.img\"\n[[case]]\nname = \"c\"\ncommand = \"true\"\n");
    for (args, wanted) in [
        (vec!["--shard", "3/2"], "--shard \"3/2\""),
        (vec!["--filter", "("], "--filter \"(\""),
        (vec!["--filter", "^nothing$"], "no job to run"),
    ] {
        let o = run(&dir, &args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(wanted),
            "{args:?}"
        );
    }
}

#[test]
fn a_job_that_cannot_boot_is_an_infrastructure_failure() {
    let dir = tree("infra", "[[kernel]]\nname = \"k\"\nimage = \"bzImage\"\ninitrd = \"initrd.img\"\n[[topology]]\nname = \"plain\"\nnone = true\n[[case]]\nname = \"c\"\ncommand = \"true\"\ntimeout = 20\n");
    let out = dir.join("out");
    let json = dir.join("r.json");
    let junit = dir.join("r.xml");
    let o = run(
        &dir,
        &[
            "--out",
            out.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
            "--retries",
            "1",
        ],
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    // No /dev/kvm, a KVM that cannot boot Linux, or a kernel that is not
    // one: cxlvmm refuses, every time.
    assert_eq!(o.status.code(), Some(6), "{stdout}");
    assert!(stdout.contains("INFRA   c/k/plain"), "{stdout}");
    assert!(
        stdout.ends_with("cxlvmm test: 0 passed, 1 failed\n"),
        "{stdout}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let case = &v["cases"][0];
    assert_eq!(case["status"], "INFRA");
    assert!(
        case["reason"].as_str().unwrap().starts_with("cxlvmm: "),
        "{case}"
    );
    assert_eq!(case["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(v["summary"]["exit_code"], 6);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("<error type=\"INFRA\""), "{xml}");
    let job = out.join("c/k/plain");
    for f in [
        "script.sh",
        "rerun.sh",
        "console.log",
        "vmm.log",
        "result.json",
        "try-1/vmm.log",
    ] {
        assert!(job.join(f).is_file(), "{f}");
    }
}
