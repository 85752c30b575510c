#!/usr/bin/env python3
"""Summarises a virtual-clock exit log (CXLVMM_CLOCK_LOG, docs/timed-mode.md).

usage: clock_log_report.py VCPU.csv CYCLES_PER_NS

For every timed access (an exit charged a latency) it reconstructs what the
guest saw: from the guest time the exit was dated at (left + the offset the
vCPU ran with) to the guest time it resumed at (the coordinator's resume
plus the next record's measured entry error). Prints medians and quantiles
in ns, as JSON.
"""
import csv
import json
import statistics
import sys


def q(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * (len(xs) - 1)))]


def main():
    path, cpn = sys.argv[1], float(sys.argv[2])
    rows = list(csv.DictReader(open(path)))
    M = 1 << 64
    out = {"records": len(rows)}
    series = {k: [] for k in ("latency", "intended", "entry_error_next", "seen", "debt", "pay",
                              "exit_to_user", "vmm_handling", "in_kernel_next", "entry_path_next", "run_path_next")}
    timed = 0
    for i in range(1, len(rows) - 1):
        r, prev, nxt = rows[i], rows[i - 1], rows[i + 1]
        if not r["left"] or not prev["offset"]:
            continue
        lat = int(r["latency"])
        if lat < 0:
            continue
        timed += 1
        off_prev = int(prev["offset"])
        g_left = (int(r["left"]) + off_prev) % M
        resume = int(r["guest_resume"])
        intended = (resume - g_left) % M
        if intended > M // 2:
            intended -= M
        err = int(nxt["entry_error"]) if nxt["entry_error"] else 0
        ns = lambda c: c / cpn
        series["latency"].append(ns(lat))
        series["intended"].append(ns(intended))
        series["entry_error_next"].append(ns(err))
        series["seen"].append(ns(intended + err))
        series["debt"].append(ns(int(r["debt_before_enter"])))
        series["pay"].append(ns(int(r["debt_before_enter"]) - int(r["debt_after_enter"])))
        series["exit_to_user"].append(ns(int(r["host_ret"]) - int(r["left"])))
        series["vmm_handling"].append(ns(int(r["decided"]) - int(r["host_ret"])))
        series["in_kernel_next"].append(ns(int(nxt["in_kernel"]) if nxt["in_kernel"] else 0))
        series["entry_path_next"].append(ns(int(nxt["entry_path"]) if nxt["entry_path"] else 0))
        if nxt.get("run_path"):
            series["run_path_next"].append(ns(int(nxt["run_path"])))
    out["timed_accesses"] = timed
    for k, xs in series.items():
        if xs:
            out[k] = {"p10": q(xs, 0.1), "p50": q(xs, 0.5), "p90": q(xs, 0.9),
                      "mean": statistics.fmean(xs), "max": max(xs)}
    kexits = [int(r["in_kernel_exits"]) for r in rows if r["in_kernel_exits"]]
    out["in_kernel_exits_per_record"] = statistics.fmean(kexits) if kexits else 0
    reasons = {}
    for r in rows:
        if r["in_kernel_exits"] and int(r["in_kernel_exits"]) > 0:
            reasons[r["last_reason"]] = reasons.get(r["last_reason"], 0) + 1
    out["last_in_kernel_reasons"] = dict(sorted(reasons.items(), key=lambda kv: -kv[1])[:8])
    print(json.dumps(out, indent=1, default=lambda x: round(x, 1)))


if __name__ == "__main__":
    main()
