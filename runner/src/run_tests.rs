//! The whole pipeline, from manifest to reports, against the stand-in
//! cxlvmm of the exec tests.

use super::*;
use crate::action::ShellHook;
use crate::manifest::tests::{load, write_tree};
use crate::matrix;
use crate::report::Summary;

const MANIFEST: &str = r#"
[[kernel]]
name = "k"
cmdline = "loglevel=5"
[[topology]]
name = "plain"
none = true
[[case]]
name = "ok"
command = "true"
vmm_env = { FAKE_MODE = "pass" }
env = { RELEASE = "{kernel_release}", SHAPE = "{vcpus}x{memory_mib}M on {topology}", LITERAL = "{not a placeholder}" }
check = "grep -q 'hello from the guest' \"$CXLVMM_CONSOLE\" && test \"$CXLVMM_EXIT\" = 0"
[[case]]
name = "wrong-exit"
command = "true"
expect_exit = 3
vmm_env = { FAKE_MODE = "pass" }
[[case]]
name = "check-fails"
command = "true"
vmm_env = { FAKE_MODE = "pass" }
check = "echo 'enumeration mismatch'; exit 1"
[[case]]
name = "panic"
command = "echo c > /proc/sysrq-trigger"
vmm_env = { FAKE_MODE = "panic-end" }
[[case]]
name = "broken"
command = "true"
vmm_env = { FAKE_MODE = "vmm-error" }
"#;

/// Options for the stand-in cxlvmm `exe`: one job at a time, no retries.
fn options<'a>(exe: &'a Path, out: &'a Path, dir: &'a Path) -> Options<'a> {
    Options {
        exe,
        out,
        manifest_dir: dir,
        jobs: 1,
        memory_budget: None,
        retries: 0,
        infra_crashes: false,
        log_cap: 1 << 20,
        hook: &ShellHook,
        on_finished: None,
    }
}

