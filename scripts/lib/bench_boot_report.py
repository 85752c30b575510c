"""Summarise boot-time samples: medians, ratios to QEMU q35, JSON and an SVG bar chart."""
import json
import statistics
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

# A horizontal bar chart of the medians with the individual runs as dots.
w, bar_h, gap, left = 640, 28, 14, 130
h = 60 + len(medians) * (bar_h + gap)
vmax = max(max(s) for s in samples.values()) * 1.1
x = lambda ms: left + (w - left - 30) * ms / vmax
parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="13">',
         f'<text x="10" y="22" font-size="15">Boot to /init (guest {guest}), median and runs, ms</text>']
for i, (v, m) in enumerate(medians.items()):
    y = 40 + i * (bar_h + gap)
    color = "#2b7bb9" if v == "cxlvmm" else "#999"
    parts.append(f'<text x="10" y="{y + bar_h * 0.7}">{v}</text>')
    parts.append(f'<rect x="{left}" y="{y}" width="{x(m) - left:.1f}" height="{bar_h}" fill="{color}"/>')
    parts.append(f'<text x="{x(m) + 4:.1f}" y="{y + bar_h * 0.7}">{m:.0f}</text>')
    for s in samples[v]:
        parts.append(f'<circle cx="{x(s):.1f}" cy="{y + bar_h / 2}" r="3" fill="black"/>')
parts.append("</svg>")
open(svg_path, "w").write("\n".join(parts))
