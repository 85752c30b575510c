#!/usr/bin/env python3
"""Prints the case names of a `cxlvmm test` manifest, one a line."""
import sys
import tomllib

with open(sys.argv[1], "rb") as f:
    for case in tomllib.load(f).get("case", []):
        print(case["name"])
