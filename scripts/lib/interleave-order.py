#!/usr/bin/env python3
"""Prints the serial numbers of a host bridge's type-3 devices in the
interleave position order Linux's region code requires for a region over
all of them (drivers/cxl/core/region.c, cxl_port_setup_targets: each port
routes on the next address bit above its parent's, so position bit 0 picks
the root port, the next bits the downstream port at each switch level).

usage: interleave-order.py TOPOLOGY.toml HOST_BRIDGE_ID

Works for regular trees (every level fully used), as scripts/topology-gen
writes them; fails with a message otherwise.
"""
import sys
import tomllib


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-3])
    with open(sys.argv[1], "rb") as f:
        topo = tomllib.load(f)
    hb = sys.argv[2]
    switch_port = {s["id"]: s["port"] for s in topo.get("switch", [])}

    def path(port):
        """Port indices from the host bridge down: [rp, dp, dp, ...]."""
        owner, _, name = port.partition(".")
        index = int(name.lstrip("rpd"))
        if owner in switch_port:
            up = path(switch_port[owner])
            return None if up is None else up + [index]
        return [index] if owner == hb else None

    devices = [(d["serial"], path(d["port"])) for d in topo.get("type3", [])]
    devices = [(s, p) for s, p in devices if p is not None]
    if not devices:
        sys.exit(f"interleave-order: no type-3 device below {hb}")
    depth = len(devices[0][1])
    if any(len(p) != depth for _, p in devices):
        sys.exit("interleave-order: devices at different depths")
    # Ways at each level: the distinct indices used there.
    ways = [len({p[i] for _, p in devices}) for i in range(depth)]
    rank = [sorted({p[i] for _, p in devices}) for i in range(depth)]

    def position(p):
        pos, scale = 0, 1
        for level in range(depth):
            pos += rank[level].index(p[level]) * scale
            scale *= ways[level]
        return pos

    total = 1
    for w in ways:
        total *= w
    if total != len(devices):
        sys.exit(f"interleave-order: {len(devices)} devices do not fill a {'x'.join(map(str, ways))} tree")
    order = sorted(devices, key=lambda d: position(d[1]))
    print(" ".join(f"{s:#x}" for s, _ in order))


if __name__ == "__main__":
    main()
