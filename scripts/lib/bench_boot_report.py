"""Summarise boot-time samples: medians, ratios to QEMU q35, JSON and an SVG bar chart."""
import json
import os
import statistics
import subprocess
import sys
from collections import defaultdict

samples_path, json_path, svg_path, guest = sys.argv[1:5]
samples = defaultdict(list)
for line in open(samples_path):
    vmm, _run, ms = line.split("\t")
    samples[vmm].append(int(ms))

medians = {v: statistics.median(s) for v, s in samples.items()}
base = medians.get("qemu-q35")
report = {
    "benchmark": "boot-to-init",
    "guest": guest,
    "unit": "ms",
    "runs": {v: s for v, s in samples.items()},
    "median_ms": medians,
    "ratio_to_qemu_q35": {v: (m / base if base else None) for v, m in medians.items()},
    "goal": "cxlvmm <= 0.5 x qemu-q35",
}
if base:
    report["goal_met"] = medians["cxlvmm"] <= 0.5 * base
json.dump(report, open(json_path, "w"), indent=2)

print(f"\nboot to /init, guest {guest}, median of {len(next(iter(samples.values())))} runs:")
for v, m in medians.items():
    ratio = f"{m / base:.2f}x qemu-q35" if base else ""
    print(f"  {v:14s} {m:8.0f} ms   {ratio}")
print(json.dumps(report))

# A horizontal bar chart of the medians with the individual runs as dots,
# drawn by the workspace's plot tool (tools/plot, built by scripts/bench-boot).
bars = [{"label": v, "segments": [{"label": "median", "value": m}],
         "color": "#2b7bb9" if v == "cxlvmm" else "#999", "dots": samples[v], "note": f"{m:.0f}"}
        for v, m in medians.items()]
chart = {"bars": {"title": f"Boot to /init (guest {guest}), median and runs, ms",
                  "axis": {"label": "ms"}, "panels": [{"bars": bars}]}}
subprocess.run([os.environ.get("SVG_PLOT", "target/release/svg-plot"), "-", svg_path],
               input=json.dumps(chart), text=True, check=True)
