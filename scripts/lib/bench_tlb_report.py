"""Summarise scripts/bench-tlb samples: medians, ratios, JSON and an SVG chart.

    bench_tlb_report.py SAMPLES.jsonl OUT.json OUT.svg

Input: cxlvmm-lat chase JSON lines, each with the host backing ("backing")
and the most huge-page memory the host used during that guest
("host_anon_thp_kb", "host_shmem_thp_kb", "host_hugetlb_kb") added. The
label is "ram" (guest RAM, node 0) or "cxl" (the native interleaved region).
"""
import json
import os
import statistics
import subprocess
import sys
from collections import defaultdict

samples_path, json_path, svg_path = sys.argv[1:4]
BACKINGS = ["anon", "thp", "hugetlb"]
GOAL = 0.95  # region speed / RAM speed, same backing

samples = defaultdict(list)
host = {}
for line in open(samples_path):
    if not line.strip():
        continue
    s = json.loads(line)
    samples[(s["backing"], s["label"])].append(s["p50_ns"])
    host[s["backing"]] = {k: s[k] for k in ("host_anon_thp_kb", "host_shmem_thp_kb", "host_hugetlb_kb")}
backings = [b for b in BACKINGS if (b, "ram") in samples or (b, "cxl") in samples]
if not backings:
    sys.exit("bench-tlb: no samples")

report = {"metric": "cxlvmm-lat chase p50 ns per load (median over runs)", "goal_cxl_speed_vs_ram": GOAL,
          "backings": {}}
print(f"{'backing':8s} {'RAM p50':>10s} {'CXL p50':>10s} {'CXL speed/RAM':>14s}   host huge pages (kB: anon THP, shmem THP, hugetlbfs)")
for b in backings:
    ram, cxl = samples.get((b, "ram"), []), samples.get((b, "cxl"), [])
    r = statistics.median(ram) if ram else None
    c = statistics.median(cxl) if cxl else None
    speed = r / c if r and c else None
    report["backings"][b] = {"ram_p50_ns": r, "cxl_p50_ns": c, "ram_runs": ram, "cxl_runs": cxl,
                             "cxl_speed_vs_ram": speed, "goal_met": speed is not None and speed >= GOAL,
                             "host": host.get(b)}
    h = host.get(b, {})
    print(f"{b:8s} {r or 0:10.1f} {c or 0:10.1f} {speed or 0:14.3f}   "
          f"{h.get('host_anon_thp_kb', 0)}, {h.get('host_shmem_thp_kb', 0)}, {h.get('host_hugetlb_kb', 0)}")
if "anon" in report["backings"]:
    base = report["backings"]["anon"]
    for b in backings:
        if b == "anon":
            continue
        x = report["backings"][b]
        for where in ("ram", "cxl"):
            a, v = base[f"{where}_p50_ns"], x[f"{where}_p50_ns"]
            if a and v:
                x[f"{where}_speedup_vs_anon"] = a / v
                print(f"  {b} vs anon, {where}: {a / v:.3f}x")
for b in backings:
    g = report["backings"][b]
    print(f"  goal CXL/RAM >= {GOAL} with {b}: {'met' if g['goal_met'] else 'NOT met'}")
json.dump(report, open(json_path, "w"), indent=2)

colors = {"ram": "#777", "cxl": "#2b7bb9"}
bars = []
for b in backings:
    for where in ("ram", "cxl"):
        runs = samples.get((b, where), [])
        if runs:
            m = statistics.median(runs)
            bars.append({"label": f"{b} {where}", "segments": [{"label": "median", "value": m}],
                         "color": colors[where], "dots": runs, "note": f"{m:.0f} ns"})
chart = {"bars": {"title": "Random pointer chase over a big buffer: guest RAM and a native CXL region, per host backing",
                  "subtitle": "p50 ns per dependent load; bar: median of runs, dots: runs (nested rig: ratios only)",
                  "axis": {"label": "ns per load"}, "panels": [{"title": "p50 latency", "bars": bars}]}}
subprocess.run([os.environ.get("SVG_PLOT", "target/release/svg-plot"), "-", svg_path],
               input=json.dumps(chart), text=True, check=True)
