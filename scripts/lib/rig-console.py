#!/usr/bin/env python3
"""Turn the L1 serial console (QEMU's stdout, on stdin here) into CMD's output.

    rig-console.py LOG STATUS [READY-MESSAGE-PREFIX]

With RIG_HEARTBEAT=FILE in the environment, FILE's mtime is bumped (at most
once a second) whenever L1 writes anything, so that scripts/rig can tell a
silent, hung L1 from a busy one.

L1's /init (scripts/lib/rig-init.sh) frames CMD's output with two markers:
\\036rig-start\\036 before CMD runs and \\036rig-exit=N\\036 after it ended.
Only what lies between them goes to stdout (with "\\r\\n" turned into "\\n");
the firmware/kernel text before and the shutdown text after go to LOG, which
scripts/rig shows when L1 fails.  N is written to STATUS: it is the full exit
status, of which the isa-debug-exit device can only carry the low 7 bits.
"""
import os
import re
import signal
import sys
import time

RS = b"\x1e"
START = RS + b"rig-start" + RS
EXIT = re.compile(rb"\x1erig-exit=(\d+)\x1e")
# The longest prefix of a marker we might have to hold back between reads.
MAX_MARKER = 32


def main():
    log_path, status_path = sys.argv[1], sys.argv[2]
    ready_prefix = sys.argv[3] if len(sys.argv) > 3 else None
    # Ctrl-C reaches the whole foreground group; QEMU dies of it, and we must
    # keep draining its output until EOF rather than die first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    t0 = time.monotonic()
    log = open(log_path, "wb")
    out = sys.stdout.buffer
    out_ok = True
    state = "pre"  # pre -> run -> post
    held = b""  # bytes not yet classified (possible marker prefix or "\r")
    heartbeat = os.environ.get("RIG_HEARTBEAT")
    beat_at = 0.0

    def beat():
        nonlocal beat_at
        now = time.monotonic()
        if heartbeat and now - beat_at >= 1.0:
            beat_at = now
            try:
                os.utime(heartbeat)
            except OSError:
                pass

    def emit(data):
        nonlocal out_ok
        if not out_ok or not data:
            return
        try:
            out.write(data)
            out.flush()
        except (BrokenPipeError, OSError):
            # The reader went away (e.g. `rig ... | head`): stop writing, but
            # keep reading so QEMU never blocks on a full pipe.
            out_ok = False

    while True:
        chunk = os.read(0, 65536)
        if not chunk:
            break
        beat()
        buf = held + chunk
        held = b""
        if state == "pre":
            i = buf.find(START)
            if i < 0:
                # Keep a possible partial marker for the next read.
                keep = min(len(buf), len(START) - 1)
                log.write(buf[: len(buf) - keep])
                held = buf[len(buf) - keep :]
                continue
            log.write(buf[:i])
            log.write(b"\n--- rig: CMD started ---\n")
            log.flush()
            if ready_prefix:
                sys.stderr.write(f"{ready_prefix} {time.monotonic() - t0:.1f}s\n")
                sys.stderr.flush()
            state = "run"
            buf = buf[i + len(START) :]
        if state == "run":
            m = EXIT.search(buf)
            if m:
                emit(buf[: m.start()].replace(b"\r\n", b"\n"))
                with open(status_path, "w") as f:
                    f.write(m.group(1).decode() + "\n")
                log.write(b"\n--- rig: CMD exited %s ---\n" % m.group(1))
                state = "post"
                buf = buf[m.end() :]
            else:
                # Hold back a trailing "\r" (maybe half of "\r\n") and anything
                # from the last RS on that could still grow into the marker.
                cut = len(buf)
                j = buf.rfind(RS)
                if j >= 0 and len(buf) - j < MAX_MARKER and b"\n" not in buf[j:]:
                    cut = j
                elif buf.endswith(b"\r"):
                    cut = len(buf) - 1
                emit(buf[:cut].replace(b"\r\n", b"\n"))
                held = buf[cut:]
                continue
        if state == "post":
            log.write(buf)

    if state == "run":
        emit(held.replace(b"\r\n", b"\n"))
    else:
        log.write(held)
    log.close()


if __name__ == "__main__":
    main()
