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
  slope       the summary's slope of the medians (from the 2 us to the 20 us
              media step, scripts/lib/bench_timed_report.py) within 1 % of 1
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

# A step the guest did not report has null figures: it fails every check
# it is part of.
def off_by(s):
    """How far the step's median lies beyond its bound (ns; inf if none)."""
    if s.get("p50_ns") is None:
        return float("inf")
    return abs(s["p50_ns"] - s["model_ns"]) - max(0.01 * s["model_ns"], 20)


worst = max(steps, key=off_by)
bad = [s for s in steps if off_by(s) > 0]
check("median", not bad,
      f"{len(steps) - len(bad)} of {len(steps)} steps within 1 % or 20 ns; furthest: step {worst['step']}, "
      f"model {worst['model_ns']:.1f} ns, median {worst.get('p50_ns')} ns")

unreported = [s["step"] for s in steps if s.get("backward_loads") is None]
back = sum(s["backward_loads"] or 0 for s in steps)
check("stepped", back == 0 and not unreported,
      f"{back} loads stepped back over {len(steps)} steps"
      + (f"; steps {unreported} not reported" if unreported else ""))

slope = summary.get("slope_p50")
check("slope", slope is not None and abs(slope - 1) <= 0.01, f"slope of the medians {slope}")

hops = summary.get("hop_additivity") or []
hop_steps = sum(1 for s in steps if s["sweep"] == "hop")
bad_hops = [h for h in hops if abs(h["error_pct"]) > 5]
# One entry per hop step after the first; a step without a median has none.
check("hop", bool(hops) and len(hops) == hop_steps - 1 and not bad_hops,
      "; ".join(f"+{h['delta_model_ns'] / 1e3:g} us -> +{h['delta_guest_ns'] / 1e3:g} us" for h in hops) or "no hop steps")

long_steps = [s for s in steps if s["model_ns"] >= 20_000]
mean_off = [(float("inf") if s.get("mean_error_pct") is None else abs(s["mean_error_pct"]), s) for s in long_steps]
bad_means = [s for off, s in mean_off if off > 5]
furthest = max(mean_off, key=lambda x: x[0], default=None)
check("mean", bool(long_steps) and not bad_means,
      f"{len(long_steps) - len(bad_means)} of {len(long_steps)} steps from 20 us within 5 %"
      + (f"; furthest {furthest[0]:.1f} % off at {furthest[1]['model_ns'] / 1e3:.1f} us" if furthest else ""))

sys.exit(1 if failed else 0)
