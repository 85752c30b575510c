# Runs inside the guest with two disks: /dev/vda read-write (RW_SECTORS
# sectors, sha256 of its first 4 MiB RW_SHA) and /dev/vdb read-only
# (RO_SECTORS sectors, sha256 of its first 1 MiB RO_SHA); the harness sets
# those and PATTERN. Reads both, writes `yes PATTERN` over vda's fifth MiB
# with fsync (a FLUSH request), tries to write vdb, and exits 7 only if
# every check passed; the harness then checks the image files
# (tests/e2e/check_virtio_blk.py).
fail=0
check() { if [ "$2" = 0 ]; then echo "BLK-CHECK $1: ok ($3)"; else echo "BLK-CHECK $1: FAILED ($3)"; fail=1; fi; }

for d in vda vdb; do
    [ -b "/dev/$d" ]; check "$d-present" $? "$(ls /sys/block | tr '\n' ' ')"
done
drv=$(basename "$(readlink /sys/block/vda/device/driver)")
bus=$(basename "$(readlink /sys/block/vda/device/../driver)")
[ "$drv" = virtio_blk ] && [ "$bus" = virtio-pci ]
check drivers $? "vda: $drv on $bus"
size=$(cat /sys/block/vda/size)
[ "$size" = "$RW_SECTORS" ]; check vda-size $? "$size sectors, expected $RW_SECTORS"
size=$(cat /sys/block/vdb/size)
[ "$size" = "$RO_SECTORS" ]; check vdb-size $? "$size sectors, expected $RO_SECTORS"
ro=$(cat /sys/block/vdb/ro)
[ "$ro" = 1 ]; check vdb-ro $? "/sys/block/vdb/ro = $ro"
cache=$(cat /sys/block/vda/queue/write_cache)
[ "$cache" = "write back" ]; check vda-flush $? "write_cache = $cache (the device offers FLUSH)"

sum=$(dd if=/dev/vda bs=1M count=4 2>/dev/null | sha256sum | cut -d' ' -f1)
[ "$sum" = "$RW_SHA" ]; check vda-read $? "sha256 of the first 4 MiB $sum"
sum=$(dd if=/dev/vdb bs=1M count=1 2>/dev/null | sha256sum | cut -d' ' -f1)
[ "$sum" = "$RO_SHA" ]; check vdb-read $? "sha256 of the first 1 MiB $sum"

# 1 MiB of PATTERN lines over vda's fifth MiB; conv=fsync ends with a FLUSH.
yes "$PATTERN" | head -c 1048576 | dd of=/dev/vda bs=1M seek=4 conv=fsync 2>/tmp/dd.err
check vda-write $? "$(tail -1 /tmp/dd.err)"
sync
echo 3 >/proc/sys/vm/drop_caches
want=$(yes "$PATTERN" | head -c 1048576 | sha256sum | cut -d' ' -f1)
sum=$(dd if=/dev/vda bs=1M count=1 skip=4 2>/dev/null | sha256sum | cut -d' ' -f1)
[ "$sum" = "$want" ]; check vda-readback $? "sha256 of vda's fifth MiB after the write $sum"

# A write to the read-only disk must fail.
if dd if=/dev/zero of=/dev/vdb bs=512 count=1 conv=fsync 2>/tmp/dd.err; then
    check vdb-write-refused 1 "dd to /dev/vdb succeeded"
else
    check vdb-write-refused 0 "$(head -1 /tmp/dd.err)"
fi
[ "$fail" = 0 ] && exit 7
exit 1
