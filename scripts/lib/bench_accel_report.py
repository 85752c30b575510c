#!/usr/bin/env python3
"""Report of scripts/bench-accel: the guest's bench JSON (from the console)
beside the fabric model's idle figures (`cxlvmm check --json`).

  bench_accel_report.py CONSOLE MODEL_JSON OUT_DIR [NAME]

Writes OUT_DIR/NAME.json and NAME.svg (NAME: accel).
"""
import json
import os
import subprocess
import sys

console, model_path, out = sys.argv[1:4]
name = sys.argv[4] if len(sys.argv) > 4 else "accel"
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
        model_ps = link_gbps = None
        if entry is not None:
            small = entry[f"small_{direction}_ps"]
            link_gbps = entry[f"{direction}_gbps"]
            model_ps = small + max(pt["bytes"] - 64, 0) / link_gbps * 1000.0
        row = {"path": desc, "bytes": pt["bytes"], "device_ps": pt["device_ps"],
               "device_gbps": pt["device_gbps"], "guest_ns": pt["guest_ns"],
               "model_idle_ps": model_ps, "model_link_gbps": link_gbps,
               "device_over_model": (pt["device_ps"] / model_ps) if model_ps else None,
               "guest_over_model": (pt["guest_ns"] * 1000.0 / model_ps) if model_ps else None}
        if "batch" in pt:
            total = pt["bytes"] * pt["batch"]
            row.update({"batch": pt["batch"], "batch_device_gbps": total / pt["batch_device_ps"] * 1000.0,
                        "batch_guest_gbps": total / pt["batch_guest_ns"],
                        "batch_guest_over_link": (total / pt["batch_guest_ns"] / link_gbps) if link_gbps else None})
        rows.append(row)

json.dump({"bench": "accel", "topology": "examples/accelerators.toml", "device": bench.get("bdf"),
           "clock": os.environ.get("BENCH_ACCEL_CLOCK", "host"), "rows": rows},
          open(os.path.join(out, f"{name}.json"), "w"), indent=1)


def cell(v, fmt, width):
    return f"{v:{width}{fmt}}" if v is not None else f"{'-':>{width}}"


print("one COPY alone (latency): device and guest time against the model's idle time")
print(f"{'path':40} {'bytes':>8} {'model ns':>10} {'device ns':>10} {'guest ns':>10} {'guest/model':>11}")
for r in rows:
    m = r["model_idle_ps"] / 1000 if r["model_idle_ps"] else None
    print(f"{r['path']:40} {r['bytes']:8} {cell(m, '.1f', 10)} {r['device_ps'] / 1000:10.1f} "
          f"{r['guest_ns']:10} {cell(r['guest_over_model'], '.3f', 11)}")
print()
print("a batch of COPYs (bandwidth, 512 MiB in all, at most 1536 COPYs): guest-measured against the model's link bound")
print(f"{'path':40} {'bytes':>8} {'batch':>5} {'link GB/s':>9} {'device GB/s':>11} {'guest GB/s':>10} {'guest/link':>10}")
for r in rows:
    if "batch" not in r:
        continue
    print(f"{r['path']:40} {r['bytes']:8} {r['batch']:5} {cell(r['model_link_gbps'], '.2f', 9)} "
          f"{r['batch_device_gbps']:11.2f} {r['batch_guest_gbps']:10.2f} {cell(r['batch_guest_over_link'], '.3f', 10)}")
series = []
for path in dict.fromkeys(r["path"] for r in rows):
    mine = [r for r in rows if r["path"] == path]
    if all("batch" in r for r in mine):
        series.append({"name": f"{path} (guest clock, batch)",
                       "points": [(r["bytes"], r["batch_guest_gbps"]) for r in mine]})
    series.append({"name": f"{path} (device)", "points": [(r["bytes"], r["device_gbps"]) for r in mine]})
    mpts = [(r["bytes"], r["bytes"] / r["model_idle_ps"] * 1000.0) for r in mine if r["model_idle_ps"]]
    if mpts:
        series.append({"name": f"{path} (model, idle)", "color": "#bbb", "points": mpts})
chart = {"line": {"title": "Accelerator DMA: bandwidth vs transfer size, gpu0 of examples/accelerators.toml",
                  "x": {"label": "bytes per COPY", "log": True},
                  "y": {"label": "GB/s", "log": True},
                  "series": series}}
subprocess.run([os.environ.get("SVG_PLOT", "target/release/svg-plot"), "-", os.path.join(out, f"{name}.svg")],
               input=json.dumps(chart), text=True, check=True)
print(f"wrote {out}/{name}.json, {out}/{name}.svg")
