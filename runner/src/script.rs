//! The guest side of a case: the script `cxlvmm run --script` hands to the
//! guest's `/init`. It wraps the case's own script or command so that the
//! runner learns when user space started, what the case exited with, and
//! what the kernel logged below the console loglevel (the `dmesg` dump).

use std::collections::BTreeMap;

/// Printed first, with the guest's uptime: the boot time of the case.
pub const BOOTED: &str = "CXLVMM-BOOTED";
/// Printed by `cxlvmm-action NAME` in the guest: run the host action NAME.
pub const ACTION: &str = "CXLVMM-ACTION";
/// Written to the guest's console by the runner when an action is done.
pub const ACK: &str = "CXLVMM-ACK";
/// Around the `dmesg` dump at the end of the case.
pub const DMESG_BEGIN: &str = "CXLVMM-DMESG-BEGIN";
pub const DMESG_END: &str = "CXLVMM-DMESG-END";
/// The case's own exit status, printed last.
pub const EXIT: &str = "CXLVMM-EXIT";

/// Where the runner stands: what the wrapper exports to the case.
pub struct Context<'a> {
    pub case: &'a str,
    pub kernel: &'a str,
    pub topology: &'a str,
    pub env: &'a BTreeMap<String, String>,
    pub dmesg: bool,
}

/// Single-quoted for sh.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A heredoc delimiter that is no line of `body`.
fn delimiter(body: &str) -> String {
    let mut d = "CXLVMM_CASE_EOF".to_string();
    let mut n = 0;
    while body.lines().any(|l| l.trim() == d) {
        n += 1;
        d = format!("CXLVMM_CASE_EOF_{n}");
    }
    d
}

