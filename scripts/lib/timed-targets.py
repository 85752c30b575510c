#!/usr/bin/env python3
"""Checks a timed-memory sweep of an instruction-counted rig against what
the virtual clock must give there; exits 1 if any check fails.

  timed-targets.py TIMED_JSON

TIMED_JSON is `scripts/bench-timed --icount 0 --part sweep`'s summary
(build/bench/timed.json). In that rig an exit costs the same every time, so
the error left is the clock's own (docs/performance.md, "One L1 CPU for the
sweep": per-load medians within 1 ns of the model, whole-chase means
within 2.5 %), and the bounds below are loose against that and tight
against any real fault of the clock (the constant +53 ns it once added
per load fails the first at 1.1 us):

  median      every step's per-load median within 1 % or 20 ns of the model
  stepped     no load whose second TSC read is below its first
  slope       (median at the last media step - at the first) / (model
              difference) within 1 % of 1
  hop         each change of a switch's hop latency moves the median by the
              change, within 5 %
  mean        whole-chase means within 5 % from 20 us (shorter chases of a
              short sweep cannot repay one late entry of a few hundred us)

Prints one "TIMED-TARGET <name>: ok|FAILED (...)" line per check.
"""
import json
import sys

if len(sys.argv) != 2:
    sys.exit("usage: timed-targets.py TIMED_JSON")
d = json.load(open(sys.argv[1]))
steps, summary = d["steps"], d["summary"]
failed = 0


def check(name, ok, detail):
    global failed
    print(f"TIMED-TARGET {name}: {'ok' if ok else 'FAILED'} ({detail})")
    failed |= not ok


if not steps:
    check("steps", False, "the sweep recorded no step")
    sys.exit(1)

worst = max(steps, key=lambda s: abs(s["p50_ns"] - s["model_ns"]) - max(0.01 * s["model_ns"], 20))
bad = [s for s in steps if abs(s["p50_ns"] - s["model_ns"]) > max(0.01 * s["model_ns"], 20)]
check("median", not bad,
      f"{len(steps) - len(bad)} of {len(steps)} steps within 1 % or 20 ns; furthest: step {worst['step']}, "
      f"model {worst['model_ns']:.1f} ns, median {worst['p50_ns']} ns")

back = sum(s["backward_loads"] for s in steps)
check("stepped", back == 0, f"{back} loads stepped back over {len(steps)} steps")

slope = summary.get("slope_p50")
check("slope", slope is not None and abs(slope - 1) <= 0.01, f"slope of the medians {slope}")

hops = summary.get("hop_additivity") or []
bad_hops = [h for h in hops if abs(h["error_pct"]) > 5]
check("hop", bool(hops) and not bad_hops,
      "; ".join(f"+{h['delta_model_ns'] / 1e3:g} us -> +{h['delta_guest_ns'] / 1e3:g} us" for h in hops) or "no hop steps")

long_steps = [s for s in steps if s["model_ns"] >= 20_000]
bad_means = [s for s in long_steps if abs(s["mean_error_pct"]) > 5]
furthest = max(long_steps, key=lambda s: abs(s["mean_error_pct"]), default=None)
check("mean", bool(long_steps) and not bad_means,
      f"{len(long_steps) - len(bad_means)} of {len(long_steps)} steps from 20 us within 5 %"
      + (f"; furthest {furthest['mean_error_pct']:+.1f} % at {furthest['model_ns'] / 1e3:.1f} us" if furthest else ""))

sys.exit(1 if failed else 0)
