#!/usr/bin/env python3
"""Prints what is needed to understand each job under a `cxlvmm test` --out
folder that did not pass: its status and reason, every splat the harness
found (title, frames, the console lines of its report), the last lines of its
console and of the VMM's log. For CI logs, where the job folders are gone
once the machine is.

  e2e-failures.py OUT_DIR [CONSOLE_LINES]
"""
import json
import pathlib
import sys

out = pathlib.Path(sys.argv[1])
tail_lines = int(sys.argv[2]) if len(sys.argv) > 2 else 40


# Console lines shown from the start of each splat (a soft lockup's or a
# WARN's whole report with its call trace).
REPORT_LINES = 60


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
    print(f"-- console, last {tail_lines} lines ({job / 'console.log'})")
    for line in console[-tail_lines:]:
        print(f"   | {line}")
    print("-- vmm.log, last 20 lines")
    for line in read_lines(job / "vmm.log")[-20:]:
        print(f"   | {line}")
