"""Report of scripts/bench-timed: guest-measured vs model latency per step,
the errors, the slope between 2 and 20 us, hop additivity, the VMM's cost
per timed access; build/bench/timed.json and timed.svg (tools/plot)."""
import json
import os
import re
import subprocess
import sys

from lat_results import lat_results

# Where the figures come from (scripts/bench-timed sets it).
RIG = os.environ.get("BENCH_TIMED_RIG", "nested rig")

out, log = sys.argv[1], sys.argv[2]
steps = [json.loads(l) for l in open(os.path.join(out, "timed-steps.jsonl"))]
guest = {}
for j in lat_results(log):
    m = re.match(r"step(\d+)-(per-load|chunked)", j.get("label", ""))
    if m:
        guest[(int(m.group(1)), m.group(2))] = j


def field(j, key):
    """A number anywhere in the tool's JSON (top level or its stats)."""
    if key in j:
        return j[key]
    for v in j.values():
        if isinstance(v, dict) and key in v:
            return v[key]
    return None


rows = []
for s in steps:
    per, chunk = guest.get((s["step"], "per-load")), guest.get((s["step"], "chunked"))
    p50 = field(per, "p50_ns") if per else None
    mean = field(chunk, "mean_ns") if chunk else None
    m = s["model_ns"]
    back = field(per, "backward_loads") if per else None
    rows.append(dict(s, p50_ns=p50, mean_ns=mean, backward_loads=back,
                     p50_error_pct=None if p50 is None else 100.0 * (p50 - m) / m,
                     mean_error_pct=None if mean is None else 100.0 * (mean - m) / m))


def fmt(v, unit=""):
    return "-" if v is None else f"{v:.1f}{unit}"


print(f"{'step':>4} {'sweep':<6} {'model ns':>10} {'p50 ns':>10} {'err':>8} {'mean ns':>10} {'err':>8} {'back':>5}  settings")
for r in rows:
    back = "-" if r["backward_loads"] is None else str(r["backward_loads"])
    print(f"{r['step']:>4} {r['sweep']:<6} {r['model_ns']:>10.1f} {fmt(r['p50_ns']):>10} "
          f"{fmt(r['p50_error_pct'], '%'):>8} {fmt(r['mean_ns']):>10} {fmt(r['mean_error_pct'], '%'):>8} {back:>5}  {r['settings']}")

summary = {"rig": RIG}
# Per-load samples whose end read below their start (the TSC stepped back
# on the chasing CPU): must be 0.
summary["backward_loads"] = sum(r["backward_loads"] or 0 for r in rows)
media = {round(r["model_ns"]): r for r in rows if r["sweep"] == "media"}
by_media = {int(r["settings"].split()[-1]): r for r in rows if r["sweep"] == "media"}
if 2000 in by_media and 20000 in by_media:
    a, b = by_media[2000], by_media[20000]
    dm = b["model_ns"] - a["model_ns"]
    for key in ("p50_ns", "mean_ns"):
        if a[key] is not None and b[key] is not None:
            summary[f"slope_{key[:-3]}"] = (b[key] - a[key]) / dm
for key, limit in (("p50_error_pct", 5.0), ("mean_error_pct", 5.0)):
    ok = sorted(int(r["settings"].split()[-1]) for r in rows
                if r["sweep"] == "media" and r[key] is not None and abs(r[key]) <= limit)
    # The smallest configured media latency from which every larger one is within the limit.
    all_media = sorted(by_media)
    smallest = None
    for i, v in enumerate(all_media):
        if all(w in ok for w in all_media[i:]):
            smallest = v
            break
    summary[f"within_5pct_from_media_ns_{key[:-10]}"] = smallest
hops = [r for r in rows if r["sweep"] == "hop"]
if len(hops) >= 2:
    add = []
    for r in hops[1:]:
        dc = r["model_ns"] - hops[0]["model_ns"]
        if r["p50_ns"] is not None and hops[0]["p50_ns"] is not None and dc:
            add.append({"delta_model_ns": dc, "delta_guest_ns": r["p50_ns"] - hops[0]["p50_ns"],
                        "error_pct": 100.0 * ((r["p50_ns"] - hops[0]["p50_ns"]) - dc) / dc})
    summary["hop_additivity"] = add
stats_path = os.path.join(out, "timed-stats.json")
if os.path.exists(stats_path):
    st = json.load(open(stats_path))
    summary["vmm_cost_per_access"] = (st.get("timed") or {}).get("vmm_cost")
    summary["clock"] = st.get("clock")
    summary["calibration"] = st.get("calibration")
print(json.dumps(summary, indent=1))
json.dump({"steps": rows, "summary": summary}, open(os.path.join(out, "timed.json"), "w"), indent=1)

series = [{"name": "ideal (guest = model)", "color": "#bbb",
           "points": [(r["model_ns"], r["model_ns"]) for r in rows if r["sweep"] == "media"]}]
for sweep, key, name in (("media", "p50_ns", "media sweep: per-load median"),
                         ("media", "mean_ns", "media sweep: whole-chase mean"),
                         ("hop", "p50_ns", "hop sweep: per-load median")):
    pts = [(r["model_ns"], r[key]) for r in rows if r["sweep"] == sweep and r[key] is not None]
    series.append({"name": name, "points": sorted(pts)})
chart = {"line": {"title": "Timed memory: guest-measured vs model idle latency (" + RIG + ", 1 vCPU chasing)",
                  "x": {"label": "model idle read latency (ns)", "log": True},
                  "y": {"label": "guest-measured latency (ns)", "log": True}, "series": series}}
subprocess.run([os.environ.get("SVG_PLOT", "target/release/svg-plot"), "-", os.path.join(out, "timed.svg")],
               input=json.dumps(chart), text=True, check=True)
print(f"wrote {out}/timed.json, {out}/timed.svg")