/// `cxlvmm-action NAME` in the guest: asks the host to run the case's
/// action NAME and waits on the console for the runner's answer.
const ACTION_HELPER: &str = r#"#!/bin/sh
# cxlvmm-action NAME: runs the host-side action NAME of this case (see the
# manifest's actions) and returns when the host is done; fails if the host
# action failed or is unknown.
[ $# = 1 ] || { echo "usage: cxlvmm-action NAME" >&2; exit 2; }
echo "CXLVMM-ACTION $1" >/dev/console
while read -r tag name status rest </dev/console; do
    [ "$tag" = CXLVMM-ACK ] && [ "$name" = "$1" ] || continue
    [ "$status" = ok ] && exit 0
    echo "cxlvmm-action: $1: $status $rest" >&2
    exit 1
done
exit 1
"#;

/// Sets `pin` to a `taskset` prefix for the CPU that takes the console
/// UART's interrupt, where the guest says which one it is. The dump is the
/// longest write to the 16550 of a run, and an emulated UART is ready for
/// the next bytes at once: written from another CPU, which refills the
/// transmit buffer as fast as it drains, the dump keeps the interrupt's CPU
/// in `serial8250_interrupt()` (drivers/tty/serial/8250/8250_core.c) from
/// the first line to the last, with never a moment for its other tasks.
/// In the nested rig, where each register access is an exit, a many-device
/// guest's dump (80 KiB) took that CPU away for over 20 s: a soft lockup
/// reported against the idle task. On the same CPU, the writer's own
/// system call holds the CPU while the handler sends what it wrote: one
/// 80 KiB `sendfile` held it 5 s in the rig (`cat`), so the dump goes out
/// 4 KiB (the UART driver's transmit buffer) per write.
const DUMP_ON_UART_CPU: &str = r#"pin=
for irq in /proc/irq/*/ttyS0; do
    cpu=$(cut -d, -f1 "${irq%/*}/effective_affinity_list" 2>/dev/null | cut -d- -f1)
    [ -n "$cpu" ] && command -v taskset >/dev/null && pin="taskset $(printf %x $((1 << cpu)))"
done
"#;

/// The dump itself (after [`DUMP_ON_UART_CPU`]), from a file so that the
/// writer is the only task at work; plain `dmesg` where there is no `dd`.
const DUMP: &str = "if command -v dd >/dev/null && dmesg >/tmp/cxlvmm-dmesg; then \
    $pin dd bs=4096 </tmp/cxlvmm-dmesg 2>/dev/null; else $pin dmesg; fi";

/// The whole guest script for one case run.
pub fn guest_script(ctx: &Context, body: &str) -> String {
    let mut s = String::new();
    s.push_str("# Written by `cxlvmm test`: runs one case and reports to the runner.\n");
    s.push_str(&format!(
        "echo \"{BOOTED} $(cut -d' ' -f1 /proc/uptime)\"\n"
    ));
    let helper_end = delimiter(ACTION_HELPER);
    s.push_str(&format!(
        "cat >/usr/bin/cxlvmm-action <<'{helper_end}'\n{ACTION_HELPER}{helper_end}\nchmod 755 /usr/bin/cxlvmm-action\n"
    ));
    let mut vars: Vec<(String, String)> = vec![
        ("CXLVMM_CASE".into(), ctx.case.into()),
        ("CXLVMM_KERNEL".into(), ctx.kernel.into()),
        ("CXLVMM_TOPOLOGY".into(), ctx.topology.into()),
    ];
    vars.extend(ctx.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    for (k, v) in vars {
        s.push_str(&format!("export {k}={}\n", quote(&v)));
    }
    let mut body = body.to_string();
    if !body.ends_with('\n') {
        body.push('\n');
    }
    let end = delimiter(&body);
    s.push_str(&format!(
        "cat >/tmp/cxlvmm-case.sh <<'{end}'\n{body}{end}\nsh /tmp/cxlvmm-case.sh\nrc=$?\n"
    ));
    if ctx.dmesg {
        // Console loglevel 1 first: kernel messages printed live during
        // the dump (a hung task reported every second) would land in the
        // middle of its lines; they are in the ring buffer anyway.
        s.push_str("dmesg -n 1 2>/dev/null\n");
        s.push_str(DUMP_ON_UART_CPU);
        s.push_str(&format!("echo {DMESG_BEGIN}\n{DUMP}\necho {DMESG_END}\n"));
    }
    s.push_str(&format!("echo \"{EXIT} $rc\"\nexit $rc\n"));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Runs the generated script with the host's sh, with /usr/bin,
    /// /tmp, /proc/uptime and dmesg replaced by harmless stand-ins.
    fn run_host_sh(script: &str) -> (i32, String) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cxlvmm-script-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let adapted = script
            .replace(
                "/usr/bin/cxlvmm-action",
                &dir.join("cxlvmm-action").display().to_string(),
            )
            .replace(
                "/tmp/cxlvmm-case.sh",
                &dir.join("case.sh").display().to_string(),
            )
            .replace("/proc/uptime", &dir.join("uptime").display().to_string())
            .replace("dmesg >", "echo '[    0.100000] fake dmesg line' >")
            .replace(
                "/tmp/cxlvmm-dmesg",
                &dir.join("dmesg").display().to_string(),
            )
            .replace("/proc/irq", &dir.join("irq").display().to_string())
            .replace("taskset", &dir.join("taskset").display().to_string())
            .replace("dmesg -n 1", "true");
        std::fs::write(dir.join("uptime"), "3.25 1.00\n").unwrap();
        // The console UART's interrupt goes to CPU 3; `taskset` says what
        // it was asked, then runs the command.
        std::fs::create_dir_all(dir.join("irq/4/ttyS0")).unwrap();
        std::fs::write(dir.join("irq/4/effective_affinity_list"), "3\n").unwrap();
        let taskset = dir.join("taskset");
        std::fs::write(
            &taskset,
            "#!/bin/sh\necho \"taskset $1\"\nshift\nexec \"$@\"\n",
        )
        .unwrap();
        std::fs::set_permissions(
            &taskset,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let out = Command::new("sh").arg("-c").arg(&adapted).output().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    #[test]
    fn wrapper_reports_boot_exit_and_dmesg_and_keeps_the_body_verbatim() {
        let env = BTreeMap::from([("WAYS".to_string(), "it's 2".to_string())]);
        let ctx = Context {
            case: "c",
            kernel: "6.12",
            topology: "direct",
            env: &env,
            dmesg: true,
        };
        // A body with quotes, $vars, a heredoc, our own delimiter and no
        // final newline.
        let body = "echo \"$CXLVMM_CASE/$CXLVMM_KERNEL/$CXLVMM_TOPOLOGY $WAYS\"\ncat <<EOF\n'$HOME'\nEOF\necho 'CXLVMM_CASE_EOF'\nCXLVMM_CASE_EOF\nexit 3";
        let script = guest_script(&ctx, body);
        let (rc, out) = run_host_sh(&script);
        assert_eq!(rc, 3, "{out}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "CXLVMM-BOOTED 3.25");
        assert_eq!(lines[1], "c/6.12/direct it's 2");
        assert!(lines[2].starts_with("'/"), "{out}"); // $HOME expanded by the inner heredoc
        assert_eq!(lines[3], "CXLVMM_CASE_EOF");
        // The line that equals our delimiter was part of the body: the shell
        // ran it as a command (and it failed), the script went on.
        assert_eq!(
            &lines[lines.len() - 5..],
            [
                "CXLVMM-DMESG-BEGIN",
                "taskset 8",
                "[    0.100000] fake dmesg line",
                "CXLVMM-DMESG-END",
                "CXLVMM-EXIT 3"
            ]
        );
    }

    #[test]
    fn without_dmesg_no_dump() {
        let env = BTreeMap::new();
        let ctx = Context {
            case: "c",
            kernel: "k",
            topology: "t",
            env: &env,
            dmesg: false,
        };
        let (rc, out) = run_host_sh(&guest_script(&ctx, "true\n"));
        assert_eq!(rc, 0);
        assert!(!out.contains(DMESG_BEGIN));
        assert!(out.ends_with("CXLVMM-EXIT 0\n"), "{out}");
    }

    #[test]
    fn quoting_survives_sh() {
        for s in ["plain", "it's", "a'b'c", "$(reboot)", "`x`", "\"q\"", ""] {
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", quote(s)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), s);
        }
    }
}
