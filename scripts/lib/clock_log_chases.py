#!/usr/bin/env python3
"""Where each chunked chase of a `scripts/bench-timed --clock-log` sweep
lost or gained time against the model, from the exit log.

  clock_log_chases.py VCPU_CSV TIMED_JSON CYCLES_PER_NS [--max-debt-ns N] [--json OUT]

VCPU_CSV is the exit log (build/bench/clock-log/sweep/vcpu0.csv), TIMED_JSON
the sweep's summary (build/bench/timed.json), whose steps give each chase's
model latency in the order they ran. In the log each step is two chases of
`loads + warm-up` timed accesses at that latency (per-load, then chunked):
they are found in order, and of the chunked one (warm-up left out) this
prints, in ns:

  excess      the guest's time over the chase (its TSC at the resumes of
              the first and last load) minus the model's; beside it what
              the guest measured (its mean error times the chase), and "?"
              where the two differ by over a fifth: the chase found in the
              log is then not the one the guest measured
  guest_mode  time the guest ran between an entry and its next exit to the
              VMM, less the kernel's exits in between, beyond the chase's
              median, where that was over 5 us: the clock cannot tell it
              from the guest's own work, so it shows. After the "/": how
              many such stretches, and in brackets how many of them had
              exits the kernel handled inside (the guest took an interrupt
              there: its handler is guest work too)
  entry_err   entries later than predicted, and in_kernel, exits KVM handled
              itself: both owed, and paid back from later accesses
  owed_end    debt still owed at the chase's last load (paid after it)
  debt_max    the most owed during the chase, and how many entries met the
              cap (beyond it, debt is forgiven and shows)

Then, over the whole log, the long guest-mode stretches with and without
exits the kernel handled inside them.

The exit log's columns are documented in vmm/src/vclock/exit_log.rs and
docs/timed-mode.md ("Exit log").
"""
import argparse
import csv
import json
import statistics

ap = argparse.ArgumentParser()
ap.add_argument("csv")
ap.add_argument("timed_json")
ap.add_argument("cycles_per_ns", type=float)
ap.add_argument("--max-debt-ns", type=float, default=1_000_000)
ap.add_argument("--loads", type=int, default=2000)
ap.add_argument("--warmup", type=int, default=100)
ap.add_argument("--json")
a = ap.parse_args()

rows = list(csv.DictReader(open(a.csv)))


def num(r, k):
    v = r[k]
    return int(v) if v not in ("", None) else 0


def latency(r):
    v = r["latency"]
    return None if v in ("", "-1") else int(v)


def guest_mode(i):
    """Cycles the guest ran before exit i: from its entry to the exit, less
    the exits the kernel handled in between (with their invisible parts)."""
    p, r = rows[i - 1], rows[i]
    return (num(r, "left") - (num(p, "decided") + num(p, "entry_delay") + num(r, "entry_error"))
            - num(r, "in_kernel"))


steps = json.load(open(a.timed_json))["steps"]
per_chase = a.loads + a.warmup
cap = a.max_debt_ns * a.cycles_per_ns
stall = 5000 * a.cycles_per_ns
ns = lambda c: c / a.cycles_per_ns
cursor = 1
out = []


def stall_count(r):
    return f"{r['guest_mode_stall_exits']}({r['guest_mode_stalls_with_kernel_exits']})"


print(f"{'step':>4} {'model':>10} {'mean err':>9} {'guest saw':>10} {'excess':>10} {'guest_mode':>19} {'entry_err':>10} "
      f"{'in_kernel':>10} {'owed_end':>9} {'debt_max':>9} {'at cap':>6}")
