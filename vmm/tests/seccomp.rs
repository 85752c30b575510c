//! The real per-thread filters, in a child process each: a thread that
//! makes a call its filter forbids ends the process with the report line
//! and status 159; allowed calls go through; `log` lets anything through.
//!
//! This binary is its own child: run with `CXLVMM_SECCOMP_CHILD=<case>`,
//! it plays that case instead of running the tests. Where the kernel has
//! no seccomp filters the tests are reported ignored.

use std::process::{Command, ExitCode, Output};

use libtest_mimic::{Arguments, Failed, Trial};
use vmm::seccomp::{self, SeccompMode, ThreadRole, STATUS_SECCOMP};

const CHILD: &str = "CXLVMM_SECCOMP_CHILD";

/// Runs `f` on a thread called `name` under `role`'s filter.
fn on_thread(name: &str, role: ThreadRole, f: fn()) {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            seccomp::enter(role).expect("filter installed");
            f();
        })
        .unwrap()
        .join()
        .unwrap();
}

fn open_socket() {
    // SAFETY: plain system call; the fd, if any, is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    eprintln!("socket went through: {fd}");
    if fd >= 0 {
        // SAFETY: `fd` is ours.
        unsafe { libc::close(fd) };
    }
}

/// The test harness's pid, read before any filter (getppid is not allowed).
static PARENT: std::sync::OnceLock<libc::pid_t> = std::sync::OnceLock::new();

fn signal_another_process() {
    let parent = *PARENT.get().expect("set before the filter");
    // SAFETY: signal 0 delivers nothing; it only asks whether the target
    // exists.
    let r = unsafe { libc::syscall(libc::SYS_tgkill, parent, parent, 0) };
    eprintln!("tgkill into another process went through: {r}");
}

fn executable_mapping() {
    // SAFETY: an anonymous mapping, unmapped below if it was made.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_EXEC,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    eprintln!("executable mapping went through");
    if p != libc::MAP_FAILED {
        // SAFETY: the mapping made above.
        unsafe { libc::munmap(p, 4096) };
    }
}

/// A media file, opened (and sized) before any filter.
static BACKING: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();

/// What a vCPU thread does every day: allocate, lock, signal an eventfd,
/// write to stderr, map and unmap memory.
fn daily_vcpu_work() {
    let v: Vec<u64> = (0..100_000).collect();
    let m = std::sync::Mutex::new(v.len());
    *m.lock().unwrap() += 1;
    let e = vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK).unwrap();
    e.write(1).unwrap();
    let map = vm_memory::MmapRegion::<()>::new(1 << 20).unwrap();
    drop(map);
    // A region over a backing file opened before the filter, as the
    // region mapper makes one (vm-memory asks the file's size first).
    let backing = BACKING.get().expect("opened before the filter");
    assert_eq!(backing.metadata().unwrap().len(), 1 << 20);
    let file = backing.try_clone().unwrap();
    let region =
        vm_memory::MmapRegion::<()>::from_file(vm_memory::FileOffset::new(file, 0), 1 << 20)
            .unwrap();
    drop(region);
    // Kicking a thread of this process (signal 0: only checks it exists).
    // SAFETY: pthread_self() is this live thread.
    let kicked = unsafe { libc::pthread_kill(libc::pthread_self(), 0) };
    assert_eq!(kicked, 0);
    eprintln!("daily work done: {}", m.lock().unwrap());
}

fn open_file() {
    let r = std::fs::File::open("/proc/self/status");
    eprintln!("open went through: {}", r.is_ok());
}

