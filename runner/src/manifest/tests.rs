use std::path::{Path, PathBuf};

use super::*;

pub const DIRECT_TOPOLOGY: &str = include_str!("../../../examples/direct.toml");

/// A fresh folder with the given files (and fake built guests 6.12 and 6.1).
pub fn write_tree(files: &[(&str, &str)]) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "cxlvmm-manifest-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    for (name, text) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    for v in ["6.12", "6.1"] {
        let g = dir.join("guest").join(v);
        std::fs::create_dir_all(&g).unwrap();
        std::fs::write(g.join("vmlinuz"), "k").unwrap();
        std::fs::write(g.join("initrd.img"), "i").unwrap();
    }
    // Only one of the fake guests says its release.
    std::fs::write(dir.join("guest/6.12/kernel-release"), "6.12.99-test\n").unwrap();
    dir
}

pub fn load(dir: &Path, text: &str) -> Result<Manifest, ManifestError> {
    let guests = dir.join("guest");
    let find = move |v: &str| {
        let g = guests.join(v);
        if g.join("vmlinuz").is_file() {
            Ok((g.join("vmlinuz"), g.join("initrd.img")))
        } else {
            Err(format!("no guest image '{v}' built"))
        }
    };
    Manifest::parse(&dir.join("m.toml"), text, &find)
}

fn load_err(files: &[(&str, &str)], text: &str) -> String {
    let dir = write_tree(files);
    let e = load(&dir, text).expect_err("manifest should be refused").0;
    assert!(
        e.starts_with(&dir.join("m.toml").display().to_string()),
        "{e}"
    );
    e
}

const MINIMAL: &str = "[[kernel]]\nname = \"k\"\n[[case]]\nname = \"c\"\ncommand = \"true\"\n";

#[test]
fn minimal_manifest_gets_documented_defaults() {
    let dir = write_tree(&[]);
    let m = load(&dir, MINIMAL).unwrap();
    assert_eq!(m.kernels[0].boot, KernelBoot::Guest(DEFAULT_GUEST.into()));
    assert_eq!(m.kernels[0].release.as_deref(), Some("6.12.99-test"));
    assert_eq!(m.topologies.len(), 1);
    assert_eq!(m.topologies[0].name, "default");
    assert_eq!(m.topologies[0].source, TopologySource::Builtin);
    let c = &m.cases[0];
    assert_eq!(c.body, CaseBody::Command("true".into()));
    assert_eq!(
        (c.vcpus, c.memory, c.timeout, c.expect_exit),
        (2, 1 << 30, 300, 0)
    );
    assert!(c.dmesg);
    assert!(!c.alone);
    assert_eq!(c.kernels, ["k"]);
    assert_eq!(c.topologies, ["default"]);
}