for s in steps:
    model = s["model_ns"] * a.cycles_per_ns
    # The log holds whole cycles; queueing adds a little to some accesses.
    lo, hi = int(model * 0.998), int(model * 1.02) + 200
    found = []
    i = cursor
    while i < len(rows) and len(found) < 2 * per_chase:
        lat = latency(rows[i])
        if lat is not None and lo <= lat < hi:
            found.append(i)
        i += 1
    if len(found) < 2 * per_chase:
        print(f"{s['step']:>4} {s['model_ns']:>10.1f}  chase not found in the log")
        out.append({"step": s["step"], "model_ns": s["model_ns"], "matched": False})
        continue
    cursor = found[-1] + 1
    chase = found[per_chase + a.warmup:]
    gm = [guest_mode(i) for i in chase]
    med = statistics.median(gm)
    stalls = [(x - med, i) for x, i in zip(gm, chase) if x > med + stall]
    span = range(chase[0], chase[-1] + 1)
    r = {
        "step": s["step"],
        "settings": s.get("settings"),
        "model_ns": s["model_ns"],
        "mean_error_pct": s.get("mean_error_pct"),
        "excess_ns": ns(num(rows[chase[-1]], "guest_resume") - num(rows[chase[0]], "guest_resume")
                        - (len(chase) - 1) * model),
        "guest_mode_stall_ns": ns(sum(x for x, _ in stalls)),
        "guest_mode_stall_exits": len(stalls),
        "guest_mode_stalls_with_kernel_exits": sum(1 for _, i in stalls if num(rows[i], "in_kernel_exits")),
        "guest_mode_median_ns": ns(med),
        "entry_error_ns": ns(sum(num(rows[i], "entry_error") for i in chase)),
        "in_kernel_ns": ns(sum(num(rows[i], "in_kernel") for i in chase)),
        "owed_at_end_ns": ns(num(rows[chase[-1]], "debt_after_enter")),
        "debt_max_ns": ns(max(num(rows[i], "debt_before_enter") for i in span)),
        "entries_at_cap": sum(1 for i in span if num(rows[i], "debt_before_enter") >= cap * 0.999),
    }
    err = r["mean_error_pct"]
    r["guest_excess_ns"] = None if err is None else err / 100 * s["model_ns"] * a.loads
    r["matched"] = err is not None and abs(r["excess_ns"] - r["guest_excess_ns"]) <= max(
        20_000, 0.2 * abs(r["guest_excess_ns"]))
    out.append(r)
    print(f"{r['step']:>4} {r['model_ns']:>10.1f} {err if err is not None else float('nan'):>8.1f}% "
          f"{(r['guest_excess_ns'] or 0) / 1e3:>8.1f}us {r['excess_ns'] / 1e3:>8.1f}us{' ' if r['matched'] else '?'} {r['guest_mode_stall_ns'] / 1e3:>8.1f}us/{stall_count(r):<8} "
          f"{r['entry_error_ns'] / 1e3:>8.1f}us {r['in_kernel_ns'] / 1e3:>8.1f}us "
          f"{r['owed_at_end_ns'] / 1e3:>7.1f}us {r['debt_max_ns'] / 1e3:>7.1f}us {r['entries_at_cap']:>6}")

# The whole log: every timed access that followed another (so not a
# program's first, which carries its start-up), its guest-mode time against
# the median of them all, split by whether the kernel handled exits inside
# the stretch. Without any, nothing in L1 took the vCPU out of the guest:
# a long one is time that passed while L2 stood still unseen (another L1
# CPU's turn in an instruction-counted rig, docs/rig.md).
pairs = [i for i in range(2, len(rows)) if latency(rows[i]) is not None and latency(rows[i - 1]) is not None]
gm_all = [(i, guest_mode(i)) for i in pairs]
summary = {}
if gm_all:
    med_all = statistics.median(x for _, x in gm_all)
    print(f"\nguest mode over the median ({ns(med_all):.0f} ns) + 5 us, all {len(gm_all)} timed accesses after the first of a run:")
    for key, label, want in (("without_kernel_exits", "no exit in between", False),
                             ("with_kernel_exits", "kernel exits in between", True)):
        over = sorted(x - med_all for i, x in gm_all
                      if bool(num(rows[i], "in_kernel_exits")) == want and x > med_all + stall)
        summary[key] = {"stretches": len(over), "total_ns": ns(sum(over)),
                        "max_ns": ns(over[-1]) if over else 0.0}
        print(f"  {label:<24} {len(over):>5} stretches, {ns(sum(over)) / 1e3:>9.1f} us together, "
              f"the longest {ns(over[-1]) / 1e3 if over else 0:.1f} us")
if a.json:
    json.dump({"chases": out, "guest_mode": summary}, open(a.json, "w"), indent=1)
