# Runs inside the guest with two virtio-fs shares: `src` (read-write) and
# `ro` (read-only). The harness sets HELLO_SHA (sha256 of src/hello.txt),
# BIG_SHA (sha256 of src/big.bin, 8 MiB) and PATTERN. Mounts both, reads
# what the host wrote, writes, renames and removes through src, and fails
# to write ro; exits 7 only if every check passed. The harness then checks
# the host's side of the directories.
fail=0
check() { if [ "$2" = 0 ]; then echo "FS-CHECK $1: ok ($3)"; else echo "FS-CHECK $1: FAILED ($3)"; fail=1; fi; }

drv=$(ls /sys/bus/virtio/drivers/virtiofs 2>/dev/null | grep -c '^virtio')
[ "$drv" = 2 ]; check driver $? "$drv virtio devices bound to virtiofs"
mkdir -p /mnt/src /mnt/ro
mount -t virtiofs src /mnt/src; check mount-src $? "$(grep ' /mnt/src ' /proc/mounts)"
mount -t virtiofs ro /mnt/ro; check mount-ro $? "$(grep ' /mnt/ro ' /proc/mounts)"

sum=$(sha256sum /mnt/src/hello.txt | cut -d' ' -f1)
[ "$sum" = "$HELLO_SHA" ]; check read-small $? "hello.txt sha256 $sum"
sum=$(sha256sum /mnt/src/big.bin | cut -d' ' -f1)
[ "$sum" = "$BIG_SHA" ]; check read-big $? "big.bin sha256 $sum"
n=$(ls /mnt/src/dir | wc -l)
[ "$n" = 3 ]; check readdir $? "$n entries in dir/"

# 4 MiB of PATTERN lines, fsync'd (FUSE_FSYNC), then read back cold.
yes "$PATTERN" | head -c 4194304 | dd of=/mnt/src/written.txt bs=1M conv=fsync 2>/tmp/dd.err
check write $? "$(tail -1 /tmp/dd.err)"
echo 3 >/proc/sys/vm/drop_caches
want=$(yes "$PATTERN" | head -c 4194304 | sha256sum | cut -d' ' -f1)
sum=$(sha256sum /mnt/src/written.txt | cut -d' ' -f1)
[ "$sum" = "$want" ]; check readback $? "written.txt sha256 $sum"
mv /mnt/src/dir/b /mnt/src/dir/b-renamed && rm /mnt/src/dir/c && mkdir /mnt/src/made-by-guest
check rename-remove-mkdir $? "$(ls /mnt/src/dir | tr '\n' ' ')"

if (echo x >/mnt/ro/new) 2>/tmp/ro.err; then
    check ro-refused 1 "a write to the read-only share succeeded"
else
    check ro-refused 0 "$(cat /tmp/ro.err)"
fi
sum=$(cat /mnt/ro/keep.txt)
[ "$sum" = "read only" ]; check ro-read $? "keep.txt: $sum"
umount /mnt/src && umount /mnt/ro; check umount $? "both unmounted"
[ "$fail" = 0 ] && exit 7
exit 1
