"""Compares what the guest's `cxl list` shows with the topology cxlvmm was given.

    check_cxl.py EXPECTED.json SERIAL.log

EXPECTED.json is `cxlvmm check --json --topology FILE`; SERIAL.log holds the
output of tests/e2e/guest/cxl-enumerate.sh. Prints one line per check and exits
non-zero if any fails.
"""
import base64
import gzip
import json
import re
import sys

expected = json.load(open(sys.argv[1]))
log = open(sys.argv[2], errors="replace").read().replace("\r", "")
# "--msix": the guest has the poison injector (6.5+), so it must show MSI-X delivery.
require_msix = "--msix" in sys.argv[3:]


def between(begin, end):
    m = re.search(re.escape(begin) + r"\n(.*?)" + re.escape(end), log, re.S)
    if not m:
        sys.exit(f"FAIL: no {begin} block in the serial log")
    # Kernel messages ("[  1.234567] ...") may interleave with the output.
    return "\n".join(l for l in m.group(1).splitlines() if not re.match(r"\[\s*\d+\.\d+\]", l))


if "===CXL-LIST-GZ-BEGIN===" in log:
    # gzip | base64, as cxl-enumerate.sh prints it.
    packed = between("===CXL-LIST-GZ-BEGIN===", "===CXL-LIST-GZ-END===")
    text = gzip.decompress(base64.b64decode("".join(packed.split()))).decode()
else:
    text = between("===CXL-LIST-BEGIN===", "===CXL-LIST-END===")
listing = json.loads(text or "[]")
dmesg = between("===DMESG-BEGIN===", "===DMESG-END===").strip()

# Walk the nested listing and collect every object by what it describes.
memdevs, ports, endpoints, decoders = {}, {}, {}, {}


def walk(node):
    if isinstance(node, list):
        for x in node:
            walk(x)
    elif isinstance(node, dict):
        if "memdev" in node and "serial" in node:
            memdevs[node["memdev"]] = node
        if "endpoint" in node:
            endpoints[node["endpoint"]] = node
        elif "port" in node:
            ports[node["port"]] = node
        if "decoder" in node:
            decoders[node["decoder"]] = node
        for v in node.values():
            walk(v)


walk(listing)
failures = 0


def check(name, ok, detail):
    global failures
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    failures += not ok


# Memory devices: one per type-3, matched by serial, with exact capacities.
by_serial = {int(str(m["serial"]), 0): m for m in memdevs.values()}
check("memdev count", len(memdevs) == len(expected["type3"]),
      f"{len(memdevs)} memdevs, topology has {len(expected['type3'])}")
for d in expected["type3"]:
    m = by_serial.get(d["serial"])
    if m is None:
        check(f"memdev {d['id']}", False, f"no memdev with serial {d['serial']:#x}")
        continue
    got = (int(m.get("ram_size", 0)), int(m.get("pmem_size", 0)))
    check(f"memdev {d['id']} sizes", got == (d["volatile"], d["persistent"]),
          f"{m['memdev']} ram/pmem {got}, expected {(d['volatile'], d['persistent'])}")

# Ports: one per host bridge (depth 1) with its root ports as dports, one per
# switch (depth 2+) with its downstream ports as dports; one endpoint per device.
hb_ports = sorted((p for p in ports.values() if p.get("depth") == 1), key=lambda p: p["host"])
check("host bridge ports", len(hb_ports) == len(expected["host_bridges"]),
      f"{len(hb_ports)} depth-1 ports for {len(expected['host_bridges'])} host bridges")
want_rp = sorted(h["root_ports"] for h in expected["host_bridges"])
got_rp = sorted(p.get("nr_dports", 0) for p in hb_ports)
check("root ports", got_rp == want_rp, f"dports per host bridge {got_rp}, expected {want_rp}")
sw_ports = [p for p in ports.values() if p.get("depth", 0) >= 2]
want_dsp = sorted(s["downstream_ports"] for s in expected["switches"])
got_dsp = sorted(p.get("nr_dports", 0) for p in sw_ports)
check("switch ports", got_dsp == want_dsp, f"dports per switch {got_dsp}, expected {want_dsp}")
check("endpoints", len(endpoints) == len(expected["type3"]),
      f"{len(endpoints)} endpoints for {len(expected['type3'])} devices")

# Root decoders: one per window, with its size, ways, targets and capabilities.
roots = sorted((d for name, d in decoders.items() if name.startswith("decoder0.")),
               key=lambda d: int(d["resource"], 0) if isinstance(d["resource"], str) else d["resource"])
check("root decoders", len(roots) == len(expected["windows"]),
      f"{len(roots)} root decoders for {len(expected['windows'])} windows")
for w, d in zip(expected["windows"], roots):
    got = (int(d["size"]), d.get("interleave_ways"), d.get("nr_targets"),
           bool(d.get("volatile_capable")), bool(d.get("pmem_capable")))
    want = (w["size"], w["ways"], len(w["targets"]), w["ram"], w["pmem"])
    check(f"root decoder for window {w['id']}", got == want,
          f"{d['decoder']} size/ways/targets/ram/pmem {got}, expected {want}")
    if w["ways"] > 1:
        check(f"window {w['id']} granularity", d.get("interleave_granularity") == w["granularity"],
              f"{d.get('interleave_granularity')}, expected {w['granularity']}")

# Switch decoders: every switch port exposes its HDM decoders.
for p in sw_ports:
    n = sum(1 for name in decoders if name.startswith(f"decoder{p['port'][4:]}."))
    check(f"switch {p['host']} decoders", n >= 1, f"{n} decoders")

# No CXL warnings or errors in the kernel log.
check("dmesg", dmesg == "", "no cxl warnings/errors" if not dmesg else dmesg[:500])

# Label storage round trips.
for d in expected["type3"]:
    if d["lsa"] > 0:
        m = by_serial.get(d["serial"], {}).get("memdev", "?")
        ok = re.search(rf"LSA-ROUNDTRIP {m} ok", log) is not None
        check(f"LSA {d['id']}", ok, f"{m} write-labels/read-labels of random data")

# MSI-X delivery (guests without the poison injector say "skipped").
event = re.search(r"MSIX-EVENT (?:(\S+) )?(ok|FAILED|skipped)\b(.*)", log)
allowed = ("ok",) if require_msix else ("ok", "skipped")
check("MSI-X event interrupt", event is not None and event.group(2) in allowed,
      event.group(0).strip() if event else "no MSIX-EVENT line in the guest log")

# INTx through the IOAPIC (_PRT routing, level semantics).
intx = re.search(r"INTX-CHECK (\S+) (ok|FAILED)(.*)", log)
check("INTx via IOAPIC", intx is not None and intx.group(2) == "ok",
      intx.group(0).strip() if intx else "no INTX-CHECK line in the guest log")

print(f"check_cxl: {'passed' if failures == 0 else f'{failures} check(s) failed'}")
sys.exit(1 if failures else 0)
