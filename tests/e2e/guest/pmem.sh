# Runs inside the guest. The manifest exports MODE: "write", "write-hold"
# or "verify", and WAYS: 1 (a region over the first memdev with persistent
# capacity) or 2 (interleaved at 4 KiB over the first two, which cxlvmm maps
# natively by stitching pages of both backing files). Checks that data
# written through an fsdax namespace in one cxlvmm run reads back intact in
# the next run over the same backing files.
#   write:      new region + fsdax namespace (labels go to the LSA) + a devdax
#               namespace exercised with plain loads/stores; writes 4 MiB of
#               random data to /dev/pmem*, syncs, prints its md5
#   write-hold: the same, then waits (the harness kill -9s the VMM)
#   verify:     re-creates the region; the namespace comes back from the
#               labels; prints the md5 of the same 4 MiB
fail=0
check() { if [ "$2" = 0 ]; then echo "PMEM-CHECK $1: ok ($3)"; else echo "PMEM-CHECK $1: FAILED ($3)"; fail=1; fi; }
json_field() { sed -n "s/.*\"$1\":\"\{0,1\}\([^\",]*\)\"\{0,1\}.*/\1/p" | head -1; }

# Memdev names follow probe order, which changes between boots: pick the
# device by serial number so every run uses the same backing file.
pmem_memdevs=$(cxl list -M | awk '/"memdev":/ { gsub(/[",]/, ""); split($0, a, ":"); m = a[2] }
                            /"pmem_size":/ { p = 1 }
                            /"serial":/ { gsub(/[",]/, ""); split($0, a, ":"); if (p) print a[2], m; p = 0 }' |
    sort -n | cut -d' ' -f2)
memdev=$(echo "$pmem_memdevs" | sed -n 1p)
other=$(echo "$pmem_memdevs" | sed -n 2p)
# The root decoder of the pmem window.
decoder=$(cxl list -D -d root | awk '/"decoder":/ { gsub(/[",]/, ""); split($0, a, ":"); d = a[2] }
                                     /"pmem_capable":true/ { print d }' | head -1)
# The same memdevs in the same positions every run: the namespace labels
# describe the interleave set by position.
targets=$memdev; [ "${WAYS:-1}" = 2 ] && targets="$memdev $other"
cxl create-region -m -t pmem -d "$decoder" -w "${WAYS:-1}" -g 4096 $targets >/tmp/region.json 2>/dev/null
region=$(json_field region </tmp/region.json)
[ -n "$region" ]; check region $? "cxl create-region -t pmem -d $decoder -w ${WAYS:-1} -g 4096 $targets -> $region"
ndregion=$(ndctl list -R | json_field dev)
serials=$(for m in $targets; do cat "/sys/bus/cxl/devices/$m/serial"; done | tr '\n' ' ')
echo "pmem region $region over $targets (serials $serials), nd $ndregion"

if [ "$MODE" = verify ]; then
    ndctl list -N -r "$ndregion" >/tmp/ns.json
    blockdev=$(json_field blockdev </tmp/ns.json)
    grep -q '"mode":"fsdax"' /tmp/ns.json; check namespace-from-labels $? "ndctl list -N: /dev/$blockdev"
    sum=$(dd if="/dev/$blockdev" bs=1M count=4 2>/dev/null | md5sum | cut -d' ' -f1)
    echo "PMEM-MD5 $sum"
else
    # A namespace an earlier run left in the labels is replaced.
    ndctl destroy-namespace all -r "$ndregion" -f >/dev/null 2>&1
    # fsdax takes half of the region, a devdax namespace the rest (the
    # labels hold both; one region also suits Linux 6.1, which cannot attach
    # a second region below this switch: "failed to set target0").
    size=$(($(cat /sys/bus/nd/devices/$ndregion/size) / 2))
    ndctl create-namespace -m fsdax -r "$ndregion" -s "$size" >/tmp/ns.json 2>&1
    blockdev=$(json_field blockdev </tmp/ns.json)
    [ -b "/dev/$blockdev" ]; check fsdax $? "ndctl create-namespace -m fsdax -> /dev/$blockdev"
    if [ "$MODE" = write ]; then
        ndctl create-namespace -m devdax -r "$ndregion" >/tmp/ns2.json 2>&1
        chardev=$(json_field chardev </tmp/ns2.json)
        cxlvmm-daxtest "/dev/$chardev" 2048 1 >/tmp/daxtest.out 2>&1
        check devdax $? "$(tail -1 /tmp/daxtest.out) (second namespace of $ndregion)"
        [ -n "$chardev" ] || cat /tmp/ns2.json
    fi
    head -c 4194304 /dev/urandom >/tmp/data
    dd if=/tmp/data of="/dev/$blockdev" bs=1M count=4 conv=fsync 2>/dev/null
    check write $? "4 MiB to /dev/$blockdev"
    sync
    echo "PMEM-MD5 $(md5sum </tmp/data | cut -d' ' -f1)"
    if [ "$MODE" = write-hold ]; then
        echo "PMEM-SYNCED"
        # The runner cuts the power now (power_cut_on); nothing after this runs.
        sleep 600
    fi
fi
[ "$fail" = 0 ] && exit 7
exit 1
