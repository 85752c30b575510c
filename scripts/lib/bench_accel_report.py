#!/usr/bin/env python3
"""Report of scripts/bench-accel: the guest's bench JSON (from the console)
beside the fabric model's idle figures (`cxlvmm check --json`).

  bench_accel_report.py CONSOLE MODEL_JSON OUT_DIR
"""
import json
import os
import subprocess
import sys

console, model_path, out = sys.argv[1:4]
line = next((l for l in open(console, "rb").read().decode(errors="replace").splitlines()
             if l.startswith("ACCEL-BENCH-JSON ")), None)
if line is None:
    sys.exit(f"bench-accel: no ACCEL-BENCH-JSON line in {console}")
bench = json.loads(line.split(" ", 1)[1])
model = json.load(open(model_path))
gpu0 = next(a for a in model["accelerators"] if a["id"] == "gpu0")
by_peer = {p["peer"]: p for p in gpu0["paths"]}


def model_path_of(name):
    """(description, model entry, direction) of a bench path of gpu0."""
    if name == "h2d":
        return "host -> VRAM", by_peer["host memory"], "read"
    if name == "d2h":
        return "VRAM -> host", by_peer["host memory"], "write"
    if name.startswith("peer:"):
        # Below the switch: gpu1; through the root complex: gpu2 (the bench
        # names peers by PCI address, in that order).
        return None, None, "write"
    if name.endswith("-write"):
        return "VRAM -> CXL region (mem0)", by_peer["mem0"], "write"
    if name.endswith("-read"):
        return "CXL region (mem0) -> VRAM", by_peer["mem0"], "read"
    return name, None, None


rows = []
peers = [p for p in bench["paths"] if p["path"].startswith("peer:")]
for p in bench["paths"]:
    desc, entry, direction = model_path_of(p["path"])
    if p["path"].startswith("peer:"):
        below = peers.index(p) == 0
        desc = "VRAM -> peer below the switch" if below else "VRAM -> peer through the root complex"
        entry = by_peer["gpu1" if below else "gpu2"]
    for pt in p["points"]:
        model_ps = None
        if entry is not None:
            small = entry[f"small_{direction}_ps"]
            gbps = entry[f"{direction}_gbps"]
            model_ps = small + max(pt["bytes"] - 64, 0) / gbps * 1000.0
        rows.append({"path": desc, "bytes": pt["bytes"], "device_ps": pt["device_ps"],
                     "device_gbps": pt["device_gbps"], "guest_ns": pt["guest_ns"],
                     "model_idle_ps": model_ps,
                     "device_over_model": (pt["device_ps"] / model_ps) if model_ps else None})

json.dump({"bench": "accel", "topology": "examples/accelerators.toml", "device": bench.get("bdf"),
           "rows": rows}, open(os.path.join(out, "accel.json"), "w"), indent=1)
print(f"{'path':40} {'bytes':>8} {'device ns':>12} {'model ns':>12} {'dev/model':>9} {'GB/s':>7} {'guest ns':>12}")
for r in rows:
    m = f"{r['model_idle_ps'] / 1000:12.1f}" if r["model_idle_ps"] else f"{'-':>12}"
    ratio = f"{r['device_over_model']:9.3f}" if r["device_over_model"] else f"{'-':>9}"
    print(f"{r['path']:40} {r['bytes']:8} {r['device_ps'] / 1000:12.1f} {m} {ratio} "
          f"{r['device_gbps']:7.2f} {r['guest_ns']:12}")
series = []
for path in dict.fromkeys(r["path"] for r in rows):
    pts = [(r["bytes"], r["device_gbps"]) for r in rows if r["path"] == path]
    series.append({"name": f"{path} (device)", "points": pts})
    mpts = [(r["bytes"], r["bytes"] / r["model_idle_ps"] * 1000.0) for r in rows
            if r["path"] == path and r["model_idle_ps"]]
    if mpts:
        series.append({"name": f"{path} (model, idle)", "color": "#bbb", "points": mpts})
chart = {"line": {"title": "Accelerator DMA: bandwidth vs transfer size, gpu0 of examples/accelerators.toml",
                  "x": {"label": "bytes per COPY", "log": True},
                  "y": {"label": "GB/s (device time between TIMESTAMPs)", "log": True},
                  "series": series}}
subprocess.run([os.environ.get("SVG_PLOT", "target/release/svg-plot"), "-", os.path.join(out, "accel.svg")],
               input=json.dumps(chart), text=True, check=True)
print(f"wrote {out}/accel.json, {out}/accel.svg")