#[test]
fn full_manifest_resolves_paths_defaults_and_overrides() {
    let dir = write_tree(&[
        ("topo/direct.toml", DIRECT_TOPOLOGY),
        ("t/boot.sh", "echo hi\n"),
        ("linux/arch/x86/boot/bzImage", "bz"),
        ("linux/include/config/kernel.release", "6.19.0-rc1+\n"),
        ("my-initrd", "i"),
    ]);
    let text = r#"
[defaults]
vcpus = 4
memory = "2G"
timeout = 60
ignore_splats = ["cut here"]
cmdline = "loglevel=5"
env = { A = "1", B = "2" }

[[kernel]]
name = "dev"
image = "linux"
cmdline = "nokaslr"
modules = "linux"
[[kernel]]
name = "dev-own-initrd"
image = "linux/arch/x86/boot/bzImage"
initrd = "my-initrd"
[[kernel]]
name = "6.1"
guest = "6.1"

[[topology]]
name = "direct"
file = "topo/direct.toml"
[[topology]]
name = "plain"
none = true

[[case]]
name = "boot"
script = "t/boot.sh"
memory = 512
ignore_splats = ["hung_task"]
cmdline = "quiet"
env = { B = "3" }
vmm_env = { RUST_LOG = "info" }
kernels = ["dev*"]
dmesg = false
check = "grep -q hi $CXLVMM_CONSOLE"
actions = [{ name = "poison", command = "true" }]
[[case]]
name = "fail"
command = "exit 3"
expect_exit = 3
topologies = ["plain"]
"#;
    let m = load(&dir, text).unwrap();
    let dev = &m.kernels[0];
    assert_eq!(
        dev.boot,
        KernelBoot::Image {
            kernel: dir.join("linux/arch/x86/boot/bzImage"),
            initrd: dir.join("guest/6.12/initrd.img"),
        }
    );
    assert_eq!(dev.cmdline, "nokaslr");
    assert_eq!(dev.modules, Some(dir.join("linux")));
    assert_eq!(m.kernels[1].modules, None);
    assert_eq!(dev.release.as_deref(), Some("6.19.0-rc1+"));
    assert_eq!(m.kernels[1].release, None);
    assert_eq!(m.kernels[2].release, None); // the fake 6.1 guest has no kernel-release
    assert_eq!(
        m.kernels[1].boot,
        KernelBoot::Image {
            kernel: dir.join("linux/arch/x86/boot/bzImage"),
            initrd: dir.join("my-initrd"),
        }
    );
    assert_eq!(m.kernels[2].boot, KernelBoot::Guest("6.1".into()));
    assert_eq!(
        m.topologies[0].source,
        TopologySource::File(dir.join("topo/direct.toml"))
    );
    assert_eq!(m.topologies[1].source, TopologySource::None);
    let boot = &m.cases[0];
    assert_eq!(
        boot.body,
        CaseBody::Script {
            path: dir.join("t/boot.sh"),
            text: "echo hi\n".into()
        }
    );
    assert_eq!(boot.kernels, ["dev", "dev-own-initrd"]);
    assert_eq!(boot.topologies, ["direct", "plain"]);
    assert_eq!((boot.vcpus, boot.memory, boot.timeout), (4, 512 << 20, 60));
    let pats: Vec<&str> = boot.ignore_splats.iter().map(|r| r.as_str()).collect();
    assert_eq!(pats, ["cut here", "hung_task"]);
    assert_eq!(boot.cmdline, "loglevel=5 quiet");
    assert_eq!(boot.env.get("A").map(String::as_str), Some("1"));
    assert_eq!(boot.env.get("B").map(String::as_str), Some("3"));
    assert_eq!(
        boot.vmm_env.get("RUST_LOG").map(String::as_str),
        Some("info")
    );
    assert!(!boot.dmesg);
    assert_eq!(
        boot.actions,
        [Action {
            name: "poison".into(),
            command: "true".into()
        }]
    );
    let fail = &m.cases[1];
    assert_eq!((fail.expect_exit, fail.memory, fail.vcpus), (3, 2 << 30, 4));
    assert_eq!(fail.kernels, ["dev", "dev-own-initrd", "6.1"]);
    assert_eq!(fail.topologies, ["plain"]);
}