/// A control API over the default topology, its devices' interrupts going
/// to an eventfd as an irqfd's would.
fn api_context() -> vmm::api::ApiContext {
    use devices::cxl::mailbox::{DeviceRegisters, MemoryLabels, Type3Config};
    use std::sync::{Arc, Mutex};
    let topology = fabric::Topology::default_topology();
    let irqfd = Arc::new(vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK).unwrap());
    let type3 = topology
        .type3
        .iter()
        .map(|d| {
            let mut regs = DeviceRegisters::new(Type3Config {
                volatile_bytes: d.volatile,
                persistent_bytes: d.persistent,
                serial: d.serial,
                lsa: Box::new(MemoryLabels::new(0)),
                fw_revision: "t".into(),
            });
            let irqfd = irqfd.clone();
            regs.set_interrupt(Box::new(move |_| {
                let _ = irqfd.write(1);
            }));
            Arc::new(Mutex::new(regs))
        })
        .collect();
    vmm::api::ApiContext {
        engine: Arc::new(Mutex::new(fabric::Engine::new(&topology))),
        topology,
        type3,
        timed: None,
        clock: None,
        guest_clock: Arc::default(),
    }
}

/// Each API thread's `Seccomp:` line in /proc (2 = filtering).
fn api_thread_seccomp_modes() -> Vec<(String, String)> {
    let mut modes = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let comm = comm.trim().to_string();
        if !comm.starts_with("api") {
            continue;
        }
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        let mode = status
            .lines()
            .find_map(|l| l.strip_prefix("Seccomp:"))
            .unwrap_or("?")
            .trim()
            .to_string();
        modes.push((comm, mode));
    }
    modes.sort();
    modes
}

