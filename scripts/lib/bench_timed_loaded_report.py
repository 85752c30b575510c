"""Report of scripts/bench-timed's loaded-latency part: the chaser's latency
beside one loader, measured by the guest (cxlvmm-lat loaded) and by the
model (fabric-sweep --loaded-latency, same topology and delays), point by
point; build/bench/timed-loaded.json and timed-loaded.svg (tools/plot).

Two comparisons:
- as is: the guest's mean per-load time against the model's mean latency;
- with the rig's extra: in the nested rig every access also shows the guest
  time the VMM cannot see of its exit (tens to hundreds of us with two busy
  vCPUs). That extra, measured at the idle point (guest mean - model idle
  latency), is guest time between the chaser's accesses as far as the
  fabric is concerned, so the model runs again with it as the chaser's
  think time, and the guest's means less it are compared with that model's.
  The idle point then agrees by construction; the loaded points test the
  queueing.

usage: bench_timed_loaded_report.py OUT_DIR GUEST_LOG MODEL_IDLE_NS TOPOLOGY DELAYS"""
import json
import os
import subprocess
import sys

from lat_results import lat_results

# Where the figures come from (scripts/bench-timed sets it).
RIG = os.environ.get("BENCH_TIMED_RIG", "nested rig")

out, log, model_idle, topology, delays = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4], sys.argv[5]
LIMIT_PCT = 10.0
SWEEP = os.environ.get("FABRIC_SWEEP", "target/release/fabric-sweep")

guest = {j.get("label"): j for j in lat_results(log)}
if "loaded" not in guest or "loaded-idle" not in guest:
    sys.exit(f"bench-timed: no loaded-latency results in {log}")
idle = guest["loaded-idle"]["points"][0]
extra_ns = max(0.0, idle["sample_mean_ns"] - model_idle)


def model(think_ns, name):
    """fabric-sweep's points for one loader: {delay: point}, and the idle point."""
    d = os.path.join(out, name)
    subprocess.run([SWEEP, "--loaded-latency", "--topology", topology, "--loaders", "1", "--delays", delays,
                    "--chase-loads", "20000", "--chase-think-ns", str(think_ns), d],
                   check=True, stdout=subprocess.DEVNULL)
    points = json.load(open(os.path.join(d, "loaded-latency.json")))["points"]
    by_delay = {}
    for p in points:
        if p["loaders"] == 1:
            by_delay.setdefault(round(p["delay_ns"]), p)
    return by_delay


raw, adjusted = model(0, "timed-loaded-model"), model(extra_ns, "timed-loaded-model-extra")


def err(a, b):
    return None if a is None or b is None or not b else 100.0 * (a - b) / b


stride = guest["loaded"]["load_stride"]
rows = [{"point": "idle (no loader)", "delay_ns": None, "guest_mean_ns": idle["sample_mean_ns"],
         "guest_p50_ns": idle["p50_ns"], "model_mean_ns": model_idle, "model_extra_mean_ns": model_idle,
         "guest_loads_per_ms": 0.0, "model_loads_per_ms": 0.0}]
for g in guest["loaded"]["points"]:
    d = round(g["delay_ns"])
    if d not in raw or d not in adjusted:
        continue
    rows.append({"point": f"1 loader, mean delay {d / 1000:g} us", "delay_ns": d,
                 "guest_mean_ns": g["sample_mean_ns"], "guest_p50_ns": g["p50_ns"],
                 "model_mean_ns": raw[d]["chase"]["mean_ns"],
                 "model_extra_mean_ns": adjusted[d]["chase"]["mean_ns"],
                 # loader_gbps counts the 8 bytes each load reads; the guest its stride.
                 "model_loads_per_ms": raw[d]["loader_gbps"] * 1e9 / 8 / 1e3,
                 "guest_loads_per_ms": g["load_GBps"] * 1e9 / stride / 1e3})