/// Every way a manifest can be wrong gives one error naming the key and
/// the value at fault.
#[test]
fn every_error_names_key_and_value() {
    let files: &[(&str, &str)] = &[
        ("direct.toml", DIRECT_TOPOLOGY),
        (
            "broken.toml",
            "[[host_bridge]]\nid = \"hb0\"\nroot_ports = 0\n",
        ),
        ("t.sh", "true\n"),
        ("tree/README", "not built"),
    ];
    let k = "[[kernel]]\nname = \"k\"\n";
    let c = "[[case]]\nname = \"c\"\ncommand = \"true\"\n";
    let cases: Vec<(String, &[&str])> = vec![
        // Unknown keys, anywhere.
        (format!("{k}{c}vcpu = 2\n"), &["unknown field `vcpu`"]),
        (format!("{k}{c}[defaults]\ntimout = 5\n"), &["unknown field `timout`"]),
        (format!("{k}kernal = \"x\"\n{c}"), &["unknown field `kernal`"]),
        (format!("{k}{c}[[topology]]\nname = \"t\"\nbuiltin = true\nfiel = \"x\"\n"), &["unknown field `fiel`"]),
        (format!("{k}{c}[[cases]]\nname = \"x\"\n"), &["unknown field `cases`"]),
        (format!("{k}{c}actions = [{{ name = \"a\", command = \"x\", when = 1 }}]\n"), &["unknown field `when`"]),
        // Wrong types.
        (format!("{k}{c}vcpus = \"two\"\n"), &["vcpus"]),
        (format!("{k}{c}expect_exit = 300\n"), &["expect_exit"]),
        (format!("{k}{c}memory = true\n"), &["memory = true", "a number of MiB or a size"]),
        (format!("{k}{c}alone = \"yes\"\n"), &["alone"]),
        (format!("{k}{c}[defaults]\nalone = true\n"), &["unknown field `alone`"]),
        // Missing sections.
        (c.to_string(), &["no [[kernel]]"]),
        (k.to_string(), &["no [[case]]"]),
        // Missing files.
        (format!("[[kernel]]\nname = \"k\"\nimage = \"nope/bzImage\"\n{c}"), &["kernel \"k\": image = \"nope/bzImage\": no such file"]),
        (format!("[[kernel]]\nname = \"k\"\nimage = \"tree\"\n{c}"), &["kernel \"k\": image = \"tree\" is a folder without arch/x86/boot/bzImage"]),
        (format!("[[kernel]]\nname = \"k\"\nimage = \"t.sh\"\ninitrd = \"gone.img\"\n{c}"), &["kernel \"k\": initrd = \"gone.img\": no such file"]),
        (format!("[[kernel]]\nname = \"k\"\ninitrd = \"t.sh\"\n{c}"), &["kernel \"k\": initrd needs image"]),
        (format!("[[kernel]]\nname = \"k\"\nguest = \"5.4\"\n{c}"), &["kernel \"k\": guest = \"5.4\": no guest image '5.4' built"]),
        (format!("[[kernel]]\nname = \"k\"\nmodules = \"lib/modules\"\n{c}"), &["kernel \"k\": modules = \"lib/modules\": no such folder"]),
        (format!("[[kernel]]\nname = \"k\"\nmodules = \"t.sh\"\n{c}"), &["kernel \"k\": modules = \"t.sh\": no such folder"]),
        (format!("{k}[[case]]\nname = \"c\"\nscript = \"missing.sh\"\n"), &["case \"c\": script = \"missing.sh\": no such file"]),
        (format!("{k}{c}[[topology]]\nname = \"t\"\nfile = \"absent.toml\"\n"), &["topology \"t\": file = \"absent.toml\": no such file"]),
        (format!("{k}{c}[[topology]]\nname = \"t\"\nfile = \"broken.toml\"\n"), &["topology \"t\": file = \"broken.toml\":", "root_ports"]),
        (format!("{k}{c}[[topology]]\nname = \"t\"\nfile = \"direct.toml\"\nbuiltin = true\n"), &["topology \"t\": give exactly one of"]),
        (format!("{k}{c}[[topology]]\nname = \"t\"\n"), &["topology \"t\": give exactly one of"]),
        // Names.
        (format!("{k}{k}{c}"), &["[[kernel]] name = \"k\" appears twice"]),
        (format!("{k}{c}{c}"), &["[[case]] name = \"c\" appears twice"]),
        (format!("{k}[[case]]\nname = \"a b\"\ncommand = \"x\"\n"), &["[[case]] name = \"a b\": use letters"]),
        (format!("[[kernel]]\nname = \"k/1\"\n{c}"), &["[[kernel]] name = \"k/1\""]),
        (format!("{k}{c}[[topology]]\nname = \"\"\nbuiltin = true\n"), &["[[topology]] name = \"\""]),
        // Unknown kernel or topology names, globs that match nothing.
        (format!("{k}{c}kernels = [\"6.1\"]\n"), &["case \"c\": kernels: \"6.1\" matches no kernel (have: k)"]),
        (format!("{k}{c}kernels = [\"7.*\"]\n"), &["case \"c\": kernels: \"7.*\" matches no kernel"]),
        (format!("{k}{c}topologies = [\"switch*\"]\n"), &["case \"c\": topologies: \"switch*\" matches no topology (have: default)"]),
        (format!("{k}{c}kernels = [\"[\"]\n"), &["case \"c\": kernels: \"[\" is not a name or glob"]),
        (format!("{k}[defaults]\nkernels = [\"nope\"]\n{c}"), &["case \"c\": kernels: \"nope\" matches no kernel"]),
        // Case bodies.
        (format!("{k}[[case]]\nname = \"c\"\n"), &["case \"c\": give exactly one of script"]),
        (format!("{k}[[case]]\nname = \"c\"\nscript = \"t.sh\"\ncommand = \"x\"\n"), &["case \"c\": give exactly one of script"]),
        (format!("{k}[[case]]\nname = \"c\"\ncommand = \"  \"\n"), &["case \"c\": command is empty"]),
        (format!("{k}{c}check = \"\"\n"), &["case \"c\": check is empty"]),
        (format!("{k}{c}prepare = \" \"\n"), &["case \"c\": prepare is empty"]),
        (format!("{k}{c}vmm_args = [\"--memory=2G\"]\n"), &["case \"c\": vmm_args: \"--memory=2G\": the runner sets --memory itself"]),
        (format!("{k}[defaults]\nvmm_args = [\"--script\", \"x\"]\n{c}"), &["[defaults]: vmm_args: \"--script\": the runner sets --script itself"]),
        // Boots.
        (format!("{k}{c}boots = []\n"), &["case \"c\": boots is empty"]),
        (format!("{k}[[case]]\nname = \"c\"\nboots = [{{ command = \"x\" }}, {{}}]\n"), &["case \"c\": give exactly one of script = \"FILE\" or command = \"...\" (or one in every boot)"]),
        (format!("{k}{c}boots = [{{}}, {{ power_cut_on = \"(\" }}]\n"), &["case \"c\": boots[1]: power_cut_on: \"(\" is not a regex"]),
        (format!("{k}{c}boots = [{{ script = \"t.sh\", command = \"x\" }}]\n"), &["case \"c\": boots[0]: give exactly one of script"]),
        (format!("{k}{c}boots = [{{ script = \"gone.sh\" }}]\n"), &["case \"c\": boots[0]: script = \"gone.sh\": no such file"]),
        (format!("{k}{c}boots = [{{ env = {{ \"1X\" = \"y\" }} }}]\n"), &["case \"c\": boots[0]: env: \"1X\" is not a variable name"]),
        (format!("{k}{c}boots = [{{ prepare = \"\" }}]\n"), &["case \"c\": boots[0]: prepare is empty"]),
        (format!("{k}{c}boots = [{{ reboot = true }}]\n"), &["unknown field `reboot`"]),
        // Values.
        (format!("{k}{c}vcpus = 0\n"), &["case \"c\": vcpus = 0: must be 1 to 254"]),
        (format!("{k}{c}vcpus = 255\n"), &["case \"c\": vcpus = 255"]),
        (format!("{k}{c}memory = \"1M\"\n"), &["case \"c\": memory = \"1M\": must be at least 64M"]),
        (format!("{k}{c}memory = 32\n"), &["case \"c\": memory = 32: must be at least 64M"]),
        (format!("{k}{c}memory = \"lots\"\n"), &["case \"c\": memory = \"lots\":"]),
        (format!("{k}[defaults]\nmemory = \"1Q\"\n{c}"), &["[defaults]: memory = \"1Q\": unknown size suffix 'Q'"]),
        (format!("{k}{c}timeout = 0\n"), &["case \"c\": timeout = 0"]),
        (format!("{k}{c}ignore_splats = [\"(\"]\n"), &["case \"c\": ignore_splats: \"(\" is not a regex"]),
        (format!("{k}{c}env = {{ \"1X\" = \"y\" }}\n"), &["case \"c\": env: \"1X\" is not a variable name"]),
        (format!("{k}{c}vmm_env = {{ \"A-B\" = \"y\" }}\n"), &["case \"c\": vmm_env: \"A-B\" is not a variable name"]),
        (format!("{k}{c}shares = [\"/nonexistent-dir:tag\"]\n"), &["case \"c\": shares: \"/nonexistent-dir:tag\": no such directory"]),
        (format!("{k}{c}shares = [\"/tmp\"]\n"), &["case \"c\": shares: \"/tmp\": expected DIR:TAG, DIR:TAG:ro or job:TAG"]),
        (format!("{k}{c}shares = [\"job:{}\"]\n", "t".repeat(37)), &["a tag is 1 to 36 bytes"]),
        (format!("{k}{c}shares = [\"job:a b\"]\n"), &["a tag has no comma, slash or whitespace"]),
        (format!("{k}{c}shares = [\"job:a\", \"/tmp:a:ro\"]\n"), &["case \"c\": shares: tag \"a\" appears twice"]),
        (format!("{k}{c}shares = [\"job:a\"]\ndisks = [{}]\n", vec!["\"scratch:1M\""; 31].join(", ")), &["case \"c\": disks and shares: 32 entries, at most 31"]),
        (format!("{k}[defaults]\ndisks = [\"d.img\"]\n{c}"), &["case \"c\": disks = \"d.img\": no such file"]),
        (format!("{k}{c}disks = [\"scratch:1000B\"]\n"), &["case \"c\": disks: \"scratch:1000B\": a scratch disk's size must be a whole number of 512-byte sectors"]),
        (format!("{k}{c}disks = [\"scratch:big:ro\"]\n"), &["case \"c\": disks: \"scratch:big:ro\":"]),
        (format!("{k}{c}disks = [\":ro\"]\n"), &["case \"c\": disks: \":ro\": expected FILE[:ro] or scratch:SIZE[:ro]"]),
        (format!("{k}{c}disks = [{}]\n", vec!["\"scratch:1M\""; 32].join(", ")), &["case \"c\": disks and shares: 32 entries, at most 31"]),
        (format!("{k}{c}actions = [{{ name = \"a\", command = \"x\" }}, {{ name = \"a\", command = \"y\" }}]\n"), &["case \"c\": actions: name = \"a\" appears twice"]),
        (format!("{k}{c}actions = [{{ name = \"a\", command = \"\" }}]\n"), &["case \"c\": actions: \"a\": command is empty"]),
        (format!("{k}{c}actions = [{{ name = \"a b\", command = \"x\" }}]\n"), &["case \"c\": [[case.actions]] name = \"a b\""]),
        // Placeholders in env values.
        (format!("{k}{c}env = {{ X = \"{{vcpu}}\" }}\n"), &["case \"c\": env: X = \"{vcpu}\": unknown placeholder {vcpu} (known: case, kernel"]),
        (format!("[[kernel]]\nname = \"k\"\nguest = \"6.1\"\n{c}env = {{ R = \"{{kernel_release}}\" }}\n"), &["case \"c\": env: R uses {kernel_release}, but kernel \"k\" has no release file"]),
        // Not TOML at all.
        ("[[kernel]\n".to_string(), &["m.toml"]),
    ];
    for (text, wanted) in cases {
        let e = load_err(files, &text);
        for w in wanted {
            assert!(e.contains(w), "manifest:\n{text}\nerror: {e}\nwanted: {w}");
        }
    }
}

