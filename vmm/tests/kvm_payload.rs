//! cxlvmm end to end on the host's /dev/kvm with a tiny bare-metal payload
//! (a stock kernel cannot run on a paravirtual KVM; this can).
//!
//! The payload follows the 64-bit boot protocol the way Linux would: it takes
//! the zero page from RSI, prints the command line found through
//! `hdr.cmd_line_ptr` on COM1, and exits through the test-exit port with the
//! number of e820 entries. So the test checks boot parameters, long-mode
//! setup, serial output and exit-code plumbing at once.
//!
//! A custom harness (libtest-mimic): on a host without /dev/kvm the tests
//! that run a guest are reported "ignored", with the reason on stderr, and
//! never counted as passed.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};

mod payload;
use payload::{elf, LOAD_ADDR};

#[rustfmt::skip]
const CODE: &[u8] = &[
    0x48, 0x89, 0xf3,                   // mov rbx, rsi            ; zero page
    0x8b, 0xb3, 0x28, 0x02, 0x00, 0x00, // mov esi, [rbx+0x228]    ; hdr.cmd_line_ptr
    0x66, 0xba, 0xf8, 0x03,             // mov dx, 0x3f8           ; COM1
    0x8a, 0x06,                         // loop: mov al, [rsi]
    0x84, 0xc0,                         //       test al, al
    0x74, 0x06,                         //       jz done
    0xee,                               //       out dx, al
    0x48, 0xff, 0xc6,                   //       inc rsi
    0xeb, 0xf4,                         //       jmp loop
    0xb0, 0x0a,                         // done: mov al, '\n'
    0xee,                               //       out dx, al
    0x8a, 0x83, 0xe8, 0x01, 0x00, 0x00, // mov al, [rbx+0x1e8]     ; e820_entries
    0x66, 0xba, 0xf4, 0x00,             // mov dx, 0xf4            ; test-exit port
    0xee,                               // out dx, al
    0xf4,                               // hlt
    0xeb, 0xfd,                         // jmp hlt
];

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cxlvmm-it-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn cxlvmm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cxlvmm"))
}

