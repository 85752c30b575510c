#!/usr/bin/env python3
"""Prints what is needed to understand each job under a `cxlvmm test` --out
folder that did not pass: its status and reason, every splat the harness
found (title, frames, the console lines of its report), what its guest script
printed (the console between the boot marker and the kernel log the harness
appends; there each case's CHECK lines are), the last lines of the kernel
log and of the VMM's log. For CI logs, where the job folders are gone once
the machine is.

  e2e-failures.py OUT_DIR [KERNEL_LOG_LINES]

KERNEL_LOG_LINES (default 40) sets how much of the kernel log's tail is
shown; the script's output is shown up to its last SCRIPT_LINES lines.
"""
import json
import pathlib
import sys

out = pathlib.Path(sys.argv[1])
tail_lines = int(sys.argv[2]) if len(sys.argv) > 2 else 40


# Console lines shown from the start of each splat (a soft lockup's or a
# WARN's whole report with its call trace).
REPORT_LINES = 60


# The script's lines shown: a case's checks and figures come last.
SCRIPT_LINES = 80

# Markers the guest's init prints around the script and the kernel log
# (runner/src/script.rs).
BOOTED = "CXLVMM-BOOTED"
DMESG_BEGIN = "CXLVMM-DMESG-BEGIN"


def script_and_kernel_lines(console):
    """The script's output and the kernel log appended after it; a console
    without the markers (a boot that never reached the script) is all
    kernel log."""
    begin = next((i for i, l in enumerate(console) if l.startswith(BOOTED)), None)
    dmesg = next((i for i, l in enumerate(console) if l.startswith(DMESG_BEGIN)), None)
    if begin is None:
        return [], console
    end = dmesg if dmesg is not None and dmesg > begin else len(console)
    return console[begin + 1 : end], console[end:]


def read_lines(path):
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return ["(no " + path.name + ")"]


for f in sorted(out.glob("**/result.json")):
    try:
        r = json.loads(f.read_text())
    except (OSError, ValueError):
        continue
    # An earlier try's files (try-N/) are the job's own report's attempts.
    if r.get("status") == "PASS" or any(p.startswith("try-") for p in f.parts):
        continue
    job = f.parent
    console = read_lines(job / "console.log")
    print(f"\n==== {r.get('id')}: {r.get('status')} {r.get('reason', '')}".rstrip())
    for s in r.get("splats", []):
        if s.get("ignored"):
            continue
        when = f" at {s['time']:.1f} s" if s.get("time") is not None else ""
        print(f"-- splat {s.get('kind')}{when}, console line {s.get('line')}: {s.get('title')}")
        print(f"   frames: {' < '.join(s.get('frames', []))}")
        start = max(int(s.get("line") or 1) - 1, 0)
        for line in console[start : start + REPORT_LINES]:
            print(f"   | {line}")
    for attempt in r.get("attempts", []):
        print(f"-- earlier attempt: {json.dumps(attempt)[:300]}")
    script, kernel = script_and_kernel_lines(console)
    print(f"-- guest script's output, last {SCRIPT_LINES} lines ({job / 'console.log'})")
    for line in script[-SCRIPT_LINES:]:
        print(f"   | {line}")
    print(f"-- kernel log or console, last {tail_lines} lines")
    for line in kernel[-tail_lines:]:
        print(f"   | {line}")
    print("-- vmm.log, last 20 lines")
    for line in read_lines(job / "vmm.log")[-20:]:
        print(f"   | {line}")