#[test]
fn unreadable_manifest_names_the_file() {
    let none = |_: &str| -> Result<(PathBuf, PathBuf), String> { Err("x".into()) };
    let e = Manifest::load(Path::new("/nonexistent/m.toml"), &none)
        .unwrap_err()
        .0;
    assert!(e.starts_with("/nonexistent/m.toml: "), "{e}");
}

#[test]
fn paths_come_out_absolute_from_a_relative_manifest_path() {
    // One of the repository's own e2e manifests (the one that needs no
    // inputs made by tests/e2e/setup.sh), named relative to the crate.
    let here = std::env::current_dir().unwrap();
    let m = Path::new("../tests/e2e/by-name.toml");
    assert!(here.join(m).is_file());
    let find = |v: &str| -> Result<(PathBuf, PathBuf), String> {
        Ok((
            PathBuf::from(format!("/g/{v}/vmlinuz")),
            PathBuf::from(format!("/g/{v}/initrd.img")),
        ))
    };
    // The kernels name no release file under /g: drop the case that needs one.
    let text = std::fs::read_to_string(here.join(m))
        .unwrap()
        .replace("{kernel_release}", "x");
    let m = Manifest::parse(m, &text, &find).unwrap();
    for t in &m.topologies {
        if let TopologySource::File(f) = &t.source {
            assert!(f.is_absolute() && f.is_file(), "{}", f.display());
            assert!(!f.to_string_lossy().contains(".."), "{}", f.display());
        }
    }
    for c in &m.cases {
        if let CaseBody::Script { path, .. } = &c.body {
            assert!(path.is_absolute(), "{}", path.display());
        }
    }
}

