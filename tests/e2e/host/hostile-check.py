#!/usr/bin/env python3
"""check of hostile: every region the VMM mapped lies inside a CXL window
the guest reported, the three the guest placed outside (over RAM twice,
above every window) were refused, and cxlvmm neither panicked nor mapped
what it refused.

  hostile-check.py CONSOLE VMM_LOG
"""
import re
import sys

log = open(sys.argv[1], "rb").read().decode(errors="replace")
err = open(sys.argv[2], "rb").read().decode(errors="replace")
m = re.search(r"HOSTILE setup \S+ windows=((?: 0x[0-9a-f]+\+0x[0-9a-f]+)+)", log)
if not m:
    print("no windows reported by the guest")
    sys.exit(1)
windows = [tuple(int(x, 16) for x in w.split("+")) for w in m.group(1).split()]


def inside(base, size):
    return any(lo <= base and base + size <= lo + n for lo, n in windows)


regions = [(int(b, 16), int(n, 16), mode) for b, n, mode in
           re.findall(r"region \[(0x[0-9a-f]+), \+(0x[0-9a-f]+)\) \S+ x \d+ B: (\w+)", err)]
bad = [r for r in regions if r[2] == "Native" and not inside(r[0], r[1])]
outside = [r for r in regions if not inside(r[0], r[1])]
print(f"VMM regions: {len(regions)} ({sum(r[2] == 'Native' for r in regions)} native, "
      f"{sum(r[2] == 'Refused' for r in regions)} refused, {len(outside)} outside every window); "
      f"mapped outside a window: {len(bad)}")
ok = not bad and len(outside) >= 3 and all(r[2] == "Refused" for r in outside)
ok = ok and "panicked" not in err and "refused a memory slot" in err
sys.exit(0 if ok else 1)