for r in rows:
    r["error_pct"] = err(r["guest_mean_ns"], r["model_mean_ns"])
    r["error_with_extra_pct"] = err(r["guest_mean_ns"] - extra_ns, r["model_extra_mean_ns"])


def fmt(v, unit="", scale=1.0):
    return "-" if v is None else f"{v / scale:.1f}{unit}"


print(f"model idle read latency (cxlvmm check): {model_idle / 1000:.1f} us; "
      f"guest sees {extra_ns / 1000:.1f} us more per access at idle (the rig's extra)")
print(f"{'point':<30} {'guest us':>9} {'model us':>9} {'err':>7}   {'guest-extra':>11} {'model+think':>11} "
      f"{'err':>7}   {'loads/ms guest':>14} {'model':>6}")
for r in rows:
    print(f"{r['point']:<30} {fmt(r['guest_mean_ns'], '', 1e3):>9} {fmt(r['model_mean_ns'], '', 1e3):>9} "
          f"{fmt(r['error_pct'], '%'):>7}   {fmt(r['guest_mean_ns'] - extra_ns, '', 1e3):>11} "
          f"{fmt(r['model_extra_mean_ns'], '', 1e3):>11} {fmt(r['error_with_extra_pct'], '%'):>7}   "
          f"{r['guest_loads_per_ms']:>14.3f} {r['model_loads_per_ms']:>6.3f}")


def worst(key, rows):
    v = [abs(r[key]) for r in rows if r[key] is not None]
    return max(v) if v else None


loaded_rows = [r for r in rows if r["delay_ns"] is not None]
summary = {
    "rig": RIG,
    "target_pct": LIMIT_PCT,
    "model_idle_ns": model_idle,
    "rig_extra_ns": extra_ns,
    "max_abs_error_pct": worst("error_pct", rows),
    "points_within_target": sum(abs(r["error_pct"]) <= LIMIT_PCT for r in rows),
    "max_abs_error_with_extra_pct": worst("error_with_extra_pct", loaded_rows),
    "loaded_points_within_target_with_extra": sum(abs(r["error_with_extra_pct"]) <= LIMIT_PCT
                                                  for r in loaded_rows),
    "points": len(rows),
}
print(json.dumps(summary))
stats_path = os.path.join(out, "timed-loaded-stats.json")
if os.path.exists(stats_path) and os.path.getsize(stats_path):
    st = json.load(open(stats_path))
    summary["calibration"] = st.get("calibration")
    summary["clock"] = st.get("clock")
json.dump({"points": rows, "summary": summary, "guest": guest["loaded"], "guest_idle": guest["loaded-idle"]},
          open(os.path.join(out, "timed-loaded.json"), "w"), indent=1)


def curve(key, shift=0.0):
    return sorted((r[f"{'guest' if key.startswith('guest') else 'model'}_loads_per_ms"],
                   (r[key] - shift) / 1e3) for r in rows)


series = [
    {"name": "model (fabric-sweep)", "color": "#4e79a7", "points": curve("model_mean_ns")},
    {"name": "guest (cxlvmm-lat loaded)", "color": "#e15759", "points": curve("guest_mean_ns")},
    {"name": "model, chaser thinking the rig's extra", "color": "#76b7b2",
     "points": curve("model_extra_mean_ns")},
    {"name": "guest less the rig's extra", "color": "#f28e2b", "points": curve("guest_mean_ns", extra_ns)},
]
chart = {"line": {"title": "Loaded latency on timed memory: guest-measured vs model (" + RIG + ", 2 vCPUs)",
                  "x": {"label": "loader's loads per ms of guest time", "log": False},
                  "y": {"label": "chaser mean latency (us)", "log": False}, "series": series}}
subprocess.run([os.environ.get("SVG_PLOT", "target/release/svg-plot"), "-", os.path.join(out, "timed-loaded.svg")],
               input=json.dumps(chart), text=True, check=True)
print(f"wrote {out}/timed-loaded.json, {out}/timed-loaded.svg")
