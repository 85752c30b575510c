#!/usr/bin/python3
"""Prints the address the running kernel's KVM (kvm_amd) resumes at after
VMRUN: the instruction after the VMRUN (0f 01 d8) in __svm_vcpu_run. Inside
the nested rig an L2 vCPU whose RIP is this address was given L1's own host
state (docs/rig.md, "Known trouble"). Prints nothing where kvm_amd is not
loaded or /proc/kcore cannot be read (needs root)."""
import struct
import sys


def symbol(name):
    with open("/proc/kallsyms") as syms:
        for line in syms:
            fields = line.split()
            if len(fields) >= 3 and fields[1] in "tT" and fields[2] == name:
                return int(fields[0], 16)
    return None


def text(addr, length):
    """Reads live kernel text through /proc/kcore's ELF program headers."""
    with open("/proc/kcore", "rb") as core:
        ehdr = core.read(64)
        (phoff,) = struct.unpack_from("<Q", ehdr, 32)
        phentsize, phnum = struct.unpack_from("<HH", ehdr, 54)
        core.seek(phoff)
        table = core.read(phentsize * phnum)
        for i in range(phnum):
            kind, _, off, vaddr, _, filesz, _, _ = struct.unpack_from("<IIQQQQQQ", table, i * phentsize)
            if kind == 1 and vaddr <= addr and addr + length <= vaddr + filesz:
                core.seek(off + addr - vaddr)
                return core.read(length)
    return b""


def main():
    try:
        start = symbol("__svm_vcpu_run")
        if start is None or start == 0:
            return 0
        at = text(start, 512).find(b"\x0f\x01\xd8")
    except OSError:
        return 0
    if at >= 0:
        print(hex(start + at + 3))
    return 0


if __name__ == "__main__":
    sys.exit(main())
