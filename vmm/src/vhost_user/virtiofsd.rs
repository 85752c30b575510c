//! The `virtiofsd` daemon behind one `--share`: found, started on a
//! listening socket that cxlvmm made (`--fd`), so connecting cannot race
//! its start-up, and tied to cxlvmm's life (it exits when the connection
//! closes, and gets SIGTERM if cxlvmm dies first).

use std::io;
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::virtio::ShareSpec;

/// Where Debian (trixie), Fedora and QEMU's packages put it, after $PATH.
const KNOWN_PLACES: [&str; 2] = ["/usr/libexec/virtiofsd", "/usr/lib/qemu/virtiofsd"];
/// The descriptor number the listening socket has in the daemon.
const LISTEN_FD: i32 = 3;

/// Names the daemon when `--virtiofsd` does not (e.g. for every job of
/// `cxlvmm test`).
pub const ENV: &str = "CXLVMM_VIRTIOFSD";

/// The daemon binary: `explicit` if given, else $CXLVMM_VIRTIOFSD (either
/// must exist), else the first `virtiofsd` on $PATH or in [`KNOWN_PLACES`].
pub fn find(explicit: Option<&Path>) -> Result<PathBuf, String> {
    let from_env = std::env::var_os(ENV).map(PathBuf::from);
    let named = explicit
        .map(|p| (p.to_path_buf(), "--virtiofsd".to_string()))
        .or_else(|| from_env.map(|p| (p, format!("${ENV}"))));
    if let Some((p, by)) = named {
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("{by} {}: no such file", p.display()))
        };
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join("virtiofsd"));
    on_path
        .chain(KNOWN_PLACES.iter().map(PathBuf::from))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "--share needs virtiofsd: none on $PATH or at {}; install it (Debian: apt-get install virtiofsd; \
                 or cargo install virtiofsd) or name it with --virtiofsd PATH or ${ENV}",
                KNOWN_PLACES.join(", ")
            )
        })
}

/// A running daemon serving `dir`.
pub struct Virtiofsd {
    child: Child,
    binary: PathBuf,
}

impl Virtiofsd {
    /// Starts `binary` serving `share` and returns it with the connected
    /// socket; an error says what failed, naming the binary.
    pub fn start(binary: &Path, share: &ShareSpec) -> Result<(Self, UnixStream), String> {
        let starting = |e: io::Error| format!("starting {}: {e}", binary.display());
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "cxlvmm-{}-virtiofsd-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        // An abstract address: nothing in the file system to clean up.
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).map_err(starting)?;
        let listener = UnixListener::bind_addr(&addr).map_err(starting)?;
        let listen_fd = listener.as_raw_fd();
        let mut cmd = Command::new(binary);
        cmd.arg(format!("--fd={LISTEN_FD}"))
            .arg("--shared-dir")
            .arg(&share.dir)
            .args(["--cache=auto", "--log-level=error"]);
        if share.read_only {
            cmd.arg("--readonly");
        }
        if !share.submounts {
            cmd.arg("--no-announce-submounts");
        }
        // Its namespace sandbox needs privileges an ordinary user lacks.
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            cmd.arg("--sandbox=none");
        }
        // SAFETY: the closure runs in the child between fork and exec and
        // only makes async-signal-safe calls (prctl, dup2) on descriptors
        // that exist in the child: the listener's, copied to LISTEN_FD
        // without close-on-exec.
        unsafe {
            cmd.pre_exec(move || {
                let inherited = if listen_fd == LISTEN_FD {
                    // dup2 onto itself would keep close-on-exec.
                    libc::fcntl(LISTEN_FD, libc::F_SETFD, 0)
                } else {
                    libc::dup2(listen_fd, LISTEN_FD)
                };
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 || inherited < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(starting)?;
        drop(listener); // the daemon holds its copy
        let mut daemon = Self {
            child,
            binary: binary.to_path_buf(),
        };
        // Refused only when the daemon has already exited and closed it.
        match UnixStream::connect_addr(&addr) {
            Ok(stream) => Ok((daemon, stream)),
            Err(e) => Err(daemon.explain(e)),
        }
    }

    /// Why a failed conversation failed: the daemon's exit status if it has
    /// exited, else `error`.
    pub fn explain(&mut self, error: io::Error) -> String {
        // A closed connection usually means it is exiting: give it a
        // moment to be reaped so that its status can be reported.
        for _ in 0..100 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return format!("{} exited ({status})", self.binary.display());
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        format!("{}: {error}", self.binary.display())
    }
}
