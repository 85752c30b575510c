#!/usr/bin/env python3
"""Prints the id (case/kernel/topology) of every job under a `cxlvmm test`
--out folder whose result.json says PASS, one a line.

  e2e-passed.py OUT_DIR
"""
import json
import pathlib
import sys

for f in sorted(pathlib.Path(sys.argv[1]).glob("**/result.json")):
    try:
        r = json.loads(f.read_text())
    except (OSError, ValueError):
        continue
    if r.get("status") == "PASS":
        print(r["id"])
