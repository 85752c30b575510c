#!/usr/bin/env python3
"""check: the loops of mailbox-concurrent and region-concurrent.

The guest runs one loop per memdev, pinned to a CPU of its own, all started
together, each reporting
  <KIND>-LOOP <memdev> cpu=<pinned> ran_on=<cpu seen> rounds=<ok>/<done> start=<s> end=<s>
Every round of every loop must pass, the four loops must have run on four
different CPUs, and their run times must overlap.

  check_loops.py CONSOLE KIND ROUNDS
"""
import re
import sys

log, kind, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
text = open(log, "rb").read().decode(errors="replace").replace("\r", "")
loops = [m.groupdict() for m in re.finditer(
    rf"^{kind}-LOOP (?P<dev>mem\d+) cpu=(?P<cpu>\d+) ran_on=(?P<ran>\d+) rounds=(?P<ok>\d+)/(?P<n>\d+) "
    r"start=(?P<start>[\d.]+) end=(?P<end>[\d.]+)", text, re.M)]
problems = []
if len(loops) != 4:
    problems.append(f"{len(loops)} loops reported, not 4")
if len({l["dev"] for l in loops}) != len(loops):
    problems.append("a memdev was driven twice")
if sorted(int(l["ran"]) for l in loops) != list(range(len(loops))):
    problems.append("loops did not run on CPUs 0..3, one each")
for l in loops:
    if l["ran"] != l["cpu"] or l["ok"] != l["n"] or int(l["n"]) < rounds:
        problems.append(f'{l["dev"]}: cpu {l["cpu"]} ran on {l["ran"]}, {l["ok"]} of {l["n"]} rounds passed (at least {rounds} asked)')
if loops:
    last_start = max(float(l["start"]) for l in loops)
    first_end = min(float(l["end"]) for l in loops)
    print(f"loops overlapped for {first_end - last_start:.2f} s (all four running)")
    if first_end <= last_start:
        problems.append("the loops did not run at the same time")
if re.search(rf"^{kind}.*FAILED", text, re.M):
    problems.append("a round failed")
for p in problems:
    print("problem:", p)
sys.exit(1 if problems else 0)