#[test]
fn jobs_run_retry_and_report() {
    let dir = write_tree(&[]);
    let exe = crate::exec::tests::fake_exe(&dir.join("bin"));
    let m = load(&dir, MANIFEST).unwrap();
    let jobs = matrix::expand(&m);
    let out = dir.join("out");
    let live = crate::report::live::Live::new(jobs.len(), false);
    let results = run_all(
        &jobs,
        &Options {
            jobs: 3,
            retries: 2,
            infra_crashes: false,
            on_finished: None,
            ..options(&exe, &out, &dir)
        },
        &live,
    );
    let got: Vec<(&str, Status)> = results.iter().map(|r| (r.id.as_str(), r.status)).collect();
    assert_eq!(
        got,
        [
            ("ok/k/plain", Status::Pass),
            ("wrong-exit/k/plain", Status::Fail),
            ("check-fails/k/plain", Status::Fail),
            ("panic/k/plain", Status::Crash),
            ("broken/k/plain", Status::Infra),
        ]
    );
    assert_eq!(
        results[2].reason,
        "host check failed: exit status: 1 (enumeration mismatch), see check.log"
    );
    assert_eq!(results[0].boot_s, Some(1.5));
    // Only the infrastructure failure was tried again, twice, its files kept.
    assert!(results[..4].iter().all(|r| r.attempts.is_empty()));
    let broken = &results[4];
    assert_eq!(broken.attempts.len(), 2);
    for (i, a) in broken.attempts.iter().enumerate() {
        assert_eq!(a.status, Status::Infra);
        let kept = out.join("broken/k/plain").join(format!("try-{}", i + 1));
        assert!(
            kept.join("vmm.log").is_file() && kept.join("script.sh").is_file(),
            "{}",
            kept.display()
        );
    }
    // Each job's folder has what the docs promise.
    let ok = out.join("ok/k/plain");
    for f in [
        "console.log",
        "vmm.log",
        "script.sh",
        "rerun.sh",
        "result.json",
        "check.log",
    ] {
        assert!(ok.join(f).is_file(), "{f}");
    }
    let script = std::fs::read_to_string(ok.join("script.sh")).unwrap();
    assert!(
        script.contains("export RELEASE='6.12.99-test'\n"),
        "{script}"
    );
    assert!(
        script.contains("export SHAPE='2x1024M on plain'\n"),
        "{script}"
    );
    assert!(
        script.contains("export LITERAL='{not a placeholder}'\n"),
        "{script}"
    );
    let rerun = std::fs::read_to_string(ok.join("rerun.sh")).unwrap();
    assert!(rerun.contains("FAKE_MODE=pass "), "{rerun}");
    assert!(rerun.contains(" run --guest 6.12 --no-cxl --vcpus 2 --memory 1024M --timeout 300 --cmdline loglevel=5 --script "), "{rerun}");
    assert!(rerun.contains("--serial-log "), "{rerun}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ok.join("result.json")).unwrap()).unwrap();
    assert_eq!(json["status"], "PASS");
    assert_eq!(Summary::of(&results).exit_code, Status::Infra.exit_code());
    // With crashes counted as infrastructure, the panic is retried too.
    let panic_only: Vec<_> = jobs
        .iter()
        .filter(|j| j.case.name == "panic")
        .cloned()
        .collect();
    let again = run_all(
        &panic_only,
        &Options {
            jobs: 1,
            retries: 1,
            infra_crashes: true,
            on_finished: None,
            ..options(&exe, &out, &dir)
        },
        &crate::report::live::Live::new(1, false),
    );
    assert_eq!(
        (again[0].status, again[0].attempts.len()),
        (Status::Crash, 1)
    );
}

#[test]
fn vmm_args_follow_kernel_topology_and_case() {
    let dir = write_tree(&[
        ("direct.toml", crate::manifest::tests::DIRECT_TOPOLOGY),
        ("bz", "k"),
        ("ird", "i"),
        ("mods/6.12.0/modules.dep", ""),
    ]);
    let m = load(
        &dir,
        "[[kernel]]\nname = \"dev\"\nimage = \"bz\"\ninitrd = \"ird\"\nmodules = \"mods/6.12.0\"\n[[topology]]\nname = \"d\"\nfile = \"direct.toml\"\n[[case]]\nname = \"c\"\ncommand = \"x\"\nvcpus = 4\nmemory = \"2G\"\ntimeout = 30\nvmm_args = [\"--verbose\"]\n",
    )
    .unwrap();
    let jobs = matrix::expand(&m);
    let args: Vec<String> = vmm_args(
        &jobs[0],
        std::path::Path::new("/o/script.sh"),
        &[],
        &["/h:src".into()],
        Some(std::path::Path::new("/o/api.sock")),
    )
    .iter()
    .map(|a| a.to_string_lossy().into_owned())
    .collect();
    let d = dir.display();
    assert_eq!(
        args.join(" "),
        format!("--kernel {d}/bz --initrd {d}/ird --modules {d}/mods/6.12.0 --topology {d}/direct.toml --vcpus 4 --memory 2048M --timeout 30 --share /h:src --api-socket /o/api.sock --verbose --script /o/script.sh")
    );
    let line = rerun_line(
        std::path::Path::new("/bin/cxlvmm"),
        &[("RUST_LOG".into(), "vmm::cxl=info x".into())],
        &["--cmdline".into(), "a b".into()],
        std::path::Path::new("/o/c.log"),
    );
    assert_eq!(
        line,
        "RUST_LOG='vmm::cxl=info x' /bin/cxlvmm run --cmdline 'a b' --serial-log /o/c.log"
    );
}

#[test]
fn disks_become_per_job_images_and_disk_arguments() {
    let dir = write_tree(&[("base.img", "b"), ("shared.img", "s")]);
    let job_dir = dir.join("job");
    std::fs::create_dir_all(&job_dir).unwrap();
    std::fs::write(dir.join("base.img"), [7u8; 1024]).unwrap();
    let disks = [
        DiskSource::File {
            path: dir.join("base.img"),
            read_only: false,
        },
        DiskSource::File {
            path: dir.join("shared.img"),
            read_only: true,
        },
        DiskSource::Scratch {
            size: 4096,
            read_only: true,
        },
    ];
    // An earlier try's writes are gone: the copy is made afresh.
    std::fs::write(job_dir.join("disk0.img"), b"stale").unwrap();
    let args = prepare_disks(&disks, &job_dir).unwrap();
    let j = job_dir.display();
    assert_eq!(
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>(),
        vec![
            format!("{j}/disk0.img"),
            format!("{}:ro", dir.join("shared.img").display()),
            format!("{j}/disk2.img:ro"),
        ]
    );
    assert_eq!(
        std::fs::read(job_dir.join("disk0.img")).unwrap(),
        [7u8; 1024]
    );
    assert_eq!(
        std::fs::read(job_dir.join("disk2.img")).unwrap(),
        [0u8; 4096]
    );
    assert!(
        !job_dir.join("disk1.img").exists(),
        "read-only files are used in place"
    );
    let missing = [DiskSource::File {
        path: dir.join("gone.img"),
        read_only: false,
    }];
    let e = prepare_disks(&missing, &job_dir).unwrap_err();
    assert!(e.to_string().contains("gone.img"), "{e}");
}

#[test]
fn shares_become_share_arguments_and_job_folders_start_empty() {
    let dir = write_tree(&[("src/a", "a")]);
    let job_dir = dir.join("job");
    std::fs::create_dir_all(job_dir.join("share-out")).unwrap();
    // An earlier try's files are gone.
    std::fs::write(job_dir.join("share-out/stale"), b"x").unwrap();
    let shares = [
        ShareSource::Dir {
            path: dir.join("src"),
            tag: "src".into(),
            read_only: true,
        },
        ShareSource::JobDir {
            tag: "out".into(),
            read_only: false,
        },
        ShareSource::JobDir {
            tag: "in".into(),
            read_only: true,
        },
    ];
    let args = prepare_shares(&shares, &job_dir).unwrap();
    assert_eq!(
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>(),
        vec![
            format!("{}:src:ro", dir.join("src").display()),
            format!("{}:out", job_dir.join("share-out").display()),
            format!("{}:in:ro", job_dir.join("share-in").display()),
        ]
    );
    assert_eq!(
        std::fs::read_dir(job_dir.join("share-out"))
            .unwrap()
            .count(),
        0
    );
    assert!(
        dir.join("src/a").exists(),
        "a host directory is used in place"
    );
}

const BOOTS: &str = r#"
[[kernel]]
name = "k"
[[topology]]
name = "plain"
none = true
[[case]]
name = "boots"
command = "true"
vmm_env = { FAKE_MODE = "script" }
prepare = "echo FROM_PREPARE=case; echo not a variable line; echo A=from-prepare"
env = { A = "a", B = "b" }
boots = [
    { env = { FAKE_GUEST = "cut", B = "boot1" }, power_cut_on = "^SYNCED" },
    { prepare = "echo SYNCED_BEFORE=$(grep -c SYNCED \"$CXLVMM_OUT/console.log\")" },
]
check = "grep -q \"^export SYNCED_BEFORE='1'\" \"$CXLVMM_OUT/console-2.log\" && test \"$CXLVMM_BOOTS\" = 2"
[[case]]
name = "no-cut"
command = "true"
vmm_env = { FAKE_MODE = "script" }
boots = [{ power_cut_on = "^NEVER" }, {}]
[[case]]
name = "bad-prepare"
command = "true"
vmm_env = { FAKE_MODE = "script" }
prepare = "echo no such setup >&2; exit 3"
"#;

#[test]
fn boots_share_the_job_folder_in_order_and_a_power_cut_passes() {
    let dir = write_tree(&[]);
    let exe = crate::exec::tests::fake_exe(&dir.join("bin"));
    let m = load(&dir, BOOTS).unwrap();
    let jobs = matrix::expand(&m);
    let out = dir.join("out");
    // Reported after every job: what had finished so far.
    let reported = Mutex::new(Vec::new());
    let report = |done: &[CaseResult]| reported.lock().unwrap().push(done.len());
    let results = run_all(
        &jobs,
        &Options {
            jobs: 2,
            retries: 0,
            infra_crashes: false,
            on_finished: Some(&report),
            ..options(&exe, &out, &dir)
        },
        &crate::report::live::Live::new(jobs.len(), false),
    );
    let got: Vec<(&str, Status, &str)> = results
        .iter()
        .map(|r| (r.case.as_str(), r.status, r.reason.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("boots", Status::Pass, ""),
            (
                "no-cut",
                Status::Fail,
                "boot 1 of 2: the console never matched power_cut_on"
            ),
            (
                "bad-prepare",
                Status::Infra,
                "prepare exited with exit status: 3 (no such setup), see prepare.log"
            ),
        ]
    );
    assert_eq!(*reported.lock().unwrap(), [1, 2, 3]);
    let job = out.join("boots/k/plain");
    let first = std::fs::read_to_string(job.join("console.log")).unwrap();
    let second = std::fs::read_to_string(job.join("console-2.log")).unwrap();
    // Boot 1: the case's env, the prepare's lines over it, the boot's over
    // both; cut at SYNCED (the fake would have slept 1000 s).
    for want in [
        "export A='from-prepare'",
        "export B='boot1'",
        "export FROM_PREPARE='case'",
        "export CXLVMM_BOOT='1'",
        "SYNCED",
    ] {
        assert!(first.contains(want), "{want}: {first}");
    }
    assert!(!first.contains("CXLVMM-EXIT"), "{first}");
    assert!(!first.contains("export not"), "{first}");
    // Boot 2: not boot 1's env, and what its prepare read of boot 1.
    for want in [
        "export B='b'",
        "export CXLVMM_BOOT='2'",
        "export SYNCED_BEFORE='1'",
        "CXLVMM-EXIT 0",
    ] {
        assert!(second.contains(want), "{want}: {second}");
    }
    assert!(!second.contains("FAKE_GUEST"), "{second}");
    assert!(results[0].duration_s < 60.0, "{}", results[0].duration_s);
    let rerun = std::fs::read_to_string(job.join("rerun.sh")).unwrap();
    assert!(
        rerun.contains("script.sh") && rerun.contains("script-2.sh"),
        "{rerun}"
    );
}

#[test]
fn the_control_socket_comes_with_actions_on_a_cxl_machine() {
    let dir = write_tree(&[]);
    let m = load(
        &dir,
        "[[kernel]]\nname = \"k\"\n[[topology]]\nname = \"plain\"\nnone = true\n[[topology]]\nname = \"default\"\nbuiltin = true\n[[case]]\nname = \"acts\"\ncommand = \"x\"\nactions = [{ name = \"a\", command = \"true\" }]\n[[case]]\nname = \"quiet\"\ncommand = \"x\"\n",
    )
    .unwrap();
    let got: Vec<(String, bool)> = matrix::expand(&m)
        .iter()
        .map(|j| (j.id(), api_socket(j, Path::new("/o")).is_some()))
        .collect();
    assert_eq!(
        got,
        [
            ("acts/k/plain".to_string(), false),
            ("acts/k/default".to_string(), true),
            ("quiet/k/plain".to_string(), false),
            ("quiet/k/default".to_string(), false),
        ]
    );
}
