//! The serial console on the host side: guest output to stdout (and an
//! optional transcript), host input from stdin, raw terminal when interactive.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use devices::legacy::SerialPort;
use devices::{ExitReason, ExitRequest};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::terminal::Terminal;

/// Guest console output: stdout, plus the `--serial-log` transcript.
pub struct ConsoleOut {
    stdout: io::Stdout,
    log: Option<File>,
}

impl ConsoleOut {
    pub fn new(log: Option<File>) -> Self {
        Self {
            stdout: io::stdout(),
            log,
        }
    }
}

impl Write for ConsoleOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Neither a closed stdout nor a full disk may stall the guest.
        let mut out = self.stdout.lock();
        let _ = out.write_all(buf);
        let _ = out.flush();
        if let Some(log) = &mut self.log {
            let _ = log.write_all(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = self.stdout.flush();
        if let Some(log) = &mut self.log {
            let _ = log.flush();
        }
        Ok(())
    }
}

pub type Console = Arc<Mutex<SerialPort<ConsoleOut>>>;

/// Puts an interactive terminal in raw mode and restores it when dropped.
pub struct RawTerminal {
    active: bool,
}

impl RawTerminal {
    pub fn enter() -> Self {
        let stdin = io::stdin();
        let active = stdin.is_terminal() && stdin.lock().set_raw_mode().is_ok();
        Self { active }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if self.active {
            let _ = io::stdin().lock().set_canon_mode();
        }
    }
}

/// Ctrl-A, the escape prefix; Ctrl-A x quits, Ctrl-A Ctrl-A sends one Ctrl-A.
const ESCAPE: u8 = 0x01;

/// Forwards stdin to the serial port until EOF or until `stop` is signalled.
pub fn spawn_input(
    console: Console,
    exit: ExitRequest,
    stop: EventFd,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("console-in".into())
        .spawn(move || {
            if let Err(e) = crate::seccomp::enter(crate::seccomp::ThreadRole::ConsoleInput) {
                eprintln!("cxlvmm: {e}");
                exit.request(ExitReason::Fatal);
                return;
            }
            if let Err(e) = input_loop(&console, &exit, &stop) {
                log::debug!("console input stopped: {e}");
            }
        })
}

fn input_loop(console: &Console, exit: &ExitRequest, stop: &EventFd) -> io::Result<()> {
    const STDIN: u64 = 0;
    const STOP: u64 = 1;
    let epoll = Epoll::new()?;
    let stdin = io::stdin();
    let fd = stdin.as_raw_fd();
    // No usable stdin (closed, or a regular file epoll refuses): no input.
    epoll.ctl(
        ControlOperation::Add,
        fd,
        EpollEvent::new(EventSet::IN, STDIN),
    )?;
    epoll.ctl(
        ControlOperation::Add,
        stop.as_raw_fd(),
        EpollEvent::new(EventSet::IN, STOP),
    )?;
    let interactive = stdin.is_terminal();
    let mut escaped = false;
    let mut events = [EpollEvent::default(); 2];
    let mut buf = [0u8; 256];
    loop {
        let n = match epoll.wait(-1, &mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        for ev in &events[..n] {
            if ev.data() == STOP {
                return Ok(());
            }
            let got = stdin.lock().read(&mut buf)?;
            if got == 0 {
                return Ok(()); // EOF
            }
            let mut out = Vec::with_capacity(got);
            for &b in &buf[..got] {
                if interactive && escaped {
                    escaped = false;
                    match b {
                        b'x' | b'X' => {
                            exit.request(ExitReason::Quit);
                            return Ok(());
                        }
                        ESCAPE => out.push(ESCAPE),
                        _ => {}
                    }
                } else if interactive && b == ESCAPE {
                    escaped = true;
                } else {
                    out.push(b);
                }
            }
            console
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .queue_input(&out);
        }
    }
}