/// A real control socket served by the filtered API threads, driven from
/// this (unfiltered) thread as `cxlvmm ctl` would, several clients at once.
fn api_serves_under_its_filter() {
    let dir = std::env::temp_dir().join(format!("cxlvmm-seccomp-api-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("api.sock");
    let ctx = std::sync::Arc::new(api_context());
    let sw = ctx.topology.switches[0].id.clone();
    let dev = ctx.topology.type3[0].id.clone();
    let server = vmm::api::ApiServer::start(&path, ctx).expect("server and filters up");
    let clients: Vec<_> = (0..vmm::api::API_WORKERS + 2)
        .map(|i| {
            let requests = [
                r#"{"cmd":"topology"}"#.to_string(),
                r#"{"cmd":"stats"}"#.to_string(),
                format!(r#"{{"cmd":"set","id":"{sw}","key":"latency_ns","value":5000}}"#),
                format!(r#"{{"cmd":"get","id":"{sw}","key":"latency_ns"}}"#),
                format!(
                    r#"{{"cmd":"inject-poison","device":"{dev}","dpa":{}}}"#,
                    4096 * (i + 1)
                ),
                format!(r#"{{"cmd":"inject-event","device":"{dev}","kind":"general-media"}}"#),
            ];
            let path = path.clone();
            std::thread::spawn(move || {
                requests
                    .iter()
                    .filter(|r| {
                        let resp = vmm::api::client(&path, r).unwrap();
                        let v: serde_json::Value = serde_json::from_str(&resp).unwrap();
                        v["ok"] == true || {
                            eprintln!("{r} -> {resp}");
                            false
                        }
                    })
                    .count()
            })
        })
        .collect();
    let ok: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    let bad = vmm::api::client(&path, r#"{"cmd":"fly"}"#).unwrap();
    assert!(bad.contains(r#""ok":false"#), "{bad}");
    let modes = api_thread_seccomp_modes();
    assert_eq!(modes.len(), vmm::api::API_WORKERS + 1, "{modes:?}");
    assert!(modes.iter().all(|(_, m)| m == "2"), "{modes:?}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("api served {ok} requests ok, threads {modes:?}");
}

fn child(case: &str) -> ExitCode {
    let mode = if case == "log" {
        SeccompMode::Log
    } else {
        SeccompMode::Enforce
    };
    seccomp::configure(mode).unwrap();
    // SAFETY: getppid has no preconditions.
    PARENT.get_or_init(|| unsafe { libc::getppid() });
    BACKING.get_or_init(|| {
        let f = memfd::MemfdOptions::new()
            .create("backing")
            .unwrap()
            .into_file();
        f.set_len(1 << 20).unwrap();
        f
    });
    match case {
        "vcpu-socket" | "log" => on_thread("vcpu0", ThreadRole::Vcpu, open_socket),
        "console-exec-mapping" => {
            on_thread("console-in", ThreadRole::ConsoleInput, executable_mapping)
        }
        "vcpu-tgkill-other" => on_thread("vcpu2", ThreadRole::Vcpu, signal_another_process),
        "vcpu-daily" => on_thread("vcpu1", ThreadRole::Vcpu, daily_vcpu_work),
        "api-open" => on_thread("api", ThreadRole::Api, open_file),
        "api-serves" => api_serves_under_its_filter(),
        "main-open" => {
            seccomp::enter(ThreadRole::Main).unwrap();
            let r = std::fs::File::open("/proc/self/status");
            eprintln!("open went through: {}", r.is_ok());
        }
        other => panic!("unknown case {other}"),
    }
    eprintln!("child {case}: still alive");
    ExitCode::SUCCESS
}

fn run_child(case: &str) -> Output {
    Command::new(std::env::current_exe().unwrap())
        .env(CHILD, case)
        .output()
        .unwrap()
}

fn expect_stopped(case: &str, thread: &str, call: &str) -> Result<(), Failed> {
    let out = run_child(case);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let want = format!("cxlvmm: seccomp: thread '{thread}' made a forbidden system call: {call};");
    if out.status.code() != Some(STATUS_SECCOMP) || !stderr.contains(&want) {
        return Err(format!(
            "{case}: status {:?}, stderr:\n{stderr}\nwanted status {STATUS_SECCOMP} and {want:?}",
            out.status.code()
        )
        .into());
    }
    if stderr.contains("still alive") || stderr.contains("went through") {
        return Err(format!("{case}: the call returned: {stderr}").into());
    }
    Ok(())
}

fn expect_alive(case: &str, went: &str) -> Result<(), Failed> {
    let out = run_child(case);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || !stderr.contains(went) || !stderr.contains("still alive") {
        return Err(format!("{case}: status {:?}, stderr:\n{stderr}", out.status.code()).into());
    }
    Ok(())
}

/// Whether this kernel offers what the filters use.
fn kernel_has_seccomp() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/seccomp/actions_avail")
        .map(|s| s.split_whitespace().any(|a| a == "trap") && s.contains("log"))
        .unwrap_or(false)
}

fn main() -> ExitCode {
    if let Ok(case) = std::env::var(CHILD) {
        return child(&case);
    }
    let args = Arguments::from_args();
    let here = kernel_has_seccomp();
    if !here {
        eprintln!("seccomp: this kernel has no seccomp trap/log actions: the tests are ignored");
    }
    let trial = |name: &'static str, f: fn() -> Result<(), Failed>| {
        Trial::test(name, f).with_ignored_flag(!here)
    };
    let trials = vec![
        trial("a_vcpu_opening_a_socket_is_stopped_naming_it", || {
            expect_stopped("vcpu-socket", "vcpu0", "socket (41)")
        }),
        trial("the_main_thread_opening_a_file_is_stopped", || {
            expect_stopped("main-open", "main", "openat (257)")
        }),
        trial("a_vcpu_signalling_another_process_is_stopped", || {
            expect_stopped("vcpu-tgkill-other", "vcpu2", "tgkill (234)")
        }),
        trial("no_thread_may_map_executable_memory", || {
            expect_stopped("console-exec-mapping", "console-in", "mmap (9)")
        }),
        trial("a_vcpus_daily_calls_are_allowed", || {
            expect_alive("vcpu-daily", "daily work done: 100001")
        }),
        trial("an_api_thread_opening_a_file_is_stopped", || {
            expect_stopped("api-open", "api", "openat (257)")
        }),
        trial("the_control_api_serves_under_its_filter", || {
            let n = 6 * (vmm::api::API_WORKERS + 2);
            expect_alive("api-serves", &format!("api served {n} requests ok"))
        }),
        trial("log_mode_lets_a_forbidden_call_through", || {
            expect_alive("log", "socket went through")
        }),
    ];
    libtest_mimic::run(&args, trials).exit_code()
}
