#!/usr/bin/env python3
"""Print the modules needed to load NAME... in insmod order, one path per line.

    rig-moddeps.py /lib/modules/VERSION NAME...

Paths are relative to the module directory and come from its modules.dep (the
Debian package ships none; scripts/rig generates it with busybox depmod).
Dependencies are resolved transitively and printed before their users, each
once.  A NAME built into the kernel (modules.builtin) is skipped; a NAME that is
neither a module nor built in is an error, because the L1 initramfs would then
fail at boot in a way that is much harder to read.
"""
import os
import sys


def norm(name):
    # Module names treat '-' and '_' as the same character (kvm-amd == kvm_amd).
    base = os.path.basename(name)
    for ext in (".ko.zst", ".ko.xz", ".ko.gz", ".ko"):
        if base.endswith(ext):
            base = base[: -len(ext)]
            break
    return base.replace("-", "_")


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    moddir, wanted = sys.argv[1], sys.argv[2:]

    deps = {}  # path -> [dependency paths]
    by_name = {}  # normalized name -> path
    with open(os.path.join(moddir, "modules.dep")) as f:
        for line in f:
            path, _, rest = line.partition(":")
            path = path.strip()
            if not path:
                continue
            deps[path] = rest.split()
            by_name[norm(path)] = path

    builtin = set()
    try:
        with open(os.path.join(moddir, "modules.builtin")) as f:
            builtin = {norm(l.strip()) for l in f if l.strip()}
    except FileNotFoundError:
        pass

    order, seen = [], set()

    def visit(path, stack=()):
        if path in seen:
            return
        if path in stack:
            sys.exit(f"rig-moddeps: dependency cycle through {path}")
        for d in deps.get(path, []):
            visit(d, stack + (path,))
        seen.add(path)
        order.append(path)

    for name in wanted:
        n = norm(name)
        if n in by_name:
            visit(by_name[n])
        elif n not in builtin:
            sys.exit(f"rig-moddeps: no module {name} in {moddir}")

    print("\n".join(order))


if __name__ == "__main__":
    main()