fn payload_prints_cmdline_and_exits_with_e820_count() {
    let dir = scratch("payload");
    let kernel = dir.join("payload.elf");
    std::fs::write(&kernel, elf(CODE)).unwrap();
    let log = dir.join("serial.log");
    let out = cxlvmm()
        .args(["run", "--no-kvm-check", "--vcpus", "1", "--memory", "128M"])
        .arg("--kernel")
        .arg(&kernel)
        .args(["--cmdline", "payload-marker=42"])
        .arg("--serial-log")
        .arg(&log)
        .env("RUST_LOG", "vmm::vm::machine=info,vmm::console_ring=info")
        .output()
        .unwrap();
    let printed = out.stdout.len();
    let stdout = without_tsc_khz(&String::from_utf8_lossy(&out.stdout));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // 128 MiB: [0, EBDA) RAM, [1 MiB, 128 MiB) RAM, ECAM reserved.
    assert_eq!(
        out.status.code(),
        Some(3),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    let expected = format!("{} payload-marker=42\n", vmm::cli::DEFAULT_CMDLINE);
    assert_eq!(stdout, expected);
    assert_eq!(
        without_tsc_khz(&std::fs::read_to_string(&log).unwrap()),
        expected
    );
    // Every byte went through KVM's coalesced ring (fewer than the 170
    // entries it holds), and still all of them, in order, before the exit
    // port's write was served.
    if stderr.contains("KVM cannot coalesce port I/O") {
        eprintln!("coalesced console not checked: this host's KVM has no KVM_CAP_COALESCED_PIO");
    } else {
        assert!(printed < 170, "{printed} bytes: the ring overflows");
        let want = format!("console: {printed} bytes written to COM1 without an exit");
        assert!(stderr.contains(&want), "want {want:?}; stderr: {stderr}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A write to COM1's port 0x3f8 may wait in KVM's coalesced ring
/// (`vmm/src/console_ring.rs`); the next port access must see it. With the
/// divisor latch selected, 0x3f8 is the divisor's low byte, readable: the
/// payload writes 42 there and exits with what it reads back.
fn a_coalesced_console_write_is_seen_by_the_next_port_read() {
    #[rustfmt::skip]
    const CODE: &[u8] = &[
        0x66, 0xba, 0xfb, 0x03, // mov dx, 0x3fb   ; line control
        0xb0, 0x80,             // mov al, 0x80    ; divisor latch access
        0xee,                   // out dx, al
        0x66, 0xba, 0xf8, 0x03, // mov dx, 0x3f8   ; divisor latch, low byte
        0xb0, 0x2a,             // mov al, 42
        0xee,                   // out dx, al      ; coalesced
        0x30, 0xc0,             // xor al, al
        0xec,                   // in al, dx       ; an exit: the ring first
        0x66, 0xba, 0xf4, 0x00, // mov dx, 0xf4    ; test-exit port
        0xee,                   // out dx, al
        0xf4,                   // hlt
        0xeb, 0xfd,             // jmp hlt
    ];
    let dir = scratch("coalesced");
    let kernel = dir.join("payload.elf");
    std::fs::write(&kernel, elf(CODE)).unwrap();
    let out = cxlvmm()
        .args(["run", "--no-kvm-check", "--vcpus", "1", "--memory", "128M"])
        .arg("--kernel")
        .arg(&kernel)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The reset value of the divisor's low byte (9600 baud) is 12.
    assert_eq!(out.status.code(), Some(42), "stderr: {stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The command line the payload printed, less the ` tsc_early_khz=N` the
/// VMM appends (N is this host's TSC rate); that token must be there.
fn without_tsc_khz(line: &str) -> String {
    let at = line
        .find(" tsc_early_khz=")
        .expect("the VMM gives the guest its TSC rate");
    let end = line[at + 1..]
        .find([' ', '\n'])
        .map_or(line.len(), |e| at + 1 + e);
    assert!(line[at + 15..end].parse::<u32>().is_ok(), "{line}");
    format!("{}{}", &line[..at], &line[end..])
}

/// The payload's whole run (ELF load, port I/O on two devices, the exit
/// port, stopping the vCPU) under each `--seccomp` mode; the default is
/// enforce, so every other test here runs filtered too.
fn the_payload_runs_alike_under_every_seccomp_mode() {
    let dir = scratch("seccomp");
    let kernel = dir.join("payload.elf");
    std::fs::write(&kernel, elf(CODE)).unwrap();
    for mode in ["enforce", "log", "off"] {
        let out = cxlvmm()
            .args(["run", "--no-kvm-check", "--vcpus", "2", "--memory", "128M"])
            .args(["--seccomp", mode, "--kernel"])
            .arg(&kernel)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "--seccomp {mode}: {stderr}");
        assert!(!stderr.contains("seccomp"), "--seccomp {mode}: {stderr}");
        assert_eq!(
            without_tsc_khz(&String::from_utf8_lossy(&out.stdout)),
            format!("{}\n", vmm::cli::DEFAULT_CMDLINE)
        );
    }
    let out = cxlvmm()
        .args(["run", "--seccomp", "strict", "--kernel"])
        .arg(&kernel)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("'strict'") && stderr.contains("--seccomp"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn more_memory_means_more_e820_entries() {
    let dir = scratch("himem");
    let kernel = dir.join("payload.elf");
    std::fs::write(&kernel, elf(CODE)).unwrap();
    // 3.5 GiB: RAM continues above 4 GiB, adding a fourth entry.
    let out = cxlvmm()
        .args(["run", "--no-kvm-check", "--vcpus", "2", "--memory", "3584M"])
        .arg("--kernel")
        .arg(&kernel)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A 64-vCPU guest with 64 GiB of RAM (more than the hosts this runs on
/// have) starts and runs, every backing that needs nothing from the host,
/// holding only the memory it touches: `--verbose`'s peak resident set
/// stays far below its size.
fn a_big_guest_starts_without_touching_its_memory() {
    let dir = scratch("big");
    let kernel = dir.join("payload.elf");
    std::fs::write(&kernel, elf(CODE)).unwrap();
    for backing in ["anon", "thp"] {
        let out = cxlvmm()
            .args(["run", "--no-kvm-check", "--vcpus", "64", "--memory", "64G"])
            .args(["--memory-backing", backing, "--verbose", "--kernel"])
            .arg(&kernel)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Four e820 entries: RAM continues above 4 GiB.
        assert_eq!(out.status.code(), Some(4), "{backing}: {stderr}");
        assert!(stderr.contains("64 vCPUs, 65536 MiB guest RAM"), "{stderr}");
        assert!(
            stderr.contains("(process start to the first KVM_RUN)"),
            "{stderr}"
        );
        let peak_mib: u64 = stderr
            .lines()
            .find_map(|l| l.strip_suffix(" MiB at peak"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{backing}: no peak resident memory in: {stderr}"));
        assert!(
            peak_mib < 256,
            "{backing}: {peak_mib} MiB resident: {stderr}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

fn paravirtual_kvm_is_refused_with_a_pointer_to_the_rig() {
    let dir = scratch("pvm");
    let kernel = dir.join("payload.elf");
    std::fs::write(&kernel, elf(CODE)).unwrap();
    let out = cxlvmm()
        .args(["run", "--kernel"])
        .arg(&kernel)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr.lines().count(), 1, "one clear line: {stderr}");
    assert!(
        stderr.contains("kvm_pvm") && stderr.contains("scripts/rig"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn bad_inputs_fail_clearly_before_anything_starts() {
    let dir = scratch("bad");
    let junk = dir.join("junk");
    std::fs::write(&junk, vec![0x5au8; 8192]).unwrap();
    let mut cases: Vec<(Vec<String>, i32, &str)> = vec![
        (
            vec!["--kernel".into(), "/nonexistent/bzImage".into()],
            2,
            "--kernel /nonexistent/bzImage",
        ),
        (
            vec![
                "--kernel".into(),
                junk.display().to_string(),
                "--memory".into(),
                "4096T".into(),
            ],
            2,
            "physical address space",
        ),
        (
            vec![
                "--kernel".into(),
                junk.display().to_string(),
                "--vcpus".into(),
                "0".into(),
            ],
            2,
            "--vcpus",
        ),
        (
            vec![
                "--kernel".into(),
                junk.display().to_string(),
                "--memory".into(),
                "12Q".into(),
            ],
            2,
            "'Q'",
        ),
        (
            vec!["--initrd".into(), junk.display().to_string()],
            2,
            "--initrd needs --kernel",
        ),
    ];
    // Huge pages the host does not have are named before anything starts.
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let free_huge = meminfo
        .lines()
        .find(|l| l.starts_with("HugePages_Free:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok());
    if free_huge.is_some_and(|n| n < 64) {
        cases.push((
            vec![
                "--kernel".into(),
                junk.display().to_string(),
                "--memory".into(),
                "128M".into(),
                "--memory-backing".into(),
                "hugetlb".into(),
            ],
            2,
            "/proc/sys/vm/nr_hugepages",
        ));
    }
    // The kernel is read once the VM exists, so this one needs /dev/kvm.
    if Path::new("/dev/kvm").exists() {
        cases.push((
            vec![
                "--kernel".into(),
                junk.display().to_string(),
                "--no-kvm-check".into(),
            ],
            1,
            "neither a bzImage nor an ELF",
        ));
    }
    for (args, code, needle) in cases {
        let out = cxlvmm().arg("run").args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{args:?}: expected '{needle}' in: {stderr}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

fn timeout_stops_a_hung_guest_and_shows_where_it_is() {
    let dir = scratch("hang");
    let kernel = dir.join("spin.elf");
    // jmp $ : spins at the entry point forever.
    std::fs::write(&kernel, elf(&[0xeb, 0xfe])).unwrap();
    let out = cxlvmm()
        .args([
            "run",
            "--no-kvm-check",
            "--vcpus",
            "1",
            "--memory",
            "128M",
            "--timeout",
            "1",
        ])
        .arg("--kernel")
        .arg(&kernel)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(124), "{stderr}");
    assert!(stderr.contains("vcpu0: rip=0x100000 "), "{stderr}");
    assert!(stderr.contains("--timeout expired"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A second cxlvmm given a persistent device whose media file a running
/// one holds stops at start with the file and the holder's pid named.
fn a_second_vm_on_the_same_persistent_media_is_refused() {
    let dir = scratch("lock");
    let kernel = dir.join("spin.elf");
    std::fs::write(&kernel, elf(&[0xeb, 0xfe])).unwrap();
    let media = dir.join("pmem.img");
    let topo = dir.join("pmem.toml");
    std::fs::write(
        &topo,
        format!(
            "[[host_bridge]]\nid = \"hb0\"\n[[type3]]\nid = \"pm\"\nport = \"hb0.rp0\"\n\
             persistent = \"256M\"\npersistent_path = {:?}\n[[window]]\ntargets = [\"hb0\"]\n\
             size = \"256M\"\nrestrictions = [\"pmem\"]\n",
            media.display().to_string()
        ),
    )
    .unwrap();
    let run = |timeout: &str| {
        let mut c = cxlvmm();
        c.args(["run", "--no-kvm-check", "--vcpus", "1", "--memory", "128M"])
            .args(["--timeout", timeout, "--kernel"])
            .arg(&kernel)
            .arg("--topology")
            .arg(&topo);
        c
    };
    let mut first = run("60")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait (bounded) until the first VM holds its lock.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !holds_lock(&media, first.id()) {
        assert!(
            Instant::now() < deadline,
            "the first VM never locked {media:?}"
        );
        assert!(first.try_wait().unwrap().is_none(), "the first VM ended");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = run("5").output().unwrap();
    let _ = first.kill();
    let _ = first.wait();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{} is locked by process {} (cxlvmm)",
            media.display(),
            first.id()
        )),
        "{stderr}"
    );
    // With the first gone, the second starts (and is stopped by --timeout).
    let out = run("1").output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(124),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `cxlvmm ctl` against a running VM under the default `--seccomp
/// enforce`: the control API's threads serve every kind of request under
/// their own filter (a call outside it would stop the VM with status
/// 159), and a bad request gets an error while the VM runs on.
fn ctl_requests_are_served_under_the_api_filter() {
    let dir = scratch("ctl");
    let kernel = dir.join("spin.elf");
    std::fs::write(&kernel, elf(&[0xeb, 0xfe])).unwrap();
    let topo = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/direct.toml");
    let sock = dir.join("api.sock");
    let mut vm = cxlvmm()
        .args(["run", "--no-kvm-check", "--vcpus", "1", "--memory", "128M"])
        .args(["--timeout", "60", "--topology", topo, "--api-socket"])
        .arg(&sock)
        .arg("--kernel")
        .arg(&kernel)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "no control socket at {sock:?}");
        assert!(vm.try_wait().unwrap().is_none(), "the VM ended at start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let ctl = |request: &[&str]| {
        let out = cxlvmm()
            .args(["ctl", "--socket"])
            .arg(&sock)
            .args(request)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let mut answers = Vec::new();
    for request in [
        &["topology"][..],
        &["stats"],
        &["set", "mem0", "media.read_latency_ns", "200"],
        &["get", "mem0", "media.read_latency_ns"],
        &["inject-poison", "mem0", "4096"],
        &["clear-poison", "mem0", "4096"],
        &["inject-event", "mem0", "dram"],
    ] {
        let (code, out) = ctl(request);
        assert_eq!(code, Some(0), "ctl {request:?}: {out}");
        answers.push(out);
    }
    assert!(answers[3].contains("200"), "{}", answers[3]);
    let (code, out) = ctl(&["set", "mem0", "media.no_such_key", "1"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(vm.try_wait().unwrap().is_none(), "the VM stopped");
    vm.kill().unwrap();
    let out = vm.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("seccomp"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A guest that jumps into device memory stops with a message naming the
/// place and why (code cannot run there), not a host hint.
fn code_in_device_memory_stops_the_vm_naming_the_place() {
    let dir = scratch("mmio-code");
    let kernel = dir.join("jump.elf");
    #[rustfmt::skip]
    let code = [
        0xb8, 0x00, 0x00, 0x00, 0xf0, // mov eax, 0xf0000000 ; the CHBCR area
        0xff, 0xe0,                   // jmp rax
    ];
    std::fs::write(&kernel, elf(&code)).unwrap();
    let out = cxlvmm()
        .args(["run", "--no-kvm-check", "--vcpus", "1", "--memory", "128M"])
        .args(["--timeout", "30", "--kernel"])
        .arg(&kernel)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("at RIP 0xf0000000 (guest-physical 0xf0000000): the instruction itself is in device memory (CHBCR area); code, page tables and vector"),
        "{stderr}"
    );
    assert!(!stderr.contains("paravirtual"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A payload drives the first `--disk` as a driver would, without
/// interrupts: it negotiates VERSION_1, sets up queue 0 over rings that the
/// ELF image carries, and queues a read of sector 0, a write of that data
/// to sector 1 and a flush in one notification (served during that MMIO
/// write). It exits with data[0] + the three status bytes + the used
/// index; the host then finds the written sector in the image file.
fn virtio_blk_requests_from_a_payload_reach_the_image() {
    const RING: u64 = LOAD_ADDR + 0x1000;
    const AVAIL: u64 = RING + 0x100;
    const USED: u64 = RING + 0x200;
    const HEADERS: u64 = RING + 0x300;
    const DATA: u64 = RING + 0x400;
    const STATUS: u64 = RING + 0x600;
    let le32 = |v: u64| (v as u32).to_le_bytes();
    let mut code: Vec<u8> = vec![0x48, 0xbe];
    code.extend_from_slice(&0xc000_0000u64.to_le_bytes()); // mov rsi, BAR 0 of 00:01.0
    #[rustfmt::skip]
    code.extend_from_slice(&[
        0xc6, 0x46, 0x14, 0x00,                   // status = 0 (reset)
        0xc6, 0x46, 0x14, 0x03,                   // ACKNOWLEDGE | DRIVER
        0xc7, 0x46, 0x08, 1, 0, 0, 0,             // driver_feature_select = 1
        0xc7, 0x46, 0x0c, 1, 0, 0, 0,             // VIRTIO_F_VERSION_1 (bit 32)
        0xc6, 0x46, 0x14, 0x0b,                   // | FEATURES_OK
        0x66, 0xc7, 0x46, 0x16, 0, 0,             // queue_select = 0
        0x66, 0xc7, 0x46, 0x18, 16, 0,            // queue_size = 16
    ]);
    for (off, addr) in [(0x20u8, RING), (0x28, AVAIL), (0x30, USED)] {
        code.extend_from_slice(&[0xc7, 0x46, off]);
        code.extend_from_slice(&le32(addr));
        code.extend_from_slice(&[0xc7, 0x46, off + 4, 0, 0, 0, 0]);
    }
    #[rustfmt::skip]
    code.extend_from_slice(&[
        0x66, 0xc7, 0x46, 0x1c, 1, 0,             // queue_enable = 1
        0xc6, 0x46, 0x14, 0x0f,                   // | DRIVER_OK
        0x66, 0xc7, 0x86, 0, 0x30, 0, 0, 0, 0,    // notify queue 0 (BAR 0 + 0x3000)
        0x8a, 0x04, 0x25,                         // mov al, [DATA]
    ]);
    code.extend_from_slice(&le32(DATA));
    for addr in [STATUS, STATUS + 1, STATUS + 2, USED + 2] {
        code.extend_from_slice(&[0x02, 0x04, 0x25]); // add al, [addr]
        code.extend_from_slice(&le32(addr));
    }
    code.extend_from_slice(&[0x66, 0xba, 0xf4, 0x00, 0xee, 0xf4, 0xeb, 0xfd]); // out 0xf4; hlt
    assert!(code.len() <= 0x1000);
    let mut image = code;
    image.resize(0x1000 + 0x700, 0);
    let mut put = |at: u64, bytes: &[u8]| {
        let o = (at - LOAD_ADDR) as usize;
        image[o..o + bytes.len()].copy_from_slice(bytes);
    };
    // Descriptors (addr, len, flags: 1 NEXT, 2 WRITE, next).
    let descs: [(u64, u32, u16, u16); 8] = [
        (HEADERS, 16, 1, 1),
        (DATA, 512, 3, 2),
        (STATUS, 1, 2, 0),
        (HEADERS + 16, 16, 1, 4),
        (DATA, 512, 1, 5),
        (STATUS + 1, 1, 2, 0),
        (HEADERS + 32, 16, 1, 7),
        (STATUS + 2, 1, 2, 0),
    ];
    for (i, (addr, len, flags, next)) in descs.into_iter().enumerate() {
        let mut d = addr.to_le_bytes().to_vec();
        d.extend_from_slice(&len.to_le_bytes());
        d.extend_from_slice(&flags.to_le_bytes());
        d.extend_from_slice(&next.to_le_bytes());
        put(RING + 16 * i as u64, &d);
    }
    // Available ring: idx 3, heads 0, 3, 6.
    put(AVAIL, &[0, 0, 3, 0, 0, 0, 3, 0, 6, 0]);
    // Headers: IN sector 0, OUT sector 1, FLUSH.
    put(HEADERS, &[0; 16]);
    put(
        HEADERS + 16,
        &[1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0],
    );
    put(
        HEADERS + 32,
        &[4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    );
    put(STATUS, &[0xee; 3]);

    let dir = scratch("virtio-blk");
    let kernel = dir.join("blk.elf");
    std::fs::write(&kernel, elf(&image)).unwrap();
    let disk = dir.join("disk.img");
    let mut content = vec![0x5au8; 512];
    content.extend_from_slice(&[0u8; 1024]);
    std::fs::write(&disk, &content).unwrap();
    let out = cxlvmm()
        .args(["run", "--no-kvm-check", "--vcpus", "1", "--memory", "128M"])
        .args(["--no-cxl", "--timeout", "30", "--kernel"])
        .arg(&kernel)
        .arg("--disk")
        .arg(&disk)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // 0x5a + three OK (0) statuses + used index 3.
    assert_eq!(out.status.code(), Some(0x5d), "{stderr}");
    content[512..1024].fill(0x5a);
    assert_eq!(std::fs::read(&disk).unwrap(), content, "sector 1 written");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Whether /proc/locks lists a FLOCK of process `pid` (on any file once
/// `path` exists: the test's VM locks nothing else).
fn holds_lock(path: &Path, pid: u32) -> bool {
    path.exists()
        && std::fs::read_to_string("/proc/locks").is_ok_and(|l| {
            l.lines().any(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                f.get(1) == Some(&"FLOCK") && f.get(4) == Some(&pid.to_string().as_str())
            })
        })
}

/// The payload of the accelerator test, at `LOAD_ADDR`: BAR0 and BAR2 of
/// the first accelerator at 0x200 and 0x208 (filled in by the test), the
/// fence at 0x240, a ring of 4 descriptors at 0x400, 64 source bytes at
/// 0x800. It checks the ID register (an MMIO exit into the device), sets up
/// queue 0 on the ring, rings the doorbell for the two descriptors there
/// (COPY source -> VRAM, FENCE 0x5eed), spins until the fence is written
/// (by the VMM's completion thread: nothing else polls the device), then
/// compares the first and last 8 bytes of VRAM, read through BAR2, with the
/// source. Exits 7 on success; 1 bad ID, 2 queue not enabled, 3 no fence,
/// 4 VRAM differs.
#[rustfmt::skip]
const ACCEL_CODE: &[u8] = &[
    0x48, 0x8b, 0x3c, 0x25, 0x00, 0x02, 0x10, 0x00, // mov rdi, [0x100200]       ; BAR0
    0x48, 0x8b, 0x34, 0x25, 0x08, 0x02, 0x10, 0x00, // mov rsi, [0x100208]       ; BAR2
    0xb0, 0x01,                                     // mov al, 1
    0x81, 0x3f, 0x63, 0x78, 0x61, 0x63,             // cmp dword [rdi], "cxac"   ; ID
    0x75, 0x7a,                                     // jne out
    0xc7, 0x87, 0x00, 0x10, 0x00, 0x00, 0x00, 0x04, 0x10, 0x00, // mov dword [rdi+0x1000], 0x100400 ; Q_BASE
    0xc7, 0x87, 0x04, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // mov dword [rdi+0x1004], 0
    0xc7, 0x87, 0x08, 0x10, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, // mov dword [rdi+0x1008], 4  ; Q_SIZE
    0xc7, 0x87, 0x0c, 0x10, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, // mov dword [rdi+0x100c], 1  ; ENABLE
    0xb0, 0x02,                                     // mov al, 2
    0xf7, 0x87, 0x10, 0x10, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, // test dword [rdi+0x1010], 1 ; Q_STATUS
    0x74, 0x44,                                     // je out
    0xc7, 0x87, 0x00, 0x80, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, // mov dword [rdi+0x8000], 2  ; doorbell
    0xb9, 0x00, 0x00, 0x00, 0x40,                   // mov ecx, 0x40000000
    0xb0, 0x03,                                     // mov al, 3
    0x48, 0x81, 0x3c, 0x25, 0x40, 0x02, 0x10, 0x00, 0xed, 0x5e, 0x00, 0x00, // wait: cmp qword [0x100240], 0x5eed
    0x74, 0x06,                                     //       je done
    0xff, 0xc9,                                     //       dec ecx
    0x75, 0xee,                                     //       jnz wait
    0xeb, 0x1f,                                     //       jmp out
    0xb0, 0x04,                                     // done: mov al, 4
    0x48, 0x8b, 0x14, 0x25, 0x00, 0x08, 0x10, 0x00, // mov rdx, [0x100800]
    0x48, 0x3b, 0x16,                               // cmp rdx, [rsi]
    0x75, 0x10,                                     // jne out
    0x48, 0x8b, 0x14, 0x25, 0x38, 0x08, 0x10, 0x00, // mov rdx, [0x100838]
    0x48, 0x3b, 0x56, 0x38,                         // cmp rdx, [rsi+0x38]
    0x75, 0x02,                                     // jne out
    0xb0, 0x07,                                     // mov al, 7
    0xe6, 0xf4,                                     // out: out 0xf4, al
    0xf4,                                           // hlt
    0xeb, 0xfd,                                     // jmp hlt
];

const ACCEL_TOPOLOGY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/accelerators.toml");

/// Where the VMM's plan puts BAR `index` of gpu0 of `ACCEL_TOPOLOGY` in a
/// 128 MiB guest (the payloads run with `--memory 128M`).
fn gpu0_bar(index: usize) -> u64 {
    let topo = fabric::topology::Topology::from_toml_str(
        &std::fs::read_to_string(ACCEL_TOPOLOGY).unwrap(),
    )
    .unwrap();
    let plan = vmm::cxl::plan::plan(
        &topo,
        (vmm::layout::CXL_MMIO32_START, vmm::layout::CXL_MMIO32_END),
        vmm::memory::ram_end(128 << 20),
    )
    .unwrap();
    let gpu0 = plan
        .functions
        .iter()
        .find(|f| f.kind == vmm::cxl::plan::FunctionKind::Accelerator { index: 0 })
        .unwrap();
    gpu0.bars.iter().find(|b| b.0 == index).unwrap().1
}

/// An accelerator of `examples/accelerators.toml` on the real machine: its
/// BAR0 registers trap to the device, its VRAM is guest memory at BAR2, and
/// a DMA it is told to do completes without the guest polling the device.
fn accelerator_copies_into_vram_and_writes_the_fence() {
    use devices::accel::command::build;
    let dir = scratch("accel");
    let topo_path = ACCEL_TOPOLOGY;
    let (bar0, bar2) = (gpu0_bar(0), gpu0_bar(2));
    let mut image = vec![0u8; 0x840];
    image[..ACCEL_CODE.len()].copy_from_slice(ACCEL_CODE);
    image[0x200..0x208].copy_from_slice(&bar0.to_le_bytes());
    image[0x208..0x210].copy_from_slice(&bar2.to_le_bytes());
    image[0x400..0x440].copy_from_slice(&build::copy(0, LOAD_ADDR + 0x800, bar2, 64));
    image[0x440..0x480].copy_from_slice(&build::fence(0, LOAD_ADDR + 0x240, 0x5eed));
    for (i, b) in image[0x800..0x840].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37).wrapping_add(5);
    }
    let kernel = dir.join("accel.elf");
    std::fs::write(&kernel, elf(&image)).unwrap();
    let out = cxlvmm()
        .args(["run", "--no-kvm-check", "--vcpus", "1", "--memory", "128M"])
        .args(["--timeout", "60", "--topology", topo_path])
        .arg("--kernel")
        .arg(&kernel)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The SSE moves KVM's emulator lacks, on device registers: with a trapped
/// window in the topology and CXLVMM_EMULATE_SSE=1 cxlvmm asks KVM for failed emulations and
/// completes `movq` store/load and `movhps` itself (`vmm/src/vector_mmio`).
/// The payload stores a value into an accelerator's 64-bit Q_BASE register
/// with `movq m64, xmm0`, reads it back with a plain `mov`, then with
/// `movq xmm1, m64`, then into xmm1's high half with `movhps`; it exits
/// with 7 only if every step saw the value (else the failing step).
fn sse_moves_on_mmio_are_completed_by_the_vmm() {
    #[rustfmt::skip]
    let code: &[u8] = &[
        0x0f, 0x20, 0xe0,                               // mov rax, cr4
        0x0d, 0x00, 0x06, 0x00, 0x00,                   // or eax, 0x600      ; OSFXSR, OSXMMEXCPT
        0x0f, 0x22, 0xe0,                               // mov cr4, rax
        0x48, 0x8b, 0x3c, 0x25, 0x00, 0x02, 0x10, 0x00, // mov rdi, [0x100200] ; BAR0
        0x48, 0x8b, 0x14, 0x25, 0x10, 0x02, 0x10, 0x00, // mov rdx, [0x100210] ; the value
        0x66, 0x48, 0x0f, 0x6e, 0xc2,                   // movq xmm0, rdx
        0x66, 0x0f, 0xd6, 0x87, 0x00, 0x10, 0x00, 0x00, // movq [rdi+0x1000], xmm0 ; Q_BASE
        0x48, 0x8b, 0x8f, 0x00, 0x10, 0x00, 0x00,       // mov rcx, [rdi+0x1000]
        0xb0, 0x01,                                     // mov al, 1
        0x48, 0x39, 0xd1,                               // cmp rcx, rdx
        0x75, 0x2a,                                     // jne out
        0xf3, 0x0f, 0x7e, 0x8f, 0x00, 0x10, 0x00, 0x00, // movq xmm1, [rdi+0x1000]
        0x66, 0x48, 0x0f, 0x7e, 0xc9,                   // movq rcx, xmm1
        0xb0, 0x02,                                     // mov al, 2
        0x48, 0x39, 0xd1,                               // cmp rcx, rdx
        0x75, 0x19,                                     // jne out
        0x0f, 0x16, 0x8f, 0x00, 0x10, 0x00, 0x00,       // movhps xmm1, [rdi+0x1000]
        0x66, 0x0f, 0x73, 0xd9, 0x08,                   // psrldq xmm1, 8
        0x66, 0x48, 0x0f, 0x7e, 0xc9,                   // movq rcx, xmm1
        0xb0, 0x03,                                     // mov al, 3
        0x48, 0x39, 0xd1,                               // cmp rcx, rdx
        0x75, 0x02,                                     // jne out
        0xb0, 0x07,                                     // mov al, 7
        0xe6, 0xf4,                                     // out: out 0xf4, al
        0xf4,                                           // hlt
        0xeb, 0xfd,                                     // jmp hlt
    ];
    let dir = scratch("sse-mmio");
    let topo_path = ACCEL_TOPOLOGY;
    let bar0 = gpu0_bar(0);
    let mut image = vec![0u8; 0x220];
    image[..code.len()].copy_from_slice(code);
    image[0x200..0x208].copy_from_slice(&bar0.to_le_bytes());
    image[0x210..0x218].copy_from_slice(&0x0000_0012_3456_7000u64.to_le_bytes());
    let kernel = dir.join("sse.elf");
    std::fs::write(&kernel, elf(&image)).unwrap();
    let out = cxlvmm()
        .args(["run", "--no-kvm-check", "--vcpus", "1", "--memory", "128M"])
        .args([
            "--timeout",
            "60",
            "--memory-mode",
            "trapped",
            "--topology",
            topo_path,
        ])
        .arg("--kernel")
        .arg(&kernel)
        .env("CXLVMM_EMULATE_SSE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The payload commits the endpoint decoder of `examples/direct.toml`
/// itself, writes a 64-line cycle into the timed window and chases it 1000
/// times. Every access is served by the VMM, charged by the model and
/// counted: the stores miss the cache model, the loads (4 KiB, reused) hit
/// it, and the VMM's cost is recorded for each. Returns `--stats`' JSON
/// and cxlvmm's stderr.
fn run_timed_chase(name: &str, mode_args: &[&str]) -> (serde_json::Value, String) {
    let chase = payload::Chase {
        lines: 64,
        stride: 64,
        loads: 1000,
    };
    let dir = scratch(name);
    let kernel = dir.join("chase.elf");
    std::fs::write(&kernel, payload::timed_chase(&chase)).unwrap();
    let stats = dir.join("stats.json");
    let out = cxlvmm()
        .args(["run", "--no-kvm-check", "--vcpus", "1", "--memory", "128M"])
        .args(["--timeout", "120", "--memory-mode", "timed"])
        .args(mode_args)
        .args(["--topology", payload::CHASE_TOPOLOGY, "--stats"])
        .arg(&stats)
        .arg("--kernel")
        .arg(&kernel)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(payload::CHASE_OK), "{stderr}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    let w = &json["timed"]["windows"][0];
    assert_eq!(w["id"], "ram0", "{w}");
    assert_eq!(w["reads"], chase.loads, "{w}");
    assert_eq!(w["writes"], chase.lines, "{w}");
    assert_eq!(w["hits"], chase.loads, "{w}");
    assert_eq!(w["undecoded"], 0, "{w}");
    let cost = &json["timed"]["vmm_cost"];
    assert_eq!(cost["count"], chase.accesses(), "{cost}");
    assert!(cost["p50_ns"].as_f64().unwrap() > 0.0, "{cost}");
    // A hit is charged the cache model's hit latency, a miss more.
    let hit_ns = w["latency"]["p50_ns"].as_f64().unwrap();
    assert!(w["latency"]["max_ns"].as_f64().unwrap() > hit_ns, "{w}");
    assert!(json["guest_time_ps"].as_u64().unwrap() > 0, "{json}");
    std::fs::remove_dir_all(&dir).unwrap();
    (json, stderr)
}

/// Timed memory at host time (`--host-time`, what a host whose KVM cannot
/// set a TSC offset can run): no clock, no calibration.
fn timed_accesses_at_host_time_are_charged_and_counted() {
    let (json, stderr) = run_timed_chase("timed-host-time", &["--host-time"]);
    assert!(!stderr.contains("calibrat"), "{stderr}");
    assert!(json["clock"].is_null(), "{json}");
    assert!(json["calibration"].is_null(), "{json}");
}

/// The same on the virtual clock: calibrated at start, every exit through
/// the clock's bookkeeping. (A paravirtual KVM ignores the TSC offset, so
/// there the guest is not shown the model's time; the data path and the
/// bookkeeping are the same.)
fn timed_accesses_on_the_virtual_clock_are_charged_and_counted() {
    let (json, stderr) = run_timed_chase("timed-clock", &["--calibration-samples", "100"]);
    assert!(
        stderr.contains("virtual clock calibrated over 100 exits"),
        "{stderr}"
    );
    assert!(json["clock"].is_object(), "{json}");
    assert_eq!(json["calibration"]["samples"], 100, "{json}");
}

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let kvm = Path::new("/dev/kvm").exists();
    let pvm = Path::new("/sys/module/kvm_pvm").exists();
    if !kvm {
        eprintln!("kvm_payload: no /dev/kvm on this host: the tests that run a guest are ignored");
    }
    if pvm {
        eprintln!(
            "kvm_payload: host KVM is kvm_pvm: the SSE-on-MMIO test needs hardware KVM and is ignored"
        );
    }
    if !pvm {
        eprintln!(
            "kvm_payload: host KVM is not kvm_pvm: the paravirtual-KVM refusal test is ignored"
        );
    }
    let test = |name: &str, f: fn(), runs_here: bool| {
        Trial::test(name, move || -> Result<(), Failed> {
            f();
            Ok(())
        })
        .with_ignored_flag(!runs_here)
    };
    let trials = vec![
        test(
            "timed_accesses_at_host_time_are_charged_and_counted",
            timed_accesses_at_host_time_are_charged_and_counted,
            kvm,
        ),
        test(
            "timed_accesses_on_the_virtual_clock_are_charged_and_counted",
            timed_accesses_on_the_virtual_clock_are_charged_and_counted,
            kvm,
        ),
        test(
            "accelerator_copies_into_vram_and_writes_the_fence",
            accelerator_copies_into_vram_and_writes_the_fence,
            kvm,
        ),
        test(
            "sse_moves_on_mmio_are_completed_by_the_vmm",
            sse_moves_on_mmio_are_completed_by_the_vmm,
            // kvm_pvm emulates the payload's register-to-register SSE
            // moves too (and fails them), so only hardware KVM can run it.
            kvm && !pvm,
        ),
        test(
            "a_coalesced_console_write_is_seen_by_the_next_port_read",
            a_coalesced_console_write_is_seen_by_the_next_port_read,
            kvm,
        ),
        test(
            "payload_prints_cmdline_and_exits_with_e820_count",
            payload_prints_cmdline_and_exits_with_e820_count,
            kvm,
        ),
        test(
            "ctl_requests_are_served_under_the_api_filter",
            ctl_requests_are_served_under_the_api_filter,
            kvm,
        ),
        test(
            "the_payload_runs_alike_under_every_seccomp_mode",
            the_payload_runs_alike_under_every_seccomp_mode,
            kvm,
        ),
        test(
            "more_memory_means_more_e820_entries",
            more_memory_means_more_e820_entries,
            kvm,
        ),
        test(
            "a_big_guest_starts_without_touching_its_memory",
            a_big_guest_starts_without_touching_its_memory,
            kvm,
        ),
        test(
            "paravirtual_kvm_is_refused_with_a_pointer_to_the_rig",
            paravirtual_kvm_is_refused_with_a_pointer_to_the_rig,
            kvm && pvm,
        ),
        test(
            "bad_inputs_fail_clearly_before_anything_starts",
            bad_inputs_fail_clearly_before_anything_starts,
            true,
        ),
        test(
            "timeout_stops_a_hung_guest_and_shows_where_it_is",
            timeout_stops_a_hung_guest_and_shows_where_it_is,
            kvm,
        ),
        test(
            "code_in_device_memory_stops_the_vm_naming_the_place",
            code_in_device_memory_stops_the_vm_naming_the_place,
            kvm,
        ),
        test(
            "virtio_blk_requests_from_a_payload_reach_the_image",
            virtio_blk_requests_from_a_payload_reach_the_image,
            kvm,
        ),
        test(
            "a_second_vm_on_the_same_persistent_media_is_refused",
            a_second_vm_on_the_same_persistent_media_is_refused,
            kvm,
        ),
    ];
    libtest_mimic::run(&args, trials).exit_code()
}
