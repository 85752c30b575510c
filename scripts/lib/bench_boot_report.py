"""Summarise boot-time samples: medians, ratios to QEMU q35, VM exits, JSON and an SVG bar chart."""
import json
import os
import statistics
import subprocess
import sys
from collections import defaultdict

samples_path, json_path, svg_path, guest = sys.argv[1:5]
samples = defaultdict(list)
# Exits per boot, by KVM counter (-1: not counted).
COUNTERS = ["exits", "io", "npf_mmio", "hlt"]
exits = defaultdict(lambda: defaultdict(list))
for line in open(samples_path):
    vmm, _run, ms, *rest = line.rstrip("\n").split("\t")
    samples[vmm].append(int(ms))
    for name, n in zip(COUNTERS, (rest[0].split() if rest else [])):
        if int(n) >= 0:
            exits[vmm][name].append(int(n))

medians = {v: statistics.median(s) for v, s in samples.items()}
base = medians.get("qemu-q35")
report = {
    "benchmark": "boot-to-init",
    "guest": guest,
    "unit": "ms",
    "runs": {v: s for v, s in samples.items()},
    "median_ms": medians,
    "ratio_to_qemu_q35": {v: (m / base if base else None) for v, m in medians.items()},
    "goal": "cxlvmm <= 0.5 x qemu-q35, fewer exits than qemu-microvm",
    "exits": {v: {c: n for c, n in per.items()} for v, per in exits.items()},
    "median_exits": {v: {c: statistics.median(n) for c, n in per.items()} for v, per in exits.items()},
}
if base:
    report["goal_met"] = medians["cxlvmm"] <= 0.5 * base
json.dump(report, open(json_path, "w"), indent=2)

print(f"\nboot to /init, guest {guest}, median of {len(next(iter(samples.values())))} runs:")
for v, m in medians.items():
    ratio = f"{m / base:.2f}x qemu-q35" if base else ""
    e = report["median_exits"].get(v, {})
    counted = ", ".join(f"{c} {e[c]:.0f}" for c in COUNTERS if c in e)
    print(f"  {v:14s} {m:8.0f} ms   {ratio:16s} {counted}")
print(json.dumps(report))

# A horizontal bar chart of the medians with the individual runs as dots,
# drawn by the workspace's plot tool (tools/plot, built by scripts/bench-boot).
bars = [{"label": v, "segments": [{"label": "median", "value": m}],
         "color": "#2b7bb9" if v.startswith("cxlvmm") else "#999", "dots": samples[v], "note": f"{m:.0f}"}
        for v, m in medians.items()]
chart = {"bars": {"title": f"Boot to /init (guest {guest}), median and runs, ms",
                  "axis": {"label": "ms"}, "panels": [{"bars": bars}]}}
subprocess.run([os.environ.get("SVG_PLOT", "target/release/svg-plot"), "-", svg_path],
               input=json.dumps(chart), text=True, check=True)