#[test]
fn a_case_may_ask_to_run_alone() {
    let dir = write_tree(&[]);
    let m = load(&dir, &format!("{MINIMAL}alone = true\n")).unwrap();
    assert!(m.cases[0].alone);
}

#[test]
fn a_topology_names_its_persistent_files_from_the_working_folder() {
    let dir = write_tree(&[
        (
            "switch-4.toml",
            include_str!("../../../examples/switch-4.toml"),
        ),
        ("direct.toml", DIRECT_TOPOLOGY),
    ]);
    let text = format!(
        "{MINIMAL}[[topology]]\nname = \"s\"\nfile = \"switch-4.toml\"\n[[topology]]\nname = \"d\"\nfile = \"direct.toml\"\n"
    );
    let m = load(&dir, &text).unwrap();
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(
        m.topologies[0].persistent_files,
        [cwd.join("build/pmem0.img"), cwd.join("build/pmem1.img")]
    );
    assert!(m.topologies[1].persistent_files.is_empty());
    // switch-4: four devices of 256 MiB volatile each (two of them with
    // 256 MiB persistent besides); direct: one of 256 MiB.
    assert_eq!(m.topologies[0].volatile_bytes, 4 * (256 << 20));
    assert_eq!(m.topologies[1].volatile_bytes, 256 << 20);
    // Without a [[topology]]: the built-in one.
    let m = load(&dir, MINIMAL).unwrap();
    assert!(m.topologies[0].volatile_bytes > 0);
}
