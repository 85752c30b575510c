#!/bin/sh
# prepare of virtio-blk: known, distinct content on both disks of the job
# (disk0.img read-write, disk1.img read-only; scratch disks the runner made),
# copies of them as they were (for the check), and the sha256s the guest
# must read (guest/virtio-blk.sh: the first 4 MiB of vda, 1 MiB of vdb).
set -eu
o=$CXLVMM_OUT
python3 -c '
import os, sys
def fill(path, seed):
    n = os.path.getsize(path)
    data = b"".join((b"%s block %08d " % (seed, i)).ljust(512, b".") for i in range(n // 512))
    open(path, "r+b").write(data)
fill(sys.argv[1], b"rw")
fill(sys.argv[2], b"ro")' "$o/disk0.img" "$o/disk1.img"
cp "$o/disk0.img" "$o/disk0.img.before"
cp "$o/disk1.img" "$o/disk1.img.before"
echo "RW_SHA=$(head -c 4M "$o/disk0.img" | sha256sum | cut -d' ' -f1)"
echo "RO_SHA=$(head -c 1M "$o/disk1.img" | sha256sum | cut -d' ' -f1)"
