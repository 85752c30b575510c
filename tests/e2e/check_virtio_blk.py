#!/usr/bin/env python3
"""Checks a virtio-blk e2e disk image after the guest ran
tests/e2e/guest/virtio-blk.sh on it: MiB 4 holds PATTERN's lines (as
`yes PATTERN | head -c 1M` makes them), every other byte is as before the
run (BEFORE: a copy of the image then, or "zero" for a scratch disk), the
size is unchanged. Usage: check_virtio_blk.py IMAGE BEFORE PATTERN"""
import sys

MIB = 1 << 20


def main():
    image, before, pattern = sys.argv[1:4]
    data = open(image, "rb").read()
    old = bytes(len(data)) if before == "zero" else open(before, "rb").read()
    line = pattern.encode() + b"\n"
    want = (line * (MIB // len(line) + 1))[:MIB]
    problems = []
    if len(data) != len(old):
        problems.append(f"size {len(data)}, was {len(old)}")
    if data[4 * MIB:5 * MIB] != want:
        problems.append("MiB 4 does not hold the guest's pattern")
    if data[:4 * MIB] != old[:4 * MIB] or data[5 * MIB:] != old[5 * MIB:]:
        problems.append("bytes outside MiB 4 changed")
    if problems:
        print(f"{image}: " + "; ".join(problems))
        return 1
    print(f"{image}: MiB 4 holds the guest's pattern, nothing else changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
