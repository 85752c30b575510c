//! Host-side actions at points the guest chooses: the guest runs
//! `cxlvmm-action NAME`, the runner calls the case's hook for NAME and
//! answers on the guest's console when it is done. Hooks are a trait so
//! that other kinds (e.g. a call into cxlvmm's control socket to inject
//! poison or an event) can sit beside the shell command one.

use std::path::Path;

use crate::manifest::Action;

/// What a hook gets to know about the run it acts on.
pub struct ActionContext<'a> {
    /// `case/kernel/topology`.
    pub id: &'a str,
    /// The run's output folder (the hook may leave files there).
    pub out_dir: &'a Path,
    /// The manifest's folder: commands run there.
    pub manifest_dir: &'a Path,
    /// More environment for the command: the host checks' variables,
    /// `CXLVMM_API_SOCKET` (cxlvmm's control socket) and `CXLVMM_PID`.
    pub env: &'a [(String, String)],
}

pub trait ActionHook: Send + Sync {
    /// Runs `action` for the run in `ctx`; Err says why it failed.
    fn run(&self, action: &Action, ctx: &ActionContext) -> Result<(), String>;
}

/// Runs the action's `command` with `sh -c` in the manifest's folder, with
/// CXLVMM_ID, CXLVMM_OUT and CXLVMM_ACTION set; its output goes to
/// `actions.log` in the run's folder.
pub struct ShellHook;

impl ActionHook for ShellHook {
    fn run(&self, action: &Action, ctx: &ActionContext) -> Result<(), String> {
        let out_dir = ctx.out_dir.display().to_string();
        let out = crate::run::host_sh(
            &action.command,
            ctx.manifest_dir,
            ctx.env,
            &[
                ("CXLVMM_ID", ctx.id),
                ("CXLVMM_OUT", &out_dir),
                ("CXLVMM_ACTION", &action.name),
            ],
        )
        .map_err(|e| format!("cannot run sh: {e}"))?;
        crate::run::append_command_log(
            &ctx.out_dir.join("actions.log"),
            &action.name,
            &action.command,
            &out,
        )
        .map_err(|e| format!("actions.log: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("`{}` exited with {}", action.command, out.status))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_hook_runs_in_the_manifest_dir_and_logs() {
        let dir = std::env::temp_dir().join(format!("cxlvmm-action-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ctx = ActionContext {
            id: "c/k/t",
            out_dir: &dir,
            manifest_dir: &dir,
            env: &[("EXTRA".to_string(), "x".to_string())],
        };
        let ok = Action {
            name: "mark".into(),
            command: "echo $CXLVMM_ACTION $CXLVMM_ID $EXTRA > marked".into(),
        };
        assert_eq!(ShellHook.run(&ok, &ctx), Ok(()));
        assert_eq!(
            std::fs::read_to_string(dir.join("marked")).unwrap(),
            "mark c/k/t x\n"
        );
        let bad = Action {
            name: "bad".into(),
            command: "echo nope >&2; exit 4".into(),
        };
        let e = ShellHook.run(&bad, &ctx).unwrap_err();
        assert!(e.contains("exit status: 4"), "{e}");
        let log = std::fs::read_to_string(dir.join("actions.log")).unwrap();
        assert!(
            log.contains("== bad: echo nope") && log.contains("nope\n"),
            "{log}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
